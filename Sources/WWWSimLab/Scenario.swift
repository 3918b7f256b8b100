import Foundation
import WWWCore
import WWWNode
import Yams

/// A simulator scenario (YAML): nodes with their engines, policies and workloads, the run's
/// length, the SLO thresholds to report and the modes to compare. A user asks their own
/// question by writing one (`wwwserve sim run FILE`); the bundled experiments are scenarios
/// under `sim/scenarios/`.
///
/// ```yaml
/// name: heterogeneous-models
/// seed: 1
/// duration_s: 600                    # arrivals in [0, duration); the run goes on until all end
/// request_timeout_s: 300             # a request not done by then fails (an SLO miss)
/// slo_thresholds_s: [10, 30, 60, 120, 300]
/// modes: [single, centralized, wwwserve]
/// lengths: {kind: trace, trace: conv, max_output_tokens: 4096}   # or {kind: fixed, prompt_tokens: 500, output_tokens: 2000}
/// nodes:
///   - name: big
///     profile: qwen3-8b/a100/bf16/flashinfer
///     count: 1
///     capacity: 32                   # the node's slots (the engine's own limit also applies)
///     policy: {offload_frequency: 1, accept_frequency: 1, stake: 100, load_target: 0.8}
///     workload: {kind: poisson, rate: 0.2}
///       # or {kind: fluctuating, rates: [[0, 0.1], [300, 0.03]]}
///       # or {kind: count, count: 43}   (exactly N arrivals, uniform in the duration)
///       # or {kind: trace, trace: conv, offset_s: 0, scale: 0.01}   (Azure arrivals, thinned to `scale`)
/// ```
public struct Scenario: Codable, Sendable, Equatable {
    public var name: String
    public var description: String?
    public var seed: UInt64 = 1
    public var durationS: Double
    public var requestTimeoutS: Double = 300
    public var sloThresholdsS: [Double] = [5, 10, 20, 30, 60, 90, 120, 180, 240, 300]
    public var modes: [Mode] = Mode.allCases
    public var lengths: Lengths = Lengths()
    /// Membership warm-up before the first arrival (wwwserve mode), seconds.
    public var warmupS: Double = 10
    public var gossipPeriodMs: Int = 1000
    public var network: NetworkModel = NetworkModel()
    /// Duels (wwwserve mode): every node duels its offloaded jobs, judges judge with the
    /// modelled judge (`SimJudge`, Bradley–Terry over the profiles' `quality`). nil: none.
    public var duels: Duels?
    /// Seconds between samples of every node's balance (wwwserve) for credits.csv.
    public var samplePeriodS: Double = 10
    /// Nodes joining, leaving (gracefully) or crashing during the run, by expanded node name
    /// (`group` or `group-k`). A node whose first event is `join` is absent until then.
    public var events: [NodeEvent] = []
    /// Window of the moving average in latency.svg, seconds.
    public var latencyWindowS: Double = 30

    public struct NodeEvent: Codable, Sendable, Equatable {
        public var atS: Double
        public var node: String
        /// "join", "leave", "crash", "restart".
        public var action: String

        enum CodingKeys: String, CodingKey, CaseIterable { case atS = "at_s", node, action }

