import WWWCore

// The simulator's stand-in for the node shell's network layer (Sources/WWWNode/Network/
// PeerNetwork*.swift): one `Membership` and one `Ledger` per node, driven the way the shell
// drives them, plus the requester/executor steps that create `jobReceipt`s (DESIGN.md §5,
// §6.2–6.3). HTTP request/response pairs of the shell become two one-way messages here.

/// One ledger push-pull message: the shell's `LedgerSync {digest, events}` plus the role the
/// HTTP exchange gives it (request or response, and whether the response is used).
public struct LedgerSyncMessage: Hashable, Sendable {
    public enum Role: Hashable, Sendable {
        /// Periodic anti-entropy opener (events empty): answered with `.antiEntropyReply`.
        case antiEntropy
        /// The answer to `.antiEntropy`: the events the opener lacks (≤ `syncBatch`); the
        /// opener applies them and pushes what the answerer lacks (`.push`).
        case antiEntropyReply
        /// New events sent to `publishFanout` random alive peers (+ extras); the answer is
        /// discarded, as the shell's `publish` discards the HTTP response.
        case publish
        /// The opener's second leg: the events the answerer lacks; answer discarded.
        case push
        /// The answer to `.publish` / `.push` (the shell computes and sends it; nobody reads it).
        case ignoredReply
    }

    public var role: Role
    /// The envelope signer.
    public var from: NodeID
    /// Scuttlebutt digest of the sender: `{author: highest contiguous authorSeq}`.
    public var digest: [NodeID: UInt64]
    public var events: [LedgerEvent]
    /// Both events of each equivocation proof the sender holds (bounded): digests cannot
    /// show a proof, so every sync carries them.
    public var proofs: [LedgerEvent]

    public init(role: Role, from: NodeID, digest: [NodeID: UInt64], events: [LedgerEvent], proofs: [LedgerEvent] = []) {
        self.role = role
        self.from = from
        self.digest = digest
        self.events = events
        self.proofs = proofs
    }
}

/// Everything a `NetworkProcess` sends: an enum over the composed cores' messages.
public enum NetworkMessage: Hashable, Sendable {
    case membership(MembershipPacket)
    case ledger(LedgerSyncMessage)
    /// An offer (§6.3) reduced to its payment authorization; `from` is the envelope signer.
    case offer(from: NodeID, authorization: Signed<PaymentAuthorization>)
}

/// Settings of a `NetworkProcess`; defaults mirror the shell (`PeerNetwork`).
public struct NetworkProcessConfig: Hashable, Sendable {
    public var membership: MembershipConfig
    public var ledger: LedgerConfig
    /// Ledger anti-entropy and metadata publication period (the shell's gossip period).
    public var syncPeriod: Duration
    /// Events per anti-entropy message (the shell's `syncBatch`, 256).
    public var syncBatch: Int
    /// A sync message with more events is refused without an answer (shell: 4 × syncBatch).
    public var maxEventsPerSync: Int
    /// Random alive peers each new event is pushed to (shell: 3).
    public var publishFanout: Int
    /// The stake this node declares in its member record (observers cap it by balance).
    public var declaredStake: Credits
    /// The requester's executor choice (§6.2).
    public var selector: ExecutorSelector
    /// The single model every node serves.
    public var model: String
    /// How long an offer's payment authorization stays claimable.
    public var offerLifetime: Duration
    /// The shell's `recordReceipt` pushes to the requester with `publish([], extra: [requester])`,
    /// i.e. an empty event list (see the report: the requester does not get its receipt that way).
    /// `false` mirrors that; `true` sends the receipt itself.
    public var receiptReachesRequester: Bool
    /// Events the simulated store may hold (a hard bound; exceeding it is a bug in the run).
    public var maxStoredEvents: Int

    public init(
        membership: MembershipConfig = MembershipConfig(), ledger: LedgerConfig = LedgerConfig(),
        syncPeriod: Duration = .seconds(1), syncBatch: Int = 256, maxEventsPerSync: Int = 1_024,
        publishFanout: Int = 3, declaredStake: Credits = Credits(credits: 10),
        selector: ExecutorSelector = ExecutorSelector(policy: .default), model: String = "m",
        offerLifetime: Duration = .seconds(60), receiptReachesRequester: Bool = true, maxStoredEvents: Int = 100_000
    ) {
        precondition(syncPeriod > .zero && syncBatch >= 1 && maxEventsPerSync >= syncBatch && publishFanout >= 0)
        precondition(maxEventsPerSync <= ledger.maxReceiveBatch, "one sync is one ledger receive batch")
        self.membership = membership
        self.ledger = ledger
        self.syncPeriod = syncPeriod
        self.syncBatch = syncBatch
        self.maxEventsPerSync = maxEventsPerSync
        self.publishFanout = publishFanout
        self.declaredStake = declaredStake
        self.selector = selector
        self.model = model
        self.offerLifetime = offerLifetime
        self.receiptReachesRequester = receiptReachesRequester
        self.maxStoredEvents = maxStoredEvents
    }
}

