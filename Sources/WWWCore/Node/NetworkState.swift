/// What a node needs to take part in a network.
public struct NetworkSetup: Sendable {
    public var genesis: Genesis
    /// This node's signing key (its identity).
    public var signer: any MessageSigner
    public var crypto: any CryptoProvider
    /// The address peers reach this node at ("host:port").
    public var address: String
    /// Seed addresses to join through (genesis seeds plus configured ones).
    public var seeds: [String]
    public var membership: MembershipConfig
    public var ledger: LedgerConfig
    public var replication: LedgerReplicationConfig
    /// One gossip period: metadata publication and ledger anti-entropy run once per period.
    public var period: Duration
    /// The stake this provider declares (observers cap it at the balance).
    public var declaredStake: Credits
    /// Job sequence numbers are persisted in blocks of this many (one fsync per block).
    public var jobSequenceBlock: UInt64
    /// What the node's store held at start.
    public var restored: NodeRestoreState

    public init(genesis: Genesis, signer: any MessageSigner, crypto: any CryptoProvider, address: String,
                seeds: [String] = [], membership: MembershipConfig = MembershipConfig(), ledger: LedgerConfig = LedgerConfig(),
                replication: LedgerReplicationConfig = LedgerReplicationConfig(), period: Duration = .seconds(1),
                declaredStake: Credits = .zero, jobSequenceBlock: UInt64 = 1024, restored: NodeRestoreState = NodeRestoreState()) {
        precondition(period > .zero && jobSequenceBlock >= 1)
        self.genesis = genesis
        self.signer = signer
        self.crypto = crypto
        self.address = address
        self.seeds = seeds
        self.membership = membership
        self.ledger = ledger
        self.replication = replication
        self.period = period
        self.declaredStake = declaredStake
        self.jobSequenceBlock = jobSequenceBlock
        self.restored = restored
    }
}

/// What a restarting node's store held.
public struct NodeRestoreState: Sendable {
    /// The ledger rebuilt from the store (`Ledger.restore`, page by page), or nil for an
    /// empty store. Its genesis must be the setup's.
    public var ledger: Ledger?
    /// What restoring the ledger found.
    public var summary: LedgerRestoreSummary
    /// The first incarnation to sign (above any signed before).
    public var incarnation: UInt64
    /// The highest job sequence number that may have been used before (the persisted
    /// ceiling, or more): new jobs start above it.
    public var jobSequenceFloor: UInt64

    public init(ledger: Ledger? = nil, summary: LedgerRestoreSummary = LedgerRestoreSummary(), incarnation: UInt64 = 0,
                jobSequenceFloor: UInt64 = 0) {
        self.ledger = ledger
        self.summary = summary
        self.incarnation = incarnation
        self.jobSequenceFloor = jobSequenceFloor
    }

    /// Restores a ledger from `events` in one page (tests and the simulator, whose stores
    /// are in memory).
    public init(events: [LedgerEvent], genesis: Genesis, crypto: any CryptoProvider, config: LedgerConfig = LedgerConfig(),
                incarnation: UInt64 = 0, jobSequenceFloor: UInt64 = 0) {
        var ledger = Ledger(genesis: genesis, crypto: crypto, config: config)
        let summary = ledger.restore(events)
        self.init(ledger: events.isEmpty ? nil : ledger, summary: summary, incarnation: incarnation,
                  jobSequenceFloor: jobSequenceFloor)
    }
}

/// The network half of a node machine: membership, the ledger and its replication, the
/// executor's jobs and the requester's credit reservations. Mutating methods take the
/// machine's other parts (`backends`, `prng`) as `inout`, so no state is ever copied.
struct NetworkState: Sendable {
    let genesis: Genesis
    let signer: any MessageSigner
    let crypto: any CryptoProvider
    let period: Duration
    let declaredStake: Credits
    let jobSequenceBlock: UInt64
    let seeds: [String]
    var membership: Membership
    var ledger: Ledger
    var replication: LedgerReplication
    var executor: ExecutorJobs
    /// Credits reserved by this node's offloads that are still running.
    var pendingSpend: Credits = .zero
    /// Peers cooling down for a model after answering 429/503, until when (one entry per
    /// peer and model, removed by the `.cooldown` timer; bounded by `maxCoolingPeers`).
    var coolingPeers: [PeerModel: Instant] = [:]
    static let maxCoolingPeers = 4096

    struct PeerModel: Hashable, Sendable {
        var peer: NodeID
        var model: String
    }
    var nextJobSequence: UInt64
    var jobSequenceCeiling: UInt64
    /// The membership timer last armed.
    var membershipTimer: Instant?
    /// What restoring the store found.
    let restoreSummary: LedgerRestoreSummary
    /// This node judges duels (advertised in its member record).
    var judging = false

