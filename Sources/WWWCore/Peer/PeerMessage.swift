/// The one vocabulary nodes speak to each other (DESIGN.md §3). The node shell carries each
/// message in a signed envelope whose `kind` is `PeerMessage.kind.rawValue`; the simulator
/// carries it as a value. Both hand received messages to `NodeMachine` as
/// `NodeInput.peerMessage`, with the envelope's authenticated sender.
///
/// Offers are the one exchange with a reply on the same connection: the executor's signed
/// `OfferAnswer` comes back first, then (when accepted) the answer stream. Everything else
/// is one-way and best effort.
public enum PeerMessage: Hashable, Sendable, Codable, CanonicallyEncodable {
    /// SWIM gossip: probes, acks, push-pull digests and state transfers (§4).
    case membership(MembershipMessage)
    /// Ledger anti-entropy and event dissemination (§5).
    case ledgerSync(LedgerSyncMessage)
    /// A requester's offer of one job to one executor (§6.3).
    case offer(OfferMessage)
    /// The executor's signed accept or reject of an offer (§6.3).
    case offerAnswer(Signed<OfferAnswer>)
    /// A duel's requester asks a judge for a verdict on a pair (§6.5); the shell carries
    /// the prompt and both answers beside it.
    case judgeRequest(DuelPairSpec)
    /// A judge's signed verdict, to the duel's requester.
    case judgeVerdict(Signed<JudgeVerdict>)

    public var kind: PeerMessageKind {
        switch self {
        case .membership: .membership
        case .ledgerSync: .ledger
        case .offer: .offer
        case .offerAnswer: .offerAnswer
        case .judgeRequest: .judgeRequest
        case .judgeVerdict: .judgeVerdict
        }
    }

    public var canonical: CanonicalValue {
        switch self {
        case .membership(let m): .object(["membership": m.canonical])
        case .ledgerSync(let s): .object(["ledgerSync": s.canonical])
        case .offer(let o): .object(["offer": o.canonical])
        case .offerAnswer(let a): .object(["offerAnswer": signedCanonical(a)])
        case .judgeRequest(let r): .object(["judgeRequest": r.canonical])
        case .judgeVerdict(let v): .object(["judgeVerdict": signedCanonical(v)])
        }
    }
}

/// The envelope `kind` of each peer message (signed, so a message cannot be replayed as
/// another kind).
public enum PeerMessageKind: String, Hashable, Sendable, Codable, CaseIterable {
    case membership
    case ledger
    case offer
    case offerAnswer
    case judgeRequest
    case judgeVerdict
}

/// One ledger anti-entropy message (Scuttlebutt, van Renesse et al. 2008): the sender's
/// digest `{author: highest contiguous authorSeq}`, events the receiver is believed to lack,
/// and both events of up to `LedgerSyncProofs.maxProofs` equivocation proofs (digests cannot
/// show a proof).
///
/// Roles: a periodic `request` (events empty) is answered by a `reply` with what the
/// requester lacks; the requester then sends a `push` with what the replier lacks. New
/// events are disseminated as `push`es. Pushes are not answered.
///
/// Wire form: `{"role":"request"|"reply"|"push","digest":{"<hex>":n,…},"events":[…],"proofs":[…],
/// "fingerprints":{"<hex>":n,…}}`.
public struct LedgerSyncMessage: Hashable, Sendable, Codable, CanonicallyEncodable {
    public enum Role: String, Hashable, Sendable, Codable {
        case request, reply, push
    }

    public var role: Role
    public var digest: [NodeID: UInt64]
    public var events: [LedgerEvent]
    public var proofs: [LedgerEvent]
    /// The last event the sender holds of the *recipient's* own chain: proof of what the
    /// digest claims about it (a node signs nothing while a peer holds more of its chain
    /// than it does, so such a claim must not be believed without the signed event).
    public var recipientHead: LedgerEvent?
    /// Per author, the fingerprint of the sender's chain up to its digest's high-water
    /// (`Ledger.fingerprints`): equal sequence numbers with different fingerprints expose an
    /// equivocation shown to disjoint sets of nodes. Absent (older senders): not compared.
    public var fingerprints: [NodeID: UInt64]

    public init(role: Role, digest: [NodeID: UInt64], events: [LedgerEvent] = [], proofs: [LedgerEvent] = [],
                recipientHead: LedgerEvent? = nil, fingerprints: [NodeID: UInt64] = [:]) {
        self.role = role
        self.digest = digest
        self.events = events
        self.proofs = proofs
        self.recipientHead = recipientHead
        self.fingerprints = fingerprints
    }

