import WWWCore

/// How big one request is: what a modelled engine needs to time it (the real shell carries
/// the prompt instead).
public struct SimJobSpec: Hashable, Sendable {
    public var promptTokens: Int
    public var outputTokens: Int

    public init(promptTokens: Int, outputTokens: Int) {
        self.promptTokens = max(0, promptTokens)
        self.outputTokens = max(1, outputTokens)
    }
}

/// A continuous-batching engine's speed and limits, for one (model, GPU, variant, attention
/// backend); the form and numbers follow `../shared/data/calibration.md` §10:
///
/// ```
/// decode step (ms) = a + b·B + c·Σctx / 1000     B running requests, Σctx their context tokens
/// prefill of n prompt tokens (s) = n / rate(n)   rate interpolated in log n between 1k and 4k tokens
/// TTFT at low load = apiOverhead + prefill
/// ```
/// A request is admitted when fewer than `maxRunning` run and its whole KV need (prompt +
/// output tokens) fits in `kvCapacityTokens` beside the running requests' (FIFO: the head
/// waits, and the rest behind it). `quality` sets how judges see its answers.
public struct SimEngineProfile: Hashable, Sendable, Codable {
    /// e.g. "qwen3-8b/a100/bf16/flashinfer".
    public var name: String
    /// `a`: ms per decode step.
    public var stepBaseMs: Double
    /// `b`: ms per running request per step.
    public var stepPerRequestMs: Double
    /// `c`: µs per context token per step (attention reads the whole KV cache).
    public var stepPerContextTokenUs: Double
    /// Prefill throughput at 1,024- and 4,096-token prompts, tokens/s.
    public var prefillTokensPerSecond1k: Double
    public var prefillTokensPerSecond4k: Double
    /// HTTP, tokenization and scheduling before the prefill, ms.
    public var apiOverheadMs: Double
    public var kvCapacityTokens: Int
    public var maxRunning: Int
    /// Answer quality in (0, 1]: the judges' `SimJudgeModel` compares it.
    public var quality: Double

    public init(name: String, stepBaseMs: Double, stepPerRequestMs: Double, stepPerContextTokenUs: Double,
                prefillTokensPerSecond1k: Double, prefillTokensPerSecond4k: Double, apiOverheadMs: Double = 10,
                kvCapacityTokens: Int, maxRunning: Int, quality: Double = 0.5) {
        self.name = name
        self.stepBaseMs = stepBaseMs
        self.stepPerRequestMs = stepPerRequestMs
        self.stepPerContextTokenUs = stepPerContextTokenUs
        self.prefillTokensPerSecond1k = prefillTokensPerSecond1k
        self.prefillTokensPerSecond4k = prefillTokensPerSecond4k
        self.apiOverheadMs = apiOverheadMs
        self.kvCapacityTokens = kvCapacityTokens
        self.maxRunning = maxRunning
        self.quality = quality
    }

    /// A simple engine: a fixed decode step, one prefill rate, no KV limit (protocol tests).
    public init(prefillTokensPerSecond: Double = 2_000, decodeStep: Duration = .milliseconds(20)) {
        self.init(name: "fixed", stepBaseMs: Double(decodeStep.nanoseconds) / 1e6, stepPerRequestMs: 0, stepPerContextTokenUs: 0,
                  prefillTokensPerSecond1k: prefillTokensPerSecond, prefillTokensPerSecond4k: prefillTokensPerSecond,
                  apiOverheadMs: 0, kvCapacityTokens: Int.max / 4, maxRunning: 1 << 20)
    }

