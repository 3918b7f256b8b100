import Foundation
import WWWCore
import WWWNode
import WWWSim

/// One user request of a scenario: when and where it arrives, and how big it is.
public struct Arrival: Sendable, Hashable {
    /// Index in arrival order (ties broken by node).
    public var index: Int
    /// Index of the node (in scenario order, groups expanded) that receives it.
    public var node: Int
    /// Seconds after the workload's start.
    public var at: Double
    public var job: SimJobSpec
}

/// The expanded nodes of a scenario: group members get names `group-1`, `group-2`, …
public struct ScenarioNode: Sendable, Equatable {
    public var index: Int
    public var name: String
    public var group: Scenario.NodeGroup
}

extension Scenario {
    public var expandedNodes: [ScenarioNode] {
        var out: [ScenarioNode] = []
        for g in nodes {
            for k in 0..<g.count {
                out.append(ScenarioNode(index: out.count, name: g.count == 1 ? g.name : "\(g.name)-\(k + 1)", group: g))
            }
        }
        return out
    }

    /// Every arrival of the scenario, in time order. Deterministic in `seed`.
    /// - Parameter traces: the Azure traces by name ("conv", "code") as (seconds since
    ///   start, context tokens, generated tokens) rows; needed for trace workloads or lengths.
    public func arrivals(traces: [String: [(t: Double, context: Int, generated: Int)]]) throws -> [Arrival] {
        var raw: [(at: Double, node: Int, job: SimJobSpec?)] = []
        for n in expandedNodes {
            var prng = SeededPRNG(seed: seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(n.index) &+ 1)
            let w = n.group.workload
            switch w.kind {
            case "poisson":
                raw += Self.poisson(rate: w.rate, from: 0, to: durationS, prng: &prng).map { ($0, n.index, nil) }
            case "fluctuating":
                for (i, step) in w.rates.enumerated() where step[0] < durationS {
                    let end = i + 1 < w.rates.count ? min(w.rates[i + 1][0], durationS) : durationS
                    guard step[1] > 0 else { continue }
                    raw += Self.poisson(rate: step[1], from: step[0], to: end, prng: &prng).map { ($0, n.index, nil) }
                }
            case "count":
                raw += (0..<w.count).map { _ in (prng.nextUnit() * durationS, n.index, nil) }
            case "trace":
                guard let rows = traces[w.trace] else { throw SimLabError("the \(w.trace) trace is not loaded") }
                for r in rows where r.t >= w.offsetS && r.t < w.offsetS + durationS {
                    guard w.scale >= 1 || prng.nextUnit() < w.scale else { continue }
                    let job = SimJobSpec(promptTokens: min(r.context, lengths.maxPromptTokens),
                                         outputTokens: min(r.generated, lengths.maxOutputTokens))
                    raw.append((r.t - w.offsetS, n.index, lengths.kind == "trace" ? job : nil))
                }
            default:
                break
            }
        }
        raw.sort { ($0.at, $0.node) < ($1.at, $1.node) }
        var sizes = try lengthSource(traces: traces)
        return raw.enumerated().map { i, r in
            Arrival(index: i, node: r.node, at: r.at, job: r.job ?? sizes.next())
        }
    }

    /// Poisson arrivals of `rate` per second in [from, to).
    static func poisson(rate: Double, from: Double, to: Double, prng: inout SeededPRNG) -> [Double] {
        var out: [Double] = []
        var t = from
        while out.count < 10_000_000 {
            t += -Foundation.log(prng.nextUnitOpen()) / rate
            guard t < to else { break }
            out.append(t)
        }
        return out
    }

    /// Sizes for arrivals that carry none: the trace's rows in order (cycled), or fixed.
    func lengthSource(traces: [String: [(t: Double, context: Int, generated: Int)]]) throws -> LengthSource {
        if lengths.kind == "uniform" {
            var prng = SeededPRNG(seed: seed ^ 0x5EED_1E47)
            let span = UInt64(lengths.maxOutputTokens - lengths.minOutputTokens + 1)
            return LengthSource(rows: (0..<4096).map { _ in
                SimJobSpec(promptTokens: lengths.promptTokens, outputTokens: lengths.minOutputTokens + Int(prng.next() % span))
            }, fixed: nil)
        }
        guard lengths.kind == "trace" else {
            return LengthSource(rows: [], fixed: SimJobSpec(promptTokens: lengths.promptTokens, outputTokens: lengths.outputTokens))
        }
        guard let rows = traces[lengths.trace], !rows.isEmpty else { throw SimLabError("the \(lengths.trace) trace is not loaded") }
        return LengthSource(rows: rows.map {
            SimJobSpec(promptTokens: min($0.context, lengths.maxPromptTokens), outputTokens: min($0.generated, lengths.maxOutputTokens))
        }, fixed: nil)
    }

    /// The traces the scenario needs, read from the shared data.
    public func loadTraces(dataDir: String?) throws -> [String: [(t: Double, context: Int, generated: Int)]] {
        var names = Set(nodes.filter { $0.workload.kind == "trace" }.map(\.workload.trace))
        if lengths.kind == "trace" { names.insert(lengths.trace) }
        guard !names.isEmpty else { return [:] }
        guard let dir = dataDir ?? WWWNode.Workload.dataDirectory(containing: "traces/AzureLLMInferenceTrace_conv.csv") else {
            throw SimLabError("cannot find the shared data (../shared/data/traces); set WWWSERVE_SHARED_DATA or pass --data-dir")
        }
        var out: [String: [(t: Double, context: Int, generated: Int)]] = [:]
        for n in names.sorted() {
            let path = dir + "/traces/AzureLLMInferenceTrace_\(n).csv"
            do { out[n] = try WWWNode.Workload.trace(path: path, limit: 1_000_000) } catch {
                throw SimLabError("cannot read the \(n) trace at \(path)")
            }
        }
        return out
    }
}

/// Request sizes in a fixed order.
struct LengthSource {
    let rows: [SimJobSpec]
    let fixed: SimJobSpec?
    var cursor = 0

    init(rows: [SimJobSpec], fixed: SimJobSpec?) {
        self.rows = rows
        self.fixed = fixed
    }

    mutating func next() -> SimJobSpec {
        if let fixed { return fixed }
        defer { cursor = (cursor + 1) % rows.count }
        return rows[cursor]
    }
}
