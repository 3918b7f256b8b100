/// A ledger event's content address: SHA-256 of its canonical unsigned bytes (32 bytes).
/// Ordered by bytes, which is the deterministic tie-break among duplicates.
public struct EventID: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) {
        precondition(bytes.count == 32, "an EventID is 32 bytes")
        self.bytes = bytes
    }

    public init?(hex: String) {
        guard let b = Hex.decode(hex), b.count == 32 else { return nil }
        self.bytes = b
    }

    /// One hasher call over the raw bytes (the synthesized hash fed them one at a time:
    /// the simulator spent a sixth of its time there).
    public func hash(into hasher: inout Hasher) { bytes.withUnsafeBytes { hasher.combine(bytes: $0) } }

    public var hex: String { Hex.encode(bytes) }
    public var description: String { String(hex.prefix(12)) }
    public static func < (a: EventID, b: EventID) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        guard let id = EventID(hex: try c.decode(String.self)) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "EventID must be 64 hex characters")
        }
        self = id
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(hex)
    }
}

/// An immutable signed ledger record (DESIGN.md §5).
///
/// - `id` = SHA-256 of `unsignedCanonical.bytes`; the ledger recomputes and checks it.
/// - `signature` = the author's Ed25519 signature (64 bytes) of `unsignedCanonical.bytes`.
/// - Every other party whose balance the event lowers has signed the data embedded in
///   `body` (payment authorization, duel acceptance, verdict).
///
/// Unsigned canonical form: `{"author":hex,"authorSeq":n,"body":{"kind":…},"createdAt":ns,
/// "type":"ledgerEvent"}`. Codable (the store's row shape): `{"id":hex,"author":hex,
/// "authorSeq":n,"createdAt":ns,"body":{"kind":k, k:{…}},"signature":hex}`.
public struct LedgerEvent: Hashable, Sendable, Codable {
    public let id: EventID
    public let author: NodeID
    /// The author's sequence number: 1, 2, 3, … (at most `Int64.max`).
    public let authorSeq: UInt64
    /// When the author created it (author-claimed).
    public let createdAt: Instant
    public let body: LedgerEventBody
    /// 64 bytes.
    public let signature: [UInt8]

    /// Builds and signs an event; `signer.nodeID` is the author.
    public init(authorSeq: UInt64, createdAt: Instant, body: LedgerEventBody,
                signer: any MessageSigner, crypto: any CryptoProvider) {
        let unsigned = LedgerEvent.unsignedCanonical(author: signer.nodeID, authorSeq: authorSeq,
                                                     createdAt: createdAt, body: body).bytes
        self.id = EventID(bytes: crypto.sha256(unsigned))
        self.author = signer.nodeID
        self.authorSeq = authorSeq
        self.createdAt = createdAt
        self.body = body
        self.signature = signer.sign(unsigned)
    }

    /// Assembles an event from stored or received parts, unchecked (the ledger checks).
    public init(id: EventID, author: NodeID, authorSeq: UInt64, createdAt: Instant,
                body: LedgerEventBody, signature: [UInt8]) {
        self.id = id
        self.author = author
        self.authorSeq = authorSeq
        self.createdAt = createdAt
        self.body = body
        self.signature = signature
    }

    /// The hex of `id`, the store's primary key.
    public var idHex: String { id.hex }

    /// The bytes the id hashes and the author signs.
    public var unsignedCanonical: CanonicalValue {
        LedgerEvent.unsignedCanonical(author: author, authorSeq: authorSeq, createdAt: createdAt, body: body)
    }

    /// The id recomputed from the content.
    public func computedID(_ crypto: any CryptoProvider) -> EventID {
        EventID(bytes: crypto.sha256(unsignedCanonical.bytes))
    }

    static func unsignedCanonical(author: NodeID, authorSeq: UInt64, createdAt: Instant,
                                  body: LedgerEventBody) -> CanonicalValue {
        .object([
            "type": .string("ledgerEvent"),
            "author": .string(author.hex),
            "authorSeq": .int(Int64(truncatingIfNeeded: authorSeq)),
            "createdAt": .int(createdAt.nanoseconds),
            "body": body.canonical,
        ])
    }

    private enum CodingKeys: String, CodingKey { case id, author, authorSeq, createdAt, body, signature }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(EventID.self, forKey: .id)
        author = try c.decode(NodeID.self, forKey: .author)
        authorSeq = try c.decode(UInt64.self, forKey: .authorSeq)
        createdAt = try c.decode(Instant.self, forKey: .createdAt)
        body = try c.decode(LedgerEventBody.self, forKey: .body)
        signature = try decodeHex(c, .signature)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(author, forKey: .author)
        try c.encode(authorSeq, forKey: .authorSeq)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(body, forKey: .body)
        try c.encode(Hex.encode(signature), forKey: .signature)
    }
}

