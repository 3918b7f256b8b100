/// A provider's scheduling policy (DESIGN.md §6, §7): when its node offloads, queues, retries,
/// accepts offers, and how it picks executors.
///
/// Every field has a documented default, so `SchedulingPolicy()` is a working policy. Use
/// `validated()` (or the throwing `init(from:)`) on anything read from a config file.
///
/// Coding (for config files): probabilities and fractions as JSON numbers, durations as
/// integer milliseconds (`offerTimeoutMs`, `retryDelayMs`), `priceAcceptedMicro` as integer
/// micro-credits. A missing key takes its default; decoding validates.
public struct SchedulingPolicy: Hashable, Sendable, Codable {
    /// Step 1: probability in [0, 1] that a request whose local backend is at or above its
    /// load target is offloaded to a peer. Default 1.0: an overloaded node always tries peers
    /// first (that is what the network is for).
    public var offloadFrequency: Double
    /// Step 1: probability in [0, 1] that a request not offloaded is queued on the busy local
    /// backend rather than retried shortly. Default 0.5.
    public var queueFrequency: Double
    /// Step 3 (executor side): probability in [0, 1] that an offer which passes every other
    /// check is accepted. Default 1.0.
    public var acceptFrequency: Double
    /// Utilization (`LoadSnapshot.utilization`, a fraction of capacity, > 0) below which a
    /// backend counts as having room. Local runs need `utilization < loadTarget`; so do
    /// accepted offers. Default 1.0: room means a free slot and KV cache not full.
    public var loadTarget: Double
    /// Step 2: probability in [0, 1] that the first executor pick is uniform over eligible
    /// nodes instead of stake-weighted, so zero-stake newcomers can earn. Default 0.05.
    public var explorationShare: Double
    /// Step 2: power-of-two-choices: of the first two stake-weighted picks the less loaded
    /// is offered first. Default false (pure stake weighting, as in the reference).
    public var powerOfTwoChoices: Bool
    /// Step 3: most candidates offered one job before falling back to step 1 (≥ 1). Default 3.
    public var maxOfferAttempts: Int
    /// Step 3: how long one offer waits for accept/reject (> 0). Default 2 s.
    public var offerTimeout: Duration
    /// Step 1: the pause before a request that was neither offloaded nor queued is decided
    /// again (≥ 0). Default 200 ms.
    public var retryDelay: Duration
    /// Step 1: passes through step 1 (retries and failed offer rounds alike) after which a
    /// request with a local backend stops offloading and is queued locally (≥ 0). A request
    /// without one keeps waiting for an executor, with growing pauses, until its placement
    /// deadline (`NodeMachineConfig.queueTimeout`). Default 3.
    public var maxRetries: Int
    /// Step 4: executors tried again elsewhere after one failed before the first byte reached
    /// the user (≥ 0). Default 2.
    public var maxFailovers: Int
    /// Step 3 (executor side): the lowest price per job this node accepts (≥ 0). Default 0:
    /// any price the genesis allows.
    public var priceAccepted: Credits
    /// Step 3 (executor side): reject offers while this node's own users are waiting for its
    /// backend. Default true.
    public var ownUsersFirst: Bool

    public init(
        offloadFrequency: Double = 1.0,
        queueFrequency: Double = 0.5,
        acceptFrequency: Double = 1.0,
        loadTarget: Double = 1.0,
        explorationShare: Double = 0.05,
        powerOfTwoChoices: Bool = false,
        maxOfferAttempts: Int = 3,
        offerTimeout: Duration = .seconds(2),
        retryDelay: Duration = .milliseconds(200),
        maxRetries: Int = 3,
        maxFailovers: Int = 2,
        priceAccepted: Credits = .zero,
        ownUsersFirst: Bool = true
    ) {
        self.offloadFrequency = offloadFrequency
        self.queueFrequency = queueFrequency
        self.acceptFrequency = acceptFrequency
        self.loadTarget = loadTarget
        self.explorationShare = explorationShare
        self.powerOfTwoChoices = powerOfTwoChoices
        self.maxOfferAttempts = maxOfferAttempts
        self.offerTimeout = offerTimeout
        self.retryDelay = retryDelay
        self.maxRetries = maxRetries
        self.maxFailovers = maxFailovers
        self.priceAccepted = priceAccepted
        self.ownUsersFirst = ownUsersFirst
    }

    /// The reference defaults (see each field).
    public static let `default` = SchedulingPolicy()

    /// Hard upper bounds that keep every loop and list in the scheduler small.
    public static let maxOfferAttemptsLimit = 64
    public static let maxRetriesLimit = 64
    public static let maxFailoversLimit = 16

