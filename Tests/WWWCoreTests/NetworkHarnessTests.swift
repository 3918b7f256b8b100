import Testing
import WWWCore
@testable import WWWSim

// Membership + Ledger + executor choice composed as the shell composes them
// (`NetworkProcess`), over a lossy, partitionable simulated network. Many seeds, small N.

private let seeds: [UInt64] = Array(1...16)

/// 100 credits to each of nodes 0..<n; price 1 credit per job.
private func simGenesis(n: Int) -> Genesis {
    var g = [NodeID: Credits]()
    for i in 0..<n { g[SimSigner(index: i).nodeID] = Credits(credits: 100) }
    return Genesis(networkID: "sim", grants: g, seeds: [SimAddress.of(0)])
}

/// A cluster plus the test's own random source, with the supply invariant checked at every step.
private struct World {
    var sim: Simulation<NetworkProcess>
    var rng: SeededPRNG
    let genesis: Genesis
    let n: Int
    /// Observations of Σ balances ≠ Σ grants at some node (must stay 0).
    var supplyViolations = 0
    var supplyChecks = 0

    init(n: Int, seed: UInt64, loss: Double, delay: (Duration, Duration) = (.milliseconds(2), .milliseconds(40)),
         config: NetworkProcessConfig = NetworkProcessConfig()) {
        self.n = n
        genesis = simGenesis(n: n)
        sim = Simulation<NetworkProcess>(
            seed: seed, network: SimNetworkConfig(minDelay: delay.0, maxDelay: delay.1, lossProbability: loss),
            limits: SimLimits(maxTime: Instant(seconds: 1_700_000_000) + .seconds(3_600), maxEvents: 5_000_000))
        sim.measureBytes = false
        rng = sim.forkPRNG()
        sim.addNetworkNode(index: 0, genesis: genesis, seeds: [], config: config)
        for i in 1..<n {
            sim.addNetworkNode(index: i, genesis: genesis, seeds: [SimAddress.of(0), SimAddress.of((i + 1) % n)], config: config,
                               after: .milliseconds(Int64(i) * 37))
        }
    }

    func id(_ i: Int) -> NodeID { sim.nodes[i].process.nodeID }
    var live: [Int] { sim.nodes.indices.filter { sim.participates($0) } }

    mutating func checkSupply() {
        for i in live {
            supplyChecks += 1
            if sim.nodes[i].process.ledger.totalBalance != genesis.totalSupply { supplyViolations += 1 }
        }
    }

    mutating func bootstrap() -> Bool {
        sim.run(step: .seconds(1), timeout: .seconds(30)) { $0.membershipConverged() } != nil
    }

    /// Runs `span` in 250 ms steps; in each step a random live node creates a job with
    /// probability `perStep`. `inspect` runs after every step.
    mutating func runWithJobs(for span: Duration, perStep: Double = 0.5, inspect: (inout World) -> Void = { _ in }) {
        let end = sim.now + span
        while sim.now < end {
            sim.run(until: min(sim.now + .milliseconds(250), end))
            let l = live
            if !l.isEmpty, rng.bernoulli(perStep) {
                let r = l[StakeSampling.uniformIndex(count: l.count, prng: &rng)]
                sim.perform(on: r) { p, now in p.createJob(now: now) }
            }
            checkSupply()
            inspect(&self)
        }
    }

    /// Runs (no new jobs) until membership and ledgers converged; returns the periods taken.
    mutating func settle(maxPeriods: Int) -> Int? {
        for k in 1...maxPeriods {
            sim.run(for: .seconds(1))
            checkSupply()
            if sim.membershipConverged() && sim.ledgersConverged() { return k }
        }
        return nil
    }

    var receiptsAppended: Int { sim.nodes.reduce(0) { $0 + $1.process.counters.receiptsAppended } }
    func heldIDs(_ i: Int) -> Set<EventID> { Set(sim.nodes[i].process.ledger.heldEvents.map(\.id)) }
}

