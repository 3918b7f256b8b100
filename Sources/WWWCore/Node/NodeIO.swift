/// The inputs and directives of `NodeMachine`: everything a driver (the node shell or the
/// simulator) tells a node and everything the node asks its driver to do (DESIGN.md §2).
///
/// Tokens never enter the machine. The driver moves them from engines and peers to users
/// and peers, and reports only control events about each stream: first content, finished
/// (response hash and usage), failed.

/// A user request at the node that received it; chosen by the driver, unique per node run.
public struct RequestID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var raw: UInt64
    public init(_ raw: UInt64) { self.raw = raw }
    public static func < (a: RequestID, b: RequestID) -> Bool { a.raw < b.raw }
    public var description: String { "r\(raw)" }
}

/// One stream of answer chunks the driver moves: from a local backend (`runInference`) or
/// from a peer executor (`openOffer`). Chosen by the machine, unique per node run.
public struct StreamID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var raw: UInt64
    public init(_ raw: UInt64) { self.raw = raw }
    public static func < (a: StreamID, b: StreamID) -> Bool { a.raw < b.raw }
    public var description: String { "s\(raw)" }
}

/// What the machine needs to know about a user request (the prompt stays in the driver).
public struct UserRequestSpec: Hashable, Sendable {
    /// The OpenAI `model` field.
    public var model: String
    /// False when the user (header) or the operator (API key) forbids the prompt to leave
    /// this node (DESIGN.md §3).
    public var allowOffload: Bool
    /// The whole request must be over by this instant (answer streamed to the end).
    public var deadline: Instant

    public init(model: String, allowOffload: Bool = true, deadline: Instant) {
        self.model = model
        self.allowOffload = allowOffload
        self.deadline = deadline
    }
}

/// Token counts of a finished answer, as the engine reported them.
public struct TokenUsage: Hashable, Sendable, Codable {
    public var promptTokens: Int
    public var completionTokens: Int
    public init(promptTokens: Int, completionTokens: Int) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
    }
}

/// How a stream ended cleanly.
public struct StreamOutcome: Hashable, Sendable {
    /// SHA-256 of the delivered answer text (32 bytes): what a `jobReceipt` countersigns.
    public var responseHash: [UInt8]
    /// nil when the engine did not report usage.
    public var usage: TokenUsage?

    public init(responseHash: [UInt8], usage: TokenUsage?) {
        self.responseHash = responseHash
        self.usage = usage
    }
}

/// A control event about one stream.
public enum StreamEvent: Hashable, Sendable {
    /// The first chunk that carries content (or reasoning, or a finish reason) arrived: the
    /// HTTP status may be committed (§6a).
    case firstContent
    /// The stream ended with a real finish reason and was delivered to its reader.
    case finished(StreamOutcome)
    /// The stream failed: the source broke, timed out or sent an error; or, for an
    /// executor's stream, the requester's connection went away.
    case failed(RelayFailure)
}

/// Timers the machine sets (`NodeDirective.setTimer`). Setting a timer replaces the pending
/// one with the same key; a timer that fires late or after its purpose ended is ignored.
public enum NodeTimer: Hashable, Sendable, Comparable {
    /// `Membership.nextDeadline`.
    case membership
    /// Once per gossip period: metadata publication, ledger anti-entropy, housekeeping.
    case period
    /// A waiting request's next placement attempt.
    case retry(RequestID)
    /// An offer's answer deadline.
    case offer(StreamID)
    /// A request's overall deadline.
    case deadline(RequestID)
    /// The end of a throttled target's cooldown for a model (a local backend or a peer).
    case cooldown(RelayTarget, model: String)
    /// A duel's judging deadline (requester).
    case duel(JobID)
    /// The end of a judge task this node took (judge).
    case judgeTask(JobID)

    private var rank: (Int, UInt64, String) {
        switch self {
        case .membership: (0, 0, "")
        case .period: (1, 0, "")
        case .retry(let r): (2, r.raw, "")
        case .offer(let s): (3, s.raw, "")
        case .deadline(let r): (4, r.raw, "")
        case .cooldown(.local(let b), let m): (5, 0, b + "\u{0}" + m)
        case .cooldown(.peer(let n), let m): (6, 0, n.hex + m)
        case .duel(let j): (7, 0, j.hex)
        case .judgeTask(let j): (8, 0, j.hex)
        }
    }

    public static func < (a: NodeTimer, b: NodeTimer) -> Bool { a.rank < b.rank }
}

