import WWWCore

// Deterministic discrete-event harness (DESIGN.md §2, §8): N sans-I/O cores, one virtual
// clock, a simulated network with delay, loss and partitions, and node crash/restart/add.
// Single-threaded; every random choice comes from one seeded PRNG and events are ordered
// by (time, sequence number), so the same seed gives the same run, byte for byte.
// Models: FoundationDB simulation, TigerBeetle's VOPR.

/// A message a process asks the network to carry to the process listening at `to`.
public struct SimSend<Message> {
    public var to: String
    public var message: Message

    public init(to: String, message: Message) {
        self.to = to
        self.message = message
    }
}

/// What the harness drives: a sans-I/O core adapted to address-based messaging.
///
/// Compose cores (membership, ledger, scheduler) by writing one process whose `Message`
/// is an enum over theirs.
public protocol SimulatedProcess {
    associatedtype Message

    /// The address other processes send to (unique in one simulation).
    var address: String { get }
    /// Called when the node (re)starts.
    mutating func start(now: Instant) -> [SimSend<Message>]
    /// Called at (or after) `nextDeadline`.
    mutating func tick(now: Instant) -> [SimSend<Message>]
    /// Called when a message from the process at `fromAddress` arrives.
    mutating func receive(_ message: Message, fromAddress: String, now: Instant) -> [SimSend<Message>]
    /// When `tick` must next run; nil for never. A `mutating get` requirement so that the
    /// simulation reads it in place (through a plain getter, reading it off the node array
    /// copied the whole process first: 7 % of a 1,000-node run).
    var nextDeadline: Instant? { mutating get }
    /// The message's size on the wire in bytes (traffic accounting only).
    func wireSize(of message: Message) -> Int
    /// A message this process sent could not be delivered: its target is down or unknown
    /// (a refused connection). Called at the time the message would have arrived.
    mutating func undeliverable(_ message: Message, to address: String, now: Instant) -> [SimSend<Message>]
    /// The process at `address` crashed: connections with it break now.
    mutating func peerCrashed(address: String, now: Instant) -> [SimSend<Message>]
    /// A stable digest of the message for the run's trace hash (`Simulation.traceHash`).
    func traceDigest(of message: Message) -> UInt64
    /// True for messages on an open connection (TCP): random loss does not drop them (a
    /// partition still does, and the sender learns through `undeliverable`).
    func isReliable(_ message: Message) -> Bool
}

extension SimulatedProcess {
    public mutating func undeliverable(_ message: Message, to address: String, now: Instant) -> [SimSend<Message>] { [] }
    public mutating func peerCrashed(address: String, now: Instant) -> [SimSend<Message>] { [] }
    public func traceDigest(of message: Message) -> UInt64 { 0 }
    public func isReliable(_ message: Message) -> Bool { false }
}

/// The simulated network's behaviour.
public struct SimNetworkConfig: Hashable, Sendable {
    /// One-way delay, uniform in [minDelay, maxDelay].
    public var minDelay: Duration = .milliseconds(5)
    public var maxDelay: Duration = .milliseconds(50)
    /// Probability that a message is lost, in [0, 1].
    public var lossProbability: Double = 0
    /// CPU time a node spends on each message it receives and each one it sends (decode,
    /// verify, encode, sign). Zero: messages are handled the instant they arrive. Above
    /// zero, each node is one processor: messages queue behind its work, so a node that
    /// receives more than it can handle falls behind, as a real process does.
    public var receiveCost: Duration = .zero
    public var sendCost: Duration = .zero
    /// Messages a node holds waiting or in progress; past it, an arriving message is shed
    /// (the shell's `InboundGate`). Only with a processing cost.
    public var inboundLimit: Int = 64

    public init(minDelay: Duration = .milliseconds(5), maxDelay: Duration = .milliseconds(50), lossProbability: Double = 0,
                receiveCost: Duration = .zero, sendCost: Duration = .zero, inboundLimit: Int = 64) {
        precondition(minDelay >= .zero && maxDelay >= minDelay, "0 ≤ minDelay ≤ maxDelay")
        precondition(lossProbability >= 0 && lossProbability <= 1, "loss probability in [0, 1]")
        precondition(receiveCost >= .zero && sendCost >= .zero && inboundLimit >= 1, "costs ≥ 0, inbound limit ≥ 1")
        self.minDelay = minDelay
        self.maxDelay = maxDelay
        self.lossProbability = lossProbability
        self.receiveCost = receiveCost
        self.sendCost = sendCost
        self.inboundLimit = inboundLimit
    }

    var hasProcessingCost: Bool { receiveCost > .zero || sendCost > .zero }
}

