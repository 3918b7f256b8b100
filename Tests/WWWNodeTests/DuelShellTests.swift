import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing
import WWWAPI
import WWWBackends
import WWWCore
import WWWCrypto
@testable import WWWNode

private let english = "The answer is 42, and it is the one that you want for this question."
private let gibberish = "xqzt vbnmrk plo qwhj zzkt mnbvc rtyu oiuyt lkjh"

private func material(_ a: String, _ b: String, question: String = "What is 6 times 7?") -> JudgeMaterial {
    JudgeMaterial(messages: [.init(role: "user", content: question)], firstAnswer: a, secondAnswer: b)
}

@Suite("duel shell: judges, references, cheats and config")
struct DuelShellJudgeTests {
    @Test("the lexical rule tells text from random letters and is a tie otherwise")
    func lexical() {
        #expect(LexicalRule.readsAsLanguage(english))
        #expect(!LexicalRule.readsAsLanguage(gibberish))
        #expect(!LexicalRule.readsAsLanguage(""))
        #expect(LexicalRule.compare(first: english, second: gibberish) == .first)
        #expect(LexicalRule.compare(first: gibberish, second: english) == .second)
        #expect(LexicalRule.compare(first: english, second: english + " Also true.") == .tie)
        #expect(LexicalRule.compare(first: gibberish, second: "") == .tie)
    }

    @Test("scripted judges give both orders consistently")
    func scripted() async {
        let m = material(english, gibberish)
        #expect(await ScriptedJudge(rule: .first).judge(m)! == (.a, .b))
        #expect(await ScriptedJudge(rule: .second).judge(m)! == (.b, .a))
        #expect(await ScriptedJudge(rule: .tie).judge(m)! == (.tie, .tie))
        #expect(await ScriptedJudge(rule: .lexical).judge(m)! == (.a, .b))
        #expect(await ScriptedJudge(rule: .lexical).judge(material(gibberish, english))! == (.b, .a))
    }

    @Test("the reference judge prefers the answer with the reference's result, else falls back")
    func reference() async throws {
        let path = NSTemporaryDirectory() + "refs-\(UUID().uuidString).jsonl"
        try """
        {"question_id": 1, "turns": ["What is 6 times 7?", "And 6 times 8?"], "reference": ["6 times 7 is 42.", "48"]}
        {"question_id": 2, "turns": ["Write a poem."]}
        not json
        """.write(toFile: path, atomically: true, encoding: .utf8)
        let book = try ReferenceBook.load(path: path)
        #expect(book.answers.count == 2)
        #expect(book.reference(for: "  What is 6 times 7?\n") == "6 times 7 is 42.")
        let judge = ReferenceBookJudge(book: book, fallback: .lexical)
        #expect(await judge.judge(material("It is 41.", "The result is 42."))! == (.b, .a))
        #expect(await judge.judge(material("It is 42.", "It is 42 indeed."))! == (.tie, .tie))
        // Both wrong, one gibberish: the fallback decides.
        #expect(await judge.judge(material(english.replacingOccurrences(of: "42", with: "41"), gibberish))! == (.a, .b))
        // No reference for the question: the fallback alone.
        #expect(await judge.judge(material(gibberish, english, question: "Write a poem."))! == (.b, .a))
        #expect(await ReferenceBookJudge(book: book, fallback: .tie).judge(material(gibberish, english, question: "Write a poem."))! == (.tie, .tie))
        #expect(throws: ConfigError.self) { try ReferenceBook.load(path: path + ".missing") }
    }

    @Test("the judge sees earlier turns before the last question")
    func question() {
        let m = JudgeMaterial(messages: [.init(role: "system", content: "Be brief."), .init(role: "user", content: "Hi"),
                                         .init(role: "assistant", content: "Hello"), .init(role: "user", content: "What is 2+2?")],
                              firstAnswer: "4", secondAnswer: "5")
        #expect(m.question == "[Earlier turns]\nuser: Hi\nassistant: Hello\n\nWhat is 2+2?")
        #expect(m.lastUserMessage == "What is 2+2?")
        #expect(material("a", "b").question == "What is 6 times 7?")
    }

