import Testing
@testable import WWWCore

/// Step 3 (DESIGN.md §6.3): the requester's `OfferRound` and the executor's
/// `AcceptanceDecision`.
@Suite struct SchedulerOfferTests {
    typealias F = SchedFixtures
    let a = F.node(10), b = F.node(11), c = F.node(12), d = F.node(13)
    let t0 = F.t0
    let timeout = Duration.seconds(2)

    func round(attempts: Int = 3, overall: Duration = .seconds(60)) -> OfferRound {
        OfferRound(maxAttempts: attempts, offerTimeout: timeout, overallDeadline: t0 + overall)
    }

    // MARK: - OfferRound

    @Test func acceptOnFirstTry() {
        var r = round()
        #expect(r.state == .idle)
        #expect(r.start(candidates: [a, b, c], now: t0) == .sendOffer(to: a, attempt: 1, deadline: t0 + timeout))
        #expect(r.state == .offering(candidate: a, attempt: 1, deadline: t0 + timeout))
        #expect(r.accepted(from: a, now: t0 + .milliseconds(300)) == .execute(on: a))
        #expect(r.state == .accepted(executor: a))
        #expect(r.attempts == [.init(candidate: a, sentAt: t0, deadline: t0 + timeout, outcome: .accepted)])
        #expect(r.offeredNodes == [a])
    }

    @Test func rejectMovesToTheNextCandidate() {
        var r = round()
        _ = r.start(candidates: [a, b, c], now: t0)
        let t1 = t0 + .milliseconds(100)
        #expect(r.rejected(from: a, reason: .overloaded, now: t1) == .sendOffer(to: b, attempt: 2, deadline: t1 + timeout))
        #expect(r.accepted(from: b, now: t1 + .milliseconds(5)) == .execute(on: b))
        #expect(r.attempts.map(\.outcome) == [.rejected(.overloaded), .accepted])
    }

    @Test func timeoutMovesToTheNextCandidate() {
        var r = round()
        _ = r.start(candidates: [a, b], now: t0)
        // A timer that fires early is stale.
        #expect(r.timeout(now: t0 + .milliseconds(1_999)) == .ignore)
        #expect(r.state == .offering(candidate: a, attempt: 1, deadline: t0 + timeout))
        let t1 = t0 + timeout
        #expect(r.timeout(now: t1) == .sendOffer(to: b, attempt: 2, deadline: t1 + timeout))
        #expect(r.attempts.map(\.outcome) == [.timedOut, .pending])
        // The earlier offer's timer again, now stale for attempt 2.
        #expect(r.timeout(now: t1) == .ignore)
    }

    @Test func staleResponsesAreIgnored() {
        var r = round()
        #expect(r.accepted(from: a, now: t0) == .ignore)      // before start
        _ = r.start(candidates: [a, b, c], now: t0)
        #expect(r.accepted(from: b, now: t0) == .ignore)      // not the current candidate
        #expect(r.rejected(from: c, reason: .policy, now: t0) == .ignore)
        #expect(r.accepted(from: d, now: t0) == .ignore)      // never a candidate
        #expect(r.state == .offering(candidate: a, attempt: 1, deadline: t0 + timeout))
        _ = r.rejected(from: a, reason: .policy, now: t0)
        #expect(r.accepted(from: a, now: t0) == .ignore)      // a already answered
        #expect(r.accepted(from: b, now: t0) == .execute(on: b))
        #expect(r.rejected(from: b, reason: .policy, now: t0) == .ignore) // terminal
        #expect(r.timeout(now: t0 + .seconds(100)) == .ignore)
        #expect(r.state == .accepted(executor: b))
    }

    @Test func lateAcceptCountsAsTimeout() {
        var r = round()
        _ = r.start(candidates: [a, b], now: t0)
        let late = t0 + timeout
        #expect(r.accepted(from: a, now: late) == .sendOffer(to: b, attempt: 2, deadline: late + timeout))
        #expect(r.attempts.map(\.outcome) == [.timedOut, .pending])
    }

    @Test func exhaustedAttemptsFallBack() {
        var r = round(attempts: 2)
        _ = r.start(candidates: [a, b, c], now: t0)
        _ = r.rejected(from: a, reason: .notServing, now: t0)
        #expect(r.rejected(from: b, reason: .insufficientFunds, now: t0) == .fallback(.attemptsExhausted))
        #expect(r.state == .exhausted(.attemptsExhausted))
        #expect(r.offeredNodes == [a, b])
    }

    @Test func exhaustedCandidatesFallBack() {
        var r = round(attempts: 3)
        _ = r.start(candidates: [a, a, b], now: t0)  // the duplicate is dropped
        _ = r.rejected(from: a, reason: .policy, now: t0)
        #expect(r.timeout(now: t0 + timeout) == .fallback(.candidatesExhausted))
        #expect(r.offeredNodes == [a, b])
    }

    @Test func noCandidatesFallsBackAtOnce() {
        var r = round()
        #expect(r.start(candidates: [], now: t0) == .fallback(.noCandidates))
        #expect(r.state == .exhausted(.noCandidates))
        #expect(r.attempts.isEmpty)
    }

