import WWWCore

/// What one `ConvergenceExperiment` run measured. Periods are protocol periods
/// (`MembershipConfig.protocolPeriod`, 1 s by default), rounded up; nil when the phase did
/// not converge within `maxPeriods`.
public struct ConvergenceResult: Hashable, Sendable, CustomStringConvertible {
    public var nodes: Int
    public var seed: UInt64
    /// All N nodes started within the first period through one seed, until every node
    /// holds every other as alive.
    public var bootstrapPeriods: Int?
    /// Periods after bootstrap until every rumor queue drained (each of the N join rumors
    /// is piggybacked λ·⌈log10(N+1)⌉ times by every node: inherent to SWIM dissemination);
    /// nil if not within `maxPeriods` (steady state is then measured anyway).
    public var drainPeriods: Int?
    /// Steady state (after the drain): messages and bytes sent per node per period,
    /// mean over nodes and the maximum over nodes.
    public var messagesPerNodePerPeriod: Double
    public var bytesPerNodePerPeriod: Double
    public var maxBytesPerNodePerPeriod: Double
    /// A new node joins through one random seed: periods until all nodes hold it alive.
    public var joinPeriods: Int?
    /// A random node leaves gracefully: periods until no other node holds it alive/suspect.
    public var leavePeriods: Int?
    /// A random node crashes: periods until no other node holds it alive/suspect
    /// (includes the suspicion timeout).
    public var crashPeriods: Int?
    /// The suspicion timeout at this N, in periods.
    public var suspicionTimeoutPeriods: Double

    public var description: String {
        func p(_ v: Int?) -> String { v.map(String.init) ?? "n/c" }
        func f(_ v: Double) -> String {
            let tenths = Int(v * 10 + 0.5)
            return "\(tenths / 10).\(tenths % 10)"
        }
        return "n=\(nodes) seed=\(seed) bootstrap=\(p(bootstrapPeriods)) drain=\(p(drainPeriods)) join=\(p(joinPeriods)) leave=\(p(leavePeriods)) "
            + "crash=\(p(crashPeriods)) (suspicion \(f(suspicionTimeoutPeriods))) msgs/node/period=\(f(messagesPerNodePerPeriod)) "
            + "bytes/node/period=\(f(bytesPerNodePerPeriod)) max=\(f(maxBytesPerNodePerPeriod))"
    }
}

/// Membership convergence and traffic at a given N (DESIGN.md §4 targets: joins and
/// departures known by all within O(log N) periods; per-node traffic bounded as N grows).
public enum ConvergenceExperiment {
    /// Runs bootstrap, steady state (`steadyPeriods`), one join, one leave and one crash.
    public static func run(
        n: Int, seed: UInt64, config: MembershipConfig = MembershipConfig(),
        network: SimNetworkConfig = SimNetworkConfig(), steadyPeriods: Int = 10, maxPeriods: Int = 300
    ) -> ConvergenceResult {
        precondition(n >= 2, "at least two nodes")
        let period = config.protocolPeriod
        var sim = Simulation<MembershipProcess>(
            seed: seed, network: network,
            limits: SimLimits(maxTime: Instant(seconds: 1_700_000_000) + period * (4 * maxPeriods + 4 * steadyPeriods + 100)))
        var rng = sim.forkPRNG()
        let seedAddress = SimAddress.of(0)
        sim.addMember(index: 0, seeds: [], config: config)
        for i in 1..<n {
            let offset = Int64(rng.next() % UInt64(period.nanoseconds))
            sim.addMember(index: i, seeds: [seedAddress], config: config, after: .nanoseconds(offset))
        }
        let timeout = period * maxPeriods
        func periods(since t0: Instant, _ t: Instant?) -> Int? {
            t.map { Int(($0 - t0).nanoseconds / period.nanoseconds) }
        }

        // Bootstrap.
        var t0 = sim.now
        let booted = sim.run(step: period, timeout: timeout) { $0.membershipConverged() }
        var result = ConvergenceResult(
            nodes: n, seed: seed, bootstrapPeriods: periods(since: t0, booted), drainPeriods: nil, messagesPerNodePerPeriod: 0,
            bytesPerNodePerPeriod: 0, maxBytesPerNodePerPeriod: 0, joinPeriods: nil, leavePeriods: nil, crashPeriods: nil,
            suspicionTimeoutPeriods: MembershipMath.suspicionTimeout(members: n, config: config).seconds / period.seconds)

        // Drain, then steady state traffic.
        sim.measureBytes = false
        t0 = sim.now
        let drained = sim.run(step: period, timeout: timeout) { s in s.nodes.allSatisfy { $0.process.membership.queuedRumorCount == 0 } }
        result.drainPeriods = periods(since: t0, drained)
        sim.measureBytes = true
        let before = sim.nodes.map(\.traffic)
        sim.run(for: period * steadyPeriods)
        sim.measureBytes = false
        let sentBytes = sim.nodes.indices.map { Double(sim.nodes[$0].traffic.bytesSent - before[$0].bytesSent) / Double(steadyPeriods) }
        let sentMsgs = sim.nodes.indices.map { Double(sim.nodes[$0].traffic.messagesSent - before[$0].messagesSent) / Double(steadyPeriods) }
        result.bytesPerNodePerPeriod = sentBytes.reduce(0, +) / Double(n)
        result.messagesPerNodePerPeriod = sentMsgs.reduce(0, +) / Double(n)
        result.maxBytesPerNodePerPeriod = sentBytes.max() ?? 0

        // Join.
        let via = SimAddress.of(Int(rng.next() % UInt64(n)))
        let joiner = sim.addMember(index: n, seeds: [via], config: config)
        let joinerID = SimSigner(index: n).nodeID
        t0 = sim.now
        let joined = sim.run(step: period, timeout: timeout) { s in
            s.nodes.indices.allSatisfy { !s.participates($0) || s.nodes[$0].process.membership.record(of: joinerID)?.status == .alive }
        }
        result.joinPeriods = periods(since: t0, joined)

        // Graceful leave and crash of two random original nodes (not the seed, not the joiner).
        func gone(_ id: NodeID) -> (Simulation<MembershipProcess>) -> Bool { { $0.noneHoldsLive(id) } }
        let (leaver, crasher) = Simulation<MembershipProcess>.leaverAndCrasher(n: n, rng: &rng)
        precondition(joiner == n)

        sim.perform(on: leaver) { p, now in p.perform { $0.leave(now: now) } }
        t0 = sim.now
        result.leavePeriods = periods(since: t0, sim.run(step: period, timeout: timeout, until: gone(SimSigner(index: leaver).nodeID)))

        if n > 2 {
            sim.crash(crasher)
            t0 = sim.now
            result.crashPeriods = periods(since: t0, sim.run(step: period, timeout: timeout, until: gone(SimSigner(index: crasher).nodeID)))
        }
        return result
    }
}
