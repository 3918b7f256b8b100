/// The judge panel of a duel (DESIGN.md §6 step 5): `judgesPerDuel` judges drawn by stake,
/// excluding the requester and both executors, from a seed every node can recompute.
///
/// The seed is SHA-256 of the canonical `{"type":"judgePanel","job":…,"executors":[a, b]}`
/// (executors ascending), so it is fixed before either answer exists — the executors'
/// signed acceptances name the panel when they accept. The draw is Efraimidis–Spirakis over
/// the candidates in ascending NodeID order with the seeded PRNG, so the same candidates
/// and stakes give the same panel on every node. What a verifier cannot check is the
/// candidate list itself (who was alive and judging in the requester's view), and a
/// requester may re-roll the seed by trying other job sequence numbers; see
/// docs/threat-model.md ("Duels").
public enum JudgePanel {
    /// The PRNG seed of the panel draw for `job` and its two executors.
    public static func seed(job: JobID, executors a: NodeID, _ b: NodeID, crypto: any CryptoProvider) -> UInt64 {
        let (lo, hi) = a < b ? (a, b) : (b, a)
        let v = CanonicalValue.object([
            "type": .string("judgePanel"),
            "job": .string(job.hex),
            "executors": .array([.string(lo.hex), .string(hi.hex)]),
        ])
        return crypto.sha256(v.bytes).prefix(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }

    /// The panel, ascending by NodeID, or nil when fewer than `count` candidates are
    /// eligible (a positive stake, not the requester, not an executor; duplicates count once).
    /// - Parameter candidates: judging members in the requester's view with their effective stake.
    public static func select(job: JobID, requester: NodeID, executors a: NodeID, _ b: NodeID,
                              candidates: [(node: NodeID, stake: Credits)], count: Int,
                              crypto: any CryptoProvider) -> [NodeID]? {
        guard count >= 1 else { return nil }
        var seen = Set<NodeID>()
        let eligible = candidates
            .filter { $0.stake > .zero && $0.node != requester && $0.node != a && $0.node != b }
            .sorted { $0.node < $1.node }
            .filter { seen.insert($0.node).inserted }
        guard eligible.count >= count else { return nil }
        var prng = SeededPRNG(seed: seed(job: job, executors: a, b, crypto: crypto))
        let order = StakeSampling.efraimidisSpirakisOrder(weights: eligible.map { Double($0.stake.micro) }, prng: &prng)
        return order.prefix(count).map { eligible[$0].node }.sorted()
    }
}
