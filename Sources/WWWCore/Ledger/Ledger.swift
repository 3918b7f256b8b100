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
    /// The last events of each author's chain kept in memory [16]: duplicates among them are
    /// recognised (and conflicts proven) without the store; older ones go to the store as
    /// candidates (`LedgerDirective.persist`).
    public var recentPerAuthor: Int
    /// Old events (below the recent ones) one `receive` call checks and writes as store
    /// candidates [32]; the rest are skipped unchecked. Anti-entropy never sends a peer what
    /// its digest says it holds, so only proofs and racing pushes are old: a peer replaying
    /// history costs at most this many signature checks and writes per message.
    public var maxCandidatesPerReceive: Int
    /// Ids of old events checked recently, skipped when they come again [1024].
    public var checkedMemory: Int

    public init(maxBufferedEvents: Int = 4096, maxLookahead: UInt64 = 1024,
                maxClockSkew: Duration = .seconds(600), maxReceiveBatch: Int = 1024, recentPerAuthor: Int = 16,
                maxCandidatesPerReceive: Int = 32, checkedMemory: Int = 1024) {
        precondition(maxBufferedEvents >= 0 && maxReceiveBatch >= 1 && recentPerAuthor >= 1)
        precondition(maxCandidatesPerReceive >= 0 && checkedMemory >= 0)
        self.maxCandidatesPerReceive = maxCandidatesPerReceive
        self.checkedMemory = checkedMemory
        self.maxBufferedEvents = maxBufferedEvents
        self.maxLookahead = maxLookahead
        self.maxClockSkew = maxClockSkew
        self.maxReceiveBatch = maxReceiveBatch
        self.recentPerAuthor = recentPerAuthor
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

/// A run of one author's chain: the events at authorSeq `afterSeq + 1 … afterSeq + count`.
/// The ledger names runs; the driver reads their events from its store.
public struct LedgerRange: Hashable, Sendable {
    public var author: NodeID
    public var afterSeq: UInt64
    public var count: Int

    public init(author: NodeID, afterSeq: UInt64, count: Int) {
        precondition(count >= 1, "a range holds at least one event")
        self.author = author
        self.afterSeq = afterSeq
        self.count = count
    }
}

/// What the driver must do after a `Ledger` handler, in the order given.
public enum LedgerDirective: Hashable, Sendable {
    /// Write these events durably (idempotently: INSERT OR IGNORE by id) before acting on
    /// any directive after it, in application order. Most are new to the chains; an event
    /// far below its author's high-water (older than the `recentPerAuthor` the ledger keeps)
    /// cannot be checked in memory and is written as a candidate: the store keeps it only
    /// if new, and when it holds a different event at the same (author, authorSeq) the
    /// driver reports the pair through `Ledger.storedConflict`.
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
    /// Events added to the chains, the buffer or a proof.
    public var restored: Int = 0
    /// Events already held (a second restore, or repeated rows).
    public var duplicates: Int = 0
    /// Events whose id or content did not check out; not applied.
    public var corrupt: [EventID] = []
    /// Authors found equivocating in the stored events.
    public var equivocators: [NodeID] = []

    public init(restored: Int = 0, duplicates: Int = 0, corrupt: [EventID] = [], equivocators: [NodeID] = []) {
        self.restored = restored
        self.duplicates = duplicates
        self.corrupt = corrupt
        self.equivocators = equivocators
    }

    /// Adds another page's summary (restores run page by page).
    public mutating func merge(_ other: LedgerRestoreSummary) {
        restored += other.restored
        duplicates += other.duplicates
        corrupt += other.corrupt
        equivocators += other.equivocators
    }
}

/// The signed credit ledger of DESIGN.md §5 as a pure state machine.
///
/// Replicates a grow-only set of signed events; every author's events form a chain 1, 2,
/// 3, …; the Scuttlebutt digest is `{author: highest contiguous authorSeq}` (van Renesse et
/// al., "Efficient Reconciliation and Flow Control for Anti-Entropy Protocols", 2008).
/// Events past a gap wait in a bounded buffer. Two different events at one (author,
/// authorSeq) are equivocation: both are kept as proof and every event of that author is
/// excluded from balances.
///
/// Balances are a pure function of (genesis, chains): genesis grants plus the transfers of
/// each counted event, where counted = in its author's chain, author not equivocating, its
/// `createdAt` not before the latest `createdAt` of the events before it in its chain, and,
/// among events with the same effect
/// key (a `jobReceipt` per (executor, job); a `duelSettlement` per (requester, job)), only
/// the smallest id. Σ balances = Σ grants always.
///
/// Memory does not grow with the events (docs/protocol.md, "Ledger memory"): the events
/// live in the driver's store (`persist` directives; anti-entropy names `LedgerRange`s for
/// the driver to read). In memory per author: the high-water, the last `recentPerAuthor`
/// events, the net credits its counted events moved, and the effect keys that can still
/// recur — a key's authorization or acceptances expire, and an expired key can never be
/// counted again once its author's chain has passed the expiry (a later event is either
/// created after the expiry and refused, or created before an earlier event of its chain and
/// uncounted).
public struct Ledger: Sendable {
    public let genesis: Genesis
    public let config: LedgerConfig
    private let crypto: any CryptoProvider

    /// Per author with a non-empty chain.
    private var authors: [NodeID: AuthorState] = [:]
    /// Each chain's high-water and fingerprint, kept beside `authors`: every sync message
    /// carries both, and reading them out of `authors` copied every author's state.
    private var highWaters: [NodeID: UInt64] = [:]
    private var chainFingerprints: [NodeID: UInt64] = [:]
    /// Per author, validated events past a gap, by authorSeq (one per slot).
    private var buffer: [NodeID: [UInt64: LedgerEvent]] = [:]
    /// Events in `buffer`.
    public private(set) var bufferedCount = 0
    /// The first proof found per equivocating author.
    private var proofs: [NodeID: EquivocationProof] = [:]
    /// Old events checked lately (FIFO of at most `checkedMemory` ids, and its set).
    private var checkedOrder: [EventID] = []
    private var checked: Set<EventID> = []
    /// Old events `receive` skipped unchecked (over the per-call cap, or checked lately).
    public private(set) var skippedOldEvents = 0
    /// Events in all chains (Σ high-waters).
    public private(set) var chainedCount = 0
    /// Chain events not counted because their `createdAt` is before an earlier one's in
    /// their chain.
    public private(set) var regressedCount = 0
    /// Current balances: exactly the nodes whose balance is not zero (absent = zero), so
    /// equal ledgers have equal dictionaries.
    public private(set) var balances: [NodeID: Credits]
    /// Each executor's duels as counted settlements decided them (absent: none).
    public private(set) var duelRecords: [NodeID: DuelRecord] = [:]

    /// What the ledger keeps of one author's chain.
    private struct AuthorState: Sendable {
        var highWater: UInt64 = 0
        /// The last ≤ `recentPerAuthor` chain events, oldest first (the head is last).
        var recent: [LedgerEvent] = []
        /// Counted events' effects whose key can still recur.
        var effects: [EffectKey: Effect] = [:]
        /// `effects.count` after the last prune (pruning is amortised).
        var effectsAfterPrune = 0
        /// Net µcredits per node that this author's counted events moved (to uncount them
        /// all at once if the author is proven to equivocate).
        var contribution: [NodeID: Credits] = [:]
        /// The duel records its counted settlements added (to uncount them at once too).
        var recordContribution: [NodeID: DuelRecord] = [:]

        /// FNV-1a over the ids of the chain's events 1…highWater, in order.
        var fingerprint: UInt64 = Ledger.fingerprintSeed

        /// The latest `createdAt` in the chain so far (monotone): an event created before it
        /// does not count, so a key whose expiry is before it can never count again.
        var latestCreatedAt: Instant?

        var head: LedgerEvent? { recent.last }

        /// The chain event at `seq` if it is among the recent ones.
        func recentEvent(at seq: UInt64) -> LedgerEvent? {
            let first = highWater - UInt64(recent.count) + 1
            guard seq >= first, seq <= highWater else { return nil }
            return recent[Int(seq - first)]
        }
    }

    private struct EffectKey: Hashable, Sendable {
        var kind: UInt8
        var job: JobID
    }

    private struct Effect: Sendable {
        var id: EventID
        var expiresAt: Instant
        var transfers: [Transfer]
        /// A settlement's effect on its executors' duel records.
        var records: [NodeID: DuelRecord] = [:]
    }

    private struct Slot: Hashable {
        var author: NodeID
        var seq: UInt64
    }

    /// What one handler call produced, before it becomes directives.
    private struct Step {
        var persisted: [LedgerEvent] = []
        var proofs: [EquivocationProof] = []
        var rejected: [(LedgerEvent, LedgerRejection)] = []
        /// Old events written as candidates in this call, by slot (a pair in one call is a
        /// proof without the store).
        var candidates: [Slot: LedgerEvent] = [:]
        /// Restoring from the store: nothing is persisted again, the buffer is unbounded,
        /// old events are duplicates.
        var isRestore = false
    }

    private enum Placement {
        case chained, buffered, duplicate, conflict, candidate, refused
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
    public func digest() -> [NodeID: UInt64] { highWaters }

    static let fingerprintSeed: UInt64 = 0xcbf2_9ce4_8422_2325

    /// One chain step of the fingerprint (FNV-1a 64 over the event id's bytes).
    static func fold(_ h: UInt64, _ id: EventID) -> UInt64 {
        var h = h
        for b in id.bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        return h
    }

    /// Per author, the fingerprint of its chain up to the digest's high-water. Two replicas
    /// with the same high-water and different fingerprints hold different events somewhere
    /// in that chain: an equivocation the digest alone cannot show. Proven equivocators are
    /// left out (their replicas differ for good, and the proof already travels).
    public func fingerprints() -> [NodeID: UInt64] {
        guard !proofs.isEmpty else { return chainFingerprints }
        return chainFingerprints.filter { proofs[$0.key] == nil }
    }

    /// For every author whose chain the remote holds to the same high-water but with a
    /// different fingerprint: the last `window` events of that chain, to send so that the
    /// conflicting slot meets its twin (in memory or in the store) and is proven.
    /// `depth(author)` windows back from the high-water (0: the last `window` events, 1: the
    /// `window` before those, …, wrapping to 0 past the chain's start), so a divergence deep
    /// in a chain is reached over successive syncs.
    public func rangesDiverging(digest remote: [NodeID: UInt64], fingerprints theirs: [NodeID: UInt64], window: Int,
                                depth: (NodeID) -> Int = { _ in 0 }) -> [LedgerRange] {
        guard window > 0, !theirs.isEmpty else { return [] }
        var out: [LedgerRange] = []
        for (a, fp) in theirs.sorted(by: { $0.key < $1.key }) {
            guard let st = authors[a], proofs[a] == nil, remote[a] == st.highWater, st.highWater > 0, fp != st.fingerprint else { continue }
            let w = UInt64(window)
            let windows = (st.highWater + w - 1) / w
            let back = UInt64(max(0, depth(a))) % windows * w
            let end = st.highWater - back
            let n = Int(min(end, w))
            out.append(LedgerRange(author: a, afterSeq: end - UInt64(n), count: n))
        }
        return out
    }

    /// Authors whose chain fingerprint differs from `theirs` at equal high-water.
    public func divergingAuthors(digest remote: [NodeID: UInt64], fingerprints theirs: [NodeID: UInt64]) -> Set<NodeID> {
        var out = Set<NodeID>()
        for (a, fp) in theirs {
            if let st = authors[a], proofs[a] == nil, remote[a] == st.highWater, st.highWater > 0, fp != st.fingerprint { out.insert(a) }
        }
        return out
    }

    /// The last event of `author`'s contiguous chain, if any.
    public func head(of author: NodeID) -> LedgerEvent? { authors[author]?.head }

    /// Whether `event` is well-formed and validly signed (the checks `receive` applies).
    public func isAuthentic(_ event: LedgerEvent, now: Instant) -> Bool {
        validate(event, now: now, checkSignatures: true) == nil
    }

    /// The highest contiguous authorSeq held for `author` (0 when none).
    public func highWater(of author: NodeID) -> UInt64 { highWaters[author] ?? 0 }

    /// Up to `limit` chain events the remote lacks given its digest, as runs by (author,
    /// authorSeq): each author's run starts right after the remote's high-water, so the
    /// remote can apply them without a gap. The driver reads the events from its store.
    public func rangesMissing(from remote: [NodeID: UInt64], limit: Int) -> [LedgerRange] {
        precondition(limit >= 0, "limit must be >= 0")
        var out = [LedgerRange]()
        var left = limit
        for author in authors.keys.sorted() where left > 0 {
            let mine = authors[author]!.highWater, theirs = remote[author] ?? 0
            guard theirs < mine else { continue }
            let n = Int(min(mine - theirs, UInt64(left)))
            out.append(LedgerRange(author: author, afterSeq: theirs, count: n))
            left -= n
        }
        return out
    }

    /// The jobs `executor` holds counted receipts for whose authorization has not expired
    /// as far as the ledger can tell (a superset of the live ones), with their expiry.
    public func liveReceipts(of executor: NodeID) -> [(job: JobID, expiresAt: Instant)] {
        guard let st = authors[executor] else { return [] }
        return st.effects.compactMap { $0.key.kind == Self.receiptKind ? ($0.key.job, $0.value.expiresAt) : nil }
            .sorted { $0.expiresAt < $1.expiresAt }
    }

    /// Effect keys held in memory, over all authors (for benchmarks and metrics).
    public var liveEffectCount: Int { authors.values.reduce(0) { $0 + $1.effects.count } }

    /// Whether `node` has been proven to equivocate.
    public func isEquivocating(_ node: NodeID) -> Bool { proofs[node] != nil }

    /// Proven equivocators, ascending.
    public var equivocators: [NodeID] { proofs.keys.sorted() }

    /// One proof per equivocating author, ascending by author.
    public var equivocationProofs: [EquivocationProof] { equivocators.map { proofs[$0]! } }

    // MARK: - Handlers

    /// Creates, applies and signs the local node's next event (authorSeq = high-water + 1,
    /// createdAt = now, or the head's createdAt if the clock went back). Returns
    /// `[.persist([e]), .publish([e])]`, or `[.rejected(e, reason)]` when the body breaks a
    /// rule (the sequence number is then not consumed).
    /// The driver must not append before its own chain is restored, or it equivocates.
    public mutating func append(_ body: LedgerEventBody, now: Instant, signer: any MessageSigner) -> [LedgerDirective] {
        let seq = highWater(of: signer.nodeID) + 1
        let at = max(now, authors[signer.nodeID]?.latestCreatedAt ?? now)
        let event = LedgerEvent(authorSeq: seq, createdAt: at, body: body, signer: signer, crypto: crypto)
        if let reason = validate(event, now: at, checkSignatures: true) {
            return [.rejected(event, reason)]
        }
        var step = Step()
        _ = ingest(event, &step)
        checkConservation()
        // Slot high-water + 1 is empty in the chain and (drained) in the buffer: no conflict.
        precondition(step.proofs.isEmpty && step.persisted.first == event, "own next event applies cleanly")
        // `persisted` may also hold own buffered events it unblocked (after a lost store).
        return [.persist(step.persisted), .publish([event])]
    }

    /// Validates and applies events a peer sent (in any order). Directives, in order:
    /// `.persist(new events and candidates)` if any, `.equivocation(proof)` per newly proven
    /// author, `.rejected(event, reason)` per refused event (input order), then
    /// `.acknowledge(to: from, digest:)`. Events known to be held are ignored silently,
    /// without a signature check. An empty input returns `[]`.
    public mutating func receive(_ events: [LedgerEvent], from: NodeID, now: Instant) -> [LedgerDirective] {
        guard !events.isEmpty else { return [] }
        var step = Step()
        var candidates = 0
        for (i, event) in events.enumerated() {
            if i >= config.maxReceiveBatch { step.rejected.append((event, .batchTooLarge)); continue }
            if isKnownDuplicate(event) { continue }
            if isOld(event) {
                guard candidates < config.maxCandidatesPerReceive, !checked.contains(event.id) else {
                    skippedOldEvents += 1
                    continue
                }
                candidates += 1
                remember(event.id)
            }
            if let reason = validate(event, now: now, checkSignatures: true) {
                step.rejected.append((event, reason))
                continue
            }
            _ = ingest(event, &step)
        }
        checkConservation()
        var out = [LedgerDirective]()
        if !step.persisted.isEmpty { out.append(.persist(step.persisted)) }
        out += step.proofs.map { .equivocation($0) }
        out += step.rejected.map { .rejected($0.0, $0.1) }
        out.append(.acknowledge(to: from, digest: digest()))
        return out
    }

    /// The driver's store holds `stored` and was given `other`, a different event at the
    /// same (author, authorSeq) — a candidate write found it. Both are checked (ids and
    /// signatures); a genuine pair proves the author equivocated: returns
    /// `[.equivocation(proof)]` the first time, `[]` after (or when the pair is not genuine).
    public mutating func storedConflict(_ stored: LedgerEvent, _ other: LedgerEvent) -> [LedgerDirective] {
        guard stored.author == other.author, stored.authorSeq == other.authorSeq, stored.id != other.id,
              proofs[stored.author] == nil,
              validate(stored, now: nil, checkSignatures: true) == nil,
              validate(other, now: nil, checkSignatures: true) == nil else { return [] }
        var step = Step()
        conflict(stored, other, persisting: [], &step)
        checkConservation()
        return step.proofs.map { .equivocation($0) }
    }

    /// Rebuilds state from the store at start-up, one page at a time, in the store's order
    /// (author, authorSeq, id); each row once. Ids are always rechecked; signatures only
    /// when `verifySignatures` (the events were verified before they were persisted).
    /// Within a page any order works; across pages, an author's events must not come
    /// before events of a lower authorSeq of that author in an earlier page by more than
    /// `recentPerAuthor` (they would be taken for duplicates).
    public mutating func restore(_ events: [LedgerEvent], verifySignatures: Bool = false) -> LedgerRestoreSummary {
        var summary = LedgerRestoreSummary()
        var step = Step(isRestore: true)
        let ordered = events.sorted {
            ($0.author, $0.authorSeq, $0.id) < ($1.author, $1.authorSeq, $1.id)
        }
        for event in ordered {
            if isKnownDuplicate(event) { summary.duplicates += 1; continue }
            if validate(event, now: nil, checkSignatures: verifySignatures) != nil {
                summary.corrupt.append(event.id)
                continue
            }
            switch ingest(event, &step) {
            case .duplicate, .candidate: summary.duplicates += 1
            case .chained, .buffered, .conflict, .refused: summary.restored += 1
            }
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

    /// At or below its author's high-water but older than the recent events in memory.
    private func isOld(_ event: LedgerEvent) -> Bool {
        guard let st = authors[event.author], event.authorSeq <= st.highWater else { return false }
        return st.recentEvent(at: event.authorSeq) == nil
    }

    private mutating func remember(_ id: EventID) {
        guard config.checkedMemory > 0, checked.insert(id).inserted else { return }
        checkedOrder.append(id)
        if checkedOrder.count > config.checkedMemory {
            let drop = checkedOrder.count - config.checkedMemory
            for old in checkedOrder.prefix(drop) { checked.remove(old) }
            checkedOrder.removeFirst(drop)
        }
    }

    /// The same id already sits at the event's slot in memory (recent chain or buffer).
    private func isKnownDuplicate(_ event: LedgerEvent) -> Bool {
        if authors[event.author]?.recentEvent(at: event.authorSeq)?.id == event.id { return true }
        return buffer[event.author]?[event.authorSeq]?.id == event.id
    }

    /// Places a validated event: chain, conflict, buffer, duplicate or store candidate.
    private mutating func ingest(_ event: LedgerEvent, _ step: inout Step) -> Placement {
        let author = event.author
        let hw = highWater(of: author)
        if event.authorSeq <= hw {
            if let known = authors[author]!.recentEvent(at: event.authorSeq) {
                guard known.id != event.id else { return .duplicate }
                conflict(known, event, persisting: [event], &step)
                return .conflict
            }
            return candidate(event, &step)
        } else if event.authorSeq == hw + 1 {
            extendChain(event, &step)
            drainBuffer(of: author, &step)
            return .chained
        } else {
            return bufferEvent(event, &step)
        }
    }

    /// An old event the ledger cannot check in memory: the store decides (see `persist`).
    private mutating func candidate(_ event: LedgerEvent, _ step: inout Step) -> Placement {
        guard proofs[event.author] == nil, !step.isRestore else { return .candidate }
        let slot = Slot(author: event.author, seq: event.authorSeq)
        if let other = step.candidates[slot] {
            if other.id != event.id { conflict(other, event, persisting: [event], &step) }
            return .candidate
        }
        step.candidates[slot] = event
        step.persisted.append(event)
        return .candidate
    }

    private mutating func bufferEvent(_ event: LedgerEvent, _ step: inout Step) -> Placement {
        let author = event.author
        if let other = buffer[author]?[event.authorSeq] {
            if other.id != event.id { conflict(other, event, persisting: [other, event], &step); return .conflict }
            return .duplicate
        }
        if !step.isRestore {
            guard event.authorSeq - highWater(of: author) <= config.maxLookahead else {
                step.rejected.append((event, .tooFarAhead)); return .refused
            }
            guard bufferedCount < config.maxBufferedEvents else {
                step.rejected.append((event, .bufferFull)); return .refused
            }
        }
        buffer[author, default: [:]][event.authorSeq] = event
        bufferedCount += 1
        return .buffered
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
        var st = authors.removeValue(forKey: event.author) ?? AuthorState()
        precondition(event.authorSeq == st.highWater + 1, "chains are contiguous")
        let latest = st.latestCreatedAt
        st.highWater += 1
        st.fingerprint = Self.fold(st.fingerprint, event.id)
        highWaters[event.author] = st.highWater
        chainFingerprints[event.author] = st.fingerprint
        st.recent.append(event)
        if st.recent.count > config.recentPerAuthor { st.recent.removeFirst(st.recent.count - config.recentPerAuthor) }
        chainedCount += 1
        // A proof's events were persisted when the proof was found.
        let proven = proofs[event.author].map { $0.first.id == event.id || $0.second.id == event.id } ?? false
        if !step.isRestore, !proven { step.persisted.append(event) }
        if proofs[event.author] == nil {
            if let latest, event.createdAt < latest {
                regressedCount += 1
            } else {
                count(event, &st)
            }
        }
        st.latestCreatedAt = max(latest ?? event.createdAt, event.createdAt)
        authors[event.author] = st
    }

    /// Records the first proof against an author, persists those of its events not yet
    /// persisted (`persisting`, in proof order), excludes the author.
    private mutating func conflict(_ a: LedgerEvent, _ b: LedgerEvent, persisting: [LedgerEvent], _ step: inout Step) {
        guard proofs[a.author] == nil else { return }
        let proof = EquivocationProof(a, b)
        proofs[a.author] = proof
        if !step.isRestore {
            step.persisted += [proof.first, proof.second].filter { persisting.contains($0) }
        }
        step.proofs.append(proof)
        exclude(a.author)
    }

    // MARK: Balances

    private static let receiptKind: UInt8 = 1
    private static let settlementKind: UInt8 = 2

    private static func effectKey(_ event: LedgerEvent) -> (EffectKey, expiresAt: Instant) {
        switch event.body {
        case .jobReceipt(let r):
            (EffectKey(kind: receiptKind, job: r.authorization.value.job), r.authorization.value.expiresAt)
        case .duelSettlement(let s):
            (EffectKey(kind: settlementKind, job: s.job), s.expiresAt)
        }
    }

    /// Counts a chain event unless a smaller id holds its key.
    private mutating func count(_ event: LedgerEvent, _ st: inout AuthorState) {
        let (key, expiresAt) = Self.effectKey(event)
        if let current = st.effects[key] {
            guard event.id < current.id else { return }
            apply(current.transfers, sign: -1, &st)
            record(current.records, sign: -1, &st)
        }
        let transfers = LedgerRules.transfers(of: event, parameters: genesis.parameters)
        let records = Self.duelRecords(of: event)
        st.effects[key] = Effect(id: event.id, expiresAt: expiresAt, transfers: transfers, records: records)
        apply(transfers, sign: 1, &st)
        record(records, sign: 1, &st)
        prune(&st, after: event.createdAt)
    }

    /// Forgets effects whose key can no longer recur: expired before `createdAt`, the
    /// chain's latest instant (every later counted event is created at or after it, and a
    /// valid one cannot be created after its key's expiry). Amortised: runs when the map
    /// has doubled.
    private func prune(_ st: inout AuthorState, after createdAt: Instant) {
        guard st.effects.count > 2 * st.effectsAfterPrune + 64 else { return }
        st.effects = st.effects.filter { $0.value.expiresAt >= createdAt }
        st.effectsAfterPrune = st.effects.count
    }

    /// Uncounts every event of an equivocating author.
    private mutating func exclude(_ author: NodeID) {
        guard var st = authors[author] else { return }
        for (node, delta) in st.contribution { adjust(node, by: -delta) }
        st.contribution = [:]
        for (node, r) in st.recordContribution { adjustRecord(node, by: r, sign: -1) }
        st.recordContribution = [:]
        st.effects = [:]
        st.effectsAfterPrune = 0
        authors[author] = st
    }

    private mutating func apply(_ transfers: [Transfer], sign: Int64, _ st: inout AuthorState) {
        for t in transfers {
            let delta = Credits(micro: t.amount.micro * sign)
            adjust(t.from, by: -delta)
            adjust(t.to, by: delta)
            st.contribution[t.from] = nonZero((st.contribution[t.from] ?? .zero) - delta)
            st.contribution[t.to] = nonZero((st.contribution[t.to] ?? .zero) + delta)
        }
    }

    private func nonZero(_ c: Credits) -> Credits? { c == .zero ? nil : c }

    /// A settlement's outcome per executor: the majority's pick wins, the other loses; a
    /// tie majority or none is a tie for both.
    private static func duelRecords(of event: LedgerEvent) -> [NodeID: DuelRecord] {
        guard case .duelSettlement(let s) = event.body else { return [:] }
        let e1 = s.first.value.executor, e2 = s.second.value.executor
        switch s.majority {
        case .first: return [e1: DuelRecord(wins: 1), e2: DuelRecord(losses: 1)]
        case .second: return [e1: DuelRecord(losses: 1), e2: DuelRecord(wins: 1)]
        case .tie, nil: return [e1: DuelRecord(ties: 1), e2: DuelRecord(ties: 1)]
        }
    }

    private mutating func record(_ records: [NodeID: DuelRecord], sign: Int, _ st: inout AuthorState) {
        for (node, r) in records {
            adjustRecord(node, by: r, sign: sign)
            let c = (st.recordContribution[node] ?? DuelRecord()).adding(r, sign: sign)
            st.recordContribution[node] = c.isEmpty ? nil : c
        }
    }

    private mutating func adjustRecord(_ node: NodeID, by r: DuelRecord, sign: Int) {
        let n = (duelRecords[node] ?? DuelRecord()).adding(r, sign: sign)
        duelRecords[node] = n.isEmpty ? nil : n
    }

    private mutating func adjust(_ node: NodeID, by delta: Credits) {
        let b = balance(of: node) + delta
        balances[node] = b == .zero ? nil : b
    }

    private func checkConservation() {
        assert(totalBalance == genesis.totalSupply, "credit conservation: Σ balances = Σ grants")
    }
}

/// An executor's duels as counted settlements decided them.
public struct DuelRecord: Hashable, Sendable, Codable {
    public var wins: Int
    public var losses: Int
    public var ties: Int

    public init(wins: Int = 0, losses: Int = 0, ties: Int = 0) {
        self.wins = wins
        self.losses = losses
        self.ties = ties
    }

    public var duels: Int { wins + losses + ties }
    /// Wins per duel (ties count as duels not won); nil without duels.
    public var winRate: Double? { duels == 0 ? nil : Double(wins) / Double(duels) }
    var isEmpty: Bool { wins == 0 && losses == 0 && ties == 0 }

    func adding(_ o: DuelRecord, sign: Int) -> DuelRecord {
        DuelRecord(wins: wins + sign * o.wins, losses: losses + sign * o.losses, ties: ties + sign * o.ties)
    }
}