/// What an event records. Codable as `{"kind": k, k: {…}}`.
public enum LedgerEventBody: Hashable, Sendable, Codable, CanonicallyEncodable {
    /// Executor-authored: the requester's signed payment authorization for a delivered job.
    case jobReceipt(JobReceipt)
    /// Requester-authored: the signed outcome of a duel.
    case duelSettlement(DuelSettlement)

    public var kind: String {
        switch self {
        case .jobReceipt: "jobReceipt"
        case .duelSettlement: "duelSettlement"
        }
    }

    public var canonical: CanonicalValue {
        switch self {
        case .jobReceipt(let r): r.canonical
        case .duelSettlement(let s): s.canonical
        }
    }

    private enum CodingKeys: String, CodingKey { case kind, jobReceipt, duelSettlement }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        switch try c.decode(String.self, forKey: .kind) {
        case "jobReceipt": self = .jobReceipt(try c.decode(JobReceipt.self, forKey: .jobReceipt))
        case "duelSettlement": self = .duelSettlement(try c.decode(DuelSettlement.self, forKey: .duelSettlement))
        case let other:
            throw DecodingError.dataCorruptedError(forKey: .kind, in: c, debugDescription: "unknown event kind \(other)")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind, forKey: .kind)
        switch self {
        case .jobReceipt(let r): try c.encode(r, forKey: .jobReceipt)
        case .duelSettlement(let s): try c.encode(s, forKey: .duelSettlement)
        }
    }
}

/// `jobReceipt` (DESIGN.md §5): the executor (the event's author) publishes, after
/// delivering, the requester's signed authorization with the response hash.
/// Effect: `authorization.value.price` moves requester → executor.
/// Canonical: `{"authorization":{"signature":hex,"signer":hex,"value":{…}},"inputTokens":n,
/// "kind":"jobReceipt","outputTokens":n,"responseHash":hex}`.
public struct JobReceipt: Hashable, Sendable, Codable, CanonicallyEncodable {
    public var authorization: Signed<PaymentAuthorization>
    /// SHA-256 of the delivered response (32 bytes).
    public var responseHash: [UInt8]
    /// Prompt tokens processed.
    public var inputTokens: UInt32
    /// Completion tokens produced.
    public var outputTokens: UInt32

    public init(authorization: Signed<PaymentAuthorization>, responseHash: [UInt8],
                inputTokens: UInt32, outputTokens: UInt32) {
        self.authorization = authorization
        self.responseHash = responseHash
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
    }

    public var canonical: CanonicalValue {
        .object([
            "kind": .string("jobReceipt"),
            "authorization": signedCanonical(authorization),
            "responseHash": .bytes(responseHash),
            "inputTokens": .int(Int64(inputTokens)),
            "outputTokens": .int(Int64(outputTokens)),
        ])
    }

    private enum CodingKeys: String, CodingKey { case authorization, responseHash, inputTokens, outputTokens }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        authorization = try c.decode(Signed<PaymentAuthorization>.self, forKey: .authorization)
        responseHash = try decodeHex(c, .responseHash)
        inputTokens = try c.decode(UInt32.self, forKey: .inputTokens)
        outputTokens = try c.decode(UInt32.self, forKey: .outputTokens)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(authorization, forKey: .authorization)
        try c.encode(Hex.encode(responseHash), forKey: .responseHash)
        try c.encode(inputTokens, forKey: .inputTokens)
        try c.encode(outputTokens, forKey: .outputTokens)
    }
}

/// A duel executor's signed acceptance of the duel job: it names the judge panel and the
/// bond it forfeits to the other executor if the panel's majority prefers the other answer.
public struct DuelAcceptance: Hashable, Sendable, Codable, CanonicallyEncodable {
    public var job: JobID
    public var requester: NodeID
    public var executor: NodeID
    /// The judge panel, strictly ascending by NodeID.
    public var judges: [NodeID]
    /// µcredits ≥ 0 (the requester asks `loserBondShare` × the executor's effective stake).
    public var bond: Credits
    /// The last instant a settlement may be created under this acceptance: an executor's
    /// bond is never at risk for ever, and the ledger can forget the duel's effect key once
    /// its author's chain has passed this instant (docs/protocol.md, "Ledger memory").
    public var expiresAt: Instant

    public init(job: JobID, requester: NodeID, executor: NodeID, judges: [NodeID], bond: Credits, expiresAt: Instant) {
        self.job = job
        self.requester = requester
        self.executor = executor
        self.judges = judges
        self.bond = bond
        self.expiresAt = expiresAt
    }

