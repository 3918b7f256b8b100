/// Parts per million: an exact integer share (1_000_000 ppm = 100 %). Probabilities and
/// shares are never floating point in signed or hashed data (DESIGN.md §5, Canonical.swift).
public typealias PartsPerMillion = Int64

/// One million parts per million: the denominator of every `PartsPerMillion` share.
public let partsPerMillionOne: PartsPerMillion = 1_000_000

/// The network parameters fixed by the genesis (DESIGN.md §5). Defaults in brackets.
public struct GenesisParameters: Hashable, Sendable, Codable, CanonicallyEncodable {
    /// Price of one offloaded job [1 credit].
    public var pricePerJob: Credits
    /// Probability that a job becomes a duel, in ppm [100_000 = 0.1].
    public var duelProbability: PartsPerMillion
    /// Judges on a duel's panel [3].
    public var judgesPerDuel: Int
    /// A duel loser's bond as a share of its stake, in ppm [500_000 = 50 %].
    public var loserBondShare: PartsPerMillion
    /// Fee a requester pays each judge of a duel [0.2 credit].
    public var judgeFee: Credits
    /// Share of its stake at risk a judge in the minority loses to the majority, in ppm [200_000 = 20 %].
    public var minorityJudgePenalty: PartsPerMillion
    /// Share of its stake an abstaining judge loses, in ppm [50_000 = 5 %]. Not applied by
    /// the ledger yet: a judge signs nothing before it judges, so the ledger has no signed
    /// consent to lower an abstainer's balance (§5: every party whose balance falls signs).
    public var abstainingJudgePenalty: PartsPerMillion

    public static let defaults = GenesisParameters()

    public init(
        pricePerJob: Credits = Credits(credits: 1),
        duelProbability: PartsPerMillion = 100_000,
        judgesPerDuel: Int = 3,
        loserBondShare: PartsPerMillion = 500_000,
        judgeFee: Credits = Credits(micro: 200_000),
        minorityJudgePenalty: PartsPerMillion = 200_000,
        abstainingJudgePenalty: PartsPerMillion = 50_000
    ) {
        self.pricePerJob = pricePerJob
        self.duelProbability = duelProbability
        self.judgesPerDuel = judgesPerDuel
        self.loserBondShare = loserBondShare
        self.judgeFee = judgeFee
        self.minorityJudgePenalty = minorityJudgePenalty
        self.abstainingJudgePenalty = abstainingJudgePenalty
    }

    /// A missing key takes its default, so a genesis file may list only what it changes.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = GenesisParameters.defaults
        pricePerJob = try c.decodeIfPresent(Credits.self, forKey: .pricePerJob) ?? d.pricePerJob
        duelProbability = try c.decodeIfPresent(Int64.self, forKey: .duelProbability) ?? d.duelProbability
        judgesPerDuel = try c.decodeIfPresent(Int.self, forKey: .judgesPerDuel) ?? d.judgesPerDuel
        loserBondShare = try c.decodeIfPresent(Int64.self, forKey: .loserBondShare) ?? d.loserBondShare
        judgeFee = try c.decodeIfPresent(Credits.self, forKey: .judgeFee) ?? d.judgeFee
        minorityJudgePenalty = try c.decodeIfPresent(Int64.self, forKey: .minorityJudgePenalty) ?? d.minorityJudgePenalty
        abstainingJudgePenalty = try c.decodeIfPresent(Int64.self, forKey: .abstainingJudgePenalty) ?? d.abstainingJudgePenalty
    }

    public var canonical: CanonicalValue {
        .object([
            "pricePerJob": .int(pricePerJob.micro),
            "duelProbability": .int(duelProbability),
            "judgesPerDuel": .int(Int64(judgesPerDuel)),
            "loserBondShare": .int(loserBondShare),
            "judgeFee": .int(judgeFee.micro),
            "minorityJudgePenalty": .int(minorityJudgePenalty),
            "abstainingJudgePenalty": .int(abstainingJudgePenalty),
        ])
    }

    /// Human-readable problems; empty when the parameters are usable.
    public var problems: [String] {
        var out = [String]()
        if pricePerJob < .zero { out.append("pricePerJob must be >= 0") }
        if judgeFee < .zero { out.append("judgeFee must be >= 0") }
        if judgesPerDuel < 1 || judgesPerDuel > 64 { out.append("judgesPerDuel must be in 1...64") }
        let shares: [(String, PartsPerMillion)] = [
            ("duelProbability", duelProbability), ("loserBondShare", loserBondShare),
            ("minorityJudgePenalty", minorityJudgePenalty), ("abstainingJudgePenalty", abstainingJudgePenalty),
        ]
        for (name, v) in shares where v < 0 || v > partsPerMillionOne {
            out.append("\(name) must be in 0...1000000 ppm")
        }
        return out
    }
}

