import Testing
@testable import WWWCore

/// Step 4 (DESIGN.md §6.4, §6a): failover before the first byte, error event after it.
@Suite struct SchedulerRelayTests {
    typealias F = SchedFixtures
    let a = RelayTarget.peer(F.node(10)), b = RelayTarget.peer(F.node(11)), c = RelayTarget.local("gpu-b")
    let t0 = F.t0

    func route(maxFailovers: Int = 2) -> RelayRoute { RelayRoute(maxFailovers: maxFailovers, deadline: t0 + .seconds(30)) }

    @Test func happyPath() {
        var r = route()
        r.executing(on: a)
        #expect(r.state == .awaitingFirstByte(a))
        let committed = r.firstByte(from: a)
        #expect(committed)
        #expect(r.state == .streaming(a))
        r.finished(from: a)
        #expect(r.state == .completed)
        #expect(r.failed(a, failure: .connectionLost, now: t0) == .ignore)
        #expect(r.state == .completed)
    }

    @Test func aDuelCopyWinningTheRaceTakesTheAwaitedPlace() {
        var r = route(maxFailovers: 0)
        let early = r.raced(to: b)   // nothing awaited yet
        r.executing(on: a)
        let self_ = r.raced(to: a)   // already on the route
        let won = r.raced(to: b)
        #expect(!early && !self_ && won)
        #expect(r.state == .streaming(b) && r.targets == [b])
        let late = r.raced(to: c)    // streaming: too late
        #expect(!late)
        let stale = r.failed(a, failure: .connectionLost, now: t0)
        let broken = r.failed(b, failure: .connectionLost, now: t0)
        #expect(stale == .ignore && broken == .failStream(.connectionLost))
    }

    @Test func failureBeforeFirstByteFailsOverBounded() {
        var r = route(maxFailovers: 2)
        r.executing(on: a)
        #expect(r.failed(a, failure: .connectionLost, now: t0) == .retryElsewhere(excluding: [a], failover: 1))
        #expect(r.state == .retrying)
        r.executing(on: b)
        #expect(r.failed(b, failure: .httpStatus(503), now: t0) == .retryElsewhere(excluding: [a, b], failover: 2))
        r.executing(on: c)
        #expect(r.failed(c, failure: .httpStatus(429), now: t0) == .failRequest(.httpStatus(429)))
        #expect(r.state == .failed(.httpStatus(429)))
        #expect(r.targets == [a, b, c])
        #expect(r.peersOnRoute == [F.node(10), F.node(11)])
        #expect(r.backendsOnRoute == ["gpu-b"])
        #expect(r.failovers == 2)
    }

    @Test func failureAfterFirstByteEndsTheStream() {
        var r = route()
        r.executing(on: a)
        r.firstByte(from: a)
        #expect(r.failed(a, failure: .truncated, now: t0) == .failStream(.truncated))
        #expect(r.state == .failed(.truncated))
        #expect(r.failovers == 0)
    }

    @Test func clientErrorsDoNotFailOver() {
        var r = route()
        r.executing(on: a)
        #expect(r.failed(a, failure: .httpStatus(400), now: t0) == .failRequest(.httpStatus(400)))
        #expect(RelayFailure.httpStatus(500).warrantsFailover)
        #expect(RelayFailure.idleTimeout.warrantsFailover)
        #expect(!RelayFailure.httpStatus(404).warrantsFailover)
        #expect(!RelayFailure.deadlineExceeded.warrantsFailover)
    }

    @Test func noFailoverPastTheDeadline() {
        var r = route()
        r.executing(on: a)
        #expect(r.failed(a, failure: .connectionLost, now: t0 + .seconds(30)) == .failRequest(.deadlineExceeded))
    }

    @Test func staleInputsAreIgnored() {
        var r = route()
        r.executing(on: a)
        _ = r.failed(a, failure: .idleTimeout, now: t0)
        r.executing(on: b)
        #expect(r.failed(a, failure: .connectionLost, now: t0) == .ignore)
        let staleByte = r.firstByte(from: a)
        #expect(!staleByte)
        r.finished(from: a)
        #expect(r.state == .awaitingFirstByte(b))
        #expect(r.noExecutorAvailable() == .ignore)
    }

    @Test func noExecutorForFailoverFailsWithTheLastError() {
        var r = route()
        r.executing(on: a)
        _ = r.failed(a, failure: .httpStatus(502), now: t0)
        #expect(r.noExecutorAvailable() == .failRequest(.httpStatus(502)))
        #expect(r.state == .failed(.httpStatus(502)))
    }

    @Test func zeroFailoversFailsAtOnce() {
        var r = RelayRoute(policy: SchedulingPolicy(maxFailovers: 0), deadline: t0 + .seconds(5))
        r.executing(on: a)
        #expect(r.failed(a, failure: .connectionLost, now: t0) == .failRequest(.connectionLost))
    }
}
