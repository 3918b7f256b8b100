import Foundation

/// One chat message after validation. `content` is the concatenation of the text parts when
/// the user sent an array of parts (OpenAI "content parts": `[{"type":"text","text":…}]`).
public struct ChatMessage: Hashable, Sendable, Codable {
    public enum Role: String, Hashable, Sendable, Codable, CaseIterable {
        case system, user, assistant
    }
    public var role: Role
    public var content: String
    public var name: String?

    public init(role: Role, content: String, name: String? = nil) {
        self.role = role
        self.content = content
        self.name = name
    }
}

/// A validated `POST /v1/chat/completions` request (OpenAI API reference, "Create chat
/// completion"). Only the fields the node supports are kept; anything else was rejected
/// with a 400 during `parse`, never silently dropped.
public struct ChatCompletionRequest: Hashable, Sendable, Codable {
    public var model: String
    public var messages: [ChatMessage]
    /// Upper bound on generated tokens (`max_completion_tokens`, else `max_tokens`).
    public var maxTokens: Int?
    /// Sampling temperature in [0, 2].
    public var temperature: Double?
    /// Nucleus sampling mass in [0, 1].
    public var topP: Double?
    /// Up to 4 stop sequences.
    public var stop: [String]
    public var seed: Int64?
    public var stream: Bool
    /// `stream_options.include_usage`: send a final chunk with usage and no choices.
    public var includeUsage: Bool
    /// The end-user id, for abuse tracking (OpenAI `user`).
    public var user: String?
    /// In [-2, 2].
    public var presencePenalty: Double?
    /// In [-2, 2].
    public var frequencyPenalty: Double?

    public init(model: String, messages: [ChatMessage], maxTokens: Int? = nil, temperature: Double? = nil,
                topP: Double? = nil, stop: [String] = [], seed: Int64? = nil, stream: Bool = false,
                includeUsage: Bool = false, user: String? = nil, presencePenalty: Double? = nil,
                frequencyPenalty: Double? = nil) {
        self.model = model
        self.messages = messages
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.topP = topP
        self.stop = stop
        self.seed = seed
        self.stream = stream
        self.includeUsage = includeUsage
        self.user = user
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
    }

    /// The same bounds `parse` enforces, for a request that arrived already structured (an
    /// offered job from a peer): nil when valid, else the error naming the field.
    public var validationProblem: APIError? {
        if model.isEmpty { return .invalidValue("model", "must not be empty.") }
        if messages.isEmpty { return .invalidValue("messages", "expected at least one message.") }
        if messages.count > 100_000 { return .invalidValue("messages", "too many messages.") }
        if let m = maxTokens, !(1...1_000_000).contains(m) { return .invalidValue("max_tokens", "must be in 1...1000000.") }
        func check(_ v: Double?, _ name: String, _ r: ClosedRange<Double>) -> APIError? {
            guard let v else { return nil }
            return r.contains(v) ? nil : .invalidValue(name, "\(v) is out of range \(r.lowerBound)...\(r.upperBound).")
        }
        if let e = check(temperature, "temperature", 0...2) ?? check(topP, "top_p", 0...1)
            ?? check(presencePenalty, "presence_penalty", -2...2) ?? check(frequencyPenalty, "frequency_penalty", -2...2) { return e }
        if stop.count > 4 { return .invalidValue("stop", "at most 4 stop sequences are allowed.") }
        if stop.contains("") { return .invalidValue("stop", "stop sequences must not be empty.") }
        return nil
    }

    /// Parameters accepted and ignored because they change nothing the node returns.
    static let ignoredParameters: Set<String> = ["store", "metadata", "service_tier"]

    /// Parses and validates a request body.
    /// - Throws: `APIError` (status 400) naming the offending parameter.
    public static func parse(_ body: Data) throws -> ChatCompletionRequest {
        let root: JSONValue
        do {
            root = try JSONDecoder().decode(JSONValue.self, from: body)
        } catch {
            throw APIError.invalidJSON(Self.describe(error))
        }
        guard case .object(let fields) = root else {
            throw APIError.invalidRequest("The request body must be a JSON object.", code: "invalid_json")
        }
        return try RequestValidator(fields: fields).validate()
    }

    private static func describe(_ error: any Error) -> String {
        if case DecodingError.dataCorrupted(let ctx) = error {
            if let underlying = ctx.underlyingError { return "\(underlying.localizedDescription)" }
            return ctx.debugDescription
        }
        return "\(error)"
    }
}

/// Walks the request object; every check throws an `APIError` naming its parameter.
struct RequestValidator {
    let fields: [String: JSONValue]

    /// The field's value, or nil when absent or JSON `null` (null means absent, §6a).
    func value(_ key: String) -> JSONValue? {
        guard let v = fields[key] else { return nil }
        if case .null = v { return nil }
        return v
    }

