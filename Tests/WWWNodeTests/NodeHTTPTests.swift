import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing
import WWWAPI
import WWWBackends
import WWWCore
@testable import WWWNode

/// A backend whose behaviour each test scripts.
struct ScriptedBackend: Backend {
    enum Step: Sendable {
        case chunk(ChatCompletionChunk)
        case fail(BackendError)
        case sleep(Duration)
    }
    let name: String
    let kind = "scripted"
    let models: [BackendModel]
    let capacity: Int
    let beforeHead: BackendError?
    let steps: [Step]

    init(model: String = "m", capacity: Int = 1, beforeHead: BackendError? = nil, steps: [Step]) {
        self.name = "scripted"
        self.models = [BackendModel(descriptor: ModelDescriptor(name: model), upstreamName: "engine-" + model)]
        self.capacity = capacity
        self.beforeHead = beforeHead
        self.steps = steps
    }

    func chat(_ request: ChatCompletionRequest, model: BackendModel) async throws -> ChunkStream {
        if let beforeHead { throw beforeHead }
        let cursor = StepCursor(steps)
        return ChunkStream(unfolding: { try await cursor.next() })
    }

    func status() async -> BackendStatus {
        BackendStatus(name: name, kind: kind, healthy: true, url: nil, pid: nil, load: LoadSnapshot(running: 0, waiting: 0, capacity: capacity), restarts: 0, lastError: nil)
    }

    static func chunk(_ content: String?, role: String? = nil, finish: String? = nil, usage: Usage? = nil) -> Step {
        let empty = content == nil && finish == nil && role == nil
        let choices: [ChunkChoice] = empty ? [] : [ChunkChoice(delta: ChunkDelta(role: role, content: content), finishReason: finish)]
        return .chunk(ChatCompletionChunk(id: "up", created: 1, model: "engine-m", choices: choices, usage: usage))
    }

    static let happy: [Step] = [
        chunk(nil, role: "assistant"), chunk("Hel"), chunk("lo"), chunk(nil, finish: "stop"),
        chunk(nil, usage: Usage(promptTokens: 4, completionTokens: 2)),
    ]
}

/// Plays a backend's script one step per pull (so the node's reading pace is the script's).
final class StepCursor: @unchecked Sendable {
    private let lock = NSLock()
    private var steps: ArraySlice<ScriptedBackend.Step>
    init(_ steps: [ScriptedBackend.Step]) { self.steps = steps[...] }

    private func pop() -> ScriptedBackend.Step? { lock.withLock { steps.popFirst() } }

    func next() async throws -> ChatCompletionChunk? {
        while let step = pop() {
            switch step {
            case .chunk(let c): return c
            case .fail(let e): throw e
            case .sleep(let d): try await Task.sleep(for: d)
            }
        }
        return nil
    }
}

func makeApp(_ backend: ScriptedBackend, keys: [NodeConfig.APIKey] = [], maxBody: Int = 4096, admission: Int = 4) -> some ApplicationProtocol {
    var cfg = NodeConfig()
    cfg.node.apiKeys = keys
    cfg.node.maxBodyBytes = maxBody
    let pool = BackendPool(entries: [.init(backend: backend, admissionLimit: admission)])
    let metrics = NodeMetrics()
    let runtime = try! NodeRuntime(config: cfg, pool: pool, metrics: metrics, logger: Logger(label: "test"))
    runtime.start()
    let http = NodeHTTP(config: cfg, pool: pool, metrics: metrics, nodeName: "test-node", logger: Logger(label: "test"), runtime: runtime)
    return Application(router: http.router())
}

let chatBody = #"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#
let streamBody = #"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}"#

func errorCode(_ buffer: ByteBuffer) -> String? {
    guard let v = try? JSONDecoder().decode(JSONValue.self, from: Data(buffer: buffer)),
          case .object(let o) = v, case .object(let e)? = o["error"], case .string(let c)? = e["code"] else { return nil }
    return c
}

extension Result {
    var failureValue: Failure? {
        if case .failure(let f) = self { return f }
        return nil
    }
}

func sseEvents(_ buffer: ByteBuffer) -> [String] {
    String(buffer: buffer).components(separatedBy: "\n\n").filter { !$0.isEmpty }.map { String($0.dropFirst("data: ".count)) }
}

