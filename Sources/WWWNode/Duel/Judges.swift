import Foundation
import WWWAPI
import WWWBackends
import WWWCore

/// What a judge is shown of a duel (the texts of a judge request; DESIGN.md §6 step 5): the
/// user's conversation and both answers, in the duel's order. The SHA-256 of each answer is
/// the response hash in the request's `DuelPairSpec`, which a judge checks before judging.
public struct JudgeMaterial: Codable, Sendable, Equatable {
    public struct Turn: Codable, Sendable, Equatable {
        public var role: String
        public var content: String
        public init(role: String, content: String) {
            self.role = role
            self.content = content
        }
    }

    public var messages: [Turn]
    public var firstAnswer: String
    public var secondAnswer: String

    public init(messages: [Turn], firstAnswer: String, secondAnswer: String) {
        self.messages = messages
        self.firstAnswer = firstAnswer
        self.secondAnswer = secondAnswer
    }

    /// The user's question as a judge sees it: the last user message, after the earlier
    /// turns (as "role: text" lines) when the conversation has more than one.
    public var question: String {
        let turns = messages.filter { $0.role != "system" }
        guard turns.count > 1, let last = turns.last else { return turns.last?.content ?? "" }
        let earlier = turns.dropLast().map { "\($0.role): \($0.content)" }.joined(separator: "\n")
        return "[Earlier turns]\n\(earlier)\n\n\(last.content)"
    }

    /// The last user message (what a reference answer belongs to).
    public var lastUserMessage: String { messages.last { $0.role == "user" }?.content ?? "" }

    /// UTF-8 bytes of all texts.
    public var byteCount: Int {
        messages.reduce(0) { $0 + $1.content.utf8.count + $1.role.utf8.count } + firstAnswer.utf8.count + secondAnswer.utf8.count
    }
}

/// One node's judge: both orders of a pair, as one call each. nil: could not judge (an
/// engine error); the node then abstains.
public protocol NodeJudge: Sendable {
    /// - Returns: the preference with the duel's first answer shown as A (`original`), and
    ///   with it shown as B (`swapped`).
    func judge(_ m: JudgeMaterial) async -> (original: PairwisePreference, swapped: PairwisePreference)?
}

extension NodeJudge {
    /// Both orders from one order-free choice (judges that do not look at positions).
    static func orders(_ c: DuelChoice) -> (original: PairwisePreference, swapped: PairwisePreference) {
        switch c {
        case .first: (.a, .b)
        case .second: (.b, .a)
        case .tie: (.tie, .tie)
        }
    }
}

/// The `lexical` rule: not a quality judge. An answer "reads as language" when at least 20 %
/// of its words (and at least 3) are common English function words; the one that does beats
/// the one that does not, otherwise a tie. Tells a junk responder's random letters from text.
public enum LexicalRule {
    static let functionWords: Set<String> = [
        "the", "a", "an", "and", "or", "but", "of", "to", "in", "on", "at", "for", "with", "by", "from", "as", "is", "are",
        "was", "were", "be", "been", "it", "its", "this", "that", "these", "those", "you", "your", "i", "we", "they", "he",
        "she", "not", "no", "if", "then", "so", "can", "will", "would", "should", "could", "do", "does", "have", "has",
        "there", "their", "which", "what", "who", "how", "when", "where", "all", "any", "some", "more", "most", "one",
        "also", "than", "into", "about", "our", "my", "me", "them", "his", "her", "may", "each", "other", "such",
    ]

    public static func readsAsLanguage(_ text: String) -> Bool {
        let words = text.lowercased().split { !$0.isLetter }
        guard !words.isEmpty else { return false }
        let common = words.count { functionWords.contains(String($0)) }
        return common >= 3 && Double(common) >= 0.2 * Double(words.count)
    }

    public static func compare(first: String, second: String) -> DuelChoice {
        switch (readsAsLanguage(first), readsAsLanguage(second)) {
        case (true, false): .first
        case (false, true): .second
        default: .tie
        }
    }
}

/// `scripted`: a fixed rule (tests and experiments).
public struct ScriptedJudge: NodeJudge {
    public let rule: JudgeSection.Rule
    public init(rule: JudgeSection.Rule) { self.rule = rule }

    public func judge(_ m: JudgeMaterial) async -> (original: PairwisePreference, swapped: PairwisePreference)? {
        Self.orders(Self.choice(rule, m))
    }

    static func choice(_ rule: JudgeSection.Rule, _ m: JudgeMaterial) -> DuelChoice {
        switch rule {
        case .first: .first
        case .second: .second
        case .tie: .tie
        case .lexical: LexicalRule.compare(first: m.firstAnswer, second: m.secondAnswer)
        }
    }
}

/// Reference answers by question text: MT-Bench's `question.jsonl` form, one JSON object
/// per line with `turns` (the questions) and an optional `reference` (one answer per turn).
public struct ReferenceBook: Sendable {
    public let answers: [String: String]

    public init(answers: [String: String]) { self.answers = answers }

    /// Reads `path`; lines without a reference are skipped, unreadable lines too.
    /// - Throws: `ConfigError` when the file cannot be read.
    public static func load(path: String) throws -> ReferenceBook {
        guard let data = FileManager.default.contents(atPath: path) else { throw ConfigError("cannot read references file '\(path)'") }
        struct Line: Decodable {
            let turns: [String]
            let reference: [String]?
        }
        var out: [String: String] = [:]
        for line in String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline) {
            guard let q = try? JSONDecoder().decode(Line.self, from: Data(line.utf8)), let refs = q.reference else { continue }
            for (t, r) in zip(q.turns, refs) where !r.isEmpty { out[Self.key(t)] = r }
        }
        return ReferenceBook(answers: out)
    }

    public func reference(for question: String) -> String? { answers[Self.key(question)] }

    static func key(_ s: String) -> String { s.trimmingCharacters(in: .whitespacesAndNewlines) }
}

