/// Pairwise judging (DESIGN.md §6 step 5): what one judge call prefers, how the two orders
/// combine, the LLM judge's prompt and verdict parsing, and the reference judge. Pure.

/// One judge call's preference, in the order the answers were shown ("A" first).
public enum PairwisePreference: String, Hashable, Sendable, Codable, CaseIterable {
    case a, b, tie
}

/// Combines the two orders a judge sees a pair in (position bias: Zheng et al., "Judging
/// LLM-as-a-Judge with MT-Bench and Chatbot Arena", NeurIPS 2023, §3.3).
public enum BothOrders {
    /// `original`: answers shown (first, second); `swapped`: shown (second, first).
    /// A verdict counts only when the orders agree: A then B → `.first`, B then A →
    /// `.second`, tie and tie → `.tie`; any disagreement (including one tie) → `.tie`.
    public static func combine(original: PairwisePreference, swapped: PairwisePreference) -> DuelChoice {
        switch (original, swapped) {
        case (.a, .b): .first
        case (.b, .a): .second
        default: .tie
        }
    }

    /// Whether the two orders are consistent (the same verdict about the same answer).
    public static func isConsistent(original: PairwisePreference, swapped: PairwisePreference) -> Bool {
        switch (original, swapped) {
        case (.a, .b), (.b, .a), (.tie, .tie): true
        default: false
        }
    }
}

/// A chat message of a judge prompt (the shell maps it to the OpenAI `messages` item).
public struct JudgeMessage: Hashable, Sendable {
    public var role: String
    public var content: String
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// The `llm` judge: a pairwise prompt with an explicit verdict token, after MT-Bench's
/// "pair-v2" judge prompt (Zheng et al. 2023, Appendix A), with a tie token and bounded
/// answer lengths so a judgement has a bounded cost.
public struct LLMJudgePrompt: Hashable, Sendable {
    /// Characters of each answer (and of the question) shown to the judge [4000]; longer
    /// text is cut and marked.
    public var maxAnswerCharacters: Int
    /// Characters of the reference answer shown, when there is one [2000].
    public var maxReferenceCharacters: Int

    public static let verdictA = "[[A]]"
    public static let verdictB = "[[B]]"
    public static let verdictTie = "[[C]]"

    public init(maxAnswerCharacters: Int = 4000, maxReferenceCharacters: Int = 2000) {
        precondition(maxAnswerCharacters >= 16 && maxReferenceCharacters >= 16)
        self.maxAnswerCharacters = maxAnswerCharacters
        self.maxReferenceCharacters = maxReferenceCharacters
    }

    public static let system = """
        Please act as an impartial judge and evaluate the quality of the responses provided by two AI \
        assistants to the user question displayed below. Choose the assistant that follows the user's \
        instructions and answers the user's question better. Consider helpfulness, relevance, accuracy, \
        depth and level of detail. Begin with a short explanation. Do not let the order in which the \
        responses were presented, their length or the assistants' names influence you. Be as objective \
        as possible. After your explanation, output your final verdict by strictly following this format: \
        "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.
        """

    /// The messages for one order: `answerA` is shown as assistant A.
    public func messages(question: String, answerA: String, answerB: String, reference: String? = nil) -> [JudgeMessage] {
        var user = "[User Question]\n\(Self.cut(question, maxAnswerCharacters))\n\n"
        if let reference {
            user += "[Reference Answer]\n\(Self.cut(reference, maxReferenceCharacters))\n\n"
        }
        user += "[The Start of Assistant A's Answer]\n\(Self.cut(answerA, maxAnswerCharacters))\n[The End of Assistant A's Answer]\n\n"
        user += "[The Start of Assistant B's Answer]\n\(Self.cut(answerB, maxAnswerCharacters))\n[The End of Assistant B's Answer]"
        return [JudgeMessage(role: "system", content: Self.system), JudgeMessage(role: "user", content: user)]
    }

    /// `text` cut to at most `limit` characters, marked when cut.
    static func cut(_ text: String, _ limit: Int) -> String {
        guard text.count > limit else { return text }
        return String(text.prefix(limit)) + "\n[… cut]"
    }

    /// The verdict in a judge's reply: the one verdict token it contains (`[[A]]`, `[[B]]`,
    /// `[[C]]`, case and inner spaces ignored). No token, or tokens for more than one
    /// verdict (a judge that hedges or repeats the instructions), is a tie: an unparseable
    /// answer must never move a bond.
    public static func parse(_ reply: String) -> PairwisePreference {
        let found = verdicts(in: reply)
        return found.count == 1 ? found.first! : .tie
    }