@Suite("node HTTP API over a scripted backend")
struct NodeHTTPTests {
    @Test func nonStreamingCompletion() async throws {
        try await makeApp(ScriptedBackend(steps: ScriptedBackend.happy)).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: chatBody)) { r in
                #expect(r.status == .ok)
                #expect(r.headers[HTTPField.Name("X-WWWServe-Offloaded")!] == "false")
                let c = try JSONDecoder().decode(ChatCompletion.self, from: Data(buffer: r.body))
                #expect(c.object == "chat.completion")
                #expect(c.model == "m")
                #expect(c.choices[0].message.content == "Hello")
                #expect(c.choices[0].finishReason == "stop")
                #expect(c.usage?.totalTokens == 6)
            }
        }
    }

    /// A privacy control never fails open: a value that is not true/false is a 400.
    @Test func allowOffloadHeaderIsStrict() async throws {
        try await makeApp(ScriptedBackend(steps: ScriptedBackend.happy)).test(.router) { client in
            for (value, status) in [("off", HTTPResponse.Status.badRequest), ("false", .ok), ("Yes", .ok)] {
                try await client.execute(uri: "/v1/chat/completions", method: .post,
                                         headers: [HTTPField.Name("X-WWWServe-Allow-Offload")!: value],
                                         body: ByteBuffer(string: chatBody)) { r in
                    #expect(r.status == status, "\(value)")
                    if status == .badRequest { #expect(String(buffer: r.body).contains("invalid_header")) }
                }
            }
        }
    }

    @Test func unknownLogLevelIsAConfigError() throws {
        var c = NodeConfig.embeddedDefault
        c.node.logLevel = "verbose"
        #expect(throws: ConfigError.self) { try c.validate() }
        c.node.logLevel = "debug"
        try c.validate()
    }

    @Test func streamingWithUsage() async throws {
        try await makeApp(ScriptedBackend(steps: ScriptedBackend.happy)).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: streamBody)) { r in
                #expect(r.status == .ok)
                #expect(r.headers[.contentType] == "text/event-stream")
                let events = sseEvents(r.body)
                #expect(events.last == "[DONE]")
                let chunks = try events.dropLast().map { try JSONDecoder().decode(ChatCompletionChunk.self, from: Data($0.utf8)) }
                #expect(chunks.allSatisfy { $0.model == "m" && $0.object == "chat.completion.chunk" })
                #expect(Set(chunks.map(\.id)).count == 1)
                #expect(chunks.compactMap { $0.choices.first?.delta.content }.joined() == "Hello")
                #expect(chunks.last?.choices.isEmpty == true)
                #expect(chunks.last?.usage == Usage(promptTokens: 4, completionTokens: 2))
                #expect(chunks.dropLast().allSatisfy { $0.usage == nil })
            }
        }
    }

    @Test func streamingWithoutUsageDropsUsageChunk() async throws {
        let body = #"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}"#
        try await makeApp(ScriptedBackend(steps: ScriptedBackend.happy)).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: body)) { r in
                let events = sseEvents(r.body)
                #expect(events.last == "[DONE]")
                #expect(!events.contains { $0.contains("usage") })
            }
        }
    }

    @Test func errorBeforeFirstContentIsAnHTTPError() async throws {
        let backend = ScriptedBackend(steps: [ScriptedBackend.chunk(nil, role: "assistant"), .fail(.overloaded("busy", retryAfter: 7))])
        try await makeApp(backend).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: streamBody)) { r in
                #expect(r.status == .serviceUnavailable)
                #expect(r.headers[.retryAfter] == "7")
                #expect(errorCode(r.body) == "overloaded")
            }
        }
    }

    @Test func errorAfterFirstContentIsAnInStreamErrorWithoutDone() async throws {
        let backend = ScriptedBackend(steps: [ScriptedBackend.chunk("Hi"), .fail(.failed("engine died"))])
        try await makeApp(backend).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: streamBody)) { r in
                #expect(r.status == .ok)
                let events = sseEvents(r.body)
                #expect(events.last?.contains("\"error\"") == true)
                #expect(!events.contains("[DONE]"))
            }
        }
    }

    @Test func truncatedStreamIsNeverACleanDone() async throws {
        let backend = ScriptedBackend(steps: [ScriptedBackend.chunk("Hi"), .fail(.truncated)])
        try await makeApp(backend).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: streamBody)) { r in
                let events = sseEvents(r.body)
                #expect(!events.contains("[DONE]"))
                #expect(events.last?.contains("upstream_error") == true)
            }
        }
    }

    /// Reasoning models stream thousands of chunks before any content; a hostile engine or
    /// peer may never send any. Neither may crash the node (it once hit a precondition).
    @Test func manyChunksBeforeContentAreFineAndEndlessOnesFailCleanly() async throws {
        let empty = ScriptedBackend.chunk(nil, role: "assistant")
        let long = ScriptedBackend(steps: Array(repeating: empty, count: 20_000) + ScriptedBackend.happy)
        try await makeApp(long).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: chatBody)) { r in
                #expect(r.status == .ok)
                #expect(String(buffer: r.body).contains("Hello"))
            }
        }
        let endless = ScriptedBackend(steps: Array(repeating: empty, count: 100_001))
        try await makeApp(endless).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: streamBody)) { r in
                #expect(r.status == .badGateway)
                #expect(errorCode(r.body) == "upstream_error")
            }
            // The node is still up.
            try await client.execute(uri: "/health", method: .get) { r in #expect(r.status == .ok) }
        }
    }

    @Test(arguments: [
        (BackendError.unavailable("down", retryAfter: 2), 503, "backend_unavailable", "2"),
        (BackendError.timeout("slow"), 504, "upstream_timeout", nil),
        (BackendError.failed("boom"), 502, "upstream_error", nil),
        (BackendError.rejected(status: 400, message: "context too long"), 400, "upstream_rejected", nil),
    ])
    func backendErrorsMapToStatuses(error: BackendError, status: Int, code: String, retryAfter: String?) async throws {
        try await makeApp(ScriptedBackend(beforeHead: error, steps: [])).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: chatBody)) { r in
                #expect(r.status.code == status)
                #expect(errorCode(r.body) == code)
                #expect(r.headers[.retryAfter] == retryAfter)
            }
        }
    }

    @Test func unknownModelIs404() async throws {
        try await makeApp(ScriptedBackend(steps: [])).test(.router) { client in
            let body = #"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: body)) { r in
                #expect(r.status == .notFound)
                #expect(errorCode(r.body) == "model_not_found")
            }
        }
    }

    @Test func malformedJSONIs400() async throws {
        try await makeApp(ScriptedBackend(steps: [])).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: "{")) { r in
                #expect(r.status == .badRequest)
                #expect(errorCode(r.body) == "invalid_json")
            }
        }
    }

    @Test func bodyOverLimitIs413() async throws {
        try await makeApp(ScriptedBackend(steps: []), maxBody: 1024).test(.router) { client in
            let big = #"{"model":"m","messages":[{"role":"user","content":""# + String(repeating: "x", count: 5000) + "\"}]}"
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: big)) { r in
                #expect(r.status == .contentTooLarge)
                #expect(errorCode(r.body) == "request_too_large")
            }
        }
    }

    @Test func apiKeys() async throws {
        let app = makeApp(ScriptedBackend(steps: ScriptedBackend.happy), keys: [.init(key: "sk-a", name: "alice")])
        try await app.test(.router) { client in
            try await client.execute(uri: "/v1/models", method: .get) { r in
                #expect(r.status == .unauthorized)
                #expect(errorCode(r.body) == "invalid_api_key")
            }
            try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer sk-wrong"]) { r in
                #expect(r.status == .unauthorized)
            }
            try await client.execute(uri: "/v1/models", method: .get, headers: [.authorization: "Bearer sk-a"]) { r in
                #expect(r.status == .ok)
                let list = try JSONDecoder().decode(ModelList.self, from: Data(buffer: r.body))
                #expect(list.data.map(\.id) == ["m"])
            }
            try await client.execute(uri: "/health", method: .get) { r in #expect(r.status == .ok) }
        }
    }

    @Test func overloadedAdmissionIs503WithRetryAfter() async throws {
        // Admission limit 0: every backend for the model is full.
        try await makeApp(ScriptedBackend(steps: ScriptedBackend.happy), admission: 0).test(.router) { client in
            try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: chatBody)) { r in
                #expect(r.status == .serviceUnavailable)
                #expect(r.headers[.retryAfter] == "1")
                #expect(errorCode(r.body) == "overloaded")
            }
        }
    }

    @Test func unknownPathIsOpenAIShaped404() async throws {
        try await makeApp(ScriptedBackend(steps: [])).test(.router) { client in
            try await client.execute(uri: "/v1/nothing", method: .get) { r in
                #expect(r.status == .notFound)
                #expect(errorCode(r.body) == "not_found")
            }
        }
    }

    @Test func metricsExposeCounters() async throws {
        try await makeApp(ScriptedBackend(steps: ScriptedBackend.happy)).test(.router) { client in
            _ = try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: chatBody))
            _ = try await client.execute(uri: "/v1/chat/completions", method: .post, body: ByteBuffer(string: "{"))
            try await client.execute(uri: "/metrics", method: .get) { r in
                let text = String(buffer: r.body)
                #expect(text.contains(#"wwwserve_requests_total{endpoint="chat",status="200"} 1"#))
                #expect(text.contains(#"wwwserve_errors_total{type="invalid_request"} 1"#))
                #expect(text.contains(#"wwwserve_requests_total{endpoint="chat",status="400"} 1"#))
                #expect(text.contains(#"wwwserve_tokens_total{direction="out",backend="scripted"} 2"#))
                #expect(text.contains("wwwserve_ttft_seconds_bucket"))
                #expect(text.contains("wwwserve_request_duration_seconds_bucket"))
            }
        }
    }
}