/// `reference`: prefers the answer that states the reference's result (`ReferenceJudge`)
/// for questions in its book; `fallback` decides the others.
public struct ReferenceBookJudge: NodeJudge {
    public let book: ReferenceBook
    public let fallback: JudgeSection.Rule

    public init(book: ReferenceBook, fallback: JudgeSection.Rule) {
        self.book = book
        self.fallback = fallback
    }

    public func judge(_ m: JudgeMaterial) async -> (original: PairwisePreference, swapped: PairwisePreference)? {
        guard let ref = book.reference(for: m.lastUserMessage) else { return Self.orders(ScriptedJudge.choice(fallback, m)) }
        let c = ReferenceJudge.compare(first: m.firstAnswer, second: m.secondAnswer, reference: ref)
        // Neither or both match: the fallback may still tell gibberish from text.
        return Self.orders(c == .tie ? ScriptedJudge.choice(fallback, m) : c)
    }
}

/// `llm`: two calls to a model on one of this node's backends, one per order, with
/// `LLMJudgePrompt` at temperature 0. An unparseable reply is a tie; an engine error
/// makes the judge abstain.
public struct BackendLLMJudge: NodeJudge {
    public let backend: any Backend
    public let model: BackendModel
    public let prompt: LLMJudgePrompt
    public let maxTokens: Int
    /// Pairs judged at once (each is two calls); the others wait their turn, so judging
    /// never takes more of the engine (and its connection pool) than this.
    let gate: JudgeGate

    public init(backend: any Backend, model: BackendModel, prompt: LLMJudgePrompt, maxTokens: Int, concurrentPairs: Int = 1) {
        self.backend = backend
        self.model = model
        self.prompt = prompt
        self.maxTokens = maxTokens
        self.gate = JudgeGate(limit: max(1, concurrentPairs))
    }

    public func judge(_ m: JudgeMaterial) async -> (original: PairwisePreference, swapped: PairwisePreference)? {
        await gate.enter()
        defer { Task { await gate.leave() } }
        guard !Task.isCancelled else { return nil }
        async let o = call(prompt.messages(question: m.question, answerA: m.firstAnswer, answerB: m.secondAnswer))
        async let s = call(prompt.messages(question: m.question, answerA: m.secondAnswer, answerB: m.firstAnswer))
        guard let original = await o, let swapped = await s else { return nil }
        return (LLMJudgePrompt.parse(original), LLMJudgePrompt.parse(swapped))
    }

    /// The reply's text; nil on an engine error or cancellation.
    private func call(_ messages: [JudgeMessage]) async -> String? {
        let request = ChatCompletionRequest(
            model: model.descriptor.name,
            messages: messages.map { ChatMessage(role: ChatMessage.Role(rawValue: $0.role) ?? .user, content: $0.content) },
            maxTokens: maxTokens, temperature: 0, stream: true)
        do {
            var acc = StreamAccumulator()
            for try await chunk in try await backend.chat(request, model: model) {
                acc.add(chunk)
                if Task.isCancelled || acc.overflowed { return nil }
            }
            return acc.content
        } catch {
            return nil
        }
    }
}

extension JudgeSection {
    /// The judge this section describes on a node with `pool` (nil for `none`).
    /// - Throws: `ConfigError` for a references file that cannot be read, or a backend or
    ///   model the pool lacks.
    func makeJudge(pool: BackendPool) throws -> (any NodeJudge)? {
        switch kind {
        case .none: return nil
        case .scripted: return ScriptedJudge(rule: rule)
        case .reference:
            let book = try ReferenceBook.load(path: references ?? "")
            guard !book.answers.isEmpty else {
                throw ConfigError("duel.judge.references: '\(references ?? "")' holds no question with a reference answer "
                                  + "(expected JSON lines with \"turns\" and \"reference\", as MT-Bench's question.jsonl)")
            }
            return ReferenceBookJudge(book: book, fallback: fallback)
        case .llm:
            guard let entry = backend.map({ n in pool.entries.first { $0.backend.name == n } }) ?? pool.entries.first else {
                throw ConfigError("duel.judge: no backend to judge with")
            }
            let models = entry.backend.models
            guard let m = model.map({ n in models.first { $0.descriptor.name == n } }) ?? models.first else {
                throw ConfigError("duel.judge.model is not served by backend '\(entry.backend.name)'")
            }
            let slots = max(1, entry.admissionLimit / 4)
            return BackendLLMJudge(backend: entry.backend, model: m, prompt: LLMJudgePrompt(maxAnswerCharacters: maxAnswerCharacters),
                                   maxTokens: maxTokens, concurrentPairs: min(slots, 4))
        }
    }
}

/// At most `limit` holders at once; the others wait in arrival order.
actor JudgeGate {
    let limit: Int
    private var holders = 0
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(limit: Int) { self.limit = limit }

    func enter() async {
        if holders < limit {
            holders += 1
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func leave() {
        if waiters.isEmpty {
            holders -= 1
        } else {
            waiters.removeFirst().resume()   // the slot passes on
        }
    }
}
