import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import WWWAPI
import WWWBackends
import WWWCore
import WWWCrypto

extension NodeRuntime {
    // MARK: One-way messages

    /// `send`: seals the message in a signed envelope and POSTs it (best effort, bounded:
    /// beyond `maxOutstandingSends` in flight a send is dropped and counted). An
    /// `offerAnswer` goes back over its offer's connection instead. Under the lock.
    func send(_ m: PeerMessage, to: NodeID?, address: String, judging: JudgeMaterial? = nil) {
        if case .offerAnswer(let a) = m {
            offerInbox[a.value.job]?.answered(a)
            return
        }
        sendOneWay(kind: m.kind.rawValue, to: to, address: address, judging: judging) { m }
    }

    /// Sends a ledger sync whose events are read from the store first (off the machine's
    /// lock, in the send task): the chains live on disk, not in the machine.
    func sendLedgerSync(_ m: LedgerSyncMessage, fill: [LedgerRange], to: NodeID, address: String) {
        guard let peer else { return }
        sendOneWay(kind: PeerMessage.ledgerSync(m).kind.rawValue, to: to, address: address) { [metrics] in
            var filled = m
            do { filled.events += try peer.store.events(in: fill) } catch {
                metrics.error(type: "store")
            }
            return .ledgerSync(filled)
        }
    }

    /// Posts the message `make` builds in a task, bounded by `maxOutstandingSends`.
    private func sendOneWay(kind: String, to: NodeID?, address: String, judging: JudgeMaterial? = nil,
                            make: @escaping @Sendable () -> PeerMessage) {
        guard let peer else { return }
        guard outstandingSends < Self.maxOutstandingSends else {
            metrics.peerMessage(kind: kind, outcome: "dropped")
            return
        }
        outstandingSends += 1
        Task {
            do {
                let body = PeerMessageBody(fromAddress: peer.advertise, message: make(), judging: judging)
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
        streams[s] = StreamEntry(state: .starting(task), owner: id, label: "network", executor: to)
    }

    private func runOffer(_ s: StreamID, to: NodeID, address: String, offer: OfferMessage, request: ChatCompletionRequest) async {
        guard let peer else { return }
        do {
            let body = OfferBody(fromAddress: peer.advertise, offer: offer, request: request)
            let env = try Envelope.seal(kind: PeerMessageKind.offer.rawValue, message: body, to: to, sentAt: wallClockNow(), signer: peer.key)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: "application/json")
            let post = try HTTPClient.Request(url: "http://\(address)\(PeerPath.offer)", method: .POST, headers: headers,
                                              body: .bytes(try JSONEncoder().encode(env)))
            let deadline = NIODeadline.now() + .nanoseconds(max(1_000_000, (offer.authorization.value.expiresAt - wallClockNow()).nanoseconds))
            let (head, stream) = try await StreamingRequest.start(post, client: peer.client, deadline: deadline)
            // From here on the offer can be stopped at once, whoever reads it (a user who
            // leaves, a deadline, an answer that came too late).
            attachRelay(s, cancel: { stream.cancel() })
            guard let answer = Self.answer(in: head.headers) else {
                var text = ""
                while text.utf8.count < 64 << 10, let part = try? await stream.next() { text += String(buffer: part) }
                stream.cancel()
                let e = OpenAIBackend.statusError(status: Int(head.status.code), headers: head.headers, body: text)
                return streamFailed(s, head.status == .ok ? .failed("the executor sent no signed answer") : e)
            }
            submit(.peerMessage(.offerAnswer(answer), from: to, fromAddress: address))
            guard head.status == .ok, answer.value.accepted else { return stream.cancel() }
            await readHead(s, ChunkStream.sse(stream, onEnd: {}).makeAsyncIterator())
        } catch {
            streamFailed(s, OpenAIBackend.map(error))
        }
    }

    /// The signed answer in the response head, if it decodes.
    static func answer(in headers: HTTPHeaders) -> Signed<OfferAnswer>? {
        guard let text = headers.first(name: PeerPath.answerHeader) else { return nil }
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

/// The executor's side of one offer connection: the machine's answer, then the accepted
/// job's engine stream read to its first content in a task of its own (so a requester that
/// goes away while the engine queues or reads the prompt cancels it), handed to the route
/// that writes them to the requester.
final class OfferConnection: @unchecked Sendable {
    enum Event: Sendable {
        case answer(Signed<OfferAnswer>)
        case started(StreamID, Result<StreamHead, BackendError>)
    }

    let job: JobID
    let request: ChatCompletionRequest
    private let lock = NSLock()
    private var task: Task<Void, Never>?
    private var cancelled = false
    private var hasAnswer = false
    private(set) var stream: StreamID?
    private let events = Mailbox<Event>()

    init(job: JobID, request: ChatCompletionRequest) {
        self.job = job
        self.request = request
    }

    /// The next event; nil once cancelled.
    func next() async -> Event? { await events.next() }

    func answered(_ a: Signed<OfferAnswer>) {
        lock.withLock { hasAnswer = true }
        events.yield(.answer(a))
    }

    /// Whether the machine answered (it does so within the `submit` of the offer, or never).
    var wasAnswered: Bool { lock.withLock { hasAnswer } }

    /// The stream the machine runs the job on, once accepted.
    var acceptedStream: StreamID? { lock.withLock { stream } }

    /// The job could not start (no such backend): the route writes the error.
    func failStart(stream s: StreamID, _ e: BackendError) {
        lock.withLock { stream = s }
        events.yield(.started(s, .failure(e)))
    }

    /// Starts the accepted job on `backend` (called by `runInference`, under the runtime lock).
    func start(stream s: StreamID, backend: any Backend, model: BackendModel, cheat: Cheat? = nil) {
        let request = self.request
        let events = self.events
        let seed = UInt64(truncatingIfNeeded: job.hashValue)
        let t = Task {
            do {
                let engine = try await backend.chat(request, model: model)
                let stream = cheat?.apply(engine, seed: seed) ?? engine
                events.yield(.started(s, .success(try await NodeRuntime.readToFirstContent(stream.makeAsyncIterator()))))
            } catch {
                events.yield(.started(s, .failure(OpenAIBackend.map(error))))
            }
        }
        lock.withLock {
            stream = s
            task = t
            if cancelled { t.cancel() }
        }
    }

    /// The machine gave up on the job (`cancelStream`), or the requester went away.
    func cancel() {
        lock.withLock {
            cancelled = true
            task?.cancel()
        }
        events.finish()
    }

    var isCancelled: Bool { lock.withLock { cancelled } }
}
