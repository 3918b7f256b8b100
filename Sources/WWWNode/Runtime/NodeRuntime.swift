import AsyncHTTPClient
import Foundation
import Logging
import ServiceLifecycle
import WWWAPI
import WWWBackends
import WWWCore
import WWWCrypto
import WWWStore

/// The node shell's interpreter of `NodeMachine` (DESIGN.md §2): one funnel for every
/// input — user requests, peer messages, engine and peer streams, timers — into the
/// machine, and an executor of its directives.
///
/// The machine and the shell's tables live under one lock. `submit` feeds one input and
/// executes the directives in order while holding it: persistence (SQLite) runs
/// synchronously, so an event is on disk before anything that depends on it; everything
/// slow (HTTP, engines) is started as a task that reports back with `submit`. Tokens never
/// pass through here: sessions and offer connections move them (see `UserSession`,
/// `PeerRoutes`), and report control events only.
public final class NodeRuntime: Service, @unchecked Sendable {
    public let config: NodeConfig
    let pool: BackendPool
    let metrics: NodeMetrics
    let logger: Logger
    /// Set on network nodes.
    let peer: PeerContext?
    /// The PRNG seed of the machine (logged at start-up, `network.seed` to replay).
    public let seed: UInt64
    /// Chunks a stream may send before its first content (reasoning models send many).
    static let maxChunksBeforeContent = 100_000

    let lock = NSLock()
    var machine: NodeMachine
    var timers = TimerQueue()
    var sessions: [WWWCore.RequestID: UserSession] = [:]
    var streams: [StreamID: StreamEntry] = [:]
    /// Executor side: offers being answered, by job.
    var offerInbox: [JobID: OfferConnection] = [:]
    var nextRequest: UInt64 = 1
    var outstandingSends = 0
    static let maxOutstandingSends = 256
    /// The Lifeguard score last written to the metrics (under the lock).
    var reportedLocalHealth = -1
    /// Client connections' watches (see `ConnectionWatches`).
    public let connections = ConnectionWatches()
    /// Consecutive failed health probes per backend.
    var failedProbes: [String: Int] = [:]
    /// Duels (see `DuelShell.swift`): answer texts by job, the streams they come from, judge
    /// requests' texts waiting for `runJudgement`, and running judge tasks.
    var duelAnswers: [JobID: DuelAnswers] = [:]
    var collecting: [StreamID: CollectedStream] = [:]
    var judgeInbox: [JobID: JudgeMaterial] = [:]
    var judgeRuns: [JobID: Task<Void, Never>] = [:]
    /// This node's judge (`duel.judge`); nil: it does not judge.
    let judge: (any NodeJudge)?
    /// `experiment.cheat` (nil: an honest executor).
    let cheat: Cheat?
    private var loops: [Task<Void, Never>] = []
    private var started = false
    private var leaving = false

    /// Builds the machine from the config (policy parsed once; a bad policy throws).
    public init(config: NodeConfig, pool: BackendPool, metrics: NodeMetrics, logger: Logger) throws {
        self.config = config
        self.pool = pool
        self.metrics = metrics
        self.logger = logger
        let policy = try config.policy.schedulingPolicy()
        let machineConfig = NodeMachineConfig(
            backends: pool.entries.map { e in
                LocalBackendConfig(name: e.backend.name, models: e.backend.models.map(\.descriptor),
                                   capacity: e.backend.capacity, admissionLimit: e.admissionLimit)
            },
            policy: policy,
            queueTimeout: .milliseconds(Int64(config.node.queueTimeoutS * 1000)),
            maxPending: config.node.maxPending,
            cooldown: .milliseconds(Int64(config.node.cooldownS * 1000)),
            duel: config.duel?.machineConfig ?? DuelConfig())
        self.judge = try config.duel?.judge.makeJudge(pool: pool)
        self.cheat = config.experiment.flatMap { $0.cheat == .none ? nil : Cheat(section: $0) }
        if let d = config.duel {
            var meta: Logger.Metadata = ["run_duels": "\(d.runDuels)", "judge": "\(d.judge.kind.rawValue)"]
            if let r = judge as? ReferenceBookJudge { meta["references"] = "\(r.book.answers.count)"; meta["fallback"] = "\(r.fallback.rawValue)" }
            if let s = judge as? ScriptedJudge { meta["rule"] = "\(s.rule.rawValue)" }
            logger.info("duels", metadata: meta)
        }
        if let cheat {
            logger.warning("EXPERIMENT: this node's executor answers offloaded jobs with \(cheat.section.cheat.rawValue) on purpose (experiment.cheat); never run this for real users")
        }
        let seed = config.network?.seed ?? UInt64.random(in: .min ... .max)
        self.seed = seed
        if let section = config.network {
            let (ctx, setup) = try PeerContext.open(config: config, section: section, logger: logger)
            self.peer = ctx
            self.machine = NodeMachine(config: machineConfig, network: setup, seed: seed)
            let summary = machine.restoreSummary
            logger.info("network identity", metadata: [
                "node": "\(ctx.key.nodeID.hex)", "network": "\(ctx.genesis.networkID)", "seed": "\(seed)",
                "restored_events": "\(summary?.restored ?? 0)", "incarnation": "\(setup.restored.incarnation)",
            ])
        } else {
            self.peer = nil
            self.machine = NodeMachine(config: machineConfig, network: nil, seed: seed)
            logger.info("scheduler seed", metadata: ["seed": "\(seed)"])
        }
    }

