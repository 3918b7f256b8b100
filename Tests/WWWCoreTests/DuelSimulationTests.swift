import Testing
@testable import WWWCore
@testable import WWWSim

/// Duels end to end in the simulator: the product's node machines, a requester that duels
/// every job, two providers (one a junk responder that scripted judges can tell), three
/// judges. Over many seeds: duels settle, the junk provider's balance falls below the
/// honest one's, Σ balances = Σ grants on every node at every step, and the ledgers agree.
@Suite("Duels in the simulator")
struct DuelSimulationTests {
    static let n = 6
    static let junk = 2, honest = 1

    static func genesis() -> Genesis {
        var g = [NodeID: Credits]()
        for i in 0..<n { g[SimSigner(index: i).nodeID] = Credits(credits: 100) }
        return Genesis(networkID: "sim-duel", parameters: GenesisParameters(duelProbability: 1_000_000), grants: g,
                       seeds: [SimAddress.of(0)])
    }

    static func config(_ i: Int, positionBias: Bool) -> SimNodeConfig {
        let quality = [SimSigner(index: honest).nodeID: 1, SimSigner(index: junk).nodeID: 0]
        switch i {
        case 0:
            var c = SimNodeConfig.requester()
            c.machine.duel = DuelConfig(runDuels: true, judgingTimeout: .seconds(5))
            return c
        case honest, junk:
            return .provider(capacity: 4, stake: Credits(credits: 40))
        default:
            var c = SimNodeConfig(declaredStake: Credits(credits: 20))
            c.machine.duel = DuelConfig(judge: true)
            c.judge = SimJudge(quality: quality, positionBias: positionBias)
            return c
        }
    }

    struct Outcome {
        var settled = 0, abandoned = 0, started = 0
        var honestDelta: Int64 = 0, junkDelta: Int64 = 0
        var honestRecord: DuelRecord?, junkRecord: DuelRecord?
        var supplyOK = true
        var converged = false
        var completed = 0, submitted = 0
    }

    static func run(seed: UInt64, positionBias: Bool = false, requests: Int = 20) -> Outcome {
        let g = genesis()
        var sim = Simulation<SimNode>(seed: seed, network: SimNetworkConfig(minDelay: .milliseconds(2), maxDelay: .milliseconds(30)),
                                      limits: SimLimits(maxTime: Instant(seconds: 1_700_000_000) + .seconds(3_600), maxEvents: 5_000_000))
        sim.measureBytes = false
        sim.addNode(index: 0, genesis: g, seeds: [], config: config(0, positionBias: positionBias))
        for i in 1..<n {
            sim.addNode(index: i, genesis: g, seeds: [SimAddress.of(0)], config: config(i, positionBias: positionBias),
                        after: .milliseconds(Int64(i) * 37))
        }
        var o = Outcome()
        guard sim.run(step: .seconds(1), timeout: .seconds(30), until: { $0.membershipConverged() }) != nil else { return o }
        sim.run(for: .seconds(3))   // records carry stakes and the judging flag
        var ids: [RequestID] = []
        for _ in 0..<requests {
            if let r = sim.submit(at: 0, job: SimJobSpec(promptTokens: 100, outputTokens: 10), timeout: .seconds(60)) { ids.append(r) }
            sim.run(for: .milliseconds(700))
            for i in sim.nodes.indices where sim.nodes[i].process.ledger.totalBalance != g.totalSupply { o.supplyOK = false }
        }
        for _ in 0..<30 {
            sim.run(for: .seconds(1))
            for i in sim.nodes.indices where sim.nodes[i].process.ledger.totalBalance != g.totalSupply { o.supplyOK = false }
            if sim.ledgersConverged() { o.converged = true; break }
        }
        let c = sim.nodes[0].process.counters
        o.started = c.duelsStarted
        o.settled = c.duelsSettled
        o.abandoned = c.duelsAbandoned
        o.submitted = ids.count
        o.completed = ids.filter { sim.nodes[0].process.results[$0]?.isComplete == true }.count
        let l = sim.nodes[0].process.ledger
        o.honestDelta = (l.balance(of: SimSigner(index: honest).nodeID) - Credits(credits: 100)).micro
        o.junkDelta = (l.balance(of: SimSigner(index: junk).nodeID) - Credits(credits: 100)).micro
        o.honestRecord = l.duelRecords[SimSigner(index: honest).nodeID]
        o.junkRecord = l.duelRecords[SimSigner(index: junk).nodeID]
        return o
    }

    @Test("judges that can tell: the junk responder's credits fall below the honest provider's", arguments: Array(UInt64(1)...8))
    func junkLoses(seed: UInt64) {
        let o = Self.run(seed: seed)
        #expect(o.supplyOK && o.converged)
        #expect(o.completed == o.submitted && o.submitted == 20)   // every user got an answer
        #expect(o.started >= 10 && o.settled >= 5, "duels started \(o.started), settled \(o.settled)")
        #expect(o.junkDelta < o.honestDelta, "junk \(o.junkDelta) honest \(o.honestDelta)")
        #expect(o.junkDelta < 0, "junk \(o.junkDelta)")   // it forfeits more bond than its receipts earn
        // Every settled duel is a win for the honest provider and a loss for the junk one.
        #expect(o.honestRecord == DuelRecord(wins: o.settled) && o.junkRecord == DuelRecord(losses: o.settled))
    }

    @Test("position-biased judges (always 'A') yield ties: no bond moves", arguments: Array(UInt64(1)...4))
    func weakJudgesMoveNoBond(seed: UInt64) {
        let o = Self.run(seed: seed, positionBias: true)
        #expect(o.supplyOK && o.converged && o.settled >= 5)
        #expect(o.honestRecord == DuelRecord(ties: o.settled) && o.junkRecord?.winRate == 0)
        // Both providers earn the same: each receipt pays the price, no bond moves.
        #expect(o.junkDelta == o.honestDelta || abs(o.junkDelta - o.honestDelta) <= 2_000_000,
                "junk \(o.junkDelta) honest \(o.honestDelta)")
    }
}
