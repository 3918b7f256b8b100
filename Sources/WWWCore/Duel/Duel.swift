/// One duel on its requester (DESIGN.md §6 step 5) as a pure state machine: the two
/// executors' signed acceptances, their answers' hashes, the judges' signed verdicts, and
/// the settlement. The node machine owns one per duel job and executes its directives.
///
/// ```
/// executing ──both answers in──▶ judging ──all verdicts, or deadline with ≥ 1──▶ settled
///     │                              └──deadline, no verdict──▶ abandoned(.noVerdicts)
///     └──an executor failed / left / a bad acceptance──▶ abandoned(…)   (no judging, no bond moves)
/// ```
/// Both executors are paid by their own `jobReceipt` whatever happens here; the user got
/// whichever answer came first. Settlement moves bonds and fees only.
public struct Duel: Sendable {
    public enum Phase: Hashable, Sendable {
        case executing
        case judging(deadline: Instant)
        case settled
        case abandoned(DuelAbandonReason)
    }

    /// What the driver must do.
    public enum Directive: Hashable, Sendable {
        /// Ask each of `judges` for a verdict on the pair (the driver attaches the prompt and
        /// both answers), and call `deadlinePassed` at `deadline`.
        case requestVerdicts(DuelPairSpec, judges: [NodeID], deadline: Instant)
        /// Publish this settlement as the requester's ledger event.
        case settle(DuelSettlement)
        /// The duel ended without a settlement.
        case abandon(DuelAbandonReason)
    }

    public let job: JobID
    public let requester: NodeID
    /// The executor whose answer is "first" in verdicts and the settlement.
    public let first: NodeID
    public let second: NodeID
    /// The panel both acceptances must name, ascending.
    public let judges: [NodeID]
    /// How long judges get once both answers are in.
    public let judgingTimeout: Duration
    public private(set) var phase: Phase = .executing
    private var acceptances: [NodeID: Signed<DuelAcceptance>] = [:]
    private var responses: [NodeID: [UInt8]] = [:]
    private var verdicts: [NodeID: Signed<JudgeVerdict>] = [:]
    private var pairHash: [UInt8] = []

    public init(job: JobID, requester: NodeID, first: NodeID, second: NodeID, judges: [NodeID], judgingTimeout: Duration) {
        precondition(first != second && first != requester && second != requester, "a duel has two executors other than its requester")
        precondition(!judges.isEmpty && zip(judges, judges.dropFirst()).allSatisfy { $0 < $1 }, "a panel is strictly ascending")
        self.job = job
        self.requester = requester
        self.first = first
        self.second = second
        self.judges = judges
        self.judgingTimeout = judgingTimeout
    }

    public var isOver: Bool {
        switch phase {
        case .settled, .abandoned: true
        default: false
        }
    }

    /// The acceptance `executor` must sign for this duel with `bond` and `expiresAt`.
    public func acceptance(for executor: NodeID, bond: Credits, expiresAt: Instant) -> DuelAcceptance {
        DuelAcceptance(job: job, requester: requester, executor: executor, judges: judges, bond: bond, expiresAt: expiresAt)
    }

    // MARK: Inputs

    /// An executor's signed acceptance (carried on its accept answer). One that does not
    /// match this duel (job, parties, panel, signature) abandons it.
    public mutating func accepted(_ a: Signed<DuelAcceptance>, now: Instant, crypto: any CryptoProvider) -> [Directive] {
        guard phase == .executing else { return [] }
        let v = a.value
        guard v.executor == first || v.executor == second, a.signer == v.executor, v.job == job, v.requester == requester,
              v.judges == judges, v.expiresAt > now, v.bond >= .zero, a.isValid(crypto) else {
            return abandon(.badAcceptance(from: a.signer))
        }
        acceptances[v.executor] = a
        return []
    }

