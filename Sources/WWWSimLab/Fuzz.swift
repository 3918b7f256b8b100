import WWWCore
import WWWSim

/// `wwwserve sim fuzz`: random networks of the product's node machines under random
/// faults — message loss and delay, a partition that heals, a provider crash (restarted or
/// not), duels with a junk responder — checked after each run against the invariants of
/// DESIGN.md:
///
/// 1. conservation: Σ balances = Σ grants on every live node, checked every 250 ms;
/// 2. ledgers converge once the faults are over (same event set, digests, balances);
/// 3. no request silently lost: every request at a node that stayed up ends in an answer
///    or an error;
/// 4. no dead node chosen: no offer goes to a crashed provider after every live node knows
///    it is dead (until it restarts);
/// 5. no equivocator: nobody equivocates here, so no ledger may name one.
///
/// Every random choice comes from the seed: a failing seed replays byte for byte
/// (`wwwserve sim fuzz --seed S` prints the same trace hash).
public enum Fuzz {
    public struct Case: Sendable, CustomStringConvertible {
        public var seed: UInt64
        public var nodes: Int
        public var providers: [Int]
        public var loss: Double
        public var maxDelayMs: Int
        public var duels: Bool
        public var junk: Int?
        /// (start s, heal s, the side cut off) after the workload starts.
        public var partition: (at: Double, heal: Double, side: [Int])?
        /// (node, crash s, restart s or nil).
        public var crash: (node: Int, at: Double, restart: Double?)?
        /// Each node's clock offset from true time, seconds.
        public var skews: [Double] = []
        /// A provider that signs a second, different event at the slot of one of its own
        /// receipts at this time, and pushes it to two peers.
        public var equivocator: (node: Int, at: Double)?

        public var description: String {
            var s = "n=\(nodes) providers=\(providers) loss=\(String(format: "%.3f", loss)) delay≤\(maxDelayMs)ms"
            if duels { s += " duels" + (junk.map { " junk=\($0)" } ?? "") }
            if let p = partition { s += " partition \(p.side) \(Int(p.at))–\(Int(p.heal))s" }
            if let c = crash { s += " crash \(c.node) at \(Int(c.at))s" + (c.restart.map { " restart \(Int($0))s" } ?? " (stays down)") }
            if let m = skews.map({ abs($0) }).max(), m > 0 { s += " skew≤\(String(format: "%.1f", m))s" }
            if let e = equivocator { s += " equivocator \(e.node) at \(Int(e.at))s" }
            return s
        }
    }

    public struct Outcome: Sendable {
        public var fuzzCase: Case
        public var violations: [String]
        public var traceHash: UInt64
        public var requests: Int
        public var answered: Int
        public var duelsSettled: Int
        public var events: Int
        public var ok: Bool { violations.isEmpty }
    }

    /// The random case of `seed`.
    public static func generate(seed: UInt64) -> Case {
        var r = SeededPRNG(seed: seed ^ 0xF022_F022)
        let n = 4 + Int(r.next() % 9)
        var providers = (0..<n).filter { _ in r.bernoulli(0.6) }
        if providers.count < 2 { providers = [1, 2] }
        if providers.count == n { providers.removeFirst() }
        let duels = r.bernoulli(0.5)
        let junk = duels && r.bernoulli(0.5) ? providers[Int(r.next() % UInt64(providers.count))] : nil
        var c = Case(seed: seed, nodes: n, providers: providers, loss: r.nextUnit() * 0.1, maxDelayMs: 5 + Int(r.next() % 96),
                     duels: duels, junk: junk)
        if r.bernoulli(0.5) {
            let at = 5 + r.nextUnit() * 30
            let side = (0..<n).filter { _ in r.bernoulli(0.4) }
            if !side.isEmpty && side.count < n { c.partition = (at, at + 5 + r.nextUnit() * 15, side) }
        }
        if r.bernoulli(0.5) {
            let victim = providers[Int(r.next() % UInt64(providers.count))]
            let at = 10 + r.nextUnit() * 20
            c.crash = (victim, at, r.bernoulli(0.5) ? at + 30 + r.nextUnit() * 10 : nil)
        }
        if r.bernoulli(0.5) {
            let bound = r.nextUnit() * 3
            c.skews = (0..<n).map { _ in (r.nextUnit() * 2 - 1) * bound }
        }
        if r.bernoulli(0.3) {
            let candidates = providers.filter { $0 != c.crash?.node && $0 != c.junk }
            if !candidates.isEmpty { c.equivocator = (candidates[Int(r.next() % UInt64(candidates.count))], 40) }
        }
        return c
    }

    static let workload = 60.0

    /// Deliberate breakage, to show that the checkers catch what they check (tests).
    public enum Sabotage: Sendable { case none, neverHeal }