    /// Problems that make the profile unusable (empty when valid).
    public var problems: [String] {
        var out: [String] = []
        let positive = [("step_base_ms", stepBaseMs), ("prefill_tokens_per_s_1k", prefillTokensPerSecond1k),
                        ("prefill_tokens_per_s_4k", prefillTokensPerSecond4k)]
        for (k, v) in positive where !(v.isFinite && v > 0) { out.append("\(k) must be positive") }
        for (k, v) in [("step_per_request_ms", stepPerRequestMs), ("step_per_context_token_us", stepPerContextTokenUs),
                       ("api_overhead_ms", apiOverheadMs)] where !(v.isFinite && v >= 0) { out.append("\(k) must be ≥ 0") }
        if kvCapacityTokens < 1 { out.append("kv_capacity_tokens must be positive") }
        if maxRunning < 1 { out.append("max_running must be positive") }
        if !(quality > 0 && quality <= 1) { out.append("quality must be in (0, 1]") }
        return out
    }

    /// Decode step with `batch` requests holding `contextTokens` in all, in ns.
    func stepNanos(batch: Int, contextTokens: Int) -> Double {
        (stepBaseMs + stepPerRequestMs * Double(batch)) * 1e6 + stepPerContextTokenUs * 1e3 * Double(contextTokens)
    }

    /// Prefill of `tokens` prompt tokens (one batch), in ns.
    func prefillNanos(tokens: Int, requests: Int) -> Double {
        guard tokens > 0 else { return 0 }
        let perRequest = Double(tokens) / Double(max(1, requests))
        let x = min(1, max(0, (log2(max(perRequest, 1)) - 10) / 2))   // 0 at 1k, 1 at 4k
        let rate = prefillTokensPerSecond1k + (prefillTokensPerSecond4k - prefillTokensPerSecond1k) * x
        return Double(tokens) / rate * 1e9
    }
}

/// log₂ without Foundation.
func log2(_ x: Double) -> Double {
    guard x > 0 else { return -.infinity }
    var e = 0.0, m = x
    while m >= 2 { m /= 2; e += 1 }
    while m < 1 { m *= 2; e -= 1 }
    // ln(m)/ln 2 for m in [1, 2) by the series of atanh.
    let y = (m - 1) / (m + 1), y2 = y * y
    var term = y, sum = 0.0
    for k in stride(from: 1.0, through: 31, by: 2) {
        sum += term / k
        term *= y2
    }
    return e + 2 * sum / 0.6931471805599453
}

/// A modelled continuous-batching engine (SGLang/vLLM style): requests wait FIFO until a
/// slot and their KV fit; admitted ones are prefilled together (the prefill produces each
/// one's first token), then every decode step gives each running request one token.
///
/// Event-driven, not step-by-step: between two events the batch is fixed, so the time of
/// k steps has a closed form (Σctx grows by B per step), and the engine jumps straight to
/// the next completion. An arrival or a cancellation splits the run at a step boundary.
/// Deterministic: no randomness; events in (time, stream) order.
public struct SimEngine: Sendable {
    struct Request: Sendable {
        var spec: SimJobSpec
        /// Tokens generated so far (the first comes with the prefill).
        var generated = 0
    }

    enum Phase: Sendable {
        case idle
        /// Prefilling `batch` until `until`, then they join the running set.
        case prefill(batch: [StreamID], until: Instant)
        /// Decoding the running set since `since` (a step boundary), the next event at `until`
        /// after `steps` steps.
        case decode(since: Instant, steps: Int, until: Instant)
    }

    public let profile: SimEngineProfile
    public let maxRunning: Int
    private(set) var running: [StreamID: Request] = [:]
    private var order: [StreamID] = []   // running, in admission order
    private var waiting: [(StreamID, SimJobSpec, Instant)] = []
    private var phase: Phase = .idle
    private var kvReserved = 0
    private var pendingEvents: [(Instant, StreamID, StreamEvent)] = []

    public init(profile: SimEngineProfile, capacity: Int) {
        self.profile = profile
        self.maxRunning = max(1, min(capacity, profile.maxRunning))
    }

    /// Whether a request of this size can ever run here (prompt + output fit in the KV cache).
    public func fits(_ spec: SimJobSpec) -> Bool { spec.promptTokens + spec.outputTokens <= profile.kvCapacityTokens }

