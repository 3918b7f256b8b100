import Foundation
import Testing
@testable import WWWCore

/// Step 1 (DESIGN.md §6.1): `RequestScheduler.decide`, every branch, plus the policy type.
@Suite struct SchedulerDecideTests {
    typealias F = SchedFixtures

    func decide(_ load: LoadSnapshot?, pinned: Bool = false, mayOffload: Bool = true, retry: Int = 0,
                policy: SchedulingPolicy = .default, prng: inout SeededPRNG) -> SchedulingDecision {
        RequestScheduler.decide(model: "m", localLoad: load, pinnedLocal: pinned, mayOffload: mayOffload,
                                retryCount: retry, policy: policy, prng: &prng)
    }

    func decide(_ load: LoadSnapshot?, pinned: Bool = false, mayOffload: Bool = true, retry: Int = 0,
                policy: SchedulingPolicy = .default) -> SchedulingDecision {
        var prng = SeededPRNG(seed: 1)
        return decide(load, pinned: pinned, mayOffload: mayOffload, retry: retry, policy: policy, prng: &prng)
    }

    @Test func pinnedLocalNeverLeaves() {
        #expect(decide(F.load(percent: 50), pinned: true) == .runLocal)
        #expect(decide(F.load(percent: 100), pinned: true) == .queueLocal)
        #expect(decide(F.load(percent: 300), pinned: true, retry: 99) == .queueLocal)
        #expect(decide(nil, pinned: true) == .reject(.pinnedLocalWithoutBackend(model: "m")))
    }

    @Test func noLocalBackend() {
        #expect(decide(nil) == .offload)
        #expect(decide(nil, retry: 2) == .offload)
        #expect(decide(nil, mayOffload: false) == .reject(.noBackendAndCannotOffload(model: "m")))
        // Without a local backend there is nothing to fall back to: the request keeps
        // offloading (the node machine paces the passes and bounds them by the deadline).
        #expect(decide(nil, retry: 3) == .offload)
        #expect(decide(nil, retry: 64) == .offload)
        #expect(decide(nil, mayOffload: false, retry: 3) == .reject(.noBackendAndCannotOffload(model: "m")))
    }

    @Test func belowLoadTargetRunsLocally() {
        #expect(decide(F.load(percent: 99)) == .runLocal)
        #expect(decide(F.load(percent: 0), mayOffload: false, retry: 50) == .runLocal)
        let p = SchedulingPolicy(loadTarget: 0.8)
        #expect(decide(F.load(percent: 79), policy: p) == .runLocal)
        // At the target is not below it.
        #expect(decide(F.load(percent: 80), policy: p) == .offload)
        // KV-cache usage counts even when the slot count says there is room.
        #expect(decide(F.load(percent: 10, kv: 0.85), policy: p) == .offload)
    }

    @Test func overloadedBranches() {
        let busy = F.load(percent: 100)
        let always = SchedulingPolicy(offloadFrequency: 1, queueFrequency: 1)
        let queueOnly = SchedulingPolicy(offloadFrequency: 0, queueFrequency: 1)
        let neither = SchedulingPolicy(offloadFrequency: 0, queueFrequency: 0, retryDelay: .milliseconds(250))
        #expect(decide(busy, policy: always) == .offload)
        #expect(decide(busy, policy: queueOnly) == .queueLocal)
        #expect(decide(busy, policy: neither) == .retryAfter(.milliseconds(250)))
        // A node that may not offload skips the offload branch.
        #expect(decide(busy, mayOffload: false, policy: SchedulingPolicy(offloadFrequency: 1, queueFrequency: 0)) == .retryAfter(.milliseconds(200)))
        #expect(decide(busy, mayOffload: false, policy: always) == .queueLocal)
    }

    @Test func retriesAreBounded() {
        let neither = SchedulingPolicy(offloadFrequency: 0, queueFrequency: 0, maxRetries: 2)
        let busy = F.load(percent: 150)
        #expect(decide(busy, retry: 0, policy: neither) == .retryAfter(.milliseconds(200)))
        #expect(decide(busy, retry: 1, policy: neither) == .retryAfter(.milliseconds(200)))
        #expect(decide(busy, retry: 2, policy: neither) == .queueLocal)
        // Exhausted: no more offloading either.
        #expect(decide(busy, retry: 2, policy: SchedulingPolicy(offloadFrequency: 1, maxRetries: 2)) == .queueLocal)
    }

