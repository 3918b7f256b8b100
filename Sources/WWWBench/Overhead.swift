import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import WWWNode

/// `wwwserve bench overhead`: the node in front of a fast in-process fake upstream,
/// against the fake called directly.
struct OverheadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "overhead",
        abstract: "Added latency and requests/s of the node against a fast loopback fake upstream.",
        discussion: """
            Starts a fake OpenAI-compatible upstream and a node in front of it (both in-process, \
            127.0.0.1, port 0), then sends the same requests at fixed concurrency to the fake \
            directly and through the node, in alternating blocks (A B, B A, A B, …) so that machine \
            noise hits both sides alike. Reports latency and TTFT percentiles per side, the latency \
            the node adds (p50 and p99 differences) and the requests/s ratio node/direct.
            """)

    @Option(help: "Measured requests per side.")
    var requests: Int = 2000
    @Option(help: "Requests in flight at once (per side; the sides never run at the same time).")
    var concurrency: Int = 8
    @Option(help: "Unmeasured warm-up requests per side.")
    var warmup: Int = 200
    @Option(help: "Requests per block; the sides alternate block by block.")
    var block: Int = 100
    @Option(help: "Stream the answers (SSE) or not.")
    var stream: Bool = true
    @Option(help: "Content chunks in each fake answer.")
    var tokens: Int = 16
    @Option(help: "Stop starting new blocks after this many seconds (the report says so).")
    var maxSeconds: Double = 300
    @Option(help: "Log level of the node and the fake (logs go to stderr).")
    var logLevel: String = "warning"
    @Flag(help: "Print one JSON object with all numbers instead of the table.")
    var json = false

    func validate() throws {
        guard requests >= 1, requests <= 10_000_000 else { throw ValidationError("--requests must be in 1...10000000") }
        guard concurrency >= 1, concurrency <= 1024 else { throw ValidationError("--concurrency must be in 1...1024") }
        guard warmup >= 0 else { throw ValidationError("--warmup must not be negative") }
        guard block >= 1 else { throw ValidationError("--block must be at least 1") }
        guard tokens >= 1, tokens <= 100_000 else { throw ValidationError("--tokens must be in 1...100000") }
        guard maxSeconds > 0 else { throw ValidationError("--max-seconds must be positive") }
    }

    func run() async throws {
        let logger = makeBenchLogger(logLevel)
        let model = "bench-fake"
        let fake = FakeUpstream(model: model, tokens: tokens, logger: logger)
        let (fakeServer, fakePort) = try await fake.start()
        let dataDir: String
        let node: RunningNode
        do {
            dataDir = try makeTempDir("wwwbench-overhead")
            var cfg = NodeConfig(backends: [
                .init(name: "fake", kind: "openai", capacity: 1024, models: [.init(name: model)], baseURL: "http://127.0.0.1:\(fakePort)"),
            ])
            cfg.backends[0].maxQueue = 0
            cfg.node.host = "127.0.0.1"
            cfg.node.port = 0
            cfg.node.dataDir = dataDir
            cfg.node.logLevel = logLevel
            cfg.node.shutdownGraceS = 2
            node = try await RunningNode.start(config: cfg, logger: logger)
        } catch {
            await fakeServer.stop()
            throw error
        }
        let client = makeBenchClient(concurrency: concurrency, readTimeout: .seconds(30))
        let result: Result<OverheadReport, any Error>
        do {
            result = .success(try await measure(client: client, direct: "http://127.0.0.1:\(fakePort)", node: node.baseURL, model: model))
        } catch {
            result = .failure(error)
        }
        try? await client.shutdown()
        await node.stop()
        await fakeServer.stop()
        try? FileManager.default.removeItem(atPath: dataDir)
        let report = try result.get()
        if json { try printJSON(report.json) } else { print(report.table) }
    }

    private func measure(client: HTTPClient, direct: String, node: String, model: String) async throws -> OverheadReport {
        let body: [String: Any] = [
            "model": model, "messages": [["role": "user", "content": "Say something."]], "max_tokens": tokens,
            "stream": stream,
        ].merging(stream ? ["stream_options": ["include_usage": true]] : [:]) { a, _ in a }
        let bytes = ByteBuffer(data: try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys]))
        let urls = [direct + "/v1/chat/completions", node + "/v1/chat/completions"]
        let stream = self.stream, tokens = self.tokens
        @Sendable func send(_ side: Int) async -> Sample {
            await sendChat(client: client, url: urls[side], body: bytes, stream: stream, timeout: .seconds(60), keepContent: false)
        }
        // Both sides must answer correctly before anything is timed.
        for side in 0..<2 {
            let s = await send(side)
            if let e = s.error { throw BenchError("\(side == 0 ? "fake upstream" : "node") failed the first request: \(e)") }
            guard s.contentChunks == (stream ? tokens : 1) else {
                throw BenchError("\(side == 0 ? "fake upstream" : "node") returned \(s.contentChunks) content chunks, expected \(stream ? tokens : 1)")
            }
        }
        progress("bench overhead (\(buildConfiguration) build): fake upstream \(direct), node \(node); \(requests) requests per side, concurrency \(concurrency)")
        if warmup > 0 {
            for side in 0..<2 { _ = await runBlock(count: warmup, concurrency: concurrency) { _ in await send(side) } }
        }
        var samples: [[Sample]] = [[], []]
        var wallMs: [Double] = [0, 0]
        var rounds = 0
        var truncated = false
        let deadline = ContinuousClock.now + .milliseconds(Int64(maxSeconds * 1000))
        while samples[0].count < requests {
            if ContinuousClock.now >= deadline { truncated = true; break }
            let n = min(block, requests - samples[0].count)
            // A B, then B A: each side runs first in half the rounds.
            let order = rounds % 2 == 0 ? [0, 1] : [1, 0]
            for side in order {
                let (s, ms) = await runBlock(count: n, concurrency: concurrency) { _ in await send(side) }
                samples[side] += s
                wallMs[side] += ms
            }
            rounds += 1
            if rounds % 5 == 0 { progress("  \(samples[0].count)/\(requests) per side") }
        }
        return OverheadReport(
            build: buildConfiguration, requestsPerSide: samples[0].count, concurrency: concurrency, warmup: warmup, block: block,
            rounds: rounds, stream: stream, tokens: tokens, truncated: truncated,
            direct: SideStats(samples[0], wallMs: wallMs[0], expectedChunks: stream ? tokens : 1),
            node: SideStats(samples[1], wallMs: wallMs[1], expectedChunks: stream ? tokens : 1))
    }
}