/// The convergence scenario: jobs under loss, a partition that heals, then settling.
private func partitionScenario(seed: UInt64) -> (world: World, bootstrapped: Bool, divergedInPartition: Bool, settled: Int?) {
    let n = 6 + Int(seed % 3)
    var w = World(n: n, seed: seed, loss: 0.05 + Double(seed % 6) * 0.01)
    let booted = w.bootstrap()
    w.runWithJobs(for: .seconds(15))
    var order = Array(0..<n)
    StakeSampling.shuffle(&order, prng: &w.rng)
    w.sim.partition([Array(order.prefix(n / 2))])
    w.runWithJobs(for: .seconds(25))
    let diverged = !w.sim.ledgersConverged()
    w.sim.heal()
    w.runWithJobs(for: .seconds(10))
    let settled = w.settle(maxPeriods: 30)
    return (w, booted, diverged, settled)
}

@Suite("Network harness (membership + ledger)")
struct NetworkHarnessTests {
    @Test("ledgers converge after loss and a healed partition; Σ balances = Σ grants throughout", arguments: seeds)
    func ledgersConverge(seed: UInt64) {
        let (w, booted, diverged, settled) = partitionScenario(seed: seed)
        #expect(booted)
        #expect(diverged)
        #expect(settled != nil)
        #expect(w.supplyViolations == 0)
        #expect(w.supplyChecks > 1_000)
        #expect(w.receiptsAppended >= 20)
        // Same event set, digest and balances everywhere; every receipt ever appended is in it,
        // and so is every event any node ever persisted.
        let all = w.heldIDs(0)
        #expect(all.count == w.receiptsAppended)
        let l0 = w.sim.nodes[0].process.ledger
        for i in w.sim.nodes.indices {
            let l = w.sim.nodes[i].process.ledger
            #expect(w.heldIDs(i) == all)
            #expect(l.digest() == l0.digest())
            #expect(l.balances == l0.balances)
            #expect(l.equivocators.isEmpty)
            #expect(Set(w.sim.nodes[i].process.stored.map(\.id)) == all)
        }
        // Credits moved: some balance differs from its grant.
        #expect(l0.balances != w.genesis.grants)
    }

    @Test("same seed, same final digests and traffic")
    func determinism() {
        let a = partitionScenario(seed: 7).world, b = partitionScenario(seed: 7).world
        #expect(a.sim.stats == b.sim.stats)
        #expect(a.sim.nodes.map(\.traffic) == b.sim.nodes.map(\.traffic))
        #expect(a.sim.nodes.map { $0.process.ledger.digest() } == b.sim.nodes.map { $0.process.ledger.digest() })
        #expect(a.sim.nodes.map { $0.process.stored.map(\.id) } == b.sim.nodes.map { $0.process.stored.map(\.id) })
        #expect(a.sim.stats.lost > 0 && a.receiptsAppended > 0)
    }

    @Test("no live node's executor order includes a crashed node after suspicion + dissemination", arguments: seeds)
    func noDeadExecutor(seed: UInt64) {
        let n = 7
        var w = World(n: n, seed: seed, loss: 0.05)
        let booted = w.bootstrap()
        #expect(booted)
        w.runWithJobs(for: .seconds(10))
        let victim = 1 + Int(seed % UInt64(n - 1))
        let victimID = w.id(victim)
        var draws = w.rng.fork()
        var firstBefore = 0
        for i in w.live where i != victim {
            firstBefore += w.sim.nodes[i].process.executorOrders(draws: 50, limit: 1, prng: &draws).filter { $0.first == victimID }.count
        }
        #expect(firstBefore > 0)

        w.sim.crash(victim)
        let crashAt = w.sim.now
        // Probe period + the suspicion timeout + a dissemination bound (as the membership harness).
        let bound = .seconds(2) + w.sim.nodes[0].process.membership.suspicionTimeout + .seconds(10)
        var lastIncluded: Instant? = nil
        var drawsAfterBound = 0
        w.runWithJobs(for: bound + .seconds(20)) { w in
            for i in w.live {
                for order in w.sim.nodes[i].process.executorOrders(draws: 5, prng: &draws) {
                    if order.contains(victimID) { lastIncluded = w.sim.now }
                    if w.sim.now - crashAt > bound { drawsAfterBound += 1 }
                }
            }
        }
        #expect(drawsAfterBound > 1_000)
        #expect(lastIncluded.map { $0 - crashAt <= bound } ?? true)
        #expect(w.supplyViolations == 0)
    }

