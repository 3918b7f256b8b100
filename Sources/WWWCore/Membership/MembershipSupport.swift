/// Tunables of the membership protocol. Defaults follow hashicorp/memberlist's LAN
/// profile where they apply (probe interval 1 s, probe timeout 500 ms, 3 indirect probes,
/// suspicion multiplier 4, retransmit multiplier 4) and DESIGN.md §4 (gossip period 1 s,
/// fanout 3).
public struct MembershipConfig: Hashable, Sendable {
    /// The protocol period: one probe and one push-pull round per period.
    public var protocolPeriod: Duration = .seconds(1)
    /// Time to wait for a direct ack before asking `indirectProbes` helpers (< period).
    public var probeTimeout: Duration = .milliseconds(500)
    /// k: helpers asked to ping an unresponsive target (SWIM ping-req).
    public var indirectProbes: Int = 3
    /// Random peers that each node push-pulls digests with every period.
    public var fanout: Int = 3
    /// Suspicion timeout = `suspicionMultiplier × max(1, log10(N+1)) × protocolPeriod`,
    /// at least `minSuspicionTimeout` (memberlist's `suspicionTimeout`). N: live members.
    public var suspicionMultiplier: Int = 4
    public var minSuspicionTimeout: Duration = .seconds(2)
    /// A rumor is piggybacked at most `retransmitMultiplier × ⌈log10(N+1)⌉` times.
    public var retransmitMultiplier: Int = 4
    /// How long `dead`/`left` tombstones are kept before the member is forgotten.
    public var tombstoneTTL: Duration = .seconds(60)
    /// Records stamped more than this after `now` are rejected.
    public var maxClockSkew: Duration = .seconds(60)
    /// Bounds on one message: piggybacked rumors, states in a push-pull answer, digest size.
    public var maxRumorsPerMessage: Int = 8
    public var maxStatesPerMessage: Int = 16
    public var maxDigestEntries: Int = 64
    /// Peer-table bound (tombstones included); records of new nodes beyond it are refused
    /// (`tableFull`). It bounds memory against floods of made-up members (an entry is a
    /// few hundred bytes in a real node), so it sits well above the largest network
    /// expected: at 10,000 (the old default) a 10,000-node network refused every newcomer
    /// (found by `wwwserve sim scale`).
    public var maxMembers: Int = 100_000
    /// Rumors waiting to be piggybacked; the most-transmitted are evicted first.
    public var maxQueuedRumors: Int = 1_024
    /// Ping-reqs this node relays at once; more are ignored.
    public var maxPendingRelays: Int = 64
    /// A suspicion starts at `suspicionMaxMultiplier ×` the suspicion timeout and shrinks to
    /// the timeout as `suspicionMultiplier − 2` distinct members confirm it (Lifeguard;
    /// memberlist uses 6, we take 3 so that small networks, where few can confirm, still
    /// declare a crash within seconds).
    public var suspicionMaxMultiplier: Int = 3
    /// Lifeguard's local health: the highest score; the protocol period and probe timeout
    /// are stretched by `1 + score` (memberlist's `AwarenessMaxMultiplier`).
    public var maxLocalHealth: Int = 8
    /// Gossiped claims about alive members checked by this node's own ping at once.
    public var maxConfirmations: Int = 4
    /// Members in all expected to check one claim (each member checks with probability
    /// `claimCheckers / N`), so a claim costs the subject a few pings, not N.
    public var claimCheckers: Int = 3
    /// Claims held at once (checked or waiting for a refutation); more are dropped.
    public var maxPendingClaims: Int = 64
    /// Seed addresses used (the rest are ignored).
    public var maxSeeds: Int = 8
    /// Every `rejoinInterval` a node push-pulls with one seed (round robin), so that two
    /// sides of a long partition find each other again after their tombstones expired.
    /// nil disables it.
    public var rejoinInterval: Duration? = .seconds(30)
    /// Load-only changes (`utilizationPPM`) are signed and gossiped at most this often.
    public var loadPublishInterval: Duration = .seconds(10)

    public init() {}

