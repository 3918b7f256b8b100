import Foundation
import WWWSim

/// Summaries, CSV, SVG and markdown of a scenario's runs. All formatting is fixed-width
/// decimal, so the same runs give byte-identical files.
public struct ScenarioReport {
    public let scenario: Scenario
    public let runs: [ModeRun]
    public let nodes: [ScenarioNode]
    /// The command that regenerates the files (written into the report).
    public let command: String

    public init(scenario: Scenario, runs: [ModeRun], command: String) {
        self.scenario = scenario
        self.runs = runs
        self.nodes = scenario.expandedNodes
        self.command = command
    }

    static func f(_ x: Double, _ digits: Int = 3) -> String { String(format: "%.\(digits)f", x) }

    /// A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break.
    static func csv(_ field: String) -> String {
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return field }
        return "\"" + field.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    /// Share of all requests answered within `threshold` seconds end to end (failures and
    /// timeouts are misses).
    public static func attainment(_ records: [RequestRecord], threshold: Double) -> Double {
        guard !records.isEmpty else { return 0 }
        return Double(records.filter { $0.ok && $0.latency! <= threshold }.count) / Double(records.count)
    }

    public static func percentile(_ xs: [Double], _ p: Double) -> Double? {
        guard !xs.isEmpty else { return nil }
        let s = xs.sorted()
        return s[min(s.count - 1, Int((p * Double(s.count - 1)).rounded()))]
    }

    // MARK: CSV

    public var requestsCSV: String {
        var out = "mode,request,node,arrival_s,ttft_s,latency_s,executor,prompt_tokens,output_tokens,failure\n"
        for r in runs {
            for x in r.records {
                let cells = [r.mode.rawValue, String(x.index), nodes[x.node].name, Self.f(x.arrival), x.ttft.map { Self.f($0) } ?? "",
                             x.latency.map { Self.f($0) } ?? "", x.executor.flatMap { $0 >= 0 ? nodes[$0].name : nil } ?? "",
                             String(x.promptTokens), String(x.outputTokens), x.failure ?? ""]
                out += cells.map(Self.csv).joined(separator: ",") + "\n"
            }
        }
        return out
    }

    public var sloCSV: String {
        var out = "mode,slo_threshold_s,attainment\n"
        for r in runs {
            for t in scenario.sloThresholdsS {
                out += "\(r.mode.rawValue),\(Self.f(t, 1)),\(Self.f(Self.attainment(r.records, threshold: t), 4))\n"
            }
        }
        return out
    }

    /// Per mode and node: requests executed, mean running requests, and (wwwserve) the
    /// final balance and duel record.
    public var nodesCSV: String {
        var out = "mode,node,profile,stake,accept_frequency,offload_frequency,executed,mean_running,balance,duel_wins,duel_losses,duel_ties,win_rate\n"
        for r in runs {
            var executed = [Int](repeating: 0, count: nodes.count)
            for x in r.records where x.ok { if let e = x.executor, e >= 0 { executed[e] += 1 } }
            for n in nodes {
                let d = r.duelRecords.indices.contains(n.index) ? r.duelRecords[n.index] : nil
                let cells = [r.mode.rawValue, n.name, n.group.profile, Self.f(n.group.policy.stake, 1), Self.f(n.group.policy.acceptFrequency, 2),
                             Self.f(n.group.policy.offloadFrequency, 2), String(executed[n.index]),
                             r.meanRunning.indices.contains(n.index) ? Self.f(r.meanRunning[n.index]) : "",
                             r.balances.indices.contains(n.index) ? Self.f(r.balances[n.index], 2) : "",
                             d.map { String($0.wins) } ?? "", d.map { String($0.losses) } ?? "", d.map { String($0.ties) } ?? "",
                             d?.winRate.map { Self.f($0) } ?? ""]
                out += cells.joined(separator: ",") + "\n"
            }
        }
        return out
    }

    /// wwwserve: every node's balance over time (node 0's ledger view).
    public var creditsCSV: String {
        var out = "t_s,node,balance\n"
        for r in runs where r.mode == .wwwserve {
            for (t, bs) in r.balanceSeries { for n in nodes { out += "\(Self.f(t, 1)),\(n.name),\(Self.f(bs[n.index], 2))\n" } }
        }
        return out
    }