/// Counters of one process (monotone; for assertions and reports).
public struct NetworkProcessCounters: Hashable, Sendable {
    public var offersSent = 0
    /// Jobs not offered: no alive eligible peer, or own balance below the price.
    public var jobsNotOffered = 0
    public var offersRejected = 0
    public var receiptsAppended = 0
    public var eventsRejected = 0
    public var syncsRefused = 0
    public var equivocationsSeen = 0
    public init() {}
}

/// What a node keeps across a crash: its store (the events it persisted, in order), its job
/// counter and its last incarnation (the shell keeps all three in SQLite).
public struct NetworkPersistentState: Sendable {
    public var events: [LedgerEvent]
    public var jobSequence: UInt64
    public var incarnation: UInt64

    public init(events: [LedgerEvent] = [], jobSequence: UInt64 = 0, incarnation: UInt64 = 0) {
        self.events = events
        self.jobSequence = jobSequence
        self.incarnation = incarnation
    }
}

/// Membership + Ledger + executor choice of one node, driven like `PeerNetwork`:
/// - every `syncPeriod`: publish own metadata (declared stake capped by own balance) and one
///   ledger push-pull with one uniformly random alive peer;
/// - every new local event (`.publish` directive) goes to `publishFanout` random alive peers;
/// - `createJob` (external input): the requester orders alive peers with `ExecutorSelector`
///   (its own view: alive peers, `effectiveStake`, balances), signs a `PaymentAuthorization`
///   for the first and sends the offer; the executor checks it as `admitOffer` does and
///   appends the `jobReceipt` (`recordReceipt`). No offer failover, no execution time.
public struct NetworkProcess: SimulatedProcess {
    public typealias Message = NetworkMessage

    public private(set) var membership: Membership
    public private(set) var ledger: Ledger
    public let config: NetworkProcessConfig
    public let seeds: [String]
    public private(set) var counters = NetworkProcessCounters()
    /// The simulated store: every event of a `.persist` directive, in order (bounded by
    /// `config.maxStoredEvents`).
    public private(set) var stored: [LedgerEvent] = []
    public private(set) var jobSequence: UInt64
    /// What `restore` reported at start-up (nil for a fresh node).
    public let restoreSummary: LedgerRestoreSummary?
    /// The node's simulation index (its address and key derive from it).
    public let index: Int
    let signer: SimSigner
    let crypto = SimCrypto()
    var prng: SeededPRNG
    var nextSyncAt: Instant? = nil
    /// Some peer's digest has arrived since start.
    var heardDigest = false
    /// The highest authorSeq of this node's own events that any peer's digest showed.
    var remoteSelfHighWater: UInt64 = 0

    /// A node `index` with `genesis`; `persisted` is its store after a crash (restored before
    /// anything else, as `PeerNetwork.init` does), and its incarnation starts above the stored one.
    public init(index: Int, genesis: Genesis, seeds: [String], config: NetworkProcessConfig = NetworkProcessConfig(),
                persisted: NetworkPersistentState? = nil, seed: UInt64) {
        self.index = index
        self.signer = SimSigner(index: index)
        self.config = config
        self.seeds = seeds
        self.prng = SeededPRNG(seed: seed ^ 0x5EED)
        var ledger = Ledger(genesis: genesis, crypto: SimCrypto(), config: config.ledger)
        if let persisted {
            restoreSummary = ledger.restore(persisted.events)
            stored = persisted.events
        } else {
            restoreSummary = nil
        }
        self.ledger = ledger
        self.jobSequence = persisted?.jobSequence ?? 0
        let meta = NetworkProcess.metadata(config: config, stake: ledger.effectiveStake(declared: config.declaredStake, of: signer.nodeID))
        self.membership = Membership(
            config: config.membership, signer: signer, crypto: SimCrypto(), address: SimAddress.of(index), metadata: meta,
            incarnation: persisted.map { $0.incarnation + 1 } ?? 0, seed: seed)
    }

