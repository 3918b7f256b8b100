import ArgumentParser
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import WWWCore
import WWWNode

/// `wwwserve judge-eval`: a judge configuration against human-labelled answer pairs
/// (`../shared/data/judge/`), over any OpenAI-compatible endpoint — by default a node with
/// the embedded default config (the bundled SmolLM2-135M behind a managed llama.cpp).
/// Each pair is judged in both orders (`BothOrders`); agreement with the human labels
/// (with and without ties), position consistency, tie rate and cost are printed beside
/// the published figures.
public struct JudgeEvalCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "judge-eval",
        abstract: "Measure a judge against human labels (LLMBar MT-Bench 200, PandaLM test set).",
        discussion: """
            Judges: llm (the pairwise prompt of WWWCore.LLMJudgePrompt with the verdict tokens \
            [[A]] [[B]] [[C]], sent to --endpoint or to a node started with the embedded default \
            config) or reference (WWWCore.ReferenceJudge, only the pairs whose question has an \
            MT-Bench reference answer; no model). Every pair is judged in both orders; orders that \
            disagree count as a tie. Published figures (Zheng et al. 2023; LLMBar): GPT-4 agrees \
            with the MT-Bench human majority on about 81 % of the 200 pairs and is position-consistent \
            about 87 % of the time; humans agree with each other 63 % with ties, 81 % without.
            """)

    public init() {}

    @Option(help: "Judge kind: llm or reference.")
    var judge = "llm"
    @Option(help: "Comma-separated datasets: llmbar, pandalm.")
    var datasets = "llmbar,pandalm"
    @Option(help: "Directory with judge/ and prompts/ (default: ../shared/data, or $WWWSERVE_SHARED_DATA).")
    var data: String?
    @Option(help: "Pairs per dataset (0: all).")
    var limit = 0
    @Option(help: "OpenAI-compatible base URL (e.g. http://127.0.0.1:8080); default: start a node with the embedded default config.")
    var endpoint: String?
    @Option(help: "The model field of judge requests.")
    var model = "smollm2-135m-instruct"
    @Option(help: "Characters of each answer shown to the judge (longer ones are cut).")
    var maxAnswerCharacters = 4000
    @Option(help: "max_tokens of each judge reply.")
    var maxTokens = 512
    @Option(help: "Judge calls in flight at once.")
    var concurrency = 2
    @Option(help: "Threads of the embedded llama.cpp engine (no --endpoint).")
    var threads = 2
    @Option(help: "Seconds to wait for the embedded engine to become ready.")
    var startTimeout = 180.0
    @Option(help: "Seconds one judge call may take.")
    var callTimeout = 300.0
    @Flag(help: "Print one JSON object instead of the table.")
    var json = false

    public func validate() throws {
        guard ["llm", "reference"].contains(judge) else { throw ValidationError("--judge must be llm or reference") }
        guard limit >= 0, maxTokens >= 1, (1...64).contains(concurrency), threads >= 1 else {
            throw ValidationError("--limit >= 0, --max-tokens >= 1, --concurrency in 1...64, --threads >= 1")
        }
        guard maxAnswerCharacters >= 16 else { throw ValidationError("--max-answer-characters must be at least 16") }
        guard startTimeout > 0, callTimeout > 0 else { throw ValidationError("timeouts must be positive") }
        if let endpoint, URL(string: endpoint)?.scheme?.hasPrefix("http") != true {
            throw ValidationError("--endpoint must be an http(s) URL, e.g. http://127.0.0.1:8080")
        }
    }

    public func run() async throws {
        let dir = try JudgeData.resolve(data)
        var sets: [(String, [JudgePair])] = []
        for name in datasets.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            var pairs = try JudgeData.load(name, dir: dir)
            if judge == "reference" {
                pairs = pairs.filter { $0.reference != nil }
                if pairs.isEmpty { progress("judge-eval: \(name) has no pairs whose question has a reference answer; skipped"); continue }
            }
            if limit > 0 { pairs = Array(pairs.prefix(limit)) }
            sets.append((name, pairs))
        }
        if judge == "reference" {
            return try report(sets.map { ($0.0, evaluateReference($0.1)) }, endpoint: "none (no model)")
        }
        try await evaluateLLM(sets)
    }

    // MARK: reference judge

    func evaluateReference(_ pairs: [JudgePair]) -> Outcome {
        var o = Outcome()
        let t0 = ContinuousClock.now
        for p in pairs {
            let v = ReferenceJudge.compare(first: p.first, second: p.second, reference: p.reference!)
            let pref: PairwisePreference = v == .first ? .a : v == .second ? .b : .tie
            let swapped: PairwisePreference = v == .first ? .b : v == .second ? .a : .tie
            o.agreement.record(human: p.human, original: pref, swapped: swapped)
        }
        o.seconds = (ContinuousClock.now - t0).seconds
        return o
    }

    // MARK: llm judge

    func evaluateLLM(_ sets: [(String, [JudgePair])]) async throws {
        let logger = makeBenchLogger("warning")
        let client = makeBenchClient(concurrency: concurrency, readTimeout: .seconds(Int64(callTimeout)), idleTimeout: .seconds(2))
        var node: RunningNode?
        var dataDir: String?
        do {
            let base: String
            if let endpoint {
                base = endpoint.hasSuffix("/") ? String(endpoint.dropLast()) : endpoint
            } else {
                let (n, d) = try await startEmbedded(logger: logger)
                node = n
                dataDir = d
                _ = try await n.waitForEngine(client: client, timeout: startTimeout)
                base = n.baseURL
            }
            var results: [(String, Outcome)] = []
            let total = sets.reduce(0) { $0 + $1.1.count }
            progress("judge-eval: \(total) pairs, 2 calls each, judge llm via \(base) (model \(model))")
            let bar = ProgressBar(total: total, noun: "pairs", finishLabel: "judge-eval finished")
            for (name, pairs) in sets {
                results.append((name, await evaluate(pairs, base: base, client: client, bar: bar)))
            }
            bar.finish()
            try report(results, endpoint: base)
        } catch {
            try? await client.shutdown()
            await node?.stop()
            throw error
        }
        try? await client.shutdown()
        await node?.stop()
        if let dataDir { try? FileManager.default.removeItem(atPath: dataDir) }
    }

    private func startEmbedded(logger: Logger) async throws -> (RunningNode, String) {
        let dataDir = try makeTempDir("wwwserve-judge-eval")
        var cfg = NodeConfig.embeddedDefault
        cfg.node.host = "127.0.0.1"
        cfg.node.port = 0
        cfg.node.dataDir = dataDir
        cfg.node.logLevel = "warning"
        cfg.node.shutdownGraceS = 2
        cfg.node.requestTimeoutS = callTimeout
        cfg.backends[0].capacity = max(cfg.backends[0].capacity, concurrency)
        var l = cfg.backends[0].llamacpp ?? NodeConfig.LlamaCppSection()
        l.threads = threads
        l.startTimeoutS = startTimeout
        // Room for the prompt (two cut answers) and the reply.
        l.ctx = max(l.ctx, 4096 * cfg.backends[0].capacity)
        cfg.backends[0].llamacpp = l
        progress("judge-eval: starting a node with the embedded default config (\(threads) threads)…")
        return (try await RunningNode.start(config: cfg, logger: logger), dataDir)
    }

    /// Judges `pairs` with at most `concurrency` calls in flight.
    private func evaluate(_ pairs: [JudgePair], base: String, client: HTTPClient, bar: ProgressBar) async -> Outcome {
        let prompt = LLMJudgePrompt(maxAnswerCharacters: maxAnswerCharacters)
        let settings = CallSettings(model: model, maxTokens: maxTokens, timeout: callTimeout)
        var outcome = Outcome()
        let t0 = ContinuousClock.now
        await withTaskGroup(of: (Int, [Call]).self) { group in
            var next = 0
            var running = 0
            func launch() {
                let i = next, p = pairs[i]
                next += 1
                running += 1
                group.addTask {
                    let a = await Self.call(prompt.messages(question: p.question, answerA: p.first, answerB: p.second),
                                            base: base, client: client, settings)
                    let b = await Self.call(prompt.messages(question: p.question, answerA: p.second, answerB: p.first),
                                            base: base, client: client, settings)
                    return (i, [a, b])
                }
            }
            while next < pairs.count && running < max(1, concurrency / 2) { launch() }
            while let (i, calls) = await group.next() {
                running -= 1
                let failed = calls.filter { $0.error != nil }.count
                let unparseable = calls.filter { $0.error == nil && !$0.parsed }.count
                outcome.agreement.record(human: pairs[i].human, original: calls[0].preference, swapped: calls[1].preference,
                                         unparseable: unparseable, failed: failed)
                for c in calls {
                    outcome.promptTokens += c.promptTokens
                    outcome.completionTokens += c.completionTokens
                    if outcome.firstError == nil, let e = c.error { outcome.firstError = e }
                }
                bar.advance(ok: failed == 0)
                if next < pairs.count { launch() }
            }
        }
        outcome.seconds = (ContinuousClock.now - t0).seconds
        return outcome
    }

    struct Call: Sendable {
        var preference: PairwisePreference = .tie
        var parsed = false
        var promptTokens = 0
        var completionTokens = 0
        var error: String?
    }

    struct CallSettings: Sendable {
        var model: String
        var maxTokens: Int
        var timeout: Double
    }

    /// One judge call (non-streaming, temperature 0, fixed seed).
    private static func call(_ messages: [JudgeMessage], base: String, client: HTTPClient, _ settings: CallSettings) async -> Call {
        var out = Call()
        let callTimeout = settings.timeout
        let body: [String: Any] = [
            "model": settings.model, "messages": messages.map { ["role": $0.role, "content": $0.content] },
            "max_tokens": settings.maxTokens, "temperature": 0, "seed": 42, "stream": false,
        ]
        do {
            var req = HTTPClientRequest(url: base + "/v1/chat/completions")
            req.method = .POST
            req.headers.add(name: "Content-Type", value: "application/json")
            req.body = .bytes(ByteBuffer(data: try JSONSerialization.data(withJSONObject: body)))
            let resp = try await client.execute(req, timeout: .seconds(Int64(callTimeout)))
            let data = Data(buffer: try await resp.body.collect(upTo: 16 << 20))
            guard resp.status == .ok else {
                out.error = "HTTP \(resp.status.code): \(String(decoding: data.prefix(300), as: UTF8.self))"
                return out
            }
            let reply = try JSONDecoder().decode(Reply.self, from: data)
            let text = reply.choices.first?.message.content ?? ""
            out.preference = LLMJudgePrompt.parse(text)
            out.parsed = LLMJudgePrompt.hasVerdict(text)
            out.promptTokens = reply.usage?.prompt_tokens ?? 0
            out.completionTokens = reply.usage?.completion_tokens ?? 0
        } catch {
            out.error = "\(error)"
        }
        return out
    }

    private struct Reply: Decodable {
        struct Choice: Decodable {
            struct Message: Decodable { let content: String? }
            let message: Message
        }
        struct Usage: Decodable {
            let prompt_tokens: Int?
            let completion_tokens: Int?
        }
        let choices: [Choice]
        let usage: Usage?
    }

    // MARK: report

    struct Outcome {
        var agreement = JudgeAgreement()
        var promptTokens = 0
        var completionTokens = 0
        var seconds = 0.0
        var firstError: String?
    }

    func report(_ results: [(String, Outcome)], endpoint: String) throws {
        if json {
            var sets: [[String: Any]] = []
            for (name, o) in results {
                let a = o.agreement
                sets.append(["dataset": name, "pairs": a.pairs, "agreement_with_ties": a.agreementWithTies as Any,
                             "agreement_without_ties": a.agreementWithoutTies as Any, "decisive_pairs": a.decisivePairs,
                             "position_consistency": a.positionConsistency as Any, "tie_rate": a.tieRate as Any,
                             "unparseable_call_rate": a.unparseableRate as Any, "failed_calls": a.failedCalls,
                             "prompt_tokens": o.promptTokens, "completion_tokens": o.completionTokens, "seconds": o.seconds,
                             "first_error": o.firstError as Any])
            }
            let out: [String: Any] = ["judge": judge, "model": model, "endpoint": endpoint, "max_answer_characters": maxAnswerCharacters,
                                      "max_tokens": maxTokens, "datasets": sets]
            print(String(decoding: try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys, .prettyPrinted]), as: UTF8.self))
            return
        }
        print("judge-eval: judge \(judge)\(judge == "llm" ? ", model \(model) via \(endpoint), answers cut at \(maxAnswerCharacters) characters, max_tokens \(maxTokens)" : "")")
        print("  dataset   pairs  agree w/ ties  agree w/o ties (pairs)  consistency  tie rate  unparseable  failed  tokens in/out     seconds")
        for (name, o) in results {
            let a = o.agreement
            let cells = [pad(name, 8, left: true), pad("\(a.pairs)", 5), pad(pct(a.agreementWithTies), 13),
                         pad(pct(a.agreementWithoutTies), 14) + " (" + pad("\(a.decisivePairs)", 5) + ")",
                         pad(pct(a.positionConsistency), 11), pad(pct(a.tieRate), 8), pad(pct(a.unparseableRate), 11),
                         pad("\(a.failedCalls)", 6), pad("\(o.promptTokens)/\(o.completionTokens)", 14),
                         pad(String(format: "%.1f", o.seconds), 11)]
            print("  " + cells.joined(separator: "  "))
            if let e = o.firstError { print("    first failure: \(e.prefix(200))") }
        }
        print("  published: GPT-4 on llmbar ≈ 81 % agreement, ≈ 87 % consistency; humans 63 % with ties, 81 % without")
        print("  (a tie verdict moves no bond: a judge that cannot tell the answers apart should say tie, not guess)")
    }

    private func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - s.count))
        return left ? s + fill : fill + s
    }

    private func pct(_ x: Double?) -> String { x.map { String(format: "%.1f %%", 100 * $0) } ?? "n/a" }
}