    init(_ s: NetworkSetup, seed: UInt64) {
        genesis = s.genesis
        signer = s.signer
        crypto = s.crypto
        period = s.period
        declaredStake = s.declaredStake
        jobSequenceBlock = s.jobSequenceBlock
        seeds = s.seeds
        let ledger = s.restored.ledger ?? Ledger(genesis: s.genesis, crypto: s.crypto, config: s.ledger)
        precondition(ledger.genesis == s.genesis, "the restored ledger belongs to this genesis")
        restoreSummary = s.restored.summary
        let me = s.signer.nodeID
        executor = ExecutorJobs(receipted: ledger.liveReceipts(of: me).map { ($0.job, $0.expiresAt) })
        self.ledger = ledger
        replication = LedgerReplication(config: s.replication, me: me)
        membership = Membership(config: s.membership, signer: s.signer, crypto: s.crypto, address: s.address,
                                incarnation: s.restored.incarnation, seed: seed)
        nextJobSequence = s.restored.jobSequenceFloor + 1
        jobSequenceCeiling = s.restored.jobSequenceFloor
    }

    var me: NodeID { signer.nodeID }
    var price: Credits { genesis.parameters.pricePerJob }
    /// The balance this node may still promise: its ledger balance minus running offloads.
    var spendable: Credits { ledger.balance(of: me) - pendingSpend }
    var readyToAppend: Bool { replication.readyToAppend(ledger, alone: !membership.containsAlivePeer()) }

    func peersServe(_ model: String) -> Bool {
        membership.containsAlivePeer { $0.models.contains { $0.name == model } }
    }

    // MARK: Requester bookkeeping

    /// Reserves `amount` (default: one job's price) of the spendable balance.
    mutating func reserveSpend(_ amount: Credits? = nil) -> Bool {
        let amount = amount ?? price
        guard spendable >= amount else { return false }
        pendingSpend = pendingSpend + amount
        return true
    }

    mutating func releaseSpend(_ amount: Credits? = nil) {
        pendingSpend = pendingSpend - (amount ?? price)
        assert(pendingSpend >= .zero, "released more spend than reserved")
        if pendingSpend < .zero { pendingSpend = .zero }
    }

    /// A fresh job id. Sequence numbers are persisted a block ahead, before first use.
    mutating func newJob(into out: inout [NodeDirective]) -> JobID {
        if nextJobSequence > jobSequenceCeiling {
            jobSequenceCeiling = nextJobSequence + jobSequenceBlock - 1
            out.append(.persistJobSequence(jobSequenceCeiling))
        }
        defer { nextJobSequence += 1 }
        return JobID.derive(requester: me, sequence: nextJobSequence, crypto: crypto)
    }

    /// Step 2 (§6.2): eligible executors for `model`, best first, at most `limit`.
    func orderedExecutors(model: String, excluding: [NodeID], policy: SchedulingPolicy, prng: inout SeededPRNG) -> [NodeID] {
        var candidates: [ExecutorCandidate] = []
        membership.forEachAlivePeer { r in
            candidates.append(ExecutorCandidate(node: r.node, alive: true, servesModel: r.models.contains { $0.name == model },
                                                accepting: r.accepting, stake: ledger.effectiveStake(declared: r.stake, of: r.node),
                                                utilization: Double(r.utilizationPPM) / 1e6, balance: ledger.balance(of: r.node)))
        }
        return ExecutorSelector(policy: policy).orderedNodes(candidates: candidates, requester: me,
                                                             excluded: Set(excluding).union(coolingPeers.keys.lazy.filter { $0.model == model }.map(\.peer)),
                                                             limit: policy.maxOfferAttempts, prng: &prng)
    }

    func address(of node: NodeID) -> String? { membership.record(of: node)?.address }

    /// Starts (or extends) `peer`'s cooldown for `model`; returns when it ends, or nil when
    /// the table is full. A shorter cooldown never cuts a longer one.
    mutating func coolDown(_ peer: NodeID, model: String, until: Instant) -> Instant? {
        let key = PeerModel(peer: peer, model: model)
        if let current = coolingPeers[key], current >= until { return current }
        guard coolingPeers[key] != nil || coolingPeers.count < Self.maxCoolingPeers else { return nil }
        coolingPeers[key] = until
        return until
    }

    /// Ends `peer`'s cooldown for `model` if it is due at `now`; true when it ended.
    mutating func cooldownEnded(_ peer: NodeID, model: String, now: Instant) -> Bool {
        let key = PeerModel(peer: peer, model: model)
        guard let until = coolingPeers[key], until <= now else { return false }
        coolingPeers[key] = nil
        return true
    }

