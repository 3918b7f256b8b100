import Testing
@testable import WWWCore

// Exact-directive tests of the node machine: one input, the exact directives out
// (DESIGN.md §2, §6). Time is NodeFx.t0 plus offsets; node 1 is the requester, 2 and 3
// providers, unless a test says otherwise.

private typealias F = NodeFx
private let t0 = F.t0
private func ms(_ n: Int64) -> Instant { t0 + .milliseconds(n) }
private let r1 = RequestID(1), r2 = RequestID(2)
private let s1 = StreamID(1), s2 = StreamID(2), s3 = StreamID(3)

private func userJob(_ r: RequestID, backend: String = "local") -> InferenceJob {
    InferenceJob(backend: backend, model: "m", owner: .user(r))
}

/// The offer node 1 sends for job #`seq` to `executor`, as the machine builds it.
private func offer(to executor: UInt8, seq: UInt64 = 1, route: [NodeID] = [], deadline: Instant = t0 + .seconds(300)) -> OfferMessage {
    OfferMessage(authorization: F.auth(requester: 1, executor: executor, seq: seq, expiresAt: deadline), route: route)
}

@Suite("Node machine: local requests")
struct NodeMachineLocalTests {
    @Test("a request with room runs locally: runInference, commit at first content, complete")
    func happyPath() {
        var m = F.standalone()
        #expect(m.handle(.userRequest(r1, F.spec()), now: t0) == [
            .setTimer(.deadline(r1), at: t0 + .seconds(300)),
            .runInference(s1, userJob(r1)),
        ])
        #expect(m.inFlight(backend: "local") == 1)
        #expect(m.handle(.stream(s1, .firstContent), now: ms(100)) == [.respond(r1, .commit(stream: s1, executor: nil))])
        #expect(m.handle(.stream(s1, .firstContent), now: ms(110)) == [])
        #expect(m.handle(.stream(s1, .finished(F.outcome())), now: ms(900)) == [
            .respond(r1, .complete(stream: s1)),
            .cancelTimer(.deadline(r1)),
            .notify(.requestEnded(r1, failure: nil)),
        ])
        #expect(m.inFlight(backend: "local") == 0)
        #expect(m.activeRequests == 0)
        // Late events about a finished request change nothing.
        #expect(m.handle(.stream(s1, .failed(.connectionLost)), now: ms(950)) == [])
        #expect(m.handle(.timer(.deadline(r1)), now: t0 + .seconds(300)) == [])
    }

    @Test("an unknown model is a 404 before anything starts")
    func unknownModel() {
        var m = F.standalone()
        #expect(m.handle(.userRequest(r1, F.spec("x")), now: t0) == [
            .respond(r1, .reject(.modelNotFound(model: "x"))),
            .notify(.requestEnded(r1, failure: .modelNotFound(model: "x"))),
        ])
    }

    @Test("a standalone node at its admission limit answers 503 at once")
    func overloaded() {
        var m = F.standalone([F.backend(capacity: 1, limit: 1)])
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)
        #expect(m.handle(.userRequest(r2, F.spec()), now: ms(1)) == [
            .setTimer(.deadline(r2), at: t0 + .seconds(300)),
            .respond(r2, .reject(.overloaded(model: "m"))),
            .cancelTimer(.deadline(r2)),
            .notify(.requestEnded(r2, failure: .overloaded(model: "m"))),
        ])
    }

    @Test("below the admission limit a busy backend queues the request in the engine")
    func queueLocal() {
        var m = F.standalone([F.backend(capacity: 1, limit: 2)])
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)
        #expect(m.handle(.userRequest(r2, F.spec()), now: ms(1)) == [
            .setTimer(.deadline(r2), at: t0 + .seconds(300)),
            .runInference(s2, userJob(r2)),
        ])
        #expect(m.localLoad(model: "m") == LoadSnapshot(running: 1, waiting: 1, capacity: 1))
    }

    @Test("a failure before the first byte fails over to another local backend; a client error does not")
    func localFailover() {
        var m = F.standalone([F.backend("a"), F.backend("b")])
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)   // runs on a (config order breaks the tie)
        #expect(m.handle(.stream(s1, .failed(.httpStatus(500))), now: ms(50)) == [
            .notify(.offer(.requester, .failover)),
            .runInference(s2, userJob(r1, backend: "b")),
        ])
        #expect(m.inFlight(backend: "a") == 0 && m.inFlight(backend: "b") == 1)
        // Every local backend has failed this request now: it fails with the last error.
        #expect(m.handle(.stream(s2, .failed(.connectionLost)), now: ms(80)) == [
            .notify(.offer(.requester, .failover)),
            .respond(r1, .reject(.stream(s2, .connectionLost))),
            .cancelTimer(.deadline(r1)),
            .notify(.requestEnded(r1, failure: .stream(s2, .connectionLost))),
        ])
        _ = m.handle(.userRequest(r2, F.spec()), now: ms(100))
        #expect(m.handle(.stream(s3, .failed(.httpStatus(400))), now: ms(120)) == [
            .respond(r2, .reject(.stream(s3, .httpStatus(400)))),
            .cancelTimer(.deadline(r2)),
            .notify(.requestEnded(r2, failure: .stream(s3, .httpStatus(400)))),
        ])
    }

    @Test("after the commit a failure ends the stream with an error (abort), never a clean end")
    func failureAfterCommitAborts() {
        var m = F.standalone()
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)
        _ = m.handle(.stream(s1, .firstContent), now: ms(10))
        #expect(m.handle(.stream(s1, .failed(.truncated)), now: ms(20)) == [
            .respond(r1, .abort(.stream(s1, .truncated))),
            .cancelTimer(.deadline(r1)),
            .notify(.requestEnded(r1, failure: .stream(s1, .truncated))),
        ])
        #expect(m.inFlight(backend: "local") == 0)
    }

    @Test("a user who leaves cancels the engine request and frees the slot")
    func userGone() {
        var m = F.standalone()
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)
        #expect(m.handle(.userGone(r1), now: ms(5)) == [
            .cancelStream(s1),
            .cancelTimer(.deadline(r1)),
            .notify(.requestEnded(r1, failure: nil)),
        ])
        #expect(m.inFlight(backend: "local") == 0)
        #expect(m.handle(.userGone(r1), now: ms(6)) == [])
    }

    @Test("the deadline rejects before the commit and aborts after it; an early timer is ignored")
    func deadline() {
        var m = F.standalone(), n = F.standalone()
        let spec = F.spec(deadline: ms(1_000))
        _ = m.handle(.userRequest(r1, spec), now: t0)
        #expect(m.handle(.timer(.deadline(r1)), now: ms(999)) == [])
        #expect(m.handle(.timer(.deadline(r1)), now: ms(1_000)) == [
            .cancelStream(s1),
            .respond(r1, .reject(.deadlineExceeded)),
            .cancelTimer(.deadline(r1)),
            .notify(.requestEnded(r1, failure: .deadlineExceeded)),
        ])
        _ = n.handle(.userRequest(r1, spec), now: t0)
        _ = n.handle(.stream(s1, .firstContent), now: ms(10))
        #expect(n.handle(.timer(.deadline(r1)), now: ms(1_000)) == [
            .cancelStream(s1),
            .respond(r1, .abort(.deadlineExceeded)),
            .cancelTimer(.deadline(r1)),
            .notify(.requestEnded(r1, failure: .deadlineExceeded)),
        ])
    }

    @Test("a backend known to be down takes no requests; it takes them again on recovery")
    func health() {
        var m = F.standalone()
        #expect(m.handle(.backendHealth(backend: "local", healthy: false, kvCacheUsage: nil), now: t0) == [])
        #expect(m.handle(.userRequest(r1, F.spec()), now: ms(1)) == [
            .setTimer(.deadline(r1), at: t0 + .seconds(300)),
            .respond(r1, .reject(.backendUnavailable(model: "m"))),
            .cancelTimer(.deadline(r1)),
            .notify(.requestEnded(r1, failure: .backendUnavailable(model: "m"))),
        ])
        _ = m.handle(.backendHealth(backend: "local", healthy: true, kvCacheUsage: 0.2), now: ms(2))
        #expect(m.handle(.userRequest(r2, F.spec()), now: ms(3)).contains(.runInference(s1, userJob(r2))))
    }
}

