/// Why the ledger refused an event. Transient reasons (`isTransient`) say "not now": the
/// event may be valid and anti-entropy will offer it again; the others are permanent.
public enum LedgerRejection: Hashable, Sendable {
    /// `authorSeq` is 0 or above `Int64.max`.
    case badSequence
    /// `id` is not the SHA-256 of the canonical unsigned bytes.
    case idMismatch
    /// The author's signature over the event is invalid.
    case badSignature
    /// A hash field is not 32 bytes.
    case badHash
    /// An amount is negative or above the total supply.
    case badAmount
    /// jobReceipt: the authorization is not validly signed by its requester.
    case badAuthorization
    /// jobReceipt: `authorization.executor` is not the event's author.
    case wrongExecutor
    /// jobReceipt: the requester and the executor are the same node.
    case selfPayment
    /// jobReceipt: `createdAt` is after the authorization's `expiresAt`.
    case expiredAuthorization
    /// duelSettlement: an acceptance is unsigned, mis-signed or names the wrong job/parties.
    case badAcceptance
    /// duelSettlement: `createdAt` is after an acceptance's `expiresAt`.
    case expiredAcceptance
    /// duelSettlement: the panel differs between acceptances, is not strictly ascending,
    /// has the wrong size, or includes the requester or an executor.
    case badPanel
    /// duelSettlement: a verdict is mis-signed, off-panel, duplicated, out of order, or
    /// about another job, pair or order.
    case badVerdict
    /// duelSettlement: the fees are mis-signed, off-panel, out of order or for another job.
    case badJudgeFees
    /// (transient) `createdAt` is further ahead of `now` than `maxClockSkew`.
    case fromTheFuture
    /// (transient) `authorSeq` is more than `maxLookahead` past the author's high-water.
    case tooFarAhead
    /// (transient) the out-of-order buffer is full.
    case bufferFull
    /// (transient) beyond `maxReceiveBatch` in one `receive` call.
    case batchTooLarge

    public var isTransient: Bool {
        switch self {
        case .fromTheFuture, .tooFarAhead, .bufferFull, .batchTooLarge: true
        default: false
        }
    }
}

/// One credit movement. Events' effects are lists of transfers, so every effect conserves
/// Σ balances by construction.
public struct Transfer: Hashable, Sendable {
    public var from: NodeID
    public var to: NodeID
    /// µcredits > 0.
    public var amount: Credits

    public init(from: NodeID, to: NodeID, amount: Credits) {
        self.from = from
        self.to = to
        self.amount = amount
    }
}

/// The intrinsic validity rules and the effects of each event kind (DESIGN.md §5).
///
/// Validity depends only on the event, the genesis and (for the clock-skew bound) `now`,
/// never on other events or on balances, so it is the same on every replica in any order.
public enum LedgerRules {
    /// Checks `event`; nil when valid. `now` nil skips the clock-skew bound (restore);
    /// `checkSignatures` false skips signature checks (restore of already-validated events).
    public static func validate(_ event: LedgerEvent, genesis: Genesis, crypto: any CryptoProvider,
                                now: Instant?, maxClockSkew: Duration,
                                checkSignatures: Bool = true) -> LedgerRejection? {
        guard event.authorSeq >= 1, event.authorSeq <= UInt64(Int64.max) else { return .badSequence }
        if let now, event.createdAt > now + maxClockSkew { return .fromTheFuture }
        let unsigned = event.unsignedCanonical.bytes
        guard crypto.sha256(unsigned) == event.id.bytes else { return .idMismatch }
        let ctx = Context(genesis: genesis, crypto: crypto, checkSignatures: checkSignatures)
        let bodyProblem: LedgerRejection? = switch event.body {
        case .jobReceipt(let r): validateReceipt(r, event: event, ctx)
        case .duelSettlement(let s): validateSettlement(s, author: event.author, createdAt: event.createdAt, ctx)
        }
        if let bodyProblem { return bodyProblem }
        if checkSignatures, !crypto.verify(signature: event.signature, message: unsigned, signer: event.author) {
            return .badSignature
        }
        return nil
    }

    /// The credit movements of a valid event (zero amounts omitted).
    public static func transfers(of event: LedgerEvent, parameters: GenesisParameters) -> [Transfer] {
        var out = [Transfer]()
        func move(_ from: NodeID, _ to: NodeID, _ amount: Credits) {
            precondition(amount >= .zero, "a valid event moves no negative amount")
            if amount > .zero { out.append(Transfer(from: from, to: to, amount: amount)) }
        }
        switch event.body {
        case .jobReceipt(let r):
            let a = r.authorization.value
            move(a.requester, a.executor, a.price)
        case .duelSettlement(let s):
            settlementTransfers(s, requester: event.author, parameters: parameters, move)
        }
        return out
    }

    // MARK: - jobReceipt

    private struct Context {
        let genesis: Genesis
        let crypto: any CryptoProvider
        let checkSignatures: Bool
        var maxAmount: Credits { genesis.totalSupply }