    /// Runs one case and checks the invariants.
    /// - Parameter tracing: fold every event into the trace hash (slower; for replays).
    public static func run(_ c: Case, tracing: Bool = false, sabotage: Sabotage = .none) -> Outcome {
        var grants = [NodeID: Credits]()
        for i in 0..<c.nodes { grants[SimSigner(index: i).nodeID] = Credits(credits: 100) }
        let params = GenesisParameters(duelProbability: c.duels ? 300_000 : 0, judgesPerDuel: 1)
        let genesis = Genesis(networkID: "fuzz", parameters: params, grants: grants, seeds: [SimAddress.of(0)])
        var strengths: [NodeID: Double] = [:]
        for p in c.providers { strengths[SimSigner(index: p).nodeID] = p == c.junk ? 0.01 : 1 }
        func config(_ i: Int) -> SimNodeConfig {
            var cfg: SimNodeConfig = c.providers.contains(i) ? .provider(capacity: 2, stake: Credits(credits: 20)) : .requester()
            if !c.providers.contains(i) { cfg.declaredStake = Credits(credits: 20) }
            if c.duels {
                cfg.machine.duel = DuelConfig(runDuels: true, judge: true, judgingTimeout: .seconds(5))
                cfg.judge = SimJudge(strengths: strengths)
            }
            if c.skews.indices.contains(i) { cfg.clockSkew = .nanoseconds(Int64(c.skews[i] * 1e9)) }
            return cfg
        }
        var sim = Simulation<SimNode>(seed: c.seed, network: SimNetworkConfig(minDelay: .milliseconds(1), maxDelay: .milliseconds(Int64(c.maxDelayMs)),
                                                                             lossProbability: c.loss),
                                      limits: SimLimits(maxTime: Instant(seconds: 1_700_000_000) + .seconds(3_600), maxEvents: 20_000_000))
        sim.measureBytes = false
        sim.tracing = tracing
        for i in 0..<c.nodes {
            sim.addNode(index: i, genesis: genesis, seeds: i == 0 ? [] : [SimAddress.of(0), SimAddress.of((i + 1) % c.nodes)],
                        config: config(i), after: .milliseconds(Int64(i) * 31))
        }
        var violations: [String] = []
        var requests: [(node: Int, id: RequestID)] = []
        guard sim.run(step: .seconds(1), timeout: .seconds(60), until: { $0.membershipConverged() }) != nil else {
            return Outcome(fuzzCase: c, violations: ["bootstrap: membership did not converge in 60 s"], traceHash: sim.traceHash,
                           requests: 0, answered: 0, duelsSettled: 0, events: sim.eventsProcessed)
        }
        var rng = SeededPRNG(seed: c.seed ^ 0x5151)
        let start = sim.now
        func elapsed() -> Double { (sim.now - start).seconds }
        var partitioned = false, crashed = false, restarted = false, equivocated = false
        var knownDeadAt: Instant?
        var offersAfterKnownDead: [String] = []
        var supplyBad = 0
        let victimID = c.crash.map { SimSigner(index: $0.node).nodeID }
        let requesters = (0..<c.nodes).filter { !c.providers.contains($0) }
        while elapsed() < workload + 40 {
            sim.run(for: .milliseconds(250))
            let t = elapsed()
            if let p = c.partition {
                if !partitioned, t >= p.at, t < p.heal { sim.partition([p.side]); partitioned = true }
                if partitioned, t >= p.heal, sabotage != .neverHeal { sim.heal(); partitioned = false }
            }
            if let k = c.crash {
                if !crashed, t >= k.at { sim.crash(k.node); crashed = true }
                if crashed, !restarted, let r = k.restart, t >= r {
                    sim.restartNode(k.node, genesis: genesis, seeds: [SimAddress.of(0)])
                    restarted = true
                }
                if crashed, !restarted, knownDeadAt == nil, let v = victimID, knownDeadByAll(v, sim: sim) { knownDeadAt = sim.now }
                if let dead = knownDeadAt, !restarted, let v = victimID {
                    for i in sim.nodes.indices where sim.participates(i) {
                        if let last = sim.nodes[i].process.counters.lastOfferTo[v], last > dead {
                            offersAfterKnownDead.append("node \(i) offered to dead node \(k.node) \(String(format: "%.2f", (last - dead).seconds)) s after all knew")
                        }
                    }
                }
            }
            if let e = c.equivocator, !equivocated, t >= e.at, sim.nodes[e.node].up {
                equivocated = equivocate(e.node, deep: c.seed % 2 == 0, sim: &sim)
            }
            if t < workload, !requesters.isEmpty, rng.bernoulli(0.5) {
                let at = requesters[Int(rng.next() % UInt64(requesters.count))]
                if let id = sim.submit(at: at, job: SimJobSpec(promptTokens: 100 + Int(rng.next() % 400), outputTokens: 5 + Int(rng.next() % 40)),
                                       timeout: .seconds(60)) {
                    requests.append((at, id))
                }
            }
            for i in sim.nodes.indices where sim.participates(i) && sim.nodes[i].process.ledger.totalBalance != genesis.totalSupply {
                supplyBad += 1
            }
        }
        if partitioned, sabotage != .neverHeal { sim.heal() }
        // Settle: no faults, no new requests, until ledgers agree (bounded).
        var converged = false
        for _ in 0..<(sabotage == .neverHeal ? 30 : 180) {
            sim.run(for: .seconds(1))
            for i in sim.nodes.indices where sim.participates(i) && sim.nodes[i].process.ledger.totalBalance != genesis.totalSupply {
                supplyBad += 1
            }
            if sim.membershipConverged() && sim.ledgersConverged() { converged = true; break }
        }
        // Every request's deadline (60 s after its arrival) has passed before it is judged lost.
        let lastDeadline = start + .seconds(Int64(workload) + 65)
        if sim.now < lastDeadline { sim.run(until: lastDeadline) }
        if supplyBad > 0 { violations.append("conservation: Σ balances ≠ Σ grants \(supplyBad) time(s)") }
        if !converged { violations.append("ledgers did not converge within 180 s after the faults ended") }
        let downForGood = c.crash.flatMap { $0.restart == nil ? $0.node : nil }
        let lost = requests.filter { r in
            r.node != downForGood && (c.crash?.node != r.node) && sim.nodes[r.node].process.results[r.id]?.finishedAt == nil
        }
        if let l = lost.first {
            let res = sim.nodes[l.node].process.results[l.id]
            let detail = res.map { r in
                "first: node \(l.node) \(l.id), arrived \(String(format: "%.1f", (r.arrival - start).seconds)) s"
                    + (r.committedAt.map { ", committed \(String(format: "%.1f", ($0 - start).seconds)) s" } ?? ", never committed")
                    + (r.executor.map { ", executor \($0.short)" } ?? "")
            } ?? "no result"
            violations.append("\(lost.count) request(s) neither answered nor failed (\(detail))")
        }
        if let first = offersAfterKnownDead.first { violations.append(first + " (\(Set(offersAfterKnownDead).count) in all)") }
        let expected: [NodeID] = equivocated ? [SimSigner(index: c.equivocator!.node).nodeID] : []
        for i in sim.nodes.indices where sim.participates(i) && sim.nodes[i].process.ledger.equivocators != expected {
            violations.append("node \(i) names equivocators \(sim.nodes[i].process.ledger.equivocators.map(\.short)), expected \(expected.map(\.short))")
        }
        if equivocated, !c.duels, let x = expected.first {
            // Its events (its receipts, as a pure provider) no longer count anywhere.
            for i in sim.nodes.indices where sim.participates(i) && sim.nodes[i].process.ledger.balance(of: x) != grants[x]! {
                violations.append("node \(i) still counts events of equivocator \(x.short): balance \(sim.nodes[i].process.ledger.balance(of: x))")
            }
        }
        let answered = requests.filter { sim.nodes[$0.node].process.results[$0.id]?.isComplete == true }.count
        let settled = sim.nodes.reduce(0) { $0 + $1.process.counters.duelsSettled }
        return Outcome(fuzzCase: c, violations: violations, traceHash: sim.traceHash, requests: requests.count, answered: answered,
                       duelsSettled: settled, events: sim.eventsProcessed)
    }

