import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import WWWAPI
import WWWBackends
import WWWCore
import WWWCrypto

/// The peer protocol's HTTP surface under `/p2p/v1/` (DESIGN.md §3; `PeerPath`). Every POST
/// carries a signed `Envelope`; the route verifies it and hands the message to the node
/// machine. Reads (`peers`, `credits`) show this node's view.
struct PeerRoutes: Sendable {
    let http: NodeHTTP
    let runtime: NodeRuntime
    let peer: PeerContext

    /// Envelopes are small except offers, which carry a whole chat request, and ledger
    /// syncs, which carry up to a batch of events.
    var maxEnvelopeBytes: Int { 2 * http.config.node.maxBodyBytes + (64 << 10) }

    func add(to router: Router<NodeRequestContext>) {
        router.post(RouterPath(PeerPath.message)) { req, context in try await self.message(req, channel: context.channel) }
        router.post(RouterPath(PeerPath.offer)) { req, context in try await self.offer(req, channel: context.channel) }
        router.get("/p2p/v1/peers") { _, _ in try NodeHTTP.json(runtime.peersView()) }
        router.get("/p2p/v1/credits") { _, _ in try NodeHTTP.json(runtime.creditsView()) }
    }

    // MARK: Envelopes

    /// Reads an envelope; with `channel`, its body must arrive within `within` (a trickled
    /// body must not hold a slot).
    func envelope(_ request: Request, channel: (any Channel)? = nil, within: Duration = .seconds(10)) async throws -> Envelope {
        let body = try await NodeHTTP.readBody(request, limit: maxEnvelopeBytes, channel: channel,
                                               within: .nanoseconds(max(within.nanoseconds, 1_000_000_000)))
        do {
            return try JSONDecoder().decode(Envelope.self, from: Data(buffer: body))
        } catch {
            http.metrics.peerMessage(kind: String(request.uri.path.split(separator: "/").last ?? "unknown"), outcome: "rejected_invalid_envelope")
            throw APIError.invalidRequest("malformed envelope: \(error)", code: "invalid_envelope")
        }
    }

    /// Checks signature, recipient, freshness and replay; counts the outcome.
    func verify(_ env: Envelope, kinds: Set<PeerMessageKind>, allowUnaddressed: Bool) throws -> VerifiedEnvelope {
        guard let kind = PeerMessageKind(rawValue: env.kind), kinds.contains(kind) else {
            // Unsigned input never becomes a metric label (one series per junk kind would grow without bound).
            http.metrics.peerMessage(kind: PeerMessageKind(rawValue: env.kind)?.rawValue ?? "unknown", outcome: "rejected_wrong_kind")
            throw APIError.invalidRequest("envelope kind '\(env.kind.prefix(32))' does not belong on this route", code: "wrong_kind")
        }
        switch peer.verifier.verify(env, me: peer.key.nodeID, now: wallClockNow(), allowUnaddressed: allowUnaddressed) {
        case .success(let v):
            http.metrics.peerMessage(kind: env.kind, outcome: "accepted")
            return v
        case .failure(let r):
            http.metrics.peerMessage(kind: env.kind, outcome: "rejected_\(r)")
            throw APIError(status: 401, message: "envelope rejected: \(r)", type: "invalid_request_error", code: "envelope_\(r)")
        }
    }

    /// Decodes a verified envelope's body; a body that does not decode is the sender's
    /// fault (400), counted as `rejected_malformed`.
    func decode<T: Decodable>(_ v: VerifiedEnvelope, _ type: T.Type) throws -> T {
        do {
            return try v.decode(type)
        } catch {
            http.metrics.peerMessage(kind: v.kind, outcome: "rejected_malformed")
            throw APIError.invalidRequest("the envelope's body is not a valid \(v.kind) message", code: "invalid_message")
        }
    }

    func checkAddress(_ address: String, kind: String) throws {
        guard isHostPort(address) else {
            http.metrics.peerMessage(kind: kind, outcome: "rejected_malformed")
            throw APIError.invalidRequest("fromAddress must be host:port", code: "invalid_message")
        }
    }

    // MARK: Routes

