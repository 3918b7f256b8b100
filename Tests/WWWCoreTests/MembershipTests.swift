import Testing
@testable import WWWCore

// Exact-directive unit tests of the SWIM membership state machine (DESIGN.md §4).

private let t0 = Instant(seconds: 1_000_000)

private func addr(_ s: UInt8) -> String { "10.0.0.\(s):7070" }
private func id(_ s: UInt8) -> NodeID { FakeSigner(seed: s).nodeID }

private func makeNode(_ s: UInt8, config: MembershipConfig = MembershipConfig(), incarnation: UInt64 = 0) -> Membership {
    Membership(config: config, signer: FakeSigner(seed: s), crypto: FakeCrypto(), address: addr(s), incarnation: incarnation, seed: UInt64(s))
}

private func rec(_ s: UInt8, inc: UInt64 = 0, status: MemberStatus = .alive, at: Instant = t0) -> Signed<MemberRecord> {
    let signer = FakeSigner(seed: s)
    return Signed(MemberRecord(node: signer.nodeID, address: addr(s), incarnation: inc, status: status, updatedAt: at), by: signer)
}

private func view(_ r: Signed<MemberRecord>, _ status: MemberStatus) -> MemberRecord {
    var v = r.value
    v.status = status
    return v
}

/// A started node that learned `peers` through a push-pull transfer, with an empty rumor
/// queue, so later messages carry no piggybacked rumors unless a test creates some.
private func activeNode(_ s: UInt8, peers: [UInt8], config: MembershipConfig = MembershipConfig()) -> Membership {
    var m = makeNode(s, config: config)
    _ = m.start(now: t0, seeds: [])
    _ = m.receive(MembershipMessage(.states(peers.map { .record(rec($0)) })), from: id(peers[0]), fromAddress: addr(peers[0]), now: t0)
    m.rumors = RumorQueue(capacity: config.maxQueuedRumors)
    m.selfRumorBudget = 0
    return m
}

/// Calls `tick` at every deadline up to and including `end`; returns all directives.
private func advance(_ m: inout Membership, to end: Instant) -> [MembershipDirective] {
    var out: [MembershipDirective] = []
    var guardCount = 0
    while let d = m.nextDeadline, d <= end, guardCount < 10_000 {
        out += m.tick(now: d)
        guardCount += 1
    }
    return out
}

private func notifications(_ ds: [MembershipDirective]) -> [MembershipDirective] {
    ds.filter { if case .send = $0 { return false } else { return true } }
}

private func sends(_ ds: [MembershipDirective]) -> [(MembershipDestination, MembershipMessage)] {
    ds.compactMap { if case .send(let d, let m) = $0 { return (d, m) } else { return nil } }
}

@Suite("Membership")
struct MembershipTests {
    @Test("join through one seed address: push-pull, member up on both sides")
    func joinViaSeed() {
        var a = makeNode(1)
        let ra = rec(1)
        let startA = a.start(now: t0, seeds: [addr(2), addr(1)])
        let join = MembershipMessage(
            .pushPull(MembershipDigest(lowerBound: nil, upperBound: nil, entries: [MembershipDigestEntry(node: id(1), incarnation: 0, status: .alive)])),
            rumors: [.record(ra)])
        #expect(startA == [.localUpdated(ra), .send(.address(addr(2)), join)])
        #expect(a.phase == .joining)

        var s = makeNode(2)
        let rs = rec(2)
        #expect(s.start(now: t0, seeds: []) == [.localUpdated(rs)])
        #expect(s.phase == .active)

        let t1 = t0 + .milliseconds(10)
        let atSeed = s.receive(join, from: id(1), fromAddress: addr(1), now: t1)
        let reply = MembershipMessage(.pushPullReply(states: [.record(rs)], wants: []), rumors: [.record(rs), .record(ra)])
        #expect(atSeed == [.memberUp(ra.value), .send(.node(id(1), address: addr(1)), reply)])

        #expect(a.receive(reply, from: id(2), fromAddress: addr(2), now: t1 + .milliseconds(10)) == [.memberUp(rs.value)])
        #expect(a.phase == .active)
        #expect(a.alivePeers() == [rs.value])
        #expect(s.alivePeers() == [ra.value])
        #expect(a.members.map(\.node) == [id(1), id(2)].sorted())
    }

    @Test("a joining node retries its seeds every period until it knows a peer")
    func joinRetry() {
        var a = makeNode(1)
        _ = a.start(now: t0, seeds: [addr(2)])
        let out = a.tick(now: t0 + .seconds(1))
        #expect(sends(out).map(\.0) == [.address(addr(2))])
        if case .pushPull(let d) = sends(out).first?.1.body {
            #expect(d.entries == [MembershipDigestEntry(node: id(1), incarnation: 0, status: .alive)])
        } else {
            Issue.record("expected a push-pull to the seed")
        }
    }

