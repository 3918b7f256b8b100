/// What the requester knows about one potential executor, read from its peer table (member
/// record) and ledger view. Plain values, so the shell and the simulator can build it from
/// whatever they hold.
public struct ExecutorCandidate: Hashable, Sendable {
    /// The peer.
    public var node: NodeID
    /// The peer's member record is `alive` (not suspect, dead or left).
    public var alive: Bool
    /// The peer advertises the requested model.
    public var servesModel: Bool
    /// The peer's member record says it accepts offers.
    public var accepting: Bool
    /// The peer's effective stake: its declared stake capped at its balance, 0 when the
    /// balance is negative (DESIGN.md §5). Negative values count as 0.
    public var stake: Credits
    /// The peer's advertised load as a fraction of capacity (`LoadSnapshot.utilization`);
    /// used only by power-of-two-choices.
    public var utilization: Double
    /// The peer's balance in the requester's ledger view.
    public var balance: Credits

    public init(node: NodeID, alive: Bool = true, servesModel: Bool = true, accepting: Bool = true,
                stake: Credits, utilization: Double = 0, balance: Credits = .zero) {
        self.node = node
        self.alive = alive
        self.servesModel = servesModel
        self.accepting = accepting
        self.stake = stake
        self.utilization = utilization
        self.balance = balance
    }
}

/// Why a candidate cannot execute a job (DESIGN.md §6.2), in the order they are checked.
public enum Ineligibility: String, Hashable, Sendable, Codable {
    case isRequester
    case alreadyOnRoute
    case notAlive
    case doesNotServeModel
    case notAccepting
    case negativeBalance
}

/// Step 2 of the request workflow (DESIGN.md §6.2, reused for the second duel executor in
/// §6.5): orders eligible peers for offers by stake.
///
/// Ordering, from one PRNG:
/// 1. Eligible candidates (`eligibility(of:)` is nil) are sorted by `NodeID`, so the result
///    does not depend on the caller's (e.g. dictionary) order.
/// 2. Staked candidates (stake > 0) are ordered by Efraimidis–Spirakis keys (`StakeSampling`):
///    weighted sampling without replacement, P(first = i) = stakeᵢ / Σ stake.
/// 3. Zero-stake candidates follow all staked ones, in uniformly random order.
/// 4. Exploration: with probability `explorationShare` a uniformly chosen eligible candidate
///    is moved to the front (so a zero-stake newcomer is first with probability
///    `explorationShare / eligible count`).
/// 5. Power of two choices (when enabled and exploration did not fire): if the first two
///    are both staked — two stake-weighted draws — the one with lower `utilization` goes
///    first (ties keep the stake order).
///
/// PRNG use per call: one `nextUnitOpen` per staked candidate, one draw per Fisher–Yates
/// step over the zero-stake ones, the exploration coin, and one draw if it fires.
public struct ExecutorSelector: Hashable, Sendable {
    /// Probability in [0, 1] that the first pick is uniform (exploration).
    public var explorationShare: Double
    /// Whether the power-of-two-choices step runs.
    public var powerOfTwoChoices: Bool

    public init(explorationShare: Double, powerOfTwoChoices: Bool) {
        precondition(explorationShare >= 0 && explorationShare <= 1, "explorationShare is a probability")
        self.explorationShare = explorationShare
        self.powerOfTwoChoices = powerOfTwoChoices
    }

    /// The selector a policy asks for.
    public init(policy: SchedulingPolicy) {
        self.init(explorationShare: policy.explorationShare, powerOfTwoChoices: policy.powerOfTwoChoices)
    }

    /// Why `candidate` may not execute a job offloaded by `requester`, or nil when it may.
    /// `excluded` holds nodes already on the route (earlier executors, the first duel executor).
    public static func eligibility(of candidate: ExecutorCandidate, requester: NodeID,
                                   excluded: Set<NodeID>) -> Ineligibility? {
        if candidate.node == requester { return .isRequester }
        if excluded.contains(candidate.node) { return .alreadyOnRoute }
        if !candidate.alive { return .notAlive }
        if !candidate.servesModel { return .doesNotServeModel }
        if !candidate.accepting { return .notAccepting }
        if candidate.balance < .zero { return .negativeBalance }
        return nil
    }

