/// Settings of a node machine that do not depend on the network.
public struct NodeMachineConfig: Sendable {
    /// This node's backends (none: a pure requester).
    public var backends: [LocalBackendConfig]
    public var policy: SchedulingPolicy
    /// A request that cannot be placed waits at most this long (bounded by its deadline)
    /// for a backend slot or an executor before it fails with 503 [60 s].
    public var queueTimeout: Duration
    /// Requests waiting for placement at once; past it new ones get 503 [256].
    public var maxPending: Int
    /// Requests this node handles at once, waiting or running [4096].
    public var maxRequests: Int
    /// Longest pause between two placement attempts of a waiting request [1 s].
    public var maxRetryBackoff: Duration
    /// Waiting requests retried at once when capacity shows up (a slot frees, a peer
    /// advertises room) [8].
    public var maxWakePerSignal: Int
    /// How long a backend or peer that answered 429/503 without a Retry-After is left
    /// alone [2 s]; with one, its Retry-After is honoured up to `maxCooldown` [300 s].
    public var cooldown: Duration
    public var maxCooldown: Duration
    /// Duels and judging (DESIGN.md §6 step 5).
    public var duel: DuelConfig

    public init(backends: [LocalBackendConfig] = [], policy: SchedulingPolicy = SchedulingPolicy(),
                queueTimeout: Duration = .seconds(60), maxPending: Int = 256, maxRequests: Int = 4096,
                maxRetryBackoff: Duration = .seconds(1), maxWakePerSignal: Int = 8,
                cooldown: Duration = .seconds(2), maxCooldown: Duration = .seconds(300), duel: DuelConfig = DuelConfig()) {
        precondition(policy.violations.isEmpty, "the policy must be valid: \(policy.violations)")
        precondition(queueTimeout >= .zero && maxPending >= 0 && maxRequests >= 1 && maxRetryBackoff > .zero && maxWakePerSignal >= 1)
        precondition(cooldown >= .zero && maxCooldown >= cooldown)
        self.backends = backends
        self.policy = policy
        self.queueTimeout = queueTimeout
        self.maxPending = maxPending
        self.maxRequests = maxRequests
        self.maxRetryBackoff = maxRetryBackoff
        self.maxWakePerSignal = maxWakePerSignal
        self.cooldown = cooldown
        self.maxCooldown = maxCooldown
        self.duel = duel
    }
}

/// Whether and how a node takes part in duels.
public struct DuelConfig: Hashable, Sendable {
    /// As a requester, turn offloaded jobs into duels with the genesis' duel probability
    /// [false]. The driver must support `collectAnswer`, `requestJudgements` and
    /// `dropAnswers`.
    public var runDuels: Bool
    /// Judge pairs for other requesters (advertised in the member record) [false]. The
    /// driver must support `runJudgement`.
    public var judge: Bool
    /// How long judges get once both answers are in [30 s].
    public var judgingTimeout: Duration
    /// How long a judge task may run here before it is given up [120 s].
    public var judgeTaskTimeout: Duration
    /// Duels in progress on this requester at once; past it jobs run single [256].
    public var maxDuels: Int
    /// Judge tasks at once; past it requests are declined [64].
    public var maxJudgeTasks: Int
    /// Judge tasks at once for one requester [8].
    public var maxJudgeTasksPerRequester: Int
    /// An executor whose accepted duel copy failed gets no new job from this requester for
    /// the model this long [300 s; zero: off].
    public var failedCopyCooldown: Duration

    public init(runDuels: Bool = false, judge: Bool = false, judgingTimeout: Duration = .seconds(30),
                judgeTaskTimeout: Duration = .seconds(120), maxDuels: Int = 256, maxJudgeTasks: Int = 64,
                maxJudgeTasksPerRequester: Int = 8, failedCopyCooldown: Duration = .seconds(300)) {
        precondition(judgingTimeout > .zero && judgeTaskTimeout > .zero && maxDuels >= 0 && maxJudgeTasks >= 0
                     && maxJudgeTasksPerRequester >= 0 && failedCopyCooldown >= .zero)
        self.runDuels = runDuels
        self.judge = judge
        self.judgingTimeout = judgingTimeout
        self.judgeTaskTimeout = judgeTaskTimeout
        self.maxDuels = maxDuels
        self.maxJudgeTasks = maxJudgeTasks
        self.maxJudgeTasksPerRequester = maxJudgeTasksPerRequester
        self.failedCopyCooldown = failedCopyCooldown
    }
}

