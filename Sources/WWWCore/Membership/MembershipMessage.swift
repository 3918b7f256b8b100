/// One entry of a push-pull digest: the version of what the sender knows about `node`.
///
/// Versions compare by `(incarnation, status.rank)` (see `MemberStatus.rank`).
public struct MembershipDigestEntry: Hashable, Sendable, Codable {
    public var node: NodeID
    public var incarnation: UInt64
    /// Effective status in the sender's table.
    public var status: MemberStatus

    public init(node: NodeID, incarnation: UInt64, status: MemberStatus) {
        self.node = node
        self.incarnation = incarnation
        self.status = status
    }
}

/// A bounded digest of a contiguous range of the NodeID space (range-based anti-entropy).
///
/// It lists *every* member the sender knows (itself included) whose id lies in
/// `[lowerBound, upperBound]` (inclusive; nil means unbounded on that side), at most
/// `MembershipConfig.maxDigestEntries`. Successive digests walk the sorted table
/// (wrapping), so a whole table is compared in `⌈N / maxDigestEntries⌉` exchanges while
/// each message stays bounded. The receiver answers with the states the sender lacks in
/// that range and asks (`wants`) for those it lacks itself.
///
/// A *summary* digest (`fingerprint != nil`, `entries` empty) carries only
/// `MembershipDigest.fingerprint(of:)` of the range: a receiver whose own fingerprint of
/// the range matches stays silent; otherwise it answers with its full digest of the range,
/// which starts the exchange above in the other direction. In a converged network regular
/// push-pulls therefore cost a few hundred bytes.
public struct MembershipDigest: Hashable, Sendable, Codable {
    public var lowerBound: NodeID?
    public var upperBound: NodeID?
    /// Sorted by node; empty in a summary.
    public var entries: [MembershipDigestEntry]
    /// Set in a summary digest.
    public var fingerprint: UInt64?

    public init(lowerBound: NodeID?, upperBound: NodeID?, entries: [MembershipDigestEntry], fingerprint: UInt64? = nil) {
        self.lowerBound = lowerBound
        self.upperBound = upperBound
        self.entries = entries
        self.fingerprint = fingerprint
    }

    /// Order-independent 64-bit fingerprint of a set of entries: the wrapping sum of a
    /// SplitMix64-style mix of each (node, incarnation, status). Not cryptographic: a
    /// collision only delays one exchange.
    public static func fingerprint<S: Sequence>(of entries: S) -> UInt64 where S.Element == MembershipDigestEntry {
        var sum: UInt64 = 0
        for e in entries { sum = sum &+ mix(e) }
        return sum
    }

    /// One entry's term of `fingerprint(of:)`. Tables keep it beside each member, so the
    /// fingerprint of a range is a sum of stored terms.
    public static func mix(_ e: MembershipDigestEntry) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in e.node.bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        h ^= e.incarnation &* 0x9E37_79B9_7F4A_7C15
        h ^= UInt64(e.status.rank + 1) &* 0xD6E8_FEB8_6659_FD93
        h = (h ^ (h >> 30)) &* 0xBF58_476D_1CE4_E5B9
        h = (h ^ (h >> 27)) &* 0x94D0_49BB_1331_11EB
        return h ^ (h >> 31)
    }

    /// True when `node` lies in the digest's range.
    public func covers(_ node: NodeID) -> Bool {
        if let lo = lowerBound, node < lo { return false }
        if let hi = upperBound, hi < node { return false }
        return true
    }
}

