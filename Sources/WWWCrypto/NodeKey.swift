import Crypto
import Foundation
import WWWCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A node's Ed25519 private key (RFC 8032) and the `NodeID` derived from it
/// (the 32-byte public key, DESIGN.md §1 and §3).
///
/// Signatures are deterministic on Linux (swift-crypto uses BoringSSL, RFC 8032 §5.1.6).
/// On Apple platforms swift-crypto re-exports CryptoKit, which randomizes Ed25519
/// signatures: every signature still verifies, but the bytes differ call to call.
public struct NodeKey: MessageSigner {
    private let privateKey: Curve25519.Signing.PrivateKey
    public let nodeID: NodeID

    /// Wraps a 32-byte Ed25519 private key (the RFC 8032 seed). Throws
    /// `NodeKeyError.corrupt` when `rawRepresentation` is not 32 bytes.
    public init(rawRepresentation: [UInt8]) throws {
        guard rawRepresentation.count == 32,
              let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: rawRepresentation)
        else {
            throw NodeKeyError.corrupt(path: "<memory>", reason: "an Ed25519 private key is 32 bytes, got \(rawRepresentation.count)")
        }
        self.init(key)
    }

    private init(_ key: Curve25519.Signing.PrivateKey) {
        self.privateKey = key
        self.nodeID = NodeID(bytes: Array(key.publicKey.rawRepresentation))
    }

    /// A fresh key from the system's secure random source.
    public static func generate() -> NodeKey { NodeKey(Curve25519.Signing.PrivateKey()) }

    /// The 32-byte private key (seed). Handle with care.
    public var rawRepresentation: [UInt8] { Array(privateKey.rawRepresentation) }

    /// The 64-byte Ed25519 signature of `message`.
    public func sign(_ message: [UInt8]) -> [UInt8] {
        // Ed25519 signing over an in-memory buffer only fails on allocation failure.
        guard let sig = try? privateKey.signature(for: message) else {
            preconditionFailure("Ed25519 signing failed")
        }
        precondition(sig.count == 64)
        return Array(sig)
    }

    // MARK: - Key file

    /// Loads the key at `path`, or creates one there when no file exists.
    ///
    /// File format: the 32-byte private key as 64 lowercase hex characters followed by a
    /// newline (surrounding whitespace is ignored on load). Creation makes the parent
    /// directory (mode 0700) when missing, writes a temporary file with mode 0600 in the
    /// same directory, fsyncs it, and links it into place with `link(2)` — atomic, and it
    /// never overwrites a key another process created in the meantime (that key is loaded
    /// instead).
    ///
    /// Errors (`NodeKeyError`): `insecurePermissions` when the existing file grants any
    /// permission to group or others (fix: `chmod 600 <path>`, as OpenSSH does);
    /// `corrupt` when the content is not 64 hex characters; `io` for system call failures.
    public static func loadOrCreate(path: String) throws -> NodeKey {
        if let existing = try load(path: path) { return existing }
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty {
            do {
                try FileManager.default.createDirectory(
                    atPath: dir, withIntermediateDirectories: true,
                    attributes: [.posixPermissions: 0o700])
            } catch {
                throw NodeKeyError.io(path: dir, operation: "create directory", detail: "\(error)")
            }
        }
        let key = generate()
        try writeNew(key, to: path)
        // Load back what is on disk: either ours, or a key a concurrent starter linked first.
        guard let stored = try load(path: path) else {
            throw NodeKeyError.io(path: path, operation: "reload", detail: "key file vanished after creation")
        }
        return stored
    }

    /// Loads an existing key file; nil when none exists at `path`.
    public static func load(path: String) throws -> NodeKey? {
        var st = stat()
        if stat(path, &st) != 0 {
            let e = errno
            if e == ENOENT { return nil }
            throw NodeKeyError.io(path: path, operation: "stat", detail: String(cString: strerror(e)))
        }
        let mode = UInt32(st.st_mode) & 0o777
        if mode & 0o077 != 0 {
            throw NodeKeyError.insecurePermissions(path: path, mode: mode)
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw NodeKeyError.io(path: path, operation: "read", detail: "unreadable")
        }
        guard data.count <= 256 else {
            throw NodeKeyError.corrupt(path: path, reason: "file is \(data.count) bytes; expected 64 hex characters")
        }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.utf8.count == 64, let raw = Hex.decode(text) else {
            throw NodeKeyError.corrupt(path: path, reason: "expected 64 hex characters (a 32-byte Ed25519 private key)")
        }
        do {
            return try NodeKey(rawRepresentation: raw)
        } catch {
            throw NodeKeyError.corrupt(path: path, reason: "not a valid Ed25519 private key")
        }
    }

    private static func writeNew(_ key: NodeKey, to path: String) throws {
        let tmp = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw NodeKeyError.sys(path: tmp, "open") }
        defer { unlink(tmp) }
        let bytes = Array((Hex.encode(key.rawRepresentation) + "\n").utf8)
        let ok: Bool = bytes.withUnsafeBytes { buf in
            fchmod(fd, 0o600) == 0 && write(fd, buf.baseAddress, buf.count) == buf.count && fsync(fd) == 0
        }
        let saved = errno
        close(fd)
        guard ok else { throw NodeKeyError.io(path: tmp, operation: "write", detail: String(cString: strerror(saved))) }
        if link(tmp, path) != 0 {
            let e = errno
            if e == EEXIST { return }  // someone else created it first: caller loads theirs
            throw NodeKeyError.io(path: path, operation: "link", detail: String(cString: strerror(e)))
        }
        // Make the new directory entry durable.
        let dir = (path as NSString).deletingLastPathComponent
        let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }
}

/// Why a key file could not be used. `description` names the file and the fix.
public enum NodeKeyError: Error, Equatable, CustomStringConvertible {
    /// The key file grants permissions to group or others; `mode` is its permission bits.
    case insecurePermissions(path: String, mode: UInt32)
    /// The key file exists but does not hold a 32-byte key as 64 hex characters.
    case corrupt(path: String, reason: String)
    /// A system call failed.
    case io(path: String, operation: String, detail: String)

    static func sys(path: String, _ op: String) -> NodeKeyError {
        .io(path: path, operation: op, detail: String(cString: strerror(errno)))
    }

    public var description: String {
        switch self {
        case .insecurePermissions(let path, let mode):
            return "node key file \(path) has mode \(String(mode, radix: 8)); it must not be accessible by group or others. Fix: chmod 600 \(path)"
        case .corrupt(let path, let reason):
            return "node key file \(path) is corrupt: \(reason). Restore it from a backup, or move it away to create a new identity (a new NodeID)"
        case .io(let path, let operation, let detail):
            return "node key file \(path): \(operation) failed: \(detail)"
        }
    }
}
