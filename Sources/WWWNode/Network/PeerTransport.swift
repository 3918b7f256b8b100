import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import WWWAPI
import WWWBackends
import WWWCore
import WWWCrypto

extension NodeRuntime {
    // MARK: One-way messages

    /// `send`: seals the message in a signed envelope and POSTs it (best effort, bounded:
    /// beyond `maxOutstandingSends` in flight a send is dropped and counted). An
    /// `offerAnswer` goes back over its offer's connection instead. Under the lock.
    func send(_ m: PeerMessage, to: NodeID?, address: String) {
        guard let peer else { return }
        if case .offerAnswer(let a) = m {
            offerInbox[a.value.job]?.answered(a)
            return
        }
        let kind = m.kind.rawValue
        guard outstandingSends < Self.maxOutstandingSends else {
            metrics.peerMessage(kind: kind, outcome: "dropped")
            return
        }
        outstandingSends += 1
        Task {
            do {
                let body = PeerMessageBody(fromAddress: peer.advertise, message: m)
                let env = try Envelope.seal(kind: kind, message: body, to: to, sentAt: wallClockNow(), signer: peer.key)
                let response = try await self.post(env, address: address, path: PeerPath.message, timeout: peer.peerTimeout)
                _ = try? await response.body.collect(upTo: 1 << 16)
                self.metrics.peerMessage(kind: kind, outcome: response.status == .accepted ? "sent" : "refused_by_peer")
            } catch {
                self.metrics.peerMessage(kind: kind, outcome: "send_failed")
            }
            self.lock.withLock { self.outstandingSends -= 1 }
        }
    }

    func post(_ env: Envelope, address: String, path: String, timeout: Duration) async throws -> HTTPClientResponse {
        guard let peer else { throw BackendError.unavailable("not a network node", retryAfter: 1) }
        var req = HTTPClientRequest(url: "http://\(address)\(path)")
        req.method = .POST
        req.headers.add(name: "Content-Type", value: "application/json")
        req.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(env)))
        return try await peer.client.execute(req, timeout: .nanoseconds(max(timeout.nanoseconds, 1_000_000)))
    }

    // MARK: Requester: offers

    /// `openOffer`: POSTs the offer with the user's request; feeds the executor's signed
    /// answer to the machine, then reads the accepted stream until first content. A refused
    /// connection or a missing answer is reported at once as a failed stream. Under the lock.
    func openOffer(_ s: StreamID, to: NodeID, address: String, offer: OfferMessage, request id: WWWCore.RequestID) {
        guard let request = sessions[id]?.request else { return failLater(s, .connectionLost) }
        let task = Task { await self.runOffer(s, to: to, address: address, offer: offer, request: request) }
        streams[s] = StreamEntry(state: .starting(task), owner: id, label: "network")
    }

    private func runOffer(_ s: StreamID, to: NodeID, address: String, offer: OfferMessage, request: ChatCompletionRequest) async {
        guard let peer else { return }
        do {
            let body = OfferBody(fromAddress: peer.advertise, offer: offer, request: request)
            let env = try Envelope.seal(kind: PeerMessageKind.offer.rawValue, message: body, to: to, sentAt: wallClockNow(), signer: peer.key)
            let response = try await post(env, address: address, path: PeerPath.offer,
                                          timeout: offer.authorization.value.expiresAt - wallClockNow())
            guard let answer = Self.answer(in: response) else {
                let e = await OpenAIBackend.statusError(response)
                return streamFailed(s, response.status == .ok ? .failed("the executor sent no signed answer") : e)
            }
            submit(.peerMessage(.offerAnswer(answer), from: to, fromAddress: address))
            guard response.status == .ok, answer.value.accepted else {
                _ = try? await response.body.collect(upTo: 1 << 16)
                return
            }
            await readHead(s, ChunkStream.sse(response.body, onEnd: {}).makeAsyncIterator())
        } catch {
            streamFailed(s, OpenAIBackend.map(error))
        }
    }

    /// The signed answer in the response head, if it decodes.
    static func answer(in response: HTTPClientResponse) -> Signed<OfferAnswer>? {
        guard let text = response.headers.first(name: PeerPath.answerHeader) else { return nil }
        return try? JSONDecoder().decode(Signed<OfferAnswer>.self, from: Data(text.utf8))
    }

    // MARK: Executor: offer connections

    /// Registers an offer connection; false when one for the same job is open already.
    func register(_ c: OfferConnection) -> Bool {
        lock.withLock {
            guard offerInbox[c.job] == nil else { return false }
            offerInbox[c.job] = c
            return true
        }
    }

    func unregister(_ c: OfferConnection) {
        lock.withLock { if offerInbox[c.job] === c { offerInbox[c.job] = nil } }
    }
}

/// The executor's side of one offer connection: the machine's answer, then the engine
/// stream of the accepted job, handed to the route that writes them to the requester.
final class OfferConnection: @unchecked Sendable {
    enum Event: Sendable {
        case answer(Signed<OfferAnswer>)
        case started(StreamID, Result<ChunkStream, BackendError>)
    }

    let job: JobID
    let request: ChatCompletionRequest
    private let lock = NSLock()
    private var task: Task<Void, Never>?
    private var cancelled = false
    private var hasAnswer = false
    private(set) var stream: StreamID?
    private let continuation: AsyncStream<Event>.Continuation
    private let events: SequentialBox<AsyncStream<Event>.Iterator>

    init(job: JobID, request: ChatCompletionRequest) {
        self.job = job
        self.request = request
        let (s, c) = AsyncStream<Event>.makeStream()
        continuation = c
        events = SequentialBox(s.makeAsyncIterator())
    }

    func next() async -> Event? { await events.value.next() }

    func answered(_ a: Signed<OfferAnswer>) {
        lock.withLock { hasAnswer = true }
        continuation.yield(.answer(a))
    }

    /// Whether the machine answered (it does so within the `submit` of the offer, or never).
    var wasAnswered: Bool { lock.withLock { hasAnswer } }

    /// The job could not start (no such backend): the route writes the error.
    func failStart(stream s: StreamID, _ e: BackendError) {
        lock.withLock { stream = s }
        continuation.yield(.started(s, .failure(e)))
    }

    /// Starts the accepted job on `backend` (called by `runInference`, under the runtime lock).
    func start(stream s: StreamID, backend: any Backend, model: BackendModel) {
        let request = self.request
        let continuation = self.continuation
        let t = Task {
            do {
                continuation.yield(.started(s, .success(try await backend.chat(request, model: model))))
            } catch {
                continuation.yield(.started(s, .failure(OpenAIBackend.map(error))))
            }
        }
        lock.withLock {
            stream = s
            task = t
            if cancelled { t.cancel() }
        }
    }

    /// The machine gave up on the job (`cancelStream`).
    func cancel() {
        lock.withLock {
            cancelled = true
            task?.cancel()
        }
        continuation.finish()
    }

    var isCancelled: Bool { lock.withLock { cancelled } }
}