    @Test("ping is answered with ack; a ping for another node is ignored")
    func pingAck() {
        var b = activeNode(2, peers: [1])
        #expect(b.receive(MembershipMessage(.ping(seq: 3, target: id(2))), from: id(1), fromAddress: addr(1), now: t0)
            == [.send(.node(id(1), address: addr(1)), MembershipMessage(.ack(seq: 3)))])
        #expect(b.receive(MembershipMessage(.ping(seq: 4, target: id(9))), from: id(1), fromAddress: addr(1), now: t0) == [])
    }

    @Test("period: ping one member, summary push-pull with fanout members; ack ends the probe")
    func probeAndPushPull() {
        var a = activeNode(1, peers: [2])
        let out = a.tick(now: t0 + .seconds(1))
        let fp = MembershipDigest.fingerprint(of: [
            MembershipDigestEntry(node: id(1), incarnation: 0, status: .alive),
            MembershipDigestEntry(node: id(2), incarnation: 0, status: .alive),
        ].sorted { $0.node < $1.node })
        let summary = MembershipDigest(lowerBound: nil, upperBound: nil, entries: [], fingerprint: fp)
        #expect(out == [
            .send(.node(id(2), address: addr(2)), MembershipMessage(.ping(seq: 1, target: id(2)))),
            .send(.node(id(2), address: addr(2)), MembershipMessage(.pushPull(summary))),
        ])
        #expect(a.nextDeadline == t0 + .milliseconds(1_500))
        #expect(a.receive(MembershipMessage(.ack(seq: 1)), from: id(2), fromAddress: addr(2), now: t0 + .milliseconds(1_100)) == [])
        #expect(a.nextDeadline == t0 + .seconds(2))
        let next = a.tick(now: t0 + .seconds(2))
        #expect(notifications(next) == [])
        #expect(a.record(of: id(2))?.status == .alive)

        // The peer holds the same table: the summary matches and needs no answer.
        var b = activeNode(2, peers: [1])
        #expect(b.receive(MembershipMessage(.pushPull(summary)), from: id(1), fromAddress: addr(1), now: t0) == [])
        // A peer that differs answers with its full digest of the range.
        var c = activeNode(2, peers: [1, 3])
        let full = MembershipDigest(lowerBound: nil, upperBound: nil, entries: [1, 2, 3].map { MembershipDigestEntry(node: id($0), incarnation: 0, status: .alive) }.sorted { $0.node < $1.node })
        #expect(c.receive(MembershipMessage(.pushPull(summary)), from: id(1), fromAddress: addr(1), now: t0)
            == [.send(.node(id(1), address: addr(1)), MembershipMessage(.pushPull(full)))])
        // The full digest is answered with the missing state.
        #expect(a.receive(MembershipMessage(.pushPull(full)), from: id(2), fromAddress: addr(2), now: t0 + .seconds(2))
            == [.send(.node(id(2), address: addr(2)), MembershipMessage(.pushPullReply(states: [], wants: [id(3)])))])
    }

    @Test("probe timeout: ping-req to k others; indirect ack prevents suspicion")
    func indirectProbe() {
        var a = activeNode(1, peers: [2, 3, 4, 5, 6])
        let first = a.tick(now: t0 + .seconds(1))
        guard case .ping(let seq, let target)? = sends(first).first?.1.body else {
            Issue.record("expected a ping first")
            return
        }
        let t: UInt8 = [2, 3, 4, 5, 6].first { id($0) == target }!
        let req = a.tick(now: t0 + .milliseconds(1_500))
        #expect(req.count == 3)
        var helpers: Set<NodeID> = []
        for (dest, m) in sends(req) {
            guard case .node(let h, let address) = dest else {
                Issue.record("ping-req goes to a known member")
                continue
            }
            helpers.insert(h)
            #expect(h != target && h != id(1))
            #expect(address == addr([2, 3, 4, 5, 6].first { id($0) == h }!))
            #expect(m == MembershipMessage(.pingReq(seq: seq, target: target, targetAddress: addr(t))))
        }
        #expect(helpers.count == 3)
        // A helper relays the target's ack.
        #expect(a.receive(MembershipMessage(.ack(seq: seq)), from: helpers.first!, fromAddress: "x", now: t0 + .milliseconds(1_700)) == [])
        #expect(notifications(a.tick(now: t0 + .seconds(2))) == [])
        #expect(a.record(of: target)?.status == .alive)
    }

    @Test("unacked probe: suspect at period end, dead after the suspicion timeout")
    func suspectThenDead() {
        var a = activeNode(1, peers: [2])
        let first = a.tick(now: t0 + .seconds(1))
        #expect(sends(first).first?.1.body == .ping(seq: 1, target: id(2)))
        #expect(a.tick(now: t0 + .milliseconds(1_500)) == []) // no helper available
        let resolve = a.tick(now: t0 + .seconds(2))
        #expect(resolve.first == .memberChanged(view(rec(2), .suspect)))
        #expect(a.record(of: id(2))?.status == .suspect)
        // N = 2 live: timeout = max(4 × max(1, log10 3) × 1 s, 2 s) = 4 s.
        #expect(a.suspicionTimeout == .seconds(4))
        let before = advance(&a, to: t0 + .seconds(6) - .nanoseconds(1))
        #expect(!notifications(before).contains { if case .memberDown = $0 { true } else { false } })
        let at = advance(&a, to: t0 + .seconds(6))
        #expect(notifications(at) == [.memberDown(view(rec(2), .dead))])
        #expect(a.record(of: id(2))?.status == .dead)
        #expect(a.alivePeers() == [])
        // The verdict is gossiped: the next message piggybacks it.
        let later = a.tick(now: t0 + .seconds(7))
        #expect(sends(later).contains { $0.1.rumors.contains(.verdict(MemberVerdict(node: id(2), incarnation: 0, status: .dead, origin: id(1)))) })
    }

    @Test("a helper relays ping-req and forwards the ack with the original sequence number")
    func relayPingReq() {
        var b = activeNode(2, peers: [1, 3])
        #expect(b.receive(MembershipMessage(.pingReq(seq: 7, target: id(3), targetAddress: addr(3))), from: id(1), fromAddress: addr(1), now: t0)
            == [.send(.node(id(3), address: addr(3)), MembershipMessage(.ping(seq: 1, target: id(3))))])
        #expect(b.receive(MembershipMessage(.ack(seq: 1)), from: id(3), fromAddress: addr(3), now: t0 + .milliseconds(20))
            == [.send(.node(id(1), address: addr(1)), MembershipMessage(.ack(seq: 7)))])
        // An ack from someone else for that sequence number is not relayed.
        #expect(b.receive(MembershipMessage(.ack(seq: 1)), from: id(3), fromAddress: addr(3), now: t0 + .milliseconds(30)) == [])
    }

    @Test("suspicion about itself is refuted by raising the incarnation and re-signing")
    func refutation() {
        var a = activeNode(1, peers: [2])
        let now = t0 + .seconds(3)
        let suspect = MembershipMessage(.states([]), rumors: [.verdict(MemberVerdict(node: id(1), incarnation: 0, status: .suspect, origin: id(2)))])
        let refuted = rec(1, inc: 1, at: now)
        #expect(a.receive(suspect, from: id(2), fromAddress: addr(2), now: now) == [.localUpdated(refuted)])
        #expect(a.localRecord == refuted)
        // The old verdict no longer applies.
        #expect(a.receive(suspect, from: id(2), fromAddress: addr(2), now: now) == [])
        // The suspecting node accepts the refutation and clears the suspicion.
        var b = activeNode(2, peers: [1, 3])
        _ = b.receive(suspect, from: id(3), fromAddress: addr(3), now: now)
        _ = advance(&b, to: now + .seconds(1))   // its own probe of 1 went unanswered
        #expect(b.record(of: id(1))?.status == .suspect)
        #expect(b.receive(MembershipMessage(.states([]), rumors: [.record(refuted)]), from: id(1), fromAddress: addr(1), now: now)
            == [.memberChanged(refuted.value)])
        #expect(b.record(of: id(1))?.status == .alive)
    }

    @Test("a restarted node refutes a record of its previous life")
    func restartRefutesPreviousLife() {
        var a = activeNode(1, peers: [2])
        let old = rec(1, inc: 5, at: t0 - .seconds(100))
        #expect(a.receive(MembershipMessage(.states([.record(old)])), from: id(2), fromAddress: addr(2), now: t0)
            == [.localUpdated(rec(1, inc: 6, at: t0))])
    }

    @Test("leave gossips a left record; receivers mark it down")
    func leave() {
        var a = activeNode(1, peers: [2])
        let now = t0 + .seconds(2)
        let left = rec(1, inc: 1, status: .left, at: now)
        let out = a.leave(now: now)
        let msg = MembershipMessage(.states([]), rumors: [.record(left)])
        #expect(out == [.localUpdated(left), .send(.node(id(2), address: addr(2)), msg)])
        #expect(a.phase == .left)
        #expect(a.tick(now: now + .seconds(1)) == [])
        #expect(a.nextDeadline == nil)

        var b = activeNode(2, peers: [1, 3])
        #expect(b.receive(msg, from: id(1), fromAddress: addr(1), now: now) == [.memberDown(left.value)])
        #expect(b.record(of: id(1))?.status == .left)
        #expect(b.alivePeers().map(\.node) == [id(3)])
        // An older alive record does not resurrect it (the tombstone wins).
        #expect(b.receive(MembershipMessage(.states([.record(rec(1))])), from: id(3), fromAddress: addr(3), now: now) == [])
        #expect(b.record(of: id(1))?.status == .left)
    }

    @Test("tombstones expire after the TTL")
    func tombstoneExpiry() {
        var b = activeNode(2, peers: [1, 3])
        let now = t0 + .milliseconds(500)
        _ = b.receive(MembershipMessage(.states([]), rumors: [.record(rec(1, inc: 1, status: .left, at: now))]), from: id(1), fromAddress: addr(1), now: now)
        let ttl = b.config.tombstoneTTL
        // Keep the other peer answering so it stays alive.
        func keep(_ out: [MembershipDirective]) {
            for case .send(_, let m) in out {
                if case .ping(let seq, _) = m.body { _ = b.receive(MembershipMessage(.ack(seq: seq)), from: id(3), fromAddress: addr(3), now: b.nextDeadline ?? now) }
            }
        }
        var removed: [MembershipDirective] = []
        while let d = b.nextDeadline, d <= now + ttl + .seconds(1) {
            let out = b.tick(now: d)
            keep(out)
            let r = out.filter { if case .memberRemoved = $0 { true } else { false } }
            if !r.isEmpty {
                #expect(d >= now + ttl)
                removed += r
            }
        }
        #expect(removed == [.memberRemoved(id(1))])
        #expect(b.record(of: id(1)) == nil)
        #expect(b.members.map(\.node) == [id(2), id(3)].sorted())
    }

    @Test("a record stamped beyond the clock-skew bound is rejected")
    func futureStamped() {
        var b = activeNode(2, peers: [1])
        let skew = b.config.maxClockSkew
        let far = rec(3, at: t0 + skew + .seconds(1))
        #expect(b.receive(MembershipMessage(.states([.record(far)])), from: id(1), fromAddress: addr(1), now: t0)
            == [.rejected(from: id(1), subject: id(3), reason: .futureStamped)])
        #expect(b.record(of: id(3)) == nil)
        let near = rec(3, at: t0 + skew - .seconds(1))
        #expect(b.receive(MembershipMessage(.states([.record(near)])), from: id(1), fromAddress: addr(1), now: t0) == [.memberUp(near.value)])
    }

    @Test("a record signed by another key, or with a bad signature, is rejected")
    func wrongSigner() {
        var b = activeNode(2, peers: [1])
        let value = rec(3).value
        let byOther = Signed(value, by: FakeSigner(seed: 1))
        #expect(b.receive(MembershipMessage(.states([.record(byOther)])), from: id(1), fromAddress: addr(1), now: t0)
            == [.rejected(from: id(1), subject: id(3), reason: .wrongSigner)])
        let forged = Signed(value: value, signer: id(3), signature: [UInt8](repeating: 7, count: 64))
        #expect(b.receive(MembershipMessage(.states([.record(forged)])), from: id(1), fromAddress: addr(1), now: t0)
            == [.rejected(from: id(1), subject: id(3), reason: .badSignature)])
        // Nobody may speak for this node either.
        var self2 = Signed(rec(2, inc: 9).value, by: FakeSigner(seed: 1))
        self2.signer = id(1)
        #expect(b.receive(MembershipMessage(.states([.record(self2)])), from: id(1), fromAddress: addr(1), now: t0)
            == [.rejected(from: id(1), subject: id(2), reason: .wrongSigner)])
        #expect(b.localRecord.value.incarnation == 0)
        #expect(b.record(of: id(3)) == nil)
    }

    @Test("older or equal incarnations are ignored; newer ones replace the record")
    func incarnationOrder() {
        var b = activeNode(2, peers: [1, 3])
        let r3 = rec(1, inc: 3, at: t0 + .seconds(1))
        #expect(b.receive(MembershipMessage(.states([.record(r3)])), from: id(1), fromAddress: addr(1), now: t0 + .seconds(1)) == [.memberChanged(r3.value)])
        #expect(b.receive(MembershipMessage(.states([.record(rec(1, inc: 2, at: t0 + .seconds(2)))])), from: id(1), fromAddress: addr(1), now: t0 + .seconds(2)) == [])
        #expect(b.receive(MembershipMessage(.states([.record(rec(1, inc: 3, at: t0 + .seconds(2)))])), from: id(1), fromAddress: addr(1), now: t0 + .seconds(2)) == [])
        #expect(b.record(of: id(1)) == r3.value)
        // Verdicts about an older incarnation or an unknown node are ignored.
        let stale = MembershipMessage(.states([]), rumors: [
            .verdict(MemberVerdict(node: id(1), incarnation: 2, status: .dead, origin: id(3))),
            .verdict(MemberVerdict(node: id(9), incarnation: 0, status: .dead, origin: id(3))),
        ])
        #expect(b.receive(stale, from: id(3), fromAddress: addr(3), now: t0 + .seconds(2)) == [])
        #expect(b.record(of: id(1))?.status == .alive)
    }

    @Test("a dead member comes back only with a higher incarnation")
    func deadComesBack() {
        var b = activeNode(2, peers: [1, 3])
        let dead = MembershipMessage(.states([]), rumors: [.verdict(MemberVerdict(node: id(1), incarnation: 0, status: .dead, origin: id(3)))])
        // Another member's death claim is checked with one ping that carries the claim...
        let check = MembershipMessage(.ping(seq: 1, target: id(1)), rumors: dead.rumors)
        #expect(b.receive(dead, from: id(3), fromAddress: addr(3), now: t0) == [.send(.node(id(1), address: addr(1)), check)])
        #expect(b.record(of: id(1))?.status == .alive)
        // ...then through a helper, and unanswered it makes 1 suspect here, never dead at once.
        #expect(sends(b.tick(now: t0 + b.currentProbeTimeout)).map(\.1.body) == [.pingReq(seq: 1, target: id(1), targetAddress: addr(1))])
        let suspectAt = t0 + b.currentPeriod * 2
        #expect(notifications(b.tick(now: suspectAt)) == [.memberChanged(view(rec(1), .suspect))])
        // Three members: no confirmations wanted, so the base suspicion timeout applies.
        let deadline = suspectAt + b.suspicionTimeout
        #expect(b.suspicions[id(1)]?.deadline == deadline)
        #expect(notifications(advance(&b, to: deadline)).contains(.memberDown(view(rec(1), .dead))))
        #expect(b.receive(MembershipMessage(.states([.record(rec(1))])), from: id(3), fromAddress: addr(3), now: deadline) == [])
        let back = rec(1, inc: 1, at: deadline)
        #expect(b.receive(MembershipMessage(.states([.record(back)])), from: id(1), fromAddress: addr(1), now: deadline) == [.memberUp(back.value)])
    }

    @Test("a claim from a sender that is not a live member is refused and changes nothing")
    func strangersCannotAccuse() {
        var b = activeNode(2, peers: [1, 3])
        let claim = MembershipMessage(.states([]), rumors: [.verdict(MemberVerdict(node: id(1), incarnation: 0, status: .dead, origin: id(9)))])
        #expect(b.receive(claim, from: id(9), fromAddress: addr(9), now: t0) == [.rejected(from: id(9), subject: id(1), reason: .notAMember)])
        #expect(b.suspicions.isEmpty)
        #expect(b.record(of: id(1))?.status == .alive)
    }

    @Test("a claim about a member that spoke to this node within the last period is ignored")
    func subjectSpoke() {
        var b = activeNode(2, peers: [1, 3])
        let claim = MembershipMessage(.states([]), rumors: [.verdict(MemberVerdict(node: id(1), incarnation: 0, status: .dead, origin: id(3)))])
        _ = b.receive(MembershipMessage(.ping(seq: 9, target: id(2))), from: id(1), fromAddress: addr(1), now: t0)
        #expect(b.receive(claim, from: id(3), fromAddress: addr(3), now: t0 + .milliseconds(900)) == [])
        #expect(b.claims.isEmpty && b.suspicions.isEmpty)
        #expect(b.record(of: id(1))?.status == .alive)
        #expect(sends(b.receive(claim, from: id(3), fromAddress: addr(3), now: t0 + .seconds(1))).map(\.1.body) == [.ping(seq: 1, target: id(1))])
    }

    @Test("a claim about a member that answers the check changes nothing and is not re-checked for a while")
    func answeredClaims() {
        var b = activeNode(2, peers: [1, 3, 4, 5])
        let claim = MembershipMessage(.states([]), rumors: [.verdict(MemberVerdict(node: id(1), incarnation: 0, status: .dead, origin: id(3)))])
        #expect(sends(b.receive(claim, from: id(3), fromAddress: addr(3), now: t0)).count == 1)
        // Repeated while the check runs: no second ping.
        #expect(b.receive(claim, from: id(4), fromAddress: addr(4), now: t0 + .milliseconds(100)) == [])
        #expect(b.receive(MembershipMessage(.ack(seq: 1)), from: id(1), fromAddress: addr(1), now: t0 + .milliseconds(200)) == [])
        #expect(b.claims.isEmpty)
        #expect(b.queuedRumorCount == 0)
        #expect(notifications(b.tick(now: t0 + .seconds(1))).isEmpty)
        // Within the suspicion timeout the same claim is ignored outright.
        #expect(b.receive(claim, from: id(5), fromAddress: addr(5), now: t0 + .seconds(2)) == [])
        #expect(b.record(of: id(1))?.status == .alive)
    }

    @Test("at most maxConfirmations claims are checked at once")
    func boundedChecks() {
        var config = MembershipConfig()
        config.claimCheckers = 100   // this node would check every claim
        var b = activeNode(2, peers: [1, 3, 4, 5, 6, 7, 8], config: config)
        let subjects: [UInt8] = [1, 4, 5, 6, 7]
        let claim = MembershipMessage(.states([]), rumors: subjects.map { .verdict(MemberVerdict(node: id($0), incarnation: 0, status: .suspect, origin: id(3))) })
        let out = b.receive(claim, from: id(3), fromAddress: addr(3), now: t0)
        #expect(sends(out).count == b.config.maxConfirmations)
        #expect(b.claims.count == subjects.count)   // the fifth waits for a refutation
        #expect(b.runningChecks == b.config.maxConfirmations)
    }

    @Test("a claim this node does not check waits for a refutation, then is checked here")
    func uncheckedClaims() {
        var config = MembershipConfig()
        config.claimCheckers = 1   // each member checks with probability 1/N
        let peers: [UInt8] = Array(1...20).filter { $0 != 2 }
        var b = activeNode(2, peers: peers, config: config)
        let others = peers.filter { $0 != 3 }
        let claim = MembershipMessage(.states([]), rumors: others.prefix(8).map { .verdict(MemberVerdict(node: id($0), incarnation: 0, status: .suspect, origin: id(3))) })
        _ = b.receive(claim, from: id(3), fromAddress: addr(3), now: t0)
        let waiting = others.prefix(8).filter { b.claims[id($0)]?.isChecking == false }
        #expect(waiting.count >= 2, "with p = 1/20 most claims wait")
        guard waiting.count >= 2 else { return }
        let (refuter, silent) = (waiting[0], waiting[1])
        // The subject refutes (a checker's ping told it): the claim is void.
        _ = b.receive(MembershipMessage(.states([.record(rec(refuter, inc: 1))])), from: id(3), fromAddress: addr(3), now: t0 + .milliseconds(500))
        #expect(b.claims[id(refuter)] == nil)
        // No refutation within two periods: this node checks itself, with the claim on the ping.
        let escalated = b.tick(now: t0 + b.currentPeriod * 2)
        let pings = sends(escalated).filter { if case .node(let n, _) = $0.0 { n == id(silent) } else { false } }
        #expect(pings.contains { if case .ping = $0.1.body { $0.1.rumors.first == claim.rumors[others.firstIndex(of: silent)!] } else { false } })
        #expect(b.record(of: id(silent))?.status == .alive)
        // Unanswered for a period: suspect.
        let later = advance(&b, to: t0 + b.currentPeriod * 3)
        #expect(notifications(later).contains(.memberChanged(view(rec(silent), .suspect))))
        #expect(b.record(of: id(refuter))?.status == .alive)
    }

    @Test("distinct members confirming a suspicion shorten it from max to min (Lifeguard)")
    func suspicionConfirmations() {
        var config = MembershipConfig()
        config.claimCheckers = 100   // this node always checks
        var b = activeNode(2, peers: [1, 3, 4, 5, 6], config: config)
        let claim = MembershipMessage(.states([]), rumors: [.verdict(MemberVerdict(node: id(1), incarnation: 0, status: .suspect, origin: id(3)))])
        _ = b.receive(claim, from: id(3), fromAddress: addr(3), now: t0)
        _ = b.tick(now: t0 + b.currentProbeTimeout)
        let start = t0 + b.currentPeriod * 2
        let adopted = b.tick(now: start)
        #expect(notifications(adopted) == [.memberChanged(view(rec(1), .suspect))])
        let minT = b.suspicionTimeout, maxT = minT * 3
        let s1 = b.suspicions[id(1)]!
        #expect(s1.wanted == 2 && s1.confirmers == [id(3)])
        #expect(s1.deadline > start + minT && s1.deadline < start + maxT)
        // The same sender again does not count; a second one reaches the minimum.
        _ = b.receive(claim, from: id(3), fromAddress: addr(3), now: start + .milliseconds(10))
        #expect(b.suspicions[id(1)]!.deadline == s1.deadline)
        _ = b.receive(claim, from: id(4), fromAddress: addr(4), now: start + .milliseconds(20))
        #expect(b.suspicions[id(1)]!.deadline == start + minT)
        // The suspicion is gossiped on; a message to the suspect carries it (buddy system).
        let verdict = MembershipRumor.verdict(MemberVerdict(node: id(1), incarnation: 0, status: .suspect, origin: id(3)))
        #expect(sends(adopted).contains { $0.1.rumors.contains(verdict) })
        let ack = b.receive(MembershipMessage(.ping(seq: 4, target: id(2))), from: id(1), fromAddress: addr(1), now: start + .milliseconds(30))
        #expect(sends(ack).first?.1.rumors.first == verdict)
        // Without a refutation, the suspicion ends in death at its deadline.
        #expect(notifications(advance(&b, to: start + minT)).contains(.memberDown(view(rec(1), .dead))))
    }

    @Test("a node's own suspicion starts at the maximum when others may still confirm it")
    func ownSuspicionStartsAtMax() {
        var b = activeNode(2, peers: [1, 3, 4, 5, 6])
        let claim = MemberVerdict(node: id(1), incarnation: 0, status: .suspect, origin: id(2))
        var out: [MembershipDirective] = []
        b.adoptVerdict(claim, now: t0, regossip: true, into: &out)
        #expect(b.suspicions[id(1)]!.deadline == t0 + b.suspicionTimeout * 3)
    }

    @Test("failed probes raise local health, which stretches the period and probe timeout; acks lower it")
    func localHealth() {
        var a = activeNode(1, peers: [2])
        _ = a.tick(now: t0 + .seconds(1))
        // Unacked by the next period: 2 is suspected and our own health score rises.
        let second = advance(&a, to: t0 + .seconds(2))
        #expect(a.localHealth == 1)
        #expect(a.record(of: id(2))?.status == .suspect)
        #expect(a.currentPeriod == .seconds(2) && a.currentProbeTimeout == .seconds(1))
        #expect(a.nextPeriodAt == t0 + .seconds(4))
        // The new probe waits the stretched timeout before asking helpers.
        #expect(a.nextDeadline == t0 + .seconds(3))
        // A probe answered in time lowers it again.
        guard case .ping(let seq, _)? = sends(second).last(where: { if case .ping = $0.1.body { true } else { false } })?.1.body else {
            Issue.record("no second ping: \(second)"); return
        }
        _ = a.receive(MembershipMessage(.ack(seq: seq)), from: id(2), fromAddress: addr(2), now: t0 + .milliseconds(2_100))
        #expect(a.localHealth == 0)
    }

    @Test("refuting a suspicion of itself: health worsens and the new record rides first on the next messages")
    func refutationFirst() {
        var a = activeNode(1, peers: [2, 3])
        let claim = MembershipMessage(.states([]), rumors: [.verdict(MemberVerdict(node: id(1), incarnation: 0, status: .suspect, origin: id(3)))])
        let out = a.receive(claim, from: id(2), fromAddress: addr(2), now: t0)
        let refuted = rec(1, inc: 1, at: t0)
        #expect(out == [.localUpdated(refuted)])
        #expect(a.localHealth == 1)
        for _ in 0..<3 {
            let m = a.receive(MembershipMessage(.ping(seq: 5, target: id(1))), from: id(2), fromAddress: addr(2), now: t0)
            #expect(sends(m).first?.1.rumors.first == .record(refuted))
        }
    }

    @Test("metadata changes are signed at once; load-only changes are rate limited")
    func updateLocal() {
        var a = activeNode(1, peers: [2])
        let models = [ModelDescriptor(name: "m", quantization: "Q4", hardware: "cpu")]
        let meta = MemberMetadata(models: models, capacity: 4, utilizationPPM: 0, accepting: true, stake: Credits(credits: 5))
        let now = t0 + .seconds(1)
        var expected = rec(1, inc: 1, at: now).value
        expected.models = models
        expected.capacity = 4
        expected.stake = Credits(credits: 5)
        let out = a.updateLocal(meta, now: now)
        #expect(out == [.localUpdated(Signed(expected, by: FakeSigner(seed: 1)))])
        var loaded = meta
        loaded.utilizationPPM = 500_000
        #expect(a.updateLocal(loaded, now: now + .seconds(2)) == [])
        #expect(a.localRecord.value.utilizationPPM == 0)
        let ticks = advance(&a, to: now + a.config.loadPublishInterval)
        expected.incarnation = 2
        expected.utilizationPPM = 500_000
        expected.updatedAt = now + a.config.loadPublishInterval
        // (The unanswered peer is suspected meanwhile; only the local record matters here.)
        let published = ticks.filter { if case .localUpdated = $0 { true } else { false } }
        #expect(published == [.localUpdated(Signed(expected, by: FakeSigner(seed: 1)))])
    }

    @Test("per-message bounds: rumors, states and digest entries are capped")
    func bounds() {
        var config = MembershipConfig()
        config.maxRumorsPerMessage = 2
        config.maxStatesPerMessage = 3
        config.maxDigestEntries = 4
        var b = makeNode(2, config: config)
        _ = b.start(now: t0, seeds: [])
        // Learn 10 members by rumors (3 messages of 4 × maxRumors allowed each).
        let peers: [UInt8] = Array(10..<20)
        _ = b.receive(MembershipMessage(.states([]), rumors: peers.prefix(8).map { .record(rec($0)) }), from: id(10), fromAddress: addr(10), now: t0)
        _ = b.receive(MembershipMessage(.states([]), rumors: peers.suffix(2).map { .record(rec($0)) }), from: id(10), fromAddress: addr(10), now: t0)
        #expect(b.alivePeers().count == 10)
        let out = b.tick(now: t0 + .seconds(1))
        for (_, m) in sends(out) {
            #expect(m.rumors.count <= 2)
            if case .pushPull(let d) = m.body { #expect(d.entries.count <= 4) }
        }
        // A joiner with an empty digest gets at most maxStatesPerMessage states.
        let join = MembershipMessage(.pushPull(MembershipDigest(lowerBound: nil, upperBound: nil, entries: [MembershipDigestEntry(node: id(1), incarnation: 0, status: .alive)])))
        let reply = b.receive(join, from: id(1), fromAddress: addr(1), now: t0 + .seconds(1))
        guard case .pushPullReply(let states, let wants)? = sends(reply).first?.1.body else {
            Issue.record("expected a push-pull reply")
            return
        }
        #expect(states.count == 3)
        #expect(wants == [id(1)])
    }

    @Test("log(N) scalings use integer math")
    func math() {
        #expect(MembershipMath.log10Milli(1) == 0)
        #expect((999...1_000).contains(MembershipMath.log10Milli(10)))
        #expect((1_999...2_000).contains(MembershipMath.log10Milli(100)))
        #expect((2_999...3_000).contains(MembershipMath.log10Milli(1_000)))
        #expect((3_000...3_001).contains(MembershipMath.log10Milli(1_001)))
        #expect(MembershipMath.ceilLog10(ofSuccessor: 9) == 1)
        #expect(MembershipMath.ceilLog10(ofSuccessor: 10) == 2)
        #expect(MembershipMath.ceilLog10(ofSuccessor: 1_000) == 4)
        let c = MembershipConfig()
        #expect(MembershipMath.suspicionTimeout(members: 5, config: c) == .seconds(4))
        let t1000 = MembershipMath.suspicionTimeout(members: 1_000, config: c)
        #expect(t1000 >= .milliseconds(11_990) && t1000 <= .milliseconds(12_010))
        #expect(MembershipMath.retransmitLimit(members: 100, config: c) == 12)
    }

    @Test("canonical bytes of a member record (test vector)")
    func canonicalVector() {
        let r = MemberRecord(
            node: NodeID(bytes: [UInt8](repeating: 0xab, count: 32)), address: "h:1", incarnation: 2, status: .alive,
            models: [ModelDescriptor(name: "m", quantization: "q", hardware: "cpu")], capacity: 3, utilizationPPM: 250_000,
            accepting: true, stake: Credits(micro: 7), updatedAt: Instant(nanoseconds: 9))
        let expected = "{\"accepting\":true,\"address\":\"h:1\",\"capacity\":3,\"incarnation\":2,\"models\":[{\"hardware\":\"cpu\",\"name\":\"m\",\"quantization\":\"q\"}],"
            + "\"node\":\"\(String(repeating: "ab", count: 32))\",\"stake\":7,\"status\":\"alive\",\"type\":\"memberRecord\",\"updatedAt\":9,\"utilizationPPM\":250000}"
        #expect(String(decoding: r.canonical.bytes, as: UTF8.self) == expected)
        #expect(MemberRecord.utilizationPPM(of: LoadSnapshot(running: 1, waiting: 1, capacity: 4)) == 500_000)
    }

    @Test("rumor queue: least transmitted first, limited retransmits, newer replaces older")
    func rumorQueue() {
        var q = RumorQueue(capacity: 3)
        q.push(.record(rec(1)))
        q.push(.record(rec(2)))
        #expect(q.take(limit: 1, retransmitLimit: 2) == [.record(rec(2))])
        #expect(q.take(limit: 2, retransmitLimit: 2) == [.record(rec(1)), .record(rec(2))])
        #expect(q.count == 1) // rec(2) reached its limit
        q.push(.verdict(MemberVerdict(node: id(1), incarnation: 0, status: .suspect, origin: id(2))))
        q.push(.record(rec(1, inc: 1))) // replaces both rumors about node 1
        #expect(q.count == 1)
        #expect(q.take(limit: 5, retransmitLimit: 2) == [.record(rec(1, inc: 1))])
        q.push(.record(rec(3)))
        q.push(.record(rec(4)))
        q.push(.record(rec(5)))
        #expect(q.count == 3) // capacity: the most transmitted was evicted
        #expect(q.take(limit: 5, retransmitLimit: 9) == [.record(rec(5)), .record(rec(4)), .record(rec(3))])
    }

    /// The slab queue against the dictionary-and-id queue it replaced (kept here as the
    /// reference): the same rumors come out, in the same order, over random pushes,
    /// supersessions, evictions and takes.
    @Test func rumorQueueMatchesReference() {
        var prng = SeededPRNG(seed: 5)
        for capacity in [1, 3, 16] {
            var q = RumorQueue(capacity: capacity), reference = ReferenceRumorQueue(capacity: capacity)
            for _ in 0..<2_000 {
                if prng.next() % 3 == 0 {
                    let limit = Int(prng.next() % 4), retransmits = 1 + Int(prng.next() % 4)
                    #expect(q.take(limit: limit, retransmitLimit: retransmits) == reference.take(limit: limit, retransmitLimit: retransmits))
                } else {
                    let s = UInt8(1 + prng.next() % 12)
                    let r: MembershipRumor = prng.next() % 3 == 0
                        ? .verdict(MemberVerdict(node: id(s), incarnation: prng.next() % 5, status: .suspect, origin: id(99)))
                        : .record(rec(s, inc: prng.next() % 5))
                    q.push(r)
                    reference.push(r)
                }
                #expect(q.count == reference.count)
            }
        }
    }
}

