import Testing
import WWWCore
@testable import WWWSim

// The deterministic harness driving many membership cores over a lossy, partitionable
// network. Many seeds, small N, so it stays fast in debug builds.

private let seeds: [UInt64] = Array(1...24)

private func cluster(n: Int, seed: UInt64, loss: Double, config: MembershipConfig = MembershipConfig()) -> Simulation<MembershipProcess> {
    var sim = Simulation<MembershipProcess>(
        seed: seed, network: SimNetworkConfig(minDelay: .milliseconds(2), maxDelay: .milliseconds(40), lossProbability: loss),
        limits: SimLimits(maxTime: Instant(seconds: 1_700_000_000) + .seconds(3_600), maxEvents: 5_000_000))
    sim.addMember(index: 0, seeds: [], config: config)
    for i in 1..<n {
        sim.addMember(index: i, seeds: [SimAddress.of(0), SimAddress.of((i + 1) % n)], config: config, after: .milliseconds(Int64(i) * 37))
    }
    return sim
}

private func statuses(_ sim: Simulation<MembershipProcess>, of node: Int) -> [MemberStatus?] {
    let id = sim.nodes[node].process.membership.nodeID
    return sim.nodes.indices.filter { $0 != node && sim.participates($0) }.map { sim.nodes[$0].process.membership.record(of: id)?.status }
}

@Suite("Harness")
struct HarnessTests {
    @Test("event heap orders by time, then insertion (FIFO among equal times)")
    func heapOrder() {
        var h = EventHeap<Int>()
        let t = Instant(seconds: 5)
        h.push(1, at: t + .seconds(2))
        h.push(2, at: t)
        h.push(3, at: t + .seconds(1))
        h.push(4, at: t)
        h.push(5, at: t)
        var out: [Int] = []
        while let e = h.pop() { out.append(e) }
        #expect(out == [2, 4, 5, 3, 1])
    }

    @Test("same seed, same run")
    func determinism() {
        func run() -> (SimStats, [SimTraffic], [[MemberRecord]]) {
            var sim = cluster(n: 6, seed: 99, loss: 0.1)
            sim.run(for: .seconds(20))
            sim.crash(3)
            sim.run(for: .seconds(10))
            return (sim.stats, sim.nodes.map(\.traffic), sim.nodes.map(\.process.membership.members))
        }
        let a = run(), b = run()
        #expect(a.0 == b.0)
        #expect(a.1 == b.1)
        #expect(a.2 == b.2)
        #expect(a.0.lost > 0)
    }

    @Test("a run stops at its limits", arguments: [false, true])
    func limits(byEvents: Bool) {
        var sim = Simulation<MembershipProcess>(
            seed: 1, limits: SimLimits(maxTime: Instant(seconds: 1_700_000_000) + .seconds(byEvents ? 1_000 : 5), maxEvents: byEvents ? 200 : 1_000_000))
        sim.addMember(index: 0, seeds: [])
        sim.addMember(index: 1, seeds: [SimAddress.of(0)])
        #expect(sim.run(for: .seconds(30)) == false)
        #expect(sim.limitHit)
        #expect(byEvents ? sim.eventsProcessed == 200 : sim.now == sim.limits.maxTime)
    }

    @Test("joins converge under 10 % loss; a later joiner is known by all", arguments: seeds)
    func joinConverges(seed: UInt64) {
        var sim = cluster(n: 7, seed: seed, loss: 0.1)
        let t = sim.run(step: .seconds(1), timeout: .seconds(30)) { $0.membershipConverged() }
        #expect(t != nil)
        let j = sim.addMember(index: 7, seeds: [SimAddress.of(Int(seed % 7))])
        let joined = sim.run(step: .seconds(1), timeout: .seconds(20)) { s in statuses(s, of: j).allSatisfy { $0 == .alive } }
        #expect(joined != nil)
        // False suspicions under loss are refuted: the whole table settles again.
        #expect(sim.run(step: .seconds(1), timeout: .seconds(20)) { $0.membershipConverged() } != nil)
    }

    @Test("a crashed node is declared dead by all after the suspicion timeout", arguments: seeds)
    func crashDetected(seed: UInt64) {
        var sim = cluster(n: 7, seed: seed, loss: 0.05)
        #expect(sim.run(step: .seconds(1), timeout: .seconds(30)) { $0.membershipConverged() } != nil)
        let victim = 1 + Int(seed % 6)
        sim.crash(victim)
        let timeout = sim.nodes[0].process.membership.suspicionTimeout
        // Probe period + suspicion timeout + dissemination.
        sim.run(for: .seconds(2) + timeout + .seconds(10))
        #expect(statuses(sim, of: victim).allSatisfy { $0 == .dead || $0 == nil })
        #expect(sim.membershipConverged())
        // It comes back (state lost, incarnation 0): it refutes its death and is alive again.
        sim.restart(victim, with: MembershipProcess(membership: Membership(
            signer: SimSigner(index: victim), crypto: SimCrypto(), address: SimAddress.of(victim), seed: seed), seeds: [SimAddress.of(0)]))
        let back = sim.run(step: .seconds(1), timeout: .seconds(30)) { $0.membershipConverged() }
        #expect(back != nil)
        #expect(sim.nodes[victim].process.membership.localRecord.value.incarnation > 0)
    }

