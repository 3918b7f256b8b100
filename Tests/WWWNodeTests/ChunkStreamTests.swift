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