    /// This node's id on a network.
    public var nodeID: NodeID? { peer?.key.nodeID }

    // MARK: Service

    /// Starts the machine, its timers and the backend health probes. Idempotent.
    public func start() {
        let first = lock.withLock {
            defer { started = true }
            return !started
        }
        guard first else { return }
        submit(.start)
        let timerLoop = Task<Void, Never> { [weak self] in await self?.runTimers() }
        let healthLoop = Task<Void, Never> { [weak self] in await self?.probeBackends() }
        lock.withLock { loops = [timerLoop, healthLoop] }
    }

    public func run() async throws {
        start()
        try? await gracefulShutdown()
        await leave()
        stop()
    }

    /// Gossips `left` and waits (at most a second) for the sends to go out. Once.
    func leave() async {
        let first: Bool = lock.withLock {
            defer { leaving = true }
            return !leaving
        }
        guard first else { return }
        submit(.leave)
        for _ in 0..<20 where lock.withLock({ outstandingSends }) > 0 {
            try? await Task.sleep(for: .milliseconds(50))
        }
        if peer != nil { logger.info("left the network") }
    }

    func stop() {
        lock.withLock {
            for l in loops { l.cancel() }
            loops = []
            timers.stop()
        }
    }

    // MARK: The funnel

    /// Feeds one input to the machine at the wall clock's now and executes its directives.
    func submit(_ input: NodeInput) {
        lock.lock()
        defer { lock.unlock() }
        let now = wallClockNow()
        var pending = [input]
        var rounds = 0
        while rounds < 64, let next = pending.popLast() {
            rounds += 1
            pending += execute(machine.handle(next, now: now), now: now)
        }
        if let health = machine.membership?.localHealth, health != reportedLocalHealth {
            reportedLocalHealth = health
            metrics.membershipLocalHealth(health)
        }
    }

    /// Runs directives in order (under the lock). A failed write skips the peer messages
    /// and offers after it in the batch: nothing that depends on unwritten state leaves.
    /// Returns the conflicts the store found while writing, as inputs to feed next.
    private func execute(_ directives: [NodeDirective], now: Instant) -> [NodeInput] {
        var writeFailed = false
        var conflicts: [NodeInput] = []
        for d in directives {
            switch d {
            case .persistEvents(let events):
                let written = persist(events)
                writeFailed = written == nil || writeFailed
                conflicts += written ?? []
            case .sendLedgerSync(let m, let fill, let to, let address):
                if writeFailed { metrics.peerMessage(kind: "ledger", outcome: "skipped_after_write_failure"); continue }
                sendLedgerSync(m, fill: fill, to: to, address: address)
            case .persistJobSequence(let n):
                writeFailed = !persistJobSequence(n) || writeFailed
            case .send(let m, let to, let address):
                if writeFailed { metrics.peerMessage(kind: m.kind.rawValue, outcome: "skipped_after_write_failure"); continue }
                send(m, to: to, address: address)
            case .openOffer(let s, let to, let address, let offer, let request):
                if writeFailed {
                    failLater(s, .connectionLost)
                    continue
                }
                openOffer(s, to: to, address: address, offer: offer, request: request)
            case .setTimer(let t, let at): timers.set(t, at: at)
            case .cancelTimer(let t): timers.cancel(t)
            case .runInference(let s, let job): runInference(s, job)
            case .cancelStream(let s): cancelStream(s)
            case .respond(let id, let r): respond(id, r)
            case .notify(let e): observe(e)
            case .collectAnswer(let s, let job): collectAnswer(s, job: job)
            case .drainStream(let s): drainStream(s)
            case .requestJudgements(let spec, let judges):
                if writeFailed { metrics.duelJudgeRequests(outcome: "skipped_after_write_failure", count: judges.count); continue }
                requestJudgements(spec, judges: judges)
            case .dropAnswers(let job): dropAnswers(job: job)
            case .runJudgement(let spec):
                if let abstain = runJudgement(spec) { conflicts.append(abstain) }
            }
        }
        return conflicts
    }

