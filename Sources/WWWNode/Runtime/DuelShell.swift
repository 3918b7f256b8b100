import Foundation
import Logging
import WWWAPI
import WWWBackends
import WWWCore
import WWWCrypto

/// The shell's part of duels (DESIGN.md §6 step 5; the rules are the machine's, see
/// `RequesterDuel.swift`): it keeps the texts of both copies of a duel job, reads the copy
/// no user reads to its end, carries the prompt and both answers to the judges, and runs
/// this node's judge. All of it is bounded: at most `DuelConfig.maxDuels` duels and
/// `maxJudgeTasks` judge tasks, each answer at most `duel.max_answer_bytes`.
struct DuelAnswers {
    /// The user's conversation, as judges see it.
    var messages: [JudgeMaterial.Turn]
    /// Each executor's delivered answer; nil: longer than `max_answer_bytes` (not judged).
    var texts: [NodeID: String?] = [:]
}

/// A stream whose answer is kept for a duel.
struct CollectedStream {
    let job: JobID
    let executor: NodeID
}

extension NodeRuntime {
    // MARK: Requester: keeping the answers

    /// `collectAnswer`: keep `s`'s text for the duel of `job` (under the lock).
    func collectAnswer(_ s: StreamID, job: JobID) {
        guard let entry = streams[s], let executor = entry.executor else { return }
        collecting[s] = CollectedStream(job: job, executor: executor)
        if duelAnswers[job] == nil {
            let messages = sessions[entry.owner]?.request.messages.map {
                JudgeMaterial.Turn(role: $0.role.rawValue, content: $0.content)
            } ?? []
            duelAnswers[job] = DuelAnswers(messages: messages)
        }
    }

    /// The SHA-256 of a delivered answer's text: what its executor's receipt signs.
    static func answerHash(_ text: String) -> [UInt8] { SwiftCryptoProvider().sha256(Array(text.utf8)) }

    /// Keeps the delivered text of `s` when it is collected for a duel (takes the lock).
    func keepAnswer(_ s: StreamID, text: String, complete: Bool) {
        let limit = config.duel?.maxAnswerBytes ?? 0
        lock.withLock {
            guard let c = collecting[s], duelAnswers[c.job] != nil else { return }
            duelAnswers[c.job]!.texts[c.executor] = complete && text.utf8.count <= limit ? .some(text) : .some(nil)
        }
    }

    /// `drainStream`: reads the parked stream `s` to its end in a task of its own (no user
    /// reads it), keeps its text and reports how it ended. Under the lock.
    func drainStream(_ s: StreamID) {
        guard case .ready(let head)? = streams[s]?.state else { return }
        let cancelled = streams[s]!.cancelled
        let task = Task { await self.drain(s, head: head, cancelled: cancelled) }
        streams[s]!.state = .draining(task)
    }

    private func drain(_ s: StreamID, head: StreamHead, cancelled: CancelFlag) async {
        var acc = StreamAccumulator()
        head.chunks.forEach { acc.add($0) }
        var failure: BackendError?
        do {
            while let chunk = try await head.rest.value.next() {
                acc.add(chunk)
                if cancelled.isRaised || Task.isCancelled { failure = .cancelled; break }
            }
        } catch {
            failure = OpenAIBackend.map(error)
        }
        head.rest.value = ChunkStream.empty.makeAsyncIterator()
        if let failure {
            streamFailed(s, failure)
        } else {
            keepAnswer(s, text: acc.content, complete: !acc.overflowed)
            let usage = acc.usage.map { TokenUsage(promptTokens: $0.promptTokens, completionTokens: $0.completionTokens) }
            submit(.stream(s, .finished(StreamOutcome(responseHash: Self.answerHash(acc.content), usage: usage))))
        }
        lock.withLock {
            streams[s] = nil
            collecting[s] = nil
        }
    }

    /// `dropAnswers`: forget the duel's texts and the streams kept only for it.
    func dropAnswers(job: JobID) {
        duelAnswers[job] = nil
        for (s, c) in collecting where c.job == job {
            collecting[s] = nil
            guard let e = streams[s], sessions[e.owner] == nil else { continue }
            cancelStream(s)
            streams[s] = nil
        }
    }