    public var creditsSVG: String? {
        guard let r = runs.first(where: { $0.mode == .wwwserve }), !r.balanceSeries.isEmpty else { return nil }
        return SVGPlot(title: "\(scenario.name): balance over time (wwwserve)", xLabel: "seconds after the workload's start",
                       yLabel: "credits", series: nodes.map { n in (n.name, r.balanceSeries.map { ($0.0, $0.1[n.index]) }) }).render()
    }

    /// The mean end-to-end latency of the requests answered that arrived within the window
    /// around each instant, every window/6 seconds (and the share that failed).
    public func windowedLatency(_ r: ModeRun) -> [(t: Double, mean: Double?, failed: Double)] {
        let w = scenario.latencyWindowS
        var out: [(Double, Double?, Double)] = []
        var t = 0.0
        while t <= scenario.durationS {
            let inWindow = r.records.filter { abs($0.arrival - t) <= w / 2 }
            let lat = inWindow.compactMap { $0.ok ? $0.latency : nil }
            out.append((t, lat.isEmpty ? nil : lat.reduce(0, +) / Double(lat.count),
                        inWindow.isEmpty ? 0 : Double(inWindow.filter { !$0.ok }.count) / Double(inWindow.count)))
            t += w / 6
        }
        return out
    }

    public var latencyCSV: String {
        var out = "mode,t_s,window_s,mean_latency_s,failed_share\n"
        for r in runs {
            for p in windowedLatency(r) {
                out += "\(r.mode.rawValue),\(Self.f(p.t, 1)),\(Self.f(scenario.latencyWindowS, 0)),\(p.mean.map { Self.f($0) } ?? ""),\(Self.f(p.failed, 3))\n"
            }
        }
        return out
    }

    public var latencySVG: String {
        var plot = SVGPlot(title: "\(scenario.name): mean latency over a \(Int(scenario.latencyWindowS)) s window", xLabel: "arrival (s)",
                           yLabel: "end-to-end latency (s)",
                           series: runs.map { r in (r.mode.rawValue, windowedLatency(r).compactMap { p in p.mean.map { (p.t, $0) } }) })
        plot.markers = scenario.events.map { ($0.atS, "\($0.node) \($0.action)") }
        return plot.render()
    }

    // MARK: SVG

    public var sloSVG: String {
        SVGPlot(title: "\(scenario.name): SLO attainment vs SLO threshold", xLabel: "end-to-end SLO threshold (s)",
                yLabel: "SLO attainment", yRange: 0...1,
                series: runs.map { r in (r.mode.rawValue, scenario.sloThresholdsS.map { ($0, Self.attainment(r.records, threshold: $0)) }) })
            .render()
    }

    // MARK: Markdown

    public func summaryRows() -> [[String]] {
        runs.map { r in
            let ok = r.records.filter(\.ok)
            let lat = ok.compactMap(\.latency), ttft = ok.compactMap(\.ttft)
            let mean = lat.isEmpty ? nil : lat.reduce(0, +) / Double(lat.count)
            func s(_ v: Double?) -> String { v.map { Self.f($0, 2) } ?? "-" }
            return [r.mode.rawValue, String(r.records.count), String(ok.count), String(r.records.count - ok.count),
                    s(mean), s(Self.percentile(lat, 0.5)), s(Self.percentile(lat, 0.99)), s(Self.percentile(ttft, 0.5)),
                    s(Self.percentile(ttft, 0.99))]
        }
    }