/// One human-labelled answer pair.
struct JudgePair: Sendable {
    var question: String
    var first: String
    var second: String
    var human: DuelChoice
    /// MT-Bench's reference answer to the question, when it has one.
    var reference: String?
}

enum JudgeData {
    /// The shared data with a `judge/` folder (`Workload.dataDirectory`: `explicit`, else
    /// $WWWSERVE_SHARED_DATA, else ../shared/data from the working directory or the binary).
    static func resolve(_ explicit: String?) throws -> String {
        guard let dir = Workload.dataDirectory(explicit: explicit, containing: "judge") else {
            throw BenchError("judge data not found (looked for judge/ in \(explicit ?? "$WWWSERVE_SHARED_DATA"), ../shared/data from the working directory and from the binary); pass --data DIR or set WWWSERVE_SHARED_DATA")
        }
        return (dir as NSString).standardizingPath
    }

    static func load(_ name: String, dir: String) throws -> [JudgePair] {
        let refs = try references(dir: dir)
        switch name {
        case "llmbar": return try llmbar(dir: dir, references: refs)
        case "pandalm": return try pandalm(dir: dir, references: refs)
        default: throw BenchError("unknown dataset '\(name)' (llmbar, pandalm)")
        }
    }

    private static func read(_ path: String) throws -> Data {
        guard let d = FileManager.default.contents(atPath: path) else { throw BenchError("cannot read \(path)") }
        return d
    }