    public var nodeID: NodeID { signer.nodeID }

    /// The state a restart would find on disk.
    public var persistentState: NetworkPersistentState {
        NetworkPersistentState(events: stored, jobSequence: jobSequence, incarnation: membership.localRecord.value.incarnation)
    }

    static func metadata(config: NetworkProcessConfig, stake: Credits) -> MemberMetadata {
        MemberMetadata(models: [ModelDescriptor(name: config.model)], capacity: 1, utilizationPPM: 0, accepting: true, stake: stake)
    }

    // MARK: SimulatedProcess

    public var address: String { membership.localRecord.value.address }

    public var nextDeadline: Instant? {
        guard let sync = nextSyncAt, membership.phase != .left else { return membership.nextDeadline }
        return membership.nextDeadline.map { min($0, sync) } ?? sync
    }

    public mutating func start(now: Instant) -> [SimSend<NetworkMessage>] {
        var out = route(membership.start(now: now, seeds: seeds))
        nextSyncAt = now
        out += syncIfDue(now: now)
        return out
    }

    public mutating func tick(now: Instant) -> [SimSend<NetworkMessage>] {
        route(membership.tick(now: now)) + syncIfDue(now: now)
    }

    public mutating func receive(_ message: NetworkMessage, fromAddress: String, now: Instant) -> [SimSend<NetworkMessage>] {
        switch message {
        case .membership(let p):
            return route(membership.receive(p.message, from: p.from, fromAddress: fromAddress, now: now))
        case .ledger(let sync):
            return receiveSync(sync, fromAddress: fromAddress, now: now)
        case .offer(let from, let auth):
            return admitOffer(auth, from: from, now: now)
        }
    }

    public func wireSize(of message: NetworkMessage) -> Int {
        switch message {
        case .membership(let p):
            return p.message.canonical.bytes.count + MembershipProcess.envelopeOverhead
        case .ledger(let s):
            // Digest entries are `"hex64":n,`; events travel with id and signature in hex.
            let events = (s.events + s.proofs).reduce(0) { $0 + $1.unsignedCanonical.bytes.count + 2 * 32 + 2 * 64 + 32 }
            return s.digest.count * 80 + events + MembershipProcess.envelopeOverhead
        case .offer(_, let a):
            return a.value.canonical.bytes.count + 2 * 64 + 64 + MembershipProcess.envelopeOverhead
        }
    }

    // MARK: Requester side

    /// The executor order this node's selector would produce now (§6.2), over its own view:
    /// alive peers, stake = `effectiveStake(declared: record.stake)`, balances. Uses the
    /// caller's PRNG so that inspecting does not change the run.
    public func executorOrder(limit: Int = .max, prng: inout SeededPRNG) -> [NodeID] {
        config.selector.orderedNodes(candidates: candidates(), requester: nodeID, limit: limit, prng: &prng)
    }

    /// `draws` independent executor orders over one snapshot of the view (0 ≤ draws ≤ 10_000).
    public func executorOrders(draws: Int, limit: Int = .max, prng: inout SeededPRNG) -> [[NodeID]] {
        precondition(draws >= 0 && draws <= 10_000, "draws in 0...10_000")
        let c = candidates()
        return (0..<draws).map { _ in config.selector.orderedNodes(candidates: c, requester: nodeID, limit: limit, prng: &prng) }
    }

    func candidates() -> [ExecutorCandidate] {
        membership.alivePeers().map { r in
            ExecutorCandidate(node: r.node, alive: true, servesModel: r.models.contains { $0.name == config.model },
                              accepting: r.accepting, stake: ledger.effectiveStake(declared: r.stake, of: r.node),
                              utilization: Double(r.utilizationPPM) / 1e6, balance: ledger.balance(of: r.node))
        }
    }

    /// External input: a user request this node offloads. Picks the first executor of its
    /// own order, signs the payment authorization (price = genesis `pricePerJob`) and sends
    /// the offer. Nothing is sent when no peer is eligible or the balance cannot pay.
    public mutating func createJob(now: Instant) -> [SimSend<NetworkMessage>] {
        let price = ledger.genesis.parameters.pricePerJob
        guard membership.phase == .active, ledger.balance(of: nodeID) >= price,
              let executor = config.selector.orderedNodes(candidates: candidates(), requester: nodeID, limit: 1, prng: &prng).first,
              let address = membership.record(of: executor)?.address
        else {
            counters.jobsNotOffered += 1
            return []
        }
        jobSequence += 1
        let job = JobID.derive(requester: nodeID, sequence: jobSequence, crypto: crypto)
        let auth = Signed(PaymentAuthorization(job: job, requester: nodeID, executor: executor, model: config.model,
                                               price: price, expiresAt: now + config.offerLifetime), by: signer)
        counters.offersSent += 1
        return [SimSend(to: address, message: .offer(from: nodeID, authorization: auth))]
    }

