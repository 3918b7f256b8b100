import Testing
@testable import WWWCore

/// Fixtures shared by the scheduler tests (names prefixed to stay clear of other suites).
enum SchedFixtures {
    /// A distinct NodeID per small integer: 32 bytes of `i`.
    static func node(_ i: UInt8) -> NodeID { NodeID(bytes: [UInt8](repeating: i, count: 32)) }

    static let t0 = Instant(seconds: 1_000)

    /// A load snapshot with the given utilization by count (capacity 100).
    static func load(percent: Int, kv: Double? = nil) -> LoadSnapshot {
        LoadSnapshot(running: percent, waiting: 0, capacity: 100, kvCacheUsage: kv)
    }

    /// Asserts that `count` successes in `n` Bernoulli(p) trials lie within `sigmas` standard
    /// deviations of n·p (exactly 0 or n when p is 0 or 1).
    static func expectBinomial(_ count: Int, n: Int, p: Double, sigmas: Double = 5,
                               _ label: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
        let mean = Double(n) * p
        let sd = (Double(n) * p * (1 - p)).squareRoot()
        let tolerance = sigmas * sd
        #expect(abs(Double(count) - mean) <= tolerance,
                "\(label): \(count) of \(n), expected \(mean) ± \(tolerance)", sourceLocation: sourceLocation)
    }
}
