/// A member's liveness status in a node's peer table (DESIGN.md §4).
///
/// `alive` and `left` are stated by the member itself in its signed `MemberRecord`;
/// `suspect` and `dead` are other nodes' verdicts about it (`MemberVerdict`). At one
/// incarnation the precedence is alive < suspect < dead < left (SWIM, Das et al. 2002,
/// §4.2; hashicorp/memberlist). `dead` and `left` are tombstones: kept for a TTL, then
/// forgotten.
public enum MemberStatus: String, Hashable, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case alive, suspect, dead, left

    /// Precedence at one incarnation: alive 0, suspect 1, dead 2, left 3.
    public var rank: Int {
        switch self {
        case .alive: 0
        case .suspect: 1
        case .dead: 2
        case .left: 3
        }
    }

    /// True for `dead` and `left`.
    public var isTombstone: Bool { self == .dead || self == .left }

    public var description: String { rawValue }
}

/// One member's self-description, signed by that member (DESIGN.md §4).
///
/// Only the subject may sign its record (`Signed<MemberRecord>.signer == node`); its
/// `status` is `alive` or `left`. Every new record the subject signs (metadata change,
/// refutation, leave) carries a strictly higher `incarnation`, so records of one node are
/// totally ordered by incarnation (ties: `left` beats `alive`). In the peer table the
/// record is shown with the *effective* status (a verdict at the record's incarnation
/// turns it `suspect` or `dead`); the signature covers the subject's own status.
///
/// Canonical form (`canonical`): the object
/// `{"type":"memberRecord","node":hex,"address":"host:port","incarnation":n,"status":"alive"|"left",
///   "models":[{"name","quantization","hardware"}…],"capacity":n,"utilizationPPM":n,"accepting":b,
///   "stake":µcredits,"updatedAt":ns}`.
public struct MemberRecord: Hashable, Sendable, Codable, CanonicallyEncodable {
    /// The subject's identity (its Ed25519 public key).
    public var node: NodeID
    /// Where peers reach it: "host:port" (a node may move; its key may not change).
    public var address: String
    /// Version of the subject's self-record; only grows. At most `Int64.max`.
    public var incarnation: UInt64
    /// `alive` or `left` when signed; the effective status when returned by a table query.
    public var status: MemberStatus
    /// Models served, in the subject's order.
    public var models: [ModelDescriptor]
    /// Concurrent requests the subject can run (sum over its backends), ≥ 0.
    public var capacity: Int
    /// Load as parts-per-million of capacity (1_000_000 = fully loaded; may exceed it).
    public var utilizationPPM: Int
    /// Whether the subject currently accepts offloaded jobs.
    public var accepting: Bool
    /// Credits the subject declares staked (observers cap it at the subject's balance, §5).
    public var stake: Credits
    /// When the subject signed this record (its clock).
    public var updatedAt: Instant
    /// Whether the subject judges duels for other requesters (§6 step 5). In the canonical
    /// form only when true.
    public var judging: Bool

    public init(
        node: NodeID, address: String, incarnation: UInt64, status: MemberStatus,
        models: [ModelDescriptor] = [], capacity: Int = 0, utilizationPPM: Int = 0,
        accepting: Bool = true, stake: Credits = .zero, updatedAt: Instant, judging: Bool = false
    ) {
        self.judging = judging
        self.node = node
        self.address = address
        self.incarnation = incarnation
        self.status = status
        self.models = models
        self.capacity = capacity
        self.utilizationPPM = utilizationPPM
        self.accepting = accepting
        self.stake = stake
        self.updatedAt = updatedAt
    }

    /// Load as utilization in parts-per-million, from a backend snapshot (rounded down).
    public static func utilizationPPM(of load: LoadSnapshot) -> Int {
        let u = load.utilization
        guard u.isFinite, u > 0 else { return 0 }
        return u >= 1_000 ? 1_000_000_000 : Int(u * 1_000_000)
    }

    /// The part of the record the subject controls besides identity, address and version.
    public var metadata: MemberMetadata {
        MemberMetadata(models: models, capacity: capacity, utilizationPPM: utilizationPPM, accepting: accepting, stake: stake,
                       judging: judging)
    }

    private enum CodingKeys: String, CodingKey {
        case node, address, incarnation, status, models, capacity, utilizationPPM, accepting, stake, updatedAt, judging
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        node = try c.decode(NodeID.self, forKey: .node)
        address = try c.decode(String.self, forKey: .address)
        incarnation = try c.decode(UInt64.self, forKey: .incarnation)
        status = try c.decode(MemberStatus.self, forKey: .status)
        models = try c.decode([ModelDescriptor].self, forKey: .models)
        capacity = try c.decode(Int.self, forKey: .capacity)
        utilizationPPM = try c.decode(Int.self, forKey: .utilizationPPM)
        accepting = try c.decode(Bool.self, forKey: .accepting)
        stake = try c.decode(Credits.self, forKey: .stake)
        updatedAt = try c.decode(Instant.self, forKey: .updatedAt)
        judging = try c.decodeIfPresent(Bool.self, forKey: .judging) ?? false
    }