/// One node of wwwserve as a single sans-I/O state machine (DESIGN.md §2): membership
/// (SWIM gossip), the signed ledger and its anti-entropy, the executor's jobs, and every
/// user request from the scheduling decision to the receipt.
///
/// Driving it (the node shell, or the simulator with a modelled engine):
/// 1. `init`, then `handle(.start, now:)`.
/// 2. Feed every input — peer messages, timers, user requests, stream events — to
///    `handle(_:now:)` with the current time.
/// 3. Execute the returned directives in order (see `NodeDirective`).
///
/// The machine never reads a clock, sleeps, touches the disk or the network, or draws
/// unseeded randomness: the same inputs at the same times from the same seed give the
/// same directives, byte for byte. Models: async-http-client's connection state machine
/// (a node machine nesting request state machines), `SWIM.Instance`, raft's `Step`/`Ready`.
///
/// ```
///  inputs ──▶ handle(input, now) ──▶ [directives]
///   .userRequest      │ requester: decide → choose → offer round → relay → receipt
///   .peerMessage      │ executor: answer offer → run job → publish receipt
///   .stream(…)        │ membership, ledger anti-entropy, metadata
///   .timer(…)         ▼
///               .send / .openOffer / .runInference / .respond / .persist… / .setTimer
/// ```
public struct NodeMachine: Sendable {
    public let config: NodeMachineConfig
    var backends: LocalBackends
    var net: NetworkState?
    var prng: SeededPRNG
    var requests: [RequestID: RequestLifecycle] = [:]
    /// Requests waiting for placement, oldest first.
    var waiting: [RequestID] = []
    /// The request each requester-side stream belongs to.
    var requestStreams: [StreamID: RequestID] = [:]
    /// The request each offloaded job belongs to.
    var jobRequests: [JobID: RequestID] = [:]
    var nextStream: UInt64 = 1
    /// Duels this node runs as requester, by job.
    var duels: [JobID: DuelRun] = [:]
    /// The duel each second-copy stream belongs to.
    var duelStreams: [StreamID: JobID] = [:]
    /// Whether `s` is the copy of a duel job that no user reads (the driver keeps such a
    /// stream, and reads it to its end, after its user's request is over).
    public func isDuelCopy(_ s: StreamID) -> Bool { duelStreams[s] != nil }
    /// Judge tasks this node took, by job.
    var judgeTasks: [JobID: JudgeTask] = [:]
    /// Jobs this judge took, the latest `JudgedJobs.capacity` (a job is judged once).
    var judged = JudgedJobs()
    public private(set) var phase: Phase = .idle

    public enum Phase: Hashable, Sendable {
        case idle, running, left
    }

    /// - Parameters:
    ///   - network: nil for a standalone node (local backends only).
    ///   - seed: the PRNG seed for every random choice (log it to replay a run).
    public init(config: NodeMachineConfig, network: NetworkSetup?, seed: UInt64) {
        self.config = config
        backends = LocalBackends(config.backends)
        prng = SeededPRNG(seed: seed ^ 0x5EED)
        net = network.map { NetworkState($0, seed: seed) }
        net?.judging = config.duel.judge
        nodeID = network?.signer.nodeID
    }

    // MARK: Queries

    /// This node's id (nil: standalone). Stored: reading `net?.me` copied the whole
    /// network state (the simulator asked for it at every directive).
    public let nodeID: NodeID?
    /// Whether this node is on a network (`net` is set once, in `init`). Tested instead of
    /// `net != nil`, which copied the whole network state on every input.
    var isNetworked: Bool { nodeID != nil }
    public var membership: Membership? { net?.membership }
    public var ledger: Ledger? { net?.ledger }
    /// What restoring the stored events found (network nodes).
    public var restoreSummary: LedgerRestoreSummary? { net?.restoreSummary }
    /// This node may sign ledger events (its own chain is not behind any peer's view).
    public var readyToAppend: Bool { net?.readyToAppend ?? false }
    /// Balance minus credits reserved by running offloads.
    public var spendable: Credits? { net?.spendable }
    /// Models served here, in config order.
    public var localModels: [ModelDescriptor] { backends.models }
    public func servesLocally(_ model: String) -> Bool { backends.serves(model) }
    /// Alive peers that advertise at least one model.
    public var servingPeers: Int {
        var n = 0
        net?.membership.forEachAlivePeer { if !$0.models.isEmpty { n += 1 } }
        return n
    }
    /// Models reachable through alive peers, by name.
    public var networkModels: [ModelDescriptor] {
        var seen = Set<String>()
        var out: [ModelDescriptor] = []
        net?.membership.forEachAlivePeer { r in out += r.models.filter { seen.insert($0.name).inserted } }
        return out.sorted { $0.name < $1.name }
    }
    /// Requests in progress (waiting or running) and waiting for placement.
    public var activeRequests: Int { requests.count }
    public var waitingRequests: Int { waiting.count }
    /// Offloaded jobs running here for peers.
    public var acceptedJobs: Int { net?.executor.acceptedCount ?? 0 }
    /// In-flight requests on a local backend.
    public func inFlight(backend: String) -> Int { backends.inFlight(backend) }
    /// The load of the healthy local backends serving `model`.
    public func localLoad(model: String) -> LoadSnapshot? { backends.load(model: model) }
    /// The stake this node declares.
    public var declaredStake: Credits { net?.declaredStake ?? .zero }

