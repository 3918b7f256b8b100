import AsyncHTTPClient
import Foundation
import NIOCore
import WWWAPI

/// A stream of chunks from an engine or a peer. Iterating it may throw `BackendError`;
/// dropping the iterator (or cancelling the consuming task) cancels the upstream request.
///
/// Two sources: an engine's SSE response body, parsed lazily inside `next()` so a chunk
/// goes from the socket to the user without an extra task hop; or an
/// `AsyncThrowingStream` fed by a producer (offload relays with failover, tests).
public struct ChunkStream: AsyncSequence, Sendable {
    public typealias Element = ChatCompletionChunk
    public typealias Continuation = AsyncThrowingStream<ChatCompletionChunk, any Error>.Continuation

    enum Source: Sendable {
        case stream(AsyncThrowingStream<ChatCompletionChunk, any Error>)
        case sse(HTTPClientResponse.Body, SSEStreamToken)
    }

    let source: Source

    /// A stream fed through a continuation, like `AsyncThrowingStream { continuation in … }`.
    public init(_ build: (Continuation) -> Void) {
        source = .stream(AsyncThrowingStream(bufferingPolicy: .bufferingNewest(256), build))
    }

    init(source: Source) { self.source = source }

    /// A stream and its continuation.
    public static func makeStream() -> (ChunkStream, Continuation) {
        let (s, c) = AsyncThrowingStream<ChatCompletionChunk, any Error>.makeStream(bufferingPolicy: .bufferingNewest(256))
        return (ChunkStream(source: .stream(s)), c)
    }

    /// An engine's `text/event-stream` body of `chat.completion.chunk`s; `onEnd` runs once
    /// when the stream ends or its iterator is dropped.
    public static func sse(_ body: HTTPClientResponse.Body, onEnd: @escaping @Sendable () -> Void) -> ChunkStream {
        ChunkStream(source: .sse(body, SSEStreamToken(onEnd)))
    }

    /// A stream that has already ended.
    public static var empty: ChunkStream { ChunkStream { $0.finish() } }

    public func makeAsyncIterator() -> AsyncIterator {
        switch source {
        case .stream(let s): return AsyncIterator(inner: .stream(s.makeAsyncIterator()))
        case .sse(let body, let token): return AsyncIterator(inner: .sse(SSEChunkIterator(body: body.makeAsyncIterator(), token: token)))
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
struct SSEChunkIterator {
    var body: HTTPClientResponse.Body.AsyncIterator
    let token: SSEStreamToken
    var reader = SSEReader()
    var pending: [ChatCompletionChunk] = []
    var pendingIndex = 0
    var finished = false
    var done = false
    var ended = false
    let decoder = JSONDecoder()

    init(body: HTTPClientResponse.Body.AsyncIterator, token: SSEStreamToken) {
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
        token.fire()
        return nil
    }

    private mutating func consume(_ payload: String) throws {
        if payload == "[DONE]" { done = true; return }
        let chunk: ChatCompletionChunk
        do {
            chunk = try decoder.decode(ChatCompletionChunk.self, from: Data(payload.utf8))
        } catch {
            if let msg = OpenAIBackend.upstreamMessage(payload), payload.contains("\"error\"") { throw BackendError.failed(msg) }
            throw BackendError.failed("malformed chunk: \(payload.prefix(200))")
        }
        if chunk.choices.contains(where: { $0.finishReason != nil }) { finished = true }
        pending.append(chunk)
    }
}
