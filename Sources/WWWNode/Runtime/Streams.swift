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

/// What the shell holds for one stream the machine opened (`runInference` for a user,
/// `openOffer`). Guarded by the runtime's lock.
struct StreamEntry {
    enum State {
        /// The engine request or the offer is under way in this task.
        case starting(Task<Void, Never>)
        /// The user's session starts the engine request and reads it itself.
        case inSession
        /// First content was read; waiting for the machine to commit it to its user.
        case ready(StreamHead)
        /// The user's session relays it.
        case taken
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
    /// Set by `cancelStream` while a session relays it; the session stops at the next chunk.
    var cancelled = false
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
            guard let session = sessions[id] else { return failLater(s, .connectionLost) }
            streams[s] = StreamEntry(state: .inSession, owner: id, label: backend.name)
            session.mailbox.yield(.run(s, backend, model))
        case .peer(let job, _):
            guard let inbox = offerInbox[job] else { return failLater(s, .connectionLost) }
            inbox.start(stream: s, backend: backend, model: model)
        }
    }

    /// Reads chunks until one carries content or a finish reason, then parks them for the
    /// commit and reports `firstContent`. Bounded: a stream that sends
    /// `maxChunksBeforeContent` chunks without content fails (no input reaches a
    /// precondition).
    func readHead(_ s: StreamID, _ iterator: ChunkStream.AsyncIterator) async {
        let box = SequentialBox(iterator)
        var head: [ChatCompletionChunk] = []
        do {
            while let chunk = try await box.value.next() {
                if Task.isCancelled || (head.count % 64 == 0 && isCancelled(s)) { throw BackendError.cancelled }
                head.append(chunk)
                if chunk.carriesContentOrFinish {
                    let parked: Bool = lock.withLock {
                        switch streams[s]?.state {
                        case .starting?, .inSession?:
                            streams[s]!.state = .ready(StreamHead(chunks: head, rest: box))
                            return true
                        default:
                            return false
                        }
                    }
                    if parked { submit(.stream(s, .firstContent)) }
                    return
                }
                if head.count >= Self.maxChunksBeforeContent {
                    metrics.error(type: "no_content")
                    throw BackendError.failed("the stream sent \(head.count) chunks without any content")
                }
            }
            throw BackendError.truncated
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
        switch e.state {
        case .starting(let task): task.cancel()
        case .ready, .closed: break
        case .taken, .inSession: e.cancelled = true
        }
        switch e.state {
        case .taken, .inSession: break
        default: e.state = .closed
        }
        streams[s] = e
    }

    /// The committed stream's head, for the session that relays it.
    func takeStream(_ s: StreamID) -> StreamHead? {
        lock.withLock {
            guard case .ready(let head) = streams[s]?.state else { return nil }
            streams[s]!.state = .taken
            return head
        }
    }

    func isCancelled(_ s: StreamID) -> Bool { lock.withLock { streams[s]?.cancelled ?? true } }

    func streamLabel(_ s: StreamID) -> String { lock.withLock { streams[s]?.label ?? "unknown" } }

    static func relayFailure(_ e: BackendError) -> RelayFailure {
        switch e {
        case .timeout: return .idleTimeout
        case .truncated: return .truncated
        case .unavailable, .cancelled: return .connectionLost
        case .overloaded: return .httpStatus(503)
        case .rejected(let s, _): return .httpStatus(s)
        case .failed(let m): return .executorError(m)
        case .upstream(let u): return .httpStatus(u.status)
        }
    }
}
