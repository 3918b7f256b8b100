import Foundation
import WWWCore

/// The `network:` section: present → the node joins a wwwserve network.
public struct NetworkSection: Codable, Sendable, Equatable {
    /// Path of the genesis file (JSON): network id, parameters, grants, seeds.
    public var genesis: String
    /// Ed25519 key file (created with mode 0600 on first start). Default `<data_dir>/node.key`.
    public var keyFile: String?
    /// "host:port" peers use to reach this node. Default `host:port` of the node section.
    public var advertise: String?
    /// Extra seed addresses to join through (besides the genesis seeds).
    public var join: [String] = []
    /// Gossip / probe period in milliseconds.
    public var gossipPeriodMs: Int = 1000
    /// Timeout of one peer HTTP call (gossip, ledger sync, offer) in milliseconds.
    public var peerTimeoutMs: Int = 2000
    /// PRNG seed for this node's protocol choices; random when absent.
    public var seed: UInt64?

    public init(genesis: String) { self.genesis = genesis }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case genesis, keyFile = "key_file", advertise, join, gossipPeriodMs = "gossip_period_ms"
        case peerTimeoutMs = "peer_timeout_ms", seed
    }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        genesis = try c.decodeIfPresent(String.self, forKey: .genesis) ?? ""
        keyFile = try c.decodeIfPresent(String.self, forKey: .keyFile)
        advertise = try c.decodeIfPresent(String.self, forKey: .advertise)
        join = try c.decodeIfPresent([String].self, forKey: .join) ?? []
        gossipPeriodMs = try c.decodeIfPresent(Int.self, forKey: .gossipPeriodMs) ?? 1000
        peerTimeoutMs = try c.decodeIfPresent(Int.self, forKey: .peerTimeoutMs) ?? 2000
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed)
    }
}

/// The `policy:` section: how this provider takes part (DESIGN.md §7).
public struct PolicySection: Codable, Sendable, Equatable {
    public var offloadFrequency: Double = 1.0
    public var queueFrequency: Double = 0.5
    public var acceptFrequency: Double = 1.0
    /// Utilization (running + waiting over capacity, or KV usage) below which requests run locally.
    public var loadTarget: Double = 1.0
    public var explorationShare: Double = 0.05
    public var powerOfTwoChoices: Bool = false
    public var maxOfferAttempts: Int = 3
    public var offerTimeoutMs: Int = 2000
    public var maxFailovers: Int = 2
    /// Declared stake in credits (capped by the balance in every observer's view).
    public var stake: Double = 0
    /// Lowest price per job this node accepts, in credits.
    public var priceAccepted: Double = 0

    public init() {}

    enum CodingKeys: String, CodingKey, CaseIterable {
        case offloadFrequency = "offload_frequency", queueFrequency = "queue_frequency", acceptFrequency = "accept_frequency"
        case loadTarget = "load_target", explorationShare = "exploration_share", powerOfTwoChoices = "power_of_two_choices"
        case maxOfferAttempts = "max_offer_attempts", offerTimeoutMs = "offer_timeout_ms", maxFailovers = "max_failovers"
        case stake, priceAccepted = "price_accepted"
    }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = PolicySection()
        offloadFrequency = try c.decodeIfPresent(Double.self, forKey: .offloadFrequency) ?? d.offloadFrequency
        queueFrequency = try c.decodeIfPresent(Double.self, forKey: .queueFrequency) ?? d.queueFrequency
        acceptFrequency = try c.decodeIfPresent(Double.self, forKey: .acceptFrequency) ?? d.acceptFrequency
        loadTarget = try c.decodeIfPresent(Double.self, forKey: .loadTarget) ?? d.loadTarget
        explorationShare = try c.decodeIfPresent(Double.self, forKey: .explorationShare) ?? d.explorationShare
        powerOfTwoChoices = try c.decodeIfPresent(Bool.self, forKey: .powerOfTwoChoices) ?? d.powerOfTwoChoices
        maxOfferAttempts = try c.decodeIfPresent(Int.self, forKey: .maxOfferAttempts) ?? d.maxOfferAttempts
        offerTimeoutMs = try c.decodeIfPresent(Int.self, forKey: .offerTimeoutMs) ?? d.offerTimeoutMs
        maxFailovers = try c.decodeIfPresent(Int.self, forKey: .maxFailovers) ?? d.maxFailovers
        stake = try c.decodeIfPresent(Double.self, forKey: .stake) ?? d.stake
        priceAccepted = try c.decodeIfPresent(Double.self, forKey: .priceAccepted) ?? d.priceAccepted
    }

    static func credits(_ v: Double) -> Credits { Credits(micro: Int64((v * 1_000_000).rounded())) }

    /// The core's policy value.
    /// - Throws: `ConfigError` naming the first invalid field.
    public func schedulingPolicy() throws -> SchedulingPolicy {
        let p = SchedulingPolicy(
            offloadFrequency: offloadFrequency, queueFrequency: queueFrequency, acceptFrequency: acceptFrequency,
            loadTarget: loadTarget, explorationShare: explorationShare, powerOfTwoChoices: powerOfTwoChoices,
            maxOfferAttempts: maxOfferAttempts, offerTimeout: .milliseconds(offerTimeoutMs),
            maxFailovers: maxFailovers, priceAccepted: Self.credits(priceAccepted))
        if let v = p.violations.first {
            // Name the config key the user wrote (offload_frequency), not the Swift field.
            let snake = v.field.reduce(into: "") { out, ch in
                if ch.isUppercase { out += "_" + ch.lowercased() } else { out.append(ch) }
            }
            let key = CodingKeys.allCases.contains { $0.rawValue == snake } ? snake : v.field
            throw ConfigError("policy.\(key) must be \(v.requirement)")
        }
        guard stake >= 0, stake < 1e12 else { throw ConfigError("policy.stake must be between 0 and 1e12 credits") }
        return p
    }

    public var declaredStake: Credits { Self.credits(stake) }
}
