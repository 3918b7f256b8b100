import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import WWWAPI
import WWWBench
import WWWCore
import WWWCrypto
import WWWNode

/// `wwwserve demo`: real node processes with the bundled model answering real prompts
/// (MT-Bench, Arena-Hard) at arrival times from the Azure LLM inference trace.
struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Start real nodes with the bundled model and replay real prompts at trace arrival times.")

    @Option(help: "Requests to replay.") var requests = 12
    @Option(help: "Mean arrival rate (requests/s) the trace is stretched to; 2 cores serve about 0.5.") var rate = 0.4
    @Option(help: "Cap on generated tokens per request (the trace's output length, capped).") var maxTokens = 64
    @Option(help: "End-to-end SLO threshold in seconds; timeouts count as misses.") var sloSeconds = 30.0
    @Option(help: "Per-request timeout in seconds.") var timeoutSeconds = 120.0
    @Option(help: "Azure trace to take arrivals from: conv or code.") var trace = "conv"
    @Option(help: "Path of ../shared/data (auto-detected).") var dataDir: String?
    @Option(help: "First port; nodes use consecutive ports.") var basePort = 18400
    @Flag(help: "Print every answer in full.") var verbose = false
    @Flag(help: "Duel every offloaded job: six nodes, one of them a junk responder (experiment.cheat), judges with MT-Bench references; prompts with references only.")
    var duels = false

    func run() async throws {
        guard let data = Workload.dataDirectory(explicit: dataDir) else {
            throw ConfigError("cannot find the shared data (prompts and traces): looked for ../shared/data from the current directory and from the binary. Set WWWSERVE_SHARED_DATA=/path/to/shared/data or pass --data-dir /path/to/shared/data")
        }
        guard requests > 0, rate > 0, maxTokens > 0, sloSeconds > 0 else {
            throw ValidationError("--requests, --rate, --max-tokens and --slo-seconds must be positive")
        }
        let workload = try Workload.replay(dataDir: data, trace: trace, count: requests, rate: rate, maxTokens: maxTokens,
                                           withReferences: duels)
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("wwwserve-demo-\(getpid())").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        print("wwwserve demo: \(requests) requests from \(trace) trace arrivals (stretched to \(rate) req/s), prompts from "
              + (duels ? "MT-Bench questions with reference answers; every offloaded job is a duel" : "MT-Bench/Arena-Hard"))
        print("work directory: \(work)")
        let cluster = try DemoCluster(directory: work, basePort: basePort, nodes: duels ? DemoCluster.duelNetwork : DemoCluster.defaultNetwork,
                                      references: duels ? data + "/prompts/mt_bench_questions.jsonl" : nil)
        defer { cluster.stop() }
        try await cluster.start()
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        let before = await cluster.credits(client: client)
        let results = await DemoReplay(client: client, targets: cluster.userURLs, timeout: timeoutSeconds, verbose: verbose)
            .run(workload)
        if duels { await cluster.waitForDuels(client: client) }
        let (after, agree) = await cluster.settledCredits(client: client)
        let duelReport = duels ? await cluster.duelReport(client: client, credits: after) : nil
        try? await client.shutdown()
        DemoReport(results: results, slo: sloSeconds, names: cluster.names).print()
        duelReport?.print()
        cluster.printCredits(before: before, after: after, agree: agree)
    }
}

/// The node processes of a demo: configs written to a work directory, started as child
/// processes of this one, stopped with SIGTERM at the end.
final class DemoCluster: @unchecked Sendable {
    struct Spec {
        var name: String
        var role: String
        /// Engine slots; 0 = no backend (a pure requester).
        var capacity: Int
        var threads: Int
        var offloadFrequency: Double
        var acceptFrequency: Double
        var stake: Double
        /// Utilization below which the node runs (or accepts) more work; > 1 lets the engine queue.
        var loadTarget: Double = 1.0
        /// Receives user requests.
        var takesUsers: Bool
        /// Duels (`--duels`): runs them as requester; judges; `experiment.cheat`.
        var runsDuels = false
        var judges = false
        var cheat: String?
    }