    /// Checks the invariants the state machine relies on.
    public func validate() {
        precondition(protocolPeriod > .zero && probeTimeout > .zero && probeTimeout < protocolPeriod, "0 < probeTimeout < protocolPeriod")
        precondition(indirectProbes >= 0 && fanout >= 1, "fanout ≥ 1, indirectProbes ≥ 0")
        precondition(suspicionMultiplier >= 1 && retransmitMultiplier >= 1, "multipliers ≥ 1")
        precondition(maxRumorsPerMessage >= 1 && maxStatesPerMessage >= 1 && maxDigestEntries >= 2, "message bounds")
        precondition(maxMembers >= 1 && maxQueuedRumors >= 1 && maxPendingRelays >= 0 && maxSeeds >= 1 && maxConfirmations >= 0 && claimCheckers >= 1 && maxPendingClaims >= 1, "table bounds")
        precondition(suspicionMaxMultiplier >= 1 && maxLocalHealth >= 0, "Lifeguard bounds")
        precondition(tombstoneTTL > .zero && maxClockSkew >= .zero, "durations")
    }
}

/// Integer math for the log(N) scalings, so that results do not depend on a platform's
/// libm (the core imports nothing, and the simulator must be byte-for-byte reproducible).
public enum MembershipMath {
    /// `1000 × log10(x)`, rounded down (±1), for `x ≥ 1`. Fixed-point log2 by repeated
    /// squaring (16 fractional bits), times log10(2).
    public static func log10Milli(_ x: Int) -> Int {
        precondition(x >= 1, "log of a positive integer")
        let k = Int.bitWidth - 1 - x.leadingZeroBitCount
        var y: UInt64 = k <= 30 ? UInt64(x) << UInt64(30 - k) : UInt64(x) >> UInt64(k - 30)
        var frac: UInt64 = 0
        for i in 0..<16 {
            y = (y &* y) >> 30
            if y >= (2 << 30) {
                y >>= 1
                frac |= 1 << UInt64(15 - i)
            }
        }
        let log2Q16 = (UInt64(k) << 16) | frac
        return Int(log2Q16 * 30_103 / 6_553_600)
    }

    /// `⌈log10(n + 1)⌉` for `n ≥ 0`: the number of decimal digits of `n` (0 for 0).
    public static func ceilLog10(ofSuccessor n: Int) -> Int {
        var d = 0
        var v = n
        while v > 0 {
            d += 1
            v /= 10
        }
        return d
    }

    /// memberlist-style suspicion timeout for `n` live members (self included).
    public static func suspicionTimeout(members n: Int, config c: MembershipConfig) -> Duration {
        let scaleMilli = max(1_000, log10Milli(max(1, n) + 1))
        let ns = Int64(c.suspicionMultiplier) * Int64(scaleMilli) * c.protocolPeriod.nanoseconds / 1_000
        return max(.nanoseconds(ns), c.minSuspicionTimeout)
    }

    /// Lifeguard's suspicion timeout after `c` of `k` wanted confirmations:
    /// `max − (max − min) × log(c + 1) / log(k + 1)`, at least `min`; `min` when `k` is 0.
    public static func suspicionTimeout(min: Duration, max: Duration, confirmations c: Int, wanted k: Int) -> Duration {
        guard k > 0, max > min, c < k else { return min }
        let frac = Int64(log10Milli(c + 1)), whole = Int64(log10Milli(k + 1))
        let span = (max - min).nanoseconds
        let (cut, overflow) = (span / 1_000).multipliedReportingOverflow(by: frac)
        return overflow ? min : Swift.max(min, max - .nanoseconds(cut / whole * 1_000))
    }

    /// Piggyback limit per rumor for `n` live members (self included): `mult × ⌈log10(n+1)⌉`.
    public static func retransmitLimit(members n: Int, config c: MembershipConfig) -> Int {
        c.retransmitMultiplier * max(1, ceilLog10(ofSuccessor: max(1, n)))
    }
}

/// The queue of rumors awaiting piggyback (memberlist's TransmitLimitedQueue): the least
/// transmitted go first (newest first among equals); a rumor is dropped after
/// `retransmitLimit` transmissions; a newer rumor about the same subject replaces the
/// older one (a record replaces both the subject's record and verdict rumors).
struct RumorQueue: Sendable {
    private struct Slot: Hashable, Sendable {
        var subject: NodeID
        var isRecord: Bool
        init(_ r: MembershipRumor) {
            subject = r.subject
            if case .record = r { isRecord = true } else { isRecord = false }
        }
        init(subject: NodeID, isRecord: Bool) {
            self.subject = subject
            self.isRecord = isRecord
        }
        /// The subject only: its record and verdict slots share a bucket chain (equality
        /// tells them apart), which saves hashing the flag on every lookup.
        func hash(into hasher: inout Hasher) { hasher.combine(subject) }
    }
    /// A queued rumor in the slab.
    private struct Cell: Sendable {
        var rumor: MembershipRumor?
        var slot: Slot?
    }
    /// A bucket's reference to a cell; stale once the cell's generation moved on.
    private struct Ref: Sendable {
        var cell: Int
        var generation: UInt64
    }

