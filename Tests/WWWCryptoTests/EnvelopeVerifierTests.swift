import Foundation
import Testing
import WWWCore
@testable import WWWCrypto

@Suite struct EnvelopeVerifierTests {
    let crypto = SwiftCryptoProvider()
    var me: NodeID { fixedPeer.nodeID }

    func envelope(to: NodeID?, sentAt: Instant = t0, nonce: [UInt8] = fixedNonce, body: String = "{}",
                  signer: NodeKey = fixedKey) -> Envelope {
        Envelope.seal(kind: "ping", body: body, to: to, sentAt: sentAt, nonce: nonce, signer: signer)
    }

    @Test func acceptsValidEnvelopeOnce() throws {
        var v = EnvelopeVerifier(crypto: crypto)
        let e = envelope(to: me)
        let ok = try v.verify(e, me: me, now: t0).get()
        #expect(ok.envelope == e)
        #expect(ok.from == fixedKey.nodeID)
        #expect(v.verify(e, me: me, now: t0 + .seconds(1)) == .failure(.replayedNonce))
        #expect(v.accepted == 1)
        #expect(v.rejections == [.replayedNonce: 1])
    }

    @Test func wrongRecipient() {
        var v = EnvelopeVerifier(crypto: crypto)
        #expect(v.verify(envelope(to: fixedKey.nodeID), me: me, now: t0) == .failure(.wrongRecipient))
        #expect(v.rejections == [.wrongRecipient: 1])
    }

    @Test func unaddressedOnlyWhereAllowed() {
        var v = EnvelopeVerifier(crypto: crypto)
        let e = envelope(to: nil)
        #expect(v.verify(e, me: me, now: t0) == .failure(.wrongRecipient))
        #expect(v.verify(e, me: me, now: t0, allowUnaddressed: true) == .success(VerifiedEnvelope(e)))
    }

    @Test func staleOutsideWindowEitherWay() {
        var v = EnvelopeVerifier(crypto: crypto, window: .seconds(60))
        let e = envelope(to: me)
        #expect(v.verify(e, me: me, now: t0 + .seconds(60) + .nanoseconds(1)) == .failure(.stale))
        #expect(v.verify(e, me: me, now: t0 - .seconds(60) - .nanoseconds(1)) == .failure(.stale))
        #expect(v.rejections == [.stale: 2])
        // The window is inclusive at both ends.
        #expect(v.verify(e, me: me, now: t0 - .seconds(60)) == .success(VerifiedEnvelope(e)))
        let e2 = envelope(to: me, nonce: Array(repeating: 7, count: 16))
        #expect(v.verify(e2, me: me, now: t0 + .seconds(60)) == .success(VerifiedEnvelope(e2)))
    }

