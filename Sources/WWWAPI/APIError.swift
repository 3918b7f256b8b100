import Foundation

/// An error returned to a user in OpenAI's error shape:
/// `{"error": {"message": String, "type": String, "param": String?, "code": String?}}`
/// (OpenAI API reference, "Error codes"). `status` is the HTTP status; `retryAfter` (whole
/// seconds) becomes a `Retry-After` header on 429/503 responses.
public struct APIError: Error, Hashable, Sendable, CustomStringConvertible {
    public var status: Int
    public var message: String
    public var type: String
    public var param: String?
    public var code: String?
    public var retryAfter: Int?

    public init(status: Int, message: String, type: String, param: String? = nil, code: String? = nil, retryAfter: Int? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retryAfter = retryAfter
    }

    public var description: String { "\(status) \(type)/\(code ?? "-"): \(message)" }

    // MARK: Constructors for every case the node returns.

    public static func invalidRequest(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(status: 400, message: message, type: "invalid_request_error", param: param, code: code)
    }
    public static func invalidJSON(_ detail: String) -> APIError {
        invalidRequest("We could not parse the JSON body of your request: \(detail)", code: "invalid_json")
    }
    public static func missing(_ param: String) -> APIError {
        invalidRequest("Missing required parameter: '\(param)'.", param: param, code: "missing_required_parameter")
    }
    public static func invalidType(_ param: String, expected: String, got: JSONValue) -> APIError {
        invalidRequest("Invalid type for '\(param)': expected \(expected), but got \(got.typeName).", param: param, code: "invalid_type")
    }
    public static func invalidValue(_ param: String, _ message: String) -> APIError {
        invalidRequest("Invalid value for '\(param)': \(message)", param: param, code: "invalid_value")
    }
    public static func unsupported(_ param: String, _ message: String) -> APIError {
        invalidRequest("Unsupported parameter '\(param)': \(message)", param: param, code: "unsupported_parameter")
    }
    public static func unknownParameter(_ param: String) -> APIError {
        invalidRequest("Unrecognized request argument supplied: \(param)", param: param, code: "unknown_parameter")
    }
    public static func unauthorized(_ message: String) -> APIError {
        APIError(status: 401, message: message, type: "invalid_request_error", code: "invalid_api_key")
    }
    public static func modelNotFound(_ model: String) -> APIError {
        APIError(status: 404, message: "The model '\(model)' does not exist or is not served by this node.", type: "invalid_request_error", param: "model", code: "model_not_found")
    }
    public static func notFound(_ path: String) -> APIError {
        APIError(status: 404, message: "Unknown path: \(path)", type: "invalid_request_error", code: "not_found")
    }
    public static func methodNotAllowed(_ method: String, _ path: String) -> APIError {
        APIError(status: 405, message: "Method \(method) is not allowed on \(path).", type: "invalid_request_error", code: "method_not_allowed")
    }
    public static func bodyTooLarge(limit: Int) -> APIError {
        APIError(status: 413, message: "Request body exceeds the limit of \(limit) bytes.", type: "invalid_request_error", code: "request_too_large")
    }
    public static func unavailable(_ message: String, retryAfter: Int = 1) -> APIError {
        APIError(status: 503, message: message, type: "server_error", code: "backend_unavailable", retryAfter: retryAfter)
    }
    public static func overloaded(_ message: String, retryAfter: Int = 1) -> APIError {
        APIError(status: 503, message: message, type: "server_error", code: "overloaded", retryAfter: retryAfter)
    }
    public static func upstreamTimeout(_ message: String) -> APIError {
        APIError(status: 504, message: message, type: "server_error", code: "upstream_timeout")
    }
    public static func upstream(_ message: String) -> APIError {
        APIError(status: 502, message: message, type: "server_error", code: "upstream_error")
    }
    public static func `internal`(_ message: String) -> APIError {
        APIError(status: 500, message: message, type: "server_error", code: "internal_error")
    }

    /// The metric label for this error ("invalid_request", "auth", "not_found", …).
    public var metricType: String {
        switch status {
        case 400: return "invalid_request"
        case 401, 403: return "auth"
        case 404: return "not_found"
        case 405: return "method_not_allowed"
        case 413: return "too_large"
        case 429: return "rate_limited"
        case 502: return "upstream_error"
        case 503: return code == "overloaded" ? "overloaded" : "unavailable"
        case 504: return "timeout"
        default: return status >= 500 ? "internal" : "client_error"
        }
    }

    /// The JSON body `{"error":{...}}`.
    public var body: ErrorBody {
        ErrorBody(error: .init(message: message, type: type, param: param, code: code))
    }

    public func jsonData() -> Data {
        (try? JSONEncoder.openAI.encode(body)) ?? Data(#"{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}"#.utf8)
    }
}

/// `{"error": {...}}` as OpenAI sends it; `param` and `code` are always present (maybe null).
public struct ErrorBody: Codable, Hashable, Sendable {
    public struct Detail: Codable, Hashable, Sendable {
        public var message: String
        public var type: String
        public var param: String?
        public var code: String?

        public init(message: String, type: String, param: String?, code: String?) {
            self.message = message
            self.type = type
            self.param = param
            self.code = code
        }

        enum CodingKeys: String, CodingKey { case message, type, param, code }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(message, forKey: .message)
            try c.encode(type, forKey: .type)
            try c.encode(param, forKey: .param)   // explicit null, as OpenAI does
            try c.encode(code, forKey: .code)
        }
    }
    public var error: Detail
}

extension JSONEncoder {
    /// The encoder for every JSON the node writes: compact, sorted keys. Shared: encoding
    /// is thread-safe and the configuration never changes after creation.
    public static let openAI: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return e
    }()
}