    /// Whether `reply` holds exactly one verdict (a `[[C]]` tie included).
    public static func hasVerdict(_ reply: String) -> Bool { verdicts(in: reply).count == 1 }

    private static func verdicts(in reply: String) -> Set<PairwisePreference> {
        var found = Set<PairwisePreference>()
        var rest = Substring(reply)
        while let open = rest.firstRange(of: "[[") {
            rest = rest[open.upperBound...]
            guard let close = rest.firstRange(of: "]]") else { break }
            let inner = rest[..<close.lowerBound].filter { !$0.isWhitespace }.uppercased()
            switch inner {
            case "A": found.insert(.a)
            case "B": found.insert(.b)
            case "C", "TIE": found.insert(.tie)
            default: break
            }
            rest = rest[close.upperBound...]
        }
        return found
    }
}

/// The `reference` judge: for prompts with a reference answer (MT-Bench's math, reasoning
/// and coding questions carry one), prefers the answer that matches the reference. No
/// model is involved, so the verdict is the same in both orders.
public enum ReferenceJudge {
    /// `.first` / `.second` when exactly one answer matches the reference, else `.tie`.
    public static func compare(first: String, second: String, reference: String) -> DuelChoice {
        switch (matches(first, reference: reference), matches(second, reference: reference)) {
        case (true, false): .first
        case (false, true): .second
        default: .tie
        }
    }

    /// Whether `answer` states the reference's result. With numbers in the reference's last
    /// sentence: the answer's last number is one of them, or the answer's last paragraph
    /// contains all of them. Without: the reference's words appear in order in the answer
    /// (case, punctuation and spacing ignored).
    public static func matches(_ answer: String, reference: String) -> Bool {
        let refNumbers = numbers(in: lastSentence(of: reference))
        if !refNumbers.isEmpty {
            let all = numbers(in: answer)
            if let last = all.last, refNumbers.contains(last) { return true }
            let tail = numbers(in: lastParagraph(of: answer))
            return refNumbers.allSatisfy(tail.contains)
        }
        let ref = words(reference)
        guard !ref.isEmpty else { return false }
        return " \(words(answer).joined(separator: " ")) ".contains(" \(ref.joined(separator: " ")) ")
    }

    /// Decimal numbers in `text` ("1,000" → 1000, "-2.5" → -2.5, "3/4" → 0.75).
    static func numbers(in text: String) -> [Double] {
        var out: [Double] = []
        var token = ""
        func flush() {
            defer { token = "" }
            let t = token.replacingOccurrences(of: ",", with: "").trimmingTrailing(".")
            if let slash = t.firstIndex(of: "/"), let n = Double(t[..<slash]), let d = Double(t[t.index(after: slash)...]), d != 0 {
                out.append(n / d)
            } else if let v = Double(t) {
                out.append(v)
            }
        }
        for c in text {
            if c.isASCII && (c.isNumber || ((c == "." || c == "," || c == "/") && !token.isEmpty) || (c == "-" && token.isEmpty)) {
                token.append(c)
            } else {
                flush()
            }
        }
        flush()
        return out
    }

    static func lastSentence(of text: String) -> String {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let parts = trimmed.split(whereSeparator: { $0 == "\n" }).map(String.init).filter { !$0.allSatisfy(\.isWhitespace) }
        return parts.last ?? trimmed
    }

    static func lastParagraph(of text: String) -> String {
        let paragraphs = text.components(separatedBy: "\n\n").filter { !$0.allSatisfy(\.isWhitespace) }
        return paragraphs.last ?? text
    }

    static func words(_ text: String) -> [String] {
        text.lowercased().split(whereSeparator: { !($0.isLetter || $0.isNumber) }).map(String.init)
    }
}

private extension String {
    func trimmingTrailing(_ c: Character) -> String {
        var s = self
        while s.last == c { s.removeLast() }
        return s
    }

    func trimmingCharacters(in set: WhitespaceSet) -> String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s.removeFirst() }
        while let l = s.last, l.isWhitespace { s.removeLast() }
        return String(s)
    }

    func components(separatedBy separator: String) -> [String] {
        var out: [String] = []
        var rest = Substring(self)
        while let r = rest.firstRange(of: separator) {
            out.append(String(rest[..<r.lowerBound]))
            rest = rest[r.upperBound...]
        }
        out.append(String(rest))
        return out
    }

    func replacingOccurrences(of target: String, with replacement: String) -> String {
        components(separatedBy: target).joined(separator: replacement)
    }
}

/// The whitespace-and-newlines set (the core does not import Foundation).
enum WhitespaceSet { case whitespacesAndNewlines }
