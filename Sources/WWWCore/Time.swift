/// A point in time as integer nanoseconds since the Unix epoch (1970-01-01T00:00:00Z).
///
/// The core never reads a clock: drivers pass `now` into every handler. The node shell
/// derives it from the wall clock; the simulator from its virtual clock (starting at any
/// value it likes). Integer nanoseconds keep arithmetic exact and deterministic.
public struct Instant: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// Nanoseconds since the Unix epoch.
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }
    public init(milliseconds: Int64) { self.nanoseconds = milliseconds &* 1_000_000 }
    public init(seconds: Int64) { self.nanoseconds = seconds &* 1_000_000_000 }

    public static let zero = Instant(nanoseconds: 0)

    public var milliseconds: Int64 { nanoseconds / 1_000_000 }
    public var seconds: Double { Double(nanoseconds) / 1e9 }

    public static func < (a: Instant, b: Instant) -> Bool { a.nanoseconds < b.nanoseconds }
    public static func + (a: Instant, d: Duration) -> Instant { Instant(nanoseconds: a.nanoseconds &+ d.nanoseconds) }
    public static func - (a: Instant, d: Duration) -> Instant { Instant(nanoseconds: a.nanoseconds &- d.nanoseconds) }
    /// The signed span from `b` to `a`.
    public static func - (a: Instant, b: Instant) -> Duration { .nanoseconds(a.nanoseconds &- b.nanoseconds) }

    public var description: String { "\(nanoseconds)ns" }

    public init(from decoder: any Decoder) throws {
        self.nanoseconds = try decoder.singleValueContainer().decode(Int64.self)
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(nanoseconds)
    }
}

extension Duration {
    /// The whole number of nanoseconds in this duration (saturating at Int64 bounds).
    public var nanoseconds: Int64 {
        let (s, atto) = components
        let (m, o1) = s.multipliedReportingOverflow(by: 1_000_000_000)
        if o1 { return s < 0 ? .min : .max }
        let (r, o2) = m.addingReportingOverflow(atto / 1_000_000_000)
        if o2 { return s < 0 ? .min : .max }
        return r
    }
    /// Duration in (fractional) seconds.
    public var seconds: Double { Double(nanoseconds) / 1e9 }
    /// Duration in (fractional) milliseconds.
    public var milliseconds: Double { Double(nanoseconds) / 1e6 }
}
