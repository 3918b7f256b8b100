import Testing
@testable import WWWCore

private let t0 = Instant(seconds: 1_000_000)
private func addr(_ s: UInt8) -> String { "10.0.0.\(s):7070" }
private func id(_ s: UInt8) -> NodeID { FakeSigner(seed: s).nodeID }
private func rec(_ s: UInt8, inc: UInt64 = 0) -> Signed<MemberRecord> {
    let signer = FakeSigner(seed: s)
    return Signed(MemberRecord(node: signer.nodeID, address: addr(s), incarnation: inc, status: .alive, updatedAt: t0), by: signer)
}
private func activeNode(_ s: UInt8, peers: [UInt8], config: MembershipConfig = MembershipConfig()) -> Membership {
    var m = Membership(config: config, signer: FakeSigner(seed: s), crypto: FakeCrypto(), address: addr(s), incarnation: 0, seed: UInt64(s))
    _ = m.start(now: t0, seeds: [])
    _ = m.receive(MembershipMessage(.states(peers.map { .record(rec($0)) })), from: id(peers[0]), fromAddress: addr(peers[0]), now: t0)
    m.rumors = RumorQueue(capacity: config.maxQueuedRumors)
    m.selfRumorBudget = 0
    return m
}

@Suite("membership under abuse (found by a hostile tester)")
struct MembershipAbuseTests {
    /// A stranger (not in the table) drives the victim's local health to the maximum with ONE message.
    @Test func strangerMaxesLocalHealth() {
        var v = activeNode(1, peers: [2, 3, 4, 5])
        #expect(v.localHealth == 0)
        let stranger: UInt8 = 99
        #expect(v.record(of: id(stranger)) == nil)
        let claims = (0..<16).map { MembershipRumor.verdict(MemberVerdict(node: id(1), incarnation: UInt64($0), status: .suspect, origin: id(stranger))) }
        _ = v.receive(MembershipMessage(.states([]), rumors: claims), from: id(stranger), fromAddress: addr(stranger), now: t0 + .milliseconds(10))
        #expect(v.localHealth == 0, "a stranger's claims must not slow this node down")
        #expect(v.localRecord.value.incarnation <= 1, "and one message makes it re-sign at most once")
    }

    /// A stranger pushes the victim's incarnation to Int64.max; afterwards it can no longer refute,
    /// and its next signed record is malformed for everyone.
    @Test func strangerExhaustsIncarnation() {
        var v = activeNode(1, peers: [2, 3, 4, 5])
        let stranger: UInt8 = 99
        let big = UInt64(Int64.max) - 1
        _ = v.receive(MembershipMessage(.states([]), rumors: [.verdict(MemberVerdict(node: id(1), incarnation: big, status: .suspect, origin: id(stranger)))]),
                      from: id(stranger), fromAddress: addr(stranger), now: t0 + .milliseconds(10))
        // Now an honest member suspects it at its current incarnation: victim cannot refute.
        let cur = v.localRecord.value.incarnation
        let ds = v.receive(MembershipMessage(.states([]), rumors: [.verdict(MemberVerdict(node: id(1), incarnation: cur, status: .suspect, origin: id(2)))]),
                           from: id(2), fromAddress: addr(2), now: t0 + .milliseconds(20))
        let refuted = ds.contains { if case .localUpdated = $0 { return true } else { return false } }
        #expect(refuted, "the victim must still be able to refute a suspicion")
        // Its next metadata update is signed at Int64.max+1 and rejected by peers.
        _ = v.updateLocal(MemberMetadata(accepting: false), now: t0 + .seconds(1))
        let r = v.localRecord
        var peer = activeNode(2, peers: [1, 3])
        let pds = peer.receive(MembershipMessage(.states([.record(r)])), from: id(1), fromAddress: addr(1), now: t0 + .seconds(1))
        #expect(!pds.contains { if case .rejected = $0 { return true } else { return false } })
    }

    /// Same through a push-pull digest (no verdict needed).
    @Test func strangerDigestBumpsIncarnation() {
        var v = activeNode(1, peers: [2, 3])
        let d = MembershipDigest(lowerBound: nil, upperBound: nil, entries: [MembershipDigestEntry(node: id(1), incarnation: UInt64(Int64.max) - 1, status: .alive)])
        _ = v.receive(MembershipMessage(.pushPull(d)), from: id(99), fromAddress: addr(99), now: t0 + .milliseconds(10))
        #expect(v.localRecord.value.incarnation < 1000)
    }