    /// `--duels`: a requester that duels every offloaded job, two honest providers, a junk
    /// responder running the same model but answering random letters, and two judge-only
    /// nodes. Judges (providers too) use the reference judge on MT-Bench's references, with
    /// the lexical fallback (gibberish loses to text) where neither or both answers match.
    static let duelNetwork: [Spec] = [
        Spec(name: "requester", role: "pure requester, duels every offloaded job", capacity: 0, threads: 0,
             offloadFrequency: 1.0, acceptFrequency: 0, stake: 0, takesUsers: true, runsDuels: true),
        Spec(name: "honest-1", role: "provider, judges", capacity: 1, threads: 1,
             offloadFrequency: 0, acceptFrequency: 1.0, stake: 40, loadTarget: 2.0, takesUsers: false, judges: true),
        Spec(name: "honest-2", role: "provider, judges", capacity: 1, threads: 1,
             offloadFrequency: 0, acceptFrequency: 1.0, stake: 40, loadTarget: 2.0, takesUsers: false, judges: true),
        Spec(name: "junk", role: "JUNK responder (experiment.cheat: junk), judges honestly", capacity: 1, threads: 1,
             offloadFrequency: 0, acceptFrequency: 1.0, stake: 40, loadTarget: 2.0, takesUsers: false, judges: true, cheat: "junk"),
        Spec(name: "judge-1", role: "judge only (no engine)", capacity: 0, threads: 0,
             offloadFrequency: 0, acceptFrequency: 0, stake: 20, takesUsers: false, judges: true),
        Spec(name: "judge-2", role: "judge only (no engine)", capacity: 0, threads: 0,
             offloadFrequency: 0, acceptFrequency: 0, stake: 20, takesUsers: false, judges: true),
    ]

    /// A pure requester, a pure provider and a mixed node (2 cores: one engine thread each).
    static let defaultNetwork: [Spec] = [
        Spec(name: "requester", role: "pure requester (no engine, offloads everything)", capacity: 0, threads: 0,
             offloadFrequency: 1.0, acceptFrequency: 0, stake: 0, takesUsers: true),
        Spec(name: "provider", role: "pure provider (never offloads, accepts every offer)", capacity: 2, threads: 1,
             offloadFrequency: 0, acceptFrequency: 1.0, stake: 60, loadTarget: 2.0, takesUsers: false),
        Spec(name: "mixed", role: "mixed (own users first, offloads when busy, accepts 80 % of offers)", capacity: 1, threads: 1,
             offloadFrequency: 0.5, acceptFrequency: 0.8, stake: 30, takesUsers: true),
    ]

    var ids: [NodeID] = []
    var names: [String: String] {
        Dictionary(uniqueKeysWithValues: zip(ids.map(\.hex), specs.map(\.name)))
    }

    let directory: String
    let specs: [Spec]
    let basePort: Int
    /// The judges' references file (`--duels`).
    let references: String?
    private var processes: [Process] = []

    init(directory: String, basePort: Int, nodes: [Spec], references: String? = nil) throws {
        self.directory = directory
        self.specs = nodes
        self.basePort = basePort
        self.references = references
    }

    var duelsOn: Bool { specs.contains(where: \.runsDuels) }

    var allURLs: [String] { specs.indices.map { "http://127.0.0.1:\(basePort + $0)" } }
    var userURLs: [String] { specs.indices.filter { specs[$0].takesUsers }.map { "http://127.0.0.1:\(basePort + $0)" } }