    public var canonical: CanonicalValue {
        .object([
            "type": .string("duelAcceptance"),
            "job": .string(job.hex),
            "requester": .string(requester.hex),
            "executor": .string(executor.hex),
            "judges": .array(judges.map { .string($0.hex) }),
            "bond": .int(bond.micro),
            "expiresAt": .int(expiresAt.nanoseconds),
        ])
    }
}

/// A judge's answer: which of the two answers is better, in the settlement's order.
public enum DuelChoice: String, Hashable, Sendable, Codable, CaseIterable {
    case first, second, tie
}

/// The identity of a judged pair: SHA-256 of the canonical
/// `{"first":exec,"firstResponse":hash,"job":id,"second":exec,"secondResponse":hash,"type":"duelPair"}`.
public enum DuelPair {
    public static func hash(job: JobID, first: NodeID, firstResponse: [UInt8], second: NodeID,
                            secondResponse: [UInt8], crypto: any CryptoProvider) -> [UInt8] {
        let v = CanonicalValue.object([
            "type": .string("duelPair"),
            "job": .string(job.hex),
            "first": .string(first.hex),
            "firstResponse": .bytes(firstResponse),
            "second": .string(second.hex),
            "secondResponse": .bytes(secondResponse),
        ])
        return crypto.sha256(v.bytes)
    }
}

/// A judge's signed verdict on one pair. `stakeAtRisk` is the amount the judge's
/// minority penalty is a share of (`minorityJudgePenalty` ppm of it).
public struct JudgeVerdict: Hashable, Sendable, Codable, CanonicallyEncodable {
    public var job: JobID
    public var judge: NodeID
    /// The executor whose answer is "first".
    public var first: NodeID
    /// The executor whose answer is "second".
    public var second: NodeID
    /// `DuelPair.hash` of the two answers (32 bytes).
    public var pairHash: [UInt8]
    public var choice: DuelChoice
    /// µcredits ≥ 0.
    public var stakeAtRisk: Credits

    public init(job: JobID, judge: NodeID, first: NodeID, second: NodeID, pairHash: [UInt8],
                choice: DuelChoice, stakeAtRisk: Credits) {
        self.job = job
        self.judge = judge
        self.first = first
        self.second = second
        self.pairHash = pairHash
        self.choice = choice
        self.stakeAtRisk = stakeAtRisk
    }

    public var canonical: CanonicalValue {
        .object([
            "type": .string("judgeVerdict"),
            "job": .string(job.hex),
            "judge": .string(judge.hex),
            "first": .string(first.hex),
            "second": .string(second.hex),
            "pairHash": .bytes(pairHash),
            "choice": .string(choice.rawValue),
            "stakeAtRisk": .int(stakeAtRisk.micro),
        ])
    }

    private enum CodingKeys: String, CodingKey { case job, judge, first, second, pairHash, choice, stakeAtRisk }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        job = try c.decode(JobID.self, forKey: .job)
        judge = try c.decode(NodeID.self, forKey: .judge)
        first = try c.decode(NodeID.self, forKey: .first)
        second = try c.decode(NodeID.self, forKey: .second)
        pairHash = try decodeHex(c, .pairHash)
        choice = try c.decode(DuelChoice.self, forKey: .choice)
        stakeAtRisk = try c.decode(Credits.self, forKey: .stakeAtRisk)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(job, forKey: .job)
        try c.encode(judge, forKey: .judge)
        try c.encode(first, forKey: .first)
        try c.encode(second, forKey: .second)
        try c.encode(Hex.encode(pairHash), forKey: .pairHash)
        try c.encode(choice, forKey: .choice)
        try c.encode(stakeAtRisk, forKey: .stakeAtRisk)
    }
}

/// One judge's fee.
public struct JudgeFee: Hashable, Sendable, Codable {
    public var judge: NodeID
    /// µcredits ≥ 0.
    public var amount: Credits

    public init(judge: NodeID, amount: Credits) {
        self.judge = judge
        self.amount = amount
    }
}

/// The requester's signed judge fees for one duel, strictly ascending by judge.
public struct JudgeFees: Hashable, Sendable, Codable, CanonicallyEncodable {
    public var job: JobID
    public var requester: NodeID
    public var fees: [JudgeFee]

    public init(job: JobID, requester: NodeID, fees: [JudgeFee]) {
        self.job = job
        self.requester = requester
        self.fees = fees
    }

    public var canonical: CanonicalValue {
        .object([
            "type": .string("judgeFees"),
            "job": .string(job.hex),
            "requester": .string(requester.hex),
            "fees": .array(fees.map { .object(["judge": .string($0.judge.hex), "amount": .int($0.amount.micro)]) }),
        ])
    }
}

