import WWWCore

/// What simulated nodes send each other. `peer` is a signed envelope of the real shell;
/// `offer`, `connection` and `closed` model the offer's HTTP connection (its request body,
/// the answer and stream events coming back, and the requester closing it).
public enum SimWire: Hashable, Sendable {
    /// A one-way peer message; `from` is the authenticated sender.
    case peer(PeerMessage, from: NodeID)
    /// Opens an offer connection: the offer, the requester's stream for it, and the job's
    /// size (the real shell sends the prompt).
    case offer(OfferMessage, from: NodeID, stream: StreamID, job: SimJobSpec)
    /// Executor → requester over an offer connection.
    case connection(stream: StreamID, ConnectionEvent)
    /// Requester → executor: the requester closed the connection of `job`.
    case closed(job: JobID, from: NodeID)
}

/// What comes back over an offer connection.
public enum ConnectionEvent: Hashable, Sendable {
    case answer(Signed<OfferAnswer>)
    case stream(StreamEvent)
}

/// Settings of a simulated node.
public struct SimNodeConfig: Sendable {
    public var machine: NodeMachineConfig
    public var membership: MembershipConfig
    public var ledger: LedgerConfig
    public var replication: LedgerReplicationConfig
    /// Gossip period.
    public var period: Duration
    public var declaredStake: Credits
    public var engine: SimEngineProfile
    /// How this node judges duels (with `machine.duel.judge`); nil: it abstains.
    public var judge: SimJudge?
    /// How far this node's clock is ahead of true time (negative: behind). The machine
    /// sees skewed time; its timers fire at the matching true time.
    public var clockSkew: Duration = .zero
    /// Nodes without backends in `machine` are pure requesters.
    public init(machine: NodeMachineConfig = NodeMachineConfig(), membership: MembershipConfig = MembershipConfig(),
                ledger: LedgerConfig = LedgerConfig(), replication: LedgerReplicationConfig = LedgerReplicationConfig(),
                period: Duration = .seconds(1), declaredStake: Credits = Credits(credits: 10),
                engine: SimEngineProfile = SimEngineProfile()) {
        self.machine = machine
        self.membership = membership
        self.ledger = ledger
        self.replication = replication
        self.period = period
        self.declaredStake = declaredStake
        self.engine = engine
    }

    /// One backend serving `model` with `capacity` slots.
    public static func provider(model: String = "m", capacity: Int = 2, stake: Credits = Credits(credits: 10),
                                policy: SchedulingPolicy = SchedulingPolicy()) -> SimNodeConfig {
        var c = SimNodeConfig(machine: NodeMachineConfig(backends: [LocalBackendConfig(name: "engine", models: [ModelDescriptor(name: model)],
                                                                                      capacity: capacity)], policy: policy))
        c.declaredStake = stake
        return c
    }

    /// No backends: every request is offloaded.
    public static func requester(policy: SchedulingPolicy = SchedulingPolicy()) -> SimNodeConfig {
        SimNodeConfig(machine: NodeMachineConfig(backends: [], policy: policy), declaredStake: .zero)
    }
}

/// A judge for simulations. Scripted (`quality`): it prefers the answer of the executor
/// with the higher score (equal or unknown: a tie), in both orders; `positionBias` makes it
/// answer "A" whatever the pair (a weak model), which `BothOrders` turns into a tie.
/// Modelled (`strengths`, Bradley–Terry): the judge believes the first answer is better
/// with probability s₁ / (s₁ + s₂) (one draw per pair); then each of its two calls is, with
/// probability `noise`, a coin flip, else with probability `biasRate` "A", else its belief.
public struct SimJudge: Hashable, Sendable {
    public var quality: [NodeID: Int]
    public var positionBias: Bool
    /// Modelled judging: the executors' answer strengths (empty: scripted).
    public var strengths: [NodeID: Double] = [:]
    public var noise: Double = 0
    public var biasRate: Double = 0

    public init(quality: [NodeID: Int], positionBias: Bool = false) {
        self.quality = quality
        self.positionBias = positionBias
    }

    public init(strengths: [NodeID: Double], noise: Double = 0, biasRate: Double = 0) {
        self.quality = [:]
        self.positionBias = false
        self.strengths = strengths
        self.noise = noise
        self.biasRate = biasRate
    }