    func config(for i: Int) -> String {
        let s = specs[i]
        let backends = s.capacity == 0 ? "backends: []" : """
        backends:
          - name: local
            kind: llamacpp
            capacity: \(s.capacity)
            models:
              - name: smollm2-135m-instruct
                quantization: Q4_1
                hardware: cpu
            llamacpp:
              model_path: default
              threads: \(s.threads)
              ctx: 2048
        """
        return """
        node:
          host: 127.0.0.1
          port: \(basePort + i)
          data_dir: \(directory)/\(s.name)
          log_level: warning
        \(backends)
        network:
          genesis: \(directory)/genesis.json
          gossip_period_ms: 500
        policy:
          offload_frequency: \(s.offloadFrequency)
          accept_frequency: \(s.acceptFrequency)
          stake: \(s.stake)
          load_target: \(s.loadTarget)
        \(duelSections(s))
        """
    }

    /// The `duel:` and `experiment:` sections of a `--duels` node.
    private func duelSections(_ s: Spec) -> String {
        guard duelsOn else { return "" }
        let judge = s.judges
            ? "{kind: reference, references: '\(references ?? "")', fallback: lexical}"
            : "{kind: none}"
        var out = "duel:\n  run_duels: \(s.runsDuels)\n  judging_timeout_s: 30\n  judge: \(judge)"
        if let cheat = s.cheat { out += "\nexperiment:\n  cheat: \(cheat)" }
        return out
    }

    /// Creates each node's key and the genesis (100 credits each, the first node as seed).
    func writeGenesis() throws {
        ids = try specs.map { try NodeKey.loadOrCreate(path: "\(directory)/\($0.name)/node.key").nodeID }
        let grants = Dictionary(uniqueKeysWithValues: ids.map { ($0, Credits(credits: 100)) })
        var parameters = GenesisParameters()
        if duelsOn { parameters.duelProbability = partsPerMillionOne }
        let genesis = Genesis(networkID: "wwwserve-demo", parameters: parameters, grants: grants, seeds: ["127.0.0.1:\(basePort)"])
        try JSONEncoder().encode(genesis).write(to: URL(fileURLWithPath: "\(directory)/genesis.json"))
    }

    func start() async throws {
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().path
        try writeGenesis()
        for (i, s) in specs.enumerated() {
            print("  \(s.name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(ids[i].short)  :\(basePort + i)  \(s.role), stake \(Int(s.stake))")
            let path = "\(directory)/\(s.name).yaml"
            try config(for: i).write(toFile: path, atomically: true, encoding: .utf8)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: exe)
            p.arguments = ["node", "--config", path]
            let log = "\(directory)/\(s.name).log"
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            p.standardOutput = FileHandle(forWritingAtPath: log)
            p.standardError = FileHandle(forWritingAtPath: log)
            try p.run()
            processes.append(p)
        }
        print("starting \(specs.count) node(s) and their llama.cpp engines…")
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        do {
            for (i, url) in allURLs.enumerated() where specs[i].capacity > 0 { try await waitReady(url, client: client) }
            try await waitMembership(client: client)
        } catch {
            try? await client.shutdown()
            throw error
        }
        try? await client.shutdown()
        print("all nodes ready")
    }

    private func waitReady(_ url: String, client: HTTPClient) async throws {
        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            if processes.contains(where: { !$0.isRunning }) {
                throw CLIError("a node exited during start-up; see the logs in \(directory)")
            }
            if let resp = try? await client.execute(HTTPClientRequest(url: url + "/ready"), timeout: .seconds(3)) {
                _ = try? await resp.body.collect(upTo: 1 << 20)
                if resp.status == .ok { return }
            }
            try await Task.sleep(for: .milliseconds(300))
        }
        throw CLIError("node \(url) did not become ready within 120 s; see the logs in \(directory)")
    }

    /// Waits until every node sees every other node alive (gossip converged).
    private func waitMembership(client: HTTPClient) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            var converged = true
            for url in allURLs {
                let peers = try? await fetchJSON([PeerView].self, client: client, url: url + "/p2p/v1/peers")
                if peers?.filter({ $0.status == "alive" }).count != specs.count { converged = false }
            }
            if converged { return }
            try await Task.sleep(for: .milliseconds(300))
        }
        throw CLIError("the nodes did not see each other within 30 s; see the logs in \(directory)")
    }

    func credits(client: HTTPClient) async -> [CreditsView] {
        var out: [CreditsView] = []
        for url in allURLs {
            if let v = try? await fetchJSON(CreditsView.self, client: client, url: url + "/p2p/v1/credits") { out.append(v) }
        }
        return out
    }

    /// Polls every node's ledger view until all hold the same event set (bounded wait).
    func settledCredits(client: HTTPClient) async -> ([CreditsView], Bool) {
        let deadline = ContinuousClock.now + .seconds(20)
        var views: [CreditsView] = []
        while ContinuousClock.now < deadline {
            views = await credits(client: client)
            if views.count == specs.count, Set(views.map(\.eventSetHash)).count == 1 { return (views, true) }
            try? await Task.sleep(for: .milliseconds(500))
        }
        return (views, false)
    }

    func printCredits(before: [CreditsView], after: [CreditsView], agree: Bool) {
        Swift.print("")
        Swift.print("== credits (each node's own ledger view; 1 credit per job) ==")
        func balance(_ views: [CreditsView], _ id: NodeID) -> String {
            views.first { $0.me == id.hex }?.rows.first { $0.node == id.hex }?.balance ?? "?"
        }
        for (i, id) in ids.enumerated() {
            Swift.print("  \(specs[i].name.padding(toLength: 10, withPad: " ", startingAt: 0)) \(balance(before, id)) → \(balance(after, id))")
        }
        let events = after.map { "\(names[$0.me] ?? "?")=\($0.events)" }.joined(separator: ", ")
        Swift.print("ledger events:     \(events)")
        Swift.print("ledgers agree:     \(agree ? "yes" : "NO") (event-set hash \(after.first.map { String($0.eventSetHash.prefix(16)) } ?? "-"))")
    }

    func stop() {
        for p in processes where p.isRunning { p.terminate() }
        for p in processes { p.waitUntilExit() }
    }
}