    // MARK: Executor side

    /// `admitOffer` + `recordReceipt`: the checks of the offer route (signature, executor,
    /// expiry, requester covers the price in this view), then the receipt.
    mutating func admitOffer(_ auth: Signed<PaymentAuthorization>, from: NodeID, now: Instant) -> [SimSend<NetworkMessage>] {
        let a = auth.value
        guard readyToAppend, auth.signer == from, a.requester == from, auth.isValid(crypto), a.executor == nodeID,
              a.model == config.model, a.expiresAt > now, ledger.canCover(a.requester, price: a.price)
        else {
            counters.offersRejected += 1
            return []
        }
        let receipt = JobReceipt(authorization: auth, responseHash: crypto.sha256(Array("response \(a.job.hex)".utf8)),
                                 inputTokens: 10, outputTokens: 20)
        let directives = ledger.append(.jobReceipt(receipt), now: now, signer: signer)
        let appended: [LedgerEvent] = directives.compactMap { if case .publish(let e) = $0 { e } else { nil } }.flatMap { $0 }
        var out = execute(directives)
        guard !appended.isEmpty else { return out }
        counters.receiptsAppended += 1
        out += publish(config.receiptReachesRequester ? appended : [], extra: [a.requester])
        return out
    }

    // MARK: Ledger sync

    mutating func syncIfDue(now: Instant) -> [SimSend<NetworkMessage>] {
        guard let due = nextSyncAt, now >= due, membership.phase == .joining || membership.phase == .active else { return [] }
        nextSyncAt = now + config.syncPeriod
        let meta = NetworkProcess.metadata(config: config, stake: ledger.effectiveStake(declared: config.declaredStake, of: nodeID))
        var out = route(membership.updateLocal(meta, now: now))
        let peers = membership.alivePeers()
        guard !peers.isEmpty else { return out }
        let peer = peers[StakeSampling.uniformIndex(count: peers.count, prng: &prng)]
        out.append(syncMessage(to: peer.address, role: .antiEntropy, events: []))
        return out
    }

    func syncMessage(to address: String, role: LedgerSyncMessage.Role, events: [LedgerEvent]) -> SimSend<NetworkMessage> {
        SimSend(to: address, message: .ledger(LedgerSyncMessage(role: role, from: nodeID, digest: ledger.digest(), events: events,
                                                                proofs: LedgerSyncProofs.carried(by: ledger))))
    }

    /// True once this node may sign new events: it has heard at least one peer's digest and
    /// no peer knows a longer chain of its own events than it holds (so a node that lost its
    /// store cannot re-sign a sequence number it already used).
    var readyToAppend: Bool { heardDigest && remoteSelfHighWater <= ledger.highWater(of: nodeID) }

    mutating func receiveSync(_ s: LedgerSyncMessage, fromAddress: String, now: Instant) -> [SimSend<NetworkMessage>] {
        guard s.events.count <= config.maxEventsPerSync, s.proofs.count <= 2 * LedgerSyncProofs.maxProofs, s.from != nodeID else {
            counters.syncsRefused += 1
            return []
        }
        heardDigest = true
        remoteSelfHighWater = max(remoteSelfHighWater, s.digest[nodeID] ?? 0)
        let incoming = s.events + s.proofs
        var out = incoming.isEmpty ? [] : execute(ledger.receive(incoming, from: s.from, now: now))
        switch s.role {
        case .antiEntropy, .publish, .push:
            let missing = ledger.eventsMissing(from: s.digest, limit: config.syncBatch)
            out.append(syncMessage(to: fromAddress, role: s.role == .antiEntropy ? .antiEntropyReply : .ignoredReply, events: missing))
        case .antiEntropyReply:
            let missing = ledger.eventsMissing(from: s.digest, limit: config.syncBatch)
            if !missing.isEmpty { out.append(syncMessage(to: fromAddress, role: .push, events: missing)) }
        case .ignoredReply:
            break
        }
        return out
    }