/// One side's numbers.
struct SideStats {
    let ok: Int
    let errors: Int
    let firstError: String?
    let latency: Percentiles
    let ttft: Percentiles
    let wallMs: Double
    let requestsPerSecond: Double

    init(_ samples: [Sample], wallMs: Double, expectedChunks: Int) {
        let good = samples.filter { $0.ok && $0.contentChunks == expectedChunks }
        ok = good.count
        errors = samples.count - good.count
        firstError = samples.first { !($0.ok && $0.contentChunks == expectedChunks) }.map {
            $0.error ?? "\($0.contentChunks) content chunks, expected \(expectedChunks)"
        }
        latency = Percentiles(good.map(\.totalMs))
        ttft = Percentiles(good.compactMap(\.ttftMs))
        self.wallMs = wallMs
        requestsPerSecond = wallMs > 0 ? Double(samples.count) / (wallMs / 1000) : .nan
    }

    struct JSON: Encodable {
        let ok: Int
        let errors: Int
        let first_error: String?
        let latency_ms: PercentilesJSON
        let ttft_ms: PercentilesJSON
        let wall_s: Double?
        let requests_per_s: Double?
    }

    var json: JSON {
        JSON(ok: ok, errors: errors, first_error: firstError, latency_ms: latency.json, ttft_ms: ttft.json,
             wall_s: r(wallMs / 1000), requests_per_s: r(requestsPerSecond, 2))
    }
}

struct OverheadReport {
    static let goalAddedP50Ms = 0.5

    let build: String
    let requestsPerSide: Int
    let concurrency: Int
    let warmup: Int
    let block: Int
    let rounds: Int
    let stream: Bool
    let tokens: Int
    let truncated: Bool
    let direct: SideStats
    let node: SideStats

