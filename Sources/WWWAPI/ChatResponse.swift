import Foundation

/// Token counts (OpenAI `usage`).
public struct Usage: Codable, Hashable, Sendable {
    public var promptTokens: Int
    public var completionTokens: Int
    public var totalTokens: Int

    public init(promptTokens: Int, completionTokens: Int) {
        self.promptTokens = min(max(promptTokens, 0), Self.maxTokens)
        self.completionTokens = min(max(completionTokens, 0), Self.maxTokens)
        self.totalTokens = self.promptTokens + self.completionTokens
    }

    enum CodingKeys: String, CodingKey {
        case promptTokens = "prompt_tokens", completionTokens = "completion_tokens", totalTokens = "total_tokens"
    }

    /// Upper bound of one count (an engine or a peer may send anything; counts are clamped
    /// to 0…2³², so no sum of them can overflow).
    public static let maxTokens = 1 << 32

    /// Lenient and safe: missing counts are 0, negative ones 0, huge ones clamped to
    /// `maxTokens`; `total_tokens` defaults to the sum.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func count(_ k: CodingKeys) -> Int? {
            guard let v = try? c.decodeIfPresent(Double.self, forKey: k), v.isFinite else { return nil }
            return Int(min(max(v.rounded(.down), 0), Double(Self.maxTokens)))
        }
        promptTokens = count(.promptTokens) ?? 0
        completionTokens = count(.completionTokens) ?? 0
        totalTokens = count(.totalTokens) ?? (promptTokens + completionTokens)
    }
}

/// A streamed delta (`choices[i].delta`).
public struct ChunkDelta: Codable, Hashable, Sendable {
    public var role: String?
    public var content: String?
    /// Reasoning text (vLLM, SGLang and DeepSeek-style engines stream a model's thinking as
    /// `reasoning_content`), relayed as it comes.
    public var reasoningContent: String?

    public init(role: String? = nil, content: String? = nil, reasoningContent: String? = nil) {
        self.role = role
        self.content = content
        self.reasoningContent = reasoningContent
    }

    enum CodingKeys: String, CodingKey { case role, content, reasoningContent = "reasoning_content" }
}

/// One choice of a `chat.completion.chunk`.
public struct ChunkChoice: Codable, Hashable, Sendable {
    public var index: Int
    public var delta: ChunkDelta
    /// "stop", "length", … or null while generating.
    public var finishReason: String?

    public init(index: Int = 0, delta: ChunkDelta, finishReason: String? = nil) {
        self.index = index
        self.delta = delta
        self.finishReason = finishReason
    }

    enum CodingKeys: String, CodingKey { case index, delta, finishReason = "finish_reason" }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        index = try c.decodeIfPresent(Int.self, forKey: .index) ?? 0
        delta = try c.decodeIfPresent(ChunkDelta.self, forKey: .delta) ?? ChunkDelta()
        // Only a real reason ends a stream: "" (seen from some engines) is no finish.
        let f = try c.decodeIfPresent(String.self, forKey: .finishReason)
        finishReason = (f?.isEmpty ?? true) ? nil : f
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(index, forKey: .index)
        try c.encode(delta, forKey: .delta)
        try c.encode(finishReason, forKey: .finishReason)   // explicit null, as OpenAI does
    }
}

/// An OpenAI `chat.completion.chunk` SSE event payload.
public struct ChatCompletionChunk: Codable, Hashable, Sendable {
    public var id: String
    public var object: String
    public var created: Int64
    public var model: String
    public var choices: [ChunkChoice]
    public var usage: Usage?

    public init(id: String, created: Int64, model: String, choices: [ChunkChoice], usage: Usage? = nil) {
        self.id = id
        self.object = "chat.completion.chunk"
        self.created = created
        self.model = model
        self.choices = choices
        self.usage = usage
    }

    enum CodingKeys: String, CodingKey { case id, object, created, model, choices, usage }

    /// Lenient decoding of an upstream chunk: missing bookkeeping fields get defaults.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decodeIfPresent(String.self, forKey: .id) ?? ""
        object = try c.decodeIfPresent(String.self, forKey: .object) ?? "chat.completion.chunk"
        created = try c.decodeIfPresent(Int64.self, forKey: .created) ?? 0
        model = try c.decodeIfPresent(String.self, forKey: .model) ?? ""
        choices = try c.decodeIfPresent([ChunkChoice].self, forKey: .choices) ?? []
        usage = try c.decodeIfPresent(Usage.self, forKey: .usage)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(object, forKey: .object)
        try c.encode(created, forKey: .created)
        try c.encode(model, forKey: .model)
        try c.encode(choices, forKey: .choices)
        if let usage { try c.encode(usage, forKey: .usage) }
    }

    /// True when any choice carries content, reasoning or a finish reason: the first such
    /// chunk is when the node commits its HTTP status to the user (§6a) and its TTFT.
    public var carriesContentOrFinish: Bool {
        choices.contains {
            ($0.delta.content?.isEmpty == false) || ($0.delta.reasoningContent?.isEmpty == false) || $0.finishReason != nil
        }
    }
}

/// A complete non-streaming `chat.completion`.
public struct ChatCompletion: Codable, Hashable, Sendable {
    public struct Message: Codable, Hashable, Sendable {
        public var role: String
        public var content: String
        /// The model's reasoning, when the engine streamed any.
        public var reasoningContent: String?

