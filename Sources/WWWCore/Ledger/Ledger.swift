/// Limits of a `Ledger`. Every buffer and batch is bounded.
public struct LedgerConfig: Hashable, Sendable {
    /// Out-of-order events held across all authors awaiting their gap [4096].
    public var maxBufferedEvents: Int
    /// How far past an author's high-water an event may be buffered [1024].
    public var maxLookahead: UInt64
    /// How far ahead of `now` an event's `createdAt` may be [10 min].
    public var maxClockSkew: Duration
    /// Events one `receive` call processes; the rest are refused as `.batchTooLarge` [1024].
    public var maxReceiveBatch: Int

    public init(maxBufferedEvents: Int = 4096, maxLookahead: UInt64 = 1024,
                maxClockSkew: Duration = .seconds(600), maxReceiveBatch: Int = 1024) {
        precondition(maxBufferedEvents >= 0 && maxReceiveBatch >= 1)
        self.maxBufferedEvents = maxBufferedEvents
        self.maxLookahead = maxLookahead
        self.maxClockSkew = maxClockSkew
        self.maxReceiveBatch = maxReceiveBatch
    }
}

/// Two different events with the same (author, authorSeq), both validly signed by the
/// author: self-verifying proof that the author equivocated (DESIGN.md §5).
/// `first.id < second.id`.
public struct EquivocationProof: Hashable, Sendable, Codable {
    public let first: LedgerEvent
    public let second: LedgerEvent

    public init(_ a: LedgerEvent, _ b: LedgerEvent) {
        precondition(a.author == b.author && a.authorSeq == b.authorSeq && a.id != b.id,
                     "an equivocation proof is two different events at one (author, authorSeq)")
        (first, second) = a.id < b.id ? (a, b) : (b, a)
    }

    public var author: NodeID { first.author }
    public var authorSeq: UInt64 { first.authorSeq }

    /// True when both events hash to their ids and carry the author's valid signature.
    public func verify(_ crypto: any CryptoProvider) -> Bool {
        guard first.author == second.author, first.authorSeq == second.authorSeq, first.id != second.id else { return false }
        return [first, second].allSatisfy { e in
            let bytes = e.unsignedCanonical.bytes
            return crypto.sha256(bytes) == e.id.bytes
                && crypto.verify(signature: e.signature, message: bytes, signer: e.author)
        }
    }
}

/// What the driver must do after a `Ledger` handler, in the order given.
public enum LedgerDirective: Hashable, Sendable {
    /// Write these events durably (idempotently: INSERT OR IGNORE by id) before acting on
    /// any directive after it. They are new to the held set, in application order.
    case persist([LedgerEvent])
    /// Disseminate the local node's new events to peers (after `persist`).
    case publish([LedgerEvent])
    /// An author equivocated: gossip the proof (its events were persisted just before).
    case equivocation(EquivocationProof)
    /// The event was refused; transient reasons may succeed later.
    case rejected(LedgerEvent, LedgerRejection)
    /// Tell the sender what we now hold (Scuttlebutt digest), after `persist`.
    case acknowledge(to: NodeID, digest: [NodeID: UInt64])
}

/// What `restore` found in the store.
public struct LedgerRestoreSummary: Hashable, Sendable {
    /// Events added to the held set.
    public var restored: Int = 0
    /// Events already held (a second restore, or repeated rows).
    public var duplicates: Int = 0
    /// Events whose id or content did not check out; not applied.
    public var corrupt: [EventID] = []
    /// Authors found equivocating in the stored events.
    public var equivocators: [NodeID] = []
}

/// The signed credit ledger of DESIGN.md §5 as a pure state machine.
///
/// Holds a grow-only set of signed events; every author's events form a chain 1, 2, 3, …;
/// the Scuttlebutt digest is `{author: highest contiguous authorSeq}` (van Renesse et al.,
/// "Efficient Reconciliation and Flow Control for Anti-Entropy Protocols", 2008). Events
/// past a gap wait in a bounded buffer. Two different events at one (author, authorSeq)
/// are equivocation: both are kept as proof and every event of that author is excluded
/// from balances.
///
/// Balances are a pure function of (genesis, held events): genesis grants plus the
/// transfers of each counted event, where counted = held, in its author's chain, author
/// not equivocating, and, among events with the same effect key (a `jobReceipt` per
/// (executor, job); a `duelSettlement` per (requester, job)), only the smallest id.
/// Σ balances = Σ grants always.
public struct Ledger: Sendable {
    public let genesis: Genesis
    public let config: LedgerConfig
    private let crypto: any CryptoProvider

