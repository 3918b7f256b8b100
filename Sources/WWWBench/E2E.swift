import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import WWWNode

/// `wwwserve bench e2e`: the real model behind a node with the embedded default config
/// (one managed llama.cpp engine), against the same engine called directly.
struct E2ECommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "e2e",
        abstract: "Generated tokens/s through the node against the managed llama.cpp engine called directly.",
        discussion: """
            Starts a node with the embedded default config (one managed llama.cpp engine with \
            SmolLM2-135M-Instruct, 127.0.0.1, port 0), reads the engine's URL from the node's \
            GET /ready, then sends the same prompts (first turns of MT-Bench) with temperature 0 \
            and a fixed seed, streaming, to the engine directly and through the node in alternating \
            blocks of --concurrency requests. Reports tokens/s per request and in aggregate for \
            each side and the ratio node/direct.
            """)

    static let model = "smollm2-135m-instruct"
    static let promptsRelative = "../shared/data/prompts/mt_bench_questions.jsonl"

    @Option(help: "Prompts; each one is sent once directly and once through the node.")
    var requests: Int = 12
    @Option(help: "Requests in flight at once (per side; the sides never run at the same time).")
    var concurrency: Int = 2
    @Option(help: "max_tokens of each request.")
    var maxTokens: Int = 128
    @Option(help: "Threads of the llama.cpp engine.")
    var threads: Int = 2
    @Option(help: "JSONL prompts file with a 'turns' array per line (default: \(E2ECommand.promptsRelative)).")
    var prompts: String?
    @Option(help: "Sampling seed sent with every request (temperature is 0).")
    var seed: Int = 42
    @Option(help: "Unmeasured warm-up requests per side.")
    var warmup: Int = 1
    @Option(help: "Seconds to wait for the engine to load and become healthy.")
    var startTimeout: Double = 180
    @Option(help: "Stop starting new blocks after this many seconds (the report says so).")
    var maxSeconds: Double = 1200
    @Option(help: "Log level of the node (logs go to stderr).")
    var logLevel: String = "warning"
    @Flag(help: "Print one JSON object with all numbers instead of the table.")
    var json = false

    func validate() throws {
        guard requests >= 1, requests <= 100_000 else { throw ValidationError("--requests must be in 1...100000") }
        guard concurrency >= 1, concurrency <= 64 else { throw ValidationError("--concurrency must be in 1...64") }
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup must not be negative") }
        guard startTimeout > 0, maxSeconds > 0 else { throw ValidationError("timeouts must be positive") }
    }

    func run() async throws {
        let logger = makeBenchLogger(logLevel)
        let promptPath = try Self.resolvePrompts(prompts)
        let all = try Self.loadPrompts(promptPath)
        guard !all.isEmpty else { throw BenchError("no prompts in \(promptPath)") }
        let chosen = (0..<requests).map { all[$0 % all.count] }

        let dataDir = try makeTempDir("wwwbench-e2e")
        var cfg = NodeConfig.embeddedDefault
        cfg.node.host = "127.0.0.1"
        cfg.node.port = 0
        cfg.node.dataDir = dataDir
        cfg.node.logLevel = logLevel
        cfg.node.shutdownGraceS = 2
        cfg.backends[0].capacity = max(cfg.backends[0].capacity, concurrency)
        var l = cfg.backends[0].llamacpp ?? NodeConfig.LlamaCppSection()
        l.threads = threads
        l.startTimeoutS = startTimeout
        cfg.backends[0].llamacpp = l
        let engineLog = (dataDir as NSString).appendingPathComponent("engine-\(cfg.backends[0].name).log")

        progress("bench e2e (\(buildConfiguration) build): starting the node and its llama.cpp engine (\(threads) threads, \(cfg.backends[0].capacity) slots)…")
        let node = try await RunningNode.start(config: cfg, logger: logger)
        let client = makeBenchClient(concurrency: concurrency, readTimeout: .seconds(120), idleTimeout: .seconds(2))
        let result: Result<E2EReport, any Error>
        do {
            let engine = try await node.waitForEngine(client: client, timeout: startTimeout)
            progress("  engine \(engine), node \(node.baseURL); \(chosen.count) prompts from \(promptPath)")
            result = .success(try await measure(client: client, engine: engine, node: node.baseURL, prompts: chosen, promptPath: promptPath))
        } catch {
            result = .failure(error)
        }
        try? await client.shutdown()
        await node.stop()
        switch result {
        case .success(let report):
            try? FileManager.default.removeItem(atPath: dataDir)
            if json { try printJSON(report.json) } else { print(report.table) }
        case .failure(let error):
            progress("engine log kept at \(engineLog)")
            throw error
        }
    }

    // MARK: prompts

    /// `--prompts` if given; else the default file relative to the current directory,
    /// then relative to the repository the executable was built in (`<repo>/../shared/…`).
    static func resolvePrompts(_ explicit: String?) throws -> String {
        let fm = FileManager.default
        if let explicit {
            guard fm.isReadableFile(atPath: explicit) else { throw BenchError("cannot read prompts file '\(explicit)'") }
            return explicit
        }
        var candidates = [promptsRelative, "shared/data/prompts/mt_bench_questions.jsonl"]
        if let repo = executableRepo() {
            candidates.append((repo as NSString).appendingPathComponent(promptsRelative))
            candidates.append((repo as NSString).appendingPathComponent("shared/data/prompts/mt_bench_questions.jsonl"))
        }
        for c in candidates where fm.isReadableFile(atPath: c) { return (c as NSString).standardizingPath }
        throw BenchError("prompts file not found; tried \(candidates.joined(separator: ", ")); pass --prompts PATH")
    }

    /// The nearest directory above the executable holding a Package.swift.
    static func executableRepo() -> String? {
        let exe = Bundle.main.executablePath ?? CommandLine.arguments.first ?? ""
        var dir = (URL(fileURLWithPath: exe).resolvingSymlinksInPath().path as NSString).deletingLastPathComponent
        for _ in 0..<8 {
            if FileManager.default.fileExists(atPath: (dir as NSString).appendingPathComponent("Package.swift")) { return dir }
            let up = (dir as NSString).deletingLastPathComponent
            if up == dir { break }
            dir = up
        }
        return nil
    }

    private struct Question: Decodable { let turns: [String] }

    static func loadPrompts(_ path: String) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else { throw BenchError("cannot read \(path)") }
        var out: [String] = []
        for (i, line) in String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).enumerated() {
            let t = line.trimmingCharacters(in: .whitespaces)
            guard !t.isEmpty else { continue }
            do {
                let q = try JSONDecoder().decode(Question.self, from: Data(t.utf8))
                if let first = q.turns.first, !first.isEmpty { out.append(first) }
            } catch {
                throw BenchError("\(path):\(i + 1): not a question with 'turns': \(error)")
            }
        }
        return out
    }

    // MARK: measuring

    private func body(_ prompt: String, maxTokens: Int) throws -> ByteBuffer {
        let b: [String: Any] = [
            "model": Self.model, "messages": [["role": "user", "content": prompt]], "max_tokens": maxTokens,
            "temperature": 0, "seed": seed, "stream": true, "stream_options": ["include_usage": true],
        ]
        return ByteBuffer(data: try JSONSerialization.data(withJSONObject: b, options: [.sortedKeys]))
    }

    private func measure(client: HTTPClient, engine: String, node: String, prompts: [String], promptPath: String) async throws -> E2EReport {
        let urls = [engine + "/v1/chat/completions", node + "/v1/chat/completions"]
        let bodies = try prompts.map { try body($0, maxTokens: maxTokens) }
        let warmBody = try body("Say hello.", maxTokens: min(maxTokens, 16))
        @Sendable func send(_ side: Int, _ b: ByteBuffer) async -> Sample {
            await sendChat(client: client, url: urls[side], body: b, stream: true, timeout: .seconds(600), keepContent: true)
        }
        for side in 0..<2 {
            for _ in 0..<max(1, warmup) {
                let s = await send(side, warmBody)
                if let e = s.error { throw BenchError("\(side == 0 ? "engine" : "node") failed the warm-up request: \(e)") }
            }
        }
        var samples: [[Sample?]] = [Array(repeating: nil, count: prompts.count), Array(repeating: nil, count: prompts.count)]
        var wallMs: [Double] = [0, 0]
        var rounds = 0
        var truncated = false
        let deadline = ContinuousClock.now + .milliseconds(Int64(maxSeconds * 1000))
        var next = 0
        while next < prompts.count {
            if ContinuousClock.now >= deadline { truncated = true; break }
            let range = next..<min(prompts.count, next + concurrency)
            let order = rounds % 2 == 0 ? [0, 1] : [1, 0]
            for side in order {
                let blockBodies = Array(bodies[range])
                let (s, ms) = await runBlock(count: blockBodies.count, concurrency: concurrency) { i in await send(side, blockBodies[i]) }
                for (k, i) in range.enumerated() { samples[side][i] = s[k] }
                wallMs[side] += ms
            }
            next = range.upperBound
            rounds += 1
            progress("  \(next)/\(prompts.count) prompts")
        }
        let done = next
        let direct = samples[0].prefix(done).compactMap { $0 }, viaNode = samples[1].prefix(done).compactMap { $0 }
        var identical = 0
        for i in 0..<done where samples[0][i]?.ok == true && samples[1][i]?.ok == true && samples[0][i]?.content == samples[1][i]?.content {
            identical += 1
        }
        return E2EReport(build: buildConfiguration, prompts: done, promptsPath: promptPath, concurrency: concurrency, maxTokens: maxTokens,
                         threads: threads, seed: seed, rounds: rounds, truncated: truncated, identicalOutputs: identical,
                         direct: TokenStats(direct, wallMs: wallMs[0]), node: TokenStats(viaNode, wallMs: wallMs[1]))
    }
}