@Suite("Node machine: offloading (requester)")
struct NodeMachineRequesterTests {
    /// Node 1 without backends, knowing 2 (stake 10) and 3 (stake 0: offered after 2).
    func requester(queueTimeout: Duration = .seconds(60), maxPending: Int = 256) -> NodeMachine {
        var m = F.networked(1, queueTimeout: queueTimeout, maxPending: maxPending)
        _ = F.learn(&m, [F.record(2, stake: 10), F.record(3, stake: 0)])
        return m
    }

    @Test("offload: job sequence persisted first, offer to the staked peer with its signed authorization")
    func offers() {
        var m = requester()
        #expect(m.handle(.userRequest(r1, F.spec()), now: t0) == [
            .setTimer(.deadline(r1), at: t0 + .seconds(300)),
            .persistJobSequence(4),
            .openOffer(s1, to: F.id(2), address: F.addr(2), offer(to: 2), request: r1),
            .setTimer(.offer(s1), at: t0 + .seconds(2)),
        ])
        #expect(m.spendable == Credits(credits: 99))
    }

    @Test("rejected → next candidate; accepted → commit at first content with the executor; complete")
    func rejectThenAccept() {
        var m = requester()
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)
        let job = F.job(1, 1)
        let no = F.answer(job: job, requester: 1, executor: 2, reason: .overloaded, at: ms(100))
        #expect(m.handle(.peerMessage(.offerAnswer(no), from: F.id(2), fromAddress: F.addr(2)), now: ms(100)) == [
            .cancelTimer(.offer(s1)),
            .notify(.offer(.requester, .rejected(.overloaded))),
            .cancelStream(s1),
            .openOffer(s2, to: F.id(3), address: F.addr(3), offer(to: 3), request: r1),
            .setTimer(.offer(s2), at: ms(2_100)),
        ])
        let yes = F.answer(job: job, requester: 1, executor: 3, reason: nil, at: ms(200))
        #expect(m.handle(.peerMessage(.offerAnswer(yes), from: F.id(3), fromAddress: F.addr(3)), now: ms(200)) == [
            .cancelTimer(.offer(s2)),
            .notify(.offer(.requester, .accepted)),
        ])
        // A repeated or stale answer changes nothing.
        #expect(m.handle(.peerMessage(.offerAnswer(yes), from: F.id(3), fromAddress: F.addr(3)), now: ms(210)) == [])
        #expect(m.handle(.stream(s2, .firstContent), now: ms(400)) == [.respond(r1, .commit(stream: s2, executor: F.id(3)))])
        #expect(m.handle(.stream(s2, .finished(F.outcome())), now: ms(900)) == [
            .respond(r1, .complete(stream: s2)),
            .cancelTimer(.deadline(r1)),
            .notify(.requestEnded(r1, failure: nil)),
        ])
        #expect(m.spendable == Credits(credits: 100))   // the receipt, not the relay, moves credits
    }

    @Test("answers that are not the executor's own are refused")
    func forgedAnswers() {
        var m = requester()
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)
        let job = F.job(1, 1)
        // Signed by 3 but claiming to be 2's answer, and sent by 2.
        var forged = F.answer(job: job, requester: 1, executor: 2, reason: nil, at: ms(1))
        forged.signer = F.id(3)
        #expect(m.handle(.peerMessage(.offerAnswer(forged), from: F.id(2), fromAddress: F.addr(2)), now: ms(1)) == [
            .notify(.peerMessageRefused(.offerAnswer, from: F.id(2), reason: "answer not signed by its executor")),
        ])
        // A valid answer relayed by someone else.
        let relayed = F.answer(job: job, requester: 1, executor: 2, reason: nil, at: ms(2))
        #expect(m.handle(.peerMessage(.offerAnswer(relayed), from: F.id(3), fromAddress: F.addr(3)), now: ms(2)) == [
            .notify(.peerMessageRefused(.offerAnswer, from: F.id(3), reason: "answer not signed by its executor")),
        ])
    }

    @Test("an offer's deadline moves on to the next candidate; an early timer is ignored")
    func offerTimeout() {
        var m = requester()
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)
        #expect(m.handle(.timer(.offer(s1)), now: ms(1_999)) == [])
        #expect(m.handle(.timer(.offer(s1)), now: ms(2_000)) == [
            .cancelStream(s1),
            .notify(.offer(.requester, .timedOut)),
            .openOffer(s2, to: F.id(3), address: F.addr(3), offer(to: 3), request: r1),
            .setTimer(.offer(s2), at: ms(4_000)),
        ])
    }

    @Test("a refused connection moves on at once, without waiting for the offer timeout")
    func unreachable() {
        var m = requester()
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)
        #expect(m.handle(.stream(s1, .failed(.connectionLost)), now: ms(3)) == [
            .cancelTimer(.offer(s1)),
            .cancelStream(s1),
            .notify(.offer(.requester, .unreachable)),
            .openOffer(s2, to: F.id(3), address: F.addr(3), offer(to: 3), request: r1),
            .setTimer(.offer(s2), at: ms(2_003)),
        ])
    }

    /// Regression: the round used to be passed on before `unreachable` moved it, so the next
    /// executor's accept was ignored and the request hung until its deadline (while the
    /// executor ran the job and was paid).
    @Test("after an unreachable executor the next one's accept is honoured and the answer relayed")
    func acceptAfterUnreachable() {
        var m = requester()
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)
        _ = m.handle(.stream(s1, .failed(.connectionLost)), now: ms(3))   // offers s2 to node 3
        let yes = F.answer(job: F.job(1, 1), requester: 1, executor: 3, reason: nil, at: ms(10))
        #expect(m.handle(.peerMessage(.offerAnswer(yes), from: F.id(3), fromAddress: F.addr(3)), now: ms(10)) == [
            .cancelTimer(.offer(s2)),
            .notify(.offer(.requester, .accepted)),
        ])
        #expect(m.handle(.stream(s2, .firstContent), now: ms(50)) == [.respond(r1, .commit(stream: s2, executor: F.id(3)))])
    }

    @Test("an executor that fails before the first byte is excluded; the job goes elsewhere with its route")
    func failoverAcrossPeers() {
        var m = requester()
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)
        let job = F.job(1, 1)
        _ = m.handle(.peerMessage(.offerAnswer(F.answer(job: job, requester: 1, executor: 2, reason: nil, at: ms(10))),
                                  from: F.id(2), fromAddress: F.addr(2)), now: ms(10))
        #expect(m.handle(.stream(s1, .failed(.connectionLost)), now: ms(500)) == [
            .notify(.offer(.requester, .failover)),
            .openOffer(s2, to: F.id(3), address: F.addr(3), offer(to: 3, route: [F.id(2)]), request: r1),
            .setTimer(.offer(s2), at: ms(2_500)),
        ])
        #expect(m.spendable == Credits(credits: 99))
    }

    @Test("no executor takes it: the request waits, and capacity showing up in gossip wakes it")
    func waitsAndWakes() {
        var m = requester()
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)
        let job = F.job(1, 1)
        _ = m.handle(.peerMessage(.offerAnswer(F.answer(job: job, requester: 1, executor: 2, reason: .overloaded, at: ms(10))),
                                  from: F.id(2), fromAddress: F.addr(2)), now: ms(10))
        #expect(m.handle(.peerMessage(.offerAnswer(F.answer(job: job, requester: 1, executor: 3, reason: .policy, at: ms(20))),
                                      from: F.id(3), fromAddress: F.addr(3)), now: ms(20)) == [
            .cancelTimer(.offer(s2)),
            .notify(.offer(.requester, .rejected(.policy))),
            .cancelStream(s2),
            .notify(.offer(.requester, .fallback(.candidatesExhausted))),
            .setTimer(.retry(r1), at: ms(220)),
        ])
        #expect(m.waitingRequests == 1)
        #expect(m.spendable == Credits(credits: 100))   // nothing reserved while waiting
        // Node 2 publishes a record with room: the waiting request is offered again at once.
        let fresh = F.record(2, stake: 10, incarnation: 2)
        var view = fresh.value
        view.status = .alive
        #expect(F.learn(&m, [fresh], now: ms(100)) == [
            .notify(.membership(.memberChanged(view))),
            .cancelTimer(.retry(r1)),
            .openOffer(s3, to: F.id(2), address: F.addr(2), offer(to: 2), request: r1),
            .setTimer(.offer(s3), at: ms(2_100)),
        ])
        #expect(m.waitingRequests == 0)
    }

    @Test("the waiting request fails only at its placement deadline, with pauses that grow")
    func placementDeadline() {
        var m = F.networked(1, queueTimeout: .milliseconds(500))
        _ = F.learn(&m, [F.record(2)])
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)
        let job = F.job(1, 1)
        let busy = { (at: Instant) in F.answer(job: job, requester: 1, executor: 2, reason: .overloaded, at: at) }
        #expect(F.sansMembership(m.handle(.peerMessage(.offerAnswer(busy(ms(10))), from: F.id(2), fromAddress: F.addr(2)), now: ms(10))).last
                == .setTimer(.retry(r1), at: ms(210)))
        #expect(m.handle(.timer(.retry(r1)), now: ms(210)) == [
            .openOffer(s2, to: F.id(2), address: F.addr(2), offer(to: 2), request: r1),
            .setTimer(.offer(s2), at: ms(500)),   // the offer ends with the placement deadline
        ])
        #expect(m.handle(.peerMessage(.offerAnswer(busy(ms(220))), from: F.id(2), fromAddress: F.addr(2)), now: ms(220)).last
                == .setTimer(.retry(r1), at: ms(500)))   // 400 ms, capped by the deadline
        #expect(m.handle(.timer(.retry(r1)), now: ms(500)) == [
            .notify(.offer(.requester, .fallback(.deadlineExceeded))),
            .respond(r1, .reject(.noCapacity(model: "m"))),
            .cancelTimer(.deadline(r1)),
            .notify(.requestEnded(r1, failure: .noCapacity(model: "m"))),
        ])
        #expect(m.backoff(passes: 1) == .milliseconds(200))
        #expect(m.backoff(passes: 4) == .seconds(1))
        #expect(m.backoff(passes: 60) == .seconds(1))
    }

    @Test("the pending queue is bounded: past it, 503 at once")
    func queueFull() {
        var m = requester(maxPending: 1)
        let job1 = F.job(1, 1), job2 = F.job(1, 2)
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)
        _ = m.handle(.peerMessage(.offerAnswer(F.answer(job: job1, requester: 1, executor: 2, reason: .overloaded, at: ms(1))), from: F.id(2), fromAddress: F.addr(2)), now: ms(1))
        _ = m.handle(.peerMessage(.offerAnswer(F.answer(job: job1, requester: 1, executor: 3, reason: .overloaded, at: ms(2))), from: F.id(3), fromAddress: F.addr(3)), now: ms(2))
        #expect(m.waitingRequests == 1)
        _ = job2
        #expect(m.handle(.userRequest(r2, F.spec()), now: ms(3)) == [
            .setTimer(.deadline(r2), at: t0 + .seconds(300)),
            .respond(r2, .reject(.queueFull)),
            .cancelTimer(.deadline(r2)),
            .notify(.requestEnded(r2, failure: .queueFull)),
        ])
    }

    @Test("first come, first served: a new request queues behind older waiting ones, which go first")
    func fifo() {
        var m = requester()
        let job1 = F.job(1, 1)
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)
        _ = m.handle(.peerMessage(.offerAnswer(F.answer(job: job1, requester: 1, executor: 2, reason: .overloaded, at: ms(1))), from: F.id(2), fromAddress: F.addr(2)), now: ms(1))
        _ = m.handle(.peerMessage(.offerAnswer(F.answer(job: job1, requester: 1, executor: 3, reason: .overloaded, at: ms(2))), from: F.id(3), fromAddress: F.addr(3)), now: ms(2))
        #expect(m.waitingRequests == 1)
        #expect(m.handle(.userRequest(r2, F.spec()), now: ms(30)) == [
            .setTimer(.deadline(r2), at: t0 + .seconds(300)),
            .setTimer(.retry(r2), at: ms(230)),
            .cancelTimer(.retry(r1)),
            .openOffer(s3, to: F.id(2), address: F.addr(2), offer(to: 2), request: r1),
            .setTimer(.offer(s3), at: ms(2_030)),
        ])
        // r2's own timer gives the turn to r1 again while r1 waits; r2 keeps its place.
        #expect(m.waitingRequests == 1)
    }

    @Test("a pinned request never leaves; a node that cannot pay says so")
    func pinnedAndBroke() {
        var m = requester()
        #expect(m.handle(.userRequest(r1, F.spec(allowOffload: false)), now: t0) == [
            .respond(r1, .reject(.offloadForbidden(model: "m"))),
            .notify(.requestEnded(r1, failure: .offloadForbidden(model: "m"))),
        ])
        var poor = F.networked(6)   // node 6 has no grant
        _ = F.learn(&poor, [F.record(2)])
        #expect(poor.handle(.userRequest(r1, F.spec()), now: t0) == [
            .setTimer(.deadline(r1), at: t0 + .seconds(300)),
            .respond(r1, .reject(.cannotPay(balance: .zero, price: F.price))),
            .cancelTimer(.deadline(r1)),
            .notify(.requestEnded(r1, failure: .cannotPay(balance: .zero, price: F.price))),
        ])
        var lonely = F.networked(1)
        #expect(lonely.handle(.userRequest(r1, F.spec()), now: t0) == [
            .respond(r1, .reject(.noPeerServes(model: "m"))),
            .notify(.requestEnded(r1, failure: .noPeerServes(model: "m"))),
        ])
    }

    @Test("job sequence numbers are persisted a block ahead, before first use")
    func jobSequenceBlocks() {
        var m = F.networked(1, jobFloor: 10)   // block size 4 in the fixture
        var out: [NodeDirective] = []
        let jobs = (0..<5).map { _ in m.net!.newJob(into: &out) }
        #expect(out == [.persistJobSequence(14), .persistJobSequence(18)])
        #expect(jobs == (11...15).map { F.job(1, UInt64($0)) })
    }
}