    public var markdown: String {
        var md = "# \(scenario.name)\n\n"
        if let d = scenario.description { md += d.trimmingCharacters(in: .whitespacesAndNewlines) + "\n\n" }
        md += "Regenerate with:\n\n    \(command)\n\n"
        md += "Nodes: " + scenario.nodes.map { g in
            "\(g.count)× \(g.name) (`\(g.profile)`, \(g.capacity) slots, workload \(g.workload.kind)\(g.workload.kind == "poisson" ? " \(g.workload.rate) req/s" : g.workload.kind == "count" ? " \(g.workload.count)" : ""))"
        }.joined(separator: "; ") + ". "
        if !scenario.events.isEmpty {
            let verb = ["join": "joins", "leave": "leaves", "crash": "crashes", "restart": "restarts"]
            md += "Events: " + scenario.events.map { "\($0.node) \(verb[$0.action] ?? $0.action) at \(Self.f($0.atS, 0)) s" }.joined(separator: ", ") + ". "
        }
        md += "Duration \(Self.f(scenario.durationS, 0)) s, request timeout \(Self.f(scenario.requestTimeoutS, 0)) s (timeouts and failures count as SLO misses), seed \(scenario.seed).\n\n"
        md += "| mode | requests | ok | failed | mean latency (s) | p50 | p99 | TTFT p50 (s) | TTFT p99 |\n|---|---|---|---|---|---|---|---|---|\n"
        for row in summaryRows() { md += "| " + row.joined(separator: " | ") + " |\n" }
        md += "\nSLO attainment by end-to-end threshold:\n\n| threshold (s) | " + runs.map(\.mode.rawValue).joined(separator: " | ") + " |\n|---|" + runs.map { _ in "---|" }.joined() + "\n"
        for t in scenario.sloThresholdsS {
            md += "| \(Self.f(t, 0)) | " + runs.map { Self.f(100 * Self.attainment($0.records, threshold: t), 1) + " %" }.joined(separator: " | ") + " |\n"
        }
        if let w = runs.first(where: { $0.mode == .wwwserve }) {
            md += "\nwwwserve: Σ balances = Σ grants on every node at the end: \(w.conservation ? "yes" : "NO"). Requests executed per node: "
            var per: [String: Int] = [:]
            for r in w.records where r.ok { per[r.executor.flatMap { $0 >= 0 ? nodes[$0].name : nil } ?? "?", default: 0] += 1 }
            md += per.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + ".\n"
        }
        md += "\nPer node (nodes.csv):\n\n| node | profile | stake | accept | " + runs.map { "executed (\($0.mode.rawValue))" }.joined(separator: " | ")
            + " | mean running (wwwserve) | balance | duel W/L/T | win rate |\n|---|---|---|---|" + runs.map { _ in "---|" }.joined() + "---|---|---|---|\n"
        var executed: [[Int]] = []
        for r in runs {
            var e = [Int](repeating: 0, count: nodes.count)
            for x in r.records where x.ok { if let i = x.executor, i >= 0 { e[i] += 1 } }
            executed.append(e)
        }
        let w = runs.first { $0.mode == .wwwserve }
        for n in nodes {
            let d = w.flatMap { $0.duelRecords.indices.contains(n.index) ? $0.duelRecords[n.index] : nil }
            md += "| \(n.name) | `\(n.group.profile)` | \(Self.f(n.group.policy.stake, 0)) | \(Self.f(n.group.policy.acceptFrequency, 2)) | "
                + executed.map { String($0[n.index]) }.joined(separator: " | ")
                + " | \(w.flatMap { $0.meanRunning.indices.contains(n.index) ? Self.f($0.meanRunning[n.index], 2) : nil } ?? "-")"
                + " | \(w.flatMap { $0.balances.indices.contains(n.index) ? Self.f($0.balances[n.index], 1) : nil } ?? "-")"
                + " | \(d.map { "\($0.wins)/\($0.losses)/\($0.ties)" } ?? "-") | \(d?.winRate.map { Self.f($0, 2) } ?? "-") |\n"
        }
        md += "\n![SLO attainment](slo.svg)\n\n![Latency over time](latency.svg)\n"
        if creditsSVG != nil { md += "\n![Balances](credits.svg)\n" }
        return md
    }

    /// Writes requests.csv, slo.csv, slo.svg and report.md into `directory`.
    public func write(to directory: String) throws {
        var files = [("requests.csv", requestsCSV), ("slo.csv", sloCSV), ("slo.svg", sloSVG), ("nodes.csv", nodesCSV),
                     ("latency.csv", latencyCSV), ("latency.svg", latencySVG), ("report.md", markdown)]
        if let c = creditsSVG { files += [("credits.csv", creditsCSV), ("credits.svg", c)] }
        try writeReportFiles(files, to: directory)
    }
}