/// A membership protocol message. The shell wraps it in a signed envelope
/// `{from, to, sentAt, nonce, body}` (DESIGN.md §3); the core trusts the envelope's `from`.
///
/// Every message piggybacks up to `maxRumorsPerMessage` rumors (SWIM §4.4).
public struct MembershipMessage: Hashable, Sendable, Codable, CanonicallyEncodable {
    public enum Body: Hashable, Sendable, Codable {
        /// Direct probe; the receiver answers `ack(seq)`. `target` is whom the sender
        /// believes it pings (a node now at another address ignores it).
        case ping(seq: UInt64, target: NodeID)
        /// Answer to a ping, or an indirect ack relayed by a ping-req helper.
        case ack(seq: UInt64)
        /// Indirect probe request: ping `target` at `targetAddress` on my behalf and relay
        /// its ack as `ack(seq)` (SWIM §3.1).
        case pingReq(seq: UInt64, target: NodeID, targetAddress: String)
        /// Push-pull anti-entropy request (also the join request sent to a seed).
        case pushPull(MembershipDigest)
        /// Answer: states newer than the requester's in its digest range, and the nodes
        /// whose states the answerer wants.
        case pushPullReply(states: [MembershipRumor], wants: [NodeID])
        /// States sent in answer to `wants`, or a leaving node's `left` record.
        case states([MembershipRumor])
    }

    public var body: Body
    /// Piggybacked rumors, fewest-transmitted first.
    public var rumors: [MembershipRumor]

    public init(_ body: Body, rumors: [MembershipRumor] = []) {
        self.body = body
        self.rumors = rumors
    }

    /// Canonical form, used for hashing/signing by a shell that wants it and for byte
    /// accounting in the simulator.
    public var canonical: CanonicalValue {
        let b: CanonicalValue
        switch body {
        case .ping(let seq, let target):
            b = .object(["kind": .string("ping"), "seq": .int(Int64(truncatingIfNeeded: seq)), "target": .string(target.hex)])
        case .ack(let seq):
            b = .object(["kind": .string("ack"), "seq": .int(Int64(truncatingIfNeeded: seq))])
        case .pingReq(let seq, let target, let address):
            b = .object(["kind": .string("pingReq"), "seq": .int(Int64(truncatingIfNeeded: seq)), "target": .string(target.hex), "targetAddress": .string(address)])
        case .pushPull(let d):
            b = .object([
                "kind": .string("pushPull"),
                "lowerBound": d.lowerBound.map { .string($0.hex) } ?? .null,
                "upperBound": d.upperBound.map { .string($0.hex) } ?? .null,
                "fingerprint": d.fingerprint.map { .int(Int64(bitPattern: $0)) } ?? .null,
                "entries": .array(d.entries.map {
                    .object(["node": .string($0.node.hex), "incarnation": .int(Int64(truncatingIfNeeded: $0.incarnation)), "status": .string($0.status.rawValue)])
                }),
            ])
        case .pushPullReply(let states, let wants):
            b = .object(["kind": .string("pushPullReply"), "states": .array(states.map(\.canonical)), "wants": .array(wants.map { .string($0.hex) })])
        case .states(let states):
            b = .object(["kind": .string("states"), "states": .array(states.map(\.canonical))])
        }
        return .object(["body": b, "rumors": .array(rumors.map(\.canonical))])
    }
}

/// Where a membership message goes.
public enum MembershipDestination: Hashable, Sendable {
    /// A known member at its advertised address.
    case node(NodeID, address: String)
    /// An address whose NodeID is not known yet (a seed during join or rejoin); the
    /// shell sends the envelope without a fixed `to` (or learns it from the answer).
    case address(String)

    /// The address to connect to.
    public var address: String {
        switch self {
        case .node(_, let a): a
        case .address(let a): a
        }
    }
}

/// What `Membership` asks its driver to do or tells it happened.
public enum MembershipDirective: Hashable, Sendable {
    /// Send `message` to `destination` (best effort; loss is tolerated).
    case send(MembershipDestination, MembershipMessage)
    /// A member became alive in this node's table (first seen, or back after a tombstone).
    case memberUp(MemberRecord)
    /// A live member's record or status changed (metadata update, suspect, refuted).
    case memberChanged(MemberRecord)
    /// A member became `dead` or `left`.
    case memberDown(MemberRecord)
    /// A tombstone expired; the member is forgotten.
    case memberRemoved(NodeID)
    /// This node signed a new self-record (start, refutation, update, leave). The shell
    /// may persist `incarnation` so that a restart begins above it.
    case localUpdated(Signed<MemberRecord>)
    /// A received rumor from `from` about `subject` was refused (for logs and metrics).
    case rejected(from: NodeID, subject: NodeID, reason: MembershipRejection)
}