    /// The preferences of the (first, second) call and the (second, first) call.
    public func judge(_ spec: DuelPairSpec) -> (PairwisePreference, PairwisePreference) {
        if positionBias { return (.a, .a) }
        let q1 = quality[spec.first] ?? 0, q2 = quality[spec.second] ?? 0
        if q1 > q2 { return (.a, .b) }
        if q2 > q1 { return (.b, .a) }
        return (.tie, .tie)
    }

    /// Modelled judging with the judge's own generator.
    public func judge(_ spec: DuelPairSpec, prng: inout SeededPRNG) -> (PairwisePreference, PairwisePreference) {
        guard !strengths.isEmpty else { return judge(spec) }
        let s1 = strengths[spec.first] ?? 0.5, s2 = strengths[spec.second] ?? 0.5
        let firstBetter = prng.nextUnit() < s1 / max(s1 + s2, 1e-12)
        func call(firstShownAs a: Bool) -> PairwisePreference {
            if prng.bernoulli(noise) { return prng.bernoulli(0.5) ? .a : .b }
            if prng.bernoulli(biasRate) { return .a }
            return firstBetter == a ? .a : .b
        }
        return (call(firstShownAs: true), call(firstShownAs: false))
    }
}

/// What a simulated node's disk holds (for crash-restarts).
public struct SimNodeStore: Hashable, Sendable {
    public var log = SimEventLog()
    /// Every stored event, in restore order.
    public var events: [LedgerEvent] { log.all }
    public var jobSequence: UInt64 = 0
    public var incarnation: UInt64 = 0
    public init() {}
}

/// How one user request ended, as its user saw it.
public struct SimRequestResult: Hashable, Sendable {
    public var model: String
    public var arrival: Instant
    /// When the first content reached the user.
    public var committedAt: Instant?
    public var executor: NodeID?
    public var finishedAt: Instant?
    /// Set when the request failed (before or after the commit).
    public var failure: RequestFailure?
    public var isComplete: Bool { finishedAt != nil && failure == nil }
}

/// Counters of one simulated node (what the shell turns into metrics).
public struct SimNodeCounters: Hashable, Sendable {
    public var offersAccepted = 0
    public var offersRejected: [OfferRejectionReason: Int] = [:]
    public var requesterOutcomes: [OfferOutcome: Int] = [:]
    public var receiptsRecorded = 0
    public var receiptsRefused = 0
    public var eventsRejected = 0
    public var equivocationsSeen = 0
    public var duelsStarted = 0
    public var duelsSettled = 0
    public var duelsAbandoned = 0
    public var lastAbandon: DuelAbandonReason?
    public var verdictsSent = 0
    public var localInferences = 0
    public var executedJobs = 0
    /// Offers sent, and when the last one went, per executor.
    public var offersSent = 0
    public var lastOfferTo: [NodeID: Instant] = [:]
    public init() {}
}

/// A simulated node: the product's own `NodeMachine` plus a modelled engine per backend.
/// This is the simulator's shell: it turns directives into simulated messages, timers and
/// engine work, and engine and network events into machine inputs — as `NodeRuntime`
/// does with HTTP, SQLite and real engines. No protocol logic lives here.
public struct SimNode: MembershipMember {
    public typealias Message = SimWire

    public let index: Int
    public let address: String
    public private(set) var machine: NodeMachine
    public let config: SimNodeConfig
    public private(set) var store: SimNodeStore
    public private(set) var results: [RequestID: SimRequestResult] = [:]
    public private(set) var counters = SimNodeCounters()
    private var timers: [NodeTimer: Instant] = [:]
    private var engines: [String: SimEngine] = [:]
    /// The modelled judge's draws (seeded from the node's index).
    private var judgePRNG: SeededPRNG
    /// The KV-cache use last told to the machine, per backend.
    private var reportedKV: [String: Double] = [:]
    /// The backend each running local stream is on.
    private var streamBackend: [StreamID: String] = [:]
    /// Users' request sizes.
    private var payloads: [RequestID: SimJobSpec] = [:]
    /// Executor side: open offer connections by job.
    private var inbound: [JobID: (spec: SimJobSpec, requester: String, stream: StreamID)] = [:]
    private var executorStreams: [StreamID: JobID] = [:]
    /// Requester side: open offer connections by stream.
    private var outbound: [StreamID: (executor: String, job: JobID)] = [:]
    private var nextRequest: UInt64 = 1
    public static let envelopeOverhead = 320

