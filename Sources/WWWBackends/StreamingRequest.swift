import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// One streaming HTTP request (an engine's chat completion, a peer's offer) whose response
/// body one reader pulls, with backpressure, and which anyone may cancel at any moment —
/// also while the reader waits for the next bytes. Built on AsyncHTTPClient's delegate API
/// (`HTTPClientResponseDelegate`), whose task handle can be cancelled from any thread; the
/// async API could only be stopped by cancelling the reading task, which the node does not
/// always own (it may be Hummingbird's response writer).
///
/// Backpressure: body parts are buffered up to `highWater` bytes; past it AsyncHTTPClient
/// stops reading the socket until the reader drained below `lowWater`.
public final class StreamingRequest: HTTPClientResponseDelegate, @unchecked Sendable {
    public typealias Response = Void

    public static let highWater = 256 << 10
    public static let lowWater = 64 << 10

    private let lock = NSLock()
    private var head: HTTPResponseHead?
    private var headWaiter: UnsafeContinuation<HTTPResponseHead, any Error>?
    private var buffers: CircularBuffer<ByteBuffer> = CircularBuffer(initialCapacity: 8)
    private var bufferedBytes = 0
    private var reader: UnsafeContinuation<ByteBuffer?, any Error>?
    private var ended: Result<Void, any Error>?
    private var demand: EventLoopPromise<Void>?
    private var task: HTTPClient.Task<Void>?
    private var cancelled = false

    private init() {}

    /// Starts `request` on `client`; returns once the response head arrived (or throws).
    /// The returned value reads the body (`next()`) and cancels (`cancel()`).
    /// `started` gets the request as soon as it is under way (before the head), so that
    /// whoever holds it can `cancel()` while the server still queues or thinks.
    public static func start(_ request: HTTPClient.Request, client: HTTPClient, deadline: NIODeadline,
                             started: ((StreamingRequest) -> Void)? = nil) async throws
        -> (HTTPResponseHead, StreamingRequest) {
        let s = StreamingRequest()
        let task = client.execute(request: request, delegate: s, deadline: deadline)
        s.lock.withLock {
            s.task = task
            if s.cancelled { task.cancel() }
        }
        started?(s)
        let head = try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (c: UnsafeContinuation<HTTPResponseHead, any Error>) in
                s.lock.lock()
                if let h = s.head { s.lock.unlock(); return c.resume(returning: h) }
                if case .failure(let e)? = s.ended { s.lock.unlock(); return c.resume(throwing: e) }
                if case .success? = s.ended { s.lock.unlock(); return c.resume(throwing: HTTPClientError.remoteConnectionClosed) }
                s.headWaiter = c
                s.lock.unlock()
            }
        } onCancel: { s.cancel() }
        return (head, s)
    }

    /// Stops the request now: its connection is closed, and a waiting or later `next()`
    /// throws `HTTPClientError.cancelled`. Idempotent; callable from any thread.
    public func cancel() {
        let t: HTTPClient.Task<Void>? = lock.withLock {
            cancelled = true
            return task
        }
        t?.cancel()
    }

    /// The next body part; nil at the end; throws on failure or cancellation (`cancel()`;
    /// cancelling the reading task does not stop the request — call `cancel()`).
    public func next() async throws -> ByteBuffer? {
        if let r = take() { return try r.get() }
        return try await withUnsafeThrowingContinuation { (c: UnsafeContinuation<ByteBuffer?, any Error>) in
            lock.lock()
            if let r = takeLocked() { lock.unlock(); return c.resume(with: r) }
            reader = c
            lock.unlock()
        }
    }

    /// A buffered part or the end, if there is one (caller holds no lock).
    private func take() -> Result<ByteBuffer?, any Error>? {
        lock.lock()
        defer { lock.unlock() }
        return takeLocked()
    }

    private func takeLocked() -> Result<ByteBuffer?, any Error>? {
        if !buffers.isEmpty {
            let b = buffers.removeFirst()
            bufferedBytes -= b.readableBytes
            if bufferedBytes <= Self.lowWater, let d = demand {
                demand = nil
                d.succeed(())
            }
            return .success(b)
        }
        switch ended {
        case .success?: return .success(nil)
        case .failure(let e)?: return .failure(e)
        case nil: return nil
        }
    }

    // MARK: HTTPClientResponseDelegate (on the request's event loop)

    public func didReceiveHead(task: HTTPClient.Task<Void>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        let w: UnsafeContinuation<HTTPResponseHead, any Error>? = lock.withLock {
            self.head = head
            defer { headWaiter = nil }
            return headWaiter
        }
        w?.resume(returning: head)
        return task.eventLoop.makeSucceededVoidFuture()
    }

    public func didReceiveBodyPart(task: HTTPClient.Task<Void>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        lock.lock()
        if let r = reader {
            reader = nil
            lock.unlock()
            r.resume(returning: buffer)
            return task.eventLoop.makeSucceededVoidFuture()
        }
        buffers.append(buffer)
        bufferedBytes += buffer.readableBytes
        guard bufferedBytes > Self.highWater else {
            lock.unlock()
            return task.eventLoop.makeSucceededVoidFuture()
        }
        let p = task.eventLoop.makePromise(of: Void.self)
        demand = p
        lock.unlock()
        return p.futureResult
    }

    public func didReceiveError(task: HTTPClient.Task<Void>, _ error: any Error) {
        end(.failure(error))
    }

    public func didFinishRequest(task: HTTPClient.Task<Void>) throws {
        end(.success(()))
    }

    private func end(_ result: Result<Void, any Error>) {
        lock.lock()
        guard ended == nil else { return lock.unlock() }
        ended = result
        let h = headWaiter, r = reader, d = demand
        headWaiter = nil
        reader = nil
        demand = nil
        lock.unlock()
        d?.succeed(())
        switch result {
        case .success:
            h?.resume(throwing: HTTPClientError.remoteConnectionClosed)
            r?.resume(returning: nil)
        case .failure(let e):
            h?.resume(throwing: e)
            r?.resume(throwing: e)
        }
    }
}
