import Foundation
import Testing
import WWWCore
@testable import WWWSim
@testable import WWWSimLab

private let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

private func bundledBook() throws -> ProfileBook { try ProfileBook.load(path: repoRoot + "/sim/profiles.yaml") }

private let small = """
name: small
seed: 7
duration_s: 60
request_timeout_s: 120
slo_thresholds_s: [10, 30, 60]
warmup_s: 5
lengths: {kind: uniform, prompt_tokens: 200, min_output_tokens: 100, max_output_tokens: 800}
nodes:
  - name: hot
    profile: qwen3-8b/rtx3090/bf16/flashinfer
    capacity: 4
    policy: {stake: 50, load_target: 0.8}
    workload: {kind: count, count: 30}
  - name: cold
    profile: qwen3-8b/a100/bf16/flashinfer
    count: 2
    capacity: 16
    policy: {stake: 50, load_target: 0.8}
    workload: {kind: poisson, rate: 0.05}
"""

@Suite("sim lab: profiles, scenarios, arrivals, runs")
struct SimLabTests {
    /// Every bundled scenario parses and names only bundled profiles (the runs themselves
    /// are experiments, not tests: the scale benchmarks take minutes).
    @Test func bundledScenariosParse() throws {
        let book = try bundledBook()
        let dir = repoRoot + "/sim/scenarios"
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files.count >= 14)
        for f in files {
            let s = try Scenario.load(path: dir + "/" + f)
            #expect(s.name + ".yaml" == f, "a scenario's name is its file's")
            for g in s.nodes where g.profile != "none" { _ = try book.profile(g.profile) }
        }
    }

    @Test("the bundled profiles parse, and every number names its source")
    func bundled() throws {
        let book = try bundledBook()
        #expect(book.profiles.count >= 12)
        for (name, p) in book.profiles {
            #expect(p.problems.isEmpty, "\(name)")
            #expect(book.sources[name]?.count == ProfileBook.fields.count, "\(name)")
            #expect(book.sources[name]!.values.allSatisfy { $0.contains("§") }, "\(name): every bundled number cites calibration.md")
        }
        let a100 = try book.profile("qwen3-8b/a100/bf16/flashinfer"), sdpa = try book.profile("qwen3-8b/a100/bf16/sdpa")
        // At 32 requests the SDPA backend's per-sequence cost dominates (calibration.md §10.4).
        #expect(sdpa.stepNanos(batch: 32, contextTokens: 32_000) > 5 * a100.stepNanos(batch: 32, contextTokens: 32_000))
        #expect(throws: SimLabError.self) { try book.profile("qwen3-70b/h100") }
    }

    @Test("profile and scenario mistakes are named")
    func mistakes() {
        let bad: [(String, String)] = [
            ("profiles: {p: {step_base_ms: 1}}", "missing"),
            ("profiles: {p: {step_base_ms: [1, 2]}}", "must be a number or [number"),
            ("nope: 1", "expected a mapping"),
        ]
        for (yaml, msg) in bad {
            do { _ = try ProfileBook.parse(yaml, source: "f"); Issue.record("accepted \(yaml)") } catch let e as SimLabError {
                #expect(e.description.contains(msg), "\(e)")
            } catch { Issue.record("\(error)") }
        }
        let scenarios: [(String, String)] = [
            (small.replacingOccurrences(of: "duration_s: 60", with: "duration_s: -1"), "duration_s must be"),
            (small.replacingOccurrences(of: "kind: poisson", with: "kind: bursty"), "workload.kind must be"),
            (small.replacingOccurrences(of: "capacity: 4", with: "capacity: 4\n    capcity: 5"), "unknown key 'capcity'"),
            (small.replacingOccurrences(of: "name: small", with: ""), "missing key 'name'"),
            (small.replacingOccurrences(of: "seed: 7", with: "seed: 7\nmodes: [single, central]"),
             "unknown mode 'central' (modes: single, centralized, wwwserve)"),
            (small.replacingOccurrences(of: "seed: 7", with: "seed: 7\nmodes: [single, single]"), "modes lists 'single' twice"),
            (small.replacingOccurrences(of: "name: small", with: "name: ../../escape"), "name \"../../escape\" must be"),
            (small.replacingOccurrences(of: "name: small", with: "name: \"\""), "name \"\" must be"),
        ]
        for (yaml, msg) in scenarios {
            do { _ = try Scenario.parse(yaml, source: "s"); Issue.record("accepted a bad scenario") } catch let e as SimLabError {
                #expect(e.description.contains(msg), "\(e)")
            } catch { Issue.record("\(error)") }
        }
    }

    @Test("arrivals: exact counts, Poisson rates, fluctuating steps, all in time order")
    func arrivals() throws {
        var s = try Scenario.parse(small, source: "s")
        let a = try s.arrivals(traces: [:])
        #expect(a.filter { $0.node == 0 }.count == 30)
        #expect(zip(a, a.dropFirst()).allSatisfy { $0.at <= $1.at } && a.allSatisfy { $0.at >= 0 && $0.at < 60 })
        #expect(a.allSatisfy { $0.job.promptTokens == 200 && (100...800).contains($0.job.outputTokens) })
        s.durationS = 20_000
        s.nodes[0].workload = try Scenario.parse(small.replacingOccurrences(of: "{kind: count, count: 30}",
                                                                            with: "{kind: fluctuating, rates: [[0, 0.2], [10000, 0.02]]}"),
                                                 source: "s").nodes[0].workload
        let b = try s.arrivals(traces: [:]).filter { $0.node == 0 }
        let early = b.filter { $0.at < 10_000 }.count, late = b.count - early
        #expect(abs(Double(early) - 2000) < 200 && abs(Double(late) - 200) < 60, "\(early) / \(late)")
        #expect(try s.arrivals(traces: [:]) == s.arrivals(traces: [:]))
    }

    @Test("an idle engine gives the formula's latency in the single-node baseline")
    func singleFormula() throws {
        let yaml = """
        name: one
        duration_s: 10
        modes: [single]
        lengths: {kind: fixed, prompt_tokens: 1024, output_tokens: 101}
        nodes:
          - {name: n, profile: qwen3-8b/a100/bf16/flashinfer, workload: {kind: count, count: 1}}
        """
        let s = try Scenario.parse(yaml, source: "s")
        let runner = try ScenarioRunner(scenario: s, book: bundledBook(), arrivals: try s.arrivals(traces: [:]))
        let r = runner.run(.single).records[0]
        // TTFT = 10 ms API + 1024 / 13,300 s prefill; then 100 steps at 11.9 + 0.031 ms + 0.090 µs × ctx.
        let ttft: Double = 0.010 + 1024.0 / 13_300
        var steps: Double = 0
        for k in 0..<100 {
            let ms: Double = 11.9 + 0.031 + 0.090e-3 * Double(1025 + k)
            steps += ms / 1000
        }
        #expect(abs(r.ttft! - ttft) < 1e-6 && abs(r.latency! - (ttft + steps)) < 1e-5, "\(r)")
    }

    @Test("the same seed gives byte-identical CSV, in every mode; requests all end; credits are conserved")
    func deterministic() throws {
        let s = try Scenario.parse(small, source: "s")
        func once() throws -> (String, String, ModeRun) {
            let runner = try ScenarioRunner(scenario: s, book: bundledBook(), arrivals: try s.arrivals(traces: [:]))
            let runs = s.modes.map { runner.run($0) }
            let report = ScenarioReport(scenario: s, runs: runs, command: "test")
            return (report.requestsCSV, report.sloCSV, runs.last!)
        }
        let (a, sa, w) = try once(), (b, sb, _) = try once()
        #expect(a == b && sa == sb)
        #expect(a.split(separator: "\n").count == 1 + 3 * w.records.count)
        #expect(w.mode == .wwwserve && w.conservation)
        #expect(w.records.allSatisfy { $0.ok || $0.failure != nil }, "no request silently lost")
        #expect(w.records.filter(\.ok).count >= w.records.count * 9 / 10)
        var other = s
        other.seed = 8
        let runner = try ScenarioRunner(scenario: other, book: bundledBook(), arrivals: try other.arrivals(traces: [:]))
        #expect(ScenarioReport(scenario: other, runs: [runner.run(.single)], command: "").requestsCSV != a)
    }
}

