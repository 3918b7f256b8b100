import ArgumentParser
import Foundation
import WWWBench
import WWWCore
import WWWSim
import WWWSimLab

/// `wwwserve sim`: deterministic in-memory runs of the real protocol core.
struct SimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sim", abstract: "Run the protocol core in the deterministic simulator.",
        subcommands: [SimRunCommand.self, SimSweepCommand.self, SimFuzzCommand.self, SimScaleCommand.self, ConvergenceCommand.self,
                      MassStartCommand.self])
}

/// `wwwserve sim convergence`: periods until a join, a leave and a crash are known by all
/// N nodes, and gossip traffic per node per period (DESIGN.md §4 targets).
struct ConvergenceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convergence", abstract: "Measure membership convergence and traffic at several network sizes.")

    @Option(help: "Comma-separated network sizes.") var nodes = "10,100"
    @Option(help: "Seeds per size (runs are deterministic per seed).") var seeds = 3
    @Option(help: "First seed.") var firstSeed: UInt64 = 1
    @Option(help: "Message loss probability in the simulated network.") var loss = 0.0

    /// The sizes `--nodes` lists (entries that are not numbers are skipped).
    var sizeList: [Int] { nodes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    /// Option checks run here, before `run`, so a bad value prints this command's usage.
    func validate() throws {
        let sizes = sizeList
        guard !sizes.isEmpty, sizes.allSatisfy({ $0 >= 2 && $0 <= 5_000 }) else {
            throw ValidationError("--nodes must list sizes between 2 and 5000")
        }
        guard seeds >= 1, seeds <= 100, (0..<1).contains(loss) else { throw ValidationError("--seeds in 1...100, --loss in [0, 1)") }
    }

    func run() throws {
        let sizes = sizeList
        var network = SimNetworkConfig()
        network.lossProbability = loss
        print("N      seed  bootstrap  join  leave  crash (suspicion)  msgs/node/period  bytes/node/period")
        for n in sizes {
            for s in 0..<seeds {
                let r = ConvergenceExperiment.run(n: n, seed: firstSeed + UInt64(s), network: network)
                func p(_ v: Int?) -> String { v.map(String.init) ?? "never" }
                let row: [String] = [
                    String(n).padding(toLength: 6, withPad: " ", startingAt: 0),
                    String(r.seed).padding(toLength: 5, withPad: " ", startingAt: 0),
                    p(r.bootstrapPeriods).padding(toLength: 10, withPad: " ", startingAt: 0),
                    p(r.joinPeriods).padding(toLength: 5, withPad: " ", startingAt: 0),
                    p(r.leavePeriods).padding(toLength: 6, withPad: " ", startingAt: 0),
                    "\(p(r.crashPeriods)) (\(String(format: "%.1f", r.suspicionTimeoutPeriods)))".padding(toLength: 18, withPad: " ", startingAt: 0),
                    String(format: "%.1f", r.messagesPerNodePerPeriod).padding(toLength: 17, withPad: " ", startingAt: 0),
                    String(format: "%.0f", r.bytesPerNodePerPeriod),
                ]
                print(row.joined(separator: " "))
            }
        }
    }
}