    /// Held (persisted) events by id: chains plus proof events.
    private var held: [EventID: LedgerEvent] = [:]
    /// Per author, the chain's ids: index i is authorSeq i + 1.
    private var chains: [NodeID: [EventID]] = [:]
    /// Per author, validated events past a gap, by authorSeq (one per slot).
    private var buffer: [NodeID: [UInt64: LedgerEvent]] = [:]
    /// Events in `buffer`.
    public private(set) var bufferedCount = 0
    /// The first proof found per equivocating author.
    private var proofs: [NodeID: EquivocationProof] = [:]
    /// The counted event per effect key.
    private var winners: [EffectKey: EventID] = [:]
    /// Current balances: exactly the nodes whose balance is not zero (absent = zero), so
    /// equal ledgers have equal dictionaries.
    public private(set) var balances: [NodeID: Credits]

    private struct EffectKey: Hashable, Sendable {
        var author: NodeID
        var kind: String
        var job: JobID
    }

    /// What one handler call produced, before it becomes directives.
    private struct Step {
        var persisted: [LedgerEvent] = []
        var proofs: [EquivocationProof] = []
        var rejected: [(LedgerEvent, LedgerRejection)] = []
        var unboundedBuffer = false
    }

    public init(genesis: Genesis, crypto: any CryptoProvider, config: LedgerConfig = LedgerConfig()) {
        precondition(genesis.problems.isEmpty, "invalid genesis: \(genesis.problems)")
        self.genesis = genesis
        self.crypto = crypto
        self.config = config
        self.balances = genesis.grants.filter { $0.value != .zero }
    }

    // MARK: - Queries

    /// The balance of `node` (µcredits; may be negative).
    public func balance(of node: NodeID) -> Credits { balances[node] ?? .zero }

    /// Σ balances; equals `genesis.totalSupply` always.
    public var totalBalance: Credits { balances.values.reduce(.zero, +) }

    /// The stake `node` may weigh with: `declared` capped at its balance; 0 when the
    /// balance or the declaration is negative (DESIGN.md §5, `stake`).
    public func effectiveStake(declared: Credits, of node: NodeID) -> Credits {
        let b = balance(of: node)
        guard b > .zero, declared > .zero else { return .zero }
        return min(declared, b)
    }

    /// The executor's acceptance rule: the requester's balance in this view covers `price`.
    public func canCover(_ requester: NodeID, price: Credits) -> Bool {
        price >= .zero && balance(of: requester) >= price
    }

    /// The Scuttlebutt digest: `{author: highest contiguous authorSeq}` for every author held.
    public func digest() -> [NodeID: UInt64] {
        var d = [NodeID: UInt64]()
        for (author, chain) in chains where !chain.isEmpty { d[author] = UInt64(chain.count) }
        return d
    }

    /// The last event of `author`'s contiguous chain, if any.
    public func head(of author: NodeID) -> LedgerEvent? {
        chains[author]?.last.flatMap { held[$0] }
    }

    /// Whether `event` is well-formed and validly signed (the checks `receive` applies).
    public func isAuthentic(_ event: LedgerEvent, now: Instant) -> Bool {
        validate(event, now: now, checkSignatures: true) == nil
    }

    /// The highest contiguous authorSeq held for `author` (0 when none).
    public func highWater(of author: NodeID) -> UInt64 { UInt64(chains[author]?.count ?? 0) }

    /// Up to `limit` chain events the remote lacks given its digest, by (author, authorSeq):
    /// each author's events start right after the remote's high-water, so the remote can
    /// apply them without a gap.
    public func eventsMissing(from remote: [NodeID: UInt64], limit: Int) -> [LedgerEvent] {
        precondition(limit >= 0, "limit must be >= 0")
        var out = [LedgerEvent]()
        guard limit > 0 else { return out }
        for author in chains.keys.sorted() {
            let chain = chains[author]!
            let theirs = remote[author] ?? 0
            guard theirs < UInt64(chain.count) else { continue }
            for index in Int(theirs)..<chain.count {
                out.append(held[chain[index]]!)
                if out.count == limit { return out }
            }
        }
        return out
    }

