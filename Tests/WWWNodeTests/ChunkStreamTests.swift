import Foundation
import Testing
import WWWAPI
import WWWBackends

/// Producer-fed chunk streams never drop a chunk silently (issue: `.bufferingNewest`).
@Suite struct ChunkStreamTests {
    static func chunk(_ i: Int) -> ChatCompletionChunk {
        ChatCompletionChunk(id: "c", created: 1, model: "m", choices: [ChunkChoice(delta: ChunkDelta(content: "\(i)"), finishReason: nil)], usage: nil)
    }

    @Test func aProducerTooFarAheadFailsTheStreamLoudlyAfterEveryBufferedChunk() async throws {
        let (stream, c) = ChunkStream.makeStream()
        var accepted = 0
        for i in 0..<(ChunkStream.producerBuffer + 10) where c.yield(Self.chunk(i)) { accepted += 1 }
        #expect(accepted == ChunkStream.producerBuffer)
        var seen: [String] = []
        do {
            for try await ch in stream { seen.append(ch.choices[0].delta.content ?? "") }
            Issue.record("the stream must end with an error")
        } catch let e as BackendError {
            #expect(e.description.contains("behind"))
        }
        #expect(seen == (0..<ChunkStream.producerBuffer).map(String.init))
    }

    @Test func aPullBasedStreamDeliversEveryChunkInOrder() async throws {
        final class Counter: @unchecked Sendable { var n = 0 }
        let counter = Counter()
        let stream = ChunkStream(unfolding: {
            defer { counter.n += 1 }
            return counter.n < 5_000 ? Self.chunk(counter.n) : nil
        })
        var count = 0
        for try await ch in stream {
            #expect(ch.choices[0].delta.content == String(count))
            count += 1
        }
        #expect(count == 5_000)
    }
}

/// Engine errors keep their status, message, param and code; Retry-After in every form.
@Suite struct UpstreamErrorTests {
    func parse(_ json: String, status: Int? = nil) -> UpstreamError? {
        UpstreamError.parse(try! JSONDecoder().decode(JSONValue.self, from: Data(json.utf8)), status: status, retryAfter: nil)
    }

    @Test func aContextLengthErrorKeepsParamAndCode() {
        let e = parse(#"{"error":{"message":"too long","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#, status: 400)
        let api = e?.apiError
        #expect(api?.status == 400)
        #expect(api?.param == "messages")
        #expect(api?.code == "context_length_exceeded")
        #expect(api?.message == "too long")
    }

    @Test func inBandErrorEventsGetTheirStatusFromCodeOrType() {
        #expect(parse(#"{"error":{"message":"boom","type":"server_error","code":500}}"#)?.status == 500)
        #expect(parse(#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#)?.apiError.status == 429)
        #expect(parse(#"{"error":"plain text"}"#)?.apiError.status == 502)
        #expect(parse(#"{"choices":[]}"#) == nil)
    }

    @Test func rateLimitsStay429WithRetryAfter() {
        var e = UpstreamError(status: 429, message: "slow down", retryAfter: 7)
        #expect(e.apiError.status == 429 && e.apiError.retryAfter == 7)
        e.retryAfter = nil
        #expect(e.apiError.retryAfter == 1)
    }

    @Test func retryAfterInEveryForm() {
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        #expect(RetryAfter.seconds(retryAfter: "5", retryAfterMs: nil, now: now) == 5)
        #expect(RetryAfter.seconds(retryAfter: "0", retryAfterMs: nil, now: now) == 1)
        #expect(RetryAfter.seconds(retryAfter: nil, retryAfterMs: "1500", now: now) == 2)
        #expect(RetryAfter.seconds(retryAfter: "9", retryAfterMs: "200", now: now) == 1)
        // 1_700_000_030 is Tue, 14 Nov 2023 22:13:50 GMT.
        #expect(RetryAfter.seconds(retryAfter: "Tue, 14 Nov 2023 22:13:50 GMT", retryAfterMs: nil, now: now) == 30)
        #expect(RetryAfter.seconds(retryAfter: "soon", retryAfterMs: nil, now: now) == nil)
    }

    /// An engine's or a peer's huge value must neither trap (Double → Int) nor pass through.
    @Test func hugeRetryAfterIsClamped() {
        let now = Date(timeIntervalSince1970: 1_700_000_000)
        for v in ["99999999999999999999", "1e300", "86400000"] {
            #expect(RetryAfter.seconds(retryAfter: v, retryAfterMs: nil, now: now) == RetryAfter.maxSeconds, "\(v)")
        }
        #expect(RetryAfter.seconds(retryAfter: nil, retryAfterMs: "1e30", now: now) == RetryAfter.maxSeconds)
        #expect(RetryAfter.seconds(retryAfter: "Fri, 31 Dec 9999 23:59:59 GMT", retryAfterMs: nil, now: now) == RetryAfter.maxSeconds)
        #expect(RetryAfter.seconds(retryAfter: "Tue, 14 Nov 2000 22:13:50 GMT", retryAfterMs: nil, now: now) == 1)
    }
}