    /// One-way messages (membership, ledger): verified, then handed to the machine; 202.
    /// The body is read first (within the peer timeout, so a trickling sender holds no
    /// slot); then, past `InboundGate.limit` messages being verified and applied, a message
    /// is shed at once (503, not verified): a node that falls behind drops gossip — which
    /// the protocol repeats — instead of queueing it until it is stale.
    func message(_ request: Request, channel: (any Channel)? = nil) async throws -> Response {
        let env = try await envelope(request, channel: channel, within: peer.peerTimeout)
        guard peer.inbound.enter() else {
            http.metrics.peerMessage(kind: "membership_or_ledger", outcome: "shed")
            throw APIError.unavailable("this node is shedding peer messages", retryAfter: 1)
        }
        defer { peer.inbound.leave() }
        let v = try verify(env, kinds: [.membership, .ledger, .judgeRequest, .judgeVerdict],
                           allowUnaddressed: env.kind == PeerMessageKind.membership.rawValue)
        let body = try decode(v, PeerMessageBody.self)
        try checkAddress(body.fromAddress, kind: v.kind)
        guard body.message.kind.rawValue == v.kind else {
            http.metrics.peerMessage(kind: v.kind, outcome: "rejected_malformed")
            throw APIError.invalidRequest("the message is not of the envelope's kind", code: "invalid_message")
        }
        if case .judgeRequest(let spec) = body.message { return try judgeRequest(spec, body: body, from: v.from) }
        guard body.judging == nil else {
            http.metrics.peerMessage(kind: v.kind, outcome: "rejected_malformed")
            throw APIError.invalidRequest("only a judgeRequest carries judging texts", code: "invalid_message")
        }
        runtime.submit(.peerMessage(body.message, from: v.from, fromAddress: body.fromAddress))
        return Response(status: .accepted)
    }

    /// A judge request: its texts (which must hash to the pair's response hashes) are parked
    /// in the shell, then the machine decides whether this node judges (`runJudgement`).
    private func judgeRequest(_ spec: DuelPairSpec, body: PeerMessageBody, from: NodeID) throws -> Response {
        let kind = PeerMessageKind.judgeRequest.rawValue
        guard let material = body.judging else {
            http.metrics.peerMessage(kind: kind, outcome: "rejected_malformed")
            throw APIError.invalidRequest("a judgeRequest must carry the prompt and both answers", code: "invalid_message")
        }
        switch runtime.parkJudgeMaterial(spec, material) {
        case nil:
            break
        case .duplicate?:
            return Response(status: .accepted)
        case .hashMismatch?:
            http.metrics.peerMessage(kind: kind, outcome: "rejected_hash_mismatch")
            throw APIError.invalidRequest("an answer's SHA-256 is not the pair's response hash", code: "invalid_message")
        case .notJudging?:
            http.metrics.peerMessage(kind: kind, outcome: "rejected_not_judging")
            throw APIError(status: 409, message: "this node does not judge", type: "invalid_request_error", code: "not_judging")
        case .busy?:
            http.metrics.peerMessage(kind: kind, outcome: "shed")
            throw APIError.unavailable("this node has too many judge requests waiting", retryAfter: 5)
        }
        runtime.submit(.peerMessage(.judgeRequest(spec), from: from, fromAddress: body.fromAddress))
        runtime.unparkJudgeMaterial(spec.job)   // not taken (declined): forget the texts
        return Response(status: .accepted)
    }

