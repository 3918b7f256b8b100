import Foundation

/// The JSON body the node sends to an OpenAI-compatible engine for a validated request.
///
/// The node always streams from the engine (one code path, real TTFT, retries only before
/// the first byte) and always asks for usage (`stream_options.include_usage`); it drops the
/// usage chunk again when the user did not ask for it.
public struct UpstreamChatBody: Encodable, Sendable {
    struct Message: Encodable {
        let role: String
        let content: String
        let name: String?
    }
    struct StreamOptions: Encodable { let include_usage: Bool }

    let model: String
    let messages: [Message]
    let max_tokens: Int?
    let temperature: Double?
    let top_p: Double?
    let stop: [String]?
    let seed: Int64?
    let stream: Bool
    let stream_options: StreamOptions
    let user: String?
    let presence_penalty: Double?
    let frequency_penalty: Double?

    public init(_ r: ChatCompletionRequest, upstreamModel: String) {
        model = upstreamModel
        messages = r.messages.map { Message(role: $0.role.rawValue, content: $0.content, name: $0.name) }
        max_tokens = r.maxTokens
        temperature = r.temperature
        top_p = r.topP
        stop = r.stop.isEmpty ? nil : r.stop
        seed = r.seed
        stream = true
        stream_options = StreamOptions(include_usage: true)
        user = r.user
        presence_penalty = r.presencePenalty
        frequency_penalty = r.frequencyPenalty
    }

    public func data() throws -> Data { try JSONEncoder.openAI.encode(self) }
}