/// One side's token throughput.
struct TokenStats {
    let ok: Int
    let errors: Int
    let firstError: String?
    let completionTokens: Int
    /// True when every answer carried `usage`; otherwise content chunks were counted.
    let usageReported: Bool
    let wallMs: Double
    /// Sum of completion tokens / sum of block wall times.
    let aggregateTokensPerSecond: Double
    /// completion_tokens / request wall time, per request.
    let perRequest: Percentiles
    /// (completion_tokens − 1) / (total − TTFT), per request: the decode rate.
    let decode: Percentiles
    let latency: Percentiles
    let ttft: Percentiles

    init(_ samples: [Sample], wallMs: Double) {
        let good = samples.filter(\.ok)
        ok = good.count
        errors = samples.count - good.count
        firstError = samples.first { !$0.ok }?.error
        func tokens(_ s: Sample) -> Int { s.usage?.completionTokens ?? s.contentChunks }
        usageReported = good.allSatisfy { $0.usage != nil }
        completionTokens = good.map(tokens).reduce(0, +)
        self.wallMs = wallMs
        aggregateTokensPerSecond = wallMs > 0 ? Double(completionTokens) / (wallMs / 1000) : .nan
        perRequest = Percentiles(good.filter { $0.totalMs > 0 }.map { Double(tokens($0)) / ($0.totalMs / 1000) })
        decode = Percentiles(good.compactMap { s -> Double? in
            guard let t = s.ttftMs, s.totalMs > t, tokens(s) > 1 else { return nil }
            return Double(tokens(s) - 1) / ((s.totalMs - t) / 1000)
        })
        latency = Percentiles(good.map(\.totalMs))
        ttft = Percentiles(good.compactMap(\.ttftMs))
    }