    /// `executor`'s answer was delivered in full; `responseHash` is what its receipt signs.
    public mutating func finished(_ executor: NodeID, responseHash: [UInt8], now: Instant,
                                  crypto: any CryptoProvider) -> [Directive] {
        guard phase == .executing, executor == first || executor == second, responses[executor] == nil,
              responseHash.count == 32 else { return [] }
        responses[executor] = responseHash
        guard let h1 = responses[first], let h2 = responses[second] else { return [] }
        guard acceptances[first] != nil, acceptances[second] != nil else { return abandon(.missingAcceptance) }
        pairHash = DuelPair.hash(job: job, first: first, firstResponse: h1, second: second, secondResponse: h2, crypto: crypto)
        let deadline = now + judgingTimeout
        phase = .judging(deadline: deadline)
        let spec = DuelPairSpec(job: job, requester: requester, first: first, second: second,
                                firstResponseHash: h1, secondResponseHash: h2, pairHash: pairHash, judges: judges)
        return [.requestVerdicts(spec, judges: judges, deadline: deadline)]
    }

    /// `executor`'s copy failed (or was cancelled because the user left): no judging.
    public mutating func failed(_ executor: NodeID) -> [Directive] {
        guard phase == .executing, executor == first || executor == second else { return [] }
        return abandon(.executorFailed(executor))
    }

    /// A judge's signed verdict. Kept when it is the panel's, about this pair, signed, the
    /// first from that judge, and puts at least `minimumStakeAtRisk` at risk; the settlement
    /// follows once every judge answered.
    public mutating func verdict(_ v: Signed<JudgeVerdict>, minimumStakeAtRisk: Credits, signer: any MessageSigner,
                                 fee: Credits, crypto: any CryptoProvider) -> [Directive] {
        guard case .judging = phase else { return [] }
        let x = v.value
        guard judges.contains(x.judge), v.signer == x.judge, verdicts[x.judge] == nil, x.job == job, x.first == first,
              x.second == second, x.pairHash == pairHash, x.stakeAtRisk >= minimumStakeAtRisk, v.isValid(crypto)
        else { return [] }
        verdicts[x.judge] = v
        guard verdicts.count == judges.count else { return [] }
        return settle(signer: signer, fee: fee)
    }

    /// The judging deadline passed: settle with the verdicts in (the others abstained), or
    /// abandon when there are none.
    public mutating func deadlinePassed(now: Instant, signer: any MessageSigner, fee: Credits) -> [Directive] {
        guard case .judging(let deadline) = phase, now >= deadline else { return [] }
        guard !verdicts.isEmpty else { return abandon(.noVerdicts) }
        return settle(signer: signer, fee: fee)
    }

    /// Whether `executor` signed its acceptance of this duel.
    public func hasAccepted(_ executor: NodeID) -> Bool { acceptances[executor] != nil }

    /// The verdicts kept so far, ascending by judge.
    public var collectedVerdicts: [Signed<JudgeVerdict>] { verdicts.keys.sorted().map { verdicts[$0]! } }

    // MARK: Internals

    private mutating func settle(signer: any MessageSigner, fee: Credits) -> [Directive] {
        precondition(signer.nodeID == requester, "the requester signs its settlement")
        let vs = collectedVerdicts
        let fees = JudgeFees(job: job, requester: requester, fees: vs.map { JudgeFee(judge: $0.value.judge, amount: fee) })
        let s = DuelSettlement(job: job, firstResponseHash: responses[first]!, secondResponseHash: responses[second]!,
                               first: acceptances[first]!, second: acceptances[second]!, verdicts: vs,
                               judgeFees: Signed(fees, by: signer))
        phase = .settled
        return [.settle(s)]
    }

    private mutating func abandon(_ reason: DuelAbandonReason) -> [Directive] {
        phase = .abandoned(reason)
        return [.abandon(reason)]
    }
}

/// Why a job drawn for a duel runs single.
public enum DuelSkipReason: String, Hashable, Sendable {
    /// `DuelConfig.maxDuels` duels are in progress.
    case maxDuels
    /// Fewer than two executors for the model (or the second has no address).
    case tooFewExecutors
    /// Fewer than `judgesPerDuel` alive judges with stake besides the three parties.
    case tooFewJudges
    /// The requester cannot reserve a second price.
    case cannotPay
}