    enum CodingKeys: String, CodingKey { case role, digest, events, proofs, recipientHead, fingerprints }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        role = try c.decode(Role.self, forKey: .role)
        let hex = try c.decode([String: UInt64].self, forKey: .digest)
        var d: [NodeID: UInt64] = [:]
        for (k, v) in hex {
            guard let id = NodeID(hex: k) else {
                throw DecodingError.dataCorruptedError(forKey: .digest, in: c, debugDescription: "digest keys are node ids")
            }
            d[id] = max(d[id] ?? 0, v)
        }
        digest = d
        events = try c.decodeIfPresent([LedgerEvent].self, forKey: .events) ?? []
        proofs = try c.decodeIfPresent([LedgerEvent].self, forKey: .proofs) ?? []
        recipientHead = try c.decodeIfPresent(LedgerEvent.self, forKey: .recipientHead)
        var f: [NodeID: UInt64] = [:]
        for (k, v) in try c.decodeIfPresent([String: UInt64].self, forKey: .fingerprints) ?? [:] {
            guard let id = NodeID(hex: k) else {
                throw DecodingError.dataCorruptedError(forKey: .fingerprints, in: c, debugDescription: "fingerprint keys are node ids")
            }
            f[id] = v
        }
        fingerprints = f
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(role, forKey: .role)
        try c.encode(Dictionary(uniqueKeysWithValues: digest.map { ($0.key.hex, $0.value) }), forKey: .digest)
        try c.encode(events, forKey: .events)
        try c.encode(proofs, forKey: .proofs)
        try c.encodeIfPresent(recipientHead, forKey: .recipientHead)
        if !fingerprints.isEmpty {
            try c.encode(Dictionary(uniqueKeysWithValues: fingerprints.map { ($0.key.hex, $0.value) }), forKey: .fingerprints)
        }
    }

    public var canonical: CanonicalValue {
        .object([
            "role": .string(role.rawValue),
            "digest": .object(Dictionary(uniqueKeysWithValues: digest.map { ($0.key.hex, .int(Int64(truncatingIfNeeded: $0.value))) })),
            "events": .array(events.map { .string($0.id.hex) }),
            "proofs": .array(proofs.map { .string($0.id.hex) }),
            "recipientHead": recipientHead.map { .string($0.id.hex) } ?? .null,
            "fingerprints": .object(Dictionary(uniqueKeysWithValues: fingerprints.map { ($0.key.hex, .int(Int64(bitPattern: $0.value))) })),
        ])
    }
}

/// An offer (DESIGN.md §6.3): the requester's signed payment authorization for one job on
/// one executor, and the executors already tried for this job. The shell attaches the
/// request itself (the prompt never enters the core); the executor answers with a signed
/// `OfferAnswer` on the same connection.
public struct OfferMessage: Hashable, Sendable, Codable, CanonicallyEncodable {
    public var authorization: Signed<PaymentAuthorization>
    /// Nodes that already ran this job and failed before the first byte (for logs).
    public var route: [NodeID]
    /// Present when the job is one copy of a duel: the executor that accepts signs a
    /// `DuelAcceptance` of these terms on its answer.
    public var duel: DuelTerms?

    public init(authorization: Signed<PaymentAuthorization>, route: [NodeID] = [], duel: DuelTerms? = nil) {
        self.authorization = authorization
        self.route = route
        self.duel = duel
    }

    public var job: JobID { authorization.value.job }

    public var canonical: CanonicalValue {
        var o: [String: CanonicalValue] = ["authorization": signedCanonical(authorization), "route": .array(route.map { .string($0.hex) })]
        if let duel { o["duel"] = duel.canonical }
        return .object(o)
    }
}

/// The executor's answer to an offer, signed by the executor, so a requester (and, for a
/// duel, every verifier) holds proof of what the executor agreed to.
///
/// Canonical form: `{"type":"offerAnswer","job":hex,"requester":hex,"executor":hex,
/// "accepted":bool,"reason":string|null,"answeredAt":ns}`.
public struct OfferAnswer: Hashable, Sendable, Codable, CanonicallyEncodable {
    public var job: JobID
    public var requester: NodeID
    public var executor: NodeID
    public var accepted: Bool
    /// Why the offer was rejected; nil exactly when `accepted`.
    public var reason: OfferRejectionReason?
    /// The executor's clock when it answered.
    public var answeredAt: Instant
    /// On an accepted duel offer: the executor's signed acceptance of the duel's terms.
    public var duelAcceptance: Signed<DuelAcceptance>?

    public init(job: JobID, requester: NodeID, executor: NodeID, reason: OfferRejectionReason?, answeredAt: Instant,
                duelAcceptance: Signed<DuelAcceptance>? = nil) {
        self.job = job
        self.requester = requester
        self.executor = executor
        self.accepted = reason == nil
        self.reason = reason
        self.answeredAt = answeredAt
        self.duelAcceptance = duelAcceptance
    }

    public var canonical: CanonicalValue {
        .object([
            "type": .string("offerAnswer"),
            "job": .string(job.hex),
            "requester": .string(requester.hex),
            "executor": .string(executor.hex),
            "accepted": .bool(accepted),
            "reason": reason.map { .string($0.rawValue) } ?? .null,
            "answeredAt": .int(answeredAt.nanoseconds),
        ].merging(duelAcceptance.map { ["duelAcceptance": signedCanonical($0)] } ?? [:]) { a, _ in a })
    }
}