    /// One field outside its allowed range.
    public struct ValidationError: Error, Hashable, Sendable, CustomStringConvertible {
        /// The field's coding key, e.g. "offloadFrequency".
        public var field: String
        /// What the field must satisfy, e.g. "a probability in [0, 1]".
        public var requirement: String
        public var description: String { "scheduling policy: \(field) must be \(requirement)" }
    }

    /// Every violated constraint, in field order; empty when the policy is valid.
    public var violations: [ValidationError] {
        var out: [ValidationError] = []
        func probability(_ v: Double, _ name: String) {
            if !(v >= 0 && v <= 1) { out.append(.init(field: name, requirement: "a probability in [0, 1]")) }
        }
        probability(offloadFrequency, "offloadFrequency")
        probability(queueFrequency, "queueFrequency")
        probability(acceptFrequency, "acceptFrequency")
        if !(loadTarget > 0 && loadTarget.isFinite) {
            out.append(.init(field: "loadTarget", requirement: "a finite utilization fraction > 0"))
        }
        probability(explorationShare, "explorationShare")
        if !(1...Self.maxOfferAttemptsLimit).contains(maxOfferAttempts) {
            out.append(.init(field: "maxOfferAttempts", requirement: "in 1...\(Self.maxOfferAttemptsLimit)"))
        }
        if offerTimeout <= .zero { out.append(.init(field: "offerTimeoutMs", requirement: "> 0")) }
        if retryDelay < .zero { out.append(.init(field: "retryDelayMs", requirement: "≥ 0")) }
        if !(0...Self.maxRetriesLimit).contains(maxRetries) {
            out.append(.init(field: "maxRetries", requirement: "in 0...\(Self.maxRetriesLimit)"))
        }
        if !(0...Self.maxFailoversLimit).contains(maxFailovers) {
            out.append(.init(field: "maxFailovers", requirement: "in 0...\(Self.maxFailoversLimit)"))
        }
        if priceAccepted < .zero { out.append(.init(field: "priceAcceptedMicro", requirement: "≥ 0")) }
        return out
    }

    /// `self` when valid; otherwise throws the first violation.
    public func validated() throws(ValidationError) -> SchedulingPolicy {
        if let first = violations.first { throw first }
        return self
    }

    private enum CodingKeys: String, CodingKey {
        case offloadFrequency, queueFrequency, acceptFrequency, loadTarget, explorationShare
        case powerOfTwoChoices, maxOfferAttempts, offerTimeoutMs, retryDelayMs, maxRetries
        case maxFailovers, priceAcceptedMicro, ownUsersFirst
    }

    /// Decodes a policy; missing keys take their defaults; throws `ValidationError` when a
    /// present value is out of range.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = SchedulingPolicy.default
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            try c.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        self.init(
            offloadFrequency: try value(.offloadFrequency, d.offloadFrequency),
            queueFrequency: try value(.queueFrequency, d.queueFrequency),
            acceptFrequency: try value(.acceptFrequency, d.acceptFrequency),
            loadTarget: try value(.loadTarget, d.loadTarget),
            explorationShare: try value(.explorationShare, d.explorationShare),
            powerOfTwoChoices: try value(.powerOfTwoChoices, d.powerOfTwoChoices),
            maxOfferAttempts: try value(.maxOfferAttempts, d.maxOfferAttempts),
            offerTimeout: .milliseconds(try value(.offerTimeoutMs, d.offerTimeout.nanoseconds / 1_000_000)),
            retryDelay: .milliseconds(try value(.retryDelayMs, d.retryDelay.nanoseconds / 1_000_000)),
            maxRetries: try value(.maxRetries, d.maxRetries),
            maxFailovers: try value(.maxFailovers, d.maxFailovers),
            priceAccepted: Credits(micro: try value(.priceAcceptedMicro, d.priceAccepted.micro)),
            ownUsersFirst: try value(.ownUsersFirst, d.ownUsersFirst)
        )
        _ = try validated()
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(offloadFrequency, forKey: .offloadFrequency)
        try c.encode(queueFrequency, forKey: .queueFrequency)
        try c.encode(acceptFrequency, forKey: .acceptFrequency)
        try c.encode(loadTarget, forKey: .loadTarget)
        try c.encode(explorationShare, forKey: .explorationShare)
        try c.encode(powerOfTwoChoices, forKey: .powerOfTwoChoices)
        try c.encode(maxOfferAttempts, forKey: .maxOfferAttempts)
        try c.encode(offerTimeout.nanoseconds / 1_000_000, forKey: .offerTimeoutMs)
        try c.encode(retryDelay.nanoseconds / 1_000_000, forKey: .retryDelayMs)
        try c.encode(maxRetries, forKey: .maxRetries)
        try c.encode(maxFailovers, forKey: .maxFailovers)
        try c.encode(priceAccepted.micro, forKey: .priceAcceptedMicro)
        try c.encode(ownUsersFirst, forKey: .ownUsersFirst)
    }
}
