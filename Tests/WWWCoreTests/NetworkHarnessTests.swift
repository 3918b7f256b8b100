import Testing
@testable import WWWCore
@testable import WWWSim

// The product's node machine (`SimNode` = NodeMachine + a modelled engine) over a lossy,
// partitionable simulated network: offloading, rejections, failover, receipts, ledger
// anti-entropy, crashes and restarts. Many seeds, small N.

private let seeds: [UInt64] = Array(1...16)

/// 100 credits to each of nodes 0..<n; price 1 credit per job.
private func simGenesis(n: Int) -> Genesis {
    var g = [NodeID: Credits]()
    for i in 0..<n { g[SimSigner(index: i).nodeID] = Credits(credits: 100) }
    return Genesis(networkID: "sim", grants: g, seeds: [SimAddress.of(0)])
}

/// A cluster: even nodes are pure requesters, odd nodes providers (capacity 2). The test's
/// own random source picks where requests arrive; Σ balances = Σ grants is checked at
/// every step.
private struct World {
    var sim: Simulation<SimNode>
    var rng: SeededPRNG
    let genesis: Genesis
    let n: Int
    var supplyViolations = 0
    var supplyChecks = 0
    /// Every request submitted, by node.
    var submitted: [(node: Int, id: RequestID)] = []

    init(n: Int, seed: UInt64, loss: Double, delay: (Duration, Duration) = (.milliseconds(2), .milliseconds(40)),
         configure: (Int) -> SimNodeConfig = World.defaultConfig) {
        self.n = n
        genesis = simGenesis(n: n)
        sim = Simulation<SimNode>(
            seed: seed, network: SimNetworkConfig(minDelay: delay.0, maxDelay: delay.1, lossProbability: loss),
            limits: SimLimits(maxTime: Instant(seconds: 1_700_000_000) + .seconds(3_600), maxEvents: 5_000_000))
        sim.measureBytes = false
        rng = sim.forkPRNG()
        sim.addNode(index: 0, genesis: genesis, seeds: [], config: configure(0))
        for i in 1..<n {
            sim.addNode(index: i, genesis: genesis, seeds: [SimAddress.of(0), SimAddress.of((i + 1) % n)], config: configure(i),
                        after: .milliseconds(Int64(i) * 37))
        }
    }

    static func defaultConfig(_ i: Int) -> SimNodeConfig {
        i % 2 == 0 ? .requester() : .provider(capacity: 2, stake: Credits(credits: 10 * Int64(i)))
    }

    func id(_ i: Int) -> NodeID { sim.nodes[i].process.nodeID }
    var live: [Int] { sim.nodes.indices.filter { sim.participates($0) } }
    var requesters: [Int] { live.filter { sim.nodes[$0].process.config.machine.backends.isEmpty } }

    mutating func checkSupply() {
        for i in live {
            supplyChecks += 1
            if sim.nodes[i].process.ledger.totalBalance != genesis.totalSupply { supplyViolations += 1 }
        }
    }

    mutating func bootstrap() -> Bool {
        sim.run(step: .seconds(1), timeout: .seconds(30)) { $0.membershipConverged() } != nil
    }

    mutating func submit(at i: Int, job: SimJobSpec = SimJobSpec(promptTokens: 200, outputTokens: 20)) {
        if let r = sim.submit(at: i, job: job, timeout: .seconds(60)) { submitted.append((i, r)) }
    }

    /// Runs `span` in 250 ms steps; in each step a request arrives at a random live pure
    /// requester with probability `perStep`. `inspect` runs after every step.
    mutating func runWithRequests(for span: Duration, perStep: Double = 0.5, inspect: (inout World) -> Void = { _ in }) {
        let end = sim.now + span
        while sim.now < end {
            sim.run(until: min(sim.now + .milliseconds(250), end))
            let r = requesters
            if !r.isEmpty, rng.bernoulli(perStep) { submit(at: r[StakeSampling.uniformIndex(count: r.count, prng: &rng)]) }
            checkSupply()
            inspect(&self)
        }
    }