/// `wwwserve sim mass-start`: N nodes started at once through two seeds, each a processor
/// with a per-message CPU cost and a bounded inbound queue; periods until all see all
/// alive, then false suspicions while watching (issue: no metastable collapse).
struct MassStartCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mass-start",
        abstract: "Start N nodes at once with a per-message CPU cost; measure convergence and false suspicions.",
        discussion: """
        Defaults model a node on its own core (0.4 ms to receive, 0.3 ms to send a message, \
        as measured on real processes). To model many nodes sharing few cores, raise the \
        costs (100 processes on 2 cores: about 50x). --no-lifeguard turns local health and \
        suspicion scaling off, for comparison.
        """)

    @Option(help: "Comma-separated network sizes.") var nodes = "100,1000"
    @Option(help: "Seeds per size (runs are deterministic per seed).") var seeds = 1
    @Option(help: "First seed.") var firstSeed: UInt64 = 1
    @Option(help: "CPU time per received message, in microseconds.") var receiveCostUs = 400
    @Option(help: "CPU time per sent message, in microseconds.") var sendCostUs = 300
    @Option(help: "Messages a node holds waiting; more are shed.") var inboundLimit = 64
    @Option(help: "Periods to watch for false suspicions after convergence.") var watch = 60
    @Option(help: "Give up on convergence after this many periods.") var maxPeriods = 300
    @Option(help: "Message loss probability.") var loss = 0.0
    @Flag(help: "Disable Lifeguard (local health and suspicion scaling).") var noLifeguard = false
    @Flag(help: "Print one line per watched period (suspects, local health, CPU backlog, inbound queue).") var trace = false

    /// The sizes `--nodes` lists (entries that are not numbers are skipped).
    var sizeList: [Int] { nodes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func validate() throws {
        let sizes = sizeList
        guard !sizes.isEmpty, sizes.allSatisfy({ $0 >= 3 && $0 <= 20_000 }) else {
            throw ValidationError("--nodes must list sizes between 3 and 20000")
        }
        guard seeds >= 1, seeds <= 100, (0..<1).contains(loss), receiveCostUs >= 0, sendCostUs >= 0,
              inboundLimit >= 1, watch >= 0, maxPeriods >= 1 else {
            throw ValidationError("--seeds in 1...100, --loss in [0, 1), costs ≥ 0, --inbound-limit ≥ 1")
        }
    }

    func run() throws {
        let sizes = sizeList
        let network = SimNetworkConfig(lossProbability: loss, receiveCost: .microseconds(receiveCostUs),
                                       sendCost: .microseconds(sendCostUs), inboundLimit: inboundLimit)
        var config = MembershipConfig()
        if noLifeguard {
            config.maxLocalHealth = 0
            config.suspicionMaxMultiplier = 1
        }
        for n in sizes {
            for s in 0..<seeds {
                print(MassStartExperiment.run(n: n, seed: firstSeed + UInt64(s), config: config, network: network,
                                              maxPeriods: maxPeriods, watchPeriods: watch, trace: trace ? { print($0) } : nil))
            }
        }
    }
}

/// `wwwserve sim run SCENARIO`: runs a YAML scenario in each of its modes (single-node,
/// centralized, wwwserve) over the same arrivals and writes CSV, an SVG plot and a
/// markdown report.
struct SimRunCommand: ParsableCommand {
    /// Creates `dir` now (and checks it takes files), so a bad --out fails before the runs.
    static func writable(_ dir: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let probe = (dir as NSString).appendingPathComponent(".write-test")
            try Data().write(to: URL(fileURLWithPath: probe))
            try FileManager.default.removeItem(atPath: probe)
        } catch {
            throw CLIError("--out: cannot write into '\(dir)'")
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run a scenario (YAML) in single / centralized / wwwserve mode and write CSV, SVG and a report.",
        discussion: "Bundled scenarios are in sim/scenarios/; engine profiles in sim/profiles.yaml (see docs/experiments/README.md).")

    @Argument(help: "The scenario file (YAML).") var scenario: String
    @Option(help: "Extra engine profiles (YAML), over the bundled sim/profiles.yaml.") var profiles: String?
    @Option(help: "Output directory (default docs/experiments/<scenario name>).") var out: String?
    @Option(help: "Path of ../shared/data (auto-detected).") var dataDir: String?
    @Option(help: "Comma-separated modes to run (default: the scenario's).") var modes: String?
    @Option(help: "Override the scenario's seed.") var seed: UInt64?

    /// The modes `--modes` names (nil: the scenario's); throws naming a bad entry.
    static func parseModes(_ list: String) throws -> [Scenario.Mode] {
        let names = list.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard !list.isEmpty else { throw ValidationError("--modes: name at least one of single, centralized, wwwserve") }
        return try names.map {
            guard let m = Scenario.Mode(rawValue: $0) else { throw ValidationError("--modes: unknown mode '\($0)' (single, centralized, wwwserve)") }
            return m
        }
    }