    /// Writes `events`; nil when the write failed, else the `.storedConflict` inputs for
    /// equivocations the store found (a candidate event meeting a different stored one).
    private func persist(_ events: [LedgerEvent]) -> [NodeInput]? {
        guard let peer else { return [] }
        do {
            let outcome = try peer.store.append(events)
            metrics.ledgerEvents(outcome.inserted)
            return try outcome.equivocations.compactMap { eq in
                guard let written = events.first(where: { $0.idHex == eq.firstID || $0.idHex == eq.secondID }),
                      let stored = try peer.store.event(id: written.idHex == eq.firstID ? eq.secondID : eq.firstID)
                else { return nil }
                return .storedConflict(stored: stored, written: written)
            }
        } catch {
            metrics.error(type: "store")
            logger.error("could not persist ledger events; dependent messages are not sent", metadata: ["error": "\(error)"])
            return nil
        }
    }

    private func persistJobSequence(_ n: UInt64) -> Bool {
        guard let peer else { return true }
        do {
            try peer.store.setState("job_seq", String(n))
            return true
        } catch {
            metrics.error(type: "store")
            logger.error("could not persist the job sequence; offers are not sent", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Reports a stream failure from a fresh task (never re-entering the lock).
    func failLater(_ s: StreamID, _ f: RelayFailure) {
        Task { self.submit(.stream(s, .failed(f))) }
    }

    // MARK: Timers

    private func runTimers() async {
        while !Task.isCancelled {
            let now = wallClockNow()
            let due = lock.withLock { timers.popDue(now: now) }
            for t in due { submit(.timer(t)) }
            let target = lock.withLock { timers.earliest } ?? (now + .seconds(1))
            let delay = target - wallClockNow()
            guard delay > .zero else { continue }
            let sleeper = Task<Void, Never> { try? await Task.sleep(for: .nanoseconds(delay.nanoseconds)) }
            let earlier = lock.withLock {
                timers.sleeping(until: target, task: sleeper)
                return (timers.earliest ?? target) < target
            }
            if earlier { sleeper.cancel() }
            await sleeper.value
            lock.withLock { timers.awake() }
        }
    }

    // MARK: Backend health

    /// Probes each backend's health (cheaply: a managed engine's supervisor state, an HTTP
    /// engine's `/health`) and tells the machine, so requests never wait on an engine known
    /// to be down and flow again on the first good probe. A backend counts as down after
    /// two failed probes in a row (a busy engine may miss one); probes run every 5 s, every
    /// 250 ms while a backend is down. `/ready` also reports what it sees, KV usage included.
    private func probeBackends() async {
        while !Task.isCancelled {
            var anyDown = false
            for e in pool.entries {
                let healthy = await e.backend.isHealthy()
                anyDown = !noteHealth(name: e.backend.name, healthy: healthy, kvCacheUsage: nil) || anyDown
            }
            try? await Task.sleep(for: anyDown ? .milliseconds(250) : .seconds(5))
        }
    }

    /// Records one probe of a backend; returns whether it is up.
    @discardableResult
    func noteHealth(name: String, healthy: Bool, kvCacheUsage: Double?) -> Bool {
        metrics.backendHealthy(healthy, backend: name)
        let up: Bool = lock.withLock {
            failedProbes[name] = healthy ? 0 : (failedProbes[name] ?? 0) + 1
            return (failedProbes[name] ?? 0) < 2
        }
        submit(.backendHealth(backend: name, healthy: up, kvCacheUsage: kvCacheUsage))
        return up && healthy
    }

    /// Records what `/ready` saw of a backend.
    func noteHealth(_ s: BackendStatus) {
        noteHealth(name: s.name, healthy: s.healthy, kvCacheUsage: s.load.kvCacheUsage)
    }

    // MARK: Views

    /// Reads the machine under the lock.
    func withMachine<T>(_ body: (NodeMachine) -> T) -> T { lock.withLock { body(machine) } }

    public func networkModels() -> [ModelDescriptor] { withMachine { $0.networkModels } }
    public func servingPeers() -> Int { withMachine { $0.servingPeers } }
}
