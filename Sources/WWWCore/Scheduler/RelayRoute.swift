/// How an executor's relay failed (DESIGN.md §6.4, §6a), as the requester's shell saw it.
public enum RelayFailure: Hashable, Sendable, CustomStringConvertible {
    /// The connection to the executor broke (refused, reset, closed early).
    case connectionLost
    /// The executor answered with this HTTP status before any content.
    case httpStatus(Int)
    /// No chunk arrived within the idle timeout.
    case idleTimeout
    /// The stream ended without a finish_reason and without `[DONE]`.
    case truncated
    /// The request's overall deadline passed.
    case deadlineExceeded
    /// Any other executor-side error, with its message.
    case executorError(String)

    /// Whether trying another executor can help (§6a: 5xx, 429 and connection loss are; a
    /// stalled or truncated stream and executor errors are too). Other 4xx statuses say the
    /// request itself is wrong; a passed deadline leaves no time.
    public var warrantsFailover: Bool {
        switch self {
        case .connectionLost, .idleTimeout, .truncated, .executorError: return true
        case .httpStatus(let s): return s == 429 || (500...599).contains(s)
        case .deadlineExceeded: return false
        }
    }

    public var description: String {
        switch self {
        case .connectionLost: return "connection to the executor was lost"
        case .httpStatus(let s): return "the executor answered HTTP \(s)"
        case .idleTimeout: return "the executor stopped sending"
        case .truncated: return "the executor's stream ended without finishing"
        case .deadlineExceeded: return "the request's deadline passed"
        case .executorError(let m): return "executor error: \(m)"
        }
    }
}

/// Step 4 of the request workflow, requester side (DESIGN.md §6.4): which executor a job is
/// relayed from, and what to do when it fails.
///
/// The rule (§6a): nothing is committed to the user before the first content chunk. An
/// executor failing before that is retried elsewhere (bounded by `maxFailovers` and the
/// deadline) — the user never sees it; once a byte has reached the user the stream ends with
/// an in-stream error event.
///
/// ```
/// idle ─executing─▶ awaitingFirstByte ─firstByte─▶ streaming ─finished─▶ completed
///                     │ failed (retryable, budget left)  │ failed
///                     ▼                                  ▼
///                  retrying ─executing─▶ …             failed (failStream)
///                     │ noExecutorAvailable / failed otherwise
///                     ▼
///                  failed (failRequest)
/// ```
public struct RelayRoute: Hashable, Sendable {
    public enum State: Hashable, Sendable {
        /// No executor yet.
        case idle
        /// `executor` runs the job; nothing has reached the user.
        case awaitingFirstByte(executor: NodeID)
        /// Content from `executor` has reached the user.
        case streaming(executor: NodeID)
        /// The last executor failed before the first byte; the shell is finding another.
        case retrying
        /// The answer was delivered (terminal).
        case completed
        /// The request failed (terminal).
        case failed(RelayFailure)
    }

    /// What the shell must do after a failure.
    public enum Action: Hashable, Sendable {
        /// Choose another executor (step 2 with `excluded: Set(excluding)`, then an
        /// `OfferRound`) and report it with `executing(on:)`. `failover` counts from 1.
        case retryElsewhere(excluding: [NodeID], failover: Int)
        /// Answer the user with a real HTTP error (nothing was committed yet).
        case failRequest(RelayFailure)
        /// Send an in-stream `data: {"error":…}` event, then end the stream.
        case failStream(RelayFailure)
        /// Stale input (another node, or a terminal route): nothing to do.
        case ignore
    }

    /// Most failovers (≥ 0), usually `policy.maxFailovers`.
    public let maxFailovers: Int
    /// No failover starts at or after this instant.
    public let deadline: Instant
    /// The current state.
    public private(set) var state: State = .idle
    /// Every executor that has run this job, in order (bounded by `maxFailovers + 1`).
    public private(set) var nodesOnRoute: [NodeID] = []
    /// Failovers used so far.
    public private(set) var failovers = 0
    private var lastFailure: RelayFailure?

    public init(maxFailovers: Int, deadline: Instant) {
        precondition((0...SchedulingPolicy.maxFailoversLimit).contains(maxFailovers), "maxFailovers out of range")
        self.maxFailovers = maxFailovers
        self.deadline = deadline
    }

    public init(policy: SchedulingPolicy, deadline: Instant) {
        self.init(maxFailovers: policy.maxFailovers, deadline: deadline)
    }

    /// The shell started the job on `executor` (an `OfferRound` returned `.execute(on:)`).
    /// - Precondition: state is idle or retrying, and `executor` is not already on the route.
    public mutating func executing(on executor: NodeID) {
        precondition(state == .idle || state == .retrying, "executing(on:) needs an idle or retrying route")
        precondition(!nodesOnRoute.contains(executor), "an executor is tried once per route")
        nodesOnRoute.append(executor)
        assert(nodesOnRoute.count <= maxFailovers + 1)
        state = .awaitingFirstByte(executor: executor)
    }

    /// The first content chunk from `executor` is about to be written to the user: from now
    /// on failures end the stream. Returns false (and changes nothing) when `executor` is
    /// not the one awaited — the shell must drop that chunk.
    @discardableResult
    public mutating func firstByte(from executor: NodeID) -> Bool {
        guard case .awaitingFirstByte(let current) = state, current == executor else { return false }
        state = .streaming(executor: executor)
        return true
    }

    /// `executor` finished its answer cleanly.
    public mutating func finished(from executor: NodeID) {
        switch state {
        case .awaitingFirstByte(let current), .streaming(let current):
            if current == executor { state = .completed }
        default: break
        }
    }

    /// `executor` failed with `failure` at `now`.
    public mutating func executorFailed(_ executor: NodeID, failure: RelayFailure, now: Instant) -> Action {
        switch state {
        case .streaming(let current) where current == executor:
            state = .failed(failure)
            return .failStream(failure)
        case .awaitingFirstByte(let current) where current == executor:
            lastFailure = failure
            guard failure.warrantsFailover, failovers < maxFailovers, now < deadline else {
                let final: RelayFailure = (failure.warrantsFailover && now >= deadline) ? .deadlineExceeded : failure
                state = .failed(final)
                return .failRequest(final)
            }
            failovers += 1
            state = .retrying
            return .retryElsewhere(excluding: nodesOnRoute, failover: failovers)
        default:
            return .ignore
        }
    }

    /// While retrying, the shell found no executor (no candidate, or the `OfferRound` fell
    /// back): fail the request with the last executor's failure.
    public mutating func noExecutorAvailable() -> Action {
        guard state == .retrying else { return .ignore }
        let failure = lastFailure ?? .connectionLost
        state = .failed(failure)
        return .failRequest(failure)
    }
}
