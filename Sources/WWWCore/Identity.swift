/// A node's identity: its 32-byte Ed25519 public key (DESIGN.md §1).
///
/// Identity is the key, never an address or a name: a node may move, but a different key
/// may not take its place. Rendered and coded as 64 lowercase hex characters.
public struct NodeID: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// The raw public key bytes (32 for Ed25519).
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) {
        precondition(bytes.count == 32, "a NodeID is a 32-byte Ed25519 public key")
        self.bytes = bytes
    }

    /// Parses 64 hex characters; nil when malformed.
    public init?(hex: String) {
        guard let b = Hex.decode(hex), b.count == 32 else { return nil }
        self.bytes = b
    }

    /// The key as four 64-bit words, the first byte most significant in `w.0`: ordering
    /// the words orders the bytes lexicographically.
    @inline(__always)
    var words: (UInt64, UInt64, UInt64, UInt64) {
        bytes.withUnsafeBytes { b in
            (UInt64(bigEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
             UInt64(bigEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
             UInt64(bigEndian: b.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
             UInt64(bigEndian: b.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
        }
    }

    /// Hashes, compares and orders the key word by word: NodeID-keyed tables are the
    /// simulator's hottest code (the synthesized versions went byte by byte).
    public func hash(into hasher: inout Hasher) {
        let w = words
        hasher.combine(w.0)
        hasher.combine(w.1)
        hasher.combine(w.2)
        hasher.combine(w.3)
    }

    public static func == (a: NodeID, b: NodeID) -> Bool {
        let x = a.words, y = b.words
        return x.0 == y.0 && x.1 == y.1 && x.2 == y.2 && x.3 == y.3
    }

    public var hex: String { Hex.encode(bytes) }
    /// The first 8 hex characters, for logs and tables.
    public var short: String { String(hex.prefix(8)) }
    public var description: String { short }

    public static func < (a: NodeID, b: NodeID) -> Bool {
        let x = a.words, y = b.words
        if x.0 != y.0 { return x.0 < y.0 }
        if x.1 != y.1 { return x.1 < y.1 }
        if x.2 != y.2 { return x.2 < y.2 }
        return x.3 < y.3
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let s = try c.decode(String.self)
        guard let id = NodeID(hex: s) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "NodeID must be 64 hex characters")
        }
        self = id
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(hex)
    }
}

/// Lowercase hexadecimal coding.
public enum Hex {
    private static let digits = Array("0123456789abcdef".utf8)

    public static func encode<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var out = [UInt8]()
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func decode(_ s: String) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out = [UInt8]()
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let hi = nibble(u[i]), let lo = nibble(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
