import Testing
@testable import WWWCore

private let t0 = Instant(seconds: 1_000_000)
private func addr(_ s: UInt8) -> String { "10.0.0.\(s):7070" }
private func id(_ s: UInt8) -> NodeID { FakeSigner(seed: s).nodeID }
private func rec(_ s: UInt8, inc: UInt64 = 0) -> Signed<MemberRecord> {
    let signer = FakeSigner(seed: s)
    return Signed(MemberRecord(node: signer.nodeID, address: addr(s), incarnation: inc, status: .alive, updatedAt: t0), by: signer)
}
private func node(_ s: UInt8, peers: [UInt8], config: MembershipConfig = MembershipConfig()) -> Membership {
    var m = Membership(config: config, signer: FakeSigner(seed: s), crypto: FakeCrypto(), address: addr(s), incarnation: 0, seed: UInt64(s))
    _ = m.start(now: t0, seeds: [])
    for chunk in stride(from: 0, to: peers.count, by: 16).map({ Array(peers[$0..<min(peers.count, $0 + 16)]) }) {
        _ = m.receive(MembershipMessage(.states(chunk.map { .record(rec($0)) })), from: id(chunk[0]), fromAddress: addr(chunk[0]), now: t0)
    }
    return m
}

/// The table queries the scheduler and the ledger fan-out use instead of copying every
/// alive record (the simulator's hot paths at 1,000 nodes).
@Suite("membership queries: random alive peers, in-place iteration, digests")
struct MembershipQueryTests {
    @Test func randomAlivePeersAreDistinctAliveAndBounded() {
        let peers = Array(UInt8(2)...UInt8(60))
        var m = node(1, peers: peers)
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
        var m = node(1, peers: Array(UInt8(2)...UInt8(30)))
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
        var m = node(1, peers: Array(UInt8(2)...UInt8(21)), config: config)
        var out: [MembershipDirective] = []
        m.adoptVerdict(MemberVerdict(node: id(9), incarnation: 0, status: .suspect, origin: id(1)), now: t0, regossip: false, into: &out)
        // Walk the whole table digest by digest: every member (this node included) once,
        // in id order, each with the status and incarnation the table holds.
        var seen: [MembershipDigestEntry] = []
        for _ in 0..<3 {
            let d = m.nextDigest()
            seen += d.entries
            if d.upperBound == nil { break }
        }
        let expected = m.members.map { MembershipDigestEntry(node: $0.node, incarnation: $0.incarnation, status: $0.status) }
        #expect(seen == expected)
        #expect(seen.first { $0.node == id(9) }?.status == .suspect)
        #expect(m.states.count == m.order.count)
    }
}

