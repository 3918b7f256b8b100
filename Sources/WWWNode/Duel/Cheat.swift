import Foundation
import WWWAPI
import WWWBackends
import WWWCore

/// `experiment.cheat`: how a cheating executor spoils the answers of offloaded jobs
/// (experiments and tests only). The spoiled stream keeps the engine's pacing, usage and
/// finish reason; only the text changes (`junk`) or stops early (`truncate`).
struct Cheat: Sendable {
    let section: ExperimentSection

    /// `stream` spoiled as configured (itself when the cheat is `none`).
    func apply(_ stream: ChunkStream, seed: UInt64) -> ChunkStream {
        guard section.cheat != .none else { return stream }
        let state = SequentialBox(CheatState(iterator: stream.makeAsyncIterator(), prng: SeededPRNG(seed: seed)))
        let mode = section.cheat, limit = section.truncateAfterChunks
        return ChunkStream(unfolding: {
            try await state.value.next(mode: mode, truncateAfter: limit)
        })
    }
}

/// The reader side of a spoiled stream (one reader at a time).
struct CheatState {
    var iterator: ChunkStream.AsyncIterator
    var prng: SeededPRNG
    var contentChunks = 0
    var ended = false

    mutating func next(mode: ExperimentSection.Cheat, truncateAfter: Int) async throws -> ChatCompletionChunk? {
        guard !ended, var chunk = try await iterator.next() else { return nil }
        switch mode {
        case .none:
            return chunk
        case .junk:
            for i in chunk.choices.indices {
                if let c = chunk.choices[i].delta.content, !c.isEmpty { chunk.choices[i].delta.content = junk(like: c) }
            }
            return chunk
        case .truncate:
            guard chunk.choices.contains(where: { !($0.delta.content ?? "").isEmpty }) else { return chunk }
            contentChunks += 1
            guard contentChunks >= truncateAfter else { return chunk }
            // Stop here, as if the engine had: a finish reason, and nothing after it.
            ended = true
            for i in chunk.choices.indices { chunk.choices[i].finishReason = "stop" }
            iterator = ChunkStream.empty.makeAsyncIterator()
            return chunk
        }
    }

    /// Random lower-case letters in words, about as long as `text`.
    mutating func junk(like text: String) -> String {
        let letters = Array("abcdefghijklmnopqrstuvwxyz")
        var out = ""
        let n = max(1, text.count)
        while out.count < n {
            if !out.isEmpty || text.first == " " { out.append(" ") }
            for _ in 0..<(2 + Int(prng.next() % 7)) { out.append(letters[Int(prng.next() % 26)]) }
        }
        return out
    }
}
