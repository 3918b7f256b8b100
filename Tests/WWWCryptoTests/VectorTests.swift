import Foundation
import Testing
import WWWCore
@testable import WWWCrypto

/// The fixed key of the vectors: bytes 0x01, 0x02, …, 0x20.
let fixedKey = try! NodeKey(rawRepresentation: Array(1...32))
let fixedPeer = try! NodeKey(rawRepresentation: Array(repeating: 0x42, count: 32))
let fixedNonce: [UInt8] = Array(0xA0...0xAF)
let t0 = Instant(seconds: 1_700_000_000)

/// swift-crypto re-exports CryptoKit on Apple platforms, whose Ed25519 signatures are
/// randomized; BoringSSL (Linux) signs deterministically per RFC 8032.
#if canImport(CryptoKit)
let deterministicSignatures = false
#else
let deterministicSignatures = true
#endif

@Suite struct VectorTests {
    let crypto = SwiftCryptoProvider()

    @Test func sha256MatchesFIPS180Vector() {
        #expect(Hex.encode(crypto.sha256(Array("abc".utf8)))
            == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    /// RFC 8032 §7.1, TEST 1 (empty message).
    @Test func ed25519MatchesRFC8032Test1() throws {
        let key = try NodeKey(rawRepresentation: Hex.decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")!)
        #expect(key.nodeID.hex == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        let expected = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        #expect(crypto.verify(signature: Hex.decode(expected)!, message: [], signer: key.nodeID))
        let sig = key.sign([])
        #expect(crypto.verify(signature: sig, message: [], signer: key.nodeID))
        if deterministicSignatures { #expect(Hex.encode(sig) == expected) }
    }

    @Test func verifyRejectsMalformedInputs() {
        let sig = fixedKey.sign([1, 2, 3])
        #expect(crypto.verify(signature: sig, message: [1, 2, 3], signer: fixedKey.nodeID))
        #expect(!crypto.verify(signature: Array(sig.dropLast()), message: [1, 2, 3], signer: fixedKey.nodeID))
        #expect(!crypto.verify(signature: sig, message: [1, 2, 4], signer: fixedKey.nodeID))
        #expect(!crypto.verify(signature: sig, message: [1, 2, 3], signer: fixedPeer.nodeID))
    }

    @Test func fixedKeyNodeID() {
        #expect(fixedKey.nodeID.hex == "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664")
        #expect(fixedPeer.nodeID.hex == "2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12")
    }

    /// Vectors cross-checked with OpenSSL 3 (Python `cryptography`, `json.dumps(sort_keys=True,
    /// separators=(",", ":"))` over the same fields).
    @Test func fixedEnvelopeCanonicalBytes() {
        let e = Envelope.seal(kind: "ping", body: #"{"seq":7,"text":"hi \"x\""}"#, to: fixedPeer.nodeID,
                              sentAt: t0, nonce: fixedNonce, signer: fixedKey)
        #expect(String(decoding: e.signingBytes, as: UTF8.self) == #"{"body":"{\"seq\":7,\"text\":\"hi \\\"x\\\"\"}","domain":"wwwserve/p2p-envelope/v1","from":"79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664","kind":"ping","nonce":"a0a1a2a3a4a5a6a7a8a9aaabacadaeaf","sentAt":1700000000000000000,"to":"2152f8d19b791d24453242e15f2eab6cb7cffa7b6a5ed30097960e069881db12"}"#)
        let fixedSignature = "39f08362ab5b1c40cf771b85df4706783aa34f6598c4819637125aa2a43ea81894f6bd80b89a9467a54c8d339aa201e62ae675d7d34396a4f2801cfd28ad1f0e"
        #expect(crypto.verify(signature: Hex.decode(fixedSignature)!, message: e.signingBytes, signer: fixedKey.nodeID))
        #expect(e.hasValidSignature(crypto))
        if deterministicSignatures { #expect(Hex.encode(e.signature) == fixedSignature) }
    }

    @Test func unaddressedEnvelopeSignsNullRecipient() {
        let bytes = Envelope.signingBytes(from: fixedKey.nodeID, to: nil, sentAt: Instant(nanoseconds: 5),
                                          nonce: Array(repeating: 0, count: 16), kind: "join", body: "{}")
        #expect(String(decoding: bytes, as: UTF8.self) == #"{"body":"{}","domain":"wwwserve/p2p-envelope/v1","from":"79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664","kind":"join","nonce":"00000000000000000000000000000000","sentAt":5,"to":null}"#)
    }
}