    func validate() throws -> ChatCompletionRequest {
        try rejectUnknownAndUnsupported()
        let model = try requiredString("model")
        guard !model.isEmpty else { throw APIError.invalidValue("model", "must not be empty.") }
        let messages = try parseMessages()
        var request = ChatCompletionRequest(model: model, messages: messages)
        request.maxTokens = try parseMaxTokens()
        request.temperature = try number("temperature", in: 0...2)
        request.topP = try number("top_p", in: 0...1)
        request.presencePenalty = try number("presence_penalty", in: -2...2)
        request.frequencyPenalty = try number("frequency_penalty", in: -2...2)
        request.stop = try parseStop()
        request.seed = try integer("seed")
        request.stream = try bool("stream") ?? false
        request.includeUsage = try parseStreamOptions(stream: request.stream)
        request.user = try string("user")
        return request
    }

    private static let known: Set<String> = [
        "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop",
        "seed", "stream", "stream_options", "user", "presence_penalty", "frequency_penalty", "n",
        "tools", "tool_choice", "functions", "function_call", "parallel_tool_calls", "logprobs",
        "top_logprobs", "logit_bias", "response_format", "audio", "modalities", "prediction",
        "reasoning_effort", "web_search_options",
    ]

    private func rejectUnknownAndUnsupported() throws {
        for key in fields.keys.sorted() where !Self.known.contains(key) && !ChatCompletionRequest.ignoredParameters.contains(key) {
            throw APIError.unknownParameter(key)
        }
        if let n = try integer("n"), n != 1 {
            throw APIError.unsupported("n", "only n = 1 is supported; send separate requests for more choices.")
        }
        for key in ["tools", "tool_choice", "functions", "function_call", "parallel_tool_calls", "audio", "prediction", "reasoning_effort", "web_search_options", "top_logprobs"] where value(key) != nil {
            throw APIError.unsupported(key, "this node does not support it.")
        }
        if let lp = try bool("logprobs"), lp {
            throw APIError.unsupported("logprobs", "log probabilities are not supported.")
        }
        if let bias = value("logit_bias") {
            guard case .object(let o) = bias else { throw APIError.invalidType("logit_bias", expected: "object", got: bias) }
            if !o.isEmpty { throw APIError.unsupported("logit_bias", "logit bias is not supported.") }
        }
        if let rf = value("response_format") {
            guard case .object(let o) = rf else { throw APIError.invalidType("response_format", expected: "object", got: rf) }
            if o["type"] != .string("text") {
                throw APIError.unsupported("response_format", "only {\"type\": \"text\"} is supported.")
            }
        }
        if let m = value("modalities"), m != .array([.string("text")]) {
            throw APIError.unsupported("modalities", "only [\"text\"] is supported.")
        }
    }

    /// Keys a message object may have (OpenAI's message shapes; `refusal` is what clients
    /// echo back from earlier assistant answers).
    static let messageKeys: Set<String> = ["role", "content", "name", "tool_calls", "function_call", "audio", "tool_call_id", "refusal"]

    private func parseMessages() throws -> [ChatMessage] {
        guard let raw = value("messages") else { throw APIError.missing("messages") }
        guard case .array(let items) = raw else { throw APIError.invalidType("messages", expected: "array", got: raw) }
        guard !items.isEmpty else {
            throw APIError.invalidValue("messages", "expected an array with at least one message, but got an empty array.")
        }
        return try items.enumerated().map { try parseMessage($1, index: $0) }
    }

    private func parseMessage(_ raw: JSONValue, index: Int) throws -> ChatMessage {
        let p = "messages[\(index)]"
        guard case .object(let m) = raw else { throw APIError.invalidType(p, expected: "object", got: raw) }
        guard let roleValue = m["role"], roleValue != .null else { throw APIError.missing("\(p).role") }
        guard case .string(let roleName) = roleValue else { throw APIError.invalidType("\(p).role", expected: "string", got: roleValue) }
        let role: ChatMessage.Role
        switch roleName {
        case "system", "developer": role = .system
        case "user": role = .user
        case "assistant": role = .assistant
        case "tool", "function":
            throw APIError.unsupported("\(p).role", "'\(roleName)' messages need tool calling, which this node does not support.")
        default:
            throw APIError.invalidValue("\(p).role", "'\(roleName)' is not one of 'system', 'developer', 'user', 'assistant'.")
        }
        for key in m.keys.sorted() where !Self.messageKeys.contains(key) {
            throw APIError.unknownParameter("\(p).\(key)")
        }
        for key in ["tool_calls", "function_call", "audio"] where m[key] != nil && m[key] != .null {
            throw APIError.unsupported("\(p).\(key)", "tool calling and audio are not supported.")
        }
        let content = try parseContent(m["content"], param: "\(p).content")
        var name: String?
        if let n = m["name"], n != .null {
            guard case .string(let s) = n else { throw APIError.invalidType("\(p).name", expected: "string", got: n) }
            name = s
        }
        return ChatMessage(role: role, content: content, name: name)
    }