    @Test func badSignatureOnTamperedFields() {
        var v = EnvelopeVerifier(crypto: crypto)
        let e = envelope(to: me, body: #"{"amount":1}"#)
        let tamperedBody = Envelope(from: e.from, to: e.to, sentAt: e.sentAt, nonce: e.nonce, kind: e.kind,
                                    body: #"{"amount":1000}"#, signature: e.signature)
        let tamperedKind = Envelope(from: e.from, to: e.to, sentAt: e.sentAt, nonce: e.nonce, kind: "gossip",
                                    body: e.body, signature: e.signature)
        let tamperedTime = Envelope(from: e.from, to: e.to, sentAt: e.sentAt + .seconds(1), nonce: e.nonce,
                                    kind: e.kind, body: e.body, signature: e.signature)
        let otherSender = Envelope(from: fixedPeer.nodeID, to: e.to, sentAt: e.sentAt, nonce: e.nonce,
                                   kind: e.kind, body: e.body, signature: e.signature)
        for bad in [tamperedBody, tamperedKind, tamperedTime, otherSender] {
            #expect(v.verify(bad, me: me, now: t0) == .failure(.badSignature))
        }
        #expect(v.rejections == [.badSignature: 4])
        // Forged envelopes never enter the replay cache: the genuine one is still accepted.
        #expect(v.rememberedNonces == 0)
        #expect(v.verify(e, me: me, now: t0) == .success(VerifiedEnvelope(e)))
    }

    @Test func nonceIsScopedToSender() {
        var v = EnvelopeVerifier(crypto: crypto)
        let third = try! NodeKey(rawRepresentation: Array(repeating: 9, count: 32))
        let a = envelope(to: me, signer: fixedKey)
        let b = envelope(to: me, signer: third)
        #expect(v.verify(a, me: me, now: t0) == .success(VerifiedEnvelope(a)))
        #expect(v.verify(b, me: me, now: t0) == .success(VerifiedEnvelope(b)))
        #expect(v.rememberedNonces == 2)
    }

    /// One sender (a stranger's fresh key, say) cannot take the whole cache.
    @Test func oneSenderGetsItsShareOnly() {
        var v = EnvelopeVerifier(crypto: crypto, window: .seconds(60), capacity: 32)
        #expect(v.perSenderCapacity == 2)
        let other = try! NodeKey(rawRepresentation: Array(repeating: 9, count: 32))
        let e = (1...3).map { envelope(to: me, sentAt: t0, nonce: Array(repeating: UInt8($0), count: 16)) }
        #expect(v.verify(e[0], me: me, now: t0) == .success(VerifiedEnvelope(e[0])))
        #expect(v.verify(e[1], me: me, now: t0) == .success(VerifiedEnvelope(e[1])))
        #expect(v.verify(e[2], me: me, now: t0) == .failure(.senderOverQuota))
        let fromOther = envelope(to: me, signer: other)
        #expect(v.verify(fromOther, me: me, now: t0) == .success(VerifiedEnvelope(fromOther)))
        // Its share frees up as its nonces expire.
        let later = t0 + .seconds(61)
        let e4 = envelope(to: me, sentAt: later, nonce: Array(repeating: 4, count: 16))
        #expect(v.verify(e4, me: me, now: later) == .success(VerifiedEnvelope(e4)))
    }

    @Test func fullCacheRejectsUntilEntriesExpire() {
        var v = EnvelopeVerifier(crypto: crypto, window: .seconds(60), capacity: 2, perSenderCapacity: 2)
        let e1 = envelope(to: me, sentAt: t0, nonce: Array(repeating: 1, count: 16))
        let e2 = envelope(to: me, sentAt: t0 + .seconds(10), nonce: Array(repeating: 2, count: 16))
        let e3 = envelope(to: me, sentAt: t0 + .seconds(20), nonce: Array(repeating: 3, count: 16))
        #expect(v.verify(e1, me: me, now: t0 + .seconds(20)) == .success(VerifiedEnvelope(e1)))
        #expect(v.verify(e2, me: me, now: t0 + .seconds(20)) == .success(VerifiedEnvelope(e2)))
        #expect(v.verify(e3, me: me, now: t0 + .seconds(20)) == .failure(.replayCacheFull))
        #expect(v.rejections == [.replayCacheFull: 1])
        // e1's nonce expires after t0 + 60 s; e2's is still inside its window and kept.
        let now = t0 + .seconds(61)
        #expect(v.verify(e3, me: me, now: now) == .success(VerifiedEnvelope(e3)))
        #expect(v.rememberedNonces == 2)
        #expect(v.verify(e2, me: me, now: now) == .failure(.replayedNonce))
    }

    @Test func lockedWrapperCountsToo() {
        let v = LockedEnvelopeVerifier(EnvelopeVerifier(crypto: crypto))
        let e = envelope(to: me)
        #expect(v.verify(e, me: me, now: t0) == .success(VerifiedEnvelope(e)))
        #expect(v.verify(e, me: me, now: t0) == .failure(.replayedNonce))
        #expect(v.snapshot.accepted == 1)
        #expect(v.snapshot.rejections[.replayedNonce] == 1)
    }
}

@Suite struct EnvelopeWireTests {
    struct Ping: Codable, Equatable { var seq: Int; var note: String; var load: Double }

    @Test func jsonRoundTripKeepsSignatureValid() throws {
        let e = try Envelope.seal(kind: "ping", message: Ping(seq: 3, note: "a/b \"q\"", load: 0.25),
                                  to: fixedPeer.nodeID, sentAt: t0, signer: fixedKey)
        let data = try JSONEncoder().encode(e)
        let back = try JSONDecoder().decode(Envelope.self, from: data)
        #expect(back == e)
        var v = EnvelopeVerifier(crypto: SwiftCryptoProvider())
        let verified = try v.verify(back, me: fixedPeer.nodeID, now: t0).get()
        #expect(try verified.decode(Ping.self) == Ping(seq: 3, note: "a/b \"q\"", load: 0.25))
    }

    @Test func wireFieldsAreHexAndNullRecipientIsExplicit() throws {
        let e = Envelope.seal(kind: "join", body: "{}", to: nil, sentAt: Instant(nanoseconds: 5),
                              nonce: fixedNonce, signer: fixedKey)
        let obj = try JSONSerialization.jsonObject(with: JSONEncoder().encode(e)) as! [String: Any]
        #expect(Set(obj.keys) == ["from", "to", "sentAt", "nonce", "kind", "body", "signature"])
        #expect(obj["to"] is NSNull)
        #expect(obj["nonce"] as? String == "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf")
        #expect(obj["from"] as? String == fixedKey.nodeID.hex)
        #expect((obj["signature"] as? String)?.count == 128)
        #expect((obj["sentAt"] as? NSNumber)?.int64Value == 5)
    }

    @Test func decoderRejectsMalformedNonceAndSignature() throws {
        let e = Envelope.seal(kind: "ping", body: "{}", to: nil, sentAt: t0, nonce: fixedNonce, signer: fixedKey)
        var obj = try JSONSerialization.jsonObject(with: JSONEncoder().encode(e)) as! [String: Any]
        obj["nonce"] = "a0a1"
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(Envelope.self, from: JSONSerialization.data(withJSONObject: obj))
        }
        obj["nonce"] = Hex.encode(fixedNonce)
        obj["signature"] = "zz"
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(Envelope.self, from: JSONSerialization.data(withJSONObject: obj))
        }
    }
}