    /// Whether `endSession` must keep `e` (a duel copy still being read for the judges).
    func keptForDuel(_ s: StreamID, _ e: StreamEntry) -> Bool {
        guard collecting[s] != nil || machine.isDuelCopy(s) else { return false }
        switch e.state {
        case .starting, .ready, .draining: return true
        case .inSession, .taken, .closed: return false
        }
    }

    /// `requestJudgements`: sends each judge the pair with the prompt and both texts. A
    /// missing or too long answer sends nothing: the duel gets no verdict and lapses.
    func requestJudgements(_ spec: DuelPairSpec, judges: [NodeID: String]) {
        guard let answers = duelAnswers[spec.job], let first = answers.texts[spec.first] ?? nil,
              let second = answers.texts[spec.second] ?? nil, !answers.messages.isEmpty else {
            metrics.duelJudgeRequests(outcome: "not_sent_no_text", count: judges.count)
            logger.warning("duel not sent to judges: an answer is missing or longer than duel.max_answer_bytes",
                           metadata: ["job": "\(spec.job.hex.prefix(16))"])
            return
        }
        guard Self.answerHash(first) == spec.firstResponseHash, Self.answerHash(second) == spec.secondResponseHash else {
            metrics.duelJudgeRequests(outcome: "not_sent_hash_mismatch", count: judges.count)
            logger.error("duel not sent to judges: a kept answer does not match its response hash", metadata: ["job": "\(spec.job.hex.prefix(16))"])
            return
        }
        let material = JudgeMaterial(messages: answers.messages, firstAnswer: first, secondAnswer: second)
        for (judge, address) in judges.sorted(by: { $0.key < $1.key }) {
            send(.judgeRequest(spec), to: judge, address: address, judging: material)
        }
        metrics.duelJudgeRequests(outcome: "sent", count: judges.count)
    }

    // MARK: Judge

    /// A judge request's texts, checked against its hashes and parked for `runJudgement`.
    /// - Returns: nil when accepted, else why not (the route answers 400 / 503).
    func parkJudgeMaterial(_ spec: DuelPairSpec, _ m: JudgeMaterial) -> JudgeRequestProblem? {
        guard judge != nil else { return .notJudging }
        guard Self.answerHash(m.firstAnswer) == spec.firstResponseHash, Self.answerHash(m.secondAnswer) == spec.secondResponseHash
        else { return .hashMismatch }
        return lock.withLock {
            if judgeInbox[spec.job] != nil || judgeRuns[spec.job] != nil { return .duplicate }
            guard judgeInbox.count < 2 * machine.config.duel.maxJudgeTasks + 8 else { return .busy }
            judgeInbox[spec.job] = m
            return nil
        }
    }

    /// The machine did not take a parked request (declined, or a duplicate): forget it.
    func unparkJudgeMaterial(_ job: JobID) {
        lock.withLock { if judgeRuns[job] == nil { judgeInbox[job] = nil } }
    }

    /// `runJudgement`: runs this node's judge on the parked texts in a task; reports
    /// `.judgement` (nil preferences: abstain). Under the lock.
    func runJudgement(_ spec: DuelPairSpec) -> NodeInput? {
        guard let judge, let material = judgeInbox.removeValue(forKey: spec.job) else {
            return .judgement(job: spec.job, original: nil, swapped: nil)
        }
        let started = ContinuousClock.now
        judgeRuns[spec.job] = Task {
            let result = await judge.judge(material)
            self.metrics.judgeLatency(ContinuousClock.now - started)
            if result == nil, !Task.isCancelled {
                self.metrics.verdict("abstained_error")
                self.logger.warning("the judge could not judge a pair (engine error or overload); abstaining",
                                    metadata: ["job": "\(spec.job.hex.prefix(16))"])
            }
            let current = self.lock.withLock { self.judgeRuns.removeValue(forKey: spec.job) != nil }
            if current { self.submit(.judgement(job: spec.job, original: result?.original, swapped: result?.swapped)) }
        }
        return nil
    }

    /// A judge task the machine gave up (timed out): stop it.
    func stopJudgement(_ job: JobID) {
        judgeRuns.removeValue(forKey: job)?.cancel()
        judgeInbox[job] = nil
    }
}

/// Why a judge request's texts were not taken.
enum JudgeRequestProblem: String {
    case notJudging = "not_judging", hashMismatch = "hash_mismatch", duplicate, busy
}