    @Test func deterministicBranchesDrawNoRandomness() {
        var prng = SeededPRNG(seed: 9)
        let before = prng
        _ = decide(F.load(percent: 10), prng: &prng)
        _ = decide(nil, prng: &prng)
        _ = decide(F.load(percent: 200), pinned: true, prng: &prng)
        _ = decide(F.load(percent: 200), policy: SchedulingPolicy(offloadFrequency: 1), prng: &prng)
        #expect(prng == before)
    }

    @Test func overloadedFrequencies() {
        // P(offload) = 0.3, P(queue) = 0.7 × 0.5 = 0.35, P(retry) = 0.35.
        let policy = SchedulingPolicy(offloadFrequency: 0.3, queueFrequency: 0.5)
        var prng = SeededPRNG(seed: 20_240_601)
        let n = 20_000
        var offload = 0, queue = 0, retry = 0
        for _ in 0..<n {
            switch decide(F.load(percent: 100), policy: policy, prng: &prng) {
            case .offload: offload += 1
            case .queueLocal: queue += 1
            case .retryAfter: retry += 1
            default: Issue.record("unexpected decision")
            }
        }
        F.expectBinomial(offload, n: n, p: 0.3, "offload")
        F.expectBinomial(queue, n: n, p: 0.35, "queue")
        F.expectBinomial(retry, n: n, p: 0.35, "retry")
    }

    @Test func rejectionMessagesNameTheModel() {
        #expect(SchedulingRejection.noBackendAndCannotOffload(model: "qwen").description.contains("'qwen'"))
        #expect(SchedulingRejection.pinnedLocalWithoutBackend(model: "qwen").description.contains("'qwen'"))
    }

    // MARK: - SchedulingPolicy

    @Test func defaultPolicyIsValid() throws {
        #expect(SchedulingPolicy.default.violations.isEmpty)
        _ = try SchedulingPolicy.default.validated()
    }

    @Test func validationNamesEveryBadField() {
        let bad = SchedulingPolicy(offloadFrequency: 1.5, queueFrequency: -0.1, acceptFrequency: .nan,
                                   loadTarget: 0, explorationShare: 2, maxOfferAttempts: 0,
                                   offerTimeout: .zero, retryDelay: .milliseconds(-1), maxRetries: -1,
                                   maxFailovers: 17, priceAccepted: Credits(micro: -1))
        #expect(bad.violations.map(\.field) == [
            "offloadFrequency", "queueFrequency", "acceptFrequency", "loadTarget", "explorationShare",
            "maxOfferAttempts", "offerTimeoutMs", "retryDelayMs", "maxRetries", "maxFailovers", "priceAcceptedMicro",
        ])
        #expect(throws: SchedulingPolicy.ValidationError(field: "offloadFrequency", requirement: "a probability in [0, 1]")) {
            try bad.validated()
        }
    }

    @Test func decodingFillsDefaultsAndValidates() throws {
        let partial = #"{"offloadFrequency": 0.25, "offerTimeoutMs": 1500, "priceAcceptedMicro": 500000}"#
        let p = try JSONDecoder().decode(SchedulingPolicy.self, from: Data(partial.utf8))
        var expected = SchedulingPolicy.default
        expected.offloadFrequency = 0.25
        expected.offerTimeout = .milliseconds(1500)
        expected.priceAccepted = Credits(micro: 500_000)
        #expect(p == expected)

        let roundTrip = try JSONDecoder().decode(SchedulingPolicy.self, from: JSONEncoder().encode(expected))
        #expect(roundTrip == expected)

        #expect(throws: SchedulingPolicy.ValidationError.self) {
            try JSONDecoder().decode(SchedulingPolicy.self, from: Data(#"{"acceptFrequency": 3}"#.utf8))
        }
    }
}