    /// The eligible candidates, best first, at most `limit` of them.
    ///
    /// - Parameters:
    ///   - candidates: the peer view (any order; a node listed twice is considered once, the
    ///     first listing wins).
    ///   - requester: the node offloading (never returned).
    ///   - excluded: nodes already on the route (never returned).
    ///   - limit: maximum length of the result (≥ 0); the sampling still covers everyone, so
    ///     probabilities do not depend on `limit`.
    ///   - prng: the requester's generator.
    public func order(candidates: [ExecutorCandidate], requester: NodeID, excluded: Set<NodeID> = [],
                      limit: Int = .max, prng: inout SeededPRNG) -> [ExecutorCandidate] {
        precondition(limit >= 0, "limit cannot be negative")
        var seen = Set<NodeID>()
        var eligible: [ExecutorCandidate] = []
        for c in candidates where seen.insert(c.node).inserted {
            if Self.eligibility(of: c, requester: requester, excluded: excluded) == nil { eligible.append(c) }
        }
        eligible.sort { $0.node < $1.node }

        let staked = eligible.filter { $0.stake > .zero }
        var unstaked = eligible.filter { $0.stake <= .zero }
        let stakedOrder = StakeSampling.efraimidisSpirakisOrder(weights: staked.map { Double($0.stake.micro) }, prng: &prng)
        StakeSampling.shuffle(&unstaked, prng: &prng)
        var result = stakedOrder.map { staked[$0] } + unstaked

        let explored = !result.isEmpty && prng.bernoulli(explorationShare)
        if explored {
            let pick = StakeSampling.uniformIndex(count: result.count, prng: &prng)
            let chosen = result.remove(at: pick)
            result.insert(chosen, at: 0)
        } else if powerOfTwoChoices, result.count >= 2,
                  result[0].stake > .zero, result[1].stake > .zero,
                  result[1].utilization < result[0].utilization {
            result.swapAt(0, 1)
        }
        return Array(result.prefix(limit))
    }

    /// The eligible candidates' IDs, best first (see `order(candidates:…)`).
    public func orderedNodes(candidates: [ExecutorCandidate], requester: NodeID, excluded: Set<NodeID> = [],
                             limit: Int = .max, prng: inout SeededPRNG) -> [NodeID] {
        order(candidates: candidates, requester: requester, excluded: excluded, limit: limit, prng: &prng).map(\.node)
    }
}

/// Stake-weighted sampling primitives, shared by executor choice (§6.2) and judge choice
/// (§6.5).
public enum StakeSampling {
    /// Weighted random sampling without replacement (Efraimidis & Spirakis, "Weighted random
    /// sampling with a reservoir", Information Processing Letters 97(5), 2006), in its
    /// exponential-key form: item i gets key kᵢ = −ln(Uᵢ)/wᵢ with Uᵢ uniform in (0, 1); sorting
    /// keys ascending yields a weighted permutation with P(first = i) = wᵢ / Σ w, and each
    /// later position is a weighted draw from the remaining items.
    ///
    /// - Parameter weights: positive finite weights, in the caller's (deterministic) order.
    /// - Returns: a permutation of `weights.indices`. Equal keys (probability ~0) are broken
    ///   by index. Draws exactly `weights.count` values from `prng`, in index order.
    public static func efraimidisSpirakisOrder(weights: [Double], prng: inout SeededPRNG) -> [Int] {
        var keyed: [(key: Double, index: Int)] = []
        keyed.reserveCapacity(weights.count)
        for (i, w) in weights.enumerated() {
            precondition(w > 0 && w.isFinite, "Efraimidis–Spirakis weights must be positive and finite")
            keyed.append((-NaturalLog.ln(prng.nextUnitOpen()) / w, i))
        }
        keyed.sort { $0.key < $1.key || ($0.key == $1.key && $0.index < $1.index) }
        return keyed.map(\.index)
    }

    /// A uniform index in 0..<count (count ≥ 1), by Lemire's multiply-shift method with
    /// rejection (unbiased; usually one draw).
    public static func uniformIndex(count: Int, prng: inout SeededPRNG) -> Int {
        precondition(count >= 1, "uniformIndex needs a non-empty range")
        // Written out rather than `UInt64.random(in:using:)` so the mapping from PRNG output
        // to index cannot change with the standard library version.
        let n = UInt64(count)
        var m = prng.next().multipliedFullWidth(by: n)
        if m.low < n {
            let threshold = (0 &- n) % n
            var rounds = 0
            // Each round rejects with probability < n / 2⁶⁴; the cap is never reached in practice.
            while m.low < threshold && rounds < 64 {
                m = prng.next().multipliedFullWidth(by: n)
                rounds += 1
            }
        }
        return Int(m.high)
    }

    /// Fisher–Yates shuffle driven by `prng` (portable: uses only `uniformIndex`).
    public static func shuffle<T>(_ items: inout [T], prng: inout SeededPRNG) {
        guard items.count > 1 else { return }
        var i = items.count - 1
        while i > 0 {
            let j = uniformIndex(count: i + 1, prng: &prng)
            items.swapAt(i, j)
            i -= 1
        }
    }
}
