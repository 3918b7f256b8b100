import Foundation
import Logging
import WWWAPI
import WWWBackends
import WWWCore

/// Holds a non-Sendable value that is only ever used by one task at a time.
final class SequentialBox<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}

/// The chunks of a stream read before it was committed, and the rest of it.
struct StreamHead: Sendable {
    var chunks: [ChatCompletionChunk]
    var rest: SequentialBox<ChunkStream.AsyncIterator>
}

/// Set when the machine cancels a stream a session is relaying; checked before each chunk.
final class CancelFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var set = false
    func raise() { lock.withLock { set = true } }
    var isRaised: Bool { lock.withLock { set } }
}

/// What the shell holds for one stream the machine opened (`runInference` for a user,
/// `openOffer`). Guarded by the runtime's lock.
struct StreamEntry {
    enum State {
        /// The engine request or the offer is under way in this task.
        case starting(Task<Void, Never>)
        /// The user's session runs the engine request in its own task.
        case inSession
        /// First content was read; waiting for the machine to commit it to its user.
        case ready(StreamHead)
        /// The user's session relays it.
        case taken
        /// Read to its end for a duel's judges, by this task (`drainStream`).
        case draining(Task<Void, Never>)
        /// Cancelled or over.
        case closed
    }
    var state: State
    /// The request it serves (entries are dropped when the request ends).
    let owner: WWWCore.RequestID
    /// The backend name for metrics ("network" for a peer).
    let label: String
    /// Its own error, when it failed: what the user sees if it was the last attempt.
    var error: BackendError?
    /// Raised by `cancelStream`; a session relaying the stream stops at the next chunk.
    let cancelled = CancelFlag()
    /// Stops the stream's upstream request at once, whoever reads it (set when it started).
    var stopRelay: (@Sendable () -> Void)?
    /// The peer that runs it (nil: a local backend).
    var executor: NodeID?

    init(state: State, owner: WWWCore.RequestID, label: String, executor: NodeID? = nil) {
        self.state = state
        self.owner = owner
        self.label = label
        self.executor = executor
    }
}

extension NodeRuntime {
    // MARK: Local inference

    /// `runInference`: starts the engine request in a task. For a user, the task reads
    /// until first content and reports it; for a peer's job, the offer connection takes
    /// the stream (see `PeerRoutes`).
    func runInference(_ s: StreamID, _ job: InferenceJob) {
        guard let entry = pool.entries.first(where: { $0.backend.name == job.backend }),
              let model = entry.backend.models.first(where: { $0.descriptor.name == job.model }) else {
            let e = BackendError.failed("no local backend \(job.backend) for \(job.model)")
            if case .peer(let j, _) = job.owner, let inbox = offerInbox[j] {
                inbox.failStart(stream: s, e)   // the offer route writes it and reports the failure
            } else {
                failLater(s, Self.relayFailure(e))
            }
            return
        }
        let backend = entry.backend
        switch job.owner {
        case .user(let id):
            // The session starts the engine request and reads it to first content in its own
            // task (no task hop between the engine socket and the user); the stream's cancel
            // handle lets the machine stop it at once while the engine queues, reads the
            // prompt or streams.
            guard let session = sessions[id] else { return failLater(s, .connectionLost) }
            streams[s] = StreamEntry(state: .inSession, owner: id, label: backend.name)
            session.mailbox.yield(.run(s, backend, model))
        case .peer(let job, _):
            guard let inbox = offerInbox[job] else { return failLater(s, .connectionLost) }
            inbox.start(stream: s, backend: backend, model: model, cheat: cheat)
        }
    }

    /// Reads chunks until one carries content (or reasoning, or a finish reason). Bounded:
    /// a stream that sends `maxChunksBeforeContent` chunks without content fails (no input
    /// reaches a precondition); a stream that ends first is `truncated`.
    static func readToFirstContent(_ iterator: ChunkStream.AsyncIterator) async throws -> StreamHead {
        let box = SequentialBox(iterator)
        var head: [ChatCompletionChunk] = []
        while let chunk = try await box.value.next() {
            if Task.isCancelled { throw BackendError.cancelled }
            head.append(chunk)
            if chunk.carriesContentOrFinish { return StreamHead(chunks: head, rest: box) }
            if head.count >= maxChunksBeforeContent {
                throw BackendError.failed("the stream sent \(head.count) chunks without any content")
            }
        }
        throw BackendError.truncated
    }