    @Test("a restarted node restores its persisted events and catches up without losing any", arguments: seeds)
    func restartCatchesUp(seed: UInt64) {
        let n = 6
        var w = World(n: n, seed: seed, loss: 0.05)
        let booted = w.bootstrap()
        #expect(booted)
        w.runWithJobs(for: .seconds(15))
        let victim = 1 + Int(seed % UInt64(n - 1))
        let before = Set(w.sim.nodes[victim].process.stored.map(\.id))
        #expect(before == w.heldIDs(victim))
        #expect(before.count >= 5)
        let seqBefore = w.sim.nodes[victim].process.jobSequence
        let receiptsBefore = w.sim.nodes[victim].process.counters.receiptsAppended

        w.sim.crash(victim)
        w.runWithJobs(for: .seconds(15))
        w.sim.restartNetworkNode(victim, genesis: w.genesis, seeds: [SimAddress.of(0)])
        let restarted = w.sim.nodes[victim].process
        #expect(restarted.restoreSummary?.restored == before.count)
        #expect(restarted.restoreSummary?.corrupt == [])
        #expect(w.heldIDs(victim) == before)
        #expect(restarted.jobSequence == seqBefore)

        w.runWithJobs(for: .seconds(10))
        let settled = w.settle(maxPeriods: 30)
        #expect(settled != nil)
        #expect(w.supplyViolations == 0)
        let all = w.heldIDs(0)
        #expect(before.isSubset(of: all))
        // The restarted process's counters start at 0.
        #expect(all.count == w.receiptsAppended + receiptsBefore)
        for i in 0..<n {
            #expect(w.heldIDs(i) == all)
            #expect(w.sim.nodes[i].process.ledger.equivocators.isEmpty)
        }
        // It is alive again everywhere, with a higher incarnation.
        #expect(w.sim.nodes[victim].process.membership.localRecord.value.incarnation > 0)
    }