@Suite("Node machine: executor")
struct NodeMachineExecutorTests {
    /// Node 2 with one slot, knowing 1 (alive) and having heard its digest.
    func executor(policy: SchedulingPolicy = F.policy(), capacity: Int = 1) -> NodeMachine {
        var m = F.networked(2, backends: [F.backend(capacity: capacity, limit: 2 * capacity)], policy: policy)
        _ = F.learn(&m, [F.record(1, models: [], accepting: false), F.record(4, models: [], accepting: false)])
        _ = F.heardFrom(&m, 1)
        return m
    }

    func send(_ m: inout NodeMachine, _ auth: Signed<PaymentAuthorization>, from: UInt8 = 1, at: Instant) -> [NodeDirective] {
        m.handle(.peerMessage(.offer(OfferMessage(authorization: auth)), from: F.id(from), fromAddress: F.addr(from)), now: at)
    }

    @Test("accept: signed answer, run the job, and once delivered persist and push the receipt")
    func acceptRunReceipt() {
        var m = executor()
        let auth = F.auth(requester: 1, executor: 2, seq: 7, expiresAt: ms(60_000))
        let yes = F.answer(job: F.job(1, 7), requester: 1, executor: 2, reason: nil, at: ms(5))
        #expect(send(&m, auth, at: ms(5)) == [
            .send(.offerAnswer(yes), to: F.id(1), address: F.addr(1)),
            .runInference(s1, InferenceJob(backend: "local", model: "m", owner: .peer(job: F.job(1, 7), requester: F.id(1)))),
            .notify(.offer(.executor, .accepted)),
        ])
        #expect(m.acceptedJobs == 1)
        #expect(m.handle(.stream(s1, .firstContent), now: ms(300)) == [])
        let receipt = JobReceipt(authorization: auth, responseHash: F.outcome().responseHash, inputTokens: 3, outputTokens: 5)
        let event = LedgerEvent(authorSeq: 1, createdAt: ms(1_000), body: .jobReceipt(receipt), signer: F.signer(2), crypto: F.crypto)
        let push = LedgerSyncMessage(role: .push, digest: [F.id(2): 1], events: [event],
                                     fingerprints: [F.id(2): Ledger.fold(Ledger.fingerprintSeed, event.id)])
        // The push goes to the requester and the fanout (node 4, the only other alive peer).
        let out = m.handle(.stream(s1, .finished(F.outcome())), now: ms(1_000))
        #expect(out.first == .persistEvents([event]))
        #expect(out.dropFirst().prefix(2).contains(.send(.ledgerSync(push), to: F.id(1), address: F.addr(1))))
        #expect(out.dropFirst().prefix(2).contains(.send(.ledgerSync(push), to: F.id(4), address: F.addr(4))))
        #expect(out.last == .notify(.receiptRecorded(job: F.job(1, 7), requester: F.id(1))))
        #expect(out.count == 4)
        #expect(m.ledger?.balance(of: F.id(2)) == Credits(credits: 101))
        #expect(m.ledger?.balance(of: F.id(1)) == Credits(credits: 99))
        #expect(m.acceptedJobs == 0)
        // The same job again is a duplicate, even after it ended.
        let again = F.answer(job: F.job(1, 7), requester: 1, executor: 2, reason: .duplicateJob, at: ms(1_100))
        #expect(send(&m, auth, at: ms(1_100)) == [
            .send(.offerAnswer(again), to: F.id(1), address: F.addr(1)),
            .notify(.offer(.executor, .rejected(.duplicateJob))),
        ])
    }

    @Test("a failed or abandoned job frees its slot and is never receipted")
    func abandoned() {
        var m = executor()
        _ = send(&m, F.auth(requester: 1, executor: 2, seq: 7, expiresAt: ms(60_000)), at: ms(5))
        #expect(m.handle(.stream(s1, .failed(.connectionLost)), now: ms(200)) == [.cancelStream(s1)])
        #expect(m.acceptedJobs == 0)
        #expect(m.inFlight(backend: "local") == 0)
        #expect(m.ledger?.chainedCount == 0)
    }

    @Test("a job whose authorization expired while it ran is abandoned by the period sweep")
    func expiredJobsAreSwept() {
        var m = executor()
        _ = send(&m, F.auth(requester: 1, executor: 2, seq: 7, expiresAt: ms(500)), at: ms(5))
        #expect(m.acceptedJobs == 1)
        let out = m.handle(.timer(.period), now: ms(1_000))
        #expect(out.first == .cancelStream(s1))
        #expect(out.contains(.setTimer(.period, at: ms(2_000))))
        #expect(m.acceptedJobs == 0)
        #expect(m.inFlight(backend: "local") == 0)
        // The engine's late end changes nothing: no receipt for an expired authorization.
        #expect(m.handle(.stream(s1, .finished(F.outcome())), now: ms(1_100)) == [])
    }

    @Test("every rejection is a typed reason in a signed answer", arguments: [
        ("bad authorization", OfferRejectionReason.badAuthorization),
        ("wrong executor", .wrongExecutor),
        ("expired", .expired),
        ("insufficient funds", .insufficientFunds),
        ("not serving", .notServing),
        ("price too low", .priceTooLow),
        ("overloaded", .overloaded),
        ("policy", .policy),
    ])
    func rejections(_ label: String, _ reason: OfferRejectionReason) {
        var policy = F.policy()
        if reason == .priceTooLow { policy.priceAccepted = Credits(credits: 2) }
        if reason == .policy { policy.acceptFrequency = 0 }
        var m = executor(policy: policy)
        var from: UInt8 = 1
        var auth = F.auth(requester: 1, executor: 2, seq: 9, expiresAt: ms(60_000))
        switch reason {
        case .badAuthorization: auth = F.auth(requester: 1, executor: 2, seq: 9, expiresAt: ms(60_000), signedBy: 3)
        case .wrongExecutor: auth = F.auth(requester: 1, executor: 3, seq: 9, expiresAt: ms(60_000))
        case .expired: auth = F.auth(requester: 1, executor: 2, seq: 9, expiresAt: ms(5))
        case .insufficientFunds:
            from = 6   // no grant: balance 0
            auth = F.auth(requester: 6, executor: 2, seq: 9, expiresAt: ms(60_000))
        case .notServing: auth = F.auth(requester: 1, executor: 2, seq: 9, model: "x", expiresAt: ms(60_000))
        case .overloaded: _ = send(&m, F.auth(requester: 1, executor: 2, seq: 8, expiresAt: ms(60_000)), at: ms(1))
        default: break
        }
        let answer = Signed(OfferAnswer(job: auth.value.job, requester: F.id(from), executor: F.id(2), reason: reason, answeredAt: ms(5)),
                            by: F.signer(2))
        #expect(send(&m, auth, from: from, at: ms(5)) == [
            .send(.offerAnswer(answer), to: F.id(from), address: F.addr(from)),
            .notify(.offer(.executor, .rejected(reason))),
        ], "\(label)")
    }

    @Test("credits promised to running jobs count against the requester's balance")
    func promisedCredits() {
        var g = F.genesis([1, 2])
        g.grants[F.id(1)] = Credits(credits: 1)
        var m = F.networked(2, backends: [F.backend(capacity: 4, limit: 8)], genesis: g)
        _ = F.learn(&m, [F.record(1, models: [], accepting: false)])
        _ = F.heardFrom(&m, 1)
        _ = send(&m, F.auth(requester: 1, executor: 2, seq: 1, expiresAt: ms(60_000)), at: ms(1))
        let second = send(&m, F.auth(requester: 1, executor: 2, seq: 2, expiresAt: ms(60_000)), at: ms(2))
        #expect(second.last == .notify(.offer(.executor, .rejected(.insufficientFunds))))
    }

    @Test("a node that has not heard any digest while peers are alive signs nothing: catchingUp")
    func catchingUp() {
        var m = F.networked(2, backends: [F.backend()])
        _ = F.learn(&m, [F.record(1, models: [], accepting: false)])
        #expect(!m.readyToAppend)
        let auth = F.auth(requester: 1, executor: 2, seq: 3, expiresAt: ms(60_000))
        #expect(send(&m, auth, at: ms(5)).last == .notify(.offer(.executor, .rejected(.catchingUp))))
        _ = F.heardFrom(&m, 1, now: ms(6))
        #expect(m.readyToAppend)
        // A digest claiming more of our own chain than we hold, without proof, is refused
        // (anyone could send one and stop this node from signing).
        #expect(m.handle(.peerMessage(.ledgerSync(LedgerSyncMessage(role: .push, digest: [F.id(2): 3])), from: F.id(9), fromAddress: F.addr(9)), now: ms(7))
                == [.notify(.peerMessageRefused(.ledger, from: F.id(9), reason: "claims more of this node's own chain than it proves"))])
        #expect(m.readyToAppend)
        // With the claimed head of our own chain, signed by us, it blocks signing again.
        let receipt = JobReceipt(authorization: F.auth(requester: 1, executor: 2, seq: 1, expiresAt: ms(60_000)),
                                 responseHash: F.outcome().responseHash, inputTokens: 1, outputTokens: 1)
        let head = LedgerEvent(authorSeq: 3, createdAt: ms(1), body: .jobReceipt(receipt), signer: F.signer(2), crypto: F.crypto)
        _ = m.handle(.peerMessage(.ledgerSync(LedgerSyncMessage(role: .push, digest: [F.id(2): 3], recipientHead: head)),
                                  from: F.id(1), fromAddress: F.addr(1)), now: ms(8))
        #expect(!m.readyToAppend)
        #expect(m.ledger?.bufferedCount == 1)   // the proof is kept until the gap fills
    }

    @Test("a ledger request from a stranger is applied but never answered (no reflection)")
    func strangersGetNoReplies() {
        var m = executor()
        let request = LedgerSyncMessage(role: .request, digest: [:])
        // Node 9 is not a member; it names node 1's address as its own.
        #expect(m.handle(.peerMessage(.ledgerSync(request), from: F.id(9), fromAddress: F.addr(1)), now: ms(1)) == [])
        // A member is answered, at the address of its own signed record.
        let out = m.handle(.peerMessage(.ledgerSync(request), from: F.id(1), fromAddress: "192.0.2.1:1"), now: ms(2))
        #expect(out.count == 1)
        if case .send(.ledgerSync(let reply), let to, let address)? = out.first {
            #expect(reply.role == .reply && to == F.id(1) && address == F.addr(1))
        } else {
            Issue.record("expected a reply to the member")
        }
    }
}

