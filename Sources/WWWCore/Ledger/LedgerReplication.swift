/// Limits of ledger anti-entropy.
public struct LedgerReplicationConfig: Hashable, Sendable {
    /// Events in one sync message [256].
    public var batch: Int
    /// Random alive peers that get each new event at once (besides named ones) [3].
    public var publishFanout: Int
    /// Events a received message may carry before it is refused [4 × batch].
    public var maxEventsPerMessage: Int

    public init(batch: Int = 256, publishFanout: Int = 3, maxEventsPerMessage: Int? = nil) {
        precondition(batch >= 1 && publishFanout >= 0)
        self.batch = batch
        self.publishFanout = publishFanout
        self.maxEventsPerMessage = maxEventsPerMessage ?? 4 * batch
    }
}

/// Ledger anti-entropy (DESIGN.md §5), the part of the node machine that moves events
/// between replicas: a periodic `request` to one random alive peer, the `reply` with what
/// the requester lacks, the `push` back of what the replier lacks, and pushes of new events
/// to named peers plus `publishFanout` random ones. Every message carries the sender's
/// digest and up to `LedgerSyncProofs.maxProofs` equivocation proofs.
///
/// It also decides when this node may sign ledger events (`readyToAppend`): only once it
/// has heard a peer's digest (or is alone) and no peer knows a longer chain of this node's
/// own events than it holds — so a node that lost its store never re-signs a sequence
/// number it already used (which every peer would prove as equivocation).
struct LedgerReplication: Sendable {
    let config: LedgerReplicationConfig
    let me: NodeID
    /// A peer's digest has arrived since start.
    private(set) var heardDigest = false
    /// The longest chain of this node's own events any peer's digest showed.
    private(set) var remoteSelfHighWater: UInt64 = 0
    /// Per author whose chain was seen diverging: windows already sent (the next goes one
    /// window further back). Forgotten once the author is proven to equivocate; bounded.
    private(set) var divergenceDepth: [NodeID: Int] = [:]
    static let maxDivergingAuthors = 256

    init(config: LedgerReplicationConfig, me: NodeID) {
        self.config = config
        self.me = me
    }

    func readyToAppend(_ ledger: Ledger, alone: Bool) -> Bool {
        (heardDigest || alone) && remoteSelfHighWater <= ledger.highWater(of: me)
    }

    /// Events of a diverging chain sent per sync: the ledger checks at most this many old
    /// events per message (`LedgerConfig.maxCandidatesPerReceive`).
    static let divergenceWindow = 32

    /// The periodic opener: a digest-only `request` to `peer` (one random alive peer).
    func periodicRequest(_ ledger: Ledger, peer: (node: NodeID, address: String)?) -> [NodeDirective] {
        guard let peer else { return [] }
        return [message(.request, ledger, events: [], to: peer.node, address: peer.address)]
    }

    /// Pushes `events` to `extra` (e.g. a receipt's requester) and to `peers` (the
    /// `publishFanout` random alive peers the caller drew) that are not among them.
    func publish(_ events: [LedgerEvent], _ ledger: Ledger, extra: [(NodeID, String)], peers: [(node: NodeID, address: String)])
        -> [NodeDirective] {
        guard !events.isEmpty else { return [] }
        var targets: [(NodeID, String)] = extra.filter { $0.0 != me }
        for p in peers.prefix(config.publishFanout) where !targets.contains(where: { $0.0 == p.node }) {
            targets.append((p.node, p.address))
        }
        return targets.map { message(.push, ledger, events: events, to: $0.0, address: $0.1) }
    }