    /// Runs (no new requests) until membership and ledgers converged; returns the periods taken.
    mutating func settle(maxPeriods: Int) -> Int? {
        for k in 1...maxPeriods {
            sim.run(for: .seconds(1))
            checkSupply()
            if sim.membershipConverged() && sim.ledgersConverged() { return k }
        }
        return nil
    }

    var receipts: Int { sim.nodes.reduce(0) { $0 + $1.process.counters.receiptsRecorded } }
    func heldIDs(_ i: Int) -> Set<EventID> { sim.nodes[i].process.store.log.ids }
    func result(_ r: (node: Int, id: RequestID)) -> SimRequestResult? { sim.nodes[r.node].process.results[r.id] }
    /// Requests of nodes that did not crash and that have not ended.
    func unfinished(excluding crashed: Set<Int> = []) -> Int {
        submitted.filter { !crashed.contains($0.node) && result($0)?.finishedAt == nil }.count
    }
    var completedOffloads: Int { submitted.filter { result($0)?.isComplete == true && result($0)?.executor != nil }.count }
}

/// The convergence scenario: requests under loss, a partition that heals, then settling.
private func partitionScenario(seed: UInt64) -> (world: World, bootstrapped: Bool, divergedInPartition: Bool, settled: Int?) {
    let n = 6 + Int(seed % 3)
    var w = World(n: n, seed: seed, loss: 0.05 + Double(seed % 6) * 0.01)
    let booted = w.bootstrap()
    w.runWithRequests(for: .seconds(15))
    var order = Array(0..<n)
    StakeSampling.shuffle(&order, prng: &w.rng)
    w.sim.partition([Array(order.prefix(n / 2))])
    w.runWithRequests(for: .seconds(25))
    let diverged = !w.sim.ledgersConverged()
    w.sim.heal()
    w.runWithRequests(for: .seconds(10))
    let settled = w.settle(maxPeriods: 90)
    return (w, booted, diverged, settled)
}

@Suite("Network harness (the node machine over a simulated network)")
struct NetworkHarnessTests {
    @Test("ledgers converge after loss and a healed partition; Σ balances = Σ grants throughout; no request lost", arguments: seeds)
    func ledgersConverge(seed: UInt64) {
        let (w, booted, diverged, settled) = partitionScenario(seed: seed)
        #expect(booted)
        #expect(diverged)
        #expect(settled != nil)
        #expect(w.supplyViolations == 0)
        #expect(w.supplyChecks > 1_000)
        #expect(w.receipts >= 20)
        // Every completed offload was receipted (a receipt without a completion: the tail of
        // the answer was cut by the partition after the executor delivered it).
        #expect(w.receipts >= w.completedOffloads)
        #expect(w.completedOffloads > 0)
        // Same event set, digest and balances everywhere; every receipt ever recorded is in
        // it, and so is every event any node ever persisted.
        let all = w.heldIDs(0)
        #expect(all.count == w.receipts)
        let l0 = w.sim.nodes[0].process.ledger
        for i in w.sim.nodes.indices {
            let l = w.sim.nodes[i].process.ledger
            #expect(w.heldIDs(i) == all)
            #expect(l.digest() == l0.digest())
            #expect(l.balances == l0.balances)
            #expect(l.equivocators.isEmpty)
            #expect(Set(w.sim.nodes[i].process.store.events.map(\.id)) == all)
        }
        #expect(l0.balances != w.genesis.grants)
        // Every request ended in an answer or an error once deadlines (60 s) passed.
        var w2 = w
        w2.sim.run(for: .seconds(65))
        #expect(w2.unfinished() == 0)
    }