/// The network file (DESIGN.md §1, §5): network id, parameters, initial credit grants and
/// seed addresses. Credits are created only here: Σ balances = Σ grants, always.
///
/// Codable shape (JSON): `{"networkID": s, "parameters": {...}, "grants": {nodeHex: micro},
/// "seeds": [address]}`; missing parameters take their defaults.
/// Canonical form (hashed to name the network): the same keys plus `"type":"genesis"`,
/// grants as an object keyed by node hex (so sorted), seeds sorted by UTF-8 bytes.
public struct Genesis: Hashable, Sendable, Codable, CanonicallyEncodable {
    public var networkID: String
    public var parameters: GenesisParameters
    /// Initial balances (µcredits ≥ 0).
    public var grants: [NodeID: Credits]
    /// Seed addresses (`host:port`) a joining node contacts first.
    public var seeds: [String]

    public init(networkID: String, parameters: GenesisParameters = .defaults,
                grants: [NodeID: Credits] = [:], seeds: [String] = []) {
        self.networkID = networkID
        self.parameters = parameters
        self.grants = grants
        self.seeds = seeds
    }

    /// Σ grants: the total credit supply, constant for the network's life.
    public var totalSupply: Credits {
        grants.values.reduce(Credits.zero, +)
    }

    public var canonical: CanonicalValue {
        var g = [String: CanonicalValue]()
        for (node, amount) in grants { g[node.hex] = .int(amount.micro) }
        let sortedSeeds = seeds.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        return .object([
            "type": .string("genesis"),
            "networkID": .string(networkID),
            "parameters": parameters.canonical,
            "grants": .object(g),
            "seeds": .array(sortedSeeds.map { .string($0) }),
        ])
    }

    /// SHA-256 of the canonical bytes (32 bytes): the network's identity.
    public func hash(_ crypto: any CryptoProvider) -> [UInt8] { crypto.sha256(canonical.bytes) }

    /// True for "host:port": a host name or IPv4 address (letters, digits, `.`, `-`) or a
    /// bracketed IPv6 address, then a decimal port in 1…65535 without sign or leading zero;
    /// no scheme, user or path (at most 300 characters).
    public static func isHostPort(_ s: String) -> Bool {
        guard s.count <= 300, let colon = s.lastIndex(of: ":") else { return false }
        let host = s[..<colon], port = s[s.index(after: colon)...]
        guard !port.isEmpty, port.count <= 5, port.allSatisfy({ $0.isASCII && $0.isNumber }), port.first != "0",
              let p = Int(port), (1...65535).contains(p), !host.isEmpty else { return false }
        if host.first == "[" {
            let inner = host.dropFirst().dropLast()
            return host.last == "]" && !inner.isEmpty && inner.allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." }
        }
        return host.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") }
    }

    /// Human-readable problems; empty when the genesis is usable.
    public var problems: [String] {
        var out = parameters.problems
        if networkID.isEmpty { out.append("networkID must not be empty") }
        for seed in seeds where !Self.isHostPort(seed) { out.append("seed '\(seed.prefix(80))' must be host:port with a port in 1...65535") }
        var total: Int64 = 0
        for (node, amount) in grants.sorted(by: { $0.key < $1.key }) {
            if amount < .zero { out.append("grant to \(node.hex) must be >= 0") }
            let (sum, overflow) = total.addingReportingOverflow(amount.micro)
            if overflow { out.append("grants overflow Int64 micro-credits"); break }
            total = sum
        }
        return out
    }

    private enum CodingKeys: String, CodingKey { case networkID, parameters, grants, seeds }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        networkID = try c.decode(String.self, forKey: .networkID)
        parameters = try c.decodeIfPresent(GenesisParameters.self, forKey: .parameters) ?? .defaults
        let raw = try c.decodeIfPresent([String: Credits].self, forKey: .grants) ?? [:]
        var g = [NodeID: Credits]()
        for (hex, amount) in raw {
            guard let node = NodeID(hex: hex) else {
                throw DecodingError.dataCorruptedError(forKey: .grants, in: c,
                    debugDescription: "grant key \(hex) is not a 64-hex-character NodeID")
            }
            g[node] = amount
        }
        grants = g
        seeds = try c.decodeIfPresent([String].self, forKey: .seeds) ?? []
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(networkID, forKey: .networkID)
        try c.encode(parameters, forKey: .parameters)
        var g = [String: Credits]()
        for (node, amount) in grants { g[node.hex] = amount }
        try c.encode(g, forKey: .grants)
        try c.encode(seeds, forKey: .seeds)
    }
}
