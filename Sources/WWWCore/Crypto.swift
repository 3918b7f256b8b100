/// The cryptography the core relies on, injected by the driver.
///
/// The core is dependency-free (DESIGN.md §2), so it does not link a crypto library; the
/// node shell and the simulator pass an implementation backed by swift-crypto (Ed25519,
/// SHA-256). Tests may pass a deterministic fake.
public protocol CryptoProvider: Sendable {
    /// SHA-256 of `data` (32 bytes). Source: FIPS 180-4.
    func sha256(_ data: [UInt8]) -> [UInt8]
    /// True when `signature` is a valid Ed25519 signature (RFC 8032) of `message` by the
    /// node whose public key is `signer`.
    func verify(signature: [UInt8], message: [UInt8], signer: NodeID) -> Bool
    /// True when `signature` is `signer`'s valid signature of `value`'s canonical bytes.
    /// The default encodes `value` and calls `verify(signature:message:signer:)`; a
    /// provider may remember values it verified (the simulator's does: thousands of
    /// simulated nodes check every gossiped record).
    func verify<V: CanonicallyEncodable & Hashable>(signature: [UInt8], of value: V, signer: NodeID) -> Bool
}

extension CryptoProvider {
    public func verify<V: CanonicallyEncodable & Hashable>(signature: [UInt8], of value: V, signer: NodeID) -> Bool {
        verify(signature: signature, message: value.canonical.bytes, signer: signer)
    }
}

/// A node's private signing capability: Ed25519 over canonical bytes.
public protocol MessageSigner: Sendable {
    /// The public identity matching the private key.
    var nodeID: NodeID { get }
    /// The 64-byte Ed25519 signature of `message`.
    func sign(_ message: [UInt8]) -> [UInt8]
}