/// One replayed request's outcome.
struct DemoResult: Sendable {
    var request: WorkloadRequest
    var target: String
    var ok: Bool
    var error: String?
    var ttft: Double?
    var latency: Double
    var completionTokens: Int
    var executor: String?
    var offloaded: Bool
    var answer: String
}

/// Sends the workload at its arrival times, streaming, and measures TTFT and latency.
struct DemoReplay: Sendable {
    let client: HTTPClient
    let targets: [String]
    let timeout: Double
    let verbose: Bool

    func run(_ workload: [WorkloadRequest]) async -> [DemoResult] {
        let start = ContinuousClock.now
        let progress = ProgressBar(total: workload.count, noun: "requests", finishLabel: "replay finished")
        return await withTaskGroup(of: DemoResult.self) { group in
            for (i, w) in workload.enumerated() {
                let target = targets[i % targets.count]
                group.addTask {
                    try? await Task.sleep(until: start + w.arrival)
                    return await send(w, to: target)
                }
            }
            var out: [DemoResult] = []
            for await r in group {
                out.append(r)
                progress.advance(ok: r.ok)
                if verbose || out.count <= 3 {
                    progress.clearLine()
                    Swift.print("  [\(r.request.source)] \(r.ok ? String(format: "%.2fs", r.latency) : "FAILED") → \(r.ok ? r.answer.prefix(verbose ? 10_000 : 100).replacingOccurrences(of: "\n", with: " ") : r.error ?? "")")
                }
            }
            progress.finish()
            return out.sorted { $0.request.arrival < $1.request.arrival }
        }
    }