    @Test("forged death claims, from a lying member or a stranger, do not evict a live node", arguments: [false, true], seeds.prefix(6))
    func forgedClaims(stranger: Bool, seed: UInt64) {
        var sim = cluster(n: 7, seed: seed, loss: 0.02)
        #expect(sim.run(step: .seconds(1), timeout: .seconds(30)) { $0.membershipConverged() } != nil)
        let victim = 1, liar = 6
        let victimID = sim.nodes[victim].process.membership.nodeID
        // A stranger signs its envelopes with a key outside the network.
        let sender = stranger ? SimSigner(index: 99).nodeID : sim.nodes[liar].process.membership.nodeID
        let honest = [0, 2, 3, 4, 5]
        var outOfView = 0, samples = 0
        for step in 0..<150 {
            // Every 200 ms, to every honest node: "the victim is dead" at its current incarnation.
            let inc = sim.nodes[victim].process.membership.localRecord.value.incarnation
            let lie = MembershipMessage(.states([]), rumors: [.verdict(MemberVerdict(node: victimID, incarnation: inc, status: .dead, origin: sender))])
            sim.perform(on: liar) { _, _ in honest.map { SimSend(to: SimAddress.of($0), message: MembershipPacket(from: sender, message: lie)) } }
            sim.run(for: .milliseconds(200))
            if step % 5 == 4 {
                samples += 1
                if honest.contains(where: { sim.nodes[$0].process.membership.record(of: victimID)?.status != .alive }) { outOfView += 1 }
            }
        }
        // A lost ping now and then may make a node suspect the victim on its own; the
        // victim refutes. The lies themselves must not keep it out.
        #expect(outOfView <= 3, "the victim was out of some honest view in \(outOfView) of \(samples) samples")
    }

    @Test("a graceful leave is known by all", arguments: seeds.prefix(8))
    func leaveKnown(seed: UInt64) {
        var sim = cluster(n: 6, seed: seed, loss: 0.05)
        #expect(sim.run(step: .seconds(1), timeout: .seconds(30)) { $0.membershipConverged() } != nil)
        sim.perform(on: 2) { p, now in p.perform { $0.leave(now: now) } }
        let gone = sim.run(step: .seconds(1), timeout: .seconds(15)) { s in statuses(s, of: 2).allSatisfy { $0 == .left || $0 == nil } }
        #expect(gone != nil)
    }

    @Test("membership converges after a partition heals", arguments: seeds)
    func partitionHeals(seed: UInt64) {
        var sim = cluster(n: 8, seed: seed, loss: 0.05)
        #expect(sim.run(step: .seconds(1), timeout: .seconds(30)) { $0.membershipConverged() } != nil)
        sim.partition([[0, 1, 2, 3], [4, 5, 6, 7]])
        // Lifeguard: a suspicion lasts up to 3× the base timeout until others confirm it.
        sim.run(for: .seconds(35))
        // Each side has declared the other dead.
        #expect(statuses(sim, of: 5).prefix(4).allSatisfy { $0 == .dead })
        sim.heal()
        let healed = sim.run(step: .seconds(1), timeout: .seconds(40)) { $0.membershipConverged() }
        #expect(healed != nil)
    }

    @Test("sides of a partition longer than the tombstone TTL find each other through the seeds", arguments: seeds.prefix(6))
    func longPartitionHeals(seed: UInt64) {
        var sim = cluster(n: 6, seed: seed, loss: 0.02)
        #expect(sim.run(step: .seconds(1), timeout: .seconds(30)) { $0.membershipConverged() } != nil)
        sim.partition([[0, 1, 2], [3, 4, 5]])
        sim.run(for: .seconds(100))
        // Tombstones expired: the other side is forgotten.
        #expect(statuses(sim, of: 4).prefix(3).allSatisfy { $0 == nil })
        sim.heal()
        let healed = sim.run(step: .seconds(1), timeout: .seconds(60)) { $0.membershipConverged() }
        #expect(healed != nil)
    }

    @Test("convergence experiment runs at small N")
    func experiment() {
        let r = ConvergenceExperiment.run(n: 12, seed: 3, steadyPeriods: 5, maxPeriods: 120)
        #expect(r.bootstrapPeriods != nil && r.joinPeriods != nil && r.leavePeriods != nil && r.crashPeriods != nil)
        #expect(r.messagesPerNodePerPeriod > 0 && r.bytesPerNodePerPeriod > 0)
    }
}