@Suite("NodeMachine: the ledger's events live in the driver's store")
struct NodeMachineStoreTests {
    /// Two receipts by node 3 (requester 1) as a push from member 1.
    private func machineWithNode3Chain() -> (NodeMachine, [LedgerEvent]) {
        var m = F.networked(2, backends: [F.backend()])
        _ = F.learn(&m, [F.record(1)])
        let events = (1...2).map { i in
            LedgerEvent(authorSeq: UInt64(i), createdAt: ms(Int64(i)),
                        body: .jobReceipt(JobReceipt(authorization: F.auth(requester: 1, executor: 3, seq: UInt64(i), expiresAt: ms(60_000)),
                                                     responseHash: F.outcome().responseHash, inputTokens: 1, outputTokens: 1)),
                        signer: F.signer(3), crypto: F.crypto)
        }
        _ = m.handle(.peerMessage(.ledgerSync(LedgerSyncMessage(role: .push, digest: [:], events: events)),
                                  from: F.id(1), fromAddress: F.addr(1)), now: ms(3))
        return (m, events)
    }

    @Test("a reply names the ranges the requester lacks; the driver fills them from its store")
    func repliesNameRanges() {
        var (m, _) = machineWithNode3Chain()
        let out = m.handle(.peerMessage(.ledgerSync(LedgerSyncMessage(role: .request, digest: [F.id(3): 1])),
                                        from: F.id(1), fromAddress: F.addr(1)), now: ms(4))
        let reply = LedgerSyncMessage(role: .reply, digest: [F.id(3): 2], fingerprints: m.ledger!.fingerprints())
        #expect(m.ledger!.fingerprints().count == 1)
        #expect(out == [.sendLedgerSync(reply, fill: [LedgerRange(author: F.id(3), afterSeq: 1, count: 1)], to: F.id(1), address: F.addr(1))])
        // Nothing lacking: a plain reply.
        #expect(m.handle(.peerMessage(.ledgerSync(LedgerSyncMessage(role: .request, digest: [F.id(3): 2])),
                                      from: F.id(1), fromAddress: F.addr(1)), now: ms(5))
                == [.send(.ledgerSync(reply), to: F.id(1), address: F.addr(1))])
    }

    @Test("a conflict the store found is proven, excluded and pushed to peers")
    func storedConflictIsProvenAndPushed() {
        var (m, events) = machineWithNode3Chain()
        let rival = LedgerEvent(authorSeq: 1, createdAt: ms(1),
                                body: .jobReceipt(JobReceipt(authorization: F.auth(requester: 4, executor: 3, seq: 9, expiresAt: ms(60_000)),
                                                             responseHash: F.outcome().responseHash, inputTokens: 1, outputTokens: 1)),
                                signer: F.signer(3), crypto: F.crypto)
        let proof = EquivocationProof(events[0], rival)
        let out = m.handle(.storedConflict(stored: events[0], written: rival), now: ms(6))
        let push = LedgerSyncMessage(role: .push, digest: [F.id(3): 2], events: [proof.first, proof.second],
                                     proofs: [proof.first, proof.second])
        #expect(out == [.notify(.equivocation(author: F.id(3), authorSeq: 1)),
                        .send(.ledgerSync(push), to: F.id(1), address: F.addr(1))])
        #expect(m.ledger?.isEquivocating(F.id(3)) == true)
        #expect(m.handle(.storedConflict(stored: events[0], written: rival), now: ms(7)) == [])
    }
}