    private func engineStream(_ pieces: [String]) -> ChunkStream {
        ChunkStream { c in
            for p in pieces {
                c.yield(ChatCompletionChunk(id: "x", created: 0, model: "m", choices: [ChunkChoice(delta: ChunkDelta(content: p))]))
            }
            c.yield(ChatCompletionChunk(id: "x", created: 0, model: "m", choices: [ChunkChoice(delta: ChunkDelta(), finishReason: "length")],
                                        usage: Usage(promptTokens: 3, completionTokens: pieces.count)))
            c.finish()
        }
    }

    private func read(_ s: ChunkStream) async throws -> (chunks: Int, acc: StreamAccumulator) {
        var acc = StreamAccumulator()
        var n = 0
        for try await c in s {
            acc.add(c)
            n += 1
        }
        return (n, acc)
    }

    @Test("a junk cheat replaces the text and keeps the stream's shape")
    func junk() async throws {
        let pieces = english.split(separator: " ").map { String($0) + " " }
        let (n, acc) = try await read(Cheat(section: ExperimentSection(cheat: .junk)).apply(engineStream(pieces), seed: 1))
        #expect(n == pieces.count + 1)
        #expect(acc.finishReason == "length" && acc.usage?.completionTokens == pieces.count)
        #expect(acc.content != english && !acc.content.isEmpty)
        #expect(!LexicalRule.readsAsLanguage(acc.content))
        // Honest (no cheat): the same stream as the engine's.
        let (_, honest) = try await read(Cheat(section: ExperimentSection(cheat: .none)).apply(engineStream(pieces), seed: 1))
        #expect(honest.content == pieces.joined())
    }

    @Test("a truncate cheat ends the answer after N content chunks with a finish reason")
    func truncate() async throws {
        var section = ExperimentSection(cheat: .truncate)
        section.truncateAfterChunks = 2
        let (n, acc) = try await read(Cheat(section: section).apply(engineStream(["a ", "b ", "c ", "d "]), seed: 1))
        #expect(n == 2 && acc.content == "a b " && acc.finishReason == "stop")
    }

    @Test("the duel section parses, and its mistakes are named")
    func config() throws {
        let path = NSTemporaryDirectory() + "refs-\(UUID().uuidString).jsonl"
        try "{}".write(toFile: path, atomically: true, encoding: .utf8)
        let cfg = try NodeConfig.parse("""
        network: {genesis: g.json}
        duel: {run_duels: true, judging_timeout_s: 5, judge: {kind: reference, references: \(path), fallback: lexical}}
        experiment: {cheat: truncate, truncate_after_chunks: 3}
        """)
        #expect(cfg.duel?.runDuels == true && cfg.duel?.judge.kind == .reference && cfg.duel?.judge.fallback == .lexical)
        #expect(cfg.duel?.machineConfig == DuelConfig(runDuels: true, judge: true, judgingTimeout: .seconds(5)))
        #expect(cfg.experiment?.cheat == .truncate && cfg.experiment?.truncateAfterChunks == 3)
        let bad: [(String, String)] = [
            ("network: {genesis: g.json}\nduel: {judge: {kind: oracle}}", "duel.judge.kind: must be one of none, llm, reference, scripted"),
            ("network: {genesis: g.json}\nduel: {judge: {kind: reference}}", "needs duel.judge.references"),
            ("network: {genesis: g.json}\nduel: {judge: {kind: reference, references: /nope.jsonl}}", "cannot read '/nope.jsonl'"),
            ("network: {genesis: g.json}\nduel: {judge: {kind: llm}}", "needs a backend"),
            ("network: {genesis: g.json}\nduel: {judge: {kind: scripted, rule: coin}}", "duel.judge.rule: must be one of"),
            ("network: {genesis: g.json}\nduel: {run_duel: true}", "did you mean 'run_duels'"),
            ("backends: [{name: a, kind: openai, base_url: 'http://x', models: [{name: m}]}]\nduel: {run_duels: true}", "duel needs a network"),
            ("network: {genesis: g.json}\nexperiment: {cheat: lies}", "experiment.cheat: must be one of"),
            ("network: {genesis: g.json}\nduel: {max_answer_bytes: 10}", "duel.max_answer_bytes"),
        ]
        for (yaml, message) in bad {
            #expect(throws: ConfigError.self, "\(message)") { try NodeConfig.parse(yaml) }
            do { _ = try NodeConfig.parse(yaml) } catch let e as ConfigError { #expect(e.message.contains(message), "\(e.message)") }
        }
    }
}

@Suite("duel shell: the judge request route")
struct JudgeRouteTests {
    /// A judging node (scripted `first`) and a judge request from the fixture's peer.
    private func judgingApp(_ f: NetworkFixture) throws -> (some ApplicationProtocol, NodeMetrics) {
        var config = f.config
        config.duel = DuelSection(judge: JudgeSection(kind: .scripted, rule: .first))
        let metrics = NodeMetrics()
        let pool = BackendPool(entries: [])
        let runtime = try NodeRuntime(config: config, pool: pool, metrics: metrics, logger: Logger(label: "test"))
        runtime.start()
        let http = NodeHTTP(config: config, pool: pool, metrics: metrics, nodeName: "n", logger: Logger(label: "test"), runtime: runtime)
        return (Application(router: http.router()), metrics)
    }

