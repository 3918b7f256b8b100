/// Agreement of a judge with human labels, in the measures of Zheng et al., "Judging
/// LLM-as-a-Judge with MT-Bench and Chatbot Arena" (NeurIPS 2023), §4.2: agreement *with
/// ties* counts a tie as its own answer; agreement *without ties* leaves out every pair
/// where either side says tie. Position consistency: the share of pairs whose two orders
/// agree, among those where both replies held a verdict. Pure arithmetic; `wwwserve judge-eval` fills it.
public struct JudgeAgreement: Hashable, Sendable {
    /// Pairs judged.
    public private(set) var pairs = 0
    /// Judge's combined verdict equals the human label (tie included).
    public private(set) var agreeWithTies = 0
    /// Pairs where neither the human label nor the judge is a tie.
    public private(set) var decisivePairs = 0
    /// Of those, the judge agrees with the human label.
    public private(set) var agreeWithoutTies = 0
    /// Pairs whose two calls both gave a verdict (parsed, not failed).
    public private(set) var parsedPairs = 0
    /// Of those, pairs whose two orders were consistent (`BothOrders.isConsistent`).
    public private(set) var consistent = 0
    /// Pairs the judge called a tie.
    public private(set) var ties = 0
    /// Judge calls (two per pair) whose reply had no single verdict token.
    public private(set) var unparseableCalls = 0
    /// Judge calls that failed (transport, HTTP error); they count as a tie for that order.
    public private(set) var failedCalls = 0

    public init() {}

    /// Records one pair: the human label, the judge's preference in each order, and how
    /// many of its two calls were unparseable or failed.
    public mutating func record(human: DuelChoice, original: PairwisePreference, swapped: PairwisePreference,
                                unparseable: Int = 0, failed: Int = 0) {
        precondition((0...2).contains(unparseable) && (0...2).contains(failed) && unparseable + failed <= 2)
        let verdict = BothOrders.combine(original: original, swapped: swapped)
        pairs += 1
        if verdict == human { agreeWithTies += 1 }
        if verdict != .tie && human != .tie {
            decisivePairs += 1
            if verdict == human { agreeWithoutTies += 1 }
        }
        if unparseable + failed == 0 {
            parsedPairs += 1
            if BothOrders.isConsistent(original: original, swapped: swapped) { consistent += 1 }
        }
        if verdict == .tie { ties += 1 }
        unparseableCalls += unparseable
        failedCalls += failed
    }

    /// Fractions in [0, 1]; nil where the denominator is 0.
    public var agreementWithTies: Double? { ratio(agreeWithTies, pairs) }
    public var agreementWithoutTies: Double? { ratio(agreeWithoutTies, decisivePairs) }
    /// Over the pairs with a verdict in both orders (an unparseable reply is a tie, but
    /// not evidence of consistency).
    public var positionConsistency: Double? { ratio(consistent, parsedPairs) }
    public var tieRate: Double? { ratio(ties, pairs) }
    public var unparseableRate: Double? { ratio(unparseableCalls, 2 * pairs) }

    private func ratio(_ n: Int, _ d: Int) -> Double? { d == 0 ? nil : Double(n) / Double(d) }
}