    @Test("same seed, same trace hash; different seeds, different hashes")
    func determinism() {
        func run(_ seed: UInt64) -> (UInt64, SimStats, [[EventID]]) {
            var w = World(n: 6, seed: seed, loss: 0.05)
            w.sim.tracing = true
            _ = w.bootstrap()
            w.runWithRequests(for: .seconds(20))
            return (w.sim.traceHash, w.sim.stats, w.sim.nodes.map { $0.process.store.events.map(\.id) })
        }
        let a = run(7), b = run(7), c = run(8)
        #expect(a.0 == b.0)
        #expect(a.1 == b.1)
        #expect(a.2 == b.2)
        #expect(a.0 != c.0)
        #expect(a.1.lost > 0)
    }

    @Test("no offer goes to a crashed executor once it is known dead; no request is lost", arguments: seeds)
    func noDeadExecutor(seed: UInt64) {
        let n = 7
        var w = World(n: n, seed: seed, loss: 0.05)
        let booted = w.bootstrap()
        #expect(booted)
        w.runWithRequests(for: .seconds(10))
        let providers = (0..<n).filter { $0 % 2 == 1 }
        let victim = providers[Int(seed % UInt64(providers.count))]
        let victimID = w.id(victim)
        var draws = w.rng.fork()
        var firstBefore = 0
        for i in w.live where i != victim {
            for _ in 0..<50 {
                if w.sim.nodes[i].process.machine.executorOrder(model: "m", prng: &draws).first == victimID { firstBefore += 1 }
            }
        }
        #expect(firstBefore > 0)

        w.sim.crash(victim)
        let crashAt = w.sim.now
        // Probe period + the suspicion timeout + a dissemination bound.
        let bound = .seconds(2) + w.sim.nodes[0].process.membership.suspicionTimeout + .seconds(10)
        var lastIncluded: Instant? = nil
        var drawsAfterBound = 0
        w.runWithRequests(for: bound + .seconds(20)) { w in
            for i in w.live {
                for _ in 0..<5 {
                    if w.sim.nodes[i].process.machine.executorOrder(model: "m", prng: &draws).contains(victimID) { lastIncluded = w.sim.now }
                    if w.sim.now - crashAt > bound { drawsAfterBound += 1 }
                }
            }
        }
        #expect(drawsAfterBound > 1_000)
        #expect(lastIncluded.map { $0 - crashAt <= bound } ?? true)
        for i in w.live {
            if let last = w.sim.nodes[i].process.counters.lastOfferTo[victimID] { #expect(last - crashAt <= bound) }
        }
        w.sim.run(for: .seconds(70))
        #expect(w.unfinished(excluding: [victim]) == 0)
        // None hung until its deadline: an executor refusing connections is passed over at once.
        let hung = w.submitted.filter { $0.node != victim && w.result($0)?.failure == .deadlineExceeded }.count
        #expect(hung == 0)
        #expect(w.supplyViolations == 0)
    }

    @Test("a restarted node restores its persisted events and catches up without losing any", arguments: seeds)
    func restartCatchesUp(seed: UInt64) {
        let n = 6
        var w = World(n: n, seed: seed, loss: 0.05)
        let booted = w.bootstrap()
        #expect(booted)
        w.runWithRequests(for: .seconds(15))
        let victim = [1, 3, 5][Int(seed % 3)]
        let before = Set(w.sim.nodes[victim].process.store.events.map(\.id))
        #expect(before == w.heldIDs(victim))
        #expect(before.count >= 3)
        let receiptsBefore = w.sim.nodes[victim].process.counters.receiptsRecorded

        w.sim.crash(victim)
        w.runWithRequests(for: .seconds(15))
        w.sim.restartNode(victim, genesis: w.genesis, seeds: [SimAddress.of(0)])
        let restarted = w.sim.nodes[victim].process
        #expect(restarted.machine.restoreSummary?.restored == before.count)
        #expect(restarted.machine.restoreSummary?.corrupt == [])
        #expect(w.heldIDs(victim) == before)

        w.runWithRequests(for: .seconds(10))
        let settled = w.settle(maxPeriods: 60)
        #expect(settled != nil)
        #expect(w.supplyViolations == 0)
        let all = w.heldIDs(0)
        #expect(before.isSubset(of: all))
        // The restarted process's counters start at 0.
        #expect(all.count == w.receipts + receiptsBefore)
        for i in 0..<n {
            #expect(w.heldIDs(i) == all)
            #expect(w.sim.nodes[i].process.ledger.equivocators.isEmpty)
        }
        #expect(w.sim.nodes[victim].process.membership.localRecord.value.incarnation > 0)
    }

    /// The executor pushes its new receipt to the requester with its events (not just a
    /// digest), so the requester knows it paid right after the answer ended.
    @Test("a receipt reaches its requester right after the answer")
    func receiptReachesRequester() {
        let n = 6
        var w = World(n: n, seed: 42, loss: 0, delay: (.milliseconds(10), .milliseconds(10)))
        let booted = w.bootstrap()
        #expect(booted)
        var known = 0
        for k in 0..<12 {
            let r = 2 * (k % 3)
            w.submit(at: r, job: SimJobSpec(promptTokens: 100, outputTokens: 5))
            let sub = w.submitted.last!
            // Offer + answer + engine (≈ 0.2 s) + receipt push; far less than one sync period.
            w.sim.run(for: .milliseconds(400))
            let res = w.result(sub)
            #expect(res?.isComplete == true)
            let done = res?.finishedAt ?? w.sim.now
            w.sim.run(until: done + .milliseconds(25))
            let p = w.sim.nodes[r].process
            let mine = p.store.events.filter {
                if case .jobReceipt(let rc) = $0.body { rc.authorization.value.requester == p.nodeID } else { false }
            }
            if mine.count == k / 3 + 1 { known += 1 }
            w.sim.run(for: .seconds(2))
        }
        #expect(w.receipts == 12)
        #expect(known == 12)
    }

    /// A requester offers to an executor that rejects (price too low), to one that dies
    /// before the first byte (crashed during prefill), and to one that serves: every
    /// request is answered, through the real machine's offer rounds and failover, and
    /// every completed offload is receipted.
    @Test("offers are rejected, fail over after a crash before the first byte, and are receipted", arguments: seeds.prefix(8))
    func rejectFailoverReceipt(seed: UInt64) {
        // 0: requester; 1: rejects every offer (price); 2: slow prefill (crashed later); 3: serves.
        var exploring = SchedulingPolicy()
        exploring.explorationShare = 0
        let w0 = World(n: 4, seed: seed, loss: 0) { i in
            switch i {
            case 0: return .requester(policy: exploring)
            case 1:
                var p = SchedulingPolicy()
                p.priceAccepted = Credits(credits: 5)
                return .provider(capacity: 4, stake: Credits(credits: 50), policy: p)
            case 2:
                var c = SimNodeConfig.provider(capacity: 8, stake: Credits(credits: 50))
                c.engine = SimEngineProfile(prefillTokensPerSecond: 100)
                return c
            default: return .provider(capacity: 8, stake: Credits(credits: 50))
            }
        }
        var w = w0
        let booted = w.bootstrap()
        #expect(booted)
        for _ in 0..<12 { w.submit(at: 0, job: SimJobSpec(promptTokens: 1_000, outputTokens: 10)) }
        w.sim.run(for: .seconds(2))   // node 2's jobs are still in their 10 s prefill
        w.sim.crash(2)
        w.sim.run(for: .seconds(40))
        let req = w.sim.nodes[0].process
        #expect(w.unfinished() == 0)
        #expect(w.submitted.allSatisfy { w.result($0)?.isComplete == true })
        #expect(w.submitted.allSatisfy { w.result($0)?.executor == w.id(3) })
        #expect(w.sim.nodes[1].process.counters.offersRejected[.priceTooLow, default: 0] > 0)
        #expect(req.counters.requesterOutcomes[.failover, default: 0] > 0)
        #expect(req.counters.requesterOutcomes[.rejected(.priceTooLow), default: 0] > 0)
        let settled = w.settle(maxPeriods: 20)
        #expect(settled != nil)
        // Node 3 is paid once per request; node 2 never delivered, so it is never paid.
        let l = w.sim.nodes[0].process.ledger
        #expect(l.balance(of: w.id(3)) == Credits(credits: 112))
        #expect(l.balance(of: w.id(0)) == Credits(credits: 88))
        #expect(l.balance(of: w.id(2)) == Credits(credits: 100))
        #expect(w.supplyViolations == 0)
    }

    /// Hazard (Ledger.append: "the driver must not append before its own chain is
    /// restored"): a node whose store is lost but whose key is kept gets an offer before
    /// anti-entropy returned its own chain. It must refuse it (`catchingUp`), so it never
    /// signs a second event at an authorSeq it already used, keeps its earnings, and
    /// catches up.
    @Test("a node restarted with a lost store refuses offers until its own chain is back")
    func lostStoreDoesNotEquivocate() {
        let n = 6
        var w = World(n: n, seed: 5, loss: 0)
        let booted = w.bootstrap()
        #expect(booted)
        w.runWithRequests(for: .seconds(15), perStep: 0.8)
        let victim = [1, 3, 5].max { w.sim.nodes[$0].process.ledger.highWater(of: w.id($0)) < w.sim.nodes[$1].process.ledger.highWater(of: w.id($1)) }!
        // Its own view: every event it authored (a provider's balance moves only by them).
        let earned = w.sim.nodes[victim].process.ledger.balance(of: w.id(victim))
        let chain = w.sim.nodes[victim].process.ledger.highWater(of: w.id(victim))
        #expect(chain > 0)
        #expect(earned > Credits(credits: 100))
        w.sim.crash(victim)
        w.sim.run(for: .seconds(5))
        var lost = SimNodeStore()
        lost.incarnation = w.sim.nodes[victim].process.membership.localRecord.value.incarnation
        let config = w.sim.nodes[victim].process.config
        w.sim.restart(victim, with: SimNode(index: victim, genesis: w.genesis, seeds: [SimAddress.of(0)], config: config,
                                            restored: lost, seed: 77))
        w.sim.run(for: .milliseconds(100))
        // An offer from node 0 arrives before the first anti-entropy round brought its chain back.
        let requester = SimSigner(index: 0)
        let auth = Signed(PaymentAuthorization(job: JobID.derive(requester: requester.nodeID, sequence: 10_000, crypto: SimCrypto()),
                                               requester: requester.nodeID, executor: w.id(victim), model: "m",
                                               price: Credits(credits: 1), expiresAt: w.sim.now + .seconds(60)), by: requester)
        #expect(w.sim.nodes[victim].process.ledger.highWater(of: w.id(victim)) == 0)
        w.sim.perform(on: victim) { p, now in
            p.input(.peerMessage(.offer(OfferMessage(authorization: auth)), from: requester.nodeID, fromAddress: SimAddress.of(0)), now: now)
        }
        #expect(w.sim.nodes[victim].process.counters.offersRejected == [.catchingUp: 1])
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
        #expect(a.rangesMissing(from: b.digest(), limit: 256) == [])
        #expect(b.rangesMissing(from: a.digest(), limit: 256) == [])
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

    /// X shows one event at slot 1 to A and a different one to B (disjoint audiences):
    /// equal digests, no proof anywhere. The chain fingerprints differ, so each names the
    /// window of X's chain to send; receiving it, each proves the equivocation.
    @Test("an equivocation shown to disjoint audiences: fingerprints differ and the exchanged windows prove it")
    func disjointEquivocationIsFound() {
        var a = LedgerFx.ledger(), b = LedgerFx.ledger()
        let e1 = LedgerFx.event(3, 1, LedgerFx.receipt(requester: 1, executor: 3, seq: 1))
        let e1b = LedgerFx.event(3, 1, LedgerFx.receipt(requester: 2, executor: 3, seq: 1))
        let e2 = LedgerFx.event(3, 2, LedgerFx.receipt(requester: 1, executor: 3, seq: 2))
        _ = a.receive([e1, e2], from: LedgerFx.node(3), now: LedgerFx.t0)
        _ = b.receive([e1b, e2], from: LedgerFx.node(3), now: LedgerFx.t0)
        #expect(a.digest() == b.digest() && a.equivocators.isEmpty && b.equivocators.isEmpty)
        #expect(a.fingerprints()[LedgerFx.node(3)] != b.fingerprints()[LedgerFx.node(3)])
        // Same chains elsewhere: nothing diverges.
        #expect(a.rangesDiverging(digest: a.digest(), fingerprints: a.fingerprints(), window: 32) == [])
        let toB = a.rangesDiverging(digest: b.digest(), fingerprints: b.fingerprints(), window: 32)
        #expect(toB == [LedgerRange(author: LedgerFx.node(3), afterSeq: 0, count: 2)])
        _ = b.receive([e1, e2], from: LedgerFx.node(1), now: LedgerFx.t0)
        _ = a.receive([e1b, e2], from: LedgerFx.node(2), now: LedgerFx.t0)
        #expect(a.equivocators == [LedgerFx.node(3)] && b.equivocators == [LedgerFx.node(3)])
        #expect(a.balances == b.balances)
        // A proven equivocator is no longer fingerprinted: no more windows for it.
        #expect(a.fingerprints()[LedgerFx.node(3)] == nil)
        #expect(a.rangesDiverging(digest: b.digest(), fingerprints: b.fingerprints(), window: 32) == [])
    }

    /// The twin slot lies 40 events below the head: the first window (the last 32) misses
    /// it, the next one (one window further back) reaches it.
    @Test("a divergence deeper than one window is reached window by window")
    func deepDivergence() {
        var a = LedgerFx.ledger(), b = LedgerFx.ledger()
        let e1 = LedgerFx.event(3, 1, LedgerFx.receipt(requester: 1, executor: 3, seq: 1))
        let e1b = LedgerFx.event(3, 1, LedgerFx.receipt(requester: 2, executor: 3, seq: 1))
        let rest = (2...41).map { LedgerFx.event(3, UInt64($0), LedgerFx.receipt(requester: 1, executor: 3, seq: UInt64($0))) }
        _ = a.receive([e1] + rest, from: LedgerFx.node(3), now: LedgerFx.t0)
        _ = b.receive([e1b] + rest, from: LedgerFx.node(3), now: LedgerFx.t0)
        let first = a.rangesDiverging(digest: b.digest(), fingerprints: b.fingerprints(), window: 32)
        #expect(first == [LedgerRange(author: LedgerFx.node(3), afterSeq: 9, count: 32)])
        let second = a.rangesDiverging(digest: b.digest(), fingerprints: b.fingerprints(), window: 32, depth: { _ in 1 })
        #expect(second == [LedgerRange(author: LedgerFx.node(3), afterSeq: 0, count: 9)])
        // Past the chain's start the walk wraps round to the head again.
        #expect(a.rangesDiverging(digest: b.digest(), fingerprints: b.fingerprints(), window: 32, depth: { _ in 2 }) == first)
        // The second window holds the twin. Slot 1 is below the ledger's in-memory window, so
        // it goes to the store as a candidate, where the conflict is found (`storedConflict`).
        let out = b.receive([e1], from: LedgerFx.node(1), now: LedgerFx.t0)
        #expect(out.contains { if case .persist(let events) = $0 { events.contains(e1) } else { false } })
    }
}