    /// One lying member claims about many members; subjects answer every ping at once.
    /// Past maxConfirmations running checks, waiting claims become `suspect` without any check.
    @Test func claimWithoutCheck() {
        let peers = Array(UInt8(2)...UInt8(40))
        var x = activeNode(1, peers: peers)
        let liar: UInt8 = 2
        let subjects = Array(peers.dropFirst())
        var pinged = Set<NodeID>()
        var suspectedUnchecked: [NodeID] = []
        var now = t0 + .milliseconds(5)
        let claims = subjects.map { MembershipRumor.verdict(MemberVerdict(node: id($0), incarnation: 0, status: .suspect, origin: id(liar))) }
        var pending: [(NodeID, UInt64)] = []
        func feed(_ ds: [MembershipDirective]) {
            for d in ds {
                switch d {
                case .send(.node(let to, _), let m):
                    if case .ping(let seq, let target) = m.body, target == to, subjects.map(id).contains(to) { pinged.insert(to); pending.append((to, seq)) }
                    if case .pingReq(_, let target, _) = m.body { pinged.insert(target) }
                case .memberChanged(let r) where r.status == .suspect:
                    if !pinged.contains(r.node) { suspectedUnchecked.append(r.node) }
                default: break
                }
            }
        }
        // The liar sends its claims in chunks of 32 rumors (receive's cap).
        for chunk in stride(from: 0, to: claims.count, by: 32) {
            feed(x.receive(MembershipMessage(.states([]), rumors: Array(claims[chunk..<min(claims.count, chunk + 32)])), from: id(liar), fromAddress: addr(liar), now: now))
        }
        let end = t0 + .seconds(6)
        var guardN = 0
        while let d = x.nextDeadline, d <= end, guardN < 10_000 {
            guardN += 1
            now = d
            feed(x.tick(now: d))
            // Every subject answers each ping immediately (it is alive and responsive).
            while !pending.isEmpty {
                let (to, seq) = pending.removeFirst()
                let who = subjects.first { id($0) == to }!
                feed(x.receive(MembershipMessage(.ack(seq: seq)), from: to, fromAddress: addr(who), now: now + .milliseconds(1)))
            }
        }
        #expect(suspectedUnchecked.isEmpty, "only an unanswered check may make a subject suspect")
    }

    /// A member's claims about this node make it refute, but raise its local health at most
    /// once per period, however many arrive.
    @Test func refutationFloodRaisesHealthOncePerPeriod() {
        var v = activeNode(1, peers: [2, 3, 4, 5])
        let claims = (0..<16).map { MembershipRumor.verdict(MemberVerdict(node: id(1), incarnation: UInt64($0), status: .suspect, origin: id(2))) }
        _ = v.receive(MembershipMessage(.states([]), rumors: claims), from: id(2), fromAddress: addr(2), now: t0 + .milliseconds(10))
        #expect(v.localHealth == 1)
        _ = v.receive(MembershipMessage(.states([]), rumors: claims), from: id(2), fromAddress: addr(2), now: t0 + .milliseconds(20))
        #expect(v.localHealth == 1)
    }

    /// A restarted node learns its previous life's higher incarnation only from its own signed
    /// record: it asks for it, then refutes above it.
    @Test func previousLifeIsLearnedFromTheSignedRecord() {
        var v = activeNode(1, peers: [2, 3])
        let d = MembershipDigest(lowerBound: nil, upperBound: nil, entries: [MembershipDigestEntry(node: id(1), incarnation: 5, status: .alive)])
        let out = v.receive(MembershipMessage(.pushPull(d)), from: id(2), fromAddress: addr(2), now: t0 + .milliseconds(10))
        #expect(v.localRecord.value.incarnation == 0)
        let wants = out.compactMap { d -> [NodeID]? in
            if case .send(_, let m) = d, case .pushPullReply(_, let w) = m.body { return w } else { return nil }
        }.first ?? []
        #expect(wants.contains(id(1)))
        _ = v.receive(MembershipMessage(.states([.record(rec(1, inc: 5))])), from: id(2), fromAddress: addr(2), now: t0 + .milliseconds(20))
        #expect(v.localRecord.value.incarnation == 6)
    }
}