    public var canonical: CanonicalValue {
        var o: [String: CanonicalValue] = [
            "type": .string("memberRecord"),
            "node": .string(node.hex),
            "address": .string(address),
            "incarnation": .int(Int64(truncatingIfNeeded: incarnation)),
            "status": .string(status.rawValue),
            "models": .array(models.map { .object(["name": .string($0.name), "quantization": .string($0.quantization), "hardware": .string($0.hardware)]) }),
            "capacity": .int(Int64(capacity)),
            "utilizationPPM": .int(Int64(utilizationPPM)),
            "accepting": .bool(accepting),
            "stake": .int(stake.micro),
            "updatedAt": .int(updatedAt.nanoseconds),
        ]
        if judging { o["judging"] = .bool(true) }
        return .object(o)
    }
}

/// What a node advertises about itself besides identity and address (input of
/// `Membership.updateLocal`).
public struct MemberMetadata: Hashable, Sendable, Codable {
    public var models: [ModelDescriptor]
    public var capacity: Int
    /// Parts-per-million of capacity; see `MemberRecord.utilizationPPM`.
    public var utilizationPPM: Int
    public var accepting: Bool
    public var stake: Credits
    public var judging: Bool

    public init(models: [ModelDescriptor] = [], capacity: Int = 0, utilizationPPM: Int = 0, accepting: Bool = true, stake: Credits = .zero,
                judging: Bool = false) {
        self.judging = judging
        self.models = models
        self.capacity = capacity
        self.utilizationPPM = utilizationPPM
        self.accepting = accepting
        self.stake = stake
    }

    /// Equal except for `utilizationPPM` (load-only changes are rate-limited).
    func sameExceptLoad(_ o: MemberMetadata) -> Bool {
        models == o.models && capacity == o.capacity && accepting == o.accepting && stake == o.stake && judging == o.judging
    }
}

/// A node's verdict that `node`, at `incarnation`, is `suspect` or `dead` (SWIM §4.2).
///
/// Gossiped as a small rumor; it is not signed on its own (the transport envelope is signed
/// by whoever relays it). A verdict applies only to the subject's record at exactly that
/// incarnation; the subject refutes it by signing a record with a higher incarnation.
public struct MemberVerdict: Hashable, Sendable, Codable, CanonicallyEncodable {
    public var node: NodeID
    public var incarnation: UInt64
    /// `suspect` or `dead`.
    public var status: MemberStatus
    /// The node that first reached the verdict (informational).
    public var origin: NodeID

    public init(node: NodeID, incarnation: UInt64, status: MemberStatus, origin: NodeID) {
        self.node = node
        self.incarnation = incarnation
        self.status = status
        self.origin = origin
    }

    public var canonical: CanonicalValue {
        .object([
            "type": .string("memberVerdict"),
            "node": .string(node.hex),
            "incarnation": .int(Int64(truncatingIfNeeded: incarnation)),
            "status": .string(status.rawValue),
            "origin": .string(origin.hex),
        ])
    }
}

/// One piece of membership state in flight: a subject-signed record or a verdict.
/// Piggybacked on every membership message (SWIM's infection-style dissemination) and
/// used for push-pull state transfer.
public enum MembershipRumor: Hashable, Sendable, Codable, CanonicallyEncodable {
    case record(Signed<MemberRecord>)
    case verdict(MemberVerdict)

    /// The node the rumor is about.
    public var subject: NodeID {
        switch self {
        case .record(let s): s.value.node
        case .verdict(let v): v.node
        }
    }

    public var canonical: CanonicalValue {
        switch self {
        case .record(let s):
            .object(["record": s.value.canonical, "signer": .string(s.signer.hex), "signature": .bytes(s.signature)])
        case .verdict(let v):
            .object(["verdict": v.canonical])
        }
    }
}

/// Why a received record or verdict was refused.
public enum MembershipRejection: String, Hashable, Sendable, Codable {
    /// The record is not signed by its subject (identity is the key).
    case wrongSigner
    /// The subject's signature does not verify.
    case badSignature
    /// `updatedAt` is more than `maxClockSkew` after the receiver's `now`.
    case futureStamped
    /// A signed record with status other than alive/left, a verdict other than
    /// suspect/dead, an incarnation above `Int64.max`, or a negative capacity.
    case malformed
    /// The peer table is full (`maxMembers`).
    case tableFull
    /// A suspicion or death claim from a sender that is not a live member here.
    case notAMember
}

extension Signed where Value == MemberRecord {
    /// Checks a received self-record: signer is the subject, status alive/left, fields in
    /// range, not stamped more than `maxClockSkew` after `now`, and (last, as it is the
    /// expensive step) a valid signature. Returns nil when acceptable.
    public func rejection(now: Instant, maxClockSkew: Duration, crypto: any CryptoProvider) -> MembershipRejection? {
        if signer != value.node { return .wrongSigner }
        if value.status != .alive && value.status != .left { return .malformed }
        if value.incarnation > UInt64(Int64.max) || value.capacity < 0 || value.utilizationPPM < 0 { return .malformed }
        if value.updatedAt > now + maxClockSkew { return .futureStamped }
        if !isValid(crypto) { return .badSignature }
        return nil
    }
}