/// The rumor queue as it was before the slab (liveness by a per-slot id in a dictionary).
private struct ReferenceRumorQueue {
    struct Item { var rumor: MembershipRumor; var id: UInt64 }
    struct Slot: Hashable {
        var subject: NodeID
        var isRecord: Bool
        init(_ r: MembershipRumor) {
            subject = r.subject
            if case .record = r { isRecord = true } else { isRecord = false }
        }
        init(subject: NodeID, isRecord: Bool) { self.subject = subject; self.isRecord = isRecord }
    }
    var buckets: [[Item]] = [[]]
    var live: [Slot: UInt64] = [:]
    var nextID: UInt64 = 1
    let capacity: Int
    init(capacity: Int) { self.capacity = capacity }
    var count: Int { live.count }

    mutating func push(_ r: MembershipRumor) {
        let slot = Slot(r)
        if slot.isRecord { live[Slot(subject: slot.subject, isRecord: false)] = nil }
        live[slot] = nextID
        buckets[0].append(Item(rumor: r, id: nextID))
        nextID += 1
        while live.count > capacity { evictOne() }
    }

    mutating func take(limit: Int, retransmitLimit: Int) -> [MembershipRumor] {
        var out: [MembershipRumor] = []
        var moved: [(Int, Item)] = []
        var t = 0
        while t < buckets.count && out.count < limit {
            while out.count < limit, let item = buckets[t].popLast() {
                guard live[Slot(item.rumor)] == item.id else { continue }
                out.append(item.rumor)
                if t + 1 < retransmitLimit { moved.append((t + 1, item)) } else { live[Slot(item.rumor)] = nil }
            }
            t += 1
        }
        for (bucket, item) in moved {
            while buckets.count <= bucket { buckets.append([]) }
            buckets[bucket].append(item)
        }
        return out
    }

    mutating func evictOne() {
        var t = buckets.count - 1
        while t >= 0 {
            while let item = buckets[t].popLast() {
                if live[Slot(item.rumor)] == item.id {
                    live[Slot(item.rumor)] = nil
                    return
                }
            }
            t -= 1
        }
    }

}
