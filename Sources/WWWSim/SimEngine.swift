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

/// Speed of a modelled engine.
public struct SimEngineProfile: Hashable, Sendable {
    /// Prompt tokens read per second.
    public var prefillTokensPerSecond: Double
    /// Time of one decode step (one output token per running request).
    public var decodeStep: Duration

    public init(prefillTokensPerSecond: Double = 2_000, decodeStep: Duration = .milliseconds(20)) {
        precondition(prefillTokensPerSecond > 0 && decodeStep > .zero)
        self.prefillTokensPerSecond = prefillTokensPerSecond
        self.decodeStep = decodeStep
    }
}

/// A modelled inference engine: `capacity` requests run at once (the rest wait, FIFO); a
/// request's first content comes after its prefill and one decode step, its end after one
/// step per output token. Deterministic: no randomness, events ordered by (time, stream).
struct SimEngine: Sendable {
    struct Running: Sendable {
        var firstAt: Instant
        var doneAt: Instant
        var spec: SimJobSpec
        var sentFirst = false
    }

    let profile: SimEngineProfile
    let capacity: Int
    private(set) var running: [StreamID: Running] = [:]
    private var queue: [(StreamID, SimJobSpec)] = []

    init(profile: SimEngineProfile, capacity: Int) {
        self.profile = profile
        self.capacity = max(1, capacity)
    }

    var load: Int { running.count + queue.count }

    mutating func start(_ s: StreamID, _ spec: SimJobSpec, now: Instant) {
        queue.append((s, spec))
        admit(now: now)
    }

    mutating func cancel(_ s: StreamID, now: Instant) {
        running[s] = nil
        queue.removeAll { $0.0 == s }
        admit(now: now)
    }

    func has(_ s: StreamID) -> Bool { running[s] != nil || queue.contains { $0.0 == s } }

    /// The next instant something happens.
    var nextEvent: Instant? {
        running.values.map { $0.sentFirst ? $0.doneAt : $0.firstAt }.min()
    }

    /// Events due at `now`, in (time, stream) order; finished requests free their slot.
    mutating func due(now: Instant) -> [(StreamID, StreamEvent)] {
        var events: [(Instant, StreamID, Bool)] = []   // (time, stream, isFinish)
        for (s, r) in running {
            if !r.sentFirst, r.firstAt <= now { events.append((r.firstAt, s, false)) }
            if r.doneAt <= now { events.append((r.doneAt, s, true)) }
        }
        events.sort { ($0.0, $0.1, $0.2 ? 1 : 0) < ($1.0, $1.1, $1.2 ? 1 : 0) }
        var out: [(StreamID, StreamEvent)] = []
        for (_, s, isFinish) in events {
            if isFinish {
                let spec = running.removeValue(forKey: s)!.spec
                let hash = SimCrypto.hash(Array("answer-\(s.raw)".utf8), salt: 7)
                let usage = TokenUsage(promptTokens: spec.promptTokens, completionTokens: spec.outputTokens)
                out.append((s, .finished(StreamOutcome(responseHash: hash, usage: usage))))
            } else {
                running[s]!.sentFirst = true
                out.append((s, .firstContent))
            }
        }
        admit(now: now)
        return out
    }

    private mutating func admit(now: Instant) {
        while running.count < capacity, !queue.isEmpty {
            let (s, spec) = queue.removeFirst()
            let prefill = Duration.nanoseconds(Int64(Double(spec.promptTokens) / profile.prefillTokensPerSecond * 1e9))
            let first = now + prefill + profile.decodeStep
            running[s] = Running(firstAt: first, doneAt: first + profile.decodeStep * (spec.outputTokens - 1), spec: spec)
        }
    }
}