@Suite("NodeMachine: an executor's side of a duel")
struct NodeMachineDuelExecutorTests {
    private func executor() -> NodeMachine {
        var m = F.networked(2, backends: [F.backend()])   // declares stake 10 → signs bonds up to 5
        _ = F.learn(&m, [F.record(1, models: [], accepting: false)])
        _ = F.heardFrom(&m, 1)
        return m
    }

    private func duelOffer(bond: Credits, judges: [UInt8] = [4, 5, 6], partner: UInt8 = 3) -> (OfferMessage, Signed<PaymentAuthorization>) {
        let auth = F.auth(requester: 1, executor: 2, seq: 7, expiresAt: ms(60_000))
        return (OfferMessage(authorization: auth, duel: DuelTerms(judges: judges.map(F.id).sorted(), bond: bond, partner: F.id(partner))), auth)
    }

    @Test("an accepted duel offer's signed answer carries the executor's signed acceptance of the terms")
    func acceptanceRidesOnTheAnswer() {
        var m = executor()
        let (offer, auth) = duelOffer(bond: Credits(credits: 5))
        let out = m.handle(.peerMessage(.offer(offer), from: F.id(1), fromAddress: F.addr(1)), now: ms(10))
        let acceptance = Signed(DuelAcceptance(job: auth.value.job, requester: F.id(1), executor: F.id(2),
                                               judges: [4, 5, 6].map(F.id).sorted(), bond: Credits(credits: 5),
                                               expiresAt: ms(60_000)), by: F.signer(2))
        let answer = OfferAnswer(job: auth.value.job, requester: F.id(1), executor: F.id(2), reason: nil, answeredAt: ms(10),
                                 duelAcceptance: acceptance)
        #expect(out.first == .send(.offerAnswer(Signed(answer, by: F.signer(2))), to: F.id(1), address: F.addr(1)))
        #expect(out.contains(.notify(.offer(.executor, .accepted))))
        // The requester's duel takes that acceptance as it is.
        var duel = Duel(job: auth.value.job, requester: F.id(1), first: F.id(2), second: F.id(3),
                        judges: [4, 5, 6].map(F.id).sorted(), judgingTimeout: .seconds(30))
        #expect(duel.accepted(acceptance, now: ms(11), crypto: F.crypto) == [])
    }

