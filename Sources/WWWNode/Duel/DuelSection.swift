import Foundation
import WWWCore

/// The `duel:` section of a node's config (DESIGN.md §6 step 5): whether this node, as a
/// requester, turns offloaded jobs into duels, and whether and how it judges other
/// requesters' duels. Absent: no duels, no judging. Needs a `network:` section.
///
/// ```yaml
/// duel:
///   run_duels: true            # duel offloaded jobs with the genesis' duel probability
///   judging_timeout_s: 30      # how long the panel gets once both answers are in
///   max_answer_bytes: 65536    # longer answers are not judged (the duel lapses, no bond moves)
///   judge:
///     kind: reference          # none | llm | reference | scripted
///     references: ../shared/data/prompts/mt_bench_questions.jsonl
///     fallback: lexical        # reference: tie | lexical, for prompts without a reference
/// ```
public struct DuelSection: Codable, Sendable, Equatable {
    /// Duel offloaded jobs (with the genesis' `duelProbability`) [false].
    public var runDuels: Bool = false
    /// Seconds the panel gets once both answers are in [30].
    public var judgingTimeoutS: Double = 30
    /// Seconds a judge task may run on this node before it is given up [120].
    public var judgeTaskTimeoutS: Double = 120
    /// Duels in progress at once on this requester [256]; judge tasks at once [64].
    public var maxDuels: Int = 256
    public var maxJudgeTasks: Int = 64
    /// Judge tasks at once for one requester [8].
    public var maxJudgeTasksPerRequester: Int = 8
    /// UTF-8 bytes of one answer kept for the judges [65536]. A longer answer is not sent to
    /// judges: that duel gets no verdict and lapses (no bond moves).
    public var maxAnswerBytes: Int = 64 << 10
    public var judge: JudgeSection = JudgeSection()

    public init(runDuels: Bool = false, judge: JudgeSection = JudgeSection()) {
        self.runDuels = runDuels
        self.judge = judge
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case runDuels = "run_duels", judgingTimeoutS = "judging_timeout_s", judgeTaskTimeoutS = "judge_task_timeout_s"
        case maxDuels = "max_duels", maxJudgeTasks = "max_judge_tasks", maxJudgeTasksPerRequester = "max_judge_tasks_per_requester"
        case maxAnswerBytes = "max_answer_bytes", judge
    }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = DuelSection()
        runDuels = try c.decodeIfPresent(Bool.self, forKey: .runDuels) ?? d.runDuels
        judgingTimeoutS = try c.decodeIfPresent(Double.self, forKey: .judgingTimeoutS) ?? d.judgingTimeoutS
        judgeTaskTimeoutS = try c.decodeIfPresent(Double.self, forKey: .judgeTaskTimeoutS) ?? d.judgeTaskTimeoutS
        maxDuels = try c.decodeIfPresent(Int.self, forKey: .maxDuels) ?? d.maxDuels
        maxJudgeTasks = try c.decodeIfPresent(Int.self, forKey: .maxJudgeTasks) ?? d.maxJudgeTasks
        maxJudgeTasksPerRequester = try c.decodeIfPresent(Int.self, forKey: .maxJudgeTasksPerRequester) ?? d.maxJudgeTasksPerRequester
        maxAnswerBytes = try c.decodeIfPresent(Int.self, forKey: .maxAnswerBytes) ?? d.maxAnswerBytes
        judge = try c.decodeIfPresent(JudgeSection.self, forKey: .judge) ?? d.judge
    }

    /// The machine's duel settings.
    public var machineConfig: DuelConfig {
        DuelConfig(runDuels: runDuels, judge: judge.kind != .none,
                   judgingTimeout: .milliseconds(Int64(judgingTimeoutS * 1000)),
                   judgeTaskTimeout: .milliseconds(Int64(judgeTaskTimeoutS * 1000)),
                   maxDuels: maxDuels, maxJudgeTasks: maxJudgeTasks, maxJudgeTasksPerRequester: maxJudgeTasksPerRequester)
    }

    func validate(backends: [NodeConfig.BackendSection]) throws {
        guard judgingTimeoutS >= 0.1, judgingTimeoutS <= 3600, judgeTaskTimeoutS >= 0.1, judgeTaskTimeoutS <= 3600 else {
            throw ConfigError("duel.judging_timeout_s and duel.judge_task_timeout_s must be in 0.1...3600")
        }
        guard (1...100_000).contains(maxDuels), (1...10_000).contains(maxJudgeTasks), (1...10_000).contains(maxJudgeTasksPerRequester) else {
            throw ConfigError("duel.max_duels must be in 1...100000, duel.max_judge_tasks and max_judge_tasks_per_requester in 1...10000 "
                              + "(to turn duels or judging off, use run_duels: false or judge.kind: none)")
        }
        guard (1024...(8 << 20)).contains(maxAnswerBytes) else { throw ConfigError("duel.max_answer_bytes must be in 1024...8388608") }
        try judge.validate(backends: backends)
    }
}

