import Foundation
import Testing
@testable import WWWCore

/// Step 2 (DESIGN.md §6.2): eligibility, Efraimidis–Spirakis order, exploration, power of two
/// choices, and the pure-Swift natural log they rest on.
@Suite struct SchedulerSelectorTests {
    typealias F = SchedFixtures
    static let n = 20_000

    func staked(_ i: UInt8, credits: Int64, utilization: Double = 0) -> ExecutorCandidate {
        ExecutorCandidate(node: F.node(i), stake: Credits(credits: credits), utilization: utilization)
    }

    // MARK: - Eligibility

    @Test func eligibilityReasons() {
        let requester = F.node(1)
        let onRoute: Set<NodeID> = [F.node(2)]
        func reason(_ c: ExecutorCandidate) -> Ineligibility? {
            ExecutorSelector.eligibility(of: c, requester: requester, excluded: onRoute)
        }
        #expect(reason(staked(1, credits: 5)) == .isRequester)
        #expect(reason(staked(2, credits: 5)) == .alreadyOnRoute)
        #expect(reason(ExecutorCandidate(node: F.node(3), alive: false, stake: .zero)) == .notAlive)
        #expect(reason(ExecutorCandidate(node: F.node(3), servesModel: false, stake: .zero)) == .doesNotServeModel)
        #expect(reason(ExecutorCandidate(node: F.node(3), accepting: false, stake: .zero)) == .notAccepting)
        #expect(reason(ExecutorCandidate(node: F.node(3), stake: .zero, balance: Credits(micro: -1))) == .negativeBalance)
        #expect(reason(ExecutorCandidate(node: F.node(3), stake: .zero, balance: .zero)) == nil)
    }

    @Test func orderKeepsOnlyEligibleOnceEach() {
        let selector = ExecutorSelector(explorationShare: 0, powerOfTwoChoices: false)
        let candidates = [
            staked(1, credits: 9),                                             // requester
            staked(2, credits: 9),                                             // on route
            ExecutorCandidate(node: F.node(3), alive: false, stake: Credits(credits: 9)),
            ExecutorCandidate(node: F.node(4), servesModel: false, stake: Credits(credits: 9)),
            ExecutorCandidate(node: F.node(5), accepting: false, stake: Credits(credits: 9)),
            ExecutorCandidate(node: F.node(6), stake: Credits(credits: 9), balance: Credits(credits: -1)),
            staked(7, credits: 1), staked(7, credits: 1), staked(8, credits: 0),
        ]
        var prng = SeededPRNG(seed: 3)
        let order = selector.orderedNodes(candidates: candidates, requester: F.node(1), excluded: [F.node(2)], prng: &prng)
        #expect(order == [F.node(7), F.node(8)])
        var prng2 = SeededPRNG(seed: 3)
        #expect(selector.orderedNodes(candidates: candidates, requester: F.node(1), excluded: [F.node(2)], limit: 1, prng: &prng2) == [F.node(7)])
        var prng3 = SeededPRNG(seed: 3)
        #expect(selector.orderedNodes(candidates: [], requester: F.node(1), prng: &prng3).isEmpty)
    }

    @Test func orderDoesNotDependOnInputOrder() {
        let selector = ExecutorSelector(explorationShare: 0.5, powerOfTwoChoices: true)
        let candidates = (10...30).map { staked(UInt8($0), credits: Int64($0 % 4), utilization: Double($0 % 5) / 5) }
        for seed: UInt64 in 1...50 {
            var a = SeededPRNG(seed: seed), b = SeededPRNG(seed: seed)
            let x = selector.orderedNodes(candidates: candidates, requester: F.node(1), prng: &a)
            let y = selector.orderedNodes(candidates: candidates.reversed(), requester: F.node(1), prng: &b)
            #expect(x == y)
            #expect(x.count == candidates.count)
        }
    }

