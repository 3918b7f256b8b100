/// A seeded, portable pseudo-random generator: xoshiro256** seeded through SplitMix64.
///
/// Every state machine in the core owns one, so the same seed and the same inputs give the
/// same outputs on every platform (the simulator's byte-for-byte reproducibility depends on
/// it). Source: Blackman & Vigna, "Scrambled linear pseudorandom number generators" (2018).
public struct SeededPRNG: RandomNumberGenerator, Sendable, Hashable {
    private var s0, s1, s2, s3: UInt64

    public init(seed: UInt64) {
        var sm = seed
        func splitmix(_ x: inout UInt64) -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s0 = splitmix(&sm); s1 = splitmix(&sm); s2 = splitmix(&sm); s3 = splitmix(&sm)
    }

    public mutating func next() -> UInt64 {
        let result = rotl(s1 &* 5, 7) &* 9
        let t = s1 << 17
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3
        s2 ^= t
        s3 = rotl(s3, 45)
        return result
    }

    /// A uniform double in the open interval (0, 1): never 0, so `-log(u)` is finite.
    public mutating func nextUnitOpen() -> Double {
        // 53 random bits, shifted by half an ulp away from zero.
        (Double(next() >> 11) + 0.5) / 9_007_199_254_740_992.0
    }

    /// A uniform double in [0, 1).
    public mutating func nextUnit() -> Double {
        Double(next() >> 11) / 9_007_199_254_740_992.0
    }

    /// True with probability `p` (clamped to [0, 1]).
    public mutating func bernoulli(_ p: Double) -> Bool {
        if p <= 0 { return false }
        if p >= 1 { return true }
        return nextUnit() < p
    }

    /// A child generator whose stream is independent of this one's continuation.
    public mutating func fork() -> SeededPRNG { SeededPRNG(seed: next()) }

    private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }
}