/// Hard bounds on one run: it stops (and `limitHit` turns true) past either.
public struct SimLimits: Hashable, Sendable {
    public var maxTime: Instant
    public var maxEvents: Int

    public init(maxTime: Instant, maxEvents: Int = 50_000_000) {
        self.maxTime = maxTime
        self.maxEvents = maxEvents
    }
}

/// Traffic counters of one node.
public struct SimTraffic: Hashable, Sendable {
    public var messagesSent = 0
    public var bytesSent = 0
    public var messagesReceived = 0
    public var bytesReceived = 0
    public init() {}
}

/// Network-wide counters.
public struct SimStats: Hashable, Sendable {
    public var sent = 0
    public var delivered = 0
    public var lost = 0
    public var blockedByPartition = 0
    public var toDownNode = 0
    public var unroutable = 0
    /// Messages dropped because the receiver's inbound queue was full.
    public var shed = 0
    /// The most events (messages in flight, timers) queued at once.
    public var peakQueued = 0
    public init() {}
}

/// The discrete-event simulation of processes of type `P`.
public struct Simulation<P: SimulatedProcess> {
    public struct Node {
        public var process: P
        public internal(set) var up: Bool
        public internal(set) var traffic = SimTraffic()
        /// Bumped on crash/restart so stale timer events are ignored.
        var epoch = 0
        var wakeAt: Instant? = nil
        /// Partition group; messages flow only within a group.
        var group = 0
        /// With a processing cost: when the node's processor is free again, and how many
        /// received messages wait for it or are being handled.
        var busyUntil: Instant = .zero
        var inbound = 0
    }

    enum Event {
        case start(node: Int, epoch: Int)
        case wake(node: Int, epoch: Int, at: Instant)
        case deliver(to: String, fromAddress: String, from: Int, message: P.Message, bytes: Int)
        /// A received message whose processing ends now (only with a processing cost).
        case process(node: Int, epoch: Int, fromAddress: String, message: P.Message)
    }

    public private(set) var nodes: [Node] = []
    public private(set) var now: Instant
    public private(set) var stats = SimStats()
    public private(set) var eventsProcessed = 0
    /// True once a run stopped at `limits`.
    public private(set) var limitHit = false
    public var network: SimNetworkConfig
    /// Whether to compute `wireSize` of every message (it can dominate run time).
    public var measureBytes = true
    /// Whether to fold every event (time, node, kind, message digest) into `traceHash`.
    public var tracing = false
    /// A hash of the whole event trace when `tracing`: the same seed gives the same hash.
    public private(set) var traceHash: UInt64 = 0xcbf2_9ce4_8422_2325
    public let limits: SimLimits
    var prng: SeededPRNG
    var queue = EventHeap<Event>()
    var byAddress: [String: Int] = [:]

    public init(seed: UInt64, start: Instant = Instant(seconds: 1_700_000_000), network: SimNetworkConfig = SimNetworkConfig(), limits: SimLimits) {
        self.now = start
        self.network = network
        self.limits = limits
        self.prng = SeededPRNG(seed: seed)
    }

    /// A PRNG for the test or experiment driving the run, forked from the simulation's.
    public mutating func forkPRNG() -> SeededPRNG { prng.fork() }

    // MARK: Topology and faults

    /// Adds a process; it starts `after` from now. Returns its index.
    @discardableResult
    public mutating func add(_ process: P, after delay: Duration = .zero) -> Int {
        precondition(byAddress[process.address] == nil, "addresses are unique")
        let i = nodes.count
        nodes.append(Node(process: process, up: false))
        byAddress[process.address] = i
        queue.push(.start(node: i, epoch: 0), at: now + delay)
        return i
    }

    /// Crashes node `i`: it stops at once; messages to it are dropped; its state is kept
    /// for inspection until `restart`.
    public mutating func crash(_ i: Int) {
        let wasUp = nodes[i].up
        nodes[i].up = false
        nodes[i].epoch += 1
        nodes[i].wakeAt = nil
        nodes[i].inbound = 0          // what it was processing dies with it
        nodes[i].busyUntil = now
        guard wasUp else { return }
        let address = nodes[i].process.address
        for j in nodes.indices where j != i && nodes[j].up && nodes[j].group == nodes[i].group {
            let sends = nodes[j].process.peerCrashed(address: address, now: now)
            route(sends, from: j)
            rearm(j)
        }
    }

    /// Replaces node `i`'s process (same address) and starts it `after` from now.
    public mutating func restart(_ i: Int, with process: P, after delay: Duration = .zero) {
        precondition(process.address == nodes[i].process.address, "a restarted node keeps its address")
        crash(i)
        nodes[i].process = process
        queue.push(.start(node: i, epoch: nodes[i].epoch), at: now + delay)
    }

