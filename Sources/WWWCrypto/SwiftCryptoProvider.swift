import Crypto
import Foundation
import WWWCore

/// The production `CryptoProvider`: SHA-256 (FIPS 180-4) and Ed25519 verification
/// (RFC 8032) from swift-crypto.
///
/// On Linux swift-crypto runs BoringSSL; on Apple platforms it re-exports CryptoKit.
/// Verification is identical on both. Stateless and `Sendable`: share one instance.
public struct SwiftCryptoProvider: CryptoProvider {
    public init() {}

    /// SHA-256 of `data`: 32 bytes.
    public func sha256(_ data: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(data: data))
    }

    /// True when `signature` (64 bytes) is a valid Ed25519 signature of `message` by the
    /// 32-byte public key `signer`. A wrong-length signature or an invalid public key
    /// (not a curve point) gives false, never a crash.
    public func verify(signature: [UInt8], message: [UInt8], signer: NodeID) -> Bool {
        guard signature.count == 64,
              let key = try? Curve25519.Signing.PublicKey(rawRepresentation: signer.bytes)
        else { return false }
        return key.isValidSignature(signature, for: message)
    }
}
