import Foundation
import WWWCore

/// A signed peer message (DESIGN.md §3): every request and response body under
/// `/p2p/v1/…` is one envelope, JSON-coded.
///
/// Fields:
/// - `from`: the sender's NodeID (its Ed25519 public key; it also verifies the signature).
/// - `to`: the intended recipient; nil only for a join request sent to an address whose
///   key is not yet known (receivers accept nil-`to` only where the route allows it).
/// - `sentAt`: the sender's wall clock, integer nanoseconds since the Unix epoch.
/// - `nonce`: 16 random bytes; `(from, nonce)` is never accepted twice.
/// - `kind`: the message type (e.g. `"ping"`, `"gossip"`); signed, so a message cannot be
///   replayed against a different route. Receivers check it matches the route.
/// - `body`: the message itself as a JSON text (a string). The signature covers this exact
///   string, so the body need not be canonical JSON and may use any JSON the encoder makes
///   (floats included); the receiver verifies first, then decodes the string.
/// - `signature`: 64-byte Ed25519 signature (RFC 8032) over `signingBytes`.
///
/// Wire form (JSON, Codable): `{"body":"{…}","from":"<64 hex>","kind":"ping",
/// "nonce":"<32 hex>","sentAt":1700000000000000000,"signature":"<128 hex>","to":"<64 hex>"|null}`.
public struct Envelope: Hashable, Sendable, Codable {
    /// Domain separation tag: part of the signed bytes so an envelope signature can never
    /// be mistaken for a signature over any other signed object (ledger event, member record).
    public static let domain = "wwwserve/p2p-envelope/v1"
    /// Nonce length in bytes.
    public static let nonceLength = 16

    public let from: NodeID
    public let to: NodeID?
    public let sentAt: Instant
    public let nonce: [UInt8]
    public let kind: String
    public let body: String
    public let signature: [UInt8]

    /// Assembles an envelope from its parts without signing (decoding, tests).
    public init(from: NodeID, to: NodeID?, sentAt: Instant, nonce: [UInt8], kind: String, body: String, signature: [UInt8]) {
        precondition(nonce.count == Self.nonceLength, "an envelope nonce is 16 bytes")
        self.from = from
        self.to = to
        self.sentAt = sentAt
        self.nonce = nonce
        self.kind = kind
        self.body = body
        self.signature = signature
    }

    /// Signs a message. `nonce` must be 16 fresh random bytes (see `randomNonce()`).
    public static func seal(kind: String, body: String, to: NodeID?, sentAt: Instant, nonce: [UInt8], signer: any MessageSigner) -> Envelope {
        let bytes = signingBytes(from: signer.nodeID, to: to, sentAt: sentAt, nonce: nonce, kind: kind, body: body)
        return Envelope(from: signer.nodeID, to: to, sentAt: sentAt, nonce: nonce, kind: kind, body: body, signature: signer.sign(bytes))
    }

    /// Signs an `Encodable` message: the body is its JSON text (sorted keys).
    public static func seal<T: Encodable>(kind: String, message: T, to: NodeID?, sentAt: Instant, signer: any MessageSigner, nonce: [UInt8] = randomNonce()) throws -> Envelope {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let text = String(decoding: try enc.encode(message), as: UTF8.self)
        return seal(kind: kind, body: text, to: to, sentAt: sentAt, nonce: nonce, signer: signer)
    }

    /// 16 bytes from the system's secure random source.
    public static func randomNonce() -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        return (0..<nonceLength).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    /// The canonical bytes that are signed — defined here once:
    /// `CanonicalValue.object` of `{body, domain, from, kind, nonce, sentAt, to}` where
    /// `from`/`to`/`nonce` are lowercase hex strings, `to` is `null` when absent, `sentAt`
    /// is integer nanoseconds, and `domain` is `Envelope.domain`. Sorted-key JSON per
    /// `CanonicalValue` (WWWCore/Canonical.swift).
    public static func signingBytes(from: NodeID, to: NodeID?, sentAt: Instant, nonce: [UInt8], kind: String, body: String) -> [UInt8] {
        CanonicalValue.object([
            "body": .string(body),
            "domain": .string(domain),
            "from": .string(from.hex),
            "kind": .string(kind),
            "nonce": .bytes(nonce),
            "sentAt": .int(sentAt.nanoseconds),
            "to": to.map { .string($0.hex) } ?? .null,
        ]).bytes
    }

    /// This envelope's signing bytes.
    public var signingBytes: [UInt8] {
        Self.signingBytes(from: from, to: to, sentAt: sentAt, nonce: nonce, kind: kind, body: body)
    }

    /// True when `signature` is `from`'s valid signature over `signingBytes`.
    public func hasValidSignature(_ crypto: any CryptoProvider) -> Bool {
        crypto.verify(signature: signature, message: signingBytes, signer: from)
    }

    // MARK: Codable (wire form)

    private enum CodingKeys: String, CodingKey { case from, to, sentAt, nonce, kind, body, signature }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let nonceHex = try c.decode(String.self, forKey: .nonce)
        guard let nonce = Hex.decode(nonceHex), nonce.count == Self.nonceLength else {
            throw DecodingError.dataCorruptedError(forKey: .nonce, in: c, debugDescription: "nonce must be 32 hex characters")
        }
        let sigHex = try c.decode(String.self, forKey: .signature)
        guard let sig = Hex.decode(sigHex), sig.count == 64 else {
            throw DecodingError.dataCorruptedError(forKey: .signature, in: c, debugDescription: "signature must be 128 hex characters")
        }
        self.init(
            from: try c.decode(NodeID.self, forKey: .from),
            to: try c.decodeIfPresent(NodeID.self, forKey: .to),
            sentAt: try c.decode(Instant.self, forKey: .sentAt),
            nonce: nonce,
            kind: try c.decode(String.self, forKey: .kind),
            body: try c.decode(String.self, forKey: .body),
            signature: sig)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(from, forKey: .from)
        if let to { try c.encode(to, forKey: .to) } else { try c.encodeNil(forKey: .to) }
        try c.encode(sentAt, forKey: .sentAt)
        try c.encode(Hex.encode(nonce), forKey: .nonce)
        try c.encode(kind, forKey: .kind)
        try c.encode(body, forKey: .body)
        try c.encode(Hex.encode(signature), forKey: .signature)
    }
}

/// An envelope that passed every check of `EnvelopeVerifier`. Only the verifier makes one.
public struct VerifiedEnvelope: Hashable, Sendable {
    public let envelope: Envelope
    init(_ envelope: Envelope) { self.envelope = envelope }

    public var from: NodeID { envelope.from }
    public var kind: String { envelope.kind }

    /// Decodes the body JSON as `T`.
    public func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(envelope.body.utf8))
    }
}
