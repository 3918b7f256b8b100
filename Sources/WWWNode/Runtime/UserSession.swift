import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import WWWAPI
import WWWBackends
import WWWCore

/// What the runtime tells a user's session (from the machine's `respond` directives).
enum SessionCommand: Sendable {
    /// Start the request on this local backend and read it to first content, in the
    /// session's own task.
    case run(StreamID, any Backend, BackendModel)
    /// Relay this stream; `executor` is the peer running it (nil: this node).
    case commit(StreamID, executor: NodeID?)
    /// The committed stream finished: end cleanly.
    case complete
    /// Nothing was committed: answer with this error.
    case fail(APIError)
    /// After the commit: end with an in-stream error event.
    case abort(APIError)
}

/// One user request in the shell: its parsed body (the prompt never enters the machine)
/// and the mailbox through which the runtime drives its response.
///
/// The mailbox has one reader at a time: the request handler until the commit, then the
/// response body writer.
final class UserSession: Sendable {
    let id: WWWCore.RequestID
    let request: ChatCompletionRequest
    let start = ContinuousClock.now
    let mailbox = Mailbox<SessionCommand>()

    init(id: WWWCore.RequestID, request: ChatCompletionRequest) {
        self.id = id
        self.request = request
    }

    /// The next command; nil when the mailbox ended or the task was cancelled.
    func next() async -> SessionCommand? { await mailbox.next() }

    /// A command already waiting, if any (never waits).
    func pending() -> SessionCommand? { mailbox.poll() }
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

    /// The final usage event when the user asked for it; `usage: null` when the engine
    /// reported none (unknown, never a false zero).
    func usageEvent(_ usage: Usage?) throws -> [UInt8]? {
        guard includeUsage else { return nil }
        return SSEWriter.event(try JSONEncoder.openAI.encode(FinalUsageChunk(id: id, created: created, model: model, usage: usage)))
    }
}

extension NodeRuntime {
    static let sseHeaders: HTTPFields = [
        .contentType: "text/event-stream",
        .cacheControl: "no-cache",
        HTTPField.Name("X-Accel-Buffering")!: "no",
    ]

    /// Runs a validated chat request through the machine and answers the user, streaming
    /// or not, following the relay rules of DESIGN.md §6a.
    /// - Parameter allowOffload: false when the user (header) or the operator (API key)
    ///   forbids the prompt to leave this node.
    func chat(_ request: ChatCompletionRequest, allowOffload: Bool, nodeName: String,
              channel: (any Channel)? = nil) async throws -> Response {
        let session = open(request, allowOffload: allowOffload)
        let id = session.id
        if let channel { connections.arm(channel) { [weak self] in self?.submit(.userGone(id)) } }
        // Bounded: each pass consumes a command the machine sent for this request, and the
        // machine starts at most `maxFailovers + 1` local attempts per request.
        for _ in 0...(SchedulingPolicy.maxFailoversLimit + 2) {
            switch await session.next() {
            case .run(let s, let backend, let model)?:
                await runInSession(s, backend: backend, model: model, request: request)
            case .commit(let s, let executor)?:
                return try await respond(session, committed: s, executor: executor, nodeName: nodeName, channel: channel)
            case .fail(let e)?:
                if let channel { connections.disarm(channel) }
                throw e
            case nil:
                // The mailbox ended: the client went away (or the task was cancelled).
                if let channel { connections.disarm(channel) }
                submit(.userGone(id))
                throw CancellationError()
            case .complete?, .abort?:
                if let channel { connections.disarm(channel) }
                throw APIError.internal("the machine ended a request it had not committed")
            }
        }
        if let channel { connections.disarm(channel) }
        submit(.userGone(id))
        throw APIError.internal("the request was started more often than the failover limit allows")
    }

    private func respond(_ session: UserSession, committed s: StreamID, executor: NodeID?, nodeName: String,
                         channel: (any Channel)?) async throws -> Response {
        let request = session.request
        guard let (head, cancelled) = takeStream(s) else { throw APIError.internal("the committed stream was not ready") }
        let label = streamLabel(s)
        metrics.ttft(.now - session.start, backend: label)
        metrics.inFlight(backend: label, delta: 1)
        let relay = Relay(runtime: self, session: session, stream: s, head: head, cancelled: cancelled, label: label,
                          channel: channel,
                          rewriter: ChunkRewriter(id: Self.completionID(), created: Int64(Date().timeIntervalSince1970),
                                                  model: request.model, includeUsage: request.includeUsage))
        let headers = Self.responseHeaders(node: nodeName, executor: executor)
        return request.stream ? relay.streaming(headers) : try await relay.complete(headers)
    }