/// `duelSettlement` (DESIGN.md §5), authored by the requester.
///
/// Outcome: a choice wins when strictly more than half of the panel (not of the verdicts
/// present) chose it, so leaving a verdict out can only turn a win into a tie.
/// Effects: the loser's bond → the winner (none on a tie or without a majority); every fee
/// requester → judge; with a majority, each judge whose verdict differs loses
/// `minorityJudgePenalty` ppm of its `stakeAtRisk`, split evenly over the majority judges,
/// the remainder to the lowest NodeID among them.
public struct DuelSettlement: Hashable, Sendable, Codable, CanonicallyEncodable {
    public var job: JobID
    /// SHA-256 of the "first" executor's response (32 bytes).
    public var firstResponseHash: [UInt8]
    /// SHA-256 of the "second" executor's response (32 bytes).
    public var secondResponseHash: [UInt8]
    /// The "first" executor's signed acceptance.
    public var first: Signed<DuelAcceptance>
    /// The "second" executor's signed acceptance.
    public var second: Signed<DuelAcceptance>
    /// Verdicts present, strictly ascending by judge.
    public var verdicts: [Signed<JudgeVerdict>]
    public var judgeFees: Signed<JudgeFees>

    public init(job: JobID, firstResponseHash: [UInt8], secondResponseHash: [UInt8],
                first: Signed<DuelAcceptance>, second: Signed<DuelAcceptance>,
                verdicts: [Signed<JudgeVerdict>], judgeFees: Signed<JudgeFees>) {
        self.job = job
        self.firstResponseHash = firstResponseHash
        self.secondResponseHash = secondResponseHash
        self.first = first
        self.second = second
        self.verdicts = verdicts
        self.judgeFees = judgeFees
    }

    /// `DuelPair.hash` of this settlement's two answers.
    public func pairHash(_ crypto: any CryptoProvider) -> [UInt8] {
        DuelPair.hash(job: job, first: first.value.executor, firstResponse: firstResponseHash,
                      second: second.value.executor, secondResponse: secondResponseHash, crypto: crypto)
    }

    /// The earlier of the two acceptances' expiries: the last instant this settlement may be
    /// created at.
    public var expiresAt: Instant { min(first.value.expiresAt, second.value.expiresAt) }

    /// The choice strictly more than half of the panel made, if any. No majority, or a
    /// `.tie` majority, moves no bond.
    public var majority: DuelChoice? {
        let panel = first.value.judges.count
        for choice in DuelChoice.allCases {
            let n = verdicts.reduce(0) { $0 + ($1.value.choice == choice ? 1 : 0) }
            if 2 * n > panel { return choice }
        }
        return nil
    }

    public var canonical: CanonicalValue {
        .object([
            "kind": .string("duelSettlement"),
            "job": .string(job.hex),
            "firstResponseHash": .bytes(firstResponseHash),
            "secondResponseHash": .bytes(secondResponseHash),
            "first": signedCanonical(first),
            "second": signedCanonical(second),
            "verdicts": .array(verdicts.map(signedCanonical)),
            "judgeFees": signedCanonical(judgeFees),
        ])
    }

    private enum CodingKeys: String, CodingKey {
        case job, firstResponseHash, secondResponseHash, first, second, verdicts, judgeFees
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        job = try c.decode(JobID.self, forKey: .job)
        firstResponseHash = try decodeHex(c, .firstResponseHash)
        secondResponseHash = try decodeHex(c, .secondResponseHash)
        first = try c.decode(Signed<DuelAcceptance>.self, forKey: .first)
        second = try c.decode(Signed<DuelAcceptance>.self, forKey: .second)
        verdicts = try c.decode([Signed<JudgeVerdict>].self, forKey: .verdicts)
        judgeFees = try c.decode(Signed<JudgeFees>.self, forKey: .judgeFees)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(job, forKey: .job)
        try c.encode(Hex.encode(firstResponseHash), forKey: .firstResponseHash)
        try c.encode(Hex.encode(secondResponseHash), forKey: .secondResponseHash)
        try c.encode(first, forKey: .first)
        try c.encode(second, forKey: .second)
        try c.encode(verdicts, forKey: .verdicts)
        try c.encode(judgeFees, forKey: .judgeFees)
    }
}

/// Canonical form of a signed value: `{"signature":hex,"signer":hex,"value":{…}}`.
func signedCanonical<V>(_ s: Signed<V>) -> CanonicalValue {
    .object([
        "value": s.value.canonical,
        "signer": .string(s.signer.hex),
        "signature": .bytes(s.signature),
    ])
}

/// Decodes a lowercase/uppercase hex string field into bytes.
private func decodeHex<K: CodingKey>(_ c: KeyedDecodingContainer<K>, _ key: K) throws -> [UInt8] {
    guard let b = Hex.decode(try c.decode(String.self, forKey: key)) else {
        throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "expected a hex string")
    }
    return b
}