    /// Node `x` signs a second event at the slot of one of its own receipts (the latest, or
    /// with `deep` the oldest, which may lie far below its head) and pushes it to two peers
    /// (false: it had none yet).
    static func equivocate(_ x: Int, deep: Bool, sim: inout Simulation<SimNode>) -> Bool {
        let me = SimSigner(index: x)
        let own = sim.nodes[x].process.store.events.filter { $0.author == me.nodeID }
        guard let e = deep ? own.min(by: { $0.authorSeq < $1.authorSeq }) : own.max(by: { $0.authorSeq < $1.authorSeq }),
              case .jobReceipt(let r) = e.body else { return false }
        let forged = JobReceipt(authorization: r.authorization, responseHash: SimCrypto().sha256(r.responseHash + [1]),
                                inputTokens: r.inputTokens, outputTokens: r.outputTokens)
        let twin = LedgerEvent(authorSeq: e.authorSeq, createdAt: e.createdAt, body: .jobReceipt(forged), signer: me, crypto: SimCrypto())
        let push = LedgerSyncMessage(role: .push, digest: [:], events: [twin])
        var sent = 0
        for j in sim.nodes.indices where j != x && sim.participates(j) && sent < 2 {
            sim.perform(on: j) { p, now in p.input(.peerMessage(.ledgerSync(push), from: me.nodeID, fromAddress: SimAddress.of(x)), now: now) }
            sent += 1
        }
        return sent > 0
    }

    /// Every participating node other than the victim holds it as dead (or has dropped it).
    static func knownDeadByAll(_ victim: NodeID, sim: Simulation<SimNode>) -> Bool {
        sim.nodes.indices.filter { sim.participates($0) && sim.nodes[$0].process.nodeID != victim }.allSatisfy { i in
            guard let s = sim.nodes[i].process.membership.record(of: victim)?.status else { return true }
            return s == .dead || s == .left
        }
    }
}