    /// Runs ledger directives in order: persist first, then publish / report.
    mutating func execute(_ directives: [LedgerDirective]) -> [SimSend<NetworkMessage>] {
        var out: [SimSend<NetworkMessage>] = []
        for d in directives {
            switch d {
            case .persist(let events):
                precondition(stored.count + events.count <= config.maxStoredEvents, "simulated store bound exceeded")
                stored += events
            case .publish(let events):
                out += publish(events)
            case .equivocation(let proof):
                counters.equivocationsSeen += 1
                out += publish([proof.first, proof.second])
            case .rejected:
                counters.eventsRejected += 1
            case .acknowledge:
                break
            }
        }
        return out
    }

    /// `PeerNetwork.publish`: `events` (with this node's digest) to `publishFanout` random
    /// alive peers plus `extra`.
    mutating func publish(_ events: [LedgerEvent], extra: [NodeID] = []) -> [SimSend<NetworkMessage>] {
        var peers = membership.alivePeers()
        StakeSampling.shuffle(&peers, prng: &prng)
        var targets = extra.filter { $0 != nodeID }
        for p in peers.prefix(config.publishFanout) where !targets.contains(p.node) { targets.append(p.node) }
        return targets.compactMap { t in
            membership.record(of: t).map { syncMessage(to: $0.address, role: .publish, events: events) }
        }
    }

    // MARK: Membership

    mutating func route(_ directives: [MembershipDirective]) -> [SimSend<NetworkMessage>] {
        directives.compactMap { d in
            guard case .send(let dest, let m) = d else { return nil }
            return SimSend(to: dest.address, message: .membership(MembershipPacket(from: nodeID, message: m)))
        }
    }
}

extension Simulation where P == NetworkProcess {
    /// Adds node `index` at `SimAddress.of(index)`.
    @discardableResult
    public mutating func addNetworkNode(index: Int, genesis: Genesis, seeds: [String], config: NetworkProcessConfig = NetworkProcessConfig(),
                                        after delay: Duration = .zero) -> Int {
        add(NetworkProcess(index: index, genesis: genesis, seeds: seeds, config: config, seed: NetworkProcess.seed(of: index)), after: delay)
    }

    /// Crash-restarts node `i` from what it had persisted (store, job counter, incarnation).
    public mutating func restartNetworkNode(_ i: Int, genesis: Genesis, seeds: [String], after delay: Duration = .zero) {
        let old = nodes[i].process
        let index = old.index
        let p = NetworkProcess(index: index, genesis: genesis, seeds: seeds, config: old.config, persisted: old.persistentState,
                               seed: NetworkProcess.seed(of: index) &+ UInt64(old.membership.localRecord.value.incarnation + 1))
        restart(i, with: p, after: delay)
    }

    /// True for a node that is up and has started (and not left).
    public func participates(_ i: Int) -> Bool {
        nodes[i].up && nodes[i].process.membership.phase != .left && nodes[i].process.membership.phase != .idle
    }

    /// Every participating node holds every other as alive and no down node as alive/suspect.
    public func membershipConverged() -> Bool {
        let live = nodes.indices.filter { participates($0) }
        let upIDs = live.map { nodes[$0].process.nodeID }
        let downIDs = nodes.indices.filter { !participates($0) }.map { nodes[$0].process.nodeID }
        for i in live {
            let m = nodes[i].process.membership
            for id in upIDs where m.record(of: id)?.status != .alive { return false }
            for id in downIDs {
                if let s = m.record(of: id)?.status, s == .alive || s == .suspect { return false }
            }
        }
        return true
    }

    /// Every participating node holds the same digest, the same held event ids and the same
    /// balances, with nothing buffered.
    public func ledgersConverged() -> Bool {
        let live = nodes.indices.filter { participates($0) }
        guard let first = live.first else { return true }
        let l0 = nodes[first].process.ledger
        let ids0 = Set(l0.heldEvents.map(\.id))
        return live.allSatisfy { i in
            let l = nodes[i].process.ledger
            return l.bufferedCount == 0 && l.digest() == l0.digest() && l.balances == l0.balances && l.heldCount == l0.heldCount
                && Set(l.heldEvents.map(\.id)) == ids0
        }
    }
}

extension NetworkProcess {
    /// The PRNG seed of node `index`.
    public static func seed(of index: Int) -> UInt64 { UInt64(index) &* 0x9E37_79B9_7F4A_7C15 &+ 1 }
}
