import Testing
@testable import WWWCore
@testable import WWWSim

/// The modelled continuous-batching engine, event by event, with round numbers:
/// a = 10 ms, b = 1 ms per request, no context cost, 1,000 prefill tokens/s, no API time.
@Suite("SimEngine: continuous batching, exact event times")
struct SimEngineTests {
    private let profile = SimEngineProfile(name: "t", stepBaseMs: 10, stepPerRequestMs: 1, stepPerContextTokenUs: 0,
                                           prefillTokensPerSecond1k: 1000, prefillTokensPerSecond4k: 1000, apiOverheadMs: 0,
                                           kvCapacityTokens: 100_000, maxRunning: 8)
    private func ms(_ x: Double) -> Instant { Instant(nanoseconds: Int64((x * 1e6).rounded())) }
    private let s1 = StreamID(1), s2 = StreamID(2)

    /// Runs the engine to the end, returning (time ms, stream, "first"/"done").
    private func run(_ e: inout SimEngine, until end: Double = 1e7, inject: [(Double, (inout SimEngine, Instant) -> Void)] = []) -> [(Double, UInt64, String)] {
        var out: [(Double, UInt64, String)] = []
        var injections = inject.sorted { $0.0 < $1.0 }
        var guardCount = 0
        while guardCount < 10_000 {
            guardCount += 1
            let next = e.nextEvent.map { Double($0.nanoseconds) / 1e6 }
            if let (t, f) = injections.first, next == nil || t <= next! {
                injections.removeFirst()
                f(&e, ms(t))
                continue
            }
            guard let t = next, t <= end else { break }
            for (s, ev) in e.due(now: ms(t)) {
                if case .firstContent = ev { out.append((t, s.raw, "first")) }
                if case .finished = ev { out.append((t, s.raw, "done")) }
            }
        }
        return out
    }

    private func same(_ a: [(Double, UInt64, String)], _ b: [(Double, UInt64, String)]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { abs($0.0 - $1.0) < 0.001 && $0.1 == $1.1 && $0.2 == $1.2 }
    }

    @Test("one request: the prefill gives the first token, then one step per token")
    func single() {
        var e = SimEngine(profile: profile, capacity: 8)
        e.start(s1, SimJobSpec(promptTokens: 1000, outputTokens: 5), now: ms(0))
        let events = run(&e)
        #expect(same(events, [(1000, 1, "first"), (1044, 1, "done")]), "\(events)")   // 4 steps × 11 ms
    }

    @Test("two at once are prefilled together and decoded in one batch")
    func batch() {
        var e = SimEngine(profile: profile, capacity: 8)
        e.start(s1, SimJobSpec(promptTokens: 1000, outputTokens: 3), now: ms(0))
        e.start(s2, SimJobSpec(promptTokens: 1000, outputTokens: 5), now: ms(0))
        let events = run(&e)
        // Prefill 2,000 tokens: 2 s. Steps with B = 2: 12 ms; s1 done after 2, then s2 alone (11 ms) for 2 more.
        #expect(same(events, [(2000, 1, "first"), (2000, 2, "first"), (2024, 1, "done"), (2046, 2, "done")]), "\(events)")
    }

    @Test("an arrival mid-decode is admitted at the next step boundary")
    func arrivalMidDecode() {
        var e = SimEngine(profile: profile, capacity: 8)
        e.start(s1, SimJobSpec(promptTokens: 1000, outputTokens: 101), now: ms(0))
        let events = run(&e, inject: [(1055.5, { e, now in e.start(StreamID(2), SimJobSpec(promptTokens: 500, outputTokens: 2), now: now) })])
        // s1 decodes from 1000 ms at 11 ms a step; 5 whole steps by 1055.5, the 6th ends at 1066:
        // s2's prefill (0.5 s) runs to 1566; then B = 2 at 12 ms: s2 done at 1578 (1 step);
        // s1 had 1 + 6 tokens, 94 to go: 1 step at 12 ms, then 93 alone at 11 ms.
        #expect(same(events, [(1000, 1, "first"), (1566, 2, "first"), (1578, 2, "done"), (1578 + 93 * 11, 1, "done")]), "\(events)")
    }

    @Test("a request waits until its KV need fits, then runs")
    func kvLimit() {
        var p = profile
        p.kvCapacityTokens = 1500
        var e = SimEngine(profile: p, capacity: 8)
        e.start(s1, SimJobSpec(promptTokens: 1000, outputTokens: 2), now: ms(0))
        e.start(s2, SimJobSpec(promptTokens: 1000, outputTokens: 2), now: ms(0))
        #expect(e.load == 2 && e.kvUsage == 0)   // admitted (and reserved) only when the engine schedules
        let events = run(&e)
        #expect(same(events, [(1000, 1, "first"), (1011, 1, "done"), (2011, 2, "first"), (2022, 2, "done")]), "\(events)")
    }

    @Test("the slot limit holds requests back, and a cancel frees the slot at once")
    func slotsAndCancel() {
        var e = SimEngine(profile: profile, capacity: 1)
        e.start(s1, SimJobSpec(promptTokens: 1000, outputTokens: 1000), now: ms(0))
        e.start(s2, SimJobSpec(promptTokens: 1000, outputTokens: 2), now: ms(0))
        let events = run(&e, inject: [(1100, { e, now in e.cancel(StreamID(1), now: now) })])
        // s1 first at 1000; cancelled at 1100 (no done); s2 admitted then: first at 2100, done 2111.
        #expect(same(events, [(1000, 1, "first"), (2100, 2, "first"), (2111, 2, "done")]), "\(events)")
        #expect(e.load == 0 && e.kvUsage == 0)
    }

    @Test("context tokens slow every step (attention reads the whole cache)")
    func contextCost() {
        var p = profile
        p.stepPerContextTokenUs = 1   // 1 µs per context token per step
        var e = SimEngine(profile: p, capacity: 8)
        e.start(s1, SimJobSpec(promptTokens: 1000, outputTokens: 3), now: ms(0))
        let events = run(&e)
        // Steps at ctx 1001 and 1002: 11 + 1.001 and 11 + 1.002 ms.
        #expect(same(events, [(1000, 1, "first"), (1000 + 12.001 + 12.002, 1, "done")]), "\(events)")
    }

    @Test("prefill speed is interpolated between the 1k and 4k rates")
    func prefillRate() {
        var p = profile
        p.prefillTokensPerSecond1k = 10_000
        p.prefillTokensPerSecond4k = 5_000
        #expect(abs(p.prefillNanos(tokens: 1024, requests: 1) - 1024 / 10_000 * 1e9) < 1)
        #expect(abs(p.prefillNanos(tokens: 4096, requests: 1) - 4096 / 5_000 * 1e9) < 1)
        #expect(abs(p.prefillNanos(tokens: 2048, requests: 1) - 2048 / 7_500 * 1e9) < 1e3)
        #expect(abs(log2(8) - 3) < 1e-12 && abs(log2(0.5) + 1) < 1e-12 && abs(log2(3) - 1.584962500721156) < 1e-12)
    }
}