    private struct LLMBar: Decodable {
        let input: String
        let output_1: String
        let output_2: String
        let label: Flexible
    }

    /// A field that is a string or an integer in the data.
    struct Flexible: Decodable {
        let value: Int?
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let i = try? c.decode(Int.self) { value = i } else { value = Int(try c.decode(String.self)) }
        }
    }

    static func choice(_ label: Int?) -> DuelChoice? {
        switch label {
        case 0: .tie
        case 1: .first
        case 2: .second
        default: nil
        }
    }

    static func llmbar(dir: String, references: [String: String]) throws -> [JudgePair] {
        let path = (dir as NSString).appendingPathComponent("judge/llmbar_mtbench_human_200.json")
        let rows = try JSONDecoder().decode([LLMBar].self, from: try read(path))
        return try rows.enumerated().map { i, r in
            guard let h = choice(r.label.value), h != .tie else { throw BenchError("\(path): pair \(i) has label \(r.label.value.map(String.init) ?? "?")") }
            return JudgePair(question: r.input, first: r.output_1, second: r.output_2, human: h,
                             reference: references[r.input.trimmingCharacters(in: .whitespacesAndNewlines)])
        }
    }

    /// A text field that a few rows hold as a JSON boolean or number (a response that
    /// was "True", parsed by whoever exported the set).
    struct Text: Decodable {
        let value: String
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { value = s }
            else if let b = try? c.decode(Bool.self) { value = b ? "True" : "False" }
            else if let d = try? c.decode(Double.self) { value = d == d.rounded() && abs(d) < 1e15 ? String(Int64(d)) : String(d) }
            else if c.decodeNil() { value = "" }
            else { throw DecodingError.dataCorruptedError(in: c, debugDescription: "expected text") }
        }
    }

    private struct PandaLM: Decodable {
        let instruction: String
        let input: Text?
        let response1: Text
        let response2: Text
        let annotator1: Flexible
        let annotator2: Flexible
        let annotator3: Flexible
    }

    /// Human label: the majority of the three annotators (all three different: a tie).
    static func pandalm(dir: String, references: [String: String]) throws -> [JudgePair] {
        let path = (dir as NSString).appendingPathComponent("judge/pandalm_testset_v1.json")
        let rows = try JSONDecoder().decode([PandaLM].self, from: try read(path))
        return rows.map { r in
            let votes = [r.annotator1, r.annotator2, r.annotator3].compactMap { choice($0.value) }
            let majority = DuelChoice.allCases.first { c in votes.filter { $0 == c }.count >= 2 } ?? .tie
            let input = r.input?.value ?? ""
            let q = input.isEmpty ? r.instruction : "\(r.instruction)\n\n\(input)"
            return JudgePair(question: q, first: r.response1.value, second: r.response2.value, human: majority,
                             reference: references[q.trimmingCharacters(in: .whitespacesAndNewlines)])
        }
    }

    /// MT-Bench questions → their reference answers (`ReferenceBook`, the node's
    /// reference judge's own loader); none when the file is missing.
    static func references(dir: String) throws -> [String: String] {
        let path = (dir as NSString).appendingPathComponent("prompts/mt_bench_questions.jsonl")
        guard FileManager.default.fileExists(atPath: path) else { return [:] }
        return try ReferenceBook.load(path: path).answers
    }
}
