import WWWCore

/// What one `MassStartExperiment` run measured (periods are protocol periods).
public struct MassStartResult: Hashable, Sendable, CustomStringConvertible {
    public var nodes: Int
    public var seed: UInt64
    /// Until every node holds all N (itself included) alive; nil if not within the bound.
    public var convergedPeriods: Int?
    /// After convergence, periods (sampled once each) in which some node held a live
    /// node suspect or dead — every node is up, so each is a false suspicion.
    public var falseSuspicionPeriods: Int
    /// Of those, periods in which some node held a live node dead (or had dropped it).
    public var falseDeathPeriods: Int
    public var watchedPeriods: Int
    /// Messages sent per node per period from the start until convergence (or the bound).
    public var messagesPerNodePerPeriod: Double
    /// Messages shed at full inbound queues, over the whole run.
    public var shed: Int
    /// The highest Lifeguard local health score any node reached.
    public var maxLocalHealth: Int

    public var description: String {
        let m = Int(messagesPerNodePerPeriod * 10 + 0.5)
        return "n=\(nodes) seed=\(seed) converged=\(convergedPeriods.map(String.init) ?? "n/c") "
            + "false-suspicion periods=\(falseSuspicionPeriods)/\(watchedPeriods) false-death periods=\(falseDeathPeriods) msgs/node/period=\(m / 10).\(m % 10) "
            + "shed=\(shed) max-local-health=\(maxLocalHealth)"
    }
}

/// N nodes started in the same instant (a power cut, a partition heal, a release roll-out)
/// through two seeds, each node a processor with a per-message cost and a bounded inbound
/// queue (`SimNetworkConfig.receiveCost`, `sendCost`, `inboundLimit`): does membership
/// converge, and does it stay converged without false suspicions? The protocol is the
/// product's own `Membership`; only time, network and CPU are simulated.
public enum MassStartExperiment {
    public static func run(
        n: Int, seed: UInt64, config: MembershipConfig = MembershipConfig(), network: SimNetworkConfig,
        maxPeriods: Int = 300, watchPeriods: Int = 60, trace: ((String) -> Void)? = nil
    ) -> MassStartResult {
        precondition(n >= 3, "at least three nodes")
        let period = config.protocolPeriod
        var sim = Simulation<MembershipProcess>(
            seed: seed, network: network,
            limits: SimLimits(maxTime: Instant(seconds: 1_700_000_000) + period * (maxPeriods + watchPeriods + 10)))
        sim.measureBytes = false   // canonical encoding of every message for its size was ~40 % of the run
        var rng = sim.forkPRNG()
        let seeds = [SimAddress.of(0), SimAddress.of(1)]
        for i in 0..<n {
            // "At once": within 10 ms of each other (process start-up jitter).
            sim.addMember(index: i, seeds: seeds, config: config, after: .nanoseconds(Int64(rng.next() % 10_000_000)))
        }
        func allAlive(_ s: Simulation<MembershipProcess>) -> Bool {
            s.nodes.allSatisfy { $0.process.membership.aliveMemberCount == n }
        }
        var maxHealth = 0
        let t0 = sim.now
        var converged: Int?
        for p in 1...maxPeriods {
            sim.run(for: period)
            maxHealth = max(maxHealth, sim.nodes.map(\.process.membership.localHealth).max() ?? 0)
            if allAlive(sim) {
                converged = p
                break
            }
        }
        let sent = sim.nodes.reduce(0) { $0 + $1.traffic.messagesSent }
        let elapsed = max(1, Int((sim.now - t0).nanoseconds / period.nanoseconds))
        var falsePeriods = 0, deathPeriods = 0
        if converged != nil {
            for _ in 0..<watchPeriods {
                sim.run(for: period)
                maxHealth = max(maxHealth, sim.nodes.map(\.process.membership.localHealth).max() ?? 0)
                if !allAlive(sim) { falsePeriods += 1 }
                if sim.nodes.contains(where: { $0.process.membership.liveMemberCount < n }) { deathPeriods += 1 }
                if let trace {
                    let sus = sim.nodes.map { n - $0.process.membership.aliveMemberCount }
                    let lh = sim.nodes.map(\.process.membership.localHealth)
                    let backlog = sim.nodes.map { ($0.busyUntil - sim.now).nanoseconds / 1_000_000 }
                    trace("  watch: notAlive=\(sus.reduce(0, +)) nodesWithSuspects=\(sus.filter { $0 > 0 }.count) maxLH=\(lh.max()!) sumLH=\(lh.reduce(0, +)) maxBacklogMs=\(backlog.max()!) inbound=\(sim.nodes.map(\.inbound).max()!) shed=\(sim.stats.shed)")
                }
            }
        }
        return MassStartResult(
            nodes: n, seed: seed, convergedPeriods: converged, falseSuspicionPeriods: falsePeriods, falseDeathPeriods: deathPeriods,
            watchedPeriods: converged == nil ? 0 : watchPeriods,
            messagesPerNodePerPeriod: Double(sent) / Double(n * elapsed), shed: sim.stats.shed, maxLocalHealth: maxHealth)
    }
}