/// Everything that can happen to a node.
public enum NodeInput: Hashable, Sendable {
    /// Start: sign the first member record, contact the seeds, arm the timers. Once.
    case start
    /// Leave the network gracefully (gossip `left`). Afterwards peer inputs are ignored.
    case leave
    /// A timer set by `setTimer` fired.
    case timer(NodeTimer)
    /// A peer message whose envelope verified; `from` is its authenticated sender and
    /// `fromAddress` the address it says it listens on.
    case peerMessage(PeerMessage, from: NodeID, fromAddress: String)
    /// A user request arrived (validated by the driver).
    case userRequest(RequestID, UserRequestSpec)
    /// The user went away (closed the connection) before the answer ended.
    case userGone(RequestID)
    /// A control event about a stream the machine opened.
    case stream(StreamID, StreamEvent)
    /// A local backend's health and, when the engine reports it, KV-cache usage in [0, 1].
    case backendHealth(backend: String, healthy: Bool, kvCacheUsage: Double?)
    /// Writing a candidate event (`persistEvents`) found a different stored event at the
    /// same (author, authorSeq): `stored` was there, `written` is the new one. The machine
    /// checks both and, if genuine, proves and gossips the equivocation.
    case storedConflict(stored: LedgerEvent, written: LedgerEvent)
    /// A judge task (`runJudgement`) ended: the preference of the call that showed the
    /// duel's first answer as A, and of the call that showed it as B. nil: the judge could
    /// not judge (no backend, an error) and abstains.
    case judgement(job: JobID, original: PairwisePreference?, swapped: PairwisePreference?)
}

/// Who reads a local inference's chunks.
public enum InferenceOwner: Hashable, Sendable {
    /// This node's user: the driver holds the chunks until `respond(.commit)`.
    case user(RequestID)
    /// The requester of an accepted job: the driver streams the chunks over the offer's
    /// connection as they come.
    case peer(job: JobID, requester: NodeID)
}

/// What the user's response must do now.
public enum UserResponse: Hashable, Sendable {
    /// First content arrived on `stream`: commit the HTTP status and relay that stream to
    /// the user from its first chunk. `executor` is the peer that runs it (nil: this node).
    case commit(stream: StreamID, executor: NodeID?)
    /// The committed stream finished: end the response cleanly (usage, then `[DONE]`).
    case complete(stream: StreamID)
    /// Nothing was committed: answer with this error (a real HTTP status).
    case reject(RequestFailure)
    /// After the commit: end the stream with an in-stream error event, without `[DONE]`.
    case abort(RequestFailure)
}

/// Why a request failed, for the user's error. The driver renders it (status, message,
/// Retry-After); `.stream` points at the attempt whose own error the driver recorded.
public enum RequestFailure: Hashable, Sendable {
    /// No backend here and no peer serves the model (404).
    case modelNotFound(model: String)
    /// Only peers serve the model, and this request may not be offloaded (404).
    case offloadForbidden(model: String)
    /// A node without backends: no alive peer serves the model right now (503, retryable).
    case noPeerServes(model: String)
    /// This node cannot pay for a job (503): spendable balance and price.
    case cannotPay(balance: Credits, price: Credits)
    /// Every local backend for the model is at its admission limit and offloading is not
    /// possible (503 + Retry-After).
    case overloaded(model: String)
    /// The local backends for the model are down and offloading is not possible (503).
    case backendUnavailable(model: String)
    /// Every local backend for the model is cooling down for it after the engine answered
    /// `status` (429 or 503), and offloading is not possible: the same status, with the
    /// cooldown left as Retry-After.
    case throttled(model: String, status: Int, retryAfter: Duration)
    /// The pending queue is full (503 + Retry-After).
    case queueFull
    /// This node is not running: starting, or shutting down (503 + Retry-After).
    case shuttingDown
    /// No executor took the request before its placement deadline (503 + Retry-After).
    case noCapacity(model: String)
    /// The attempt on `stream` failed with `failure` and no failover was possible.
    case stream(StreamID, RelayFailure)
    /// The request's deadline passed (504).
    case deadlineExceeded
}

/// One local inference to start.
public struct InferenceJob: Hashable, Sendable {
    /// The local backend's configured name.
    public var backend: String
    /// The user-facing model name.
    public var model: String
    public var owner: InferenceOwner

    public init(backend: String, model: String, owner: InferenceOwner) {
        self.backend = backend
        self.model = model
        self.owner = owner
    }
}

