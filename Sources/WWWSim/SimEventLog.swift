import WWWCore

/// A simulated node's event store: what `EventStore` keeps in SQLite, in memory, with the
/// same contract — idempotent writes by id, every event kept (two at one slot are an
/// equivocation, reported to the caller), range reads by (author, authorSeq).
public struct SimEventLog: Hashable, Sendable {
    /// Per author, the stored events per authorSeq (more than one only for an equivocation).
    private var slots: [NodeID: [UInt64: [LedgerEvent]]] = [:]
    /// Events stored.
    public private(set) var count = 0

    public init() {}

    /// Stores `events` (ignoring ids already stored) and returns, per newly stored event
    /// that shares its slot with another, the pair (stored, written).
    public mutating func append(_ events: [LedgerEvent]) -> [(stored: LedgerEvent, written: LedgerEvent)] {
        var conflicts: [(stored: LedgerEvent, written: LedgerEvent)] = []
        for e in events {
            let here = slots[e.author]?[e.authorSeq] ?? []
            guard !here.contains(where: { $0.id == e.id }) else { continue }
            if let other = here.first { conflicts.append((other, e)) }
            slots[e.author, default: [:]][e.authorSeq, default: []].append(e)
            count += 1
        }
        return conflicts
    }

    /// The events of `ranges`, range by range, each as far as its slots are filled.
    public func events(in ranges: [LedgerRange]) -> [LedgerEvent] {
        var out: [LedgerEvent] = []
        for r in ranges {
            guard let chain = slots[r.author] else { continue }
            for seq in (r.afterSeq + 1)...(r.afterSeq + UInt64(r.count)) {
                guard let here = chain[seq] else { break }
                out += here.sorted { $0.id < $1.id }
            }
        }
        return out
    }

    /// Every stored event, ordered by (author, authorSeq, id): the order a restore reads.
    public var all: [LedgerEvent] {
        slots.keys.sorted().flatMap { author in
            slots[author]!.keys.sorted().flatMap { slots[author]![$0]!.sorted { $0.id < $1.id } }
        }
    }

    /// The ids of every stored event.
    public var ids: Set<EventID> {
        Set(slots.values.flatMap { $0.values.flatMap { $0.map(\.id) } })
    }
}