    /// Splits the network: each listed set is one side; unlisted nodes form one more side.
    /// Messages between sides are dropped (also those already in flight).
    public mutating func partition(_ sides: [[Int]]) {
        for i in nodes.indices { nodes[i].group = 0 }
        for (g, side) in sides.enumerated() {
            for i in side { nodes[i].group = g + 1 }
        }
    }

    /// Ends every partition.
    public mutating func heal() {
        for i in nodes.indices { nodes[i].group = 0 }
    }

    /// Delivers an external input to node `i` now (e.g. a `leave` or an `updateLocal`)
    /// and routes what it sends. Ignored when the node is down.
    public mutating func perform(on i: Int, _ input: (inout P, Instant) -> [SimSend<P.Message>]) {
        guard nodes[i].up else { return }
        let sends = input(&nodes[i].process, now)
        route(sends, from: i)
        rearm(i)
    }

    // MARK: Running

    /// Processes events up to and including `deadline` (capped at `limits.maxTime`); then
    /// `now == deadline`. Returns false when a limit stopped it.
    @discardableResult
    public mutating func run(until deadline: Instant) -> Bool { runLoop(until: deadline) }

    /// The event loop behind `run(until:)`. Process types in this module add a constrained
    /// `run(until:)` that calls it, so the loop is specialized for them here: a generic call
    /// from another module runs unspecialized (metadata lookups, boxed copies of every
    /// event), which cost the scenario runner about a third of its time.
    mutating func runLoop(until deadline: Instant) -> Bool {
        let end = min(deadline, limits.maxTime)
        while let t = queue.peekTime, t <= end {
            guard eventsProcessed < limits.maxEvents else {
                limitHit = true
                return false
            }
            if queue.count > stats.peakQueued { stats.peakQueued = queue.count }
            let e = queue.pop()!
            now = t
            eventsProcessed += 1
            handle(e)
        }
        if end > now { now = end }
        if deadline > limits.maxTime { limitHit = true }
        return !limitHit
    }

    /// `run(until: now + span)`.
    @discardableResult
    public mutating func run(for span: Duration) -> Bool { run(until: now + span) }

    /// Runs in steps of `step` until `done` holds (checked after each step) or `timeout`
    /// elapses. Returns the time of the first step after which `done` held, or nil.
    public mutating func run(step: Duration, timeout: Duration, until done: (Self) -> Bool) -> Instant? {
        precondition(step > .zero)
        let end = now + timeout
        while now < end {
            guard run(until: min(now + step, end)) else { return nil }
            if done(self) { return now }
        }
        return nil
    }

    mutating func handle(_ e: Event) {
        switch e {
        case .start(let i, let epoch):
            guard nodes[i].epoch == epoch, !nodes[i].up else { return }
            if tracing { trace(i, 1, 0) }
            nodes[i].up = true
            let sends = nodes[i].process.start(now: now)
            route(sends, from: i)
            rearm(i)
        case .wake(let i, let epoch, let at):
            guard nodes[i].up, nodes[i].epoch == epoch, nodes[i].wakeAt == at else { return }
            if tracing { trace(i, 2, 0) }
            nodes[i].wakeAt = nil
            let sends = nodes[i].process.tick(now: now)
            route(sends, from: i)
            rearm(i)
        case .deliver(let to, let fromAddress, let from, let message, let bytes):
            guard let i = byAddress[to] else {
                stats.unroutable += 1
                bounce(message, to: to, from: from)
                return
            }
            guard nodes[i].up else {
                stats.toDownNode += 1
                bounce(message, to: to, from: from)
                return
            }
            guard nodes[i].group == nodes[from].group else {
                stats.blockedByPartition += 1
                if nodes[from].process.isReliable(message) { bounce(message, to: to, from: from) }
                return
            }
            if network.hasProcessingCost {
                guard nodes[i].inbound < network.inboundLimit else {
                    stats.shed += 1
                    return
                }
                nodes[i].inbound += 1
                nodes[i].busyUntil = max(nodes[i].busyUntil, now) + network.receiveCost
                queue.push(.process(node: i, epoch: nodes[i].epoch, fromAddress: fromAddress, message: message), at: nodes[i].busyUntil)
                nodes[i].traffic.messagesReceived += 1
                nodes[i].traffic.bytesReceived += bytes
                return
            }
            nodes[i].traffic.messagesReceived += 1
            nodes[i].traffic.bytesReceived += bytes
            receive(message, at: i, fromAddress: fromAddress)
        case .process(let i, let epoch, let fromAddress, let message):
            guard nodes[i].epoch == epoch else { return }
            nodes[i].inbound -= 1
            guard nodes[i].up else { return }
            receive(message, at: i, fromAddress: fromAddress)
        }
    }