    /// buckets[t]: references to rumors transmitted t times, oldest first. Stale references
    /// (superseded or evicted rumors) are skipped lazily and compacted when they pile up.
    /// Liveness is the cell's generation, so taking a rumor hashes nothing; `live` is
    /// only touched when a rumor is queued or dropped.
    private var buckets: [[Ref]] = [[]]
    private var cells: [Cell] = []
    /// Per cell, bumped whenever the cell is freed. Apart from `cells` so that skipping
    /// stale references reads a dense array (a full queue holds many of them).
    private var generations: [UInt64] = []
    private var freeCells: [Int] = []
    private var live: [Slot: Int] = [:]
    private var stored = 0
    let capacity: Int

    init(capacity: Int) {
        precondition(capacity >= 1)
        self.capacity = capacity
    }

    /// Live rumors queued.
    var count: Int { live.count }

    mutating func push(_ r: MembershipRumor) {
        let slot = Slot(r)
        if slot.isRecord, let old = live.removeValue(forKey: Slot(subject: slot.subject, isRecord: false)) { free(old) }
        if let old = live[slot] { free(old) }
        let cell = allocate(r, slot)
        live[slot] = cell
        buckets[0].append(Ref(cell: cell, generation: generations[cell]))
        stored += 1
        while live.count > capacity { evictOne() }
        if stored > 4 * capacity + 64 { compact() }
        assert(live.count <= capacity && cells.count - freeCells.count == live.count && generations.count == cells.count, "rumor queue bookkeeping")
    }

    /// Up to `limit` rumors to piggyback now; each counts as one transmission.
    mutating func take(limit: Int, retransmitLimit: Int) -> [MembershipRumor] {
        var out: [MembershipRumor] = []
        take(limit: limit, retransmitLimit: retransmitLimit, into: &out)
        return out
    }

    /// `take(limit:retransmitLimit:)`, appended to `out`.
    mutating func take(limit: Int, retransmitLimit: Int, into out: inout [MembershipRumor]) {
        guard limit > 0, !live.isEmpty else { return }
        let end = out.count + limit
        var moved: [(Int, Ref)] = []
        var t = 0
        while t < buckets.count && out.count < end {
            while out.count < end, let ref = buckets[t].popLast() {
                stored -= 1
                guard isLive(ref), let rumor = cells[ref.cell].rumor else { continue }
                out.append(rumor)
                if t + 1 < retransmitLimit {
                    moved.append((t + 1, ref))
                } else {
                    if let slot = cells[ref.cell].slot { live[slot] = nil }
                    free(ref.cell)
                }
            }
            t += 1
        }
        for (bucket, ref) in moved {
            while buckets.count <= bucket { buckets.append([]) }
            buckets[bucket].append(ref)
            stored += 1
        }
    }

    private func isLive(_ ref: Ref) -> Bool { generations[ref.cell] == ref.generation }

    private mutating func allocate(_ r: MembershipRumor, _ slot: Slot) -> Int {
        let cell: Int
        if let f = freeCells.popLast() { cell = f } else {
            cell = cells.count
            cells.append(Cell())
            generations.append(0)
        }
        cells[cell].rumor = r
        cells[cell].slot = slot
        return cell
    }

    /// Frees a cell whose slot already left `live`: its references go stale.
    private mutating func free(_ cell: Int) {
        cells[cell].rumor = nil
        cells[cell].slot = nil
        generations[cell] &+= 1
        freeCells.append(cell)
    }

    private mutating func evictOne() {
        var t = buckets.count - 1
        while t >= 0 {
            while let ref = buckets[t].popLast() {
                stored -= 1
                if isLive(ref) {
                    if let slot = cells[ref.cell].slot { live[slot] = nil }
                    free(ref.cell)
                    return
                }
            }
            t -= 1
        }
        assertionFailure("live rumors without items")
    }

    private mutating func compact() {
        let generations = self.generations
        for t in buckets.indices { buckets[t].removeAll { generations[$0.cell] != $0.generation } }
        stored = buckets.reduce(0) { $0 + $1.count }
    }
}