    /// Requests running (prefilling or decoding).
    public var runningCount: Int { running.count }
    /// Requests running or waiting.
    public var load: Int { running.count + waiting.count }
    /// Share of the KV cache reserved by running requests, in [0, 1].
    public var kvUsage: Double { min(1, Double(kvReserved) / Double(profile.kvCapacityTokens)) }

    public func has(_ s: StreamID) -> Bool { running[s] != nil || waiting.contains { $0.0 == s } }

    /// A request arrives (after the API overhead it is ready for the scheduler).
    public mutating func start(_ s: StreamID, _ spec: SimJobSpec, now: Instant) {
        let ready = now + .nanoseconds(Int64(profile.apiOverheadMs * 1e6))
        guard fits(spec) else {
            // Longer than the whole KV cache: the engine refuses it (as engines answer 400
            // for a context they cannot hold), instead of letting it wait forever.
            pendingEvents.append((ready, s, .failed(.httpStatus(400))))
            return
        }
        waiting.append((s, spec, ready))
        // Admission happens in `due` (at `nextEvent`), so that requests arriving at the
        // same instant are prefilled together.
        splitForArrival(now: now)
    }

    public mutating func cancel(_ s: StreamID, now: Instant) {
        if let i = waiting.firstIndex(where: { $0.0 == s }) {
            waiting.remove(at: i)
            return
        }
        guard running[s] != nil else { return }
        if case .prefill(let batch, let until) = phase, batch.contains(s) {
            remove(s)
            phase = .prefill(batch: batch.filter { $0 != s }, until: until)
            return
        }
        checkpoint(now: now)
        remove(s)
        schedule(now: now)
    }

    /// The next instant something happens.
    public var nextEvent: Instant? {
        var t: Instant? = pendingEvents.lazy.map(\.0).min()
        switch phase {
        case .idle:
            if let ready = waiting.first?.2, canAdmitHead { t = t.map { min($0, ready) } ?? ready }
        case .prefill(_, let until), .decode(_, _, let until):
            t = t.map { min($0, until) } ?? until
        }
        return t
    }

    /// Events due at `now`, in (time, stream) order.
    public mutating func due(now: Instant) -> [(StreamID, StreamEvent)] {
        var guardCount = 0
        while let t = phaseEnd, t <= now, guardCount < 10_000 {
            guardCount += 1
            advance(at: t)
        }
        if case .idle = phase { schedule(now: now) }
        let ready = pendingEvents.filter { $0.0 <= now }.sorted { ($0.0, $0.1) < ($1.0, $1.1) }
        pendingEvents.removeAll { $0.0 <= now }
        return ready.map { ($0.1, $0.2) }
    }

    // MARK: Internals

    private var phaseEnd: Instant? {
        switch phase {
        case .idle: waiting.first.map(\.2).flatMap { canAdmitHead ? $0 : nil }
        case .prefill(_, let until), .decode(_, _, let until): until
        }
    }

    private var contextTokens: Int { running.values.reduce(0) { $0 + $1.spec.promptTokens + $1.generated } }

    private var canAdmitHead: Bool {
        guard let head = waiting.first else { return false }
        return running.count < maxRunning && kvReserved + head.1.promptTokens + head.1.outputTokens <= profile.kvCapacityTokens
    }

    /// The phase that ended at `t` takes effect.
    private mutating func advance(at t: Instant) {
        switch phase {
        case .idle:
            schedule(now: t)
        case .prefill(let batch, _):
            for s in batch where running[s] != nil {
                running[s]!.generated = 1
                pendingEvents.append((t, s, .firstContent))
                if running[s]!.spec.outputTokens <= 1 { finish(s, at: t) }
            }
            phase = .idle
            schedule(now: t)
        case .decode(_, let steps, _):
            for s in order { running[s]!.generated += steps }
            for s in order where running[s]!.generated >= running[s]!.spec.outputTokens { finish(s, at: t) }
            phase = .idle
            schedule(now: t)
        }
    }