    /// The executor order step 2 would produce now for `model` (§6.2), drawn from the
    /// caller's generator so that looking does not change the machine (tests, experiments).
    public func executorOrder(model: String, excluding: [NodeID] = [], prng: inout SeededPRNG) -> [NodeID] {
        net?.orderedExecutors(model: model, excluding: excluding, policy: config.policy, prng: &prng) ?? []
    }

    // MARK: Input

    /// Handles one input at `now`; returns the directives to execute, in order.
    public mutating func handle(_ input: NodeInput, now: Instant) -> [NodeDirective] {
        var out: [NodeDirective] = []
        switch input {
        case .start: start(now: now, into: &out)
        case .leave: leave(now: now, into: &out)
        case .timer(let t): timer(t, now: now, into: &out)
        case .peerMessage(let m, let from, let address): peerMessage(m, from: from, fromAddress: address, now: now, into: &out)
        case .userRequest(let id, let spec): userRequest(id, spec, now: now, into: &out)
        case .userGone(let id): userGone(id, now: now, into: &out)
        case .stream(let s, let e): streamEvent(s, e, now: now, into: &out)
        case .backendHealth(let b, let healthy, let kv): backendHealth(b, healthy: healthy, kv: kv, now: now, into: &out)
        case .storedConflict(let stored, let written):
            net?.storedConflict(stored, written, prng: &prng, into: &out)
        case .judgement(let job, let original, let swapped):
            judgementDone(job, original: original, swapped: swapped, now: now, into: &out)
        }
        if phase == .running { net?.armMembershipTimer(into: &out) }
        return out
    }

    private mutating func start(now: Instant, into out: inout [NodeDirective]) {
        guard phase == .idle else { return }
        phase = .running
        guard isNetworked else { return }
        // Before `start` the membership only records the metadata in its first self-record.
        net!.publishMetadata(backends: backends, policy: config.policy, now: now, into: &out)
        let seeds = net!.seeds
        NetworkState.translate(net!.membership.start(now: now, seeds: seeds), into: &out)
        out.append(.setTimer(.period, at: now + net!.period))
    }

    private mutating func leave(now: Instant, into out: inout [NodeDirective]) {
        guard phase == .running else { return }
        phase = .left
        guard isNetworked else { return }
        NetworkState.translate(net!.membership.leave(now: now), into: &out)
    }

    private mutating func timer(_ t: NodeTimer, now: Instant, into out: inout [NodeDirective]) {
        switch t {
        case .membership:
            guard phase == .running, isNetworked else { return }
            net!.membershipFired(now: now, into: &out)
        case .period:
            guard phase == .running, isNetworked else { return }
            net!.periodic(backends: &backends, policy: config.policy, now: now, prng: &prng, into: &out)
        case .retry(let id): retryFired(id, now: now, into: &out)
        case .offer(let s): offerTimedOut(s, now: now, into: &out)
        case .deadline(let id): deadlinePassed(id, now: now, into: &out)
        case .cooldown(let target, let model): cooldownFired(target, model: model, now: now, into: &out)
        case .duel(let job): duelDeadline(job, now: now, into: &out)
        case .judgeTask(let job): judgeTaskExpired(job, into: &out)
        }
    }