/// The table queries the scheduler and the ledger fan-out use instead of copying every
/// alive record (the simulator's hot paths at 1,000 nodes).
@Suite("membership queries: random alive peers, in-place iteration, digests")
struct MembershipQueryTests {
    @Test func randomAlivePeersAreDistinctAliveAndBounded() {
        let peers = Array(UInt8(2)...UInt8(60))
        var m = activeNode(1, peers: peers)
        var out: [MembershipDirective] = []
        // Make one member suspect: it must never be drawn.
        let v = MemberVerdict(node: id(7), incarnation: 0, status: .suspect, origin: id(1))
        m.adoptVerdict(v, now: t0, regossip: false, into: &out)
        #expect(m.record(of: id(7))?.status == .suspect)
        var prng = SeededPRNG(seed: 42)
        for k in [0, 1, 3, 10, 58, 80] {
            let drawn = m.randomAlivePeers(k, prng: &prng)
            #expect(drawn.count == min(k, peers.count - 1), "k = \(k)")
            #expect(Set(drawn.map(\.node)).count == drawn.count, "distinct")
            #expect(!drawn.contains { $0.node == id(7) || $0.node == id(1) }, "neither the suspect nor this node")
            for d in drawn { #expect(m.record(of: d.node)?.address == d.address) }
        }
        // The same PRNG state draws the same peers (determinism).
        var a = SeededPRNG(seed: 9), b = SeededPRNG(seed: 9)
        #expect(m.randomAlivePeers(3, prng: &a).map(\.node) == m.randomAlivePeers(3, prng: &b).map(\.node))
    }

    @Test func forEachAlivePeerMatchesAlivePeers() {
        var m = activeNode(1, peers: Array(UInt8(2)...UInt8(30)))
        var out: [MembershipDirective] = []
        m.adoptVerdict(MemberVerdict(node: id(5), incarnation: 0, status: .suspect, origin: id(1)), now: t0, regossip: false, into: &out)
        var seen: [NodeID] = []
        m.forEachAlivePeer { seen.append($0.node) }
        #expect(seen == m.alivePeers().map(\.node))
        #expect(!seen.contains(id(5)) && seen.count == 28)
    }

    @Test func digestStatesFollowTheTable() {
        var config = MembershipConfig()
        config.maxDigestEntries = 8
        var m = activeNode(1, peers: Array(UInt8(2)...UInt8(21)), config: config)
        var out: [MembershipDirective] = []
        m.adoptVerdict(MemberVerdict(node: id(9), incarnation: 0, status: .suspect, origin: id(1)), now: t0, regossip: false, into: &out)
        // Walk the whole table digest by digest: every member (this node included) once,
        // in id order, each with the status and incarnation the table holds.
        // A summary of each range (fingerprint from the stored terms) matches the
        // fingerprint of the full digest's entries, with the same bounds.
        var seen: [MembershipDigestEntry] = []
        var summaries = m
        for _ in 0..<3 {
            let d = m.nextDigest(), s = summaries.nextDigest(summary: true)
            #expect(s.entries.isEmpty && s.lowerBound == d.lowerBound && s.upperBound == d.upperBound)
            #expect(s.fingerprint == MembershipDigest.fingerprint(of: d.entries))
            seen += d.entries
            if d.upperBound == nil { break }
        }
        let expected = m.members.map { MembershipDigestEntry(node: $0.node, incarnation: $0.incarnation, status: $0.status) }
        #expect(seen == expected)
        #expect(seen.first { $0.node == id(9) }?.status == .suspect)
        #expect(m.states.count == m.order.count)
    }

    /// An honest digest (sorted, inside its bounds) is compared by merging it with the
    /// table; the merge finds exactly what lookups find, over random tables and digests.
    @Test func sortedDigestComparisonMatchesLookups() {
        var prng = SeededPRNG(seed: 11)
        for round in 0..<60 {
            var m = activeNode(1, peers: Array(UInt8(2)...UInt8(40)), config: MembershipConfig())
            var out: [MembershipDirective] = []
            for s in UInt8(2)...UInt8(40) where prng.next() % 4 == 0 {   // some members newer here
                _ = m.receive(MembershipMessage(.states([.record(rec(s, inc: 1 + prng.next() % 3))])), from: id(s), fromAddress: addr(s), now: t0)
            }
            for s in UInt8(2)...UInt8(40) where prng.next() % 8 == 0 {   // and some dead
                if let e = m.entries[id(s)] { m.adoptVerdict(MemberVerdict(node: id(s), incarnation: e.incarnation, status: .dead, origin: id(1)), now: t0, regossip: false, into: &out) }
            }
            // Their side: members 1…60 at random versions, a random sub-range, sorted.
            let all = (UInt8(1)...UInt8(60)).map(id).sorted()
            let lo = Int(prng.next() % 30), hi = lo + Int(prng.next() % 30)
            let statuses: [MemberStatus] = [.alive, .suspect, .dead, .left]
            let theirs = all[lo...hi].filter { _ in prng.next() % 3 != 0 }.map {
                MembershipDigestEntry(node: $0, incarnation: prng.next() % 4, status: statuses[Int(prng.next() % 4)])
            }
            let d = MembershipDigest(lowerBound: round % 5 == 0 ? nil : all[lo], upperBound: round % 7 == 0 ? nil : all[hi], entries: theirs)
            let compared = d.entries[...]
            #expect(m.isSortedWithin(d, compared))
            let merged = m.compareSorted(d, compared), looked = m.compareByLookup(d, compared)
            #expect(merged.newer == looked.newer)
            #expect(merged.wants == looked.wants)
        }
        // Unsorted: wants keep the digest's order, this node's own id where it stands (and
        // once per entry above its incarnation), as before the merge existed.
        let v = activeNode(1, peers: [2, 3])
        let unsorted = [MembershipDigestEntry(node: id(2), incarnation: 1, status: .alive),
                        MembershipDigestEntry(node: id(1), incarnation: 5, status: .alive),
                        MembershipDigestEntry(node: id(1), incarnation: 6, status: .alive)]
        let du = MembershipDigest(lowerBound: nil, upperBound: nil, entries: unsorted)
        #expect(!v.isSortedWithin(du, du.entries[...]))
        #expect(v.compareByLookup(du, du.entries[...]).wants == [id(2), id(1), id(1)])
        // Unsorted or out-of-bounds entries take the lookup path.
        let m = activeNode(1, peers: [2, 3, 4])
        let ids = [id(2), id(3), id(4)].sorted()
        let e = { (n: NodeID) in MembershipDigestEntry(node: n, incarnation: 0, status: .alive) }
        #expect(!m.isSortedWithin(MembershipDigest(lowerBound: nil, upperBound: nil, entries: [e(ids[1]), e(ids[0])]), [e(ids[1]), e(ids[0])]))
        #expect(!m.isSortedWithin(MembershipDigest(lowerBound: ids[1], upperBound: nil, entries: [e(ids[0])]), [e(ids[0])]))
        #expect(!m.isSortedWithin(MembershipDigest(lowerBound: nil, upperBound: nil, entries: [e(ids[0]), e(ids[0])]), [e(ids[0]), e(ids[0])]))
    }


    /// A member this node holds dead comes back with a newer record. Alone, the record
    /// revives it; handed over with the sender's own dead verdict at that incarnation (a
    /// refutation signed before a crash, crossing a partition heal: fuzz seeds 5323, 5606),
    /// it stays dead. A dead claim about a member not revived by the same message is only
    /// a claim to check.
    @Test func deadMemberStaysDeadWhenItsNewerRecordComesWithADeadVerdict() {
        func deadAt0() -> Membership {
            var m = activeNode(1, peers: [2, 3, 4])
            var out: [MembershipDirective] = []
            m.adoptVerdict(MemberVerdict(node: id(3), incarnation: 0, status: .dead, origin: id(1)), now: t0, regossip: false, into: &out)
            #expect(m.record(of: id(3))?.status == .dead)
            return m
        }
        let dead1 = MembershipRumor.verdict(MemberVerdict(node: id(3), incarnation: 1, status: .dead, origin: id(2)))
        let later = t0 + .seconds(5)

        var both = deadAt0()
        _ = both.receive(MembershipMessage(.states([.record(rec(3, inc: 1)), dead1])), from: id(2), fromAddress: addr(2), now: later)
        #expect(both.record(of: id(3))?.status == .dead && both.record(of: id(3))?.incarnation == 1)
        #expect(both.claims[id(3)] == nil)

        var recordOnly = deadAt0()
        _ = recordOnly.receive(MembershipMessage(.states([.record(rec(3, inc: 1))])), from: id(2), fromAddress: addr(2), now: later)
        #expect(recordOnly.record(of: id(3))?.status == .alive && recordOnly.record(of: id(3))?.incarnation == 1)

        // The verdict in a later message: the record revived it then, so now it is a claim.
        _ = recordOnly.receive(MembershipMessage(.states([dead1])), from: id(2), fromAddress: addr(2), now: later + .seconds(2))
        #expect(recordOnly.record(of: id(3))?.status == .alive)
        #expect(recordOnly.claims[id(3)] != nil)
    }

}

