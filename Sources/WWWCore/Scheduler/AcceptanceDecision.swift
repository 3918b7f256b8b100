/// Why an executor rejected an offer (DESIGN.md §6.3). Travels in the reject message; the raw
/// values are the wire strings.
public enum OfferRejectionReason: String, Hashable, Sendable, Codable, CaseIterable {
    /// No backend here serves the offered model.
    case notServing
    /// The offered price is below this provider's `priceAccepted`.
    case priceTooLow
    /// The requester's balance, in this executor's ledger view, does not cover the price
    /// (DESIGN.md §5).
    case insufficientFunds
    /// This node's own users are waiting and the policy serves them first.
    case ownUsersFirst
    /// The backend is at or above its load target.
    case overloaded
    /// The `acceptFrequency` draw said no.
    case policy
    /// The payment authorization is not validly signed by the requester that sent the offer.
    case badAuthorization
    /// The authorization names another executor.
    case wrongExecutor
    /// The authorization's `expiresAt` has passed.
    case expired
    /// This executor is restoring its own ledger chain and signs nothing yet.
    case catchingUp
    /// This job was already accepted or receipted here.
    case duplicateJob
    /// This node takes no offers (it has no network role as an executor).
    case notAccepting
    /// A duel offer whose terms this executor will not sign: a malformed panel (wrong size,
    /// not ascending, naming a party) or a bond above `loserBondShare` of its stake.
    case duelTermsRefused
}

extension OfferRejectionReason {
    /// True when the requester may offer the same job to this executor again later (load
    /// and policy change); false for reasons about the offer itself.
    public var isTransient: Bool {
        switch self {
        case .ownUsersFirst, .overloaded, .policy, .catchingUp, .insufficientFunds: true
        case .notServing, .priceTooLow, .badAuthorization, .wrongExecutor, .expired, .duplicateJob, .notAccepting, .duelTermsRefused: false
        }
    }
}

/// An executor's answer to an offer.
public enum AcceptanceOutcome: Hashable, Sendable {
    case accept
    case reject(OfferRejectionReason)
}

/// Step 3 of the request workflow, executor side: the acceptance policy (DESIGN.md §6.3, §7).
public enum AcceptanceDecision {
    /// Evaluates one offer. Checks, in order, returning the first that fails:
    ///
    /// 1. `notServing` — `servesModel` is false or there is no local load (no backend);
    /// 2. `priceTooLow` — `price < policy.priceAccepted`;
    /// 3. `insufficientFunds` — `!requesterCoversPrice`;
    /// 4. `ownUsersFirst` — `policy.ownUsersFirst` and `ownUsersWaiting > 0`;
    /// 5. `overloaded` — `localLoad.utilization ≥ policy.loadTarget`;
    /// 6. `policy` — `bernoulli(policy.acceptFrequency)` is false.
    ///
    /// The PRNG is drawn only in check 6 (and not at all when acceptFrequency is 0 or 1), so
    /// deterministic checks never perturb the random stream.
    ///
    /// - Parameters:
    ///   - price: the price in the offer's payment authorization.
    ///   - servesModel: a backend here serves the offered model.
    ///   - localLoad: that backend's load; nil when none.
    ///   - requesterCoversPrice: the requester's balance in this node's view is ≥ `price`.
    ///   - ownUsersWaiting: this node's own user requests queued for that backend.
    ///   - policy: this node's policy.
    ///   - prng: this node's generator.
    public static func evaluate(
        price: Credits,
        servesModel: Bool,
        localLoad: LoadSnapshot?,
        requesterCoversPrice: Bool,
        ownUsersWaiting: Int,
        policy: SchedulingPolicy,
        prng: inout SeededPRNG
    ) -> AcceptanceOutcome {
        guard servesModel, let load = localLoad else { return .reject(.notServing) }
        if price < policy.priceAccepted { return .reject(.priceTooLow) }
        if !requesterCoversPrice { return .reject(.insufficientFunds) }
        if policy.ownUsersFirst && ownUsersWaiting > 0 { return .reject(.ownUsersFirst) }
        if !RequestScheduler.hasRoom(load, policy) { return .reject(.overloaded) }
        if !prng.bernoulli(policy.acceptFrequency) { return .reject(.policy) }
        return .accept
    }
}