    private mutating func peerMessage(_ m: PeerMessage, from: NodeID, fromAddress: String, now: Instant,
                                      into out: inout [NodeDirective]) {
        guard phase == .running, isNetworked, from != nodeID else { return }
        switch m {
        case .membership(let mm):
            var ds: [NodeDirective] = []
            NetworkState.translate(net!.membership.receive(mm, from: from, fromAddress: fromAddress, now: now), into: &ds)
            out += ds
            peersChanged(ds, now: now, into: &out)
        case .ledgerSync(let sync):
            net!.receiveSync(sync, from: from, fromAddress: fromAddress, now: now, prng: &prng, into: &out)
        case .offer(let offer):
            let waitingByModel = waitingCounts()
            let stream = makeStream()   // used only if the offer is accepted
            net!.receiveOffer(offer, from: from, fromAddress: fromAddress, stream: stream,
                              ownWaiting: { waitingByModel[$0] ?? 0 }, backends: &backends, policy: config.policy,
                              now: now, prng: &prng, into: &out)
        case .offerAnswer(let answer):
            offerAnswered(answer, from: from, now: now, into: &out)
        case .judgeRequest(let spec):
            judgeRequested(spec, from: from, fromAddress: fromAddress, now: now, into: &out)
        case .judgeVerdict(let v):
            verdictArrived(v, from: from, now: now, into: &out)
        }
    }

    private mutating func streamEvent(_ s: StreamID, _ e: StreamEvent, now: Instant, into out: inout [NodeDirective]) {
        if requestStreams[s] != nil {
            requestStreamEvent(s, e, now: now, into: &out)
        } else if let job = duelStreams[s] {
            duelStreamEvent(s, job: job, e, now: now, into: &out)
        } else if let job = net?.executor.job(on: s) {
            if case .failed(.throttled(let status, let retryAfter)) = e {
                throttled(.local(job.backend), model: job.authorization.value.model, status: status, retryAfter: retryAfter, now: now, into: &out)
            }
            if let freed = net!.executorStream(s, e, backends: &backends, now: now, prng: &prng, into: &out) {
                slotFreed(backend: freed, now: now, into: &out)
            }
        }
    }

    private mutating func backendHealth(_ b: String, healthy: Bool, kv: Double?, now: Instant, into out: inout [NodeDirective]) {
        if backends.setHealth(b, healthy: healthy, kvCacheUsage: kv) { slotFreed(backend: b, now: now, into: &out) }
    }

    // MARK: Cooldowns

    /// `target` answered `status` (429/503) for `model`: leave it alone for that model for
    /// its Retry-After (bounded by `maxCooldown`) or the default `cooldown`, so the next
    /// request does not hit it.
    mutating func throttled(_ target: RelayTarget, model: String, status: Int, retryAfter: Duration?, now: Instant,
                            into out: inout [NodeDirective]) {
        let until = now + min(max(retryAfter ?? config.cooldown, .zero), config.maxCooldown)
        let ends: Instant? = switch target {
        case .local(let b): backends.coolDown(b, model: model, status: status, until: until)
        case .peer(let p): net?.coolDown(p, model: model, until: until)
        }
        guard let ends else { return }
        out.append(.setTimer(.cooldown(target, model: model), at: ends))
        out.append(.notify(.coolingDown(target, model: model, status: status, until: ends)))
    }

    private mutating func cooldownFired(_ target: RelayTarget, model: String, now: Instant, into out: inout [NodeDirective]) {
        let ended = switch target {
        case .local(let b): backends.cooldownEnded(b, model: model, now: now)
        case .peer(let p): net?.cooldownEnded(p, model: model, now: now) ?? false
        }
        if ended { wake(models: [model], now: now, into: &out) }
    }

    // MARK: Helpers

    mutating func makeStream() -> StreamID {
        defer { nextStream += 1 }
        return StreamID(nextStream)
    }

    /// Waiting requests per model (own users waiting for placement).
    func waitingCounts() -> [String: Int] {
        var c: [String: Int] = [:]
        for id in waiting { if let r = requests[id] { c[r.spec.model, default: 0] += 1 } }
        return c
    }
}

/// A bounded memory of job ids (insertion order; the oldest is forgotten first).
struct JudgedJobs: Sendable {
    static let capacity = 4096
    private var set: Set<JobID> = []
    private var order: [JobID] = []
    private var head = 0

    func contains(_ j: JobID) -> Bool { set.contains(j) }

    mutating func insert(_ j: JobID) {
        guard set.insert(j).inserted else { return }
        if order.count < Self.capacity {
            order.append(j)
        } else {
            set.remove(order[head])
            order[head] = j
            head = (head + 1) % Self.capacity
        }
        assert(set.count == order.count)
    }
}
