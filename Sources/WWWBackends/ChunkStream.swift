import AsyncHTTPClient
import Foundation
import NIOCore
import WWWAPI

/// A stream of chunks from an engine or a peer. Iterating it may throw `BackendError`;
/// dropping the iterator (or cancelling the consuming task) cancels the upstream request.
///
/// Two sources: an engine's or a peer's SSE response body, parsed lazily inside `next()` so
/// a chunk goes from the socket to the user without an extra task hop (the socket's own
/// backpressure applies); or a producer-fed stream (scripted backends in tests), bounded:
/// a producer too far ahead of its reader fails the stream instead of dropping chunks.
public struct ChunkStream: AsyncSequence, Sendable {
    public typealias Element = ChatCompletionChunk

    enum Source: Sendable {
        case stream(AsyncThrowingStream<ChatCompletionChunk, any Error>)
        case sse(HTTPClientResponse.Body, SSEStreamToken)
        case request(StreamingRequest, SSEStreamToken)
    }

    let source: Source

    /// Stops the upstream request at once, from any thread, even while a reader waits for
    /// its next chunk (the reader then gets an error). Nil for streams that cannot be
    /// stopped that way (stop them by cancelling their reader's task).
    public var cancel: (@Sendable () -> Void)? {
        if case .request(let r, _) = source { return { r.cancel() } }
        return nil
    }

    /// Chunks a producer may be ahead of its reader. Past it the stream fails loudly
    /// (`BackendError.failed`): a chunk is never dropped silently.
    public static let producerBuffer = 256

    /// The producer's side of a stream built with `init(_:)` or `makeStream()`.
    public struct Continuation: Sendable {
        let inner: AsyncThrowingStream<ChatCompletionChunk, any Error>.Continuation

        /// Adds a chunk. Returns false when the stream is over: the reader went away, or it
        /// fell `producerBuffer` chunks behind — then the stream ends with an error after
        /// the buffered chunks, and the producer must stop.
        @discardableResult
        public func yield(_ chunk: ChatCompletionChunk) -> Bool {
            switch inner.yield(chunk) {
            case .enqueued: return true
            case .dropped:
                inner.finish(throwing: BackendError.failed("the reader fell \(ChunkStream.producerBuffer) chunks behind the producer"))
                return false
            case .terminated: return false
            @unknown default: return false
            }
        }

        public func finish() { inner.finish() }
        public func finish(throwing error: any Error) { inner.finish(throwing: error) }

        /// Runs when the reader stops reading (cancelled) or the stream ends.
        public var onTermination: (@Sendable (AsyncThrowingStream<ChatCompletionChunk, any Error>.Continuation.Termination) -> Void)? {
            get { inner.onTermination }
            nonmutating set { inner.onTermination = newValue }
        }
    }

    /// A stream fed through a continuation, like `AsyncThrowingStream { continuation in … }`.
    public init(_ build: (Continuation) -> Void) {
        source = .stream(AsyncThrowingStream(bufferingPolicy: .bufferingOldest(Self.producerBuffer)) { build(Continuation(inner: $0)) })
    }

    init(source: Source) { self.source = source }

    /// A pull-based stream: `produce` runs each time the reader wants the next chunk (nil
    /// ends the stream), so the producer can never run ahead of its reader.
    public init(unfolding produce: @escaping @Sendable () async throws -> ChatCompletionChunk?) {
        source = .stream(AsyncThrowingStream(unfolding: produce))
    }

    /// A stream and its continuation.
    public static func makeStream() -> (ChunkStream, Continuation) {
        let (s, c) = AsyncThrowingStream<ChatCompletionChunk, any Error>.makeStream(bufferingPolicy: .bufferingOldest(producerBuffer))
        return (ChunkStream(source: .stream(s)), Continuation(inner: c))
    }

    /// An engine's `text/event-stream` body of `chat.completion.chunk`s; `onEnd` runs once
    /// when the stream ends or its iterator is dropped.
    public static func sse(_ body: HTTPClientResponse.Body, onEnd: @escaping @Sendable () -> Void) -> ChunkStream {
        ChunkStream(source: .sse(body, SSEStreamToken(onEnd)))
    }

    /// The `text/event-stream` body of a streaming request that can be cancelled (`cancel`).
    public static func sse(_ request: StreamingRequest, onEnd: @escaping @Sendable () -> Void) -> ChunkStream {
        ChunkStream(source: .request(request, SSEStreamToken(onEnd)))
    }

    /// A stream that has already ended.
    public static var empty: ChunkStream { ChunkStream { $0.finish() } }

    public func makeAsyncIterator() -> AsyncIterator {
        switch source {
        case .stream(let s): return AsyncIterator(inner: .stream(s.makeAsyncIterator()))
        case .sse(let body, let token): return AsyncIterator(inner: .sse(SSEChunkIterator(body: .body(body.makeAsyncIterator()), token: token)))
        case .request(let r, let token):
            return AsyncIterator(inner: .sse(SSEChunkIterator(body: .request(r), token: token, dropGuard: DropGuard { r.cancel() })))
        }
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        enum Inner {
            case stream(AsyncThrowingStream<ChatCompletionChunk, any Error>.AsyncIterator)
            case sse(SSEChunkIterator)
        }
        var inner: Inner

        public mutating func next() async throws -> ChatCompletionChunk? {
            switch inner {
            case .stream(var it):
                defer { inner = .stream(it) }
                return try await it.next()
            case .sse(var it):
                defer { inner = .sse(it) }
                return try await it.next()
            }
        }
    }
}

