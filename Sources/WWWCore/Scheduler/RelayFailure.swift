/// How an executor's relay failed (DESIGN.md §6.4, §6a), as the requester's shell saw it.
public enum RelayFailure: Hashable, Sendable, CustomStringConvertible {
    /// The connection to the executor broke (refused, reset, closed early).
    case connectionLost
    /// The executor answered with this HTTP status before any content.
    case httpStatus(Int)
    /// The executor is rate limited (429) or overloaded (503) and said for how long, when
    /// it did (`Retry-After`, `retry-after-ms`): the target cools down that long (§6a).
    case throttled(status: Int, retryAfter: Duration?)
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
        case .connectionLost, .idleTimeout, .truncated, .executorError, .throttled: return true
        case .httpStatus(let s): return s == 429 || (500...599).contains(s)
        case .deadlineExceeded: return false
        }
    }

    public var description: String {
        switch self {
        case .connectionLost: return "connection to the executor was lost"
        case .httpStatus(let s): return "the executor answered HTTP \(s)"
        case .throttled(let s, let d): return "the executor answered HTTP \(s)" + (d.map { " (retry after \($0))" } ?? "")
        case .idleTimeout: return "the executor stopped sending"
        case .truncated: return "the executor's stream ended without finishing"
        case .deadlineExceeded: return "the request's deadline passed"
        case .executorError(let m): return "executor error: \(m)"
        }
    }
}
