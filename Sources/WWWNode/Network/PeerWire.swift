import Foundation
import WWWAPI
import WWWCore
import WWWStore

/// Peer routes (DESIGN.md §3). Every POST body is one signed `Envelope` whose `kind` is a
/// `PeerMessageKind`:
/// - `POST /p2p/v1/message`: one-way messages (`membership`, `ledger`); answered 202.
/// - `POST /p2p/v1/offer`: an offer (`offer`); the response head carries the executor's
///   signed answer in `X-WWWServe-Offer-Answer`; 200 streams the answer chunks as SSE,
///   409 means rejected.
public enum PeerPath {
    public static let message = "/p2p/v1/message"
    public static let offer = "/p2p/v1/offer"
    /// The response header with the executor's signed `OfferAnswer` (JSON).
    public static let answerHeader = "X-WWWServe-Offer-Answer"
}

/// The body of a one-way envelope: the message and the sender's listen address
/// ("host:port"), so a node that does not know the sender yet (a restarted seed, a
/// joiner) can answer it.
public struct PeerMessageBody: Codable, Sendable {
    public var fromAddress: String
    public var message: PeerMessage
    /// With a `judgeRequest` only: the prompt and both answers (the machine never sees texts).
    public var judging: JudgeMaterial?

    public init(fromAddress: String, message: PeerMessage, judging: JudgeMaterial? = nil) {
        self.fromAddress = fromAddress
        self.message = message
        self.judging = judging
    }
}

/// The body of an offer envelope: the core's offer and the request it is for (the
/// prompt travels to the executor; DESIGN.md §3).
public struct OfferBody: Codable, Sendable {
    public var fromAddress: String
    public var offer: OfferMessage
    public var request: ChatCompletionRequest

    public init(fromAddress: String, offer: OfferMessage, request: ChatCompletionRequest) {
        self.fromAddress = fromAddress
        self.offer = offer
        self.request = request
    }
}

extension LedgerEvent: StorableEvent {
    public var storeID: String { idHex }
    public var storeAuthor: String { author.hex }
    public var storeAuthorSeq: UInt64 { authorSeq }
    public var storeCreatedAt: Int64 { createdAt.nanoseconds }
}

extension EventStore where E == LedgerEvent {
    /// The stored events of the ledger's `ranges` (`NodeDirective.sendLedgerSync`).
    public func events(in ranges: [LedgerRange]) throws -> [LedgerEvent] {
        try events(inRuns: ranges.map { ($0.author.hex, $0.afterSeq, $0.count) })
    }

    /// Rebuilds the ledger from the store page by page (memory holds one page of events,
    /// never the whole history). Damaged rows — a body that does not decode, or an event
    /// whose id does not match its content — are deleted, so the genuine events can be
    /// stored again when anti-entropy brings them; `damaged` says how many.
    public func restoreLedger(genesis: Genesis, crypto: any CryptoProvider, config: LedgerConfig) throws
        -> (ledger: Ledger, summary: LedgerRestoreSummary, damaged: Int) {
        var ledger = Ledger(genesis: genesis, crypto: crypto, config: config)
        var summary = LedgerRestoreSummary()
        var undecodable: [String] = []
        try forEachPage(undecodable: { undecodable.append($0) }) { page in summary.merge(ledger.restore(page)) }
        let damaged = try delete(ids: undecodable + summary.corrupt.map(\.hex))
        return (ledger, summary, damaged)
    }
}

/// The wall clock as the core's `Instant` (the shell is the only place that reads it).
public func wallClockNow() -> Instant {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Instant(nanoseconds: Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec))
}

/// True for "host:port" with a port in 1…65535 (at most 300 characters).
public func isHostPort(_ s: String) -> Bool { Genesis.isHostPort(s) }

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
    /// The member judges duels (absent in older nodes' views).
    public var judging: Bool?

    enum CodingKeys: String, CodingKey {
        case node, address, status, incarnation, models, capacity, utilization, accepting, stake, balance, isSelf = "self", judging
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
        /// Duels decided by counted settlements, as executor (absent in older nodes' views).
        public var duelWins: Int?
        public var duelLosses: Int?
        public var duelTies: Int?
        /// Wins per duel; nil without duels.
        public var duelWinRate: Double?
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