    @Test func overallDeadlineBoundsEverything() {
        var r = round(attempts: 5, overall: .seconds(3))
        let end = t0 + .seconds(3)
        #expect(r.start(candidates: [a, b, c], now: t0) == .sendOffer(to: a, attempt: 1, deadline: t0 + timeout))
        let t1 = t0 + timeout
        // The second offer's deadline is clamped to the overall deadline.
        #expect(r.timeout(now: t1) == .sendOffer(to: b, attempt: 2, deadline: end))
        #expect(r.accepted(from: b, now: end) == .fallback(.deadlineExceeded))
        #expect(r.state == .exhausted(.deadlineExceeded))

        var late = round(overall: .seconds(1))
        #expect(late.start(candidates: [a], now: t0 + .seconds(1)) == .fallback(.deadlineExceeded))
    }

    @Test func roundFromPolicy() {
        let r = OfferRound(policy: SchedulingPolicy(maxOfferAttempts: 4, offerTimeout: .milliseconds(700)),
                           overallDeadline: t0)
        #expect(r.maxAttempts == 4)
        #expect(r.offerTimeout == .milliseconds(700))
    }

    // MARK: - AcceptanceDecision

    func evaluate(price: Credits = Credits(credits: 1), serves: Bool = true, load: LoadSnapshot? = F.load(percent: 10),
                  covers: Bool = true, ownWaiting: Int = 0, policy: SchedulingPolicy = .default,
                  prng: inout SeededPRNG) -> AcceptanceOutcome {
        AcceptanceDecision.evaluate(price: price, servesModel: serves, localLoad: load, requesterCoversPrice: covers,
                                    ownUsersWaiting: ownWaiting, policy: policy, prng: &prng)
    }

    func evaluate(price: Credits = Credits(credits: 1), serves: Bool = true, load: LoadSnapshot? = F.load(percent: 10),
                  covers: Bool = true, ownWaiting: Int = 0, policy: SchedulingPolicy = .default) -> AcceptanceOutcome {
        var prng = SeededPRNG(seed: 1)
        return evaluate(price: price, serves: serves, load: load, covers: covers, ownWaiting: ownWaiting,
                        policy: policy, prng: &prng)
    }

    @Test func acceptanceReasons() {
        let pricey = SchedulingPolicy(priceAccepted: Credits(credits: 2))
        #expect(evaluate() == .accept)
        #expect(evaluate(serves: false) == .reject(.notServing))
        #expect(evaluate(load: nil) == .reject(.notServing))
        #expect(evaluate(policy: pricey) == .reject(.priceTooLow))
        #expect(evaluate(price: Credits(credits: 2), policy: pricey) == .accept)
        #expect(evaluate(covers: false) == .reject(.insufficientFunds))
        #expect(evaluate(ownWaiting: 1) == .reject(.ownUsersFirst))
        #expect(evaluate(ownWaiting: 1, policy: SchedulingPolicy(ownUsersFirst: false)) == .accept)
        #expect(evaluate(load: F.load(percent: 100)) == .reject(.overloaded))
        #expect(evaluate(load: F.load(percent: 85), policy: SchedulingPolicy(loadTarget: 0.8)) == .reject(.overloaded))
        #expect(evaluate(policy: SchedulingPolicy(acceptFrequency: 0)) == .reject(.policy))
    }

    @Test func acceptanceCheckOrder() {
        // Every check failing at once reports the first in the documented order.
        let strict = SchedulingPolicy(acceptFrequency: 0, priceAccepted: Credits(credits: 5))
        #expect(evaluate(serves: false, load: F.load(percent: 200), covers: false, ownWaiting: 3, policy: strict) == .reject(.notServing))
        #expect(evaluate(load: F.load(percent: 200), covers: false, ownWaiting: 3, policy: strict) == .reject(.priceTooLow))
        #expect(evaluate(price: Credits(credits: 5), load: F.load(percent: 200), covers: false, ownWaiting: 3, policy: strict) == .reject(.insufficientFunds))
        #expect(evaluate(price: Credits(credits: 5), load: F.load(percent: 200), ownWaiting: 3, policy: strict) == .reject(.ownUsersFirst))
        #expect(evaluate(price: Credits(credits: 5), load: F.load(percent: 200), policy: strict) == .reject(.overloaded))
        #expect(evaluate(price: Credits(credits: 5), policy: strict) == .reject(.policy))
    }

    @Test func deterministicRejectionsDrawNoRandomness() {
        var prng = SeededPRNG(seed: 5)
        let before = prng
        let half = SchedulingPolicy(acceptFrequency: 0.5)
        _ = evaluate(serves: false, policy: half, prng: &prng)
        _ = evaluate(covers: false, policy: half, prng: &prng)
        _ = evaluate(load: F.load(percent: 100), policy: half, prng: &prng)
        #expect(prng == before)
        _ = evaluate(policy: half, prng: &prng)
        #expect(prng != before)
    }

    @Test func acceptFrequencyIsHonoured() {
        var prng = SeededPRNG(seed: 31)
        let policy = SchedulingPolicy(acceptFrequency: 0.3)
        let n = 20_000
        var accepted = 0
        for _ in 0..<n {
            switch evaluate(policy: policy, prng: &prng) {
            case .accept: accepted += 1
            case .reject(let r): #expect(r == .policy)
            }
        }
        F.expectBinomial(accepted, n: n, p: 0.3, "accepted")
    }

    @Test func rejectionReasonsHaveStableWireNames() {
        #expect(OfferRejectionReason.allCases.map(\.rawValue) ==
                ["notServing", "priceTooLow", "insufficientFunds", "ownUsersFirst", "overloaded", "policy",
                 "badAuthorization", "wrongExecutor", "expired", "catchingUp", "duplicateJob", "notAccepting", "duelTermsRefused"])
    }
}