    /// - Parameters:
    ///   - restored: what the node's disk held (a restart), or nil for a fresh node.
    public init(index: Int, genesis: Genesis, seeds: [String], config: SimNodeConfig, restored: SimNodeStore? = nil,
                seed: UInt64) {
        self.index = index
        self.address = SimAddress.of(index)
        self.judgePRNG = SeededPRNG(seed: seed ^ 0x4A55_4447)
        self.config = config
        var store = restored ?? SimNodeStore()
        store.incarnation += restored == nil ? 0 : 1
        self.store = store
        let setup = NetworkSetup(
            genesis: genesis, signer: SimSigner(index: index), crypto: SimCrypto(), address: address, seeds: seeds,
            membership: config.membership, ledger: config.ledger, replication: config.replication, period: config.period,
            declaredStake: config.declaredStake,
            restored: NodeRestoreState(events: store.events, genesis: genesis, crypto: SimCrypto(), config: config.ledger,
                                       incarnation: store.incarnation, jobSequenceFloor: store.jobSequence))
        machine = NodeMachine(config: config.machine, network: setup, seed: seed)
        nodeID = setup.signer.nodeID
        for b in config.machine.backends { engines[b.name] = SimEngine(profile: config.engine, capacity: b.capacity) }
    }

    public let nodeID: NodeID
    public var membership: Membership { machine.membership! }
    public var isParticipating: Bool { machine.phase == .running }
    public var ledger: Ledger { machine.ledger! }
    /// Requests running on this node's engines now (not those waiting).
    public var runningOnEngines: Int { engines.values.reduce(0) { $0 + $1.runningCount } }

    // MARK: SimulatedProcess

    public var nextDeadline: Instant? {
        var next: Instant? = nil
        func consider(_ t: Instant?) { if let t, next.map({ t < $0 }) ?? true { next = t } }
        for t in timers.values { consider(t) }
        for i in engines.values.indices { consider(engines.values[i].nextEvent) }   // in place, not a copy per engine
        return next
    }

    public mutating func start(now: Instant) -> [SimSend<SimWire>] { run(.start, now: now) }

    public mutating func tick(now: Instant) -> [SimSend<SimWire>] {
        var out: [SimSend<SimWire>] = []
        // Engine events first, then timers, each in a fixed order.
        for name in engines.keys.sorted() {
            let events = engines[name]!.due(now: now)
            for (s, e) in events { out += engineEvent(s, e, now: now) }
            // As the shell reports an engine's KV-cache use from /ready: on a change of 5 %.
            let kv = engines[name]!.kvUsage
            if abs(kv - (reportedKV[name] ?? 0)) >= 0.05 {
                reportedKV[name] = kv
                out += run(.backendHealth(backend: name, healthy: true, kvCacheUsage: kv), now: now)
            }
        }
        let due = timers.filter { $0.value <= now }.sorted { ($0.value, $0.key) < ($1.value, $1.key) }
        for (t, at) in due where timers[t] == at {
            timers[t] = nil
            out += run(.timer(t), now: now)
        }
        return out
    }

    public mutating func receive(_ m: SimWire, fromAddress: String, now: Instant) -> [SimSend<SimWire>] {
        switch m {
        case .peer(let pm, let from):
            return run(.peerMessage(pm, from: from, fromAddress: fromAddress), now: now)
        case .offer(let offer, let from, let stream, let spec):
            inbound[offer.job] = (spec, fromAddress, stream)
            var out = run(.peerMessage(.offer(offer), from: from, fromAddress: fromAddress), now: now)
            if inbound[offer.job]?.stream == stream, executorStreams.values.contains(offer.job) == false,
               !out.contains(where: { if case .connection(let s, _) = $0.message { s == stream } else { false } }) {
                // The machine did not answer (not running): the connection fails.
                inbound[offer.job] = nil
                out.append(SimSend(to: fromAddress, message: .connection(stream: stream, .stream(.failed(.connectionLost)))))
            }
            return out
        case .connection(let s, let event):
            guard outbound[s] != nil else { return [] }
            switch event {
            case .answer(let a):
                return run(.peerMessage(.offerAnswer(a), from: a.signer, fromAddress: fromAddress), now: now)
            case .stream(let e):
                if case .firstContent = e {} else { outbound[s] = nil }
                return run(.stream(s, e), now: now)
            }
        case .closed(let job, _):
            guard let s = executorStreams.first(where: { $0.value == job })?.key else {
                inbound[job] = nil
                return []
            }
            return run(.stream(s, .failed(.connectionLost)), now: now)
        }
    }