    /// Whether `node` has been proven to equivocate.
    public func isEquivocating(_ node: NodeID) -> Bool { proofs[node] != nil }

    /// Proven equivocators, ascending.
    public var equivocators: [NodeID] { proofs.keys.sorted() }

    /// One proof per equivocating author, ascending by author.
    public var equivocationProofs: [EquivocationProof] { equivocators.map { proofs[$0]! } }

    /// The held event with `id`, if any.
    public func event(_ id: EventID) -> LedgerEvent? { held[id] }

    /// Number of held (persisted) events.
    public var heldCount: Int { held.count }

    /// Held events, ascending by id (for tests and dumps).
    public var heldEvents: [LedgerEvent] { held.values.sorted { $0.id < $1.id } }

    // MARK: - Handlers

    /// Creates, applies and signs the local node's next event (authorSeq = high-water + 1,
    /// createdAt = now). Returns `[.persist([e]), .publish([e])]`, or `[.rejected(e, reason)]`
    /// when the body breaks a rule (the sequence number is then not consumed).
    /// The driver must not append before its own chain is restored, or it equivocates.
    public mutating func append(_ body: LedgerEventBody, now: Instant, signer: any MessageSigner) -> [LedgerDirective] {
        let seq = highWater(of: signer.nodeID) + 1
        let event = LedgerEvent(authorSeq: seq, createdAt: now, body: body, signer: signer, crypto: crypto)
        if let reason = validate(event, now: now, checkSignatures: true) {
            return [.rejected(event, reason)]
        }
        var step = Step()
        ingest(event, &step)
        checkConservation()
        // Slot high-water + 1 is empty in the chain and (drained) in the buffer: no conflict.
        precondition(step.proofs.isEmpty && step.persisted.first == event, "own next event applies cleanly")
        // `persisted` may also hold own buffered events it unblocked (after a lost store).
        return [.persist(step.persisted), .publish([event])]
    }

    /// Validates and applies events a peer sent (in any order). Directives, in order:
    /// `.persist(new events)` if any, `.equivocation(proof)` per newly proven author,
    /// `.rejected(event, reason)` per refused event (input order), then
    /// `.acknowledge(to: from, digest:)`. Already-held events are ignored silently.
    /// An empty input returns `[]`.
    public mutating func receive(_ events: [LedgerEvent], from: NodeID, now: Instant) -> [LedgerDirective] {
        guard !events.isEmpty else { return [] }
        var step = Step()
        for (i, event) in events.enumerated() {
            if i >= config.maxReceiveBatch { step.rejected.append((event, .batchTooLarge)); continue }
            if held[event.id] == event { continue }
            if let reason = validate(event, now: now, checkSignatures: true) {
                step.rejected.append((event, reason))
                continue
            }
            ingest(event, &step)
        }
        checkConservation()
        var out = [LedgerDirective]()
        if !step.persisted.isEmpty { out.append(.persist(step.persisted)) }
        out += step.proofs.map { .equivocation($0) }
        out += step.rejected.map { .rejected($0.0, $0.1) }
        out.append(.acknowledge(to: from, digest: digest()))
        return out
    }

    /// Rebuilds state from the store at start-up; idempotent (held events are skipped, so
    /// nothing is applied twice). Ids are always rechecked; signatures only when
    /// `verifySignatures` (the events were verified before they were persisted).
    public mutating func restore(_ events: [LedgerEvent], verifySignatures: Bool = false) -> LedgerRestoreSummary {
        var summary = LedgerRestoreSummary()
        var step = Step(unboundedBuffer: true)
        let ordered = events.sorted {
            ($0.author, $0.authorSeq, $0.id) < ($1.author, $1.authorSeq, $1.id)
        }
        for event in ordered {
            if held[event.id] == event { summary.duplicates += 1; continue }
            if validate(event, now: nil, checkSignatures: verifySignatures) != nil {
                summary.corrupt.append(event.id)
                continue
            }
            let before = held.count
            ingest(event, &step)
            summary.restored += held.count - before
        }
        summary.equivocators = step.proofs.map(\.author)
        checkConservation()
        return summary
    }

    // MARK: - Internals

    private func validate(_ event: LedgerEvent, now: Instant?, checkSignatures: Bool) -> LedgerRejection? {
        LedgerRules.validate(event, genesis: genesis, crypto: crypto, now: now,
                             maxClockSkew: config.maxClockSkew, checkSignatures: checkSignatures)
    }