@Suite("config")
struct ConfigTests {
    @Test func unknownKeysAreErrorsNamingTheKey() {
        func problem(_ yaml: String) -> String {
            do { _ = try NodeConfig.parse(yaml); return "accepted" } catch { return "\(error)" }
        }
        #expect(problem("node: {prot: 9000}\nbackends: [{name: a, kind: openai, base_url: 'http://x', models: [{name: m}]}]")
                    .contains("node.prot: unknown key 'prot' (did you mean 'port'?)"))
        #expect(problem("backend: []").contains("unknown key 'backend' (did you mean 'backends'?)"))
        #expect(problem("backends: [{name: a, kind: openai, base_url: 'http://x', capacty: 2, models: [{name: m}]}]")
                    .contains("backends[0].capacty: unknown key 'capacty' (did you mean 'capacity'?)"))
        #expect(problem("backends: [{name: a, kind: openai, base_url: 'http://x', models: [{name: m, quant: q}]}]")
                    .contains("unknown key 'quant'"))
        #expect(problem("network: {genesis: g.json, gossip_ms: 5}").contains("unknown key 'gossip_ms'"))
        #expect(problem("network: {genesis: g.json}\npolicy: {stak: 3}").contains("(did you mean 'stake'?)"))
    }

    @Test func parsesAndAppliesDefaults() throws {
        let cfg = try NodeConfig.parse("""
        node:
          port: 9000
          api_keys: [{key: k1, name: a, allow_offload: false}]
        backends:
          - name: local
            kind: llamacpp
            models: [{name: smol}]
          - name: up
            kind: openai
            base_url: http://127.0.0.1:8000/v1
            capacity: 8
            models: [{name: big, upstream_name: org/big}]
        """)
        #expect(cfg.node.port == 9000)
        #expect(cfg.node.host == "127.0.0.1")
        #expect(cfg.node.apiKeys == [.init(key: "k1", name: "a", allowOffload: false)])
        #expect(cfg.backends[0].capacity == 2)
        #expect(cfg.backends[1].admissionLimit == 8 + 32)
        #expect(cfg.backends[1].models[0].upstreamName == "org/big")
    }

    @Test(arguments: [
        ("backends: []", "at least one backend"),
        ("backends: [{name: a, kind: magic, models: [{name: x}]}]", "kind must be"),
        ("backends: [{name: a, kind: openai, models: [{name: x}]}]", "base_url"),
        ("backends: [{name: a, kind: llamacpp, models: []}]", "at least one model"),
        ("backends: [{kind: llamacpp, models: [{name: x}]}]", "missing key 'backends[0].name'"),
        ("node: {port: 70000}\nbackends: [{name: a, kind: llamacpp, models: [{name: x}]}]", "node.port"),
    ])
    func rejectsBadConfig(yaml: String, fragment: String) {
        #expect {
            _ = try NodeConfig.parse(yaml)
        } throws: { error in
            "\(error)".contains(fragment)
        }
    }

    @Test func environmentOverrides() throws {
        var cfg = NodeConfig.embeddedDefault
        try cfg.applyEnvironment(["WWWSERVE_PORT": "1234", "WWWSERVE_HOST": "0.0.0.0"])
        #expect(cfg.node.port == 1234)
        #expect(cfg.node.host == "0.0.0.0")
        #expect(throws: ConfigError.self) { try cfg.applyEnvironment(["WWWSERVE_PORT": "x"]) }
    }
}