    /// Registers a session and hands the request to the machine.
    private func open(_ request: ChatCompletionRequest, allowOffload: Bool) -> UserSession {
        let deadline = wallClockNow() + .milliseconds(Int64(config.node.requestTimeoutS * 1000))
        let session: UserSession = lock.withLock {
            let s = UserSession(id: WWWCore.RequestID(nextRequest), request: request)
            nextRequest += 1
            sessions[s.id] = s
            return s
        }
        submit(.userRequest(session.id, UserRequestSpec(model: request.model, allowOffload: allowOffload, deadline: deadline)))
        return session
    }

    /// `respond`: forwards the machine's decision to the session (under the lock).
    func respond(_ id: WWWCore.RequestID, _ r: UserResponse) {
        guard let session = sessions[id] else { return }
        switch r {
        case .commit(let s, let executor):
            session.mailbox.yield(.commit(s, executor: executor))
            return
        case .complete:
            session.mailbox.yield(.complete)
        case .reject(let f):
            session.mailbox.yield(.fail(apiError(f)))
        case .abort(let f):
            session.mailbox.yield(.abort(apiError(f)))
        }
        session.mailbox.finish()
    }

    /// The machine is done with request `id` (`requestEnded`, under the lock): drop its
    /// session and streams. A session still waiting sees its mailbox end.
    func endSession(_ id: WWWCore.RequestID) {
        sessions.removeValue(forKey: id)?.mailbox.finish()
        for (s, e) in streams where e.owner == id && !keptForDuel(s, e) {
            if case .starting(let task) = e.state { task.cancel() }
            streams[s] = nil
        }
    }

    static func completionID() -> String {
        "chatcmpl-" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24)
    }

    /// `X-WWWServe-Node` (this node), `X-WWWServe-Executor` (who ran it) and
    /// `X-WWWServe-Offloaded`.
    static func responseHeaders(node: String, executor: NodeID?) -> HTTPFields {
        var h = HTTPFields()
        h[HTTPField.Name("X-WWWServe-Node")!] = node
        h[HTTPField.Name("X-WWWServe-Executor")!] = executor?.hex ?? node
        h[HTTPField.Name("X-WWWServe-Offloaded")!] = executor == nil ? "false" : "true"
        return h
    }
}

/// True the first time `set()` is called.
final class OnceFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var done = false
    func set() -> Bool {
        lock.withLock {
            defer { done = true }
            return !done
        }
    }
}

/// Relays one committed stream to its user and reports how it ended.
struct Relay: Sendable {
    let runtime: NodeRuntime
    let session: UserSession
    let stream: StreamID
    let head: StreamHead
    /// Raised when the machine cancels the stream (user gone, deadline).
    let cancelled: CancelFlag
    let label: String
    /// The client's connection, whose watch is disarmed when the request ends.
    let channel: (any Channel)?
    let rewriter: ChunkRewriter
    /// Metrics are recorded once per request, however it ends.
    private let recorded = OnceFlag()

    private var metrics: NodeMetrics { runtime.metrics }

    /// An SSE response written chunk by chunk as the source yields them.
    func streaming(_ headers: HTTPFields) -> Response {
        var h = headers
        for f in NodeRuntime.sseHeaders { h[f.name] = f.value }
        return Response(status: .ok, headers: h, body: .init { writer in await self.relay(to: &writer) })
    }

    private func relay(to writer: inout any ResponseBodyWriter) async {
        var acc = StreamAccumulator()
        do {
            for chunk in head.chunks {
                acc.add(chunk)
                try await Self.write(rewriter.rewrite(chunk), to: &writer)
            }
            while let chunk = try await nextChunk(&acc) {
                try await Self.write(rewriter.rewrite(chunk), to: &writer)
            }
        } catch let e as SourceError where !cancelled.isRaised {
            return await ended(failure: e.error, acc: acc, writer: &writer)
        } catch {
            // A failed write, or the machine cancelled the stream (the client's connection
            // closed, or the deadline passed): stop reading at once.
            if cancelled.isRaised, case .abort(let e)? = session.pending() {
                try? await writer.write(ByteBuffer(bytes: SSEWriter.event(e.jsonData())))
                try? await writer.finish(nil)
            }
            return clientGone(acc)
        }
        await ended(failure: nil, acc: acc, writer: &writer)
    }

