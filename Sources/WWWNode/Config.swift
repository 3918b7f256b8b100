import Foundation
import WWWBackends
import WWWCore
import Yams

/// A node's configuration file (YAML; JSON is valid YAML too). Keys are snake_case.
/// Precedence: command-line flags > `WWWSERVE_*` environment variables > file > defaults.
public struct NodeConfig: Codable, Sendable, Equatable {
    public var node: NodeSection
    public var backends: [BackendSection]
    /// Present when the node takes part in a network (DESIGN.md §3–§7).
    public var network: NetworkSection?
    /// Offload, queue, accept and stake policy.
    public var policy: PolicySection
    /// Duels and judging (needs `network`); absent: neither.
    public var duel: DuelSection?
    /// Test and experiment behaviour (a cheating executor); absent: none.
    public var experiment: ExperimentSection?

    public init(node: NodeSection = NodeSection(), backends: [BackendSection] = [], network: NetworkSection? = nil,
                policy: PolicySection = PolicySection(), duel: DuelSection? = nil, experiment: ExperimentSection? = nil) {
        self.node = node
        self.backends = backends
        self.network = network
        self.policy = policy
        self.duel = duel
        self.experiment = experiment
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case node, backends, network, policy, duel, experiment }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        node = try c.decodeIfPresent(NodeSection.self, forKey: .node) ?? NodeSection()
        backends = try c.decodeIfPresent([BackendSection].self, forKey: .backends) ?? []
        network = try c.decodeIfPresent(NetworkSection.self, forKey: .network)
        policy = try c.decodeIfPresent(PolicySection.self, forKey: .policy) ?? PolicySection()
        duel = try c.decodeIfPresent(DuelSection.self, forKey: .duel)
        experiment = try c.decodeIfPresent(ExperimentSection.self, forKey: .experiment)
    }

    public struct APIKey: Codable, Sendable, Equatable {
        /// The bearer token users send (`Authorization: Bearer <key>`).
        public var key: String
        /// A name for logs and metrics; never the key itself.
        public var name: String
        /// Whether requests with this key may be offloaded to other nodes (§3: prompts travel).
        public var allowOffload: Bool

        public init(key: String, name: String, allowOffload: Bool = true) {
            self.key = key
            self.name = name
            self.allowOffload = allowOffload
        }

        enum CodingKeys: String, CodingKey, CaseIterable { case key, name, allowOffload = "allow_offload" }

        public init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            key = try c.decode(String.self, forKey: .key)
            name = try c.decodeIfPresent(String.self, forKey: .name) ?? "key-\(key.suffix(4))"
            allowOffload = try c.decodeIfPresent(Bool.self, forKey: .allowOffload) ?? true
        }
    }

    public struct NodeSection: Codable, Sendable, Equatable {
        public var host: String = "127.0.0.1"
        public var port: Int = 8080
        /// Request bodies above this many bytes get 413 (the excess is discarded, bounded).
        public var maxBodyBytes: Int = 1 << 20
        /// Empty: no auth on the user API.
        public var apiKeys: [APIKey] = []
        /// Whole-request deadline (seconds), stream included.
        public var requestTimeoutS: Double = 300
        /// Seconds in-flight requests get to finish on SIGTERM/SIGINT before being cancelled.
        public var shutdownGraceS: Double = 10
        /// A connection that sends nothing for this long while no request is being answered
        /// (idle keep-alive, or a request whose headers/body trickle in) is closed.
        public var idleTimeoutS: Double = 60
        /// "trace", "debug", "info", "notice", "warning", "error", "critical".
        public var logLevel: String = "info"
        /// Where the node keeps its key, ledger and engine logs.
        public var dataDir: String = ".wwwserve"
        /// A request that can be offloaded but finds no room waits at most this long
        /// (within its deadline) for a backend slot or an executor before a 503.
        public var queueTimeoutS: Double = 60
        /// Requests waiting for placement at once; past it new ones get 503 + Retry-After.
        public var maxPending: Int = 256
        /// A backend or peer that answered 429/503 without a Retry-After gets no new work
        /// for this long; one with a Retry-After is left alone that long (at most 300 s).
        public var cooldownS: Double = 2

        public init() {}

        enum CodingKeys: String, CodingKey, CaseIterable {
            case host, port, maxBodyBytes = "max_body_bytes", apiKeys = "api_keys", requestTimeoutS = "request_timeout_s"
            case shutdownGraceS = "shutdown_grace_s", logLevel = "log_level", dataDir = "data_dir", idleTimeoutS = "idle_timeout_s"
            case queueTimeoutS = "queue_timeout_s", maxPending = "max_pending", cooldownS = "cooldown_s"
        }

        public init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let d = NodeSection()
            host = try c.decodeIfPresent(String.self, forKey: .host) ?? d.host
            port = try c.decodeIfPresent(Int.self, forKey: .port) ?? d.port
            maxBodyBytes = try c.decodeIfPresent(Int.self, forKey: .maxBodyBytes) ?? d.maxBodyBytes
            apiKeys = try c.decodeIfPresent([APIKey].self, forKey: .apiKeys) ?? d.apiKeys
            requestTimeoutS = try c.decodeIfPresent(Double.self, forKey: .requestTimeoutS) ?? d.requestTimeoutS
            shutdownGraceS = try c.decodeIfPresent(Double.self, forKey: .shutdownGraceS) ?? d.shutdownGraceS
            idleTimeoutS = try c.decodeIfPresent(Double.self, forKey: .idleTimeoutS) ?? d.idleTimeoutS
            logLevel = try c.decodeIfPresent(String.self, forKey: .logLevel) ?? d.logLevel
            dataDir = try c.decodeIfPresent(String.self, forKey: .dataDir) ?? d.dataDir
            queueTimeoutS = try c.decodeIfPresent(Double.self, forKey: .queueTimeoutS) ?? d.queueTimeoutS
            maxPending = try c.decodeIfPresent(Int.self, forKey: .maxPending) ?? d.maxPending
            cooldownS = try c.decodeIfPresent(Double.self, forKey: .cooldownS) ?? d.cooldownS
        }
    }

    public struct ModelSection: Codable, Sendable, Equatable {
        public var name: String
        public var upstreamName: String?
        public var quantization: String?
        public var hardware: String?

        public init(name: String, upstreamName: String? = nil, quantization: String? = nil, hardware: String? = nil) {
            self.name = name
            self.upstreamName = upstreamName
            self.quantization = quantization
            self.hardware = hardware
        }

        enum CodingKeys: String, CodingKey, CaseIterable { case name, upstreamName = "upstream_name", quantization, hardware }

        public init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            upstreamName = try c.decodeIfPresent(String.self, forKey: .upstreamName)
            quantization = try c.decodeIfPresent(String.self, forKey: .quantization)
            hardware = try c.decodeIfPresent(String.self, forKey: .hardware)
        }
    }

    public struct LlamaCppSection: Codable, Sendable, Equatable {
        public var modelPath: String = "default"
        public var python: String = "python3"
        public var threads: Int = 2
        public var ctx: Int = 2048
        public var parallel: Int?
        public var startTimeoutS: Double = 120

        public init() {}

        enum CodingKeys: String, CodingKey, CaseIterable {
            case modelPath = "model_path", python, threads, ctx, parallel, startTimeoutS = "start_timeout_s"
        }

        public init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            let d = LlamaCppSection()
            modelPath = try c.decodeIfPresent(String.self, forKey: .modelPath) ?? d.modelPath
            python = try c.decodeIfPresent(String.self, forKey: .python) ?? d.python
            threads = try c.decodeIfPresent(Int.self, forKey: .threads) ?? d.threads
            ctx = try c.decodeIfPresent(Int.self, forKey: .ctx) ?? d.ctx
            parallel = try c.decodeIfPresent(Int.self, forKey: .parallel)
            startTimeoutS = try c.decodeIfPresent(Double.self, forKey: .startTimeoutS) ?? d.startTimeoutS
        }
    }

    public struct BackendSection: Codable, Sendable, Equatable {
        public var name: String
        /// "openai" (any OpenAI-compatible URL) or "llamacpp" (managed local engine).
        public var kind: String
        /// Concurrent requests the engine runs at once.
        public var capacity: Int = 2
        /// Extra requests the node admits beyond `capacity` (they wait in the engine's queue);
        /// past `capacity + max_queue` the node answers 503 with Retry-After.
        public var maxQueue: Int?
        public var models: [ModelSection]
        public var baseURL: String?
        public var apiKey: String?
        public var connectTimeoutS: Double = 5
        public var readTimeoutS: Double = 60
        public var llamacpp: LlamaCppSection?

        public init(name: String, kind: String, capacity: Int = 2, models: [ModelSection], baseURL: String? = nil,
                    llamacpp: LlamaCppSection? = nil) {
            self.name = name
            self.kind = kind
            self.capacity = capacity
            self.models = models
            self.baseURL = baseURL
            self.llamacpp = llamacpp
        }

        enum CodingKeys: String, CodingKey, CaseIterable {
            case name, kind, capacity, maxQueue = "max_queue", models, baseURL = "base_url", apiKey = "api_key"
            case connectTimeoutS = "connect_timeout_s", readTimeoutS = "read_timeout_s", llamacpp
        }

        public init(from decoder: any Decoder) throws {
            try rejectUnknownKeys(decoder, CodingKeys.self)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            kind = try c.decode(String.self, forKey: .kind)
            capacity = try c.decodeIfPresent(Int.self, forKey: .capacity) ?? 2
            maxQueue = try c.decodeIfPresent(Int.self, forKey: .maxQueue)
            models = try c.decode([ModelSection].self, forKey: .models)
            baseURL = try c.decodeIfPresent(String.self, forKey: .baseURL)
            apiKey = try c.decodeIfPresent(String.self, forKey: .apiKey)
            connectTimeoutS = try c.decodeIfPresent(Double.self, forKey: .connectTimeoutS) ?? 5
            readTimeoutS = try c.decodeIfPresent(Double.self, forKey: .readTimeoutS) ?? 60
            llamacpp = try c.decodeIfPresent(LlamaCppSection.self, forKey: .llamacpp)
        }

        /// Admission limit: `capacity + max_queue` (default max_queue = 4 × capacity).
        public var admissionLimit: Int { capacity + (maxQueue ?? 4 * capacity) }
    }

    /// The embedded default: one managed llama.cpp engine with the bundled SmolLM2-135M.
    public static var embeddedDefault: NodeConfig {
        NodeConfig(backends: [
            BackendSection(name: "local", kind: "llamacpp", capacity: 2,
                           models: [ModelSection(name: "smollm2-135m-instruct", quantization: "Q4_1", hardware: "cpu")],
                           llamacpp: LlamaCppSection()),
        ])
    }

    // MARK: loading

    /// Reads a YAML/JSON config file.
    /// - Throws: `ConfigError` with the file and the key path of the problem.
    /// Relative paths in the file (`data_dir`, `network.genesis`, `network.key_file`,
    /// `llamacpp.model_path`) are resolved against the file's directory.
    /// - Parameter validate: false when flags or the environment still apply overrides
    ///   (call `validate()` after them).
    public static func load(path: String, validate: Bool = true) throws -> NodeConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError("cannot read config file '\(path)'")
        }
        var cfg = try parse(String(decoding: data, as: UTF8.self), source: path, validate: false)
        cfg.resolvePaths(relativeTo: (path as NSString).deletingLastPathComponent)
        if validate {
            do { try cfg.validate() } catch let e as ConfigError { throw ConfigError("\(path): \(e.message)") }
        }
        return cfg
    }

    /// Makes the file's relative paths relative to `base` (the config file's directory).
    public mutating func resolvePaths(relativeTo base: String) {
        func resolve(_ p: String) -> String {
            guard !p.hasPrefix("/"), !p.isEmpty else { return p }
            return base.isEmpty ? p : (base as NSString).appendingPathComponent(p)
        }
        node.dataDir = resolve(node.dataDir)
        if var n = network {
            if !n.genesis.isEmpty { n.genesis = resolve(n.genesis) }
            n.keyFile = n.keyFile.map(resolve)
            network = n
        }
        if let r = duel?.judge.references { duel!.judge.references = resolve(r) }
        for i in backends.indices where backends[i].llamacpp != nil && backends[i].llamacpp!.modelPath != "default" {
            backends[i].llamacpp!.modelPath = resolve(backends[i].llamacpp!.modelPath)
        }
    }

    public static func parse(_ text: String, source: String = "config", validate: Bool = true) throws -> NodeConfig {
        do {
            let cfg = try YAMLDecoder().decode(NodeConfig.self, from: text)
            if validate { try cfg.validate() }
            return cfg
        } catch let e as ConfigError {
            throw ConfigError("\(source): \(e.message)")
        } catch let e as DecodingError {
            throw ConfigError("\(source): \(describe(e))")
        } catch {
            throw ConfigError("\(source): \(error)")
        }
    }

    /// A decoding error as one line: the key path, then what is wrong (and the parser's own
    /// first line, with its position, when the text is not valid YAML).
    public static func describe(_ e: DecodingError) -> String {
        func path(_ p: [any CodingKey]) -> String {
            p.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().trimmingCharacters(in: CharacterSet(charactersIn: "."))
        }
        switch e {
        case .keyNotFound(let k, let ctx): return "missing key '\(path(ctx.codingPath + [k]))'"
        case .typeMismatch(let t, let ctx): return "'\(path(ctx.codingPath))' should be \(t)"
        case .valueNotFound(let t, let ctx): return "'\(path(ctx.codingPath))' should be \(t), found null"
        case .dataCorrupted(let ctx):
            let under = ctx.underlyingError.map { " (" + ("\($0)".split(separator: "\n").first.map(String.init) ?? "") + ")" } ?? ""
            return "\(path(ctx.codingPath)): \(ctx.debugDescription)\(under)"
        @unknown default: return "\(e)"
        }
    }

    /// Checks values the types cannot express.
    public func validate() throws {
        guard (0...65535).contains(node.port) else { throw ConfigError("node.port must be in 0...65535") }
        let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]
        guard levels.contains(node.logLevel) else {
            throw ConfigError("node.log_level must be one of \(levels.joined(separator: ", ")), got '\(node.logLevel.prefix(32))'")
        }
        guard node.maxBodyBytes >= 1024 else { throw ConfigError("node.max_body_bytes must be at least 1024") }
        guard node.requestTimeoutS > 0 else { throw ConfigError("node.request_timeout_s must be positive") }
        guard node.idleTimeoutS >= 1 else { throw ConfigError("node.idle_timeout_s must be at least 1") }
        guard node.queueTimeoutS >= 0, node.queueTimeoutS < 1e6 else { throw ConfigError("node.queue_timeout_s must be between 0 and 1e6") }
        guard (0...100_000).contains(node.maxPending) else { throw ConfigError("node.max_pending must be in 0...100000") }
        guard node.cooldownS >= 0, node.cooldownS <= 300 else { throw ConfigError("node.cooldown_s must be between 0 and 300") }
        guard !backends.isEmpty || network != nil else {
            throw ConfigError("at least one backend is required under 'backends' (a node without backends must join a network)")
        }
        _ = try policy.schedulingPolicy()
        if let n = network {
            guard !n.genesis.isEmpty else {
                throw ConfigError("network.genesis is required (or pass --genesis / set WWWSERVE_GENESIS)")
            }
            guard n.gossipPeriodMs >= 50, n.peerTimeoutMs >= 50 else {
                throw ConfigError("network.gossip_period_ms and network.peer_timeout_ms must be at least 50")
            }
        }
        if let e = experiment, e.cheat != .none, network == nil {
            throw ConfigError("experiment.cheat needs a network section (it spoils answers to offloaded jobs only)")
        }
        if let d = duel {
            guard network != nil else { throw ConfigError("duel needs a network section (duels and judging are between nodes)") }
            try d.validate(backends: backends)
        }
        var names = Set<String>()
        for (i, b) in backends.enumerated() {
            let p = "backends[\(i)]"
            guard names.insert(b.name).inserted else { throw ConfigError("\(p).name '\(b.name)' is used twice") }
            guard ["openai", "llamacpp"].contains(b.kind) else {
                throw ConfigError("\(p).kind must be 'openai' or 'llamacpp', not '\(b.kind)'")
            }
            guard b.capacity >= 1 else { throw ConfigError("\(p).capacity must be at least 1") }
            guard (b.maxQueue ?? 0) >= 0 else { throw ConfigError("\(p).max_queue must not be negative") }
            guard !b.models.isEmpty else { throw ConfigError("\(p).models must list at least one model") }
            guard b.connectTimeoutS > 0, b.readTimeoutS > 0 else { throw ConfigError("\(p) timeouts must be positive") }
            if b.kind == "openai" {
                guard let u = b.baseURL, u.hasPrefix("http://") || u.hasPrefix("https://") else {
                    throw ConfigError("\(p).base_url must be an http(s) URL for kind 'openai'")
                }
            }
        }
        let keys = node.apiKeys.map(\.key)
        guard Set(keys).count == keys.count, !keys.contains("") else { throw ConfigError("node.api_keys must be unique and non-empty") }
    }

    /// Applies `WWWSERVE_HOST`, `WWWSERVE_PORT`, `WWWSERVE_LOG_LEVEL`, `WWWSERVE_DATA_DIR`.
    public mutating func applyEnvironment(_ env: [String: String]) throws {
        if let h = env["WWWSERVE_HOST"], !h.isEmpty { node.host = h }
        if let p = env["WWWSERVE_PORT"], !p.isEmpty {
            guard let v = Int(p) else { throw ConfigError("WWWSERVE_PORT must be an integer, got '\(p)'") }
            node.port = v
        }
        if let l = env["WWWSERVE_LOG_LEVEL"], !l.isEmpty { node.logLevel = l }
        if let d = env["WWWSERVE_DATA_DIR"], !d.isEmpty { node.dataDir = d }
        if let g = env["WWWSERVE_GENESIS"], !g.isEmpty {
            if network == nil { network = NetworkSection(genesis: g) } else { network!.genesis = g }
        }
    }
}