/// What the driver must do, in the order given. `persist…` directives come before anything
/// that depends on them: the driver runs them synchronously and, if one fails, skips the
/// peer sends that follow it in the same batch.
public enum NodeDirective: Hashable, Sendable {
    /// Send a one-way peer message (best effort). `to` is nil only for a seed whose key is
    /// not known yet. An `offerAnswer` goes back over its offer's connection.
    case send(PeerMessage, to: NodeID?, address: String)
    /// Send a ledger sync message after appending to its `events` the stored events of
    /// `fill`, range by range in order (the chains live in the driver's store, not in the
    /// machine). A range the store holds only in part is sent as far as it is contiguous;
    /// where it holds two events at one slot (an equivocation), both.
    case sendLedgerSync(LedgerSyncMessage, fill: [LedgerRange], to: NodeID, address: String)
    /// Arm (or re-arm) a timer.
    case setTimer(NodeTimer, at: Instant)
    /// Disarm a timer (its purpose ended).
    case cancelTimer(NodeTimer)
    /// Write these ledger events durably (idempotent by id). When the store already holds
    /// a different event at one's (author, authorSeq), report it as `.storedConflict`.
    case persistEvents([LedgerEvent])
    /// Write durably that job sequence numbers up to this value may be in use, so that a
    /// restart never reuses one.
    case persistJobSequence(UInt64)
    /// Start a request on a local backend; report its events as `.stream(id, …)`.
    case runInference(StreamID, InferenceJob)
    /// Open a connection to an executor and send `offer`, with the prompt of `request`.
    /// Its answer arrives as `.peerMessage(.offerAnswer)`, then its answer stream's events
    /// as `.stream(id, …)`; a refused or broken connection as `.stream(id, .failed)`.
    case openOffer(StreamID, to: NodeID, address: String, OfferMessage, request: RequestID)
    /// Stop a stream: cancel the engine request or close the peer connection. Idempotent.
    case cancelStream(StreamID)
    /// Drive the user's response.
    case respond(RequestID, UserResponse)
    /// Keep this stream's answer text for the duel of `job` (bounded): relayed to the user
    /// or not, and if the user does not read it, read it to its end anyway.
    case collectAnswer(StreamID, job: JobID)
    /// Read this collected stream to its end though no user reads it (the duel copy that
    /// lost the first-content race, or the one the user did not get); report `.finished`
    /// or `.failed` as usual. The driver keeps it past the end of its user's request.
    case drainStream(StreamID)
    /// Send each judge (`NodeID` → address) a judge request for `spec`, with the prompt and
    /// the two answers collected for the duel.
    case requestJudgements(DuelPairSpec, judges: [NodeID: String])
    /// Forget the prompt and answers kept for the duel of `job`.
    case dropAnswers(job: JobID)
    /// Judge the pair of `spec` (its texts came with the judge request) in both orders on
    /// this node's judge; report `.judgement`.
    case runJudgement(DuelPairSpec)
    /// Something happened that operators see in logs and metrics; nothing to execute.
    case notify(NodeEvent)
}

/// Which side of an offer.
public enum OfferRole: String, Hashable, Sendable {
    case requester, executor
}

/// How one offer, or one offer round, went.
public enum OfferOutcome: Hashable, Sendable {
    case accepted
    case rejected(OfferRejectionReason)
    case timedOut
    case unreachable
    /// The round found no executor (requester side).
    case fallback(OfferFallbackReason)
    /// A target failed before the first byte and the request goes elsewhere.
    case failover
}

/// What operators see: logs and metrics. Purely informational.
public enum NodeEvent: Hashable, Sendable {
    /// A membership notification (memberUp, memberDown, rejected record, …).
    case membership(MembershipDirective)
    case offer(OfferRole, OfferOutcome)
    /// A ledger event a peer sent was refused.
    case ledgerEventRejected(EventID, LedgerRejection)
    /// An author was proven to equivocate.
    case equivocation(author: NodeID, authorSeq: UInt64)
    /// This executor recorded a job receipt (it is paid).
    case receiptRecorded(job: JobID, requester: NodeID)
    /// A receipt could not be signed (e.g. the authorization expired before delivery).
    case receiptRefused(job: JobID, reason: String)
    /// A peer message was refused for its content (too large, from this node itself).
    case peerMessageRefused(PeerMessageKind, from: NodeID, reason: String)
    /// A request was answered or failed.
    case requestEnded(RequestID, failure: RequestFailure?)
    /// A backend or peer answered `status` (429/503) for `model`: no new request for the
    /// model goes to it until `until`.
    case coolingDown(RelayTarget, model: String, status: Int, until: Instant)
    /// A duel on this requester began, was settled (the panel's majority, nil: none) or
    /// ended without a settlement.
    case duelStarted(job: JobID, first: NodeID, second: NodeID)
    /// The job was drawn for a duel but runs single.
    case duelSkipped(job: JobID, reason: DuelSkipReason)
    case duelSettled(job: JobID, majority: DuelChoice?, verdicts: Int)
    case duelAbandoned(job: JobID, reason: DuelAbandonReason)
    /// This judge sent its verdict, or declined a judge request.
    case verdictSent(job: JobID, choice: DuelChoice)
    case judgeRequestDeclined(job: JobID, reason: JudgeDuty.Refusal)
}