    // MARK: Membership

    /// Membership directives as node directives: sends, and notifications.
    static func translate(_ ds: [MembershipDirective], into out: inout [NodeDirective]) {
        for d in ds {
            switch d {
            case .send(let dest, let m):
                let to: NodeID? = if case .node(let id, _) = dest { id } else { nil }
                out.append(.send(.membership(m), to: to, address: dest.address))
            case .localUpdated:
                break
            default:
                out.append(.notify(.membership(d)))
            }
        }
    }

    /// Arms the membership timer when its deadline moved earlier (or the last one fired).
    mutating func armMembershipTimer(into out: inout [NodeDirective]) {
        guard let d = membership.nextDeadline else { return }
        if let armed = membershipTimer, armed <= d { return }
        membershipTimer = d
        out.append(.setTimer(.membership, at: d))
    }

    mutating func membershipFired(now: Instant, into out: inout [NodeDirective]) {
        membershipTimer = nil
        Self.translate(membership.tick(now: now), into: &out)
    }

    /// Publishes this node's metadata (models, capacity, load, stake).
    mutating func publishMetadata(backends: LocalBackends, policy: SchedulingPolicy, now: Instant,
                                  into out: inout [NodeDirective]) {
        let models = backends.models
        let meta = MemberMetadata(models: models, capacity: backends.totalCapacity,
                                  utilizationPPM: MemberRecord.utilizationPPM(of: backends.totalLoad),
                                  accepting: !models.isEmpty && policy.acceptFrequency > 0,
                                  stake: ledger.effectiveStake(declared: declaredStake, of: me), judging: judging)
        Self.translate(membership.updateLocal(meta, now: now), into: &out)
    }

    // MARK: Ledger

    mutating func receiveSync(_ m: LedgerSyncMessage, from: NodeID, fromAddress: String, now: Instant,
                              prng: inout SeededPRNG, into out: inout [NodeDirective]) {
        // Answers go only to a live member, at the address of its own signed record: a sync
        // from a stranger, or one naming someone else's address, is applied but not answered
        // (no reflection of large replies to an address a stranger chose).
        let member = membership.record(of: from).flatMap { $0.status == .alive || $0.status == .suspect ? $0 : nil }
        let (ds, proofs) = replication.receive(m, from: from, address: member?.address, ledger: &ledger, now: now)
        out += ds
        out += push(proofs, extra: [], prng: &prng)
    }

    /// The store found `written` conflicting with `stored`: prove and push the equivocation.
    mutating func storedConflict(_ stored: LedgerEvent, _ written: LedgerEvent, prng: inout SeededPRNG,
                                 into out: inout [NodeDirective]) {
        let (ds, proofs) = LedgerReplication.translate(ledger.storedConflict(stored, written))
        out += ds
        out += push(proofs, extra: [], prng: &prng)
    }

    /// Pushes `events` to `extra` and `publishFanout` random alive peers (drawn only when
    /// there is something to push).
    func push(_ events: [LedgerEvent], extra: [(NodeID, String)], prng: inout SeededPRNG) -> [NodeDirective] {
        guard !events.isEmpty else { return [] }
        return replication.publish(events, ledger, extra: extra,
                                   peers: membership.randomAlivePeers(replication.config.publishFanout, prng: &prng))
    }

    /// Appends one event of this node's own and publishes it to `extra` plus the fanout.
    /// Returns false (with a notification) when the ledger refused it.
    mutating func appendOwn(_ body: LedgerEventBody, extra: [(NodeID, String)], now: Instant, prng: inout SeededPRNG,
                            into out: inout [NodeDirective]) -> LedgerRejection? {
        let ds = ledger.append(body, now: now, signer: signer)
        var published: [LedgerEvent] = []
        for d in ds {
            switch d {
            case .persist(let events): out.append(.persistEvents(events))
            case .publish(let events): published += events
            case .rejected(_, let reason): return reason
            case .equivocation, .acknowledge: break
            }
        }
        out += push(published, extra: extra, prng: &prng)
        return nil
    }

    mutating func periodic(backends: inout LocalBackends, policy: SchedulingPolicy, now: Instant, prng: inout SeededPRNG,
                           into out: inout [NodeDirective]) {
        for s in executor.expired(now: now) {
            _ = executorStream(s, .failed(.deadlineExceeded), backends: &backends, now: now, prng: &prng, into: &out)
        }
        publishMetadata(backends: backends, policy: policy, now: now, into: &out)
        out += replication.periodicRequest(ledger, peer: membership.randomAlivePeers(1, prng: &prng).first)
        executor.prune(now: now)
        out.append(.setTimer(.period, at: now + period))
    }
}
