/// A JSON-like value with one canonical byte encoding, used for everything that is signed
/// or hashed (envelopes, member records, ledger events).
///
/// Canonical form (defined once, here): UTF-8 JSON with no insignificant whitespace;
/// object keys sorted by their UTF-8 bytes; integers only (no floats: credits, times and
/// probabilities-as-parts-per-million are integers); strings escape only `"`, `\` and
/// control characters below U+0020 (as `\n`, `\r`, `\t`, `\b`, `\f` or `\u00XX`);
/// byte strings are carried as lowercase hex strings. Two equal values always give the
/// same bytes, so a signature over them is reproducible on every platform.
public indirect enum CanonicalValue: Hashable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case string(String)
    case array([CanonicalValue])
    case object([String: CanonicalValue])

    /// Bytes as hex string value.
    public static func bytes(_ b: [UInt8]) -> CanonicalValue { .string(Hex.encode(b)) }

    /// The canonical encoding.
    public var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(128)
        write(into: &out)
        return out
    }

    public func write(into out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: Array("null".utf8))
        case .bool(let b): out.append(contentsOf: Array((b ? "true" : "false").utf8))
        case .int(let i): out.append(contentsOf: Array(String(i).utf8))
        case .string(let s): Self.writeString(s, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (i, v) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                v.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let fields):
            out.append(UInt8(ascii: "{"))
            let keys = fields.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            for (i, k) in keys.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                Self.writeString(k, into: &out)
                out.append(UInt8(ascii: ":"))
                fields[k]!.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    private static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out.append(contentsOf: [92, 34])
            case UInt8(ascii: "\\"): out.append(contentsOf: [92, 92])
            case 0x0A: out.append(contentsOf: [92, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [92, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [92, UInt8(ascii: "t")])
            case 0x08: out.append(contentsOf: [92, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [92, UInt8(ascii: "f")])
            case 0..<0x20:
                out.append(contentsOf: Array("\\u00".utf8))
                out.append(contentsOf: Array(Hex.encode([b]).utf8))
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// A type with a canonical form for signing and hashing.
public protocol CanonicallyEncodable {
    var canonical: CanonicalValue { get }
}
