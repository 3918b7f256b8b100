import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import WWWAPI
import WWWBackends
import WWWCore

/// Renders every error as OpenAI's `{"error":{…}}` with the right status, and counts it.
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: NodeMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let e = Self.map(error, request: request)
            metrics.error(type: e.metricType)
            metrics.request(endpoint: Self.endpoint(request.uri.path), status: e.status)
            return Self.response(e)
        }
    }

    static func endpoint(_ path: String) -> String {
        switch path {
        case "/v1/chat/completions": return "chat"
        case "/v1/models": return "models"
        case "/p2p/v1/offer": return "offer"
        default: return "other"
        }
    }

    static func map(_ error: any Error, request: Request) -> APIError {
        if let e = error as? APIError { return e }
        if let e = error as? BackendError { return e.apiError }
        if let e = error as? HTTPError {
            switch e.status.code {
            case 404: return .notFound(request.uri.path)
            case 405: return .methodNotAllowed(request.method.rawValue, request.uri.path)
            case 413: return .bodyTooLarge(limit: 0)
            default: return APIError(status: e.status.code, message: e.body ?? e.status.reasonPhrase, type: e.status.code >= 500 ? "server_error" : "invalid_request_error")
            }
        }
        return .internal("\(error)")
    }

    static func response(_ e: APIError) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let r = e.retryAfter { headers[.retryAfter] = String(r) }
        return Response(status: .init(code: e.status), headers: headers, body: .init(byteBuffer: ByteBuffer(data: e.jsonData())))
    }
}

/// Reading request bodies with a limit.
extension NodeHTTP {
    /// Reads a request body of at most `limit` bytes (Content-Length or chunked). A larger
    /// body is still read, and thrown away, up to `drainLimit(limit)` bytes before the 413 is
    /// answered: clients that write their whole body before reading the answer (Python's
    /// urllib and requests, often with `Connection: close`) get the 413 instead of a broken
    /// pipe or a stall. A body past the drain limit is answered at once, and `channel` (the
    /// client's connection) is closed a second later, so that a client still writing is not
    /// left blocked until the idle timeout.
    ///
    /// With `channel` and `within`, the whole body must arrive within that time: a client
    /// that trickles it (slowloris) has its connection closed then, instead of holding a
    /// request slot — or one of the 64 peer-message slots — for ever.
    ///
    /// - Throws: `APIError.bodyTooLarge` (413); `APIError.invalidRequest` (400,
    ///   `invalid_body`) for a malformed or cut body (e.g. bad chunked encoding).
    static func readBody(_ request: Request, limit: Int, channel: (any Channel)? = nil, within: TimeAmount? = nil) async throws -> ByteBuffer {
        // Armed only once a body turns out not to have come whole with its first part (a
        // connection that sends nothing at all is Hummingbird's idle timeout's): scheduling
        // on the event loop from here costs a wake-up, which every request would pay.
        var watchdog: Scheduled<Void>?
        defer { watchdog?.cancel() }
        let tooLarge = { (drained: Bool) -> APIError in
            if !drained, let channel {
                channel.eventLoop.scheduleTask(in: .seconds(1)) { channel.close(promise: nil) }
            }
            return APIError.bodyTooLarge(limit: limit)
        }
        let declared = request.headers[.contentLength].flatMap { Int($0) }
        if let declared, declared > drainLimit(limit) { throw tooLarge(false) }
        var body = ByteBuffer()
        var seen = 0
        do {
            for try await part in request.body {
                seen += part.readableBytes
                if watchdog == nil, let within, let channel, declared.map({ seen < $0 }) ?? true {
                    watchdog = channel.eventLoop.scheduleTask(in: within) { channel.close(promise: nil) }
                }
                if seen <= limit { body.writeImmutableBuffer(part) }
                if seen > drainLimit(limit) { break }
            }
        } catch {
            // Past the limit, the 413 is the answer whatever happened next.
            if seen > limit { throw tooLarge(true) }
            throw APIError.invalidRequest("The request body could not be read: \(error)", code: "invalid_body")
        }
        guard seen <= limit else { throw tooLarge(seen <= drainLimit(limit)) }
        return body
    }

    /// The most a too-large body is read (and discarded) before its 413: 16 × the limit,
    /// at least 16 MiB.
    static func drainLimit(_ limit: Int) -> Int { max(16 << 20, limit > Int.max / 16 ? Int.max : limit * 16) }
}

/// Checks `Authorization: Bearer <key>` on the user API when keys are configured.
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let keys: [String: NodeConfig.APIKey]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard !keys.isEmpty else { return try await next(request, context) }
        guard let auth = request.headers[.authorization] else {
            await Self.discardBody(request)
            throw APIError.unauthorized("You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.")
        }
        let prefix = "Bearer "
        guard auth.hasPrefix(prefix), keys[String(auth.dropFirst(prefix.count)).trimmingCharacters(in: .whitespaces)] != nil else {
            await Self.discardBody(request)
            throw APIError.unauthorized("Incorrect API key provided.")
        }
        return try await next(request, context)
    }

    /// Reads and drops up to 16 MiB of a refused request's body, so that clients that write
    /// their whole body before reading (urllib, requests) get to read the 401.
    static func discardBody(_ request: Request) async {
        var seen = 0
        do {
            for try await part in request.body {
                seen += part.readableBytes
                if seen > 16 << 20 { break }
            }
        } catch {}
    }
}