/// Writes `(name, text)` files into `directory` (created if missing), each atomically.
/// - Throws: `SimLabError` naming the file that could not be written, and why.
func writeReportFiles(_ files: [(String, String)], to directory: String) throws {
    do {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    } catch {
        throw SimLabError("cannot create the directory '\(directory)': \(error.localizedDescription)")
    }
    for (name, text) in files {
        let path = (directory as NSString).appendingPathComponent(name)
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw SimLabError("cannot write '\(path)': a directory of that name is in the way")
        }
        do {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw SimLabError("cannot write '\(path)': \(error.localizedDescription)")
        }
    }
}

/// A small line plot as SVG (no dependency: the format is text).
public struct SVGPlot {
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var yRange: ClosedRange<Double>?
    public var series: [(String, [(Double, Double)])]
    /// Vertical lines at x with a label (events).
    public var markers: [(Double, String)] = []
    /// The x axis' tick labels (default: the value, no decimals).
    public var xTickLabel: (Double) -> String = { String(format: "%.0f", $0) }

    public init(title: String, xLabel: String, yLabel: String, yRange: ClosedRange<Double>? = nil, series: [(String, [(Double, Double)])]) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.yRange = yRange
        self.series = series
    }

    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]

    public func render() -> String {
        let w = 640.0, h = 400.0, left = 70.0, right = 150.0, top = 40.0, bottom = 60.0
        let xs = series.flatMap { $0.1.map(\.0) }, ys = series.flatMap { $0.1.map(\.1) }
        let x0 = xs.min() ?? 0, x1 = max(xs.max() ?? 1, x0 + 1e-9)
        let y0 = yRange?.lowerBound ?? min(0, ys.min() ?? 0), y1 = yRange?.upperBound ?? max(ys.max() ?? 1, y0 + 1e-9)
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * (w - left - right) }
        func py(_ y: Double) -> Double { h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom) }
        func f(_ v: Double) -> String { String(format: "%.1f", v) }
        func esc(_ s: String) -> String { s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;") }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        svg += "<text x=\"\(f(w / 2))\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">\(esc(title))</text>\n"
        svg += "<line x1=\"\(f(left))\" y1=\"\(f(py(y0)))\" x2=\"\(f(w - right))\" y2=\"\(f(py(y0)))\" stroke=\"black\"/>\n"
        svg += "<line x1=\"\(f(left))\" y1=\"\(f(py(y0)))\" x2=\"\(f(left))\" y2=\"\(f(py(y1)))\" stroke=\"black\"/>\n"
        for k in 0...4 {
            let y = y0 + (y1 - y0) * Double(k) / 4, x = x0 + (x1 - x0) * Double(k) / 4
            svg += "<text x=\"\(f(left - 6))\" y=\"\(f(py(y) + 4))\" text-anchor=\"end\">\(String(format: "%.2f", y))</text>\n"
            svg += "<line x1=\"\(f(left))\" y1=\"\(f(py(y)))\" x2=\"\(f(w - right))\" y2=\"\(f(py(y)))\" stroke=\"#ddd\"/>\n"
            svg += "<text x=\"\(f(px(x)))\" y=\"\(f(h - bottom + 18))\" text-anchor=\"middle\">\(esc(xTickLabel(x)))</text>\n"
        }
        svg += "<text x=\"\(f((left + w - right) / 2))\" y=\"\(f(h - 15))\" text-anchor=\"middle\">\(esc(xLabel))</text>\n"
        svg += "<text transform=\"translate(18,\(f((top + h - bottom) / 2))) rotate(-90)\" text-anchor=\"middle\">\(esc(yLabel))</text>\n"
        for (k, (x, label)) in markers.enumerated() where x >= x0 && x <= x1 {
            svg += "<line x1=\"\(f(px(x)))\" y1=\"\(f(py(y0)))\" x2=\"\(f(px(x)))\" y2=\"\(f(py(y1)))\" stroke=\"#888\" stroke-dasharray=\"4,3\"/>\n"
            svg += "<text x=\"\(f(px(x) + 3))\" y=\"\(f(top + 12 + Double(k % 4) * 12))\" font-size=\"10\" fill=\"#555\">\(esc(label))</text>\n"
        }
        for (i, (name, points)) in series.enumerated() {
            let c = Self.colors[i % Self.colors.count]
            let path = points.map { "\(f(px($0.0))),\(f(py($0.1)))" }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(c)\" stroke-width=\"2\" points=\"\(path)\"/>\n"
            for p in points { svg += "<circle cx=\"\(f(px(p.0)))\" cy=\"\(f(py(p.1)))\" r=\"3\" fill=\"\(c)\"/>\n" }
            let ly = top + 20 + Double(i) * 18
            svg += "<line x1=\"\(f(w - right + 10))\" y1=\"\(f(ly))\" x2=\"\(f(w - right + 30))\" y2=\"\(f(ly))\" stroke=\"\(c)\" stroke-width=\"2\"/>\n"
            svg += "<text x=\"\(f(w - right + 36))\" y=\"\(f(ly + 4))\">\(esc(name))</text>\n"
        }
        return svg + "</svg>\n"
    }
}

