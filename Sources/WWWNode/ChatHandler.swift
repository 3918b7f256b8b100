import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import WWWAPI
import WWWBackends
import WWWCore

/// Holds a non-Sendable value that is only ever used by one task at a time.
final class SequentialBox<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

/// Per-request bookkeeping that must run exactly once however the request ends: the
/// admission lease, the in-flight gauge, the duration and token metrics.
final class RequestScope: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    private let release: @Sendable () -> Void
    private let metrics: NodeMetrics
    let start: ContinuousClock.Instant
    let backendName: String

    init(backendName: String, release: @escaping @Sendable () -> Void, metrics: NodeMetrics, start: ContinuousClock.Instant = .now) {
        self.backendName = backendName
        self.release = release
        self.metrics = metrics
        self.start = start
        metrics.inFlight(backend: backendName, delta: 1)
    }

    func finish(status: Int, usage: Usage?) {
        let first = lock.withLock {
            let f = !done
            done = true
            return f
        }
        guard first else { return }
        release()
        metrics.inFlight(backend: backendName, delta: -1)
        // Errors (≥ 400) are thrown to `OpenAIErrorMiddleware`, which counts them.
        if status < 400 { metrics.request(endpoint: "chat", status: status) }
        metrics.requestDuration(.now - start, backend: backendName)
        if let usage { metrics.tokens(prompt: usage.promptTokens, completion: usage.completionTokens, backend: backendName) }
    }

    deinit { finish(status: 499, usage: nil) }
}

/// Where a request runs: on a local backend (a reserved slot) or on a peer.
enum Placement {
    case local(BackendPool.Lease)
    case remote(NetworkBackend, ChunkStream)
}

/// Runs a validated chat request — locally or offloaded (DESIGN.md §6) — and answers the
/// user, streaming or not, following the relay rules of §6a.
struct ChatHandler: Sendable {
    let pool: BackendPool
    let metrics: NodeMetrics
    let nodeName: String
    let logger: Logger
    var network: PeerNetwork? = nil
    var policy: SchedulingPolicy = SchedulingPolicy()
    var requestTimeout: Duration = .seconds(300)

    static let sseHeaders: HTTPFields = [
        .contentType: "text/event-stream",
        .cacheControl: "no-cache",
        HTTPField.Name("X-Accel-Buffering")!: "no",
    ]