    /// Places a validated event: chain, conflict, buffer or duplicate.
    private mutating func ingest(_ event: LedgerEvent, _ step: inout Step) {
        let author = event.author
        let hw = highWater(of: author)
        if event.authorSeq <= hw {
            let existing = chains[author]![Int(event.authorSeq - 1)]
            if existing != event.id { conflict(held[existing]!, event, &step) }
        } else if event.authorSeq == hw + 1 {
            extendChain(event, &step)
            drainBuffer(of: author, &step)
        } else {
            bufferEvent(event, &step)
        }
    }

    private mutating func bufferEvent(_ event: LedgerEvent, _ step: inout Step) {
        let author = event.author
        if let other = buffer[author]?[event.authorSeq] {
            if other.id != event.id { conflict(other, event, &step) }
            return
        }
        if !step.unboundedBuffer {
            guard event.authorSeq - highWater(of: author) <= config.maxLookahead else {
                step.rejected.append((event, .tooFarAhead)); return
            }
            guard bufferedCount < config.maxBufferedEvents else {
                step.rejected.append((event, .bufferFull)); return
            }
        }
        buffer[author, default: [:]][event.authorSeq] = event
        bufferedCount += 1
    }

    private mutating func drainBuffer(of author: NodeID, _ step: inout Step) {
        while true {
            let nextSeq = highWater(of: author) + 1
            guard let next = buffer[author]?.removeValue(forKey: nextSeq) else { break }
            bufferedCount -= 1
            extendChain(next, &step)
        }
        if buffer[author]?.isEmpty == true { buffer[author] = nil }
        assert(bufferedCount >= 0 && bufferedCount == buffer.values.reduce(0) { $0 + $1.count })
    }

    private mutating func extendChain(_ event: LedgerEvent, _ step: inout Step) {
        precondition(event.authorSeq == highWater(of: event.author) + 1, "chains are contiguous")
        chains[event.author, default: []].append(event.id)
        hold(event, &step)
        count(event)
    }

    private mutating func hold(_ event: LedgerEvent, _ step: inout Step) {
        guard held[event.id] == nil else { return }
        held[event.id] = event
        step.persisted.append(event)
    }

    /// Records the first proof against an author, holds both events, excludes the author.
    private mutating func conflict(_ a: LedgerEvent, _ b: LedgerEvent, _ step: inout Step) {
        guard proofs[a.author] == nil else { return }
        let proof = EquivocationProof(a, b)
        proofs[a.author] = proof
        hold(proof.first, &step)
        hold(proof.second, &step)
        step.proofs.append(proof)
        exclude(a.author)
    }

    // MARK: Balances

    private func effectKey(_ event: LedgerEvent) -> EffectKey {
        switch event.body {
        case .jobReceipt(let r): EffectKey(author: event.author, kind: "jobReceipt", job: r.authorization.value.job)
        case .duelSettlement(let s): EffectKey(author: event.author, kind: "duelSettlement", job: s.job)
        }
    }

    /// Counts a chain event unless its author equivocates or a smaller id holds its key.
    private mutating func count(_ event: LedgerEvent) {
        guard proofs[event.author] == nil else { return }
        let key = effectKey(event)
        if let current = winners[key] {
            guard event.id < current else { return }
            apply(held[current]!, sign: -1)
        }
        winners[key] = event.id
        apply(event, sign: 1)
    }

    /// Uncounts every event of an equivocating author (every key names its author).
    private mutating func exclude(_ author: NodeID) {
        let keys = winners.keys.filter { $0.author == author }
        for key in keys {
            apply(held[winners.removeValue(forKey: key)!]!, sign: -1)
        }
    }

    private mutating func apply(_ event: LedgerEvent, sign: Int64) {
        for t in LedgerRules.transfers(of: event, parameters: genesis.parameters) {
            let delta = Credits(micro: t.amount.micro * sign)
            adjust(t.from, by: -delta)
            adjust(t.to, by: delta)
        }
    }

    private mutating func adjust(_ node: NodeID, by delta: Credits) {
        let b = balance(of: node) + delta
        balances[node] = b == .zero ? nil : b
    }

    private func checkConservation() {
        assert(totalBalance == genesis.totalSupply, "credit conservation: Σ balances = Σ grants")
    }
}
