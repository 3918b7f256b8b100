import Testing
@testable import WWWCore

/// `NodeID` hashes, compares and orders word by word; these pin that to the byte meaning.
@Suite struct IdentityTests {
    /// Random keys, and keys that differ only in one byte (each word boundary included).
    func keys() -> [NodeID] {
        var prng = SeededPRNG(seed: 7)
        var out: [NodeID] = []
        for _ in 0..<40 { out.append(NodeID(bytes: (0..<32).map { _ in UInt8(truncatingIfNeeded: prng.next()) })) }
        let base = [UInt8](repeating: 0x80, count: 32)
        for i in [0, 7, 8, 15, 16, 23, 24, 31] {
            for v: UInt8 in [0x00, 0x7F, 0x81, 0xFF] {
                var b = base
                b[i] = v
                out.append(NodeID(bytes: b))
            }
        }
        out.append(NodeID(bytes: base))
        return out
    }

    @Test func orderIsLexicographicOverBytes() {
        let ids = keys()
        for a in ids {
            for b in ids {
                #expect((a < b) == a.bytes.lexicographicallyPrecedes(b.bytes))
                #expect((a == b) == (a.bytes == b.bytes))
            }
        }
    }

    @Test func equalKeysHashAlikeAndHexRoundTrips() {
        for a in keys() {
            let copy = NodeID(bytes: Array(a.bytes))   // another buffer, same bytes
            #expect(copy == a && copy.hashValue == a.hashValue)
            #expect(NodeID(hex: a.hex) == a)
        }
        #expect(Set(keys()).count == keys().count)
    }
}