@Suite("sim fuzz: random faults, checked invariants")
struct FuzzTests {
    @Test("random fault cases pass every check", arguments: [UInt64(1), 2, 3, 4])
    func passes(seed: UInt64) {
        let o = Fuzz.run(Fuzz.generate(seed: seed))
        #expect(o.ok, "seed \(seed): \(o.fuzzCase): \(o.violations)")
        #expect(o.requests > 20 && o.answered > 0)
    }

    @Test("a seed replays byte for byte")
    func replays() {
        let c = Fuzz.generate(seed: 9)
        let a = Fuzz.run(c, tracing: true), b = Fuzz.run(c, tracing: true)
        #expect(a.traceHash == b.traceHash && a.events == b.events && a.violations == b.violations)
        #expect(Fuzz.run(Fuzz.generate(seed: 10), tracing: true).traceHash != a.traceHash)
    }

    @Test("an equivocating provider is named by every node and its receipts stop counting; skewed clocks change nothing")
    func equivocatorAndSkew() throws {
        let seed = try #require((UInt64(1)...300).first {
            let c = Fuzz.generate(seed: $0)
            return c.equivocator != nil && !c.duels && c.crash == nil && !c.skews.isEmpty
        })
        let o = Fuzz.run(Fuzz.generate(seed: seed))
        #expect(o.ok, "seed \(seed): \(o.fuzzCase): \(o.violations)")
    }

    @Test("the checkers catch a partition that never heals")
    func catchesDivergence() throws {
        let seed = try #require((UInt64(1)...200).first { Fuzz.generate(seed: $0).partition != nil && Fuzz.generate(seed: $0).crash == nil })
        let o = Fuzz.run(Fuzz.generate(seed: seed), sabotage: .neverHeal)
        #expect(o.violations.contains { $0.contains("did not converge") }, "\(o.violations)")
    }

    @Test("a small scale run: join, leave and crash are known by all; a report written mid-run says it is partial")
    func scaleRunAndPartialReport() {
        let r = ScaleExperiment.run(n: 5, seed: 3, decisions: 2)
        #expect(r.nodes == 5 && r.joinPeriods != nil && r.leavePeriods != nil && r.crashPeriods != nil)
        #expect(r.decisionsAnswered == 2 && r.messagesPerNodePerSecond > 0)
        let partial = ScaleReport(results: [r], command: "wwwserve sim scale --nodes 5,10", pending: [10])
        #expect(partial.markdown.contains("**Partial:**") && partial.markdown.contains("sizes 10 were not done"))
        let done = ScaleReport(results: [r], command: "wwwserve sim scale --nodes 5")
        #expect(!done.markdown.contains("Partial"))
        #expect(done.csv.split(separator: "\n").count == 2 && done.csv.contains("\n5,3,"))
    }

}