    static let badTerms: [(Credits, [UInt8], UInt8)] = [
        (Credits(credits: 6), [4, 5, 6], 3),
        (Credits(credits: 1), [2, 5, 6], 3),
        (Credits(credits: 1), [3, 5, 6], 3),
        (Credits(credits: 1), [4, 5], 3),
        (Credits(micro: -1), [4, 5, 6], 3),
        (Credits(credits: 1), [4, 5, 6], 2),
    ]

    @Test("a bond above loserBondShare of the stake, or a panel naming a party, is refused", arguments: 0..<6)
    func refusedTerms(index: Int) {
        let (bond, judges, partner) = Self.badTerms[index]
        var m = executor()
        let (offer, auth) = duelOffer(bond: bond, judges: judges, partner: partner)
        let out = m.handle(.peerMessage(.offer(offer), from: F.id(1), fromAddress: F.addr(1)), now: ms(10))
        let answer = OfferAnswer(job: auth.value.job, requester: F.id(1), executor: F.id(2), reason: .duelTermsRefused, answeredAt: ms(10))
        #expect(out == [.send(.offerAnswer(Signed(answer, by: F.signer(2))), to: F.id(1), address: F.addr(1)),
                        .notify(.offer(.executor, .rejected(.duelTermsRefused)))])
    }
}

@Suite("NodeMachine: a requester's duel, directive by directive")
struct NodeMachineDuelRequesterTests {
    private func requester(judges: Bool = true) -> NodeMachine {
        var g = [NodeID: Credits]()
        for n: UInt8 in 1...6 { g[F.id(n)] = Credits(credits: 100) }
        let genesis = Genesis(networkID: "test", parameters: GenesisParameters(duelProbability: 1_000_000), grants: g)
        let setup = NetworkSetup(genesis: genesis, signer: F.signer(1), crypto: F.crypto, address: F.addr(1), seeds: [],
                                 jobSequenceBlock: 4)
        var m = NodeMachine(config: NodeMachineConfig(policy: F.policy(), duel: DuelConfig(runDuels: true, judgingTimeout: .seconds(30))),
                            network: setup, seed: 1)
        _ = m.handle(.start, now: t0)
        _ = F.learn(&m, [F.record(2), F.record(3)] + [4, 5, 6].map { F.record($0, models: [], accepting: false, judging: judges) })
        _ = F.heardFrom(&m, 2)
        return m
    }

    private func answer(_ job: JobID, executor e: NodeID, signer: FakeSigner, terms: DuelTerms, at: Instant) -> Signed<OfferAnswer> {
        let acc = Signed(DuelAcceptance(job: job, requester: F.id(1), executor: e, judges: terms.judges, bond: terms.bond,
                                        expiresAt: t0 + .seconds(300)), by: signer)
        return Signed(OfferAnswer(job: job, requester: F.id(1), executor: e, reason: nil, answeredAt: at, duelAcceptance: acc), by: signer)
    }