    /// A message to a down or unknown address: offers fail at once (connection refused).
    /// On a connection (an answer or stream event that cannot reach the requester), the
    /// executor's write fails: the requester is gone.
    public mutating func undeliverable(_ m: SimWire, to address: String, now: Instant) -> [SimSend<SimWire>] {
        switch m {
        case .offer(_, _, let s, _):
            guard outbound[s] != nil else { return [] }
            outbound[s] = nil
            return run(.stream(s, .failed(.connectionLost)), now: now)
        case .connection(let rs, _):
            guard let job = inbound.first(where: { $0.value.stream == rs && $0.value.requester == address })?.key,
                  let s = executorStreams.first(where: { $0.value == job })?.key else { return [] }
            return run(.stream(s, .failed(.connectionLost)), now: now)
        case .peer, .closed:
            return []
        }
    }

    /// The node at `address` crashed: its connections with this node break.
    public mutating func peerCrashed(address crashed: String, now: Instant) -> [SimSend<SimWire>] {
        var out: [SimSend<SimWire>] = []
        for (s, o) in outbound.sorted(by: { $0.key < $1.key }) where o.executor == crashed {
            outbound[s] = nil
            out += run(.stream(s, .failed(.connectionLost)), now: now)
        }
        for (s, job) in executorStreams.sorted(by: { $0.key < $1.key }) where inbound[job]?.requester == crashed {
            out += run(.stream(s, .failed(.connectionLost)), now: now)
        }
        return out
    }

    public func wireSize(of m: SimWire) -> Int {
        switch m {
        case .peer(let pm, _): return pm.canonical.bytes.count + Self.envelopeOverhead
        case .offer(let o, _, _, let spec): return o.canonical.bytes.count + 4 * spec.promptTokens + Self.envelopeOverhead
        case .connection: return 200
        case .closed: return 0
        }
    }

    /// Offer connections are TCP: their messages are not lost at random.
    public func isReliable(_ m: SimWire) -> Bool {
        if case .peer = m { return false }
        return true
    }

    public func traceDigest(of m: SimWire) -> UInt64 {
        let bytes: [UInt8]
        switch m {
        case .peer(let pm, let from): bytes = from.bytes + pm.canonical.bytes
        case .offer(let o, let from, let s, let spec):
            bytes = from.bytes + o.canonical.bytes + Array("\(s.raw)/\(spec.promptTokens)/\(spec.outputTokens)".utf8)
        case .connection(let s, .answer(let a)): bytes = Array("\(s.raw)".utf8) + a.value.canonical.bytes
        case .connection(let s, .stream(let e)): bytes = Array("\(s.raw) \(e)".utf8)
        case .closed(let job, let from): bytes = job.bytes + from.bytes
        }
        return SimTrace.fnv(bytes)
    }

    // MARK: External inputs

    /// A user request arrives here now; returns its id.
    public mutating func submit(model: String, job: SimJobSpec, timeout: Duration = .seconds(300), allowOffload: Bool = true,
                                now: Instant) -> (RequestID, [SimSend<SimWire>]) {
        let id = RequestID(nextRequest)
        nextRequest += 1
        payloads[id] = job
        results[id] = SimRequestResult(model: model, arrival: now)
        let deadline = now + config.clockSkew + timeout   // on this node's clock
        return (id, run(.userRequest(id, UserRequestSpec(model: model, allowOffload: allowOffload, deadline: deadline)), now: now))
    }

    /// The user of `id` goes away.
    public mutating func userGone(_ id: RequestID, now: Instant) -> [SimSend<SimWire>] { run(.userGone(id), now: now) }

    /// Leaves the network gracefully.
    public mutating func leave(now: Instant) -> [SimSend<SimWire>] { run(.leave, now: now) }

    /// Feeds any input (tests).
    public mutating func input(_ i: NodeInput, now: Instant) -> [SimSend<SimWire>] { run(i, now: now) }

    // MARK: The interpreter

    /// Runs one input and then, as `NodeRuntime` does, the conflicts its writes found (each
    /// conflict input writes nothing new, so the loop ends).
    private mutating func run(_ input: NodeInput, now: Instant) -> [SimSend<SimWire>] {
        var out: [SimSend<SimWire>] = []
        var pending = [input]
        var rounds = 0
        while rounds < 64, let next = pending.popLast() {
            rounds += 1
            var followUps: [NodeInput] = []
            for d in machine.handle(next, now: now + config.clockSkew) { execute(d, now: now, followUps: &followUps, into: &out) }
            pending += followUps.reversed()
        }
        return out
    }

