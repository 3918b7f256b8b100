import AsyncHTTPClient
import Foundation
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
    /// The engine answered with an error — a non-200 status, or an in-band
    /// `data: {"error": …}` event — carried as the engine said it (status, message, type,
    /// code, param, Retry-After), so the user sees the engine's own error.
    case upstream(UpstreamError)

    public var description: String {
        switch self {
        case .unavailable(let m, let r): return "backend unavailable (retry after \(r)s): \(m)"
        case .overloaded(let m, let r): return "backend overloaded (retry after \(r)s): \(m)"
        case .timeout(let m): return "upstream timeout: \(m)"
        case .rejected(let s, let m): return "upstream rejected the request (\(s)): \(m)"
        case .failed(let m): return "upstream failed: \(m)"
        case .truncated: return "upstream stream ended without a finish reason"
        case .cancelled: return "request cancelled"
        case .upstream(let e): return "upstream error \(e.status): \(e.message)"
        }
    }

    /// True when the request may be retried elsewhere (nothing reached the user yet).
    public var isRetryable: Bool {
        switch self {
        case .unavailable, .overloaded, .timeout, .failed, .truncated: return true
        case .rejected, .cancelled: return false
        case .upstream(let e): return e.status == 429 || e.status >= 500
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
        case .upstream(let e): return e.apiError
        }
    }
}

/// An engine's error as it sent it (OpenAI error shape, HTTP status, Retry-After).
public struct UpstreamError: Hashable, Sendable {
    /// The engine's HTTP status, or the status an in-band error event named (`code` when
    /// numeric, else from its `type`).
    public var status: Int
    public var message: String
    public var type: String?
    public var code: String?
    public var param: String?
    /// Whole seconds, from `Retry-After` (seconds or HTTP-date) or `retry-after-ms`.
    public var retryAfter: Int?

    public init(status: Int, message: String, type: String? = nil, code: String? = nil, param: String? = nil, retryAfter: Int? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.retryAfter = retryAfter
    }

    /// What the user sees: a 4xx as the engine said it (param and code kept, 429 with its
    /// Retry-After); 503 as 503 + Retry-After; 504 as 504; any other 5xx as 502 with the
    /// engine's message.
    public var apiError: APIError {
        switch status {
        case 429:
            return APIError(status: 429, message: message, type: type ?? "rate_limit_error", param: param, code: code ?? "rate_limit_exceeded",
                            retryAfter: retryAfter ?? 1)
        case 400..<500:
            return APIError(status: status, message: message, type: type ?? "invalid_request_error", param: param, code: code ?? "upstream_rejected")
        case 503: return .overloaded("The backend is overloaded: \(message)", retryAfter: retryAfter ?? 1)
        case 504: return .upstreamTimeout("The backend did not answer in time: \(message)")
        default: return .upstream("The backend failed: \(message)")
        }
    }

    /// Parses an OpenAI-shaped error body (`{"error": {…}}`, `{"error": "…"}` or
    /// `{"message": …}`); nil when it is not one.
    public static func parse(_ json: JSONValue, status: Int?, retryAfter: Int?) -> UpstreamError? {
        guard case .object(let o) = json else { return nil }
        func string(_ v: JSONValue?) -> String? {
            switch v {
            case .string(let s)?: return s
            case .int(let n)?: return String(n)
            default: return nil
            }
        }
        var fields = o
        if case .object(let e)? = o["error"] { fields = e }
        else if case .string(let m)? = o["error"] { return UpstreamError(status: status ?? 502, message: m, retryAfter: retryAfter) }
        else if o["error"] == nil && status == nil { return nil }
        let type = string(fields["type"])
        let code = string(fields["code"])
        var s = status
        if s == nil, case .int(let n)? = fields["code"], (400...599).contains(n) { s = Int(n) }
        if s == nil {
            s = switch type {
            case "invalid_request_error"?: 400
            case "authentication_error"?: 401
            case "not_found_error"?: 404
            case "rate_limit_error"?, "rate_limit_exceeded"?: 429
            default: 502
            }
        }
        return UpstreamError(status: s!, message: string(fields["message"]) ?? "HTTP \(s!)", type: type,
                             code: (code.flatMap { Int($0) } != nil) ? nil : code, param: string(fields["param"]), retryAfter: retryAfter)
    }
}

/// `Retry-After` in all its forms (RFC 9110 §10.2.3: delay-seconds or HTTP-date) and the
/// `retry-after-ms` header some OpenAI-compatible servers send; whole seconds, 1 to
/// `maxSeconds` (an engine's or a peer's huge value is clamped, never trusted as is).
public enum RetryAfter {
    /// The longest wait passed on or honoured (the node's default `maxCooldown` too).
    public static let maxSeconds = 300

    public static func seconds(retryAfter: String?, retryAfterMs: String?, now: Date = Date()) -> Int? {
        if let ms = retryAfterMs.flatMap({ Double($0.trimmingCharacters(in: .whitespaces)) }), ms.isFinite, ms >= 0 {
            return clamp((ms / 1000).rounded(.up))
        }
        guard let v = retryAfter?.trimmingCharacters(in: .whitespaces), !v.isEmpty else { return nil }
        if let s = Double(v), s.isFinite, s >= 0 { return clamp(s.rounded(.up)) }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        for format in ["EEE, dd MMM yyyy HH:mm:ss zzz", "EEEE, dd-MMM-yy HH:mm:ss zzz", "EEE MMM d HH:mm:ss yyyy"] {
            f.dateFormat = format
            if let d = f.date(from: v) { return clamp(d.timeIntervalSince(now).rounded(.up)) }
        }
        return nil
    }

    /// 1…`maxSeconds`, for any finite or infinite double (no trapping conversion).
    static func clamp(_ seconds: Double) -> Int {
        guard seconds.isFinite else { return seconds > 0 ? maxSeconds : 1 }
        return Int(min(Double(maxSeconds), max(1, seconds)))
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

    /// `chat`, and as soon as the engine request is under way — before its response head,
    /// while the engine may still queue it or read the prompt — `cancellable` gets a
    /// function that stops it (called again for each retry). Defaults to plain `chat`
    /// (a backend that cannot be stopped before its head is cancelled by its task).
    func chat(_ request: ChatCompletionRequest, model: BackendModel,
              cancellable: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void) async throws -> ChunkStream

    /// Health, URL, pid and load for `/ready` and scheduling.
    func status() async -> BackendStatus

    /// A cheap health check for the node's periodic probe (no load scraping): the
    /// engine is up and answers. Defaults to `status().healthy`.
    func isHealthy() async -> Bool
}

extension Backend {
    public func isHealthy() async -> Bool { await status().healthy }

    public func chat(_ request: ChatCompletionRequest, model: BackendModel,
                     cancellable: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void) async throws -> ChunkStream {
        try await chat(request, model: model)
    }
}
