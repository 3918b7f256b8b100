import AsyncHTTPClient
import Foundation
import NIOCore
import WWWAPI

/// One measured request.
struct Sample: Sendable {
    /// Send → last byte of the body, in milliseconds.
    var totalMs: Double = 0
    /// Send → first chunk with content (streaming) or first body byte (non-streaming), ms.
    var ttftMs: Double?
    /// Chunks that carried non-empty content (streaming), 1 for a non-empty completion.
    var contentChunks = 0
    var usage: Usage?
    var content = ""
    var error: String?

    var ok: Bool { error == nil }
}

func milliseconds(_ d: Duration) -> Double {
    let c = d.components
    return Double(c.seconds) * 1000 + Double(c.attoseconds) / 1e15
}

/// Sends one chat request and measures it on the client side: the timer starts just
/// before `execute` and stops after the last body byte; the whole stream is parsed the
/// same way for either target, so the client's own cost is identical on both sides.
func sendChat(client: HTTPClient, url: String, body: ByteBuffer, stream: Bool, timeout: TimeAmount,
              keepContent: Bool) async -> Sample {
    var req = HTTPClientRequest(url: url)
    req.method = .POST
    req.headers.add(name: "Content-Type", value: "application/json")
    if stream { req.headers.add(name: "Accept", value: "text/event-stream") }
    req.body = .bytes(body)
    var s = Sample()
    var t0 = ContinuousClock.now
    do {
        // A pooled keep-alive connection the server closed just then fails before the
        // response head; one retry (timer restarted) on a fresh connection, as a real client would.
        let resp: HTTPClientResponse
        do {
            resp = try await client.execute(req, timeout: timeout)
        } catch let e where !(e is CancellationError) && "\(e)".contains("closed") {
            t0 = .now
            resp = try await client.execute(req, timeout: timeout)
        }
        guard resp.status == .ok else {
            let text = (try? await resp.body.collect(upTo: 64 << 10)).map { String(buffer: $0) } ?? ""
            s.error = "HTTP \(resp.status.code): \(text.prefix(300))"
            return s
        }
        let decoder = JSONDecoder()
        if stream {
            var reader = SSEReader()
            var done = false
            var finished = false
            func handle(_ payload: String) throws {
                if payload == "[DONE]" { done = true; return }
                if payload.hasPrefix("{\"error\"") { throw BenchError("error event: \(payload.prefix(300))") }
                let chunk = try decoder.decode(ChatCompletionChunk.self, from: Data(payload.utf8))
                if let u = chunk.usage { s.usage = u }
                for c in chunk.choices {
                    if let text = c.delta.content, !text.isEmpty {
                        if s.ttftMs == nil { s.ttftMs = milliseconds(.now - t0) }
                        s.contentChunks += 1
                        if keepContent { s.content += text }
                    }
                    if c.finishReason != nil { finished = true }
                }
            }
            for try await buffer in resp.body {
                for payload in try reader.feed(buffer.readableBytesView) { try handle(payload) }
            }
            if let last = reader.finish() { try handle(last) }
            s.totalMs = milliseconds(.now - t0)
            if !finished { s.error = "stream ended without a finish reason" } else if !done { s.error = "stream ended without [DONE]" }
        } else {
            var all = ByteBuffer()
            for try await buffer in resp.body {
                if s.ttftMs == nil { s.ttftMs = milliseconds(.now - t0) }
                var b = buffer
                all.writeBuffer(&b)
                if all.readableBytes > 16 << 20 { throw BenchError("response body over 16 MiB") }
            }
            s.totalMs = milliseconds(.now - t0)
            let c = try decoder.decode(Completion.self, from: Data(buffer: all))
            let text = c.choices.first?.message.content ?? ""
            s.contentChunks = text.isEmpty ? 0 : 1
            if keepContent { s.content = text }
            s.usage = c.usage
            if c.choices.first?.finish_reason == nil { s.error = "completion without a finish reason" }
        }
    } catch {
        s.error = "\(error)"
    }
    return s
}

/// The parts of a non-streaming `chat.completion` the bench checks.
private struct Completion: Decodable {
    struct Message: Decodable { let content: String? }
    struct Choice: Decodable {
        let message: Message
        let finish_reason: String?
    }
    let choices: [Choice]
    let usage: Usage?
}