/// `duel.judge`: how this node judges a pair of answers (both orders; disagreeing orders
/// are a tie). Kinds:
/// - `none` [default]: this node does not judge (not advertised as a judge).
/// - `llm`: asks a model on one of this node's backends with `LLMJudgePrompt` (verdict
///   tokens `[[A]]` / `[[B]]` / `[[C]]`; anything unparseable is a tie). A weak model —
///   the bundled SmolLM2-135M writes no verdict token — yields ties, never bond moves.
/// - `reference`: for prompts found in `references` (MT-Bench `question.jsonl`: `turns`,
///   `reference`), prefers the answer that states the reference's result; other prompts
///   get `fallback`.
/// - `scripted`: a fixed `rule`, for tests and experiments: `first`, `second`, `tie` (by
///   the duel's order), or `lexical`.
///
/// `lexical` (a rule, and a fallback) is not a quality judge: it prefers an answer that
/// reads as language (≥ 20 % of its words among common English function words) over one
/// that does not, and is a tie otherwise. It tells gibberish — a junk responder — from text.
public struct JudgeSection: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable, CaseIterable { case none, llm, reference, scripted }
    public enum Rule: String, Codable, Sendable, CaseIterable { case first, second, tie, lexical }

    public var kind: Kind = .none
    /// `llm`: the backend (its name under `backends`) and model that judge; default the
    /// first backend and its first model.
    public var backend: String?
    public var model: String?
    /// `llm`: tokens a judge call may generate [256]; characters of each answer shown [4000].
    public var maxTokens: Int = 256
    public var maxAnswerCharacters: Int = 4000
    /// `reference`: a JSON-lines file of `{"turns": [question, …], "reference": [answer, …]}`.
    public var references: String?
    /// `reference`: what decides a prompt without a reference [tie].
    public var fallback: Rule = .tie
    /// `scripted`: the rule.
    public var rule: Rule = .tie

    public init(kind: Kind = .none, references: String? = nil, fallback: Rule = .tie, rule: Rule = .tie) {
        self.kind = kind
        self.references = references
        self.fallback = fallback
        self.rule = rule
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case kind, backend, model, maxTokens = "max_tokens", maxAnswerCharacters = "max_answer_characters"
        case references, fallback, rule
    }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = JudgeSection()
        func oneOf<T: RawRepresentable & CaseIterable>(_ k: CodingKeys, _ t: T.Type) throws -> T? where T.RawValue == String {
            guard let raw = try c.decodeIfPresent(String.self, forKey: k) else { return nil }
            guard let v = T(rawValue: raw) else {
                throw DecodingError.dataCorruptedError(
                    forKey: k, in: c, debugDescription: "must be one of \(T.allCases.map(\.rawValue).joined(separator: ", ")), got '\(raw.prefix(32))'")
            }
            return v
        }
        kind = try oneOf(.kind, Kind.self) ?? d.kind
        backend = try c.decodeIfPresent(String.self, forKey: .backend)
        model = try c.decodeIfPresent(String.self, forKey: .model)
        maxTokens = try c.decodeIfPresent(Int.self, forKey: .maxTokens) ?? d.maxTokens
        maxAnswerCharacters = try c.decodeIfPresent(Int.self, forKey: .maxAnswerCharacters) ?? d.maxAnswerCharacters
        references = try c.decodeIfPresent(String.self, forKey: .references)
        fallback = try oneOf(.fallback, Rule.self) ?? d.fallback
        rule = try oneOf(.rule, Rule.self) ?? d.rule
    }

    func validate(backends: [NodeConfig.BackendSection]) throws {
        guard (1...8192).contains(maxTokens), (16...100_000).contains(maxAnswerCharacters) else {
            throw ConfigError("duel.judge.max_tokens must be in 1...8192 and max_answer_characters in 16...100000")
        }
        switch kind {
        case .llm:
            guard let b = backend.map({ name in backends.first { $0.name == name } }) ?? backends.first else {
                throw ConfigError(backend.map { "duel.judge.backend '\($0)' is not a backend of this node" }
                                  ?? "duel.judge.kind llm needs a backend on this node")
            }
            if let m = model, !b.models.contains(where: { $0.name == m }) {
                throw ConfigError("duel.judge.model '\(m)' is not a model of backend '\(b.name)'")
            }
        case .reference:
            guard let r = references, !r.isEmpty else { throw ConfigError("duel.judge.kind reference needs duel.judge.references (a JSON-lines file)") }
            guard FileManager.default.isReadableFile(atPath: r) else { throw ConfigError("duel.judge.references: cannot read '\(r)'") }
            guard fallback == .tie || fallback == .lexical else { throw ConfigError("duel.judge.fallback must be tie or lexical") }
        case .none, .scripted:
            break
        }
    }
}

/// The `experiment:` section: behaviour for experiments and tests only, never for a real
/// provider. `cheat` makes this node's executor answer offloaded jobs badly so that duels
/// have a loser: `junk` replaces every content delta with random letters, `truncate` ends
/// the answer after `truncate_after_chunks` content chunks. Logged loudly at start-up.
public struct ExperimentSection: Codable, Sendable, Equatable {
    public enum Cheat: String, Codable, Sendable, CaseIterable { case none, junk, truncate }
    public var cheat: Cheat = .none
    public var truncateAfterChunks: Int = 4

    public init(cheat: Cheat = .none) { self.cheat = cheat }

    enum CodingKeys: String, CodingKey, CaseIterable { case cheat, truncateAfterChunks = "truncate_after_chunks" }

    public init(from decoder: any Decoder) throws {
        try rejectUnknownKeys(decoder, CodingKeys.self)
        let c = try decoder.container(keyedBy: CodingKeys.self)
        if let raw = try c.decodeIfPresent(String.self, forKey: .cheat) {
            guard let v = Cheat(rawValue: raw) else {
                throw DecodingError.dataCorruptedError(forKey: .cheat, in: c, debugDescription: "must be one of none, junk, truncate, got '\(raw.prefix(32))'")
            }
            cheat = v
        }
        truncateAfterChunks = try c.decodeIfPresent(Int.self, forKey: .truncateAfterChunks) ?? 4
        guard truncateAfterChunks >= 1 else {
            throw DecodingError.dataCorruptedError(forKey: .truncateAfterChunks, in: c, debugDescription: "must be at least 1")
        }
    }
}