        func amountOK(_ c: Credits) -> Bool { c >= .zero && c <= maxAmount }
        func signed<V>(_ s: Signed<V>, by node: NodeID) -> Bool {
            s.signer == node && (!checkSignatures || s.isValid(crypto))
        }
    }

    private static func validateReceipt(_ r: JobReceipt, event: LedgerEvent, _ ctx: Context) -> LedgerRejection? {
        let a = r.authorization.value
        guard r.responseHash.count == 32 else { return .badHash }
        guard a.executor == event.author else { return .wrongExecutor }
        guard a.requester != a.executor else { return .selfPayment }
        guard ctx.amountOK(a.price) else { return .badAmount }
        guard event.createdAt <= a.expiresAt else { return .expiredAuthorization }
        guard ctx.signed(r.authorization, by: a.requester) else { return .badAuthorization }
        return nil
    }

    // MARK: - duelSettlement

    private static func validateSettlement(_ s: DuelSettlement, author: NodeID, createdAt: Instant, _ ctx: Context) -> LedgerRejection? {
        guard s.firstResponseHash.count == 32, s.secondResponseHash.count == 32 else { return .badHash }
        if let p = validateAcceptances(s, requester: author, ctx) { return p }
        guard createdAt <= s.expiresAt else { return .expiredAcceptance }
        if let p = validateVerdicts(s, ctx) { return p }
        return validateFees(s, requester: author, ctx)
    }

    private static func validateAcceptances(_ s: DuelSettlement, requester: NodeID, _ ctx: Context) -> LedgerRejection? {
        let a1 = s.first.value, a2 = s.second.value
        for a in [a1, a2] where a.job != s.job || a.requester != requester || a.executor == requester {
            return .badAcceptance
        }
        guard a1.executor != a2.executor else { return .badAcceptance }
        guard a1.judges == a2.judges, a1.judges.count == ctx.genesis.parameters.judgesPerDuel,
              isStrictlyAscending(a1.judges),
              !a1.judges.contains(where: { $0 == requester || $0 == a1.executor || $0 == a2.executor })
        else { return .badPanel }
        guard ctx.amountOK(a1.bond), ctx.amountOK(a2.bond) else { return .badAmount }
        guard ctx.signed(s.first, by: a1.executor), ctx.signed(s.second, by: a2.executor) else { return .badAcceptance }
        return nil
    }

    private static func validateVerdicts(_ s: DuelSettlement, _ ctx: Context) -> LedgerRejection? {
        let panel = Set(s.first.value.judges)
        let judges = s.verdicts.map(\.value.judge)
        guard isStrictlyAscending(judges), judges.allSatisfy(panel.contains) else { return .badVerdict }
        let pair = s.pairHash(ctx.crypto)
        for v in s.verdicts {
            let x = v.value
            guard x.job == s.job, x.first == s.first.value.executor, x.second == s.second.value.executor,
                  x.pairHash == pair else { return .badVerdict }
            guard ctx.amountOK(x.stakeAtRisk) else { return .badAmount }
            guard ctx.signed(v, by: x.judge) else { return .badVerdict }
        }
        return nil
    }

    private static func validateFees(_ s: DuelSettlement, requester: NodeID, _ ctx: Context) -> LedgerRejection? {
        let f = s.judgeFees.value
        let panel = Set(s.first.value.judges)
        let judges = f.fees.map(\.judge)
        guard f.job == s.job, f.requester == requester, isStrictlyAscending(judges),
              judges.allSatisfy(panel.contains) else { return .badJudgeFees }
        guard f.fees.allSatisfy({ ctx.amountOK($0.amount) }) else { return .badAmount }
        guard ctx.signed(s.judgeFees, by: requester) else { return .badJudgeFees }
        return nil
    }

    private static func settlementTransfers(_ s: DuelSettlement, requester: NodeID, parameters: GenesisParameters,
                                            _ move: (NodeID, NodeID, Credits) -> Void) {
        let e1 = s.first.value.executor, e2 = s.second.value.executor
        let majority = s.majority
        switch majority {
        case .first: move(e2, e1, s.second.value.bond)
        case .second: move(e1, e2, s.first.value.bond)
        case .tie, nil: break
        }
        for fee in s.judgeFees.value.fees { move(requester, fee.judge, fee.amount) }
        guard let majority else { return }
        let winners = s.verdicts.filter { $0.value.choice == majority }.map(\.value.judge)  // ascending
        precondition(!winners.isEmpty, "a majority has at least one judge")
        let k = Int64(winners.count)
        for loser in s.verdicts where loser.value.choice != majority {
            let penalty = loser.value.stakeAtRisk.scaled(parameters.minorityJudgePenalty, partsPerMillionOne)
            let share = penalty.micro / k, remainder = penalty.micro % k
            for (i, w) in winners.enumerated() {
                move(loser.value.judge, w, Credits(micro: share + (i == 0 ? remainder : 0)))
            }
        }
    }

    private static func isStrictlyAscending(_ ids: [NodeID]) -> Bool {
        zip(ids, ids.dropFirst()).allSatisfy { $0 < $1 }
    }
}
