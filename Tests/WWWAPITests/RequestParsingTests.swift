import Foundation
import Testing
@testable import WWWAPI

@Suite("chat request parsing and validation")
struct RequestParsingTests {
    func parse(_ json: String) throws -> ChatCompletionRequest {
        try ChatCompletionRequest.parse(Data(json.utf8))
    }

    func error(_ json: String) -> APIError? {
        do {
            _ = try parse(json)
            return nil
        } catch let e as APIError {
            return e
        } catch {
            Issue.record("unexpected error type \(error)")
            return nil
        }
    }

    @Test func fullRequest() throws {
        let r = try parse("""
        {"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"assistant","content":"ok","name":"bot"}],
         "max_tokens":10,"max_completion_tokens":12,"temperature":0,"top_p":0.5,"stop":["x","y"],"seed":7,"stream":true,
         "stream_options":{"include_usage":true},"user":"u1","n":1,"presence_penalty":0.1,"store":false}
        """)
        #expect(r.model == "m")
        #expect(r.messages == [ChatMessage(role: .system, content: "be brief"), ChatMessage(role: .user, content: "ab"),
                               ChatMessage(role: .assistant, content: "ok", name: "bot")])
        #expect(r.maxTokens == 12)
        #expect(r.temperature == 0)   // a present 0 is zero, never "unset"
        #expect(r.topP == 0.5)
        #expect(r.stop == ["x", "y"])
        #expect(r.seed == 7)
        #expect(r.stream)
        #expect(r.includeUsage)
        #expect(r.user == "u1")
        #expect(r.presencePenalty == 0.1)
    }

    @Test func nullMeansAbsent() throws {
        let r = try parse(#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":null,"temperature":null,"stop":null,"stream":null,"tools":null}"#)
        #expect(r.maxTokens == nil)
        #expect(r.temperature == nil)
        #expect(r.stop == [])
        #expect(r.stream == false)
    }

    @Test func stopAsString() throws {
        #expect(try parse(#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stop":"END"}"#).stop == ["END"])
    }

    @Test func developerRoleIsSystem() throws {
        #expect(try parse(#"{"model":"m","messages":[{"role":"developer","content":"x"}]}"#).messages[0].role == .system)
    }

    @Test(arguments: [
        ("{not json", 400, nil as String?, "invalid_json"),
        ("[1,2]", 400, nil, "invalid_json"),
        (#"{"messages":[{"role":"user","content":"hi"}]}"#, 400, "model", "missing_required_parameter"),
        (#"{"model":5,"messages":[{"role":"user","content":"hi"}]}"#, 400, "model", "invalid_type"),
        (#"{"model":"m"}"#, 400, "messages", "missing_required_parameter"),
        (#"{"model":"m","messages":[]}"#, 400, "messages", "invalid_value"),
        (#"{"model":"m","messages":"hi"}"#, 400, "messages", "invalid_type"),
        (#"{"model":"m","messages":[{"role":"wizard","content":"hi"}]}"#, 400, "messages[0].role", "invalid_value"),
        (#"{"model":"m","messages":[{"content":"hi"}]}"#, 400, "messages[0].role", "missing_required_parameter"),
        (#"{"model":"m","messages":[{"role":"user"}]}"#, 400, "messages[0].content", "missing_required_parameter"),
        (#"{"model":"m","messages":[{"role":"user","content":7}]}"#, 400, "messages[0].content", "invalid_type"),
        (#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#, 400, "messages[0].content[0].type", "unsupported_parameter"),
        (#"{"model":"m","messages":[{"role":"tool","content":"x"}]}"#, 400, "messages[0].role", "unsupported_parameter"),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":2.5}"#, 400, "temperature", "invalid_value"),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}"#, 400, "temperature", "invalid_type"),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"top_p":-0.1}"#, 400, "top_p", "invalid_value"),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":0}"#, 400, "max_tokens", "invalid_value"),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":1.5}"#, 400, "max_tokens", "invalid_type"),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":2}"#, 400, "n", "unsupported_parameter"),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function"}]}"#, 400, "tools", "unsupported_parameter"),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"logprobs":true}"#, 400, "logprobs", "unsupported_parameter"),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stop":["a","b","c","d","e"]}"#, 400, "stop", "invalid_value"),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stop":[1]}"#, 400, "stop[0]", "invalid_type"),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}"#, 400, "stream_options", "invalid_value"),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":"yes"}"#, 400, "stream", "invalid_type"),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"frobnicate":1}"#, 400, "frobnicate", "unknown_parameter"),
        (#"{"model":"m","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_object"}}"#, 400, "response_format", "unsupported_parameter"),
    ])
    func rejects(json: String, status: Int, param: String?, code: String) {
        let e = error(json)
        #expect(e?.status == status, "\(json)")
        #expect(e?.param == param, "\(json)")
        #expect(e?.code == code, "\(json)")
        #expect(e?.type == "invalid_request_error")
    }

    @Test func errorBodyShape() throws {
        let e = APIError.missing("model")
        let v = try JSONDecoder().decode(JSONValue.self, from: e.jsonData())
        guard case .object(let root) = v, case .object(let detail)? = root["error"] else {
            Issue.record("not an error object"); return
        }
        #expect(Set(detail.keys) == ["message", "type", "param", "code"])
        #expect(detail["param"] == .string("model"))
        #expect(detail["type"] == .string("invalid_request_error"))
        // param and code are present as null when unknown
        let v2 = try JSONDecoder().decode(JSONValue.self, from: APIError.internal("x").jsonData())
        guard case .object(let r2) = v2, case .object(let d2)? = r2["error"] else { Issue.record("shape"); return }
        #expect(d2["param"] == .null)
    }

    @Test func metricTypes() {
        #expect(APIError.overloaded("x").metricType == "overloaded")
        #expect(APIError.unavailable("x").metricType == "unavailable")
        #expect(APIError.upstreamTimeout("x").metricType == "timeout")
        #expect(APIError.bodyTooLarge(limit: 1).status == 413)
        #expect(APIError.modelNotFound("m").status == 404)
        #expect(APIError.unauthorized("m").status == 401)
    }

    @Test func upstreamBodyAlwaysStreamsWithUsage() throws {
        let r = ChatCompletionRequest(model: "user-name", messages: [ChatMessage(role: .user, content: "hi")], maxTokens: 5, temperature: 0, stop: ["x"])
        let data = try UpstreamChatBody(r, upstreamModel: "engine-name").data()
        let v = try JSONDecoder().decode(JSONValue.self, from: data)
        guard case .object(let o) = v else { Issue.record("object"); return }
        #expect(o["model"] == .string("engine-name"))
        #expect(o["stream"] == .bool(true))
        #expect(o["stream_options"] == .object(["include_usage": .bool(true)]))
        #expect(o["max_tokens"] == .int(5))
        #expect(o["temperature"] == .int(0) || o["temperature"] == .double(0))
        #expect(o["stop"] == .array([.string("x")]))
    }
}
