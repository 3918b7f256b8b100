import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import WWWAPI
import WWWCore

/// Timeouts and retry limits for talking to an engine.
public struct UpstreamTimeouts: Sendable, Hashable {
    /// TCP connect timeout.
    public var connect: Duration
    /// Longest silence allowed between two reads (response head or body chunks).
    public var read: Duration
    /// Whole-request deadline, stream included.
    public var total: Duration
    /// Attempts before the first byte (connection refused/reset, 502/503 with no body).
    public var maxAttempts: Int

    public init(connect: Duration = .seconds(5), read: Duration = .seconds(60), total: Duration = .seconds(600), maxAttempts: Int = 2) {
        self.connect = connect
        self.read = read
        self.total = total
        self.maxAttempts = max(1, maxAttempts)
    }
}

/// Counts the node's in-flight requests per backend; the fallback load signal when the
/// engine exposes no metrics.
public final class InFlightCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    public init() {}
    public func increment() { lock.withLock { value += 1 } }
    public func decrement() { lock.withLock { value -= 1; assert(value >= 0, "in-flight count below zero") } }
    public var current: Int { lock.withLock { value } }
}

/// Any OpenAI-compatible engine (vLLM, SGLang, llama.cpp server, Ollama) reached over HTTP
/// with AsyncHTTPClient. Streams pass through chunk by chunk.
public final class OpenAIBackend: Backend, @unchecked Sendable {
    public let name: String
    public let kind: String
    public let models: [BackendModel]
    public let capacity: Int
    /// e.g. `http://127.0.0.1:8000` (no `/v1`); replaced by the supervisor on engine restart.
    private let baseURLLock = NSLock()
    private var _baseURL: String?
    private let apiKey: String?
    private let timeouts: UpstreamTimeouts
    private let client: HTTPClient
    private let logger: Logger
    public let inFlight = InFlightCounter()

    /// - Parameters:
    ///   - baseURL: the engine's root, with or without a trailing `/v1`.
    ///   - client: a shared client whose configuration carries the connect/read timeouts.
    public init(name: String, kind: String = "openai", baseURL: String?, apiKey: String?, models: [BackendModel],
                capacity: Int, timeouts: UpstreamTimeouts, client: HTTPClient, logger: Logger) {
        self.name = name
        self.kind = kind
        self._baseURL = baseURL.map(Self.normalize)
        self.apiKey = apiKey
        self.models = models
        self.capacity = max(1, capacity)
        self.timeouts = timeouts
        self.client = client
        self.logger = logger
    }

    static func normalize(_ url: String) -> String {
        var u = url
        while u.hasSuffix("/") { u.removeLast() }
        if u.hasSuffix("/v1") { u.removeLast(3) }
        return u
    }

    public var baseURL: String? {
        get { baseURLLock.withLock { _baseURL } }
        set { baseURLLock.withLock { _baseURL = newValue.map(Self.normalize) } }
    }

    // MARK: chat

    public func chat(_ request: ChatCompletionRequest, model: BackendModel) async throws -> ChunkStream {
        try await chat(request, model: model, cancellable: { _ in })
    }

    public func chat(_ request: ChatCompletionRequest, model: BackendModel,
                     cancellable: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void) async throws -> ChunkStream {
        guard let base = baseURL else { throw BackendError.unavailable("\(name) has no engine address yet", retryAfter: 2) }
        let body = try UpstreamChatBody(request, upstreamModel: model.upstreamName).data()
        let response = try await executeWithRetries(url: base + "/v1/chat/completions", body: body, cancellable: cancellable)
        return makeStream(response)
    }

