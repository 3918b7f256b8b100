import Foundation
import WWWAPI
import WWWCore
import WWWStore

/// Envelope kinds (the signed `kind` field) and the routes that accept them.
public enum PeerKind {
    public static let membership = "membership"
    public static let ledger = "ledger"
    public static let offer = "offer"
}

/// A SWIM message with the sender's advertised listen address ("host:port"), so a node
/// that does not know the sender yet (a restarted seed, a joiner) can answer it.
public struct MembershipEnvelopeBody: Codable, Sendable {
    public var fromAddress: String
    public var message: MembershipMessage
}

/// Ledger anti-entropy (Scuttlebutt): a digest `{author: highest contiguous authorSeq}` and
/// events the receiver is believed to lack. The answer has the same shape.
public struct LedgerSync: Codable, Sendable {
    public var digest: [String: UInt64]
    public var events: [LedgerEvent]
    /// Both events of each equivocation proof the sender holds (bounded, see
    /// `LedgerSyncProofs`): digests cannot show a proof.
    public var proofs: [LedgerEvent]

    public init(digest: [NodeID: UInt64], events: [LedgerEvent], proofs: [LedgerEvent] = []) {
        self.digest = Dictionary(uniqueKeysWithValues: digest.map { ($0.key.hex, $0.value) })
        self.events = events
        self.proofs = proofs
    }

    enum CodingKeys: String, CodingKey { case digest, events, proofs }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        digest = try c.decode([String: UInt64].self, forKey: .digest)
        events = try c.decode([LedgerEvent].self, forKey: .events)
        proofs = try c.decodeIfPresent([LedgerEvent].self, forKey: .proofs) ?? []
    }

    public var nodeDigest: [NodeID: UInt64] {
        Dictionary(digest.compactMap { k, v in NodeID(hex: k).map { ($0, v) } }, uniquingKeysWith: max)
    }
}

/// An offer (DESIGN.md §6.3): the requester's signed payment authorization and the job.
/// The executor answers 200 with an SSE stream of `chat.completion.chunk`s when it
/// accepts, 409 with `OfferAnswer` when it rejects.
public struct OfferMessage: Codable, Sendable {
    public var authorization: Signed<PaymentAuthorization>
    public var request: ChatCompletionRequest
    /// Nodes already tried for this job (the route), so the executor can log it.
    public var route: [NodeID]
}

/// An executor's rejection.
public struct OfferAnswer: Codable, Sendable {
    public var accepted: Bool
    public var reason: String
}

extension LedgerEvent: StorableEvent {
    public var storeID: String { idHex }
    public var storeAuthor: String { author.hex }
    public var storeAuthorSeq: UInt64 { authorSeq }
    public var storeCreatedAt: Int64 { createdAt.nanoseconds }
}

/// The wall clock as the core's `Instant` (the shell is the only place that reads it).
public func wallClockNow() -> Instant {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Instant(nanoseconds: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec))
}

/// A view of one member for `wwwserve peers` and `GET /p2p/v1/peers`.
public struct PeerView: Codable, Sendable {
    public var node: String
    public var address: String
    public var status: String
    public var incarnation: UInt64
    public var models: [String]
    public var capacity: Int
    public var utilization: Double
    public var accepting: Bool
    public var stake: String
    public var balance: String
    public var isSelf: Bool

    enum CodingKeys: String, CodingKey {
        case node, address, status, incarnation, models, capacity, utilization, accepting, stake, balance, isSelf = "self"
    }
}

/// Balances and stakes for `wwwserve credits` and `GET /p2p/v1/credits`.
public struct CreditsView: Codable, Sendable {
    public struct Row: Codable, Sendable {
        public var node: String
        public var balance: String
        public var balanceMicro: Int64
        public var declaredStake: String
        public var effectiveStake: String
        public var equivocating: Bool
    }
    public var network: String
    public var me: String
    public var events: Int
    public var digest: [String: UInt64]
    /// SHA-256 over the sorted event ids: equal on two nodes ⇔ same event set.
    public var eventSetHash: String
    public var totalSupply: String
    public var rows: [Row]
}