/// One policy parameter swept over a scenario's wwwserve runs: SLO attainment at a
/// threshold and mean latency per value.
public struct SweepReport {
    public let scenario: Scenario
    public let parameter: String
    public let threshold: Double
    public let points: [(value: Double, run: ModeRun)]
    public let command: String

    public init(scenario: Scenario, parameter: String, threshold: Double, points: [(value: Double, run: ModeRun)], command: String) {
        self.scenario = scenario
        self.parameter = parameter
        self.threshold = threshold
        self.points = points
        self.command = command
    }

    func row(_ p: (value: Double, run: ModeRun)) -> (attainment: Double, mean: Double?, failed: Int) {
        let lat = p.run.records.compactMap { $0.ok ? $0.latency : nil }
        return (ScenarioReport.attainment(p.run.records, threshold: threshold), lat.isEmpty ? nil : lat.reduce(0, +) / Double(lat.count),
                p.run.records.filter { !$0.ok }.count)
    }

    public var csv: String {
        var out = "\(parameter),slo_threshold_s,attainment,mean_latency_s,failed\n"
        for p in points {
            let r = row(p)
            out += "\(ScenarioReport.f(p.value, 3)),\(ScenarioReport.f(threshold, 1)),\(ScenarioReport.f(r.attainment, 4)),\(r.mean.map { ScenarioReport.f($0) } ?? ""),\(r.failed)\n"
        }
        return out
    }

    public var svg: String {
        SVGPlot(title: "\(scenario.name): SLO attainment (≤ \(Int(threshold)) s) vs \(parameter)", xLabel: parameter,
                yLabel: "SLO attainment", yRange: 0...1, series: [("wwwserve", points.map { ($0.value, row($0).attainment) })]).render()
    }

    public var markdown: String {
        var md = "# \(scenario.name): SLO attainment vs \(parameter)\n\nRegenerate with:\n\n    \(command)\n\n"
        md += "Every node group's `policy.\(parameter)` set to each value in turn; wwwserve mode; SLO threshold \(Int(threshold)) s "
            + "(failures and timeouts are misses); seed \(scenario.seed).\n\n"
        md += "| \(parameter) | SLO attainment | mean latency (s) | failed |\n|---|---|---|---|\n"
        for p in points {
            let r = row(p)
            md += "| \(ScenarioReport.f(p.value, 2)) | \(ScenarioReport.f(100 * r.attainment, 1)) % | \(r.mean.map { ScenarioReport.f($0, 1) } ?? "-") | \(r.failed) |\n"
        }
        return md + "\n![sweep](sweep.svg)\n"
    }

    public func write(to directory: String) throws {
        try writeReportFiles([("sweep.csv", csv), ("sweep.svg", svg), ("report.md", markdown)], to: directory)
    }
}

extension Scenario {
    /// The scenario with every node group's policy `parameter` set to `value`.
    /// - Throws: `SimLabError` for an unknown parameter or a value out of its range.
    public func with(policy parameter: String, _ value: Double) throws -> Scenario {
        var s = self
        for i in s.nodes.indices {
            switch parameter {
            case "offload_frequency": s.nodes[i].policy.offloadFrequency = value
            case "accept_frequency": s.nodes[i].policy.acceptFrequency = value
            case "load_target": s.nodes[i].policy.loadTarget = value
            case "stake": s.nodes[i].policy.stake = value
            default: throw SimLabError("--parameter must be offload_frequency, accept_frequency, load_target or stake")
            }
        }
        if let p = s.problems.first { throw SimLabError("\(parameter) = \(value): \(p)") }
        return s
    }
}
