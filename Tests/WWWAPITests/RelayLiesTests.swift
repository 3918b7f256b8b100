import Foundation
import Testing
@testable import WWWAPI

/// What an engine says must reach the user as it said it (issue "the relay never lies").
@Suite struct RelayLiesTests {
    func chunk(_ json: String) throws -> ChatCompletionChunk {
        try JSONDecoder().decode(ChatCompletionChunk.self, from: Data(json.utf8))
    }

    @Test func reasoningContentIsContentAndIsKept() throws {
        let c = try chunk(#"{"choices":[{"index":0,"delta":{"reasoning_content":"thinking…"}}]}"#)
        #expect(c.carriesContentOrFinish)
        #expect(c.choices[0].delta.reasoningContent == "thinking…")
        let out = String(decoding: try JSONEncoder().encode(c), as: UTF8.self)
        #expect(out.contains(#""reasoning_content":"thinking…""#))
        var acc = StreamAccumulator()
        acc.add(c)
        acc.add(try chunk(#"{"choices":[{"index":0,"delta":{"content":"42"},"finish_reason":"stop"}]}"#))
        let done = acc.completion(id: "x", created: 1, model: "m")
        #expect(done.choices[0].message.reasoningContent == "thinking…")
        #expect(done.choices[0].message.content == "42")
    }

    @Test func anEmptyFinishReasonIsNoFinish() throws {
        let c = try chunk(#"{"choices":[{"index":0,"delta":{},"finish_reason":""}]}"#)
        #expect(c.choices[0].finishReason == nil)
        #expect(!c.carriesContentOrFinish)
    }

    @Test func unknownUsageIsNullNeverZero() throws {
        var acc = StreamAccumulator()
        acc.add(try chunk(#"{"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}"#))
        let json = String(decoding: try JSONEncoder().encode(acc.completion(id: "x", created: 1, model: "m")), as: UTF8.self)
        #expect(json.contains(#""usage":null"#))
        let final = String(decoding: try JSONEncoder().encode(FinalUsageChunk(id: "x", created: 1, model: "m", usage: nil)), as: UTF8.self)
        #expect(final.contains(#""usage":null"#) && final.contains(#""choices":[]"#))
    }

    @Test func loneSurrogateEscapesBecomeReplacementCharacters() throws {
        let broken = #"{"choices":[{"index":0,"delta":{"content":"a\ud83d b \ude00 ok \ud83d\ude00 \\ud800"}}]}"#
        let fixed = try #require(JSONText.replacingLoneSurrogates(broken))
        let c = try chunk(fixed)
        #expect(c.choices[0].delta.content == "a\u{FFFD} b \u{FFFD} ok 😀 \\ud800")
        #expect(JSONText.replacingLoneSurrogates(#"{"a":"\ud83d\ude00 and \"\\u0041\""}"#) == nil)
    }
}