/// Runs its closure once, when the stream ends or when the last copy is released.
final class SSEStreamToken: @unchecked Sendable {
    private let lock = NSLock()
    private var action: (@Sendable () -> Void)?

    init(_ action: @escaping @Sendable () -> Void) { self.action = action }

    func fire() {
        let a: (@Sendable () -> Void)? = lock.withLock {
            let a = action
            action = nil
            return a
        }
        a?()
    }

    deinit { fire() }
}

/// Parses SSE lazily from a response body: lenient reading (§6a), `[DONE]`, and
/// truncation detection (no finish reason and no `[DONE]` → `BackendError.truncated`).
/// Where an SSE iterator's bytes come from.
enum ByteSource {
    case body(HTTPClientResponse.Body.AsyncIterator)
    case request(StreamingRequest)

    mutating func next() async throws -> ByteBuffer? {
        switch self {
        case .body(var it):
            defer { self = .body(it) }
            return try await it.next()
        case .request(let r):
            return try await r.next()
        }
    }
}

/// Cancels a request when the last copy of its iterator goes away before the stream ended
/// cleanly (a reader that stops early); disarmed at a clean end, so a finished exchange is
/// never cut (an executor must see its answer delivered to the end).
final class DropGuard: @unchecked Sendable {
    private let lock = NSLock()
    private var action: (@Sendable () -> Void)?
    init(_ action: @escaping @Sendable () -> Void) { self.action = action }
    func disarm() { lock.withLock { action = nil } }
    deinit { action?() }
}

struct SSEChunkIterator {
    var body: ByteSource
    var dropGuard: DropGuard?
    let token: SSEStreamToken
    var reader = SSEReader()
    var pending: [ChatCompletionChunk] = []
    var pendingIndex = 0
    var finished = false
    var done = false
    var ended = false
    let decoder = JSONDecoder()

    init(body: ByteSource, token: SSEStreamToken, dropGuard: DropGuard? = nil) {
        self.dropGuard = dropGuard
        self.body = body
        self.token = token
    }

    mutating func next() async throws -> ChatCompletionChunk? {
        while true {
            if pendingIndex < pending.count {
                defer { pendingIndex += 1 }
                return pending[pendingIndex]
            }
            pending.removeAll(keepingCapacity: true)
            pendingIndex = 0
            if ended { return nil }
            if done { return end() }
            let buffer: ByteBuffer?
            do {
                buffer = try await body.next()
            } catch {
                token.fire()
                ended = true
                throw OpenAIBackend.map(error)
            }
            guard let buffer else {
                if let last = reader.finish() { try consume(last) }
                guard finished || done else {
                    token.fire()
                    ended = true
                    throw BackendError.truncated
                }
                done = true
                continue
            }
            do {
                for payload in try reader.feed(buffer.readableBytesView) where !done { try consume(payload) }
            } catch {
                token.fire()
                ended = true
                throw OpenAIBackend.map(error)
            }
        }
    }

    private mutating func end() -> ChatCompletionChunk? {
        ended = true
        dropGuard?.disarm()
        token.fire()
        return nil
    }

    /// One SSE payload: `[DONE]`, an in-band error event (an error, never an empty chunk),
    /// or a chunk (lone surrogate escapes repaired as U+FFFD).
    private mutating func consume(_ payload: String) throws {
        if payload == "[DONE]" { done = true; return }
        let chunk: ChatCompletionChunk
        do {
            chunk = try decoder.decode(ChatCompletionChunk.self, from: Data(payload.utf8))
        } catch {
            if let e = Self.errorEvent(payload) { throw BackendError.upstream(e) }
            guard let repaired = JSONText.replacingLoneSurrogates(payload),
                  let c = try? decoder.decode(ChatCompletionChunk.self, from: Data(repaired.utf8)) else {
                throw BackendError.failed("malformed chunk: \(payload.prefix(200))")
            }
            chunk = c
        }
        // An error event decodes leniently as a chunk without choices or usage: only such a
        // chunk is looked at again (cheaply skipped for every real chunk).
        if chunk.choices.isEmpty, chunk.usage == nil, let e = Self.errorEvent(payload) { throw BackendError.upstream(e) }
        if chunk.choices.contains(where: { $0.finishReason != nil }) { finished = true }
        pending.append(chunk)
    }

    /// `{"error": …}` at the top level of an event.
    static func errorEvent(_ payload: String) -> UpstreamError? {
        guard let v = try? JSONDecoder().decode(JSONValue.self, from: Data(payload.utf8)),
              case .object(let o) = v, o["error"] != nil else { return nil }
        return UpstreamError.parse(v, status: nil, retryAfter: nil)
    }
}
