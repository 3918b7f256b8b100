import Testing
@testable import WWWAPI

@Suite("lenient SSE reading, strict writing")
struct SSEReaderTests {
    func read(_ parts: [String]) throws -> [String] {
        var r = SSEReader()
        var out: [String] = []
        for p in parts { out += try r.feed(Array(p.utf8)) }
        if let last = r.finish() { out.append(last) }
        return out
    }

    @Test func basic() throws {
        #expect(try read(["data: a\n\ndata: b\n\n"]) == ["a", "b"])
    }

    @Test func withoutSpaceAndCRLF() throws {
        #expect(try read(["data:a\r\n\r\ndata: b\r\n\r\n"]) == ["a", "b"])
    }

    @Test func loneCR() throws {
        #expect(try read(["data: a\r\rdata: b\r\r"]) == ["a", "b"])
    }

    @Test func crlfSplitAcrossReads() throws {
        #expect(try read(["data: a\r", "\n\r", "\ndata: b\n\n"]) == ["a", "b"])
    }

    @Test func commentsAndMetaIgnored() throws {
        #expect(try read([": keep-alive\n\nevent: message\nid: 3\nretry: 10\ndata: x\n\n"]) == ["x"])
    }

    @Test func eventSplitOverReads() throws {
        #expect(try read(["da", "ta: {\"a\"", ":1}\n", "\n"]) == ["{\"a\":1}"])
    }

    @Test func utf8SplitAcrossReads() throws {
        let bytes = Array("data: é€\n\n".utf8)
        var r = SSEReader()
        var out: [String] = []
        for b in bytes { out += try r.feed([b]) }
        #expect(out == ["é€"])
    }

    @Test func multiLineData() throws {
        #expect(try read(["data: a\ndata: b\n\n"]) == ["a\nb"])
    }

    @Test func lastEventWithoutBlankLine() throws {
        #expect(try read(["data: a\n\ndata: [DONE]"]) == ["a", "[DONE]"])
        #expect(try read(["data: a\n\ndata: [DONE]\n"]) == ["a", "[DONE]"])
    }

    @Test func boundedEventSize() {
        var r = SSEReader(maxEventBytes: 8)
        #expect(throws: SSEReader.Failure.eventTooLarge(limit: 8)) { _ = try r.feed(Array("data: 0123456789".utf8)) }
    }

    /// However the bytes are cut into reads — at every position, byte by byte, or from a
    /// non-contiguous collection — the same events come out.
    @Test func sameEventsForEverySplit() throws {
        let text = "data: a\r\n\r\n: c\n\ndata:b\rdata: é€\r\rdata: x\ndata: y\n\ndata: [DONE]\n\n"
        let bytes = Array(text.utf8)
        let whole = try read([text])
        #expect(whole == ["a", "b\né€", "x\ny", "[DONE]"])
        for cut in 0...bytes.count {
            var r = SSEReader()
            var out = try r.feed(bytes[..<cut])
            out += try r.feed(bytes[cut...])
            if let last = r.finish() { out.append(last) }
            #expect(out == whole, "cut at \(cut)")
        }
        var r = SSEReader()
        var out: [String] = []
        for b in bytes { out += try r.feed(CollectionOfOne(b)) }
        #expect(out == whole)
        var lazy = SSEReader()
        #expect(try lazy.feed(bytes.lazy.map { $0 }) == whole)
    }

    @Test func writer() {
        #expect(String(decoding: SSEWriter.event(Array("{}".utf8)), as: UTF8.self) == "data: {}\n\n")
        #expect(String(decoding: SSEWriter.done, as: UTF8.self) == "data: [DONE]\n\n")
        #expect(String(decoding: SSEWriter.comment("ping"), as: UTF8.self) == ": ping\n\n")
    }

    @Test func accumulatorLastUsageWins() {
        var acc = StreamAccumulator()
        acc.add(ChatCompletionChunk(id: "1", created: 0, model: "m", choices: [ChunkChoice(delta: ChunkDelta(role: "assistant"))]))
        acc.add(ChatCompletionChunk(id: "1", created: 0, model: "m", choices: [ChunkChoice(delta: ChunkDelta(content: "Hel"))], usage: Usage(promptTokens: 3, completionTokens: 1)))
        acc.add(ChatCompletionChunk(id: "1", created: 0, model: "m", choices: [ChunkChoice(delta: ChunkDelta(content: "lo"), finishReason: "stop")], usage: Usage(promptTokens: 3, completionTokens: 2)))
        let c = acc.completion(id: "x", created: 1, model: "m")
        #expect(c.choices[0].message.content == "Hello")
        #expect(c.choices[0].finishReason == "stop")
        #expect(c.usage == Usage(promptTokens: 3, completionTokens: 2))   // not summed
    }
}

@Suite("stream accumulator bounds")
struct StreamAccumulatorBoundTests {
    /// A flood of content (a hostile engine or executor) stops being kept past the bound.
    @Test func textIsBounded() {
        var acc = StreamAccumulator()
        let mib = String(repeating: "x", count: 1 << 20)
        for _ in 0..<(StreamAccumulator.maxTextBytes >> 20) {
            acc.add(ChatCompletionChunk(id: "1", created: 0, model: "m", choices: [ChunkChoice(delta: ChunkDelta(content: mib))]))
        }
        #expect(!acc.overflowed && acc.content.utf8.count == StreamAccumulator.maxTextBytes)
        acc.add(ChatCompletionChunk(id: "1", created: 0, model: "m", choices: [ChunkChoice(delta: ChunkDelta(content: "y"))]))
        #expect(acc.overflowed && acc.content.utf8.count == StreamAccumulator.maxTextBytes)
    }
}