/// Why a duel ended without a settlement (no bond moves, no fee is paid).
public enum DuelAbandonReason: Hashable, Sendable {
    /// An executor's copy failed (its stream broke, or its executor errored).
    case executorFailed(NodeID)
    /// The second copy's executor refused the offer (busy, policy, the terms).
    case refused(NodeID)
    /// The second copy's offer got no answer in time.
    case offerTimedOut(NodeID)
    /// The first executor did not take the job and the offer round went to another
    /// candidate (the duel's panel and bonds name the first two).
    case roundMovedOn
    /// The user's request ended (the user left, or its deadline passed) before the copy it
    /// read finished.
    case requestEnded
    /// An acceptance did not match the duel or was not validly signed.
    case badAcceptance(from: NodeID)
    /// Both answers arrived but an executor never sent its acceptance.
    case missingAcceptance
    /// No judge answered by the deadline.
    case noVerdicts
    /// The requester's own ledger refused the settlement event.
    case settlementRefused(LedgerRejection)
}

/// What judges are asked to compare (the machine's part of a judge request; the driver adds
/// the prompt and both answer texts, whose SHA-256 must be the response hashes).
public struct DuelPairSpec: Hashable, Sendable, Codable, CanonicallyEncodable {
    public var job: JobID
    public var requester: NodeID
    public var first: NodeID
    public var second: NodeID
    public var firstResponseHash: [UInt8]
    public var secondResponseHash: [UInt8]
    /// `DuelPair.hash` of the above.
    public var pairHash: [UInt8]
    public var judges: [NodeID]

    public init(job: JobID, requester: NodeID, first: NodeID, second: NodeID, firstResponseHash: [UInt8],
                secondResponseHash: [UInt8], pairHash: [UInt8], judges: [NodeID]) {
        self.job = job
        self.requester = requester
        self.first = first
        self.second = second
        self.firstResponseHash = firstResponseHash
        self.secondResponseHash = secondResponseHash
        self.pairHash = pairHash
        self.judges = judges
    }

    private enum CodingKeys: String, CodingKey {
        case job, requester, first, second, firstResponseHash, secondResponseHash, pairHash, judges
    }

    /// Hashes travel as hex strings.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func hex(_ k: CodingKeys) throws -> [UInt8] {
            guard let b = Hex.decode(try c.decode(String.self, forKey: k)) else {
                throw DecodingError.dataCorruptedError(forKey: k, in: c, debugDescription: "expected a hex string")
            }
            return b
        }
        job = try c.decode(JobID.self, forKey: .job)
        requester = try c.decode(NodeID.self, forKey: .requester)
        first = try c.decode(NodeID.self, forKey: .first)
        second = try c.decode(NodeID.self, forKey: .second)
        firstResponseHash = try hex(.firstResponseHash)
        secondResponseHash = try hex(.secondResponseHash)
        pairHash = try hex(.pairHash)
        judges = try c.decode([NodeID].self, forKey: .judges)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(job, forKey: .job)
        try c.encode(requester, forKey: .requester)
        try c.encode(first, forKey: .first)
        try c.encode(second, forKey: .second)
        try c.encode(Hex.encode(firstResponseHash), forKey: .firstResponseHash)
        try c.encode(Hex.encode(secondResponseHash), forKey: .secondResponseHash)
        try c.encode(Hex.encode(pairHash), forKey: .pairHash)
        try c.encode(judges, forKey: .judges)
    }

    public var canonical: CanonicalValue {
        .object([
            "job": .string(job.hex),
            "requester": .string(requester.hex),
            "first": .string(first.hex),
            "second": .string(second.hex),
            "firstResponseHash": .bytes(firstResponseHash),
            "secondResponseHash": .bytes(secondResponseHash),
            "pairHash": .bytes(pairHash),
            "judges": .array(judges.map { .string($0.hex) }),
        ])
    }
}