    @Test("a duel job: two offers with terms, both answers kept, the panel asked, the settlement appended")
    func wholeDuel() {
        var m = requester()
        let job = F.job(1, 1)
        let out = F.sansMembership(m.handle(.userRequest(r1, F.spec()), now: ms(1)))
        guard let started = out.first(where: { if case .notify(.duelStarted) = $0 { true } else { false } }),
              case .notify(.duelStarted(_, let e1, let e2)) = started else { Issue.record("no duel started: \(out)"); return }
        #expect(Set([e1, e2]) == Set([F.id(2), F.id(3)]))
        let panel = [4, 5, 6].map(F.id).sorted()
        let n1: UInt8 = e1 == F.id(2) ? 2 : 3, n2: UInt8 = n1 == 2 ? 3 : 2
        let terms1 = DuelTerms(judges: panel, bond: Credits(credits: 5), partner: e2)
        let terms2 = DuelTerms(judges: panel, bond: Credits(credits: 5), partner: e1)
        let sShadow = StreamID(1), sFirst = StreamID(2)
        let offerDeadline = ms(1) + F.policy().offerTimeout
        let expectedTail: [NodeDirective] = [
            .notify(.duelStarted(job: job, first: e1, second: e2)),
            .openOffer(sShadow, to: e2, address: F.addr(n2),
                       OfferMessage(authorization: F.auth(requester: 1, executor: n2, seq: 1, expiresAt: t0 + .seconds(300)), duel: terms2),
                       request: r1),
            .setTimer(.offer(sShadow), at: offerDeadline),
            .openOffer(sFirst, to: e1, address: F.addr(n1),
                       OfferMessage(authorization: F.auth(requester: 1, executor: n1, seq: 1, expiresAt: t0 + .seconds(300)), duel: terms1),
                       request: r1),
            .setTimer(.offer(sFirst), at: offerDeadline),
        ]
        #expect(Array(out.suffix(expectedTail.count)) == expectedTail)
        // Both accept with their signed acceptances: each answer's text is kept.
        #expect(m.handle(.peerMessage(.offerAnswer(answer(job, executor: e2, signer: F.signer(n2), terms: terms2, at: ms(5))),
                                      from: e2, fromAddress: F.addr(n2)), now: ms(5))
                == [.cancelTimer(.offer(sShadow)), .notify(.offer(.requester, .accepted)), .collectAnswer(sShadow, job: job)])
        #expect(m.handle(.peerMessage(.offerAnswer(answer(job, executor: e1, signer: F.signer(n1), terms: terms1, at: ms(6))),
                                      from: e1, fromAddress: F.addr(n1)), now: ms(6))
                == [.cancelTimer(.offer(sFirst)), .notify(.offer(.requester, .accepted)), .collectAnswer(sFirst, job: job)])
        // The user gets the first copy; the second copy finishing asks the panel.
        #expect(m.handle(.stream(sFirst, .firstContent), now: ms(10)) == [.respond(r1, .commit(stream: sFirst, executor: e1))])
        // The second copy's content, after the user's, is read to its end for the judges.
        #expect(m.handle(.stream(sShadow, .firstContent), now: ms(15)) == [.drainStream(sShadow)])
        let done = m.handle(.stream(sFirst, .finished(F.outcome("one"))), now: ms(20))
        #expect(done.contains(.respond(r1, .complete(stream: sFirst))))
        #expect(!done.contains { if case .requestJudgements = $0 { true } else { false } })
        let h1 = F.outcome("one").responseHash, h2 = F.outcome("two").responseHash
        let pair = DuelPair.hash(job: job, first: e1, firstResponse: h1, second: e2, secondResponse: h2, crypto: F.crypto)
        let spec = DuelPairSpec(job: job, requester: F.id(1), first: e1, second: e2, firstResponseHash: h1,
                                secondResponseHash: h2, pairHash: pair, judges: panel)
        #expect(m.handle(.stream(sShadow, .finished(F.outcome("two"))), now: ms(30))
                == [.requestJudgements(spec, judges: [F.id(4): F.addr(4), F.id(5): F.addr(5), F.id(6): F.addr(6)]),
                    .setTimer(.duel(job), at: ms(30) + .seconds(30))])
        // Verdicts (stake at risk = the judge's stake, 10): two for the first answer, one tie.
        for (j, o, s) in [(UInt8(4), PairwisePreference.a, PairwisePreference.b), (5, .a, .b)] {
            let v = JudgeDuty.verdict(spec, original: o, swapped: s, stakeAtRisk: Credits(credits: 10), signer: F.signer(j))
            #expect(m.handle(.peerMessage(.judgeVerdict(v), from: F.id(j), fromAddress: F.addr(j)), now: ms(40)) == [])
        }
        let v6 = JudgeDuty.verdict(spec, original: .a, swapped: .a, stakeAtRisk: Credits(credits: 10), signer: F.signer(6))
        let last = m.handle(.peerMessage(.judgeVerdict(v6), from: F.id(6), fromAddress: F.addr(6)), now: ms(50))
        #expect(Array(last.prefix(2)) == [.cancelTimer(.duel(job)), .dropAnswers(job: job)])
        #expect(last.last == .notify(.duelSettled(job: job, majority: .first, verdicts: 3)))
        guard case .persistEvents(let events)? = last.dropFirst(2).first, case .duelSettlement(let s)? = events.first?.body else {
            Issue.record("expected the settlement to be persisted: \(last)"); return
        }
        #expect(s.majority == .first && s.verdicts.count == 3 && s.judgeFees.value.fees.count == 3)
        // The loser's bond went to the winner in this node's own view.
        #expect(m.ledger!.balance(of: e1) - m.ledger!.balance(of: e2) == Credits(credits: 10))
        #expect(m.ledger!.totalBalance == m.ledger!.genesis.totalSupply)
    }

    @Test("the first-content race: the second copy has content first, so the user gets it")
    func secondCopyWinsTheRace() {
        var m = requester()
        guard let (_, e1, e2, sFirst, sShadow) = acceptedDuel(&m) else { Issue.record("no duel"); return }
        #expect(m.handle(.stream(sShadow, .firstContent), now: ms(8)) == [.respond(r1, .commit(stream: sShadow, executor: e2))])
        // The first copy's content later changes nothing for the user: it is read to its end for the judges.
        #expect(m.handle(.stream(sFirst, .firstContent), now: ms(9)) == [.drainStream(sFirst)])
        let done = m.handle(.stream(sShadow, .finished(F.outcome("two"))), now: ms(20))
        #expect(done.contains(.respond(r1, .complete(stream: sShadow))))
        // The first copy, now read only for the judges, finishing asks the panel (order unchanged: e1 is first).
        let last = m.handle(.stream(sFirst, .finished(F.outcome("one"))), now: ms(30))
        guard case .requestJudgements(let spec, _)? = last.first else { Issue.record("expected judge requests: \(last)"); return }
        #expect(spec.first == e1 && spec.second == e2 && spec.firstResponseHash == F.outcome("one").responseHash)
        // Both prices released (receipts are not in yet); the three judges' fees stay reserved until the settlement.
        #expect(m.spendable == Credits(micro: 99_400_000))
    }

    /// Starts a duel job and has both executors accept: (job, first, second, user stream, shadow stream).
    private func acceptedDuel(_ m: inout NodeMachine) -> (JobID, NodeID, NodeID, StreamID, StreamID)? {
        let job = F.job(1, 1)
        let out = m.handle(.userRequest(r1, F.spec()), now: ms(1))
        guard case .notify(.duelStarted(_, let e1, let e2))? = out.first(where: { if case .notify(.duelStarted) = $0 { true } else { false } })
        else { return nil }
        let n1: UInt8 = e1 == F.id(2) ? 2 : 3, n2: UInt8 = n1 == 2 ? 3 : 2
        let panel = [4, 5, 6].map(F.id).sorted()
        _ = m.handle(.peerMessage(.offerAnswer(answer(job, executor: e2, signer: F.signer(n2),
                                                      terms: DuelTerms(judges: panel, bond: Credits(credits: 5), partner: e1), at: ms(5))),
                                  from: e2, fromAddress: F.addr(n2)), now: ms(5))
        _ = m.handle(.peerMessage(.offerAnswer(answer(job, executor: e1, signer: F.signer(n1),
                                                      terms: DuelTerms(judges: panel, bond: Credits(credits: 5), partner: e2), at: ms(6))),
                                  from: e1, fromAddress: F.addr(n1)), now: ms(6))
        return (job, e1, e2, StreamID(2), StreamID(1))
    }

    @Test("the user leaves mid-duel: the copy nobody reads is stopped, the duel abandoned, no bond moves")
    func userLeavesMidDuel() {
        var m = requester()
        guard let (job, e1, _, sFirst, sShadow) = acceptedDuel(&m) else { Issue.record("no duel"); return }
        _ = m.handle(.stream(sFirst, .firstContent), now: ms(10))
        let gone = m.handle(.userGone(r1), now: ms(12))
        #expect(gone.contains(.cancelStream(sFirst)))
        #expect(gone.contains(.cancelStream(sShadow)))
        #expect(gone.contains(.dropAnswers(job: job)))
        #expect(gone.contains(.notify(.duelAbandoned(job: job, reason: .requestEnded))))
        #expect(!gone.contains { if case .persistEvents = $0 { true } else { false } })
        // The shadow's late events change nothing.
        #expect(m.handle(.stream(sShadow, .finished(F.outcome("two"))), now: ms(20)).allSatisfy {
            if case .requestJudgements = $0 { false } else { true }
        })
        #expect(m.ledger!.balance(of: e1) == Credits(credits: 100))
    }

    @Test("the user's answer is complete: the duel goes on without the user and is judged")
    func duelOutlivesItsUser() {
        var m = requester()
        guard let (job, _, _, sFirst, sShadow) = acceptedDuel(&m) else { Issue.record("no duel"); return }
        _ = m.handle(.stream(sFirst, .firstContent), now: ms(10))
        let done = m.handle(.stream(sFirst, .finished(F.outcome("one"))), now: ms(20))
        #expect(done.contains(.respond(r1, .complete(stream: sFirst))))
        #expect(!done.contains(.cancelStream(sShadow)))
        #expect(m.handle(.stream(sShadow, .firstContent), now: ms(25)) == [.drainStream(sShadow)])
        let last = m.handle(.stream(sShadow, .finished(F.outcome("two"))), now: ms(30))
        guard case .requestJudgements(let spec, _)? = last.first else { Issue.record("expected judge requests: \(last)"); return }
        #expect(spec.job == job)
    }

    @Test("an accepted copy that fails moves no bond, and its executor gets no job from this requester for a while")
    func failedCopyCoolsDown() {
        var m = requester()
        guard let (job, _, e2, _, sShadow) = acceptedDuel(&m) else { Issue.record("no duel"); return }
        let out = m.handle(.stream(sShadow, .failed(.connectionLost)), now: ms(20))
        let until = ms(20) + .seconds(300)
        #expect(Array(out.prefix(2)) == [.setTimer(.cooldown(.peer(e2), model: "m"), at: until),
                                         .notify(.coolingDown(.peer(e2), model: "m", status: 0, until: until))])
        #expect(out.contains(.notify(.duelAbandoned(job: job, reason: .executorFailed(e2)))))
        #expect(!out.contains { if case .persistEvents = $0 { true } else { false } })
    }

    @Test("a job drawn for a duel without enough judges runs single and says why")
    func skippedWithoutJudges() {
        var m = requester(judges: false)
        let out = m.handle(.userRequest(r1, F.spec()), now: ms(1))
        #expect(out.contains(.notify(.duelSkipped(job: F.job(1, 1), reason: .tooFewJudges))))
        #expect(!out.contains { if case .notify(.duelStarted) = $0 { true } else { false } })
        #expect(out.filter { if case .openOffer = $0 { true } else { false } }.count == 1)
    }

    @Test("the second copy refused: the duel is abandoned and the job runs single")
    func refusedSecondCopy() {
        var m = requester()
        let job = F.job(1, 1)
        let out = m.handle(.userRequest(r1, F.spec()), now: ms(1))
        guard case .notify(.duelStarted(_, _, let e2))? = out.first(where: { if case .notify(.duelStarted) = $0 { true } else { false } })
        else { Issue.record("no duel"); return }
        let n2: UInt8 = e2 == F.id(2) ? 2 : 3
        let no = Signed(OfferAnswer(job: job, requester: F.id(1), executor: e2, reason: .duelTermsRefused, answeredAt: ms(5)), by: F.signer(n2))
        #expect(m.handle(.peerMessage(.offerAnswer(no), from: e2, fromAddress: F.addr(n2)), now: ms(5)) == [
            .cancelTimer(.offer(StreamID(1))),
            .notify(.offer(.requester, .rejected(.duelTermsRefused))),
            .cancelTimer(.offer(StreamID(1))), .cancelStream(StreamID(1)),
            .cancelTimer(.duel(job)), .dropAnswers(job: job),
            .notify(.duelAbandoned(job: job, reason: .refused(e2))),
        ])
        #expect(m.spendable == Credits(credits: 99))   // only the first copy's price stays reserved
    }
}

