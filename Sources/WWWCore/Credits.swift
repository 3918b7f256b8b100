/// An amount of credits as integer micro-credits (1 credit = 1,000,000 µcredits).
///
/// Credits are never floating point (DESIGN.md §1): every balance, price, bond and fee is
/// an exact `Int64`. Arithmetic traps on overflow, which is an invariant violation.
public struct Credits: Hashable, Comparable, Sendable, Codable, CustomStringConvertible, AdditiveArithmetic {
    /// Micro-credits in one credit.
    public static let microPerCredit: Int64 = 1_000_000

    /// The amount in micro-credits.
    public var micro: Int64

    public init(micro: Int64) { self.micro = micro }
    /// Whole credits.
    public init(credits: Int64) { self.micro = credits * Credits.microPerCredit }

    public static let zero = Credits(micro: 0)

    public static func < (a: Credits, b: Credits) -> Bool { a.micro < b.micro }
    public static func + (a: Credits, b: Credits) -> Credits { Credits(micro: a.micro + b.micro) }
    public static func - (a: Credits, b: Credits) -> Credits { Credits(micro: a.micro - b.micro) }
    public static prefix func - (a: Credits) -> Credits { Credits(micro: -a.micro) }

    /// `self × numerator / denominator`, rounded toward zero, computed without overflow
    /// for the shares used by the protocol (e.g. a bond of 50 % of a stake).
    public func scaled(_ numerator: Int64, _ denominator: Int64) -> Credits {
        precondition(denominator > 0, "share denominator must be positive")
        let (hi, lo) = micro.multipliedFullWidth(by: numerator)
        let (q, _) = denominator.dividingFullWidth((hi, lo))
        return Credits(micro: q)
    }

    /// "12.345678" style rendering in whole credits.
    public var description: String {
        let sign = micro < 0 ? "-" : ""
        let a = micro.magnitude
        let whole = a / UInt64(Credits.microPerCredit)
        let frac = a % UInt64(Credits.microPerCredit)
        let f = String(frac)
        return "\(sign)\(whole).\(String(repeating: "0", count: 6 - f.count))\(f)"
    }

    public init(from decoder: any Decoder) throws {
        self.micro = try decoder.singleValueContainer().decode(Int64.self)
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(micro)
    }
}