    /// - Parameter allowOffload: false when the user (header) or the operator (API key)
    ///   forbids the prompt to leave this node.
    func handle(_ request: ChatCompletionRequest, allowOffload: Bool = true) async throws -> Response {
        let start = ContinuousClock.now
        let placement = try await place(request, allowOffload: allowOffload)
        let id = "chatcmpl-" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24)
        let created = Int64(Date().timeIntervalSince1970)
        let scope: RequestScope
        let stream: ChunkStream
        let remote: NetworkBackend?
        switch placement {
        case .local(let lease):
            scope = RequestScope(backendName: lease.backend.name, release: { lease.release() }, metrics: metrics, start: start)
            remote = nil
            do {
                stream = try await lease.backend.chat(request, model: lease.model)
            } catch {
                let apiError = Self.apiError(error)
                scope.finish(status: apiError.status, usage: nil)
                throw apiError
            }
        case .remote(let backend, let s):
            scope = RequestScope(backendName: "network", release: {}, metrics: metrics, start: start)
            remote = backend
            stream = s
        }
        do {
            let box = SequentialBox(stream.makeAsyncIterator())
            let head = try await readUntilCommitted(box, scope: scope)
            let rewriter = ChunkRewriter(id: id, created: created, model: request.model, includeUsage: request.includeUsage)
            let headers = responseHeaders(executor: remote?.executor)
            if request.stream {
                return streamingResponse(head: head, rest: box, rewriter: rewriter, scope: scope, headers: headers)
            }
            return try await completeResponse(head: head, rest: box, rewriter: rewriter, scope: scope, headers: headers)
        } catch {
            let apiError = Self.apiError(error)
            scope.finish(status: apiError.status, usage: nil)
            throw apiError
        }
    }

    /// Step 1 of §6 with bounded retries: local slot, offload, queue, or a clear error.
    func place(_ request: ChatCompletionRequest, allowOffload: Bool) async throws -> Placement {
        guard let network else { return .local(try admitLocal(request.model)) }
        let model = request.model
        let remoteServes = await network.peersServe(model)
        if !pool.serves(model) && !remoteServes {
            // A pure requester cannot tell an unknown model from one whose providers are
            // all away right now: that is a retryable 503, not a 404.
            guard pool.entries.isEmpty else { throw APIError.modelNotFound(model) }
            throw APIError.unavailable("No peer currently serves '\(model)'; retry when providers are back.", retryAfter: 2)
        }
        var lastError: APIError?
        for retry in 0...(policy.maxRetries + 1) {
            let decision = await network.decide(model: model, localLoad: pool.localLoad(model: model),
                                                pinnedLocal: !allowOffload, retryCount: retry)
            switch decision {
            case .runLocal, .queueLocal:
                return .local(try admitLocal(model))
            case .offload:
                guard remoteServes else { continue }
                let backend = NetworkBackend(network: network, policy: policy, requestTimeout: requestTimeout, metrics: metrics, logger: logger)
                do {
                    return .remote(backend, try await backend.startReserved(request))
                } catch {
                    lastError = Self.apiError(error)
                    // No executor accepted: back off (retryDelay × 2^retry) before step 1 again.
                    try await Task.sleep(for: policy.retryDelay * (1 << min(retry, 6)))
                }
            case .retryAfter(let d):
                try await Task.sleep(for: d)
            case .reject(let r):
                if !allowOffload && !pool.serves(model) {
                    throw APIError(status: 404, message: "The model '\(model)' is not served on this node, and this request may not be offloaded to peers (X-WWWServe-Allow-Offload: false or the API key's allow_offload).", type: "invalid_request_error", param: "model", code: "model_not_found")
                }
                throw lastError ?? APIError.unavailable("No executor is available for '\(model)': \(r)", retryAfter: 1)
            }
        }
        throw lastError ?? APIError.unavailable("No executor is available for '\(model)'.", retryAfter: 1)
    }

    func admitLocal(_ model: String) throws -> BackendPool.Lease {
        switch pool.admit(model: model) {
        case .success(let l): return l
        case .failure(.unknownModel): throw APIError.modelNotFound(model)
        case .failure(.overloaded):
            throw APIError.overloaded("All backends serving '\(model)' are at capacity; retry shortly.", retryAfter: 1)
        }
    }

    static func apiError(_ error: any Error) -> APIError {
        if let e = error as? APIError { return e }
        if let e = error as? BackendError { return e.apiError }
        return .internal("\(error)")
    }

    /// Reads chunks until one carries content or a finish reason: only then is the HTTP
    /// status committed (§6a). Returns the chunks read so far.
    private func readUntilCommitted(_ box: SequentialBox<ChunkStream.AsyncIterator>, scope: RequestScope) async throws -> [ChatCompletionChunk] {
        var head: [ChatCompletionChunk] = []
        while let chunk = try await box.value.next() {
            head.append(chunk)
            if chunk.carriesContentOrFinish {
                metrics.ttft(.now - scope.start, backend: scope.backendName)
                return head
            }
            precondition(head.count < 10_000, "engine sent 10,000 chunks without content")
        }
        throw BackendError.truncated
    }

    private func completeResponse(head: [ChatCompletionChunk], rest box: SequentialBox<ChunkStream.AsyncIterator>,
                                  rewriter: ChunkRewriter, scope: RequestScope, headers: HTTPFields) async throws -> Response {
        var acc = StreamAccumulator()
        head.forEach { acc.add($0) }
        while let chunk = try await box.value.next() { acc.add(chunk) }
        let body = acc.completion(id: rewriter.id, created: rewriter.created, model: rewriter.model)
        scope.finish(status: 200, usage: acc.usage)
        let data = try JSONEncoder.openAI.encode(body)
        var h = headers
        h[.contentType] = "application/json"
        return Response(status: .ok, headers: h, body: .init(byteBuffer: ByteBuffer(data: data)))
    }

    /// `X-WWWServe-Node` (this node), `X-WWWServe-Executor` (who ran it) and
    /// `X-WWWServe-Offloaded`.
    private func responseHeaders(executor: NodeID?) -> HTTPFields {
        var h = HTTPFields()
        h[HTTPField.Name("X-WWWServe-Node")!] = nodeName
        h[HTTPField.Name("X-WWWServe-Executor")!] = executor?.hex ?? nodeName
        h[HTTPField.Name("X-WWWServe-Offloaded")!] = executor == nil ? "false" : "true"
        return h
    }

    private func streamingResponse(head: [ChatCompletionChunk], rest box: SequentialBox<ChunkStream.AsyncIterator>,
                                   rewriter: ChunkRewriter, scope: RequestScope, headers: HTTPFields) -> Response {
        let logger = self.logger
        let metrics = self.metrics
        var h = headers
        for f in Self.sseHeaders { h[f.name] = f.value }
        return Response(status: .ok, headers: h, body: .init { writer in
            var acc = StreamAccumulator()
            var clientGone = false
            do {
                for chunk in head {
                    acc.add(chunk)
                    try await Self.write(rewriter.rewrite(chunk), to: &writer)
                }
                while let chunk = try await box.value.next() {
                    acc.add(chunk)
                    do {
                        try await Self.write(rewriter.rewrite(chunk), to: &writer)
                    } catch {
                        clientGone = true
                        throw error
                    }
                }
                if let usage = rewriter.usageChunk(acc.usage) { try await Self.write([usage], to: &writer) }
                try await writer.write(ByteBuffer(bytes: SSEWriter.done))
                try await writer.finish(nil)
                scope.finish(status: 200, usage: acc.usage)
            } catch {
                if clientGone || error is CancellationError {
                    // Dropping the iterator cancels the engine request (AsyncThrowingStream
                    // onTermination → producer task cancelled → HTTP request cancelled).
                    box.value = ChunkStream.empty.makeAsyncIterator()
                    metrics.upstreamCancelled(backend: scope.backendName)
                    logger.info("client went away mid-stream; upstream cancelled", metadata: ["backend": "\(scope.backendName)"])
                    scope.finish(status: 499, usage: acc.usage)
                    return
                }
                let apiError = Self.apiError(error)
                metrics.error(type: apiError.metricType)
                logger.warning("stream failed after the first chunk", metadata: ["error": "\(apiError)"])
                try? await writer.write(ByteBuffer(bytes: SSEWriter.event(apiError.jsonData())))
                try? await writer.finish(nil)
                scope.finish(status: 200, usage: acc.usage)
            }
        })
    }

    private static func write(_ chunks: [ChatCompletionChunk], to writer: inout any ResponseBodyWriter) async throws {
        guard !chunks.isEmpty else { return }
        var bytes: [UInt8] = []
        for c in chunks { bytes += SSEWriter.event(try JSONEncoder.openAI.encode(c)) }
        try await writer.write(ByteBuffer(bytes: bytes))
    }
}

/// Rewrites engine chunks into what the user sees: the node's id, created time and the
/// user-facing model name; usage stripped from content chunks and sent once at the end
/// when the user asked for it (`stream_options.include_usage`).
struct ChunkRewriter: Sendable {
    let id: String
    let created: Int64
    let model: String
    let includeUsage: Bool

    func rewrite(_ c: ChatCompletionChunk) -> [ChatCompletionChunk] {
        guard !c.choices.isEmpty else { return [] }
        return [ChatCompletionChunk(id: id, created: created, model: model, choices: c.choices, usage: nil)]
    }

    func usageChunk(_ usage: Usage?) -> ChatCompletionChunk? {
        guard includeUsage else { return nil }
        return ChatCompletionChunk(id: id, created: created, model: model, choices: [], usage: usage ?? Usage(promptTokens: 0, completionTokens: 0))
    }
}
