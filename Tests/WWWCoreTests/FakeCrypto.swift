import WWWCore

/// A deterministic stand-in for SHA-256/Ed25519 in tests. NOT secure: anyone who knows a
/// public key can "sign". Hash: four FNV-1a-64 lanes with different offsets (32 bytes).
/// Signature: fakeHash(publicKey ++ message) ++ fakeHash(message ++ publicKey) (64 bytes).
func fakeHash(_ data: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(32)
    for lane in 0..<4 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 &+ UInt64(lane) &* 0x9E37_79B9_7F4A_7C15
        for b in data {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01B3
        }
        h ^= h >> 29
        for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: h >> (8 * UInt64(i)))) }
    }
    return out
}

struct FakeCrypto: CryptoProvider {
    func sha256(_ data: [UInt8]) -> [UInt8] { fakeHash(data) }
    func verify(signature: [UInt8], message: [UInt8], signer: NodeID) -> Bool {
        signature == FakeSigner.signature(publicKey: signer.bytes, message: message)
    }
}

struct FakeSigner: MessageSigner {
    let nodeID: NodeID
    /// A signer whose NodeID is fakeHash([seed]).
    init(seed: UInt8) { nodeID = NodeID(bytes: fakeHash([seed])) }
    func sign(_ message: [UInt8]) -> [UInt8] { FakeSigner.signature(publicKey: nodeID.bytes, message: message) }
    static func signature(publicKey: [UInt8], message: [UInt8]) -> [UInt8] {
        fakeHash(publicKey + message) + fakeHash(message + publicKey)
    }
}
