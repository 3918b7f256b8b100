import Foundation
import WWWSim
import Yams

/// A number with the source it comes from (`[value, "source"]` in a profiles file).
public struct Sourced: Sendable, Hashable {
    public var value: Double
    public var source: String
}

/// Engine profiles by name, read from a YAML file (the bundled `sim/profiles.yaml`, or a
/// user's). Each number of a profile is `[value, "source"]`, or a bare number (then its
/// source is "user").
public struct ProfileBook: Sendable {
    public var profiles: [String: SimEngineProfile]
    /// Per profile, per field: where the number comes from.
    public var sources: [String: [String: String]]

    public init(profiles: [String: SimEngineProfile] = [:], sources: [String: [String: String]] = [:]) {
        self.profiles = profiles
        self.sources = sources
    }

    /// What each number may be (bounds that keep every conversion exact; quality > 0 is
    /// checked by the profile itself).
    static let bounds: [String: ClosedRange<Double>] = [
        "step_base_ms": 1e-3...10_000, "step_per_request_ms": 0...10_000, "step_per_context_token_us": 0...1_000,
        "prefill_tokens_per_s_1k": 1...1e9, "prefill_tokens_per_s_4k": 1...1e9, "api_overhead_ms": 0...60_000,
        "kv_capacity_tokens": 1...1e9, "max_running": 1...100_000, "quality": 0...1,
    ]

    static let fields = ["step_base_ms", "step_per_request_ms", "step_per_context_token_us", "prefill_tokens_per_s_1k",
                         "prefill_tokens_per_s_4k", "api_overhead_ms", "kv_capacity_tokens", "max_running", "quality"]

    /// Parses a profiles file.
    /// - Throws: `SimLabError` naming the profile and field of the first problem.
    public static func parse(_ text: String, source: String) throws -> ProfileBook {
        let loaded: Any?
        do { loaded = try Yams.load(yaml: text) } catch {
            throw SimLabError("\(source): not valid YAML (\("\(error)".split(separator: "\n").first ?? ""))")
        }
        guard let root = loaded as? [String: Any], let entries = root["profiles"] as? [String: Any] else {
            throw SimLabError("\(source): expected a mapping 'profiles: {name: {field: [value, \"source\"], …}}'")
        }
        var book = ProfileBook()
        for (name, raw) in entries.sorted(by: { $0.key < $1.key }) {
            guard let m = raw as? [String: Any] else { throw SimLabError("\(source): profile '\(name)' must be a mapping") }
            for k in m.keys where !fields.contains(k) {
                throw SimLabError("\(source): profile '\(name)': unknown field '\(k)'; known: \(fields.joined(separator: ", "))")
            }
            var values: [String: Double] = [:]
            var srcs: [String: String] = [:]
            for f in fields {
                guard let v = m[f] else { throw SimLabError("\(source): profile '\(name)': missing '\(f)'") }
                let (value, src) = try sourced(v, field: f, profile: name, file: source)
                guard let range = bounds[f], value.isFinite, range.contains(value) else {
                    throw SimLabError("\(source): profile '\(name)': '\(f)' must be in \(bounds[f].map { "\($0.lowerBound)...\($0.upperBound)" } ?? "range"), got \(value)")
                }
                if ["kv_capacity_tokens", "max_running"].contains(f), value != value.rounded() {
                    throw SimLabError("\(source): profile '\(name)': '\(f)' must be a whole number, got \(value)")
                }
                values[f] = value
                srcs[f] = src
            }
            let p = SimEngineProfile(
                name: name, stepBaseMs: values["step_base_ms"]!, stepPerRequestMs: values["step_per_request_ms"]!,
                stepPerContextTokenUs: values["step_per_context_token_us"]!, prefillTokensPerSecond1k: values["prefill_tokens_per_s_1k"]!,
                prefillTokensPerSecond4k: values["prefill_tokens_per_s_4k"]!, apiOverheadMs: values["api_overhead_ms"]!,
                kvCapacityTokens: Int(values["kv_capacity_tokens"]!), maxRunning: Int(values["max_running"]!),
                quality: values["quality"]!)
            if let problem = p.problems.first { throw SimLabError("\(source): profile '\(name)': \(problem)") }
            book.profiles[name] = p
            book.sources[name] = srcs
        }
        return book
    }

    private static func sourced(_ v: Any, field: String, profile: String, file: String) throws -> (Double, String) {
        func number(_ x: Any) -> Double? {
            if let d = x as? Double { return d }
            if let i = x as? Int { return Double(i) }
            return nil
        }
        if let d = number(v) { return (d, "user") }
        if let pair = v as? [Any], pair.count == 2, let d = number(pair[0]), let s = pair[1] as? String { return (d, s) }
        throw SimLabError("\(file): profile '\(profile)': '\(field)' must be a number or [number, \"source\"]")
    }

    /// Reads `path`.
    public static func load(path: String) throws -> ProfileBook {
        guard let data = FileManager.default.contents(atPath: path) else { throw SimLabError("cannot read profiles file '\(path)'") }
        return try parse(String(decoding: data, as: UTF8.self), source: path)
    }

    /// The profile called `name`.
    /// - Throws: `SimLabError` listing the known names.
    public func profile(_ name: String) throws -> SimEngineProfile {
        guard let p = profiles[name] else {
            throw SimLabError("unknown engine profile '\(name)'; known: \(profiles.keys.sorted().joined(separator: ", "))")
        }
        return p
    }

    /// Merges `other` over this book (its profiles win).
    public func merging(_ other: ProfileBook) -> ProfileBook {
        ProfileBook(profiles: profiles.merging(other.profiles) { $1 }, sources: sources.merging(other.sources) { $1 })
    }

    /// The bundled `sim/profiles.yaml`, found from the current directory or the binary.
    public static func bundledPath() -> String? {
        var candidates = [FileManager.default.currentDirectoryPath + "/sim/profiles.yaml"]
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            candidates.append(dir.appendingPathComponent("sim/profiles.yaml").path)
            dir = dir.deletingLastPathComponent()
        }
        return candidates.first { FileManager.default.fileExists(atPath: $0) }
    }
}

/// A simulator input problem, reported before anything runs.
public struct SimLabError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ message: String) { description = message }
}