    /// The source ended (cleanly or not): report it, then write what the machine says.
    private func ended(failure: BackendError?, acc: StreamAccumulator, writer: inout any ResponseBodyWriter) async {
        report(failure: failure, acc: acc)
        do {
            switch await session.next() {
            case .complete?:
                if let usage = try rewriter.usageEvent(acc.usage) { try await writer.write(ByteBuffer(bytes: usage)) }
                try await writer.write(ByteBuffer(bytes: SSEWriter.done))
                finish(status: 200, acc)
            case .abort(let e)?, .fail(let e)?:
                metrics.error(type: e.metricType)
                runtime.logger.warning("stream failed after the first chunk", metadata: ["error": "\(e)"])
                try await writer.write(ByteBuffer(bytes: SSEWriter.event(e.jsonData())))
                finish(status: 200, acc)
            case .commit?, .run?, nil:
                finish(status: 499, acc)
            }
            try await writer.finish(nil)
        } catch {
            clientGone(acc)
        }
    }

    /// A non-streaming `chat.completion`, built once the source finished (so an error at
    /// any point is still a real HTTP error).
    func complete(_ headers: HTTPFields) async throws -> Response {
        var acc = StreamAccumulator()
        head.chunks.forEach { acc.add($0) }
        var failure: BackendError?
        do {
            while try await nextChunk(&acc) != nil {
                if acc.overflowed {
                    let limit = StreamAccumulator.maxTextBytes >> 20
                    throw SourceError(error: .failed("the answer is longer than \(limit) MiB; ask for it with stream: true"))
                }
            }
        } catch let e as SourceError where !cancelled.isRaised {
            failure = e.error
        } catch is SourceError {
            // Cancelled by the machine: the deadline (an answer to write) or the client left.
            if case .abort(let a)? = session.pending() {
                finish(status: a.status, acc)
                throw a
            }
            clientGone(acc)
            throw CancellationError()
        } catch {
            clientGone(acc)
            throw error
        }
        report(failure: failure, acc: acc)
        switch await session.next() {
        case .complete?:
            finish(status: 200, acc)
            let body = acc.completion(id: rewriter.id, created: rewriter.created, model: rewriter.model)
            var h = headers
            h[.contentType] = "application/json"
            return Response(status: .ok, headers: h, body: .init(byteBuffer: ByteBuffer(data: try JSONEncoder.openAI.encode(body))))
        case .abort(let e)?, .fail(let e)?:
            finish(status: e.status, acc)
            throw e
        case .commit?, .run?, nil:
            finish(status: 499, acc)
            throw CancellationError()
        }
    }

    /// A source error, as opposed to a failed write to the user.
    struct SourceError: Error { let error: BackendError }

    private func nextChunk(_ acc: inout StreamAccumulator) async throws -> ChatCompletionChunk? {
        let chunk: ChatCompletionChunk?
        do {
            chunk = try await head.rest.value.next()
        } catch {
            throw SourceError(error: OpenAIBackend.map(error))
        }
        if let chunk {
            acc.add(chunk)
            if cancelled.isRaised { throw SourceError(error: .cancelled) }
        }
        return chunk
    }

    private func report(failure: BackendError?, acc: StreamAccumulator) {
        if let failure {
            runtime.streamFailed(stream, failure)
        } else {
            let usage = acc.usage.map { TokenUsage(promptTokens: $0.promptTokens, completionTokens: $0.completionTokens) }
            // The hash of the text delivered, as its executor's receipt signs it (a duel
            // compares the two); the text itself is kept only for a duel's judges.
            runtime.keepAnswer(stream, text: acc.content, complete: !acc.overflowed)
            let hash = NodeRuntime.answerHash(acc.content)
            runtime.submit(.stream(stream, .finished(StreamOutcome(responseHash: hash, usage: usage))))
        }
    }

    /// The user went away: drop the source (which cancels the engine or peer request).
    private func clientGone(_ acc: StreamAccumulator) {
        head.rest.value = ChunkStream.empty.makeAsyncIterator()
        metrics.upstreamCancelled(backend: label)
        runtime.logger.info("client went away mid-stream; upstream cancelled", metadata: ["backend": "\(label)"])
        runtime.submit(.userGone(session.id))
        finish(status: 499, acc)
    }

    private func finish(status: Int, _ acc: StreamAccumulator) {
        guard recorded.set() else { return }
        if let channel { runtime.connections.disarm(channel) }
        metrics.inFlight(backend: label, delta: -1)
        if status < 400 { metrics.request(endpoint: "chat", status: status) }
        metrics.requestDuration(.now - session.start, backend: label)
        if let u = acc.usage { metrics.tokens(prompt: u.promptTokens, completion: u.completionTokens, backend: label) }
    }

    private static func write(_ chunks: [ChatCompletionChunk], to writer: inout any ResponseBodyWriter) async throws {
        guard !chunks.isEmpty else { return }
        var bytes: [UInt8] = []
        for c in chunks { bytes += SSEWriter.event(try JSONEncoder.openAI.encode(c)) }
        try await writer.write(ByteBuffer(bytes: bytes))
    }
}