    func validate() throws {
        if let modes { _ = try Self.parseModes(modes) }
    }

    func run() throws {
        var s = try Scenario.load(path: scenario)
        if let seed { s.seed = seed }
        if let modes { s.modes = try Self.parseModes(modes) }
        guard let bundled = ProfileBook.bundledPath() else { throw CLIError("cannot find sim/profiles.yaml (run from the repository root)") }
        var book = try ProfileBook.load(path: bundled)
        if let profiles { book = book.merging(try ProfileBook.load(path: profiles)) }
        if let p = s.problems.first { throw CLIError(p) }
        let dir = out ?? "docs/experiments/\(s.name)"
        try Self.writable(dir)
        let arrivals = try s.arrivals(traces: try s.loadTraces(dataDir: dataDir))
        let runner = try ScenarioRunner(scenario: s, book: book, arrivals: arrivals)
        print("scenario \(s.name): \(runner.nodes.count) nodes, \(arrivals.count) requests over \(Int(s.durationS)) s, seed \(s.seed)")
        var runs: [ModeRun] = []
        for mode in s.modes {
            let bar = ProgressBar(total: 100, noun: "percent", finishLabel: "  \(mode.rawValue)")
            let r = runner.run(mode) { bar.update(done: Int($0 * 100)) }
            bar.update(done: 100)
            bar.finish()
            print("    \(r.records.filter(\.ok).count)/\(r.records.count) ok, \(r.events) events, \(String(format: "%.1f", r.wallSeconds)) s wall")
            runs.append(r)
        }
        var command = "wwwserve sim run \(scenario)"
        if let seed { command += " --seed \(seed)" }
        if let modes { command += " --modes \(modes)" }
        if let profiles { command += " --profiles \(profiles)" }
        if let out { command += " --out \(SimScaleCommand.quoted(out))" }
        let report = ScenarioReport(scenario: s, runs: runs, command: command)
        do {
            try report.write(to: dir)
        } catch {
            throw CLIError("--out: \(error)")
        }
        print("")
        for row in report.summaryRows() { print("  " + row.joined(separator: "  ")) }
        print("wrote \(dir)/: report.md, requests.csv, slo.csv/svg, nodes.csv, latency.csv/svg" + (report.creditsSVG != nil ? ", credits.csv/svg" : ""))
    }
}

/// `wwwserve sim fuzz`: random networks under random faults, checked against the
/// protocol's invariants (see `Fuzz`). Failing seeds are printed first; `--seed` replays one.
struct SimFuzzCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fuzz", abstract: "Run random fault scenarios on the node machines and check the invariants.",
        discussion: "Checks: conservation on every node, ledgers converge after the faults, no request silently lost, no offer to a node every other knows dead, no false equivocator. Exit status 1 when any seed fails.")

    @Option(help: "Number of seeds to run.") var seeds = 20
    @Option(help: "First seed.") var firstSeed: UInt64 = 1
    @Option(help: "Run only this seed and print its case and trace hash (replays byte for byte).") var seed: UInt64?

    func validate() throws {
        guard seeds >= 1, seeds <= 100_000 else { throw ValidationError("--seeds must be in 1...100000") }
        guard firstSeed <= UInt64.max - UInt64(seeds) else { throw ValidationError("--first-seed too large for --seeds \(seeds)") }
    }

    func run() throws {
        let list = seed.map { [$0] } ?? (0..<UInt64(seeds)).map { firstSeed + $0 }
        let bar = seed == nil ? ProgressBar(total: list.count, noun: "seeds", finishLabel: "fuzz finished") : nil
        var outcomes: [Fuzz.Outcome] = []
        for s in list {
            let o = Fuzz.run(Fuzz.generate(seed: s), tracing: seed != nil)
            outcomes.append(o)
            bar?.advance(ok: o.ok)
        }
        bar?.finish()
        let failed = outcomes.filter { !$0.ok }
        for o in failed + outcomes.filter(\.ok) where seed != nil || !o.ok {
            print("seed \(o.fuzzCase.seed): \(o.ok ? "ok" : "FAILED") — \(o.fuzzCase)")
            for v in o.violations { print("    \(v)") }
            print("    \(o.requests) requests, \(o.answered) answered, \(o.duelsSettled) duels settled, \(o.events) events" + (seed != nil ? ", trace hash \(String(o.traceHash, radix: 16))" : ""))
        }
        let requests = outcomes.reduce(0) { $0 + $1.requests }, answered = outcomes.reduce(0) { $0 + $1.answered }
        print("\(outcomes.count - failed.count)/\(outcomes.count) seeds passed every check; \(requests) requests, \(answered) answered")
        if !failed.isEmpty {
            print("failing seeds: " + failed.map { String($0.fuzzCase.seed) }.joined(separator: " ") + " (replay: wwwserve sim fuzz --seed S)")
            throw ExitCode(1)
        }
    }
}

