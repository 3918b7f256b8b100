import AsyncHTTPClient
import WWWAPI
import WWWCore

/// A model as one backend serves it: the user-facing descriptor plus the engine's own name.
public struct BackendModel: Hashable, Sendable {
    public var descriptor: ModelDescriptor
    /// The `model` value sent to the engine (defaults to the user-facing name).
    public var upstreamName: String

    public init(descriptor: ModelDescriptor, upstreamName: String? = nil) {
        self.descriptor = descriptor
        self.upstreamName = upstreamName ?? descriptor.name
    }
}

/// What `/ready` reports for one backend.
public struct BackendStatus: Hashable, Sendable, Codable {
    public var name: String
    public var kind: String
    public var healthy: Bool
    /// The engine's base URL (`http://host:port`), when known.
    public var url: String?
    /// The managed engine's process id, when the node supervises one.
    public var pid: Int32?
    public var load: LoadSnapshot
    /// Times the supervisor restarted the engine.
    public var restarts: Int
    /// The last error seen, for operators.
    public var lastError: String?

    public init(name: String, kind: String, healthy: Bool, url: String?, pid: Int32?, load: LoadSnapshot, restarts: Int, lastError: String?) {
        self.name = name
        self.kind = kind
        self.healthy = healthy
        self.url = url
        self.pid = pid
        self.load = load
        self.restarts = restarts
        self.lastError = lastError
    }

    enum CodingKeys: String, CodingKey { case name, kind, healthy, url, pid, load, restarts, lastError = "last_error" }

    /// Optional fields are written as explicit `null`, so clients see a stable shape.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(kind, forKey: .kind)
        try c.encode(healthy, forKey: .healthy)
        try c.encode(url, forKey: .url)
        try c.encode(pid, forKey: .pid)
        try c.encode(load, forKey: .load)
        try c.encode(restarts, forKey: .restarts)
        try c.encode(lastError, forKey: .lastError)
    }
}

/// Why a backend could not serve a request. Mapped to user-facing `APIError`s by the node.
public enum BackendError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The engine is down, starting, or unreachable. `retryAfter` in whole seconds.
    case unavailable(String, retryAfter: Int)
    /// The engine answered 429/503 (or is at capacity).
    case overloaded(String, retryAfter: Int)
    /// No response head or no chunk within the configured timeout.
    case timeout(String)
    /// The engine rejected the request with a 4xx: the user's fault, passed on as is.
    case rejected(status: Int, message: String)
    /// The engine failed (5xx, malformed stream, connection lost).
    case failed(String)
    /// The stream ended without a finish reason and without `[DONE]` (§6a).
    case truncated
    /// The user went away; the upstream request was cancelled.
    case cancelled

    public var description: String {
        switch self {
        case .unavailable(let m, let r): return "backend unavailable (retry after \(r)s): \(m)"
        case .overloaded(let m, let r): return "backend overloaded (retry after \(r)s): \(m)"
        case .timeout(let m): return "upstream timeout: \(m)"
        case .rejected(let s, let m): return "upstream rejected the request (\(s)): \(m)"
        case .failed(let m): return "upstream failed: \(m)"
        case .truncated: return "upstream stream ended without a finish reason"
        case .cancelled: return "request cancelled"
        }
    }

    /// True when the request may be retried elsewhere (nothing reached the user yet).
    public var isRetryable: Bool {
        switch self {
        case .unavailable, .overloaded, .timeout, .failed, .truncated: return true
        case .rejected, .cancelled: return false
        }
    }

    /// The OpenAI-shaped error the user sees.
    public var apiError: APIError {
        switch self {
        case .unavailable(let m, let r): return .unavailable("The backend is unavailable: \(m)", retryAfter: r)
        case .overloaded(let m, let r): return .overloaded("The backend is overloaded: \(m)", retryAfter: r)
        case .timeout(let m): return .upstreamTimeout("The backend did not answer in time: \(m)")
        case .rejected(let s, let m):
            return APIError(status: s, message: m, type: "invalid_request_error", code: "upstream_rejected")
        case .failed(let m): return .upstream("The backend failed: \(m)")
        case .truncated: return .upstream("The backend's stream ended before the answer was complete.")
        case .cancelled: return APIError(status: 499, message: "Request cancelled.", type: "invalid_request_error", code: "cancelled")
        }
    }
}


/// An inference engine a node drives (DESIGN.md §1 "backend").
public protocol Backend: Sendable {
    /// Operator-chosen name, unique within a node.
    var name: String { get }
    /// "openai" or "llamacpp".
    var kind: String { get }
    /// The models this backend serves.
    var models: [BackendModel] { get }
    /// Concurrent requests the engine runs at once (its slots / max batch).
    var capacity: Int { get }

    /// Starts a chat completion on the engine. Returns once the engine accepted the
    /// request (response head received); retries connection failures before that.
    /// - Throws: `BackendError`.
    func chat(_ request: ChatCompletionRequest, model: BackendModel) async throws -> ChunkStream

    /// Health, URL, pid and load for `/ready` and scheduling.
    func status() async -> BackendStatus

    /// A cheap health check for the node's periodic probe (no load scraping): the
    /// engine is up and answers. Defaults to `status().healthy`.
    func isHealthy() async -> Bool
}

extension Backend {
    public func isHealthy() async -> Bool { await status().healthy }
}