    private mutating func finish(_ s: StreamID, at t: Instant) {
        guard let r = running[s] else { return }
        let hash = SimCrypto.hash(Array("answer-\(s.raw)".utf8), salt: 7)
        let usage = TokenUsage(promptTokens: r.spec.promptTokens, completionTokens: r.spec.outputTokens)
        pendingEvents.append((t, s, .finished(StreamOutcome(responseHash: hash, usage: usage))))
        remove(s)
    }

    private mutating func remove(_ s: StreamID) {
        guard let r = running.removeValue(forKey: s) else { return }
        order.removeAll { $0 == s }
        kvReserved -= r.spec.promptTokens + r.spec.outputTokens
    }

    /// From a step boundary `now` with nothing in progress: admit and prefill, or decode up
    /// to the next completion, or idle.
    private mutating func schedule(now: Instant) {
        var batch: [StreamID] = []
        var tokens = 0
        while canAdmitHead, let head = waiting.first, head.2 <= now {
            waiting.removeFirst()
            running[head.0] = Request(spec: head.1)
            order.append(head.0)
            kvReserved += head.1.promptTokens + head.1.outputTokens
            batch.append(head.0)
            tokens += head.1.promptTokens
        }
        if !batch.isEmpty {
            let d = profile.prefillNanos(tokens: tokens, requests: batch.count)
            phase = .prefill(batch: batch, until: now + .nanoseconds(Int64(d.rounded(.up))))
            return
        }
        let decoding = order.filter { running[$0]!.generated >= 1 }
        guard !decoding.isEmpty else { phase = .idle; return }
        var k = decoding.map { running[$0]!.spec.outputTokens - running[$0]!.generated }.min()!
        // A waiting request that fits is admitted at the first step boundary after it is ready.
        if canAdmitHead, let ready = waiting.first?.2, ready > now {
            k = min(k, stepsDone(since: now, now: ready, limit: k) + 1)
        }
        phase = .decode(since: now, steps: k, until: now + .nanoseconds(Int64(stepsNanos(k).rounded(.up))))
    }

    /// Time of `k` decode steps of the running set from now: Σctx grows by B each step.
    private func stepsNanos(_ k: Int) -> Double {
        let b = running.count, ctx = contextTokens
        let perStep = profile.stepNanos(batch: b, contextTokens: 0)
        let ctxNanos = profile.stepPerContextTokenUs * 1e3
        return Double(k) * perStep + ctxNanos * (Double(k) * Double(ctx) + Double(b) * Double(k) * Double(k - 1) / 2)
    }

    /// Decode steps completed between `since` and `now` (whole steps only).
    private func stepsDone(since: Instant, now: Instant, limit: Int) -> Int {
        let elapsed = Double((now - since).nanoseconds)
        var lo = 0, hi = limit
        while lo < hi {   // the largest k with stepsNanos(k) <= elapsed
            let mid = (lo + hi + 1) / 2
            if stepsNanos(mid) <= elapsed { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }

    /// Ends the current decode run at the last step boundary before `now`: the whole steps
    /// done count, the one in progress is redone with the new batch.
    private mutating func checkpoint(now: Instant) {
        guard case .decode(let since, let steps, _) = phase else { return }
        let k = stepsDone(since: since, now: now, limit: steps)
        let boundary = since + .nanoseconds(Int64(stepsNanos(k).rounded(.up)))
        for s in order { running[s]!.generated += k }
        for s in order where running[s]!.generated >= running[s]!.spec.outputTokens { finish(s, at: boundary) }
        phase = .idle
    }

    /// A request arrived while decoding: end the run at the first step boundary after it is
    /// ready, so that it is admitted there (engines schedule every step).
    private mutating func splitForArrival(now: Instant) {
        guard case .decode(let since, let steps, let until) = phase, canAdmitHead, let ready = waiting.first?.2 else { return }
        let k = stepsDone(since: since, now: max(ready, now), limit: steps) + 1
        guard k < steps else { return }
        let boundary = since + .nanoseconds(Int64(stepsNanos(k).rounded(.up)))
        if boundary < until { phase = .decode(since: since, steps: k, until: boundary) }
    }
}