    struct JSON: Encodable {
        let ok: Int
        let errors: Int
        let first_error: String?
        let completion_tokens: Int
        let usage_reported: Bool
        let wall_s: Double?
        let tokens_per_s: Double?
        let per_request_tokens_per_s: PercentilesJSON
        let decode_tokens_per_s: PercentilesJSON
        let latency_ms: PercentilesJSON
        let ttft_ms: PercentilesJSON
    }

    var json: JSON {
        JSON(ok: ok, errors: errors, first_error: firstError, completion_tokens: completionTokens, usage_reported: usageReported,
             wall_s: r(wallMs / 1000), tokens_per_s: r(aggregateTokensPerSecond, 2), per_request_tokens_per_s: perRequest.json,
             decode_tokens_per_s: decode.json, latency_ms: latency.json, ttft_ms: ttft.json)
    }
}

struct E2EReport {
    static let goalRatio = 0.99

    let build: String
    let prompts: Int
    let promptsPath: String
    let concurrency: Int
    let maxTokens: Int
    let threads: Int
    let seed: Int
    let rounds: Int
    let truncated: Bool
    let identicalOutputs: Int
    let direct: TokenStats
    let node: TokenStats

    var ratio: Double { node.aggregateTokensPerSecond / direct.aggregateTokensPerSecond }
    var perRequestRatio: Double { node.perRequest.p50 / direct.perRequest.p50 }
    var goalMet: Bool { ratio >= Self.goalRatio }