        public init(role: String, content: String, reasoningContent: String? = nil) {
            self.role = role
            self.content = content
            self.reasoningContent = reasoningContent
        }

        enum CodingKeys: String, CodingKey { case role, content, reasoningContent = "reasoning_content" }
    }
    public struct Choice: Codable, Hashable, Sendable {
        public var index: Int
        public var message: Message
        public var finishReason: String?
        public var logprobs: String?

        enum CodingKeys: String, CodingKey { case index, message, finishReason = "finish_reason", logprobs }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encode(message, forKey: .message)
            try c.encode(finishReason, forKey: .finishReason)
            try c.encode(logprobs, forKey: .logprobs)
        }
    }
    public var id: String
    public var object: String
    public var created: Int64
    public var model: String
    public var choices: [Choice]
    /// nil (JSON `null`) when the engine reported no usage: unknown, never a false zero.
    public var usage: Usage?

    enum CodingKeys: String, CodingKey { case id, object, created, model, choices, usage }

    public func encode(to encoder: any Encoder) throws { try encodeWithExplicitUsage(to: encoder) }
}

/// The last chunk of a stream whose user asked for usage (`stream_options.include_usage`):
/// no choices, and `usage` — JSON `null` when the engine reported none.
public struct FinalUsageChunk: Encodable, Sendable {
    public var id: String
    public var object = "chat.completion.chunk"
    public var created: Int64
    public var model: String
    public var choices: [ChunkChoice] = []
    public var usage: Usage?

    public init(id: String, created: Int64, model: String, usage: Usage?) {
        self.id = id
        self.created = created
        self.model = model
        self.usage = usage
    }

    public func encode(to encoder: any Encoder) throws { try encodeWithExplicitUsage(to: encoder) }
}

/// The fields a completion and a final usage chunk share, encoded with `usage` always
/// present: JSON `null` when unknown (synthesized `Encodable` would leave the key out).
protocol ExplicitUsageEncodable {
    associatedtype Choices: Encodable
    var id: String { get }
    var object: String { get }
    var created: Int64 { get }
    var model: String { get }
    var choices: Choices { get }
    var usage: Usage? { get }
}

private enum ExplicitUsageKeys: String, CodingKey { case id, object, created, model, choices, usage }

extension ExplicitUsageEncodable {
    func encodeWithExplicitUsage(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: ExplicitUsageKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(object, forKey: .object)
        try c.encode(created, forKey: .created)
        try c.encode(model, forKey: .model)
        try c.encode(choices, forKey: .choices)
        try c.encode(usage, forKey: .usage)
    }
}

extension ChatCompletion: ExplicitUsageEncodable {}
extension FinalUsageChunk: ExplicitUsageEncodable {}

/// A model entry of `GET /v1/models`.
public struct ModelEntry: Codable, Hashable, Sendable {
    public var id: String
    public var object: String = "model"
    public var created: Int64
    public var ownedBy: String

    public init(id: String, created: Int64, ownedBy: String) {
        self.id = id
        self.created = created
        self.ownedBy = ownedBy
    }

    enum CodingKeys: String, CodingKey { case id, object, created, ownedBy = "owned_by" }
}

/// `GET /v1/models` response.
public struct ModelList: Codable, Hashable, Sendable {
    public var object: String = "list"
    public var data: [ModelEntry]
    public init(data: [ModelEntry]) { self.data = data }
}

/// Folds a stream of chunks into what the user sees at the end: the text per choice, the
/// finish reason, and the usage (the last non-null cumulative usage wins; snapshots are
/// never summed — DESIGN.md §6a).
public struct StreamAccumulator: Sendable {
    public private(set) var content = ""
    public private(set) var reasoning = ""
    public private(set) var finishReason: String?
    public private(set) var usage: Usage?
    public private(set) var chunks = 0
    public private(set) var sawContent = false
    /// The text passed `maxTextBytes`: what is past it was not kept (a non-streaming
    /// answer must then fail rather than grow memory without bound or come back cut).
    public private(set) var overflowed = false
    private var textBytes = 0

    /// Content plus reasoning kept, in UTF-8 bytes.
    public static let maxTextBytes = 8 << 20

    public init() {}

    public mutating func add(_ chunk: ChatCompletionChunk) {
        chunks += 1
        if let u = chunk.usage { usage = u }
        for choice in chunk.choices where choice.index == 0 {
            if let c = choice.delta.content, !c.isEmpty {
                if keep(c) { content += c }
                sawContent = true
            }
            if let r = choice.delta.reasoningContent, !r.isEmpty {
                if keep(r) { reasoning += r }
                sawContent = true
            }
            if let f = choice.finishReason { finishReason = f }
        }
    }

    private mutating func keep(_ text: String) -> Bool {
        guard !overflowed, textBytes + text.utf8.count <= Self.maxTextBytes else {
            overflowed = true
            return false
        }
        textBytes += text.utf8.count
        return true
    }

    /// The final `chat.completion`. When the upstream sent no usage it is `null` (unknown).
    public func completion(id: String, created: Int64, model: String) -> ChatCompletion {
        let message = ChatCompletion.Message(role: "assistant", content: content, reasoningContent: reasoning.isEmpty ? nil : reasoning)
        return ChatCompletion(
            id: id, object: "chat.completion", created: created, model: model,
            choices: [.init(index: 0, message: message, finishReason: finishReason ?? "stop", logprobs: nil)],
            usage: usage)
    }
}