    private func executeWithRetries(url: String, body: Data,
                                    cancellable: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void) async throws -> StreamingRequest {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try await executeOnce(url: url, body: body, cancellable: cancellable)
            } catch let error as BackendError where attempt < timeouts.maxAttempts && Self.retryBeforeFirstByte(error) {
                logger.debug("retrying upstream before first byte", metadata: ["backend": "\(name)", "error": "\(error)"])
                try await Task.sleep(for: .milliseconds(100 * attempt))
            }
        }
    }

    static func retryBeforeFirstByte(_ e: BackendError) -> Bool {
        if case .unavailable = e { return true }
        if case .failed = e { return true }
        return false
    }

    private func executeOnce(url: String, body: Data,
                             cancellable: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void) async throws -> StreamingRequest {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json")
        headers.add(name: "Accept", value: "text/event-stream")
        if let apiKey { headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        let (head, stream): (HTTPResponseHead, StreamingRequest)
        do {
            let request = try HTTPClient.Request(url: url, method: .POST, headers: headers, body: .bytes(body))
            (head, stream) = try await StreamingRequest.start(request, client: client,
                                                                deadline: .now() + .nanoseconds(timeouts.total.nanoseconds),
                                                                started: { s in cancellable { s.cancel() } })
        } catch {
            throw Self.map(error)
        }
        guard head.status == .ok else {
            var text = ""
            while text.utf8.count < 64 << 10, let part = try? await stream.next() { text += String(buffer: part) }
            stream.cancel()
            throw Self.statusError(status: Int(head.status.code), headers: head.headers, body: text)
        }
        return stream
    }

    /// Maps a non-200 engine response to a `BackendError`, reading at most 64 KiB of body.
    public static func statusError(_ response: HTTPClientResponse) async -> BackendError {
        let text = (try? await response.body.collect(upTo: 64 << 10)).map { String(buffer: $0) } ?? ""
        return statusError(status: Int(response.status.code), headers: response.headers, body: text)
    }

    /// 503 → overloaded (with its Retry-After), 408/504 → timeout, any other status keeps
    /// the engine's error as it was (`upstream`: message, type, code, param, Retry-After).
    public static func statusError(status: Int, headers: HTTPHeaders, body text: String) -> BackendError {
        let retryAfter = RetryAfter.seconds(retryAfter: headers.first(name: "Retry-After"),
                                            retryAfterMs: headers.first(name: "retry-after-ms"))
        let json = text.data(using: .utf8).flatMap { try? JSONDecoder().decode(JSONValue.self, from: $0) }
        let parsed = json.flatMap { UpstreamError.parse($0, status: status, retryAfter: retryAfter) }
        let message = parsed?.message ?? Self.upstreamMessage(text) ?? "HTTP \(status)"
        switch status {
        case 503: return .overloaded(message, retryAfter: retryAfter ?? 1)
        case 408, 504: return .timeout(message)
        default: return .upstream(parsed ?? UpstreamError(status: status, message: message, retryAfter: retryAfter))
        }
    }

    public static func upstreamMessage(_ body: String) -> String? {
        guard let data = body.data(using: .utf8),
              let v = try? JSONDecoder().decode(JSONValue.self, from: data),
              case .object(let o) = v else { return body.isEmpty ? nil : String(body.prefix(300)) }
        if case .object(let e)? = o["error"], case .string(let m)? = e["message"] { return m }
        if case .string(let m)? = o["error"] { return m }
        if case .string(let m)? = o["message"] { return m }
        return String(body.prefix(300))
    }

    public static func map(_ error: any Error) -> BackendError {
        if let e = error as? BackendError { return e }
        if error is CancellationError { return .cancelled }
        if let e = error as? HTTPClientError {
            switch e {
            case .readTimeout, .deadlineExceeded: return .timeout("\(e)")
            case .connectTimeout: return .unavailable("connect timeout", retryAfter: 2)
            case .cancelled: return .cancelled
            case .remoteConnectionClosed: return .failed("connection closed by the engine")
            default: return .failed("\(e)")
            }
        }
        if error is ChannelError { return .unavailable("\(error)", retryAfter: 2) }
        let text = "\(error)"
        if text.contains("refused") || text.contains("connect") { return .unavailable(text, retryAfter: 2) }
        return .failed(text)
    }

    /// Turns the response body into chunks, parsed lazily by the consumer (no producer
    /// task). `cancel` (or dropping the iterator at the end) stops the engine request.
    private func makeStream(_ request: StreamingRequest) -> ChunkStream {
        inFlight.increment()
        return ChunkStream.sse(request) { [inFlight] in inFlight.decrement() }
    }

    // MARK: status

    public func status() async -> BackendStatus {
        let base = baseURL
        var healthy = false
        var load = LoadSnapshot(running: inFlight.current, waiting: 0, capacity: capacity)
        var lastError: String?
        if let base {
            do {
                healthy = try await probeHealth(base)
                if healthy, let engineLoad = await probeLoad(base) { load = engineLoad }
            } catch {
                lastError = "\(error)"
            }
        }
        return BackendStatus(name: name, kind: kind, healthy: healthy, url: base, pid: nil, load: load, restarts: 0, lastError: lastError)
    }

    /// `GET /health` (or `/v1/models`) only; no `/metrics` scrape.
    public func isHealthy() async -> Bool {
        guard let base = baseURL else { return false }
        return (try? await probeHealth(base)) ?? false
    }

    /// `GET /health` (llama.cpp, vLLM, SGLang) falling back to `GET /v1/models` (Ollama, others).
    func probeHealth(_ base: String) async throws -> Bool {
        for path in ["/health", "/v1/models"] {
            var req = HTTPClientRequest(url: base + path)
            if let apiKey { req.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
            let resp = try await client.execute(req, timeout: .seconds(3), logger: logger)
            _ = try? await resp.body.collect(upTo: 1 << 20)
            if resp.status == .ok { return true }
            if resp.status == .serviceUnavailable { return false }   // llama.cpp: still loading
        }
        return false
    }

    func probeLoad(_ base: String) async -> LoadSnapshot? {
        var req = HTTPClientRequest(url: base + "/metrics")
        if let apiKey { req.headers.add(name: "Authorization", value: "Bearer \(apiKey)") }
        guard let resp = try? await client.execute(req, timeout: .seconds(2), logger: logger),
              resp.status == .ok,
              let buf = try? await resp.body.collect(upTo: 4 << 20),
              let l = EngineMetrics.load(from: EngineMetrics.parse(String(buffer: buf)), capacity: capacity)
        else { return nil }
        return LoadSnapshot(running: l.running, waiting: l.waiting, capacity: capacity, kvCacheUsage: l.kv)
    }
}