    var addedP50: Double { node.latency.p50 - direct.latency.p50 }
    var addedP90: Double { node.latency.p90 - direct.latency.p90 }
    var addedP99: Double { node.latency.p99 - direct.latency.p99 }
    var addedTTFTP50: Double { node.ttft.p50 - direct.ttft.p50 }
    var addedTTFTP99: Double { node.ttft.p99 - direct.ttft.p99 }
    var rpsRatio: Double { node.requestsPerSecond / direct.requestsPerSecond }
    var goalMet: Bool { addedP50 < Self.goalAddedP50Ms }

    var table: String {
        var out: [String] = []
        out.append("wwwserve bench overhead (\(build) build)")
        out.append("  \(requestsPerSide) requests per side, concurrency \(concurrency), \(stream ? "streaming" : "non-streaming"), \(tokens) content chunks,")
        out.append("  \(warmup) warm-up requests per side, \(rounds) rounds of \(block)-request blocks alternating direct/node (AB BA …)\(truncated ? ", STOPPED EARLY at --max-seconds" : "")")
        out.append("")
        let w = 14
        out.append(pad("", 22, left: true) + pad("direct", w) + pad("node", w) + pad("node − direct", w + 2))
        func row(_ name: String, _ a: Double, _ b: Double) {
            out.append(pad(name, 22, left: true) + pad(fmt(a), w) + pad(fmt(b), w) + pad(signed(b - a), w + 2))
        }
        row("latency p50 (ms)", direct.latency.p50, node.latency.p50)
        row("latency p90 (ms)", direct.latency.p90, node.latency.p90)
        row("latency p99 (ms)", direct.latency.p99, node.latency.p99)
        row("latency mean (ms)", direct.latency.mean, node.latency.mean)
        row("TTFT p50 (ms)", direct.ttft.p50, node.ttft.p50)
        row("TTFT p90 (ms)", direct.ttft.p90, node.ttft.p90)
        row("TTFT p99 (ms)", direct.ttft.p99, node.ttft.p99)
        out.append(pad("requests/s", 22, left: true) + pad(fmt(direct.requestsPerSecond, 1), w) + pad(fmt(node.requestsPerSecond, 1), w)
            + pad("ratio " + fmt(rpsRatio), w + 2))
        out.append(pad("errors", 22, left: true) + pad("\(direct.errors)", w) + pad("\(node.errors)", w))
        out.append("")
        out.append("added p50 latency: \(fmt(addedP50)) ms (goal < \(Self.goalAddedP50Ms) ms) \(goalMet ? "— met" : "— NOT met")")
        out.append("added p99 latency: \(fmt(addedP99)) ms")
        out.append("added p50 TTFT:    \(fmt(addedTTFTP50)) ms")
        out.append("requests/s ratio node/direct: \(fmt(rpsRatio)) at concurrency \(concurrency)")
        if build == "debug" { out.append("note: a debug build; release numbers are much better (swift build -c release)") }
        for (name, s) in [("direct", direct), ("node", node)] where s.errors > 0 {
            out.append("WARNING: \(s.errors) failed requests on the \(name) side, e.g. \(s.firstError ?? "?")")
        }
        return out.joined(separator: "\n")
    }

    struct JSON: Encodable {
        let benchmark = "overhead"
        let build: String
        let requests_per_side: Int
        let concurrency: Int
        let warmup: Int
        let block: Int
        let rounds: Int
        let stream: Bool
        let tokens: Int
        let truncated: Bool
        let direct: SideStats.JSON
        let node: SideStats.JSON
        let added_latency_ms: Added
        let added_ttft_ms: Added
        let requests_per_s_ratio: Double?
        let goal_added_p50_ms: Double
        let goal_met: Bool
    }

    struct Added: Encodable { let p50, p90, p99: Double? }

    var json: JSON {
        JSON(build: build, requests_per_side: requestsPerSide, concurrency: concurrency, warmup: warmup, block: block, rounds: rounds,
             stream: stream, tokens: tokens, truncated: truncated, direct: direct.json, node: node.json,
             added_latency_ms: Added(p50: r(addedP50), p90: r(addedP90), p99: r(addedP99)),
             added_ttft_ms: Added(p50: r(addedTTFTP50), p90: r(node.ttft.p90 - direct.ttft.p90), p99: r(addedTTFTP99)),
             requests_per_s_ratio: r(rpsRatio), goal_added_p50_ms: Self.goalAddedP50Ms, goal_met: goalMet)
    }
}