/// A configuration problem, reported before the node starts.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A coding key for any string (to list the keys a config object actually has).
struct AnyCodingKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

/// Config files are strict: a key the section does not know (a typo like `prot` for
/// `port`) is an error naming it, with the closest known key, never silently ignored.
public func rejectUnknownKeys<K: CodingKey & CaseIterable>(_ decoder: any Decoder, _ keys: K.Type) throws {
    guard let c = try? decoder.container(keyedBy: AnyCodingKey.self) else { return }
    let known = K.allCases.map(\.stringValue)
    for k in c.allKeys.sorted(by: { $0.stringValue < $1.stringValue }) where !known.contains(k.stringValue) {
        let near = known.min { editDistance($0, k.stringValue) < editDistance($1, k.stringValue) }
        let hint = near.map { editDistance($0, k.stringValue) <= 3 ? " (did you mean '\($0)'?)" : "" } ?? ""
        throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath + [k],
                                                debugDescription: "unknown key '\(k.stringValue)'\(hint); known keys: \(known.joined(separator: ", "))"))
    }
}

/// Levenshtein distance (for "did you mean" hints on short keys).
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    guard !a.isEmpty else { return b.count }
    guard !b.isEmpty else { return a.count }
    var prev = Array(0...b.count)
    for i in 1...a.count {
        var cur = [i] + Array(repeating: 0, count: b.count)
        for j in 1...b.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        prev = cur
    }
    return prev[b.count]
}