    var table: String {
        var out: [String] = []
        out.append("wwwserve bench e2e (\(build) build): \(E2ECommand.model) on llama.cpp, \(threads) threads")
        out.append("  \(prompts) prompts per side, concurrency \(concurrency), max_tokens \(maxTokens), temperature 0, seed \(seed),")
        out.append("  \(rounds) rounds alternating direct/node (AB BA …)\(truncated ? ", STOPPED EARLY at --max-seconds" : "")")
        out.append("")
        let w = 14
        out.append(pad("", 30, left: true) + pad("direct", w) + pad("node", w) + pad("node/direct", w))
        func row(_ name: String, _ a: Double, _ b: Double, digits: Int = 2) {
            out.append(pad(name, 30, left: true) + pad(fmt(a, digits), w) + pad(fmt(b, digits), w) + pad(fmt(b / a), w))
        }
        row("tokens/s (aggregate)", direct.aggregateTokensPerSecond, node.aggregateTokensPerSecond)
        row("tokens/s per request p50", direct.perRequest.p50, node.perRequest.p50)
        row("decode tokens/s p50", direct.decode.p50, node.decode.p50)
        row("latency p50 (ms)", direct.latency.p50, node.latency.p50, digits: 1)
        row("TTFT p50 (ms)", direct.ttft.p50, node.ttft.p50, digits: 1)
        out.append(pad("completion tokens", 30, left: true) + pad("\(direct.completionTokens)", w) + pad("\(node.completionTokens)", w))
        out.append(pad("errors", 30, left: true) + pad("\(direct.errors)", w) + pad("\(node.errors)", w))
        out.append("")
        out.append("tokens/s ratio node/direct: \(fmt(ratio)) (goal ≥ \(Self.goalRatio)) \(goalMet ? "— met" : "— NOT met")")
        out.append("identical outputs direct vs node: \(identicalOutputs)/\(prompts)")
        if !direct.usageReported || !node.usageReported { out.append("note: usage missing on some answers; content chunks were counted instead") }
        for (name, s) in [("direct", direct), ("node", node)] where s.errors > 0 {
            out.append("WARNING: \(s.errors) failed requests on the \(name) side, e.g. \(s.firstError ?? "?")")
        }
        return out.joined(separator: "\n")
    }

    struct JSON: Encodable {
        let benchmark = "e2e"
        let build: String
        let model: String
        let prompts: Int
        let prompts_path: String
        let concurrency: Int
        let max_tokens: Int
        let threads: Int
        let seed: Int
        let rounds: Int
        let truncated: Bool
        let identical_outputs: Int
        let direct: TokenStats.JSON
        let node: TokenStats.JSON
        let tokens_per_s_ratio: Double?
        let per_request_tokens_per_s_ratio_p50: Double?
        let goal_ratio: Double
        let goal_met: Bool
    }

    var json: JSON {
        JSON(build: build, model: E2ECommand.model, prompts: prompts, prompts_path: promptsPath, concurrency: concurrency, max_tokens: maxTokens,
             threads: threads, seed: seed, rounds: rounds, truncated: truncated, identical_outputs: identicalOutputs,
             direct: direct.json, node: node.json, tokens_per_s_ratio: r(ratio), per_request_tokens_per_s_ratio_p50: r(perRequestRatio),
             goal_ratio: Self.goalRatio, goal_met: goalMet)
    }
}