    /// Handles a received sync message: applies its events and proofs, then answers by role.
    /// Returns the ledger's directives (persist first) followed by the answer, if any, and
    /// the events of equivocation proofs found now (the caller pushes them on).
    /// `address`: where answers go (nil: no answer — the sender is not a live member).
    mutating func receive(_ m: LedgerSyncMessage, from: NodeID, address: String?, ledger: inout Ledger,
                          now: Instant) -> (directives: [NodeDirective], newProofs: [LedgerEvent]) {
        guard from != me else {
            return ([.notify(.peerMessageRefused(.ledger, from: from, reason: "a sync from this node itself"))], [])
        }
        guard m.events.count <= config.maxEventsPerMessage, m.proofs.count <= 2 * LedgerSyncProofs.maxProofs else {
            return ([.notify(.peerMessageRefused(.ledger, from: from, reason: "too many events in one sync message"))], [])
        }
        heardDigest = true
        var incoming = m.events + m.proofs
        var refused: [NodeDirective] = []
        let claim = m.digest[me] ?? 0
        if claim > ledger.highWater(of: me) {
            // Believed only with proof: the claimed head of this node's own chain, signed by it.
            if let head = m.recipientHead, head.author == me, head.authorSeq == claim, ledger.isAuthentic(head, now: now) {
                remoteSelfHighWater = max(remoteSelfHighWater, claim)
                incoming.append(head)
            } else {
                refused.append(.notify(.peerMessageRefused(.ledger, from: from, reason: "claims more of this node's own chain than it proves")))
            }
        }
        var (out, proofs) = Self.apply(incoming, from: from, ledger: &ledger, now: now)
        out = refused + out
        guard let address else { return (out, proofs) }
        // Chains at equal high-water whose fingerprints differ: send the recent events so the
        // twin slot is found (bounded by the candidates a receiver checks per message).
        let depths = divergenceDepth
        let diverging = ledger.rangesDiverging(digest: m.digest, fingerprints: m.fingerprints, window: Self.divergenceWindow,
                                               depth: { depths[$0] ?? 0 })
        noteDivergence(ledger.divergingAuthors(digest: m.digest, fingerprints: m.fingerprints), ledger: ledger)
        guard m.role != .push else {
            if !diverging.isEmpty { out.append(message(.push, ledger, fill: diverging, to: from, address: address)) }
            return (out, proofs)
        }
        let missing = ledger.rangesMissing(from: m.digest, limit: config.batch) + diverging
        switch m.role {
        case .request:
            out.append(message(.reply, ledger, fill: missing, to: from, address: address))
        case .reply:
            if !missing.isEmpty { out.append(message(.push, ledger, fill: missing, to: from, address: address)) }
        case .push:
            break
        }
        return (out, proofs)
    }

    /// Advances the window depth of the authors seen diverging now; forgets authors that are
    /// proven (the proof ends it).
    private mutating func noteDivergence(_ authors: Set<NodeID>, ledger: Ledger) {
        for a in authors.sorted() where divergenceDepth[a] != nil || divergenceDepth.count < Self.maxDivergingAuthors {
            divergenceDepth[a, default: 0] += 1
        }
        for a in divergenceDepth.keys where ledger.isEquivocating(a) { divergenceDepth[a] = nil }
    }

    /// Feeds events to the ledger in bounded batches and turns its directives into node
    /// directives: persist, then notifications.
    static func apply(_ events: [LedgerEvent], from: NodeID, ledger: inout Ledger,
                      now: Instant) -> (directives: [NodeDirective], newProofs: [LedgerEvent]) {
        var out: [NodeDirective] = []
        var proofs: [LedgerEvent] = []
        var start = 0
        while start < events.count {
            let end = min(events.count, start + ledger.config.maxReceiveBatch)
            let (d, p) = translate(ledger.receive(Array(events[start..<end]), from: from, now: now))
            out += d
            proofs += p
            start = end
        }
        return (out, proofs)
    }

    /// Ledger directives as node directives (publishing is the caller's job: it knows to
    /// whom), plus the events of new equivocation proofs.
    static func translate(_ directives: [LedgerDirective]) -> (directives: [NodeDirective], newProofs: [LedgerEvent]) {
        var out: [NodeDirective] = []
        var proofs: [LedgerEvent] = []
        for d in directives {
            switch d {
            case .persist(let events): out.append(.persistEvents(events))
            case .equivocation(let p):
                out.append(.notify(.equivocation(author: p.author, authorSeq: p.authorSeq)))
                proofs += [p.first, p.second]
            case .rejected(let e, let r): out.append(.notify(.ledgerEventRejected(e.id, r)))
            case .publish, .acknowledge: break
            }
        }
        return (out, proofs)
    }

    private func message(_ role: LedgerSyncMessage.Role, _ ledger: Ledger, events: [LedgerEvent], to: NodeID,
                         address: String) -> NodeDirective {
        .send(.ledgerSync(sync(role, ledger, events: events, to: to)), to: to, address: address)
    }

    /// A sync whose events the driver reads from its store (`fill`); with nothing to fill,
    /// a plain send.
    private func message(_ role: LedgerSyncMessage.Role, _ ledger: Ledger, fill: [LedgerRange], to: NodeID,
                         address: String) -> NodeDirective {
        let m = sync(role, ledger, events: [], to: to)
        return fill.isEmpty ? .send(.ledgerSync(m), to: to, address: address)
            : .sendLedgerSync(m, fill: fill, to: to, address: address)
    }

    private func sync(_ role: LedgerSyncMessage.Role, _ ledger: Ledger, events: [LedgerEvent], to: NodeID) -> LedgerSyncMessage {
        LedgerSyncMessage(role: role, digest: ledger.digest(), events: events, proofs: LedgerSyncProofs.carried(by: ledger),
                          recipientHead: ledger.head(of: to), fingerprints: ledger.fingerprints())
    }
}