    private func request(_ f: NetworkFixture, material m: JudgeMaterial?, lie: Bool = false) throws -> ByteBuffer {
        let crypto = SwiftCryptoProvider()
        let (first, second) = (NodeID(bytes: Array(repeating: 1, count: 32)), NodeID(bytes: Array(repeating: 2, count: 32)))
        let judges = [f.me.nodeID, NodeID(bytes: Array(repeating: 3, count: 32)), NodeID(bytes: Array(repeating: 4, count: 32))].sorted()
        let job = JobID(bytes: Array(repeating: 5, count: 32))
        let h1 = crypto.sha256(Array((lie ? "other" : m?.firstAnswer ?? "").utf8)), h2 = crypto.sha256(Array((m?.secondAnswer ?? "").utf8))
        let spec = DuelPairSpec(job: job, requester: f.peer.nodeID, first: first, second: second, firstResponseHash: h1,
                                secondResponseHash: h2,
                                pairHash: DuelPair.hash(job: job, first: first, firstResponse: h1, second: second, secondResponse: h2, crypto: crypto),
                                judges: judges)
        let body = PeerMessageBody(fromAddress: "127.0.0.1:9", message: .judgeRequest(spec), judging: m)
        let env = try Envelope.seal(kind: PeerMessageKind.judgeRequest.rawValue, message: body, to: f.me.nodeID, sentAt: wallClockNow(), signer: f.peer)
        return ByteBuffer(data: try JSONEncoder().encode(env))
    }

    @Test("a judge checks the texts against the hashes, and declines duels between parties it does not know")
    func judges() async throws {
        let f = try NetworkFixture()
        let (app, metrics) = try judgingApp(f)
        try await app.test(.router) { client in
            try await client.execute(uri: "/p2p/v1/message", method: .post, body: try request(f, material: material(english, gibberish), lie: true)) { r in
                #expect(r.status == .badRequest)
            }
            try await client.execute(uri: "/p2p/v1/message", method: .post, body: try request(f, material: nil)) { r in
                #expect(r.status == .badRequest)
            }
            try await client.execute(uri: "/p2p/v1/message", method: .post, body: try request(f, material: material(english, gibberish))) { r in
                #expect(r.status == .accepted)
            }
        }
        var text = ""
        for _ in 0..<100 {
            text = String(decoding: metrics.render(), as: UTF8.self)
            if text.contains(#"wwwserve_judge_verdicts_total{outcome="declined_unknownParty"} 1"#) { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        // The fixture's peer and the executors are in the genesis but not live members of this
        // judge's view: it signs no verdict for them (a stranger cannot borrow its stake).
        #expect(text.contains(#"wwwserve_judge_verdicts_total{outcome="declined_unknownParty"} 1"#))
        #expect(!text.contains(#"outcome="first""#))
        #expect(text.contains(#"wwwserve_peer_messages_total{kind="judgeRequest",outcome="rejected_hash_mismatch"} 1"#))
        #expect(text.contains(#"wwwserve_peer_messages_total{kind="judgeRequest",outcome="rejected_malformed"} 1"#))
    }

    @Test("a node that does not judge refuses judge requests (409)")
    func notJudging() async throws {
        let f = try NetworkFixture()
        let (app, _) = try f.app()
        try await app.test(.router) { client in
            try await client.execute(uri: "/p2p/v1/message", method: .post, body: try request(f, material: material(english, gibberish))) { r in
                #expect(r.status == .conflict)
                #expect(errorCodeOf(r.body) == "not_judging")
            }
        }
    }
}