/// `wwwserve sim scale`: full node machines at several network sizes — periods until a
/// join, a leave and a crash are known by all, gossip bytes, offload decision cost and the
/// simulator's own speed and memory.
struct SimScaleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scale",
        abstract: "Membership periods, gossip bytes, decision cost and simulator speed at several network sizes.",
        discussion: "Writes scale.csv, scale.svg and report.md. Run sizes from small to large: peak memory is the process's.")

    @Option(help: "Comma-separated network sizes, 3 to 20000 each (run in ascending order).") var nodes = "10,100,1000"
    @Option(help: "Seed.") var seed: UInt64 = 1
    @Option(help: "Offloaded requests whose decision is timed (1 to 1000).") var decisions = 20
    @Option(help: "Sizes above this start from preloaded tables instead of a gossip bootstrap through one seed (0: preload every size).")
    var gossipBootstrapMax = 2_000
    @Option(help: "Output directory.") var out = "docs/experiments/scale"

    /// The sizes, ascending and without repeats; throws naming a bad entry.
    static func sizes(_ list: String) throws -> [Int] {
        var out: [Int] = []
        for part in list.split(separator: ",", omittingEmptySubsequences: false) {
            let t = part.trimmingCharacters(in: .whitespaces)
            guard let n = Int(t), t.first != "+", (3...20_000).contains(n) else {
                throw ValidationError("--nodes: '\(t)' is not a size between 3 and 20000")
            }
            out.append(n)
        }
        return Array(Set(out)).sorted()
    }

    /// `s` quoted for a shell when it needs it.
    static func quoted(_ s: String) -> String {
        s.contains(where: { " \"'$\\".contains($0) }) ? "'\(s.replacingOccurrences(of: "'", with: "'\\''"))'" : s
    }

    func validate() throws {
        _ = try Self.sizes(nodes)
        guard (1...1_000).contains(decisions) else { throw ValidationError("--decisions must be in 1...1000") }
    }

    func run() throws {
        let sizes = try Self.sizes(nodes)
        try SimRunCommand.writable(out)
        let list = sizes.map(String.init).joined(separator: ",")
        let command = "wwwserve sim scale --nodes \(list) --seed \(seed) --decisions \(decisions) --gossip-bootstrap-max \(gossipBootstrapMax) --out \(Self.quoted(out))"
        var results: [ScaleResult] = []
        /// The report of the sizes done so far, the rest marked pending.
        func writeReport() throws {
            do {
                try ScaleReport(results: results, command: command, pending: Array(sizes.dropFirst(results.count))).write(to: out)
            } catch {
                throw CLIError("--out: \(error)")
            }
        }
        // A report before the first size: a run stopped early never leaves an older,
        // complete-looking report in place.
        try writeReport()
        for n in sizes {
            let r = ScaleExperiment.run(n: n, seed: seed, decisions: decisions, preload: n > gossipBootstrapMax) { phase in
                FileHandle.standardError.write(Data("  \(n) nodes: \(phase)…\n".utf8))
            }
            print("\(n) nodes: bootstrap \(ScaleReport.bootstrap(r)), join \(ScaleReport.p(r.joinPeriods)), "
                + "leave \(ScaleReport.p(r.leavePeriods)), crash \(ScaleReport.p(r.crashPeriods)) periods; "
                + String(format: "%.0f B/node/s; decision %.0f µs; %.1f s wall, %.0f MiB; %d events queued at most", r.bytesPerNodePerSecond,
                         r.decisionMeanMicros, r.wallSeconds, r.peakRSSMiB, r.peakQueued))
            fflush(nil)   // every stream: the line shows at once when stdout is a pipe
            results.append(r)
            try writeReport()
        }
        print("wrote \(out)/: scale.csv, scale.svg, report.md")
    }
}