    /// The executor's side of §6.3–6.4: the machine answers (signed, in the response head);
    /// on accept the engine's chunks stream back and, once delivered, the machine publishes
    /// the jobReceipt.
    func offer(_ request: Request, channel: (any Channel)? = nil) async throws -> Response {
        let env = try await envelope(request, channel: channel)
        let v = try verify(env, kinds: [.offer], allowUnaddressed: false)
        let body = try decode(v, OfferBody.self)
        try checkAddress(body.fromAddress, kind: v.kind)
        guard body.offer.authorization.value.model == body.request.model else {
            http.metrics.peerMessage(kind: v.kind, outcome: "rejected_malformed")
            throw APIError.invalidRequest("the authorization's model differs from the request's", param: "model", code: "invalid_message")
        }
        // The offered request gets the same bounds as a user's (it reaches this node's engine).
        if let problem = body.request.validationProblem {
            http.metrics.peerMessage(kind: v.kind, outcome: "rejected_malformed")
            throw problem
        }
        let connection = OfferConnection(job: body.offer.job, request: body.request)
        guard runtime.register(connection) else {
            throw APIError(status: 409, message: "an offer for this job is already open", type: "invalid_request_error", code: "duplicate_offer")
        }
        runtime.submit(.peerMessage(.offer(body.offer), from: v.from, fromAddress: body.fromAddress))
        guard connection.wasAnswered, case .answer(let answer)? = await connection.next() else {
            runtime.unregister(connection)
            throw APIError.unavailable("this node did not answer the offer", retryAfter: 1)
        }
        var headers = NodeRuntime.sseHeaders
        headers[HTTPField.Name(PeerPath.answerHeader)!] = String(decoding: try JSONEncoder().encode(answer), as: UTF8.self)
        guard answer.value.accepted else {
            runtime.unregister(connection)
            headers[.contentType] = "application/json"
            return Response(status: .conflict, headers: headers,
                            body: .init(byteBuffer: ByteBuffer(data: try JSONEncoder().encode(answer))))
        }
        guard let s = connection.acceptedStream else {
            runtime.unregister(connection)
            throw APIError.internal("the job was accepted but not started")
        }
        // The requester going away (its connection closing) cancels the job at once, while
        // the engine queues or reads the prompt as well as between tokens.
        if let channel {
            runtime.connections.arm(channel) { [runtime] in
                connection.cancel()
                runtime.submit(.stream(s, .failed(.connectionLost)))
            }
        }
        // The answer goes out now, in the response head; the body waits for the engine.
        return Response(status: .ok, headers: headers, body: .init { writer in
            await self.relayJob(s, connection: connection, to: &writer, lastWrite: {
                if let channel { runtime.connections.disarm(channel) }
            })
            if let channel { runtime.connections.disarm(channel) }
        })
    }

    /// Writes the job's chunks to the requester, then reports the end to the machine.
    /// `lastWrite` runs just before the final `[DONE]`: from then on a failed write is the
    /// only sign of a requester that went away, so one that closes its connection as soon
    /// as it has read the whole answer cannot race the receipt (the job was delivered).
    private func relayJob(_ s: StreamID, connection: OfferConnection, to writer: inout any ResponseBodyWriter,
                          lastWrite: () -> Void) async {
        defer { runtime.unregister(connection) }
        let head: StreamHead
        switch await connection.next() {
        case .started(_, .success(let h))?:
            head = h
        case .started(_, .failure(let e))?:
            try? await writer.write(ByteBuffer(bytes: SSEWriter.event(e.apiError.jsonData())))
            try? await writer.finish(nil)
            return runtime.submit(.stream(s, .failed(NodeRuntime.relayFailure(e))))
        case .answer?, nil:
            // Cancelled before the engine answered (the requester left, or the machine gave up).
            try? await writer.write(ByteBuffer(bytes: SSEWriter.event(BackendError.cancelled.apiError.jsonData())))
            try? await writer.finish(nil)
            return runtime.submit(.stream(s, .failed(.connectionLost)))
        }
        var acc = StreamAccumulator()
        let box = head.rest
        var source: BackendError?
        do {
            for chunk in head.chunks {
                acc.add(chunk)
                try await writer.write(ByteBuffer(bytes: SSEWriter.event(try JSONEncoder.openAI.encode(chunk))))
            }
            while true {
                let chunk: ChatCompletionChunk?
                do { chunk = try await box.value.next() } catch { source = OpenAIBackend.map(error); break }
                guard let chunk else { break }
                acc.add(chunk)
                if connection.isCancelled { source = .cancelled; break }
                try await writer.write(ByteBuffer(bytes: SSEWriter.event(try JSONEncoder.openAI.encode(chunk))))
            }
            if let source {
                try? await writer.write(ByteBuffer(bytes: SSEWriter.event(source.apiError.jsonData())))
                try? await writer.finish(nil)
                return runtime.submit(.stream(s, .failed(NodeRuntime.relayFailure(source))))
            }
            lastWrite()
            try await writer.write(ByteBuffer(bytes: SSEWriter.done))
            try await writer.finish(nil)
        } catch {
            // The requester went away: no delivery, no receipt.
            box.value = ChunkStream.empty.makeAsyncIterator()
            http.metrics.upstreamCancelled(backend: "peer-job")
            return runtime.submit(.stream(s, .failed(.connectionLost)))
        }
        let usage = acc.usage.map { TokenUsage(promptTokens: $0.promptTokens, completionTokens: $0.completionTokens) }
        let hash = peer.crypto.sha256(Array(acc.content.utf8))
        runtime.submit(.stream(s, .finished(StreamOutcome(responseHash: hash, usage: usage))))
    }
}