    func send(_ w: WorkloadRequest, to target: String) async -> DemoResult {
        let began = ContinuousClock.now
        var result = DemoResult(request: w, target: target, ok: false, error: nil, ttft: nil, latency: 0, completionTokens: 0, executor: nil, offloaded: false, answer: "")
        do {
            var req = HTTPClientRequest(url: target + "/v1/chat/completions")
            req.method = .POST
            req.headers.add(name: "Content-Type", value: "application/json")
            let body: [String: Any] = [
                "model": "smollm2-135m-instruct", "stream": true, "stream_options": ["include_usage": true],
                "max_tokens": w.maxTokens, "temperature": 0.7,
                "messages": [["role": "user", "content": w.prompt]],
            ]
            req.body = .bytes(ByteBuffer(data: try JSONSerialization.data(withJSONObject: body)))
            let resp = try await client.execute(req, timeout: .seconds(Int64(timeout)))
            result.executor = resp.headers.first(name: "X-WWWServe-Executor") ?? resp.headers.first(name: "X-WWWServe-Node")
            result.offloaded = resp.headers.first(name: "X-WWWServe-Offloaded") == "true"
            guard resp.status == .ok else {
                let text = (try? await resp.body.collect(upTo: 1 << 16)).map { String(buffer: $0) } ?? ""
                throw CLIError("HTTP \(resp.status.code): \(text.prefix(200))")
            }
            var reader = SSEReader()
            var acc = StreamAccumulator()
            var sawDone = false
            for try await buf in resp.body {
                for payload in try reader.feed(buf.readableBytesView) {
                    if payload == "[DONE]" { sawDone = true; continue }
                    if payload.contains("\"error\"") { throw CLIError("in-stream error: \(payload.prefix(200))") }
                    let chunk = try JSONDecoder().decode(ChatCompletionChunk.self, from: Data(payload.utf8))
                    acc.add(chunk)
                    if result.ttft == nil, acc.sawContent { result.ttft = (ContinuousClock.now - began).seconds }
                }
            }
            guard sawDone else { throw CLIError("stream ended without [DONE]") }
            result.ok = true
            result.answer = acc.content
            result.completionTokens = acc.usage?.completionTokens ?? 0
        } catch {
            result.error = "\(error)"
        }
        result.latency = (ContinuousClock.now - began).seconds
        return result
    }
}

/// The end-of-demo summary.
struct DemoReport {
    let results: [DemoResult]
    let slo: Double
    var names: [String: String] = [:]

    static func percentile(_ xs: [Double], _ p: Double) -> Double? {
        guard !xs.isEmpty else { return nil }
        let s = xs.sorted()
        return s[min(s.count - 1, Int((p * Double(s.count - 1)).rounded()))]
    }

    func fmt(_ v: Double?) -> String { v.map { String(format: "%.2f s", $0) } ?? "-" }

    func print() {
        let ok = results.filter(\.ok)
        let withinSLO = ok.filter { $0.latency <= slo }.count
        let ttfts = ok.compactMap(\.ttft)
        let lat = ok.map(\.latency)
        let tokens = ok.map(\.completionTokens).reduce(0, +)
        Swift.print("")
        Swift.print("== summary ==")
        Swift.print("requests:          \(results.count) (\(ok.count) ok, \(results.count - ok.count) failed)")
        Swift.print("local / offloaded: \(ok.filter { !$0.offloaded }.count) / \(ok.filter(\.offloaded).count)")
        var perNode: [String: Int] = [:]
        for r in ok { perNode[r.executor.flatMap { names[$0] } ?? r.executor ?? "?", default: 0] += 1 }
        Swift.print("answered by:       " + perNode.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", "))
        Swift.print(String(format: "SLO attainment:    %.1f %% (end-to-end ≤ %.0f s; failures and timeouts count as misses)", results.isEmpty ? 0 : 100.0 * Double(withinSLO) / Double(results.count), slo))
        Swift.print("TTFT p50 / p99:    \(fmt(Self.percentile(ttfts, 0.5))) / \(fmt(Self.percentile(ttfts, 0.99)))")
        Swift.print("latency p50 / p99: \(fmt(Self.percentile(lat, 0.5))) / \(fmt(Self.percentile(lat, 0.99)))")
        Swift.print("tokens generated:  \(tokens)")
        for r in results where !r.ok { Swift.print("  failed [\(r.request.source)]: \(r.error ?? "?")") }
    }
}