        public init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            atS = try c.decode(Double.self, forKey: .atS)
            node = try c.decode(String.self, forKey: .node)
            action = try c.decode(String.self, forKey: .action)
        }
    }
    public var nodes: [NodeGroup]

    public struct Duels: Codable, Sendable, Equatable {
        public var probability: Double = 0.1
        public var judgesPerDuel: Int = 3
        /// Chance that one judge call is a coin flip; that it answers "A" whatever the pair.
        public var noise: Double = 0
        public var positionBias: Double = 0
        public init() {}

        enum CodingKeys: String, CodingKey, CaseIterable {
            case probability, judgesPerDuel = "judges_per_duel", noise, positionBias = "position_bias"
        }

        public init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            probability = try c.decodeIfPresent(Double.self, forKey: .probability) ?? 0.1
            judgesPerDuel = try c.decodeIfPresent(Int.self, forKey: .judgesPerDuel) ?? 3
            noise = try c.decodeIfPresent(Double.self, forKey: .noise) ?? 0
            positionBias = try c.decodeIfPresent(Double.self, forKey: .positionBias) ?? 0
        }
    }

    public enum Mode: String, Codable, Sendable, CaseIterable {
        /// Each node serves only its own users.
        case single
        /// One global scheduler that sees every engine's true load sends each request to the
        /// least-loaded engine for its model (join-shortest-queue by utilization).
        case centralized
        /// The product's node machines with their policies.
        case wwwserve

        /// An unknown name is refused with the list of modes.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            let name = try c.decode(String.self)
            guard let mode = Mode(rawValue: name) else {
                throw DecodingError.dataCorruptedError(
                    in: c, debugDescription: "unknown mode '\(name)' (modes: \(Mode.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            self = mode
        }
    }

    public struct Lengths: Codable, Sendable, Equatable {
        /// "trace": prompt and output lengths of the Azure trace rows, in order; "fixed";
        /// "uniform": `prompt_tokens`, and outputs uniform in [min_output_tokens, max_output_tokens].
        public var kind: String = "trace"
        public var trace: String = "conv"
        public var promptTokens: Int = 1000
        public var outputTokens: Int = 200
        /// Caps (the engine's context); the trace's longest rows are cut.
        public var maxPromptTokens: Int = 8192
        public var maxOutputTokens: Int = 4096
        public var minOutputTokens: Int = 1
        public init() {}

        enum CodingKeys: String, CodingKey, CaseIterable {
            case kind, trace, promptTokens = "prompt_tokens", outputTokens = "output_tokens"
            case maxPromptTokens = "max_prompt_tokens", maxOutputTokens = "max_output_tokens", minOutputTokens = "min_output_tokens"
        }

        public init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let d = Lengths()
            kind = try c.decodeIfPresent(String.self, forKey: .kind) ?? d.kind
            trace = try c.decodeIfPresent(String.self, forKey: .trace) ?? d.trace
            promptTokens = try c.decodeIfPresent(Int.self, forKey: .promptTokens) ?? d.promptTokens
            outputTokens = try c.decodeIfPresent(Int.self, forKey: .outputTokens) ?? d.outputTokens
            maxPromptTokens = try c.decodeIfPresent(Int.self, forKey: .maxPromptTokens) ?? d.maxPromptTokens
            maxOutputTokens = try c.decodeIfPresent(Int.self, forKey: .maxOutputTokens) ?? d.maxOutputTokens
            minOutputTokens = try c.decodeIfPresent(Int.self, forKey: .minOutputTokens) ?? d.minOutputTokens
        }
    }

    public struct NetworkModel: Codable, Sendable, Equatable {
        public var minDelayMs: Double = 5
        public var maxDelayMs: Double = 50
        public var loss: Double = 0
        public init() {}

        enum CodingKeys: String, CodingKey, CaseIterable { case minDelayMs = "min_delay_ms", maxDelayMs = "max_delay_ms", loss }

        public init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            minDelayMs = try c.decodeIfPresent(Double.self, forKey: .minDelayMs) ?? 5
            maxDelayMs = try c.decodeIfPresent(Double.self, forKey: .maxDelayMs) ?? 50
            loss = try c.decodeIfPresent(Double.self, forKey: .loss) ?? 0
        }
    }

    public struct Policy: Codable, Sendable, Equatable {
        public var offloadFrequency: Double = 1
        public var acceptFrequency: Double = 1
        public var loadTarget: Double = 1
        public var stake: Double = 10
        public init() {}

        enum CodingKeys: String, CodingKey, CaseIterable {
            case offloadFrequency = "offload_frequency", acceptFrequency = "accept_frequency", loadTarget = "load_target", stake
        }

        public init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let d = Policy()
            offloadFrequency = try c.decodeIfPresent(Double.self, forKey: .offloadFrequency) ?? d.offloadFrequency
            acceptFrequency = try c.decodeIfPresent(Double.self, forKey: .acceptFrequency) ?? d.acceptFrequency
            loadTarget = try c.decodeIfPresent(Double.self, forKey: .loadTarget) ?? d.loadTarget
            stake = try c.decodeIfPresent(Double.self, forKey: .stake) ?? d.stake
        }
    }

    public struct Workload: Codable, Sendable, Equatable {
        /// "none", "poisson", "fluctuating", "count", "trace".
        public var kind: String = "none"
        public var rate: Double = 0
        /// Fluctuating: (from second, rate) steps, ascending.
        public var rates: [[Double]] = []
        public var count: Int = 0
        public var trace: String = "conv"
        public var offsetS: Double = 0
        /// Trace: keep this share of its arrivals (deterministic thinning).
        public var scale: Double = 1
        public init() {}

        enum CodingKeys: String, CodingKey, CaseIterable { case kind, rate, rates, count, trace, offsetS = "offset_s", scale }

        public init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            kind = try c.decodeIfPresent(String.self, forKey: .kind) ?? "none"
            rate = try c.decodeIfPresent(Double.self, forKey: .rate) ?? 0
            rates = try c.decodeIfPresent([[Double]].self, forKey: .rates) ?? []
            count = try c.decodeIfPresent(Int.self, forKey: .count) ?? 0
            trace = try c.decodeIfPresent(String.self, forKey: .trace) ?? "conv"
            offsetS = try c.decodeIfPresent(Double.self, forKey: .offsetS) ?? 0
            scale = try c.decodeIfPresent(Double.self, forKey: .scale) ?? 1
        }
    }

    public struct NodeGroup: Codable, Sendable, Equatable {
        public var name: String
        public var count: Int = 1
        /// An engine profile, or "none": a node without an engine (a pure requester, a judge).
        public var profile: String
        /// Overrides the profile's answer quality (e.g. 0.01 for a junk responder).
        public var quality: Double?
        /// Judges duels (with `duels`) [true].
        public var judge: Bool = true
        /// Genesis grant of each node of the group, credits [1000].
        public var grant: Double = 1000
        /// The model name users ask for; nodes that share it can offload to each other.
        public var model: String = "qwen3"
        public var capacity: Int = 32
        public var policy: Policy = Policy()
        public var workload: Workload = Workload()

        enum CodingKeys: String, CodingKey, CaseIterable { case name, count, profile, quality, judge, grant, model, capacity, policy, workload }

        public init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            count = try c.decodeIfPresent(Int.self, forKey: .count) ?? 1
            profile = try c.decode(String.self, forKey: .profile)
            quality = try c.decodeIfPresent(Double.self, forKey: .quality)
            judge = try c.decodeIfPresent(Bool.self, forKey: .judge) ?? true
            grant = try c.decodeIfPresent(Double.self, forKey: .grant) ?? 1000
            model = try c.decodeIfPresent(String.self, forKey: .model) ?? "qwen3"
            capacity = try c.decodeIfPresent(Int.self, forKey: .capacity) ?? 32
            policy = try c.decodeIfPresent(Policy.self, forKey: .policy) ?? Policy()
            workload = try c.decodeIfPresent(Workload.self, forKey: .workload) ?? Workload()
        }
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case name, description, seed, durationS = "duration_s", requestTimeoutS = "request_timeout_s"
        case sloThresholdsS = "slo_thresholds_s", modes, lengths, warmupS = "warmup_s", gossipPeriodMs = "gossip_period_ms"
        case network, duels, samplePeriodS = "sample_period_s", events, latencyWindowS = "latency_window_s", nodes
    }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        description = try c.decodeIfPresent(String.self, forKey: .description)
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? 1
        durationS = try c.decode(Double.self, forKey: .durationS)
        requestTimeoutS = try c.decodeIfPresent(Double.self, forKey: .requestTimeoutS) ?? 300
        sloThresholdsS = try c.decodeIfPresent([Double].self, forKey: .sloThresholdsS) ?? [5, 10, 20, 30, 60, 90, 120, 180, 240, 300]
        modes = try c.decodeIfPresent([Mode].self, forKey: .modes) ?? Mode.allCases
        lengths = try c.decodeIfPresent(Lengths.self, forKey: .lengths) ?? Lengths()
        warmupS = try c.decodeIfPresent(Double.self, forKey: .warmupS) ?? 10
        gossipPeriodMs = try c.decodeIfPresent(Int.self, forKey: .gossipPeriodMs) ?? 1000
        network = try c.decodeIfPresent(NetworkModel.self, forKey: .network) ?? NetworkModel()
        duels = try c.decodeIfPresent(Duels.self, forKey: .duels)
        samplePeriodS = try c.decodeIfPresent(Double.self, forKey: .samplePeriodS) ?? 10
        events = try c.decodeIfPresent([NodeEvent].self, forKey: .events) ?? []
        latencyWindowS = try c.decodeIfPresent(Double.self, forKey: .latencyWindowS) ?? 30
        nodes = try c.decode([NodeGroup].self, forKey: .nodes)
    }

    /// Parses and checks a scenario.
    /// - Throws: `SimLabError` with the source and the problem.
    public static func parse(_ text: String, source: String) throws -> Scenario {
        let s: Scenario
        do {
            s = try YAMLDecoder().decode(Scenario.self, from: text)
        } catch let e as SimLabError {
            throw SimLabError("\(source): \(e.description)")
        } catch let e as DecodingError {
            throw SimLabError("\(source): \(NodeConfig.describe(e))")
        } catch {
            throw SimLabError("\(source): \(error)")
        }
        if let p = s.problems.first { throw SimLabError("\(source): \(p)") }
        return s
    }

    public static func load(path: String) throws -> Scenario {
        guard let data = FileManager.default.contents(atPath: path) else { throw SimLabError("cannot read scenario file '\(path)'") }
        return try parse(String(decoding: data, as: UTF8.self), source: path)
    }

    /// Values the types cannot express (empty when valid).
    /// Bounds that keep every conversion to integers and nanoseconds exact.
    static let maxTokens = 1_000_000, maxCapacity = 100_000, maxCredits = 1e9, maxDelayMs = 60_000.0
    /// Expected arrivals (rates × duration) a scenario may ask for.
    static let maxExpectedArrivals = 5_000_000.0

    public var problems: [String] {
        var out: [String] = []
        func finite(_ x: Double, in r: ClosedRange<Double>) -> Bool { x.isFinite && r.contains(x) }
        if !(durationS > 0 && durationS <= 86_400) { out.append("duration_s must be in (0, 86400]") }
        if !(requestTimeoutS > 0 && requestTimeoutS <= 86_400) { out.append("request_timeout_s must be in (0, 86400]") }
        if sloThresholdsS.isEmpty || sloThresholdsS.contains(where: { !($0 > 0 && $0 <= 86_400) }) {
            out.append("slo_thresholds_s must be numbers in (0, 86400]")
        }
        // The name is the default output directory (docs/experiments/<name>): no paths.
        if name.isEmpty || name.count > 100 || name.first == "." || !name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) {
            out.append("name \(String(name.prefix(40)).debugDescription) must be 1 to 100 ASCII letters, digits, '.', '_' or '-', not starting with '.'")
        }
        if modes.isEmpty { out.append("modes must name at least one of single, centralized, wwwserve") }
        if let twice = Dictionary(grouping: modes, by: { $0 }).first(where: { $0.value.count > 1 })?.key {
            out.append("modes lists '\(twice.rawValue)' twice")
        }
        if !["trace", "fixed", "uniform"].contains(lengths.kind) { out.append("lengths.kind must be trace, fixed or uniform") }
        if !["conv", "code"].contains(lengths.trace) { out.append("lengths.trace must be conv or code") }
        if lengths.kind == "uniform", !(1...max(1, lengths.maxOutputTokens)).contains(lengths.minOutputTokens) {
            out.append("lengths: 1 ≤ min_output_tokens ≤ max_output_tokens")
        }
        let tokens = [lengths.promptTokens, lengths.outputTokens, lengths.maxOutputTokens, lengths.maxPromptTokens, lengths.minOutputTokens]
        if lengths.promptTokens < 0 || lengths.outputTokens < 1 || lengths.maxOutputTokens < 1 || lengths.maxPromptTokens < 1
            || tokens.contains(where: { $0 > Self.maxTokens }) {
            out.append("lengths: token counts must be in 1...\(Self.maxTokens) (prompt_tokens from 0)")
        }
        if !(finite(network.minDelayMs, in: 0...Self.maxDelayMs) && finite(network.maxDelayMs, in: network.minDelayMs...Self.maxDelayMs)
             && (0..<1).contains(network.loss)) {
            out.append("network: 0 ≤ min_delay_ms ≤ max_delay_ms ≤ \(Int(Self.maxDelayMs)), loss in [0, 1)")
        }
        if !(warmupS >= 0 && warmupS <= 3600) { out.append("warmup_s must be in 0...3600") }
        if !(50...60_000).contains(gossipPeriodMs) { out.append("gossip_period_ms must be in 50...60000") }
        // Counts first: nothing below expands the groups before they are known to be small.
        let counts = nodes.map(\.count)
        guard !counts.contains(where: { $0 < 1 || $0 > 20_000 }), counts.reduce(0, +) <= 20_000 else {
            return out + ["nodes: each count in 1...20000, at most 20000 nodes in all"]
        }
        if nodes.isEmpty { out.append("nodes must not be empty") }
        if !(samplePeriodS >= 0.1 && samplePeriodS <= 3600) { out.append("sample_period_s must be in 0.1...3600") }
        if !(latencyWindowS >= 1 && latencyWindowS <= 86_400) { out.append("latency_window_s must be in 1...86400") }
        let names = Set(expandedNodes.map(\.name))
        for (i, e) in events.enumerated() {
            if !names.contains(e.node) { out.append("events[\(i)]: no node named '\(e.node)' (names: \(names.sorted().joined(separator: ", ")))") }
            if !["join", "leave", "crash", "restart"].contains(e.action) { out.append("events[\(i)]: action must be join, leave, crash or restart") }
            if !(e.atS >= 0 && e.atS <= durationS) { out.append("events[\(i)]: at_s must be within the duration") }
        }
        if let n = expandedNodes.first, events.contains(where: { $0.node == n.name && $0.action == "join" }) {
            out.append("the first node (\(n.name)) is the seed and cannot join later; list another node first")
        }
        if let d = duels {
            if !(0...1).contains(d.probability) || !(1...64).contains(d.judgesPerDuel) || !(0...1).contains(d.noise)
                || !(0...1).contains(d.positionBias) {
                out.append("duels: probability, noise and position_bias in [0, 1], judges_per_duel in 1...64")
            }
        }
        let expanded = expandedNodes.map(\.name)
        if let dup = Dictionary(grouping: expanded, by: { $0 }).first(where: { $0.value.count > 1 })?.key {
            out.append("two nodes are named '\(dup)' (a group of count k names its nodes <name>-1 … <name>-k)")
        }
        if let bad = nodes.first(where: { $0.name.isEmpty || !$0.name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) }) {
            out.append("node name \(String(bad.name.prefix(40)).debugDescription) must be non-empty ASCII letters, digits, '.', '_' or '-'")
        }
        var expected = 0.0
        for g in nodes {
            let w = g.workload
            switch w.kind {
            case "poisson": expected += Double(g.count) * w.rate * durationS
            case "fluctuating":
                for (i, r) in w.rates.enumerated() where r.count == 2 {
                    let end = i + 1 < w.rates.count ? min(w.rates[i + 1][0], durationS) : durationS
                    expected += Double(g.count) * r[1] * max(0, end - r[0])
                }
            case "count": expected += Double(g.count) * Double(w.count)
            default: break
            }
        }
        if !(expected <= Self.maxExpectedArrivals) {
            let about = expected.isFinite && expected < 1e15 ? String(Int(expected)) : String(format: "%.3g", expected)
            out.append("the workloads ask for about \(about) requests; at most \(Int(Self.maxExpectedArrivals)) per run")
        }
        for (i, n) in nodes.enumerated() {
            let p = "nodes[\(i)] (\(n.name))"
            if n.count < 1 { out.append("\(p): count must be at least 1") }
            if !(1...Self.maxCapacity).contains(n.capacity) { out.append("\(p): capacity must be in 1...\(Self.maxCapacity)") }
            if let q = n.quality, !(q > 0 && q <= 1) { out.append("\(p): quality must be in (0, 1]") }
            if !finite(n.grant, in: 0...Self.maxCredits) { out.append("\(p): grant must be in 0...1e9 credits") }
            let pol = n.policy
            if ![pol.offloadFrequency, pol.acceptFrequency].allSatisfy({ (0...1).contains($0) }) || !finite(pol.loadTarget, in: 0.01...1000)
                || !finite(pol.stake, in: 0...Self.maxCredits) {
                out.append("\(p): policy frequencies in [0, 1], load_target in 0.01...1000, stake in 0...1e9")
            }
            let w = n.workload
            switch w.kind {
            case "none": break
            case "poisson": if !(w.rate > 0 && w.rate < 10_000) { out.append("\(p): workload.rate must be in (0, 10000) req/s") }
            case "fluctuating":
                if w.rates.isEmpty || w.rates.contains(where: { $0.count != 2 || !finite($0[1], in: 0...10_000) || !finite($0[0], in: 0...86_400) })
                    || zip(w.rates, w.rates.dropFirst()).contains(where: { $0[0] >= $1[0] }) {
                    out.append("\(p): workload.rates must be [[from_s, rate], …] with from_s ascending from 0 and rates in 0...10000")
                }
            case "count": if !(1...1_000_000).contains(w.count) { out.append("\(p): workload.count must be in 1...1000000") }
            case "trace":
                if !["conv", "code"].contains(w.trace) { out.append("\(p): workload.trace must be conv or code") }
                if !(w.scale > 0 && w.scale <= 1) || !finite(w.offsetS, in: 0...86_400) { out.append("\(p): workload.scale in (0, 1], offset_s in 0...86400") }
            default: out.append("\(p): workload.kind must be none, poisson, fluctuating, count or trace")
            }
        }
        return out
    }
}

/// Scenario files are strict: an unknown key is an error naming it.
