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
    /// Contiguous input (`ByteBufferView`, arrays) is scanned in place, line by line.
    public mutating func feed<C: Collection>(_ bytes: C) throws -> [String] where C.Element == UInt8 {
        if let events = try bytes.withContiguousStorageIfAvailable({ try feed(buffer: $0) }) { return events }
        return try Array(bytes).withUnsafeBufferPointer { try feed(buffer: $0) }
    }

    private mutating func feed(buffer: UnsafeBufferPointer<UInt8>) throws -> [String] {
        var events: [String] = []
        var i = 0
        while i < buffer.count {
            if lastWasCR {
                lastWasCR = false
                if buffer[i] == 0x0A { i += 1; continue }   // CRLF: the CR already ended the line
            }
            var end = i
            while end < buffer.count, buffer[end] != 0x0A, buffer[end] != 0x0D { end += 1 }
            if end > i {
                guard line.count + data.count + (end - i) <= maxEventBytes else {
                    throw Failure.eventTooLarge(limit: maxEventBytes)
                }
                line.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[i..<end]))
            }
            if end < buffer.count {
                lastWasCR = (buffer[end] == 0x0D)
                if let e = endLine() { events.append(e) }
                end += 1
            }
            i = end
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

/// Repairs JSON text from engines that split a character's UTF-16 surrogate pair across
/// chunks (a lone `\uD83D` escape, which strict JSON decoders reject): every `\uXXXX`
/// escape of a surrogate without its partner becomes `\uFFFD` (U+FFFD REPLACEMENT
/// CHARACTER), as a lenient reader would decode it.
public enum JSONText {
    /// The repaired text, or nil when it has no lone surrogate escape.
    public static func replacingLoneSurrogates(_ text: String) -> String? {
        let u = Array(text.utf8)
        var out: [UInt8] = []
        var changed = false
        var i = 0
        var inString = false
        func hex(at j: Int) -> UInt16? {
            guard j + 4 <= u.count else { return nil }
            var v: UInt16 = 0
            for k in j..<(j + 4) {
                let c = u[k]
                let d: UInt16
                switch c {
                case 0x30...0x39: d = UInt16(c - 0x30)
                case 0x41...0x46: d = UInt16(c - 0x41 + 10)
                case 0x61...0x66: d = UInt16(c - 0x61 + 10)
                default: return nil
                }
                v = v << 4 | d
            }
            return v
        }
        func isEscape(at j: Int) -> UInt16? {
            guard j + 1 < u.count, u[j] == 0x5C, u[j + 1] == 0x75 else { return nil }   // \u
            return hex(at: j + 2)
        }
        let replacement = Array("\\ufffd".utf8)
        while i < u.count {
            let c = u[i]
            if !inString {
                if c == 0x22 { inString = true }
                out.append(c)
                i += 1
                continue
            }
            if c == 0x22 { inString = false; out.append(c); i += 1; continue }
            guard c == 0x5C, i + 1 < u.count else { out.append(c); i += 1; continue }
            if let v = isEscape(at: i) {
                if (0xD800...0xDBFF).contains(v), let w = isEscape(at: i + 6), (0xDC00...0xDFFF).contains(w) {
                    out.append(contentsOf: u[i..<(i + 12)])
                    i += 12
                } else if (0xD800...0xDFFF).contains(v) {
                    out.append(contentsOf: replacement)
                    changed = true
                    i += 6
                } else {
                    out.append(contentsOf: u[i..<(i + 6)])
                    i += 6
                }
            } else {
                out.append(contentsOf: u[i..<(i + 2)])   // any other escape, e.g. \\ or \"
                i += 2
            }
        }
        return changed ? String(decoding: out, as: UTF8.self) : nil
    }
}
