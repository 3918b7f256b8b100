import Foundation
import Hummingbird
import Logging
import NIOCore
import WWWAPI

/// A fast OpenAI-compatible upstream for measuring the node's own overhead: answers
/// `POST /v1/chat/completions` with a canned answer of `tokens` content chunks (streaming:
/// a role chunk, the content chunks, a finish chunk, a usage chunk and `[DONE]`, one
/// write each; non-streaming: one `chat.completion`), and `GET /health`.
struct FakeUpstream: Sendable {
    let model: String
    let tokens: Int
    let logger: Logger

    /// The SSE events, encoded once.
    let events: [ByteBuffer]
    let completion: ByteBuffer

    init(model: String, tokens: Int, logger: Logger) {
        self.model = model
        self.tokens = tokens
        self.logger = logger
        let id = "chatcmpl-fake", created: Int64 = 1_700_000_000
        let enc = JSONEncoder.openAI
        var chunks: [ChatCompletionChunk] = [
            ChatCompletionChunk(id: id, created: created, model: model, choices: [ChunkChoice(delta: ChunkDelta(role: "assistant", content: ""))]),
        ]
        for i in 0..<tokens {
            chunks.append(ChatCompletionChunk(id: id, created: created, model: model,
                                              choices: [ChunkChoice(delta: ChunkDelta(content: "tok\(i) "))]))
        }
        chunks.append(ChatCompletionChunk(id: id, created: created, model: model, choices: [ChunkChoice(delta: ChunkDelta(), finishReason: "stop")]))
        chunks.append(ChatCompletionChunk(id: id, created: created, model: model, choices: [],
                                          usage: Usage(promptTokens: 10, completionTokens: tokens)))
        var events = chunks.map { ByteBuffer(bytes: SSEWriter.event(try! enc.encode($0))) }
        events.append(ByteBuffer(bytes: SSEWriter.done))
        self.events = events
        let text = (0..<tokens).map { "tok\($0) " }.joined()
        let body: [String: Any] = [
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [["index": 0, "message": ["role": "assistant", "content": text], "finish_reason": "stop", "logprobs": NSNull()]],
            "usage": ["prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens],
        ]
        self.completion = ByteBuffer(data: try! JSONSerialization.data(withJSONObject: body, options: [.sortedKeys]))
    }

    private struct Probe: Decodable { let stream: Bool? }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        let events = self.events, completion = self.completion
        router.get("/health") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: #"{"status":"ok"}"#)))
        }
        router.post("/v1/chat/completions") { request, _ in
            var request = request
            let body = try await request.collectBody(upTo: 1 << 20)
            let stream = (try? JSONDecoder().decode(Probe.self, from: Data(buffer: body)))?.stream ?? false
            guard stream else {
                return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: completion))
            }
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: .init { writer in
                for e in events { try await writer.write(e) }
                try await writer.finish(nil)
            })
        }
        return router
    }

    /// Starts the server on 127.0.0.1, port 0. Returns its runner (`stop()` shuts it down
    /// gracefully) and the bound port.
    func start() async throws -> (ServiceRunner, Int) {
        let (ports, cont) = AsyncStream<Int>.makeStream()
        let app = Application(router: router(), configuration: .init(address: .hostname("127.0.0.1", port: 0), serverName: "wwwbench-fake"),
                              onServerRunning: { channel in cont.yield(channel.localAddress?.port ?? 0) }, logger: logger)
        let runner = ServiceRunner(app, logger: logger)
        let watcher = Task { _ = await runner.task.result; cont.finish() }
        var it = ports.makeAsyncIterator()
        guard let port = await it.next(), port > 0 else {
            _ = await watcher.value
            try await runner.task.value
            throw BenchError("the fake upstream stopped before listening")
        }
        return (runner, port)
    }
}