/// The node's HTTP surface: the OpenAI user API, health, readiness and metrics.
public struct NodeHTTP: Sendable {
    let config: NodeConfig
    let pool: BackendPool
    let metrics: NodeMetrics
    let nodeName: String
    let logger: Logger
    let runtime: NodeRuntime
    let started = Int64(Date().timeIntervalSince1970)

    public init(config: NodeConfig, pool: BackendPool, metrics: NodeMetrics, nodeName: String, logger: Logger, runtime: NodeRuntime) {
        self.config = config
        self.pool = pool
        self.metrics = metrics
        self.nodeName = nodeName
        self.logger = logger
        self.runtime = runtime
    }

    public func router() -> Router<NodeRequestContext> {
        let router = Router(context: NodeRequestContext.self)
        router.add(middleware: OpenAIErrorMiddleware(metrics: metrics))
        router.get("/health") { _, _ in try Self.json(["status": "ok"]) }
        router.get("/ready") { _, _ in try await self.ready() }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(bytes: self.metrics.render())))
        }
        let keys = Dictionary(config.node.apiKeys.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        let v1 = router.group("/v1").add(middleware: APIKeyMiddleware(keys: keys))
        v1.get("/models") { _, _ in try await self.models() }
        v1.post("/chat/completions") { request, context in try await self.chat(request, channel: context.channel) }
        v1.get("/chat/completions") { request, _ -> Response in
            var r = OpenAIErrorMiddleware<NodeRequestContext>.response(APIError.methodNotAllowed(request.method.rawValue, request.uri.path))
            r.headers[.allow] = "POST"
            return r
        }
        if let peer = runtime.peer { PeerRoutes(http: self, runtime: runtime, peer: peer).add(to: router) }
        return router
    }

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try JSONEncoder.openAI.encode(value)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(data: data)))
    }

    func models() async throws -> Response {
        var entries = pool.models.map { ModelEntry(id: $0.name, created: started, ownedBy: nodeName) }
        if runtime.peer != nil {
            let local = Set(entries.map(\.id))
            entries += runtime.networkModels().filter { !local.contains($0.name) }
                .map { ModelEntry(id: $0.name, created: started, ownedBy: "wwwserve-network") }
        }
        let list = ModelList(data: entries)
        metrics.request(endpoint: "models", status: 200)
        return try Self.json(list)
    }

    struct Readiness: Encodable {
        let status: String
        let node: String
        let backends: [BackendStatus]
        /// Alive peers that serve at least one model (network nodes only).
        let servingPeers: Int?

        enum CodingKeys: String, CodingKey { case status, node, backends, servingPeers = "serving_peers" }
    }

    /// Ready when a local backend is healthy or, on a network node, when an alive peer
    /// serves a model (a pure requester is ready as soon as it can offload).
    func ready() async throws -> Response {
        let statuses = await withTaskGroup(of: (Int, BackendStatus).self) { group in
            for (i, e) in pool.entries.enumerated() {
                group.addTask { (i, await e.backend.status()) }
            }
            var out: [(Int, BackendStatus)] = []
            for await s in group { out.append(s) }
            return out.sorted { $0.0 < $1.0 }.map(\.1)
        }
        for s in statuses { runtime.noteHealth(s) }
        let servingPeers = runtime.peer == nil ? nil : runtime.servingPeers()
        let ok = statuses.contains { $0.healthy } || (servingPeers ?? 0) > 0
        return try Self.json(Readiness(status: ok ? "ready" : "not_ready", node: nodeName, backends: statuses, servingPeers: servingPeers),
                             status: ok ? .ok : .serviceUnavailable)
    }

    func chat(_ request: Request, channel: (any Channel)? = nil) async throws -> Response {
        let allowOffload = try allowOffload(request)
        let bytes = try await Self.readBody(request, limit: config.node.maxBodyBytes, channel: channel,
                                            within: .milliseconds(Int64(config.node.idleTimeoutS * 1000)))
        let chat = try ChatCompletionRequest.parse(Data(buffer: bytes))
        // The connection's watch tells the request when its client goes away (streaming or
        // not, before or after the first byte), and the engine or peer request is cancelled.
        do {
            return try await runtime.chat(chat, allowOffload: allowOffload, nodeName: nodeName, channel: channel)
        } catch is CancellationError {
            metrics.upstreamCancelled(backend: "any")
            throw APIError(status: 499, message: "The client closed the connection.", type: "invalid_request_error", code: "client_closed")
        }
    }

    /// Offloading is forbidden by the request header `X-WWWServe-Allow-Offload: false` (or
    /// `0`, `no`) or by the API key's `allow_offload: false` (DESIGN.md §3: prompts travel to
    /// executors). It is a privacy control, so it never fails open: a value other than
    /// true/false, 1/0, yes/no is a 400.
    func allowOffload(_ request: Request) throws -> Bool {
        if let h = request.headers[HTTPField.Name("X-WWWServe-Allow-Offload")!] {
            switch h.trimmingCharacters(in: .whitespaces).lowercased() {
            case "false", "0", "no": return false
            case "true", "1", "yes": break
            default:
                throw APIError.invalidRequest("X-WWWServe-Allow-Offload must be true or false, got '\(h.prefix(32))'",
                                              param: "X-WWWServe-Allow-Offload", code: "invalid_header")
            }
        }
        if let auth = request.headers[.authorization], auth.hasPrefix("Bearer ") {
            let key = String(auth.dropFirst(7)).trimmingCharacters(in: .whitespaces)
            if let k = config.node.apiKeys.first(where: { $0.key == key }) { return k.allowOffload }
        }
        return true
    }
}