    /// Pins the exact output for one seed, so a change to the sampling (which would break
    /// reproducibility of simulations across versions) cannot pass unnoticed.
    @Test func goldenOrder() {
        var prng = SeededPRNG(seed: 42)
        let order = StakeSampling.efraimidisSpirakisOrder(weights: [1, 2, 3, 4, 5, 6, 7, 8], prng: &prng)
        #expect(order.sorted() == Array(0..<8))
        #expect(order == Self.golden42)
    }
    static let golden42: [Int] = [4, 3, 7, 5, 6, 2, 1, 0]

    // MARK: - Stake-weighted sampling

    @Test func firstPickIsProportionalToStake() {
        let stakes: [Int64] = [1, 2, 3, 4, 10]
        let total = Double(stakes.reduce(0, +))
        let candidates = stakes.enumerated().map { staked(UInt8($0.offset + 10), credits: $0.element) }
        let selector = ExecutorSelector(explorationShare: 0, powerOfTwoChoices: false)
        var prng = SeededPRNG(seed: 7)
        var first = [NodeID: Int](), second = [NodeID: Int]()
        for _ in 0..<Self.n {
            let order = selector.orderedNodes(candidates: candidates, requester: F.node(1), prng: &prng)
            first[order[0], default: 0] += 1
            second[order[1], default: 0] += 1
        }
        for (i, s) in stakes.enumerated() {
            let id = F.node(UInt8(i + 10))
            F.expectBinomial(first[id, default: 0], n: Self.n, p: Double(s) / total, "first pick \(i)")
            // Without replacement: P(second = j) = Σ_{i≠j} p_i · w_j / (W − w_i).
            var pSecond = 0.0
            for (k, w) in stakes.enumerated() where k != i {
                pSecond += Double(w) / total * Double(s) / (total - Double(w))
            }
            F.expectBinomial(second[id, default: 0], n: Self.n, p: pSecond, "second pick \(i)")
        }
    }

    @Test func zeroStakeNodesComeAfterStakedWithoutExploration() {
        let candidates = [staked(10, credits: 3), staked(11, credits: 0), staked(12, credits: 1), staked(13, credits: 0)]
        let selector = ExecutorSelector(explorationShare: 0, powerOfTwoChoices: true)
        var prng = SeededPRNG(seed: 11)
        var zeroFirstAmongZero = 0
        for _ in 0..<2_000 {
            let order = selector.orderedNodes(candidates: candidates, requester: F.node(1), prng: &prng)
            #expect(Set(order.prefix(2)) == [F.node(10), F.node(12)])
            if order[2] == F.node(11) { zeroFirstAmongZero += 1 }
        }
        // The zero-stake tail is uniformly shuffled.
        F.expectBinomial(zeroFirstAmongZero, n: 2_000, p: 0.5, "zero-stake order")
    }

    @Test func explorationGivesZeroStakeNodesTheirShare() {
        let stakes: [Int64] = [5, 3, 2, 0, 0]
        let total = 10.0
        let e = 0.05
        let candidates = stakes.enumerated().map { staked(UInt8($0.offset + 10), credits: $0.element) }
        let selector = ExecutorSelector(explorationShare: e, powerOfTwoChoices: false)
        var prng = SeededPRNG(seed: 2_024)
        var first = [NodeID: Int]()
        for _ in 0..<Self.n {
            first[selector.orderedNodes(candidates: candidates, requester: F.node(1), prng: &prng)[0], default: 0] += 1
        }
        let eligible = Double(stakes.count)
        for (i, s) in stakes.enumerated() {
            let p = (1 - e) * Double(s) / total + e / eligible
            F.expectBinomial(first[F.node(UInt8(i + 10)), default: 0], n: Self.n, p: p, "first pick \(i)")
        }
    }

    @Test func allZeroStakeIsUniform() {
        let candidates = (10..<14).map { staked(UInt8($0), credits: 0) }
        let selector = ExecutorSelector(explorationShare: 0, powerOfTwoChoices: false)
        var prng = SeededPRNG(seed: 5)
        var first = [NodeID: Int]()
        for _ in 0..<Self.n {
            first[selector.orderedNodes(candidates: candidates, requester: F.node(1), prng: &prng)[0], default: 0] += 1
        }
        for c in candidates { F.expectBinomial(first[c.node, default: 0], n: Self.n, p: 0.25, "uniform") }
    }