@Suite("NodeMachine: a judge's side, directive by directive")
struct NodeMachineJudgeTests {
    /// Judge 4 (stake 10) knowing requester 1, executors 2 and 3, judges 5 and 6.
    private func judge(perRequester: Int = 8) -> NodeMachine {
        var g = [NodeID: Credits]()
        for n: UInt8 in 1...6 { g[F.id(n)] = Credits(credits: 100) }
        let genesis = Genesis(networkID: "test", parameters: GenesisParameters(duelProbability: 1_000_000), grants: g)
        let setup = NetworkSetup(genesis: genesis, signer: F.signer(4), crypto: F.crypto, address: F.addr(4), seeds: [],
                                 declaredStake: Credits(credits: 10))
        var m = NodeMachine(config: NodeMachineConfig(policy: F.policy(), duel: DuelConfig(judge: true, maxJudgeTasksPerRequester: perRequester)),
                            network: setup, seed: 1)
        _ = m.handle(.start, now: t0)
        _ = F.learn(&m, [F.record(1, models: []), F.record(2), F.record(3)]
                    + [5, 6].map { F.record($0, models: [], accepting: false, judging: true) })
        return m
    }

    private func spec(seq: UInt64 = 1, requester: UInt8 = 1, judges: [NodeID]? = nil) -> DuelPairSpec {
        let job = F.job(requester, seq), h1 = F.outcome("one").responseHash, h2 = F.outcome("two").responseHash
        return DuelPairSpec(job: job, requester: F.id(requester), first: F.id(2), second: F.id(3), firstResponseHash: h1,
                            secondResponseHash: h2,
                            pairHash: DuelPair.hash(job: job, first: F.id(2), firstResponse: h1, second: F.id(3), secondResponse: h2, crypto: F.crypto),
                            judges: judges ?? [4, 5, 6].map(F.id).sorted())
    }

    private func ask(_ m: inout NodeMachine, _ s: DuelPairSpec, from: UInt8 = 1, at: Instant = ms(10)) -> [NodeDirective] {
        m.handle(.peerMessage(.judgeRequest(s), from: F.id(from), fromAddress: F.addr(from)), now: at)
    }

    @Test("a request from the duel's requester is judged once; the signed verdict goes back to it")
    func judgedOnce() {
        var m = judge()
        let s = spec()
        #expect(ask(&m, s) == [.runJudgement(s), .setTimer(.judgeTask(s.job), at: ms(10) + .seconds(120))])
        let done = m.handle(.judgement(job: s.job, original: .a, swapped: .b), now: ms(20))
        let v = JudgeDuty.verdict(s, original: .a, swapped: .b, stakeAtRisk: Credits(credits: 10), signer: F.signer(4))
        #expect(done == [.cancelTimer(.judgeTask(s.job)), .send(.judgeVerdict(v), to: F.id(1), address: F.addr(1)),
                         .notify(.verdictSent(job: s.job, choice: .first))])
        // The same pair again, after it was judged: declined, nothing signed twice.
        #expect(ask(&m, s, at: ms(30)) == [.notify(.judgeRequestDeclined(job: s.job, reason: .duplicate))])
    }

    @Test("strangers and made-up panel members get no verdict")
    func unknownParties() {
        var m = judge()
        let padded = spec(judges: [F.id(4), F.id(5), F.id(77)].sorted())
        #expect(ask(&m, padded) == [.notify(.judgeRequestDeclined(job: padded.job, reason: .unknownParty))])
        let stranger = spec(requester: 88)
        #expect(ask(&m, stranger, from: 88) == [.notify(.judgeRequestDeclined(job: stranger.job, reason: .unknownParty))])
    }

    @Test("at most maxJudgeTasksPerRequester tasks for one requester at once")
    func perRequesterCap() {
        var m = judge(perRequester: 1)
        let a = spec(seq: 1), b = spec(seq: 2)
        #expect(ask(&m, a).first == .runJudgement(a))
        #expect(ask(&m, b) == [.notify(.judgeRequestDeclined(job: b.job, reason: .busy))])
        _ = m.handle(.judgement(job: a.job, original: nil, swapped: nil), now: ms(20))   // abstains: the slot frees
        #expect(ask(&m, spec(seq: 3), at: ms(30)).first == .runJudgement(spec(seq: 3)))
    }
}