    mutating func receive(_ message: P.Message, at i: Int, fromAddress: String) {
        stats.delivered += 1
        if tracing { trace(i, 3, nodes[i].process.traceDigest(of: message)) }
        let sends = nodes[i].process.receive(message, fromAddress: fromAddress, now: now)
        route(sends, from: i)
        rearm(i)
    }

    /// A refused connection: the sender learns at once (if it is still up).
    mutating func bounce(_ message: P.Message, to address: String, from i: Int) {
        guard nodes[i].up else { return }
        let sends = nodes[i].process.undeliverable(message, to: address, now: now)
        route(sends, from: i)
        rearm(i)
    }

    mutating func trace(_ node: Int, _ kind: UInt8, _ digest: UInt64) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(25)
        for v in [UInt64(bitPattern: now.nanoseconds), UInt64(node), digest] {
            for k in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(k)))) }
        }
        bytes.append(kind)
        traceHash = SimTrace.fnv(bytes, seed: traceHash)
    }

    mutating func route(_ sends: [SimSend<P.Message>], from i: Int) {
        let fromAddress = nodes[i].process.address
        for s in sends {
            let bytes = measureBytes ? nodes[i].process.wireSize(of: s.message) : 0
            stats.sent += 1
            nodes[i].traffic.messagesSent += 1
            nodes[i].traffic.bytesSent += bytes
            if prng.bernoulli(network.lossProbability) && !nodes[i].process.isReliable(s.message) {
                stats.lost += 1
                continue
            }
            let spread = UInt64(max(0, (network.maxDelay - network.minDelay).nanoseconds))
            let delay = network.minDelay.nanoseconds + Int64(spread == 0 ? 0 : prng.next() % (spread + 1))
            // A busy sender's message leaves once its processor got to it.
            var leaves = now
            if network.sendCost > .zero {
                nodes[i].busyUntil = max(nodes[i].busyUntil, now) + network.sendCost
                leaves = nodes[i].busyUntil
            }
            queue.push(.deliver(to: s.to, fromAddress: fromAddress, from: i, message: s.message, bytes: bytes), at: leaves + .nanoseconds(delay))
        }
    }

    /// Schedules a wake-up at the process's deadline when it is earlier than the one armed.
    mutating func rearm(_ i: Int) {
        guard nodes[i].up, let d = nodes[i].process.nextDeadline else { return }
        let at = max(d, now + .nanoseconds(1))
        if let armed = nodes[i].wakeAt, armed <= at { return }
        nodes[i].wakeAt = at
        queue.push(.wake(node: i, epoch: nodes[i].epoch, at: at), at: at)
    }
}

/// A binary min-heap of events keyed by (time, insertion sequence): FIFO among equal times.
///
/// The heap orders plain keys; events wait in a slab of slots (reused through a free
/// list), so sifting moves 24-byte keys instead of copying (and retaining) events.
struct EventHeap<Element> {
    private struct Key {
        var time: Int64
        var seq: UInt64
        var slot: Int
    }

    private var keys: [Key] = []
    private var slots: [Element?] = []
    private var free: [Int] = []
    private var nextSeq: UInt64 = 0

    var count: Int { keys.count }
    var peekTime: Instant? { keys.first.map { Instant(nanoseconds: $0.time) } }

    mutating func push(_ e: Element, at time: Instant) {
        let slot: Int
        if let f = free.popLast() {
            slot = f
            slots[f] = e
        } else {
            slot = slots.count
            slots.append(e)
        }
        keys.append(Key(time: time.nanoseconds, seq: nextSeq, slot: slot))
        nextSeq += 1
        var c = keys.count - 1
        while c > 0 {
            let p = (c - 1) / 2
            guard Self.less(keys[c], keys[p]) else { break }
            keys.swapAt(c, p)
            c = p
        }
    }

    mutating func pop() -> Element? {
        guard !keys.isEmpty else { return nil }
        keys.swapAt(0, keys.count - 1)
        let top = keys.removeLast()
        var p = 0
        while true {
            let l = 2 * p + 1, r = l + 1
            var m = p
            if l < keys.count && Self.less(keys[l], keys[m]) { m = l }
            if r < keys.count && Self.less(keys[r], keys[m]) { m = r }
            if m == p { break }
            keys.swapAt(p, m)
            p = m
        }
        let e = slots[top.slot].take()
        free.append(top.slot)
        return e
    }

    private static func less(_ a: Key, _ b: Key) -> Bool {
        a.time != b.time ? a.time < b.time : a.seq < b.seq
    }
}
