/// A lenient, incremental Server-Sent Events reader (WHATWG HTML "Server-sent events",
/// §9.2.6 parsing, plus the relay rules of DESIGN.md §6a).
///
/// Accepts `data:` with or without the space; LF, CRLF or lone CR line ends (also a CRLF
/// split across two reads); comment lines (`: …`) and `event:`/`id:`/`retry:` fields are
/// ignored; several events in one read; one event split over reads; UTF-8 split across
/// reads (bytes are kept until an event completes); a last event at EOF without its blank
/// line (`finish()`). `maxEventBytes` bounds a single event so a hostile upstream cannot
/// grow memory without limit.
public struct SSEReader: Sendable {
    public enum Failure: Error, Equatable { case eventTooLarge(limit: Int) }

    private var line: [UInt8] = []
    private var data: [UInt8] = []
    private var hasData = false
    private var lastWasCR = false
    private let maxEventBytes: Int

    public init(maxEventBytes: Int = 4 << 20) { self.maxEventBytes = maxEventBytes }

    /// Feeds bytes; returns the `data` payloads of the events completed by them.
    public mutating func feed<C: Collection>(_ bytes: C) throws -> [String] where C.Element == UInt8 {
        var events: [String] = []
        for b in bytes {
            if lastWasCR {
                lastWasCR = false
                if b == 0x0A { continue }   // CRLF: the CR already ended the line
            }
            if b == 0x0A || b == 0x0D {
                lastWasCR = (b == 0x0D)
                if let e = endLine() { events.append(e) }
            } else {
                line.append(b)
                if line.count + data.count > maxEventBytes { throw Failure.eventTooLarge(limit: maxEventBytes) }
            }
        }
        return events
    }

    /// Ends the stream: returns the last event if it lacked its terminating blank line.
    public mutating func finish() -> String? {
        if !line.isEmpty { _ = endLine() }
        return dispatch()
    }

    private mutating func endLine() -> String? {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty { return dispatch() }
        if line.first == UInt8(ascii: ":") { return nil }
        let colon = line.firstIndex(of: UInt8(ascii: ":")) ?? line.endIndex
        guard line[..<colon].elementsEqual("data".utf8) else { return nil }
        var valueStart = colon < line.endIndex ? colon + 1 : colon
        if valueStart < line.endIndex && line[valueStart] == UInt8(ascii: " ") { valueStart += 1 }
        if hasData { data.append(0x0A) }
        data.append(contentsOf: line[valueStart...])
        hasData = true
        return nil
    }

    private mutating func dispatch() -> String? {
        guard hasData else { return nil }
        let s = String(decoding: data, as: UTF8.self)
        data.removeAll(keepingCapacity: true)
        hasData = false
        return s
    }
}

/// Strict SSE writing: `data: <payload>\n\n`; keep-alives as comment lines.
public enum SSEWriter {
    public static func event(_ payload: some Collection<UInt8>) -> [UInt8] {
        var out = Array("data: ".utf8)
        out.reserveCapacity(payload.count + 8)
        out.append(contentsOf: payload)
        out.append(contentsOf: [0x0A, 0x0A])
        return out
    }
    public static let done: [UInt8] = Array("data: [DONE]\n\n".utf8)
    public static func comment(_ text: String) -> [UInt8] { Array(": \(text)\n\n".utf8) }
}
