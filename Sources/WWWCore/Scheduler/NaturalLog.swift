/// The natural logarithm in pure Swift, for a core that links no libm/Foundation.
///
/// Method (the classic frexp + atanh reduction, as in Cody & Waite, "Software Manual for the
/// Elementary Functions", 1980):
///
/// 1. Split `x = m · 2^e` with `m = x.significand ∈ [1, 2)`, `e = x.exponent` (exact, also
///    for subnormals).
/// 2. If `m > √2`, halve `m` and increment `e`, so `m ∈ (√2/2, √2]`.
/// 3. `ln m = 2·atanh(s) = 2(s + s³/3 + s⁵/5 + …)` with `s = (m − 1)/(m + 1)`, `|s| ≤ 0.1716`,
///    so `s² ≤ 0.0295` and 12 terms leave a truncation error below 2⁻⁶⁰ relative; it is
///    summed as `f − f²/2 + s(f²/2 + R)` with `f = m − 1` (the arrangement of fdlibm's
///    `e_log.c`), so only small corrections are rounded.
/// 4. `ln x = e·ln2 + ln m`, with ln 2 split into a high part exact in 32 bits and a low
///    correction, so `e·ln2_hi` is exact for every binade.
///
/// Accuracy: measured within 1 ulp of glibc's `log` on 100,000 points (uniform in (0, 1)
/// and log-uniform over 2⁻⁶⁰…1) and on known values from 2⁻¹⁰⁷⁴ to 1e300; the tests allow 2. Determinism: only +, −, ×, ÷ of IEEE-754 doubles, in a fixed order, so
/// every platform returns the same bits.
public enum NaturalLog {
    /// ln 2, high part: 0x3FE62E42FEE00000 — its low 32 significand bits are zero, so the
    /// product with any exponent |e| ≤ 1074 is exact.
    static let ln2Hi: Double = 6.93147180369123816490e-01
    /// ln 2 − ln2Hi.
    static let ln2Lo: Double = 1.90821492927058770002e-10
    static let sqrt2: Double = 1.4142135623730951

    /// Number of terms of R = Σ_{k=1…12} 2s²ᵏ/(2k+1) summed (bounded loop).
    static let seriesTerms = 12

    /// The natural logarithm of `x`.
    ///
    /// - Precondition: `x` is finite and > 0 (the scheduler only takes logs of
    ///   `SeededPRNG.nextUnitOpen()` values in (0, 1)).
    public static func ln(_ x: Double) -> Double {
        precondition(x > 0 && x.isFinite, "NaturalLog.ln needs a finite x > 0")
        var m = x.significand
        var e = Double(x.exponent)
        if m > sqrt2 {
            m *= 0.5
            e += 1
        }
        // f = m − 1 is exact (Sterbenz); s = f / (2 + f) = (m − 1)/(m + 1).
        let f = m - 1
        let s = f / (2 + f)
        let s2 = s * s
        // R = 2s²/3 + 2s⁴/5 + … (Horner from the smallest term up), so that
        // ln m = 2·atanh(s) = f − f²/2 + s·(f²/2 + R) — fdlibm's arrangement, which keeps the
        // large term f exact and rounds only small corrections.
        var sum = 0.0
        var k = seriesTerms
        while k >= 1 {
            sum = sum * s2 + 2.0 / Double(2 * k + 1)
            k -= 1
        }
        let r = s2 * sum
        let hfsq = 0.5 * f * f
        return e * ln2Hi - ((hfsq - (s * (hfsq + r) + e * ln2Lo)) - f)
    }
}