    private mutating func execute(_ d: NodeDirective, now: Instant, followUps: inout [NodeInput],
                                  into out: inout [SimSend<SimWire>]) {
        switch d {
        case .send(let m, _, let address):
            if case .offerAnswer(let a) = m {
                guard let c = inbound[a.value.job] else { return }
                out.append(SimSend(to: c.requester, message: .connection(stream: c.stream, .answer(a))))
                if !a.value.accepted { inbound[a.value.job] = nil }
                return
            }
            out.append(SimSend(to: address, message: .peer(m, from: nodeID)))
        case .setTimer(let t, let at): timers[t] = at - config.clockSkew
        case .cancelTimer(let t): timers[t] = nil
        case .persistEvents(let events):
            followUps += store.log.append(events).map { .storedConflict(stored: $0.stored, written: $0.written) }
        case .sendLedgerSync(var m, let fill, _, let address):
            m.events += store.log.events(in: fill)
            out.append(SimSend(to: address, message: .peer(.ledgerSync(m), from: nodeID)))
        case .persistJobSequence(let n): store.jobSequence = n
        case .runInference(let s, let job): startInference(s, job, now: now)
        case .openOffer(let s, let to, let address, let offer, let request):
            outbound[s] = (address, offer.job)
            counters.offersSent += 1
            counters.lastOfferTo[to] = now
            let spec = payloads[request] ?? SimJobSpec(promptTokens: 0, outputTokens: 1)
            out.append(SimSend(to: address, message: .offer(offer, from: nodeID, stream: s, job: spec)))
        case .cancelStream(let s): cancel(s, now: now, into: &out)
        case .respond(let id, let r): record(id, r, now: now)
        case .notify(let e): count(e)
        case .collectAnswer, .dropAnswers, .drainStream:
            break   // simulated answers have no text: judges judge by the executors' modelled quality
        case .requestJudgements(let spec, let judges):
            for (_, address) in judges.sorted(by: { $0.key < $1.key }) {
                out.append(SimSend(to: address, message: .peer(.judgeRequest(spec), from: nodeID)))
            }
        case .runJudgement(let spec):
            var o: PairwisePreference?, w: PairwisePreference?
            if let j = config.judge { (o, w) = j.judge(spec, prng: &judgePRNG) }
            followUps.append(.judgement(job: spec.job, original: o, swapped: w))
        }
    }

    private mutating func startInference(_ s: StreamID, _ job: InferenceJob, now: Instant) {
        let spec: SimJobSpec
        switch job.owner {
        case .user(let id):
            spec = payloads[id] ?? SimJobSpec(promptTokens: 0, outputTokens: 1)
            counters.localInferences += 1
        case .peer(let j, _):
            spec = inbound[j]?.spec ?? SimJobSpec(promptTokens: 0, outputTokens: 1)
            executorStreams[s] = j
            counters.executedJobs += 1
        }
        streamBackend[s] = job.backend
        engines[job.backend]?.start(s, spec, now: now)
    }

    /// An engine event: to the machine, and for a peer's job also over its connection.
    private mutating func engineEvent(_ s: StreamID, _ e: StreamEvent, now: Instant) -> [SimSend<SimWire>] {
        var out: [SimSend<SimWire>] = []
        if let job = executorStreams[s], let c = inbound[job] {
            out.append(SimSend(to: c.requester, message: .connection(stream: c.stream, .stream(e))))
            if case .firstContent = e {} else {
                inbound[job] = nil
                executorStreams[s] = nil
            }
        }
        if case .firstContent = e {} else { streamBackend[s] = nil }
        return out + run(.stream(s, e), now: now)
    }

    private mutating func cancel(_ s: StreamID, now: Instant, into out: inout [SimSend<SimWire>]) {
        if let b = streamBackend.removeValue(forKey: s) { engines[b]?.cancel(s, now: now) }
        if let o = outbound.removeValue(forKey: s) {
            out.append(SimSend(to: o.executor, message: .closed(job: o.job, from: nodeID)))
        }
        if let job = executorStreams.removeValue(forKey: s) {
            if let c = inbound.removeValue(forKey: job) {
                out.append(SimSend(to: c.requester, message: .connection(stream: c.stream, .stream(.failed(.connectionLost)))))
            }
        }
    }

