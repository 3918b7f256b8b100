import Testing
@testable import WWWCore

// Cooldowns (issue 10, "Wasted engines"): a backend or peer that answers 429/503 before
// any content gets no new work until its Retry-After (or the default cooldown) has passed.

private typealias F = NodeFx
private let t0 = F.t0
private func ms(_ n: Int64) -> Instant { t0 + .milliseconds(n) }
private let r1 = RequestID(1), r2 = RequestID(2), r3 = RequestID(3)
private let s1 = StreamID(1), s2 = StreamID(2), s3 = StreamID(3), s4 = StreamID(4)

private func userJob(_ r: RequestID, backend: String) -> InferenceJob {
    InferenceJob(backend: backend, model: "m", owner: .user(r))
}

private func ended(_ r: RequestID, _ failure: RequestFailure) -> [NodeDirective] {
    [.respond(r, .reject(failure)), .cancelTimer(.deadline(r)), .notify(.requestEnded(r, failure: failure))]
}

@Suite("Node machine: cooldowns")
struct NodeMachineCooldownTests {
    @Test("a 429 fails over and cools the backend for its Retry-After; new requests skip it until the timer")
    func localCooldown() {
        var m = F.standalone([F.backend("a", capacity: 2), F.backend("b", capacity: 2)])
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)   // on a
        let limited = RelayFailure.throttled(status: 429, retryAfter: .seconds(5))
        #expect(m.handle(.stream(s1, .failed(limited)), now: ms(50)) == [
            .setTimer(.cooldown(.local("a"), model: "m"), at: ms(5_050)),
            .notify(.coolingDown(.local("a"), model: "m", status: 429, until: ms(5_050))),
            .notify(.offer(.requester, .failover)),
            .runInference(s2, userJob(r1, backend: "b")),
        ])
        // b is busier than the idle a, but a is cooling down: b takes the next one too.
        #expect(m.handle(.userRequest(r2, F.spec()), now: ms(60)) == [
            .setTimer(.deadline(r2), at: t0 + .seconds(300)),
            .runInference(s3, userJob(r2, backend: "b")),
        ])
        // An early timer changes nothing; the due one puts a back in service.
        #expect(m.handle(.timer(.cooldown(.local("a"), model: "m")), now: ms(5_000)) == [])
        #expect(m.handle(.timer(.cooldown(.local("a"), model: "m")), now: ms(5_050)) == [])
        #expect(m.handle(.userRequest(r3, F.spec()), now: ms(5_100)) == [
            .setTimer(.deadline(r3), at: t0 + .seconds(300)),
            .runInference(s4, userJob(r3, backend: "a")),
        ])
    }

    @Test("with every engine cooling, a request that cannot leave gets the status and the cooldown left")
    func allCooling() {
        var m = F.standalone([F.backend("a")])
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)
        let limited = RelayFailure.throttled(status: 429, retryAfter: .seconds(5))
        // The request that met the 429 gets the engine's own error (the driver renders it).
        #expect(m.handle(.stream(s1, .failed(limited)), now: ms(50)) == [
            .setTimer(.cooldown(.local("a"), model: "m"), at: ms(5_050)),
            .notify(.coolingDown(.local("a"), model: "m", status: 429, until: ms(5_050))),
            .notify(.offer(.requester, .failover)),
        ] + ended(r1, .stream(s1, limited)))
        // A new one never reaches the engine: 429 with the 4.95 s left.
        let failure = RequestFailure.throttled(model: "m", status: 429, retryAfter: .milliseconds(4_950))
        #expect(m.handle(.userRequest(r2, F.spec()), now: ms(100)) == [.setTimer(.deadline(r2), at: t0 + .seconds(300))] + ended(r2, failure))
        _ = m.handle(.timer(.cooldown(.local("a"), model: "m")), now: ms(5_050))
        #expect(m.handle(.userRequest(r3, F.spec()), now: ms(5_060)).contains(.runInference(s2, userJob(r3, backend: "a"))))
    }

    @Test("a cooldown is per model: the engine's other models keep being served")
    func perModel() {
        let both = LocalBackendConfig(name: "a", models: [ModelDescriptor(name: "m"), ModelDescriptor(name: "n")], capacity: 4)
        var m = F.standalone([both])
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)
        _ = m.handle(.stream(s1, .failed(.throttled(status: 429, retryAfter: .seconds(5)))), now: ms(10))
        #expect(m.localLoad(model: "m") == nil)
        #expect(m.handle(.userRequest(r2, F.spec("n")), now: ms(20)) == [
            .setTimer(.deadline(r2), at: t0 + .seconds(300)),
            .runInference(s2, InferenceJob(backend: "a", model: "n", owner: .user(r2))),
        ])
    }

    @Test("without a Retry-After the default cooldown applies; a huge one is capped; a shorter never cuts a longer")
    func cooldownLengths() {
        var m = NodeMachine(config: NodeMachineConfig(backends: [F.backend("a", capacity: 4)], cooldown: .seconds(2), maxCooldown: .seconds(300)),
                            network: nil, seed: 1)
        _ = m.handle(.start, now: t0)
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)
        _ = m.handle(.userRequest(r2, F.spec()), now: t0)
        _ = m.handle(.userRequest(r3, F.spec()), now: t0)
        #expect(Array(m.handle(.stream(s1, .failed(.throttled(status: 503, retryAfter: nil))), now: ms(10)).prefix(2)) == [
            .setTimer(.cooldown(.local("a"), model: "m"), at: ms(2_010)),
            .notify(.coolingDown(.local("a"), model: "m", status: 503, until: ms(2_010))),
        ])
        #expect(Array(m.handle(.stream(s2, .failed(.throttled(status: 429, retryAfter: .seconds(86_400)))), now: ms(20)).prefix(2)) == [
            .setTimer(.cooldown(.local("a"), model: "m"), at: ms(300_020)),
            .notify(.coolingDown(.local("a"), model: "m", status: 429, until: ms(300_020))),
        ])
        #expect(Array(m.handle(.stream(s3, .failed(.throttled(status: 429, retryAfter: .seconds(1)))), now: ms(30)).prefix(2)) == [
            .setTimer(.cooldown(.local("a"), model: "m"), at: ms(300_020)),
            .notify(.coolingDown(.local("a"), model: "m", status: 429, until: ms(300_020))),
        ])
        // The first timer (set for 2 s) was replaced: at 2 s the backend still cools.
        #expect(m.handle(.timer(.cooldown(.local("a"), model: "m")), now: ms(2_010)) == [])
        #expect(m.localLoad(model: "m") == nil)
    }

    @Test("a peer that answered 429 is not offered jobs until its cooldown ends, which wakes waiting requests")
    func peerCooldown() {
        var m = F.networked(1)
        _ = F.learn(&m, [F.record(2, stake: 10)])
        _ = m.handle(.userRequest(r1, F.spec()), now: t0)
        let job = F.job(1, 1)
        _ = m.handle(.peerMessage(.offerAnswer(F.answer(job: job, requester: 1, executor: 2, reason: nil, at: ms(10))),
                                  from: F.id(2), fromAddress: F.addr(2)), now: ms(10))
        let limited = RelayFailure.throttled(status: 429, retryAfter: .seconds(3))
        let out = m.handle(.stream(s1, .failed(limited)), now: ms(100))
        #expect(Array(out.prefix(3)) == [
            .setTimer(.cooldown(.peer(F.id(2)), model: "m"), at: ms(3_100)),
            .notify(.coolingDown(.peer(F.id(2)), model: "m", status: 429, until: ms(3_100))),
            .notify(.offer(.requester, .failover)),
        ])
        var prng = SeededPRNG(seed: 9)
        #expect(m.executorOrder(model: "m", prng: &prng) == [])
        // No other executor: r1 waits (it never goes back to the peer that failed it), and
        // so does r2, though 2 advertises room. The end of the cooldown offers r2 to 2.
        #expect(m.waitingRequests == 1)
        _ = m.handle(.userRequest(r2, F.spec()), now: ms(200))
        #expect(m.waitingRequests == 2)
        let wake = m.handle(.timer(.cooldown(.peer(F.id(2)), model: "m")), now: ms(3_100))
        let offer2 = OfferMessage(authorization: F.auth(requester: 1, executor: 2, seq: 2, expiresAt: t0 + .seconds(300)))
        #expect(wake == [
            .cancelTimer(.retry(r1)),
            .notify(.offer(.requester, .fallback(.noCandidates))),
            .setTimer(.retry(r1), at: ms(4_100)),
            .cancelTimer(.retry(r2)),
            .openOffer(s2, to: F.id(2), address: F.addr(2), offer2, request: r2),
            .setTimer(.offer(s2), at: ms(5_100)),
        ])
        #expect(m.executorOrder(model: "m", prng: &prng) == [F.id(2)])
    }

    @Test("an executor whose engine answers 429 for a peer's job cools that backend and rejects offers meanwhile")
    func executorCooldown() {
        var m = F.networked(2, backends: [F.backend(capacity: 1, limit: 2)])
        _ = F.learn(&m, [F.record(1, models: [], accepting: false)])
        _ = F.heardFrom(&m, 1)
        let offer = { (seq: UInt64, at: Instant) in
            m.handle(.peerMessage(.offer(OfferMessage(authorization: F.auth(requester: 1, executor: 2, seq: seq, expiresAt: ms(60_000)))),
                                  from: F.id(1), fromAddress: F.addr(1)), now: at)
        }
        _ = offer(1, ms(5))
        #expect(m.handle(.stream(s1, .failed(.throttled(status: 429, retryAfter: .seconds(4)))), now: ms(100)) == [
            .setTimer(.cooldown(.local("local"), model: "m"), at: ms(4_100)),
            .notify(.coolingDown(.local("local"), model: "m", status: 429, until: ms(4_100))),
            .cancelStream(s1),
        ])
        let no = F.answer(job: F.job(1, 2), requester: 1, executor: 2, reason: .overloaded, at: ms(200))
        #expect(offer(2, ms(200)) == [
            .send(.offerAnswer(no), to: F.id(1), address: F.addr(1)),
            .notify(.offer(.executor, .rejected(.overloaded))),
        ])
    }
}