/// A judge's side of a duel: whether to take a judge request, and the signed verdict from
/// its two calls (one per order). Pure; the driver runs the calls on its backend.
public enum JudgeDuty {
    /// Why a judge declines a request.
    public enum Refusal: String, Hashable, Sendable {
        case notOnPanel, partyToTheDuel, badPanel, badHashes
        /// The requester, an executor or a panel member is not a live member in this
        /// judge's view (a stranger, or a panel padded with made-up ids).
        case unknownParty
        /// This judge already judged (or is judging) this job.
        case duplicate
        /// This judge has `maxJudgeTasks` running, or `maxJudgeTasksPerRequester` for this
        /// requester.
        case busy
        /// The task was not done within `judgeTaskTimeout`.
        case timedOut
    }

    /// nil when `me` should judge `spec` (asked by `from`).
    public static func refusal(_ spec: DuelPairSpec, me: NodeID, from: NodeID, judgesPerDuel: Int,
                               crypto: any CryptoProvider) -> Refusal? {
        guard spec.judges.contains(me) else { return .notOnPanel }
        guard me != spec.requester, me != spec.first, me != spec.second, from == spec.requester,
              spec.first != spec.second else { return .partyToTheDuel }
        guard spec.judges.count == judgesPerDuel, zip(spec.judges, spec.judges.dropFirst()).allSatisfy({ $0 < $1 }),
              !spec.judges.contains(spec.requester), !spec.judges.contains(spec.first), !spec.judges.contains(spec.second)
        else { return .badPanel }
        guard spec.firstResponseHash.count == 32, spec.secondResponseHash.count == 32,
              spec.pairHash == DuelPair.hash(job: spec.job, first: spec.first, firstResponse: spec.firstResponseHash,
                                             second: spec.second, secondResponse: spec.secondResponseHash, crypto: crypto)
        else { return .badHashes }
        return nil
    }

    /// The verdict from the call that showed (first, second) and the one that showed
    /// (second, first); disagreeing orders are a tie (`BothOrders`).
    public static func verdict(_ spec: DuelPairSpec, original: PairwisePreference, swapped: PairwisePreference,
                               stakeAtRisk: Credits, signer: any MessageSigner) -> Signed<JudgeVerdict> {
        let v = JudgeVerdict(job: spec.job, judge: signer.nodeID, first: spec.first, second: spec.second, pairHash: spec.pairHash,
                             choice: BothOrders.combine(original: original, swapped: swapped), stakeAtRisk: max(stakeAtRisk, .zero))
        return Signed(v, by: signer)
    }
}

/// What a requester asks of each executor of a duel, on its offer.
public struct DuelTerms: Hashable, Sendable, Codable, CanonicallyEncodable {
    /// The panel (`JudgePanel.select`), ascending.
    public var judges: [NodeID]
    /// The bond the executor forfeits to its partner if the panel's majority prefers the
    /// partner's answer (µcredits ≥ 0).
    public var bond: Credits
    /// The other executor of the duel.
    public var partner: NodeID

    public init(judges: [NodeID], bond: Credits, partner: NodeID) {
        self.judges = judges
        self.bond = bond
        self.partner = partner
    }

    public var canonical: CanonicalValue {
        .object([
            "judges": .array(judges.map { .string($0.hex) }),
            "bond": .int(bond.micro),
            "partner": .string(partner.hex),
        ])
    }

    /// Whether `executor` may sign these terms for a job of `requester`: a well-formed panel
    /// of `judgesPerDuel` that names none of the three parties, and a bond in 0…`maxBond`.
    public func acceptable(executor: NodeID, requester: NodeID, judgesPerDuel: Int, maxBond: Credits) -> Bool {
        judges.count == judgesPerDuel && zip(judges, judges.dropFirst()).allSatisfy { $0 < $1 }
            && !judges.contains(executor) && !judges.contains(requester) && !judges.contains(partner)
            && partner != executor && partner != requester && bond >= .zero && bond <= maxBond
    }
}