    /// The shell's `recordReceipt` pushes the new receipt to the requester with its events.
    /// Sending only the digest (as an earlier shell did) leaves the requester to learn of its
    /// own receipt by chance (`publishFanout` random peers) or at a later anti-entropy round.
    @Test("a receipt reaches its requester at once only when it is pushed with its events", arguments: [false, true])
    func receiptReachesRequester(fixed: Bool) {
        let n = 8
        var config = NetworkProcessConfig()
        config.receiptReachesRequester = fixed
        var w = World(n: n, seed: 42, loss: 0, delay: (.milliseconds(10), .milliseconds(10)), config: config)
        let booted = w.bootstrap()
        #expect(booted)
        var jobs = 0, known = 0
        for k in 0..<20 {
            let r = k % n
            w.sim.perform(on: r) { p, now in p.createJob(now: now) }
            let p = w.sim.nodes[r].process
            let job = JobID.derive(requester: p.nodeID, sequence: p.jobSequence, crypto: SimCrypto())
            // Offer (10 ms) + receipt push (10 ms); far less than one sync period.
            w.sim.run(for: .milliseconds(25))
            jobs += 1
            let hasReceipt = w.sim.nodes[r].process.ledger.heldEvents.contains {
                if case .jobReceipt(let rc) = $0.body { rc.authorization.value.job == job } else { false }
            }
            if hasReceipt { known += 1 }
            w.sim.run(for: .seconds(2))
        }
        #expect(w.receiptsAppended == jobs)
        if fixed { #expect(known == jobs) } else { #expect(known < jobs) }
    }

    /// Hazard (Ledger.append: "the driver must not append before its own chain is
    /// restored"): a node whose store is lost but whose key is kept (`key_file` outside the
    /// data directory) gets an offer before anti-entropy returned its own chain. It must
    /// refuse it (`readyToAppend`), so it never signs a second event at an authorSeq it
    /// already used, keeps its earnings, and catches up.
    @Test("a node restarted with a lost store refuses offers until its own chain is back")
    func lostStoreDoesNotEquivocate() {
        let n = 6
        var w = World(n: n, seed: 5, loss: 0)
        let booted = w.bootstrap()
        #expect(booted)
        w.runWithJobs(for: .seconds(15))
        let victim = (1..<n).max { w.sim.nodes[$0].process.ledger.highWater(of: w.id($0)) < w.sim.nodes[$1].process.ledger.highWater(of: w.id($1)) }!
        let earned = w.sim.nodes[0].process.ledger.balance(of: w.id(victim))
        let chain = w.sim.nodes[0].process.ledger.highWater(of: w.id(victim))
        #expect(chain > 0)
        #expect(earned > Credits(credits: 100))
        w.sim.crash(victim)
        w.sim.run(for: .seconds(5))
        let incarnation = w.sim.nodes[victim].process.membership.localRecord.value.incarnation
        w.sim.restart(victim, with: NetworkProcess(index: victim, genesis: w.genesis, seeds: [SimAddress.of(0)],
                                                   persisted: NetworkPersistentState(incarnation: incarnation), seed: 77))
        w.sim.run(for: .milliseconds(100))
        // An offer from node 0 arrives before the first anti-entropy round brought its chain back.
        let requester = SimSigner(index: 0)
        let auth = Signed(PaymentAuthorization(job: JobID.derive(requester: requester.nodeID, sequence: 10_000, crypto: SimCrypto()),
                                               requester: requester.nodeID, executor: w.id(victim), model: "m",
                                               price: Credits(credits: 1), expiresAt: w.sim.now + .seconds(60)), by: requester)
        #expect(w.sim.nodes[victim].process.ledger.highWater(of: w.id(victim)) == 0)
        let rejectedBefore = w.sim.nodes[victim].process.counters.offersRejected
        w.sim.perform(on: victim) { p, now in p.admitOffer(auth, from: requester.nodeID, now: now) }
        #expect(w.sim.nodes[victim].process.counters.offersRejected == rejectedBefore + 1)
        let settled = w.settle(maxPeriods: 30)
        #expect(settled != nil)
        #expect(w.sim.membershipConverged())
        for i in 0..<n {
            let l = w.sim.nodes[i].process.ledger
            #expect(l.equivocators.isEmpty)
            #expect(l.highWater(of: w.id(victim)) == chain)
            #expect(l.balance(of: w.id(victim)) == earned)
        }
        #expect(w.supplyViolations == 0)
    }

    /// Two bare ledgers: X equivocates; B saw both events, A only the first. Their digests
    /// are equal, so a push-pull exchanges no events; the proofs every sync carries
    /// (`LedgerSyncProofs`) bring A to the same balances.
    @Test("equal digests hide an equivocation; the proofs carried by sync repair it")
    func proofsCarriedBySyncRepairLedgers() {
        var a = LedgerFx.ledger(), b = LedgerFx.ledger()
        let e1 = LedgerFx.event(3, 1, LedgerFx.receipt(requester: 1, executor: 3, seq: 1))
        let e1b = LedgerFx.event(3, 1, LedgerFx.receipt(requester: 2, executor: 3, seq: 1))
        _ = a.receive([e1], from: LedgerFx.node(3), now: LedgerFx.t0)
        _ = b.receive([e1], from: LedgerFx.node(3), now: LedgerFx.t0)
        _ = b.receive([e1b], from: LedgerFx.node(3), now: LedgerFx.t0)
        #expect(b.equivocators == [LedgerFx.node(3)])
        #expect(a.digest() == b.digest())
        #expect(a.eventsMissing(from: b.digest(), limit: 256) == [])
        #expect(b.eventsMissing(from: a.digest(), limit: 256) == [])
        #expect(a.balance(of: LedgerFx.node(3)) == Credits(credits: 101))
        #expect(b.balance(of: LedgerFx.node(3)) == Credits(credits: 100))
        let carried = LedgerSyncProofs.carried(by: b)
        #expect(Set(carried.map(\.id)) == Set([e1.id, e1b.id]))
        #expect(LedgerSyncProofs.carried(by: a).isEmpty)
        _ = a.receive(carried, from: LedgerFx.node(2), now: LedgerFx.t0)
        #expect(a.equivocators == [LedgerFx.node(3)])
        #expect(a.balance(of: LedgerFx.node(3)) == b.balance(of: LedgerFx.node(3)))
        #expect(a.balances == b.balances)
    }
}