    private func parseContent(_ raw: JSONValue?, param: String) throws -> String {
        guard let raw, raw != .null else { throw APIError.missing(param) }
        switch raw {
        case .string(let s):
            return s
        case .array(let parts):
            guard !parts.isEmpty else { throw APIError.invalidValue(param, "expected at least one content part.") }
            var text = ""
            for (i, part) in parts.enumerated() {
                text += try parsePart(part, param: "\(param)[\(i)]")
            }
            return text
        default:
            throw APIError.invalidType(param, expected: "string or array of content parts", got: raw)
        }
    }

    private func parsePart(_ raw: JSONValue, param: String) throws -> String {
        guard case .object(let o) = raw else { throw APIError.invalidType(param, expected: "object", got: raw) }
        guard let t = o["type"], t != .null else { throw APIError.missing("\(param).type") }
        guard case .string(let type) = t else { throw APIError.invalidType("\(param).type", expected: "string", got: t) }
        guard type == "text" else {
            throw APIError.unsupported("\(param).type", "content part type '\(type)' is not supported; only 'text' is.")
        }
        guard let v = o["text"], v != .null else { throw APIError.missing("\(param).text") }
        guard case .string(let s) = v else { throw APIError.invalidType("\(param).text", expected: "string", got: v) }
        return s
    }

    private func parseMaxTokens() throws -> Int? {
        let a = try integer("max_completion_tokens")
        let b = try integer("max_tokens")
        for (name, v) in [("max_completion_tokens", a), ("max_tokens", b)] {
            if let v, v < 1 { throw APIError.invalidValue(name, "must be at least 1, got \(v).") }
            if let v, v > 1_000_000 { throw APIError.invalidValue(name, "must be at most 1000000, got \(v).") }
        }
        return (a ?? b).map { Int($0) }
    }

    private func parseStop() throws -> [String] {
        guard let raw = value("stop") else { return [] }
        let list: [String]
        switch raw {
        case .string(let s): list = [s]
        case .array(let items):
            list = try items.enumerated().map { i, v in
                guard case .string(let s) = v else { throw APIError.invalidType("stop[\(i)]", expected: "string", got: v) }
                return s
            }
        default: throw APIError.invalidType("stop", expected: "string or array of strings", got: raw)
        }
        guard list.count <= 4 else { throw APIError.invalidValue("stop", "at most 4 stop sequences are allowed, got \(list.count).") }
        guard !list.contains("") else { throw APIError.invalidValue("stop", "stop sequences must not be empty.") }
        return list
    }

    private func parseStreamOptions(stream: Bool) throws -> Bool {
        guard let raw = value("stream_options") else { return false }
        guard case .object(let o) = raw else { throw APIError.invalidType("stream_options", expected: "object", got: raw) }
        guard stream else {
            throw APIError.invalidValue("stream_options", "stream_options is only allowed when 'stream' is true.")
        }
        for key in o.keys where key != "include_usage" && key != "continuous_usage_stats" {
            throw APIError.unknownParameter("stream_options.\(key)")
        }
        guard let u = o["include_usage"], u != .null else { return false }
        guard case .bool(let b) = u else { throw APIError.invalidType("stream_options.include_usage", expected: "boolean", got: u) }
        return b
    }

    // MARK: typed field readers

    private func requiredString(_ key: String) throws -> String {
        guard let v = value(key) else { throw APIError.missing(key) }
        guard case .string(let s) = v else { throw APIError.invalidType(key, expected: "string", got: v) }
        return s
    }

    private func string(_ key: String) throws -> String? {
        guard let v = value(key) else { return nil }
        guard case .string(let s) = v else { throw APIError.invalidType(key, expected: "string", got: v) }
        return s
    }

    private func bool(_ key: String) throws -> Bool? {
        guard let v = value(key) else { return nil }
        guard case .bool(let b) = v else { throw APIError.invalidType(key, expected: "boolean", got: v) }
        return b
    }

    private func integer(_ key: String) throws -> Int64? {
        guard let v = value(key) else { return nil }
        switch v {
        case .int(let i): return i
        case .double(let d) where d == d.rounded() && abs(d) < 9e15: return Int64(d)
        default: throw APIError.invalidType(key, expected: "integer", got: v)
        }
    }

    private func number(_ key: String, in range: ClosedRange<Double>) throws -> Double? {
        guard let v = value(key) else { return nil }
        guard let d = v.number else { throw APIError.invalidType(key, expected: "number", got: v) }
        guard range.contains(d) else {
            throw APIError.invalidValue(key, "\(d) is out of range; expected a number between \(range.lowerBound) and \(range.upperBound).")
        }
        return d
    }
}