    private mutating func record(_ id: RequestID, _ r: UserResponse, now: Instant) {
        switch r {
        case .commit(_, let executor):
            results[id]?.committedAt = now
            results[id]?.executor = executor
        case .complete:
            results[id]?.finishedAt = now
        case .reject(let f), .abort(let f):
            results[id]?.finishedAt = now
            results[id]?.failure = f
        }
        if case .commit = r {} else { payloads[id] = nil }
    }

    private mutating func count(_ e: NodeEvent) {
        switch e {
        case .offer(.executor, .accepted): counters.offersAccepted += 1
        case .offer(.executor, .rejected(let r)): counters.offersRejected[r, default: 0] += 1
        case .offer(.requester, let o): counters.requesterOutcomes[o, default: 0] += 1
        case .receiptRecorded: counters.receiptsRecorded += 1
        case .receiptRefused: counters.receiptsRefused += 1
        case .ledgerEventRejected: counters.eventsRejected += 1
        case .equivocation: counters.equivocationsSeen += 1
        case .duelStarted: counters.duelsStarted += 1
        case .duelSettled: counters.duelsSettled += 1
        case .duelAbandoned(_, let reason): counters.duelsAbandoned += 1; counters.lastAbandon = reason
        case .verdictSent: counters.verdictsSent += 1
        default: break
        }
    }
}

/// FNV-1a 64, for trace digests.
public enum SimTrace {
    public static func fnv(_ bytes: [UInt8], seed: UInt64 = 0xcbf2_9ce4_8422_2325) -> UInt64 {
        var h = seed
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        return h
    }
}

extension Simulation where P == SimNode {
    /// `run(until:)`, specialized for `SimNode` in this module (see `runLoop`).
    @discardableResult
    public mutating func run(until deadline: Instant) -> Bool { runLoop(until: deadline) }

    /// `run(until: now + span)`, specialized.
    @discardableResult
    public mutating func run(for span: Duration) -> Bool { runLoop(until: now + span) }

    /// Adds node `index` at `SimAddress.of(index)`.
    @discardableResult
    public mutating func addNode(index: Int, genesis: Genesis, seeds: [String], config: SimNodeConfig,
                                 after delay: Duration = .zero) -> Int {
        add(SimNode(index: index, genesis: genesis, seeds: seeds, config: config, seed: SimNode.seed(of: index)), after: delay)
    }

    /// Crash-restarts node `i` from what it had persisted (events, job sequence, incarnation).
    public mutating func restartNode(_ i: Int, genesis: Genesis, seeds: [String], after delay: Duration = .zero) {
        let old = nodes[i].process
        let p = SimNode(index: old.index, genesis: genesis, seeds: seeds, config: old.config, restored: old.store,
                        seed: SimNode.seed(of: old.index) &+ old.store.incarnation &+ 1)
        restart(i, with: p, after: delay)
    }

    /// Submits a user request at node `i` now; nil when the node is down.
    @discardableResult
    public mutating func submit(at i: Int, model: String = "m", job: SimJobSpec = SimJobSpec(promptTokens: 200, outputTokens: 20),
                                timeout: Duration = .seconds(300), allowOffload: Bool = true) -> RequestID? {
        var id: RequestID?
        perform(on: i) { p, now in
            let (r, sends) = p.submit(model: model, job: job, timeout: timeout, allowOffload: allowOffload, now: now)
            id = r
            return sends
        }
        return id
    }

    /// Every participating node holds the same digest, event ids and balances, nothing buffered.
    public func ledgersConverged() -> Bool {
        let live = nodes.indices.filter { participates($0) }
        guard let first = live.first else { return true }
        let l0 = nodes[first].process.ledger
        let ids0 = nodes[first].process.store.log.ids
        return live.allSatisfy { i in
            let l = nodes[i].process.ledger
            return l.bufferedCount == 0 && l.digest() == l0.digest() && l.balances == l0.balances
                && l.equivocators == l0.equivocators && nodes[i].process.store.log.ids == ids0
        }
    }
}

extension SimNode {
    /// The PRNG seed of node `index`.
    public static func seed(of index: Int) -> UInt64 { UInt64(index) &* 0x9E37_79B9_7F4A_7C15 &+ 1 }
}