/// Runs `count` jobs with at most `concurrency` in flight; returns the results in job
/// order and the block's wall time (first send → last completion).
func runBlock<T: Sendable>(count: Int, concurrency: Int, _ job: @escaping @Sendable (Int) async -> T) async -> ([T], Double) {
    let t0 = ContinuousClock.now
    let results = await withTaskGroup(of: (Int, T).self) { group in
        var launched = 0
        while launched < min(max(1, concurrency), count) {
            let i = launched
            group.addTask { (i, await job(i)) }
            launched += 1
        }
        var out: [(Int, T)] = []
        out.reserveCapacity(count)
        while let r = await group.next() {
            out.append(r)
            if launched < count {
                let i = launched
                group.addTask { (i, await job(i)) }
                launched += 1
            }
        }
        return out.sorted { $0.0 < $1.0 }.map(\.1)
    }
    return (results, milliseconds(.now - t0))
}

/// p50/p90/p99 (nearest rank) and mean of a set of milliseconds.
struct Percentiles: Sendable {
    var count: Int
    var mean: Double
    var p50: Double
    var p90: Double
    var p99: Double
    var min: Double
    var max: Double

    init(_ values: [Double]) {
        let v = values.sorted()
        count = v.count
        func rank(_ p: Double) -> Double {
            guard !v.isEmpty else { return .nan }
            let i = Int((p / 100 * Double(v.count)).rounded(.up)) - 1
            return v[Swift.min(Swift.max(i, 0), v.count - 1)]
        }
        mean = v.isEmpty ? .nan : v.reduce(0, +) / Double(v.count)
        p50 = rank(50)
        p90 = rank(90)
        p99 = rank(99)
        min = v.first ?? .nan
        max = v.last ?? .nan
    }

    var json: PercentilesJSON {
        PercentilesJSON(count: count, mean: r(mean), p50: r(p50), p90: r(p90), p99: r(p99), min: r(min), max: r(max))
    }
}

struct PercentilesJSON: Encodable {
    var count: Int
    var mean, p50, p90, p99, min, max: Double?
}

/// The 127.0.0.1 client both sides are driven with.
/// `idleTimeout` should be below the server's keep-alive timeout (llama.cpp: 5 s).
func makeBenchClient(concurrency: Int, readTimeout: TimeAmount, idleTimeout: TimeAmount = .seconds(60)) -> HTTPClient {
    var cfg = HTTPClient.Configuration()
    cfg.timeout = .init(connect: .seconds(5), read: readTimeout)
    cfg.connectionPool = .init(idleTimeout: idleTimeout, concurrentHTTP1ConnectionsPerHostSoftLimit: max(8, concurrency))
    cfg.decompression = .disabled
    return HTTPClient(eventLoopGroupProvider: .singleton, configuration: cfg)
}

/// GET returning status and body (bounded), for `/ready` and `/health`.
func getJSON(client: HTTPClient, url: String, timeout: TimeAmount = .seconds(5)) async throws -> (Int, Data) {
    let resp = try await client.execute(HTTPClientRequest(url: url), timeout: timeout)
    let body = try await resp.body.collect(upTo: 4 << 20)
    return (Int(resp.status.code), Data(buffer: body))
}

// MARK: formatting

func fmt(_ x: Double, _ digits: Int = 3) -> String {
    x.isFinite ? String(format: "%.\(digits)f", x) : "n/a"
}

func signed(_ x: Double, _ digits: Int = 3) -> String {
    x.isFinite ? String(format: "%+.\(digits)f", x) : "n/a"
}

func pad(_ s: String, _ w: Int, left: Bool = false) -> String {
    if s.count >= w { return s }
    let sp = String(repeating: " ", count: w - s.count)
    return left ? s + sp : sp + s
}

/// Rounds for JSON output (NaN/inf become nil so the JSON stays valid).
func r(_ x: Double, _ digits: Int = 4) -> Double? {
    guard x.isFinite else { return nil }
    let m = pow(10, Double(digits))
    return (x * m).rounded() / m
}

func printJSON<T: Encodable>(_ value: T) throws {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    FileHandle.standardOutput.write(try e.encode(value))
    FileHandle.standardOutput.write(Data("\n".utf8))
}