/// `wwwserve sim sweep SCENARIO --parameter P --values …`: SLO attainment vs a policy
/// parameter set on every node group (wwwserve mode).
struct SimSweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep", abstract: "Sweep a policy parameter over a scenario (wwwserve mode): SLO attainment and latency per value.")

    @Argument(help: "The scenario file (YAML).") var scenario: String
    @Option(help: "offload_frequency, accept_frequency, load_target or stake.") var parameter = "offload_frequency"
    @Option(help: "Comma-separated values.") var values = "0,0.25,0.5,0.75,1"
    @Option(help: "SLO threshold in seconds.") var slo = 120.0
    @Option(help: "Output directory (default docs/experiments/<scenario>-vs-<parameter>).") var out: String?
    @Option(help: "Path of ../shared/data (auto-detected).") var dataDir: String?

    static func parseValues(_ list: String) throws -> [Double] {
        let vs = try list.split(separator: ",", omittingEmptySubsequences: false).map { v -> Double in
            guard let d = Double(v.trimmingCharacters(in: .whitespaces)), d.isFinite else { throw ValidationError("--values: '\(v)' is not a number") }
            return d
        }
        guard (1...100).contains(vs.count) else { throw ValidationError("--values: 1 to 100 numbers") }
        return vs
    }

    func validate() throws {
        _ = try Self.parseValues(values)
        guard slo.isFinite, slo > 0, slo <= 86_400 else { throw ValidationError("--slo must be in (0, 86400] seconds") }
    }

    func run() throws {
        let base = try Scenario.load(path: scenario)
        let vs = try Self.parseValues(values)
        if let p = base.problems.first { throw CLIError(p) }
        let dir = out ?? "docs/experiments/\(base.name)-vs-\(parameter.replacingOccurrences(of: "_", with: "-"))"
        try SimRunCommand.writable(dir)
        for v in vs { _ = try base.with(policy: parameter, v) }   // every value checked before any run
        guard let bundled = ProfileBook.bundledPath() else { throw CLIError("cannot find sim/profiles.yaml (run from the repository root)") }
        let book = try ProfileBook.load(path: bundled)
        let arrivals = try base.arrivals(traces: try base.loadTraces(dataDir: dataDir))
        let bar = ProgressBar(total: vs.count, noun: "values", finishLabel: "sweep finished")
        var points: [(value: Double, run: ModeRun)] = []
        for v in vs {
            let s = try base.with(policy: parameter, v)
            points.append((v, try ScenarioRunner(scenario: s, book: book, arrivals: arrivals).run(.wwwserve)))
            bar.advance(ok: true)
        }
        bar.finish()
        let report = SweepReport(scenario: base, parameter: parameter, threshold: slo, points: points,
                                 command: "wwwserve sim sweep \(scenario) --parameter \(parameter) --values \(values) --slo \(slo)")
        try report.write(to: dir)
        print(report.csv, terminator: "")
        print("wrote \(dir)/report.md, sweep.svg, sweep.csv")
    }
}