    /// Reads `s` to its first content in the current (owned) task, then parks the head for
    /// the commit and reports `firstContent`.
    func readHead(_ s: StreamID, _ iterator: ChunkStream.AsyncIterator) async {
        do {
            let head = try await Self.readToFirstContent(iterator)
            let parked: Bool = lock.withLock {
                switch streams[s]?.state {
                case .starting?, .inSession?:
                    streams[s]!.state = .ready(head)
                    return true
                default:
                    return false
                }
            }
            if parked { submit(.stream(s, .firstContent)) }
        } catch {
            if case .failed(let m) = OpenAIBackend.map(error), m.contains("chunks without any content") { metrics.error(type: "no_content") }
            streamFailed(s, OpenAIBackend.map(error))
        }
    }

    /// Runs a local engine request for a session, in the session's task, to first content.
    /// The engine request's stop handle is attached as soon as it is under way, so that
    /// `cancelStream` stops it also before the response head (the engine may queue the
    /// request or read a long prompt first); afterwards the stream's own handle takes over.
    func runInSession(_ s: StreamID, backend: any Backend, model: BackendModel, request: ChatCompletionRequest) async {
        do {
            let stream = try await backend.chat(request, model: model, cancellable: { [weak self] stop in
                self?.attachRelay(s, cancel: stop)
            })
            if let cancel = stream.cancel { attachRelay(s, cancel: cancel) }
            await readHead(s, stream.makeAsyncIterator())
        } catch {
            streamFailed(s, OpenAIBackend.map(error))
        }
    }

    /// Records a stream's own error and reports the failure.
    func streamFailed(_ s: StreamID, _ e: BackendError) {
        let known: Bool = lock.withLock {
            guard streams[s] != nil else { return false }
            streams[s]!.error = e
            streams[s]!.state = .closed
            return true
        }
        if known { submit(.stream(s, .failed(Self.relayFailure(e)))) }
    }

    /// `cancelStream`: stops the task, drops a parked head, or tells the relaying session.
    func cancelStream(_ s: StreamID) {
        guard var e = streams[s] else {
            for inbox in offerInbox.values where inbox.stream == s { inbox.cancel() }
            return
        }
        e.cancelled.raise()
        if case .starting(let task) = e.state { task.cancel() }
        if case .draining(let task) = e.state { task.cancel() }
        e.stopRelay?()
        switch e.state {
        case .taken, .inSession, .draining: break
        default: e.state = .closed
        }
        streams[s] = e
    }

    /// The committed stream's head and cancel flag, for the session that relays it.
    func takeStream(_ s: StreamID) -> (StreamHead, CancelFlag)? {
        lock.withLock {
            guard case .ready(let head) = streams[s]?.state else { return nil }
            streams[s]!.state = .taken
            return (head, streams[s]!.cancelled)
        }
    }

    /// Registers how to stop `s`'s upstream request; stops it at once if `s` was cancelled.
    func attachRelay(_ s: StreamID, cancel: @escaping @Sendable () -> Void) {
        let now: Bool = lock.withLock {
            guard streams[s] != nil, !streams[s]!.cancelled.isRaised else { return true }
            streams[s]!.stopRelay = cancel
            return false
        }
        if now { cancel() }
    }

    func streamLabel(_ s: StreamID) -> String { lock.withLock { streams[s]?.label ?? "unknown" } }

    static func relayFailure(_ e: BackendError) -> RelayFailure {
        switch e {
        case .timeout: return .idleTimeout
        case .truncated: return .truncated
        case .unavailable, .cancelled: return .connectionLost
        case .overloaded(_, let r): return .throttled(status: 503, retryAfter: .seconds(r))
        case .rejected(let s, _): return .httpStatus(s)
        case .failed(let m): return .executorError(m)
        case .upstream(let u) where u.status == 429 || u.status == 503:
            return .throttled(status: u.status, retryAfter: u.retryAfter.map { .seconds($0) })
        case .upstream(let u): return .httpStatus(u.status)
        }
    }
}