    @Test func powerOfTwoChoicesPrefersTheLessLoaded() {
        // Equal stakes: the first two are a uniform pair; the less loaded of the pair leads.
        // P(least loaded first) = 2/3, P(middle) = 1/3, P(most loaded) = 0.
        let candidates = [staked(10, credits: 1, utilization: 0.1), staked(11, credits: 1, utilization: 0.5),
                          staked(12, credits: 1, utilization: 0.9)]
        var prng = SeededPRNG(seed: 99)
        var first = [NodeID: Int]()
        let p2c = ExecutorSelector(explorationShare: 0, powerOfTwoChoices: true)
        for _ in 0..<Self.n {
            first[p2c.orderedNodes(candidates: candidates, requester: F.node(1), prng: &prng)[0], default: 0] += 1
        }
        F.expectBinomial(first[F.node(10), default: 0], n: Self.n, p: 2.0 / 3, "least loaded")
        F.expectBinomial(first[F.node(11), default: 0], n: Self.n, p: 1.0 / 3, "middle")
        #expect(first[F.node(12), default: 0] == 0)

        // Without p2c the same nodes are first a third of the time each.
        let plain = ExecutorSelector(explorationShare: 0, powerOfTwoChoices: false)
        var plainFirst = [NodeID: Int]()
        for _ in 0..<Self.n {
            plainFirst[plain.orderedNodes(candidates: candidates, requester: F.node(1), prng: &prng)[0], default: 0] += 1
        }
        for c in candidates { F.expectBinomial(plainFirst[c.node, default: 0], n: Self.n, p: 1.0 / 3, "plain") }
    }

    @Test func uniformIndexAndShuffle() {
        var prng = SeededPRNG(seed: 17)
        var counts = [Int](repeating: 0, count: 7)
        for _ in 0..<Self.n { counts[StakeSampling.uniformIndex(count: 7, prng: &prng)] += 1 }
        for c in counts { F.expectBinomial(c, n: Self.n, p: 1.0 / 7, "uniformIndex") }
        #expect(StakeSampling.uniformIndex(count: 1, prng: &prng) == 0)
        var items = Array(0..<10)
        StakeSampling.shuffle(&items, prng: &prng)
        #expect(items.sorted() == Array(0..<10))
    }

    // MARK: - Natural log

    @Test func naturalLogKnownValues() {
        let known: [(Double, Double)] = [
            (1.0, 0.0),
            (0.5, -0.6931471805599453), (0.1, -2.3025850929940455), (1e-10, -23.025850929940457),
            (0.9, -0.10536051565782628), (0.999999, -1.000000500029089e-06),
            (0.7071067811865476, -0.3465735902799726), (0.75, -0.2876820724517809),
            (2.0, 0.6931471805599453), (10.0, 2.302585092994046), (1e300, 690.7755278982137),
            (Double.leastNonzeroMagnitude, -744.4400719213812), (2.2250738585072014e-308, -708.3964185322641),
            (1.0000000000000002, 2.2204460492503128e-16), (0.9999999999999999, -1.1102230246251565e-16),
            (5.551115123125783e-17, -37.42994775023705),
        ]
        for (x, expected) in known {
            let got = NaturalLog.ln(x)
            #expect(abs(got - expected) <= 2 * expected.ulp, "ln(\(x)) = \(got), expected \(expected)")
        }
    }

    @Test func naturalLogMatchesPlatformLog() {
        var prng = SeededPRNG(seed: 123)
        var worstUlps = 0.0
        for i in 0..<100_000 {
            // Uniform in (0, 1) and, every other draw, log-uniform over many binades.
            let u = prng.nextUnitOpen()
            let x = i % 2 == 0 ? u : Foundation.pow(2.0, -60 * u)
            let expected = Foundation.log(x)
            let err = abs(NaturalLog.ln(x) - expected) / max(expected.ulp, Double.leastNormalMagnitude)
            worstUlps = max(worstUlps, err)
        }
        #expect(worstUlps <= 2, "worst error \(worstUlps) ulp")
    }
}
