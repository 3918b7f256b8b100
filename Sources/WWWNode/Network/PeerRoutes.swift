import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import WWWAPI
import WWWBackends
import WWWCore
import WWWCrypto

/// The peer protocol's HTTP surface under `/p2p/v1/` (DESIGN.md §3). Every POST carries a
/// signed `Envelope`; reads (`peers`, `credits`) show this node's view.
struct PeerRoutes: Sendable {
    let http: NodeHTTP
    let network: PeerNetwork

    /// Envelopes are small except offers, which carry a whole chat request.
    var maxEnvelopeBytes: Int { 2 * http.config.node.maxBodyBytes + (64 << 10) }

    func add(to router: Router<BasicRequestContext>) {
        router.post("/p2p/v1/membership") { req, _ in
            try await network.receiveMembership(try await self.envelope(req))
            return Response(status: .accepted)
        }
        router.post("/p2p/v1/ledger") { req, _ in
            try NodeHTTP.json(try await network.receiveLedger(try await self.envelope(req)))
        }
        router.post("/p2p/v1/offer") { req, _ in try await self.offer(req) }
        router.get("/p2p/v1/peers") { _, _ in try NodeHTTP.json(await network.peersView()) }
        router.get("/p2p/v1/credits") { _, _ in try NodeHTTP.json(await network.creditsView()) }
    }

    func envelope(_ request: Request) async throws -> Envelope {
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: maxEnvelopeBytes)
        } catch {
            throw APIError.bodyTooLarge(limit: maxEnvelopeBytes)
        }
        do {
            return try JSONDecoder().decode(Envelope.self, from: Data(buffer: body))
        } catch {
            http.metrics.peerMessage(kind: String(request.uri.path.split(separator: "/").last ?? "unknown"), outcome: "rejected_invalid_envelope")
            throw APIError.invalidRequest("malformed envelope: \(error)", code: "invalid_envelope")
        }
    }

    /// The executor's side of §6.3–6.4: accept or reject; on accept stream the engine's
    /// chunks back and, once the answer was delivered, publish the jobReceipt.
    func offer(_ request: Request) async throws -> Response {
        let env = try await envelope(request)
        let offer: OfferMessage
        do {
            offer = try await network.admitOffer(env)
        } catch let r as OfferRejected {
            return try NodeHTTP.json(OfferAnswer(accepted: false, reason: r.reason), status: .conflict)
        }
        let job = offer.authorization.value.job
        guard case .success(let lease) = http.pool.admit(model: offer.request.model, own: false) else {
            await network.abandonJob(job)
            return try NodeHTTP.json(OfferAnswer(accepted: false, reason: OfferRejectionReason.overloaded.rawValue), status: .conflict)
        }
        let scope = RequestScope(backendName: lease.backend.name, release: { lease.release() }, metrics: http.metrics)
        let stream: ChunkStream
        do {
            stream = try await lease.backend.chat(offer.request, model: lease.model)
        } catch {
            let e = ChatHandler.apiError(error)
            scope.finish(status: e.status, usage: nil)
            await network.abandonJob(job)
            throw e
        }
        let box = SequentialBox(stream.makeAsyncIterator())
        let network = self.network
        let metrics = http.metrics
        var headers = ChatHandler.sseHeaders
        headers[HTTPField.Name("X-WWWServe-Accepted")!] = "true"
        return Response(status: .ok, headers: headers, body: .init { writer in
            var acc = StreamAccumulator()
            do {
                while let chunk = try await box.value.next() {
                    acc.add(chunk)
                    try await writer.write(ByteBuffer(bytes: SSEWriter.event(try JSONEncoder.openAI.encode(chunk))))
                }
                try await writer.write(ByteBuffer(bytes: SSEWriter.done))
                try await writer.finish(nil)
            } catch {
                // The requester went away or the engine failed: no delivery, no receipt.
                box.value = ChunkStream.empty.makeAsyncIterator()
                if !(error is BackendError) { metrics.upstreamCancelled(backend: scope.backendName) }
                try? await writer.write(ByteBuffer(bytes: SSEWriter.event(ChatHandler.apiError(error).jsonData())))
                try? await writer.finish(nil)
                scope.finish(status: 499, usage: acc.usage)
                await network.abandonJob(job)
                return
            }
            scope.finish(status: 200, usage: acc.usage)
            await network.recordReceipt(offer.authorization, content: acc.content, usage: acc.usage)
        })
    }
}
