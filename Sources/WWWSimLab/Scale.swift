import Foundation
#if canImport(Glibc)
import Glibc
#endif
import WWWCore
import WWWSim

/// What one `ScaleExperiment` run at N nodes measured (DESIGN.md §8, issue 9 "scale").
///
/// Periods are gossip periods (1 s), counted from the event to the first whole period at
/// which the condition held at every participating node; nil when it did not within
/// `maxPeriods`. Wall times and memory are of this process on this machine, not of the
/// protocol.
public struct ScaleResult: Hashable, Sendable {
    public var nodes: Int
    public var seed: UInt64
    /// All nodes started within the first second through one seed: periods until every
    /// node holds every other alive. Nil with `preloaded`.
    public var bootstrapPeriods: Int?
    /// The tables were filled by handing each node every member's signed record directly
    /// (through its own membership `receive`), instead of by gossip from one seed.
    public var preloaded = false
    /// A new node joins through a random member: periods until all hold it alive.
    public var joinPeriods: Int?
    /// A random node leaves gracefully: periods until no other node holds it alive or suspect.
    public var leavePeriods: Int?
    /// A random node crashes: periods until no other node holds it alive or suspect
    /// (the suspicion timeout included).
    public var crashPeriods: Int?
    /// The suspicion timeout at this N, in periods.
    public var suspicionPeriods: Double
    /// Steady state (no requests): messages and bytes (canonical JSON plus a 320-byte
    /// envelope) each node sends per second, mean over nodes, and the largest node's bytes.
    public var messagesPerNodePerSecond: Double
    public var bytesPerNodePerSecond: Double
    public var maxBytesPerNodePerSecond: Double
    /// Wall time of one offload decision at a node without an engine: the request enters
    /// its machine, which orders every alive provider by stake and load and sends the first
    /// offer. Mean and largest over `decisions` requests, in microseconds.
    public var decisionMeanMicros: Double
    public var decisionMaxMicros: Double
    public var decisions: Int
    /// Requests of those answered.
    public var decisionsAnswered: Int
    /// The whole run: simulated seconds, events handled, wall seconds, and this process's
    /// peak resident memory so far (MiB; cumulative over sizes run in one process).
    public var simulatedSeconds: Double
    public var events: Int
    public var wallSeconds: Double
    public var peakRSSMiB: Double
    /// The most simulator events (messages in flight and timers) queued at once.
    public var peakQueued = 0

    /// Wall microseconds per simulated node-second.
    public var wallMicrosPerNodeSecond: Double { wallSeconds * 1e6 / max(1e-9, simulatedSeconds * Double(nodes)) }
}

/// Membership, gossip traffic, decision cost and simulator speed at a network size, on the
/// product's node machines (`SimNode`: membership, ledger, scheduler, modelled engines).
public enum ScaleExperiment {
    /// Runs bootstrap, 10 s of steady state, `decisions` offloaded requests, one join, one
    /// leave and one crash. `progress` gets a phase name as each one starts.
    ///
    /// `preload`: instead of bootstrapping by gossip through one seed (at N nodes every
    /// table must learn N records, 16 per push-pull answer: hundreds of periods at 10,000),
    /// hand every node every member's signed record, 64 per `states` message, straight
    /// into its own `receive` — the records are the members' real signed ones and pass the
    /// same checks; only the transport is skipped. Then the same measurements.
    public static func run(n: Int, seed: UInt64, decisions: Int = 20, maxPeriods: Int = 300, preload: Bool = false,
                           progress: ((String) -> Void)? = nil) -> ScaleResult {
        precondition(n >= 3 && decisions >= 1 && maxPeriods >= 1, "at least three nodes, one decision, one period")
        let wallStart = ContinuousClock.now
        let period = Duration.seconds(1)
        var grants = [NodeID: Credits]()
        for i in 0...n + 1 { grants[SimSigner(index: i).nodeID] = Credits(credits: 1_000) }
        let genesis = Genesis(networkID: "sim-scale-\(n)", parameters: GenesisParameters(duelProbability: 0), grants: grants,
                              seeds: [SimAddress.of(0)])
        var sim = Simulation<SimNode>(seed: seed, limits: SimLimits(maxTime: Instant(seconds: 1_700_000_000) + period * (6 * maxPeriods + 200),
                                                                   maxEvents: 2_000_000_000))
        sim.measureBytes = false
        var rng = sim.forkPRNG()
        let provider = SimNodeConfig.provider(capacity: 8)
        let requester = n
        for i in 0..<n {
            let offset = i == 0 ? Int64(0) : Int64(rng.next() % UInt64(period.nanoseconds))
            sim.addNode(index: i, genesis: genesis, seeds: i == 0 ? [] : [SimAddress.of(0)], config: provider, after: .nanoseconds(offset))
        }
        sim.addNode(index: requester, genesis: genesis, seeds: [SimAddress.of(0)], config: .requester())
        let start = sim.now
        func periods(since t0: Instant, _ t: Instant?) -> Int? { t.map { Int(($0 - t0).nanoseconds / period.nanoseconds) } }
        func until(_ done: (Simulation<SimNode>) -> Bool) -> Instant? {
            for _ in 0..<maxPeriods {
                guard sim.run(for: period) else { return nil }
                if done(sim) { return sim.now }
            }
            return nil
        }

        let total = n + 1
        func converged(_ s: Simulation<SimNode>) -> Bool {
            s.nodes.indices.allSatisfy { !s.participates($0) || s.nodes[$0].process.membership.aliveMemberCount == total }
        }
        var booted: Instant?
        if preload {
            progress?("preload")
            sim.run(for: period * 2)
            preloadTables(&sim)
            booted = until(converged)
        } else {
            progress?("bootstrap")
            booted = until(converged)
        }
        var r = ScaleResult(nodes: n, seed: seed, bootstrapPeriods: preload ? nil : periods(since: start, booted), preloaded: preload,
                            suspicionPeriods: MembershipMath.suspicionTimeout(members: total, config: provider.membership).seconds / period.seconds,
                            messagesPerNodePerSecond: 0, bytesPerNodePerSecond: 0, maxBytesPerNodePerSecond: 0,
                            decisionMeanMicros: 0, decisionMaxMicros: 0, decisions: decisions, decisionsAnswered: 0,
                            simulatedSeconds: 0, events: 0, wallSeconds: 0, peakRSSMiB: 0)

        progress?("steady state")
        _ = until { s in s.nodes.allSatisfy { $0.process.membership.queuedRumorCount == 0 } }
        let steady = 10
        sim.measureBytes = true
        let before = sim.nodes.map(\.traffic)
        sim.run(for: period * steady)
        sim.measureBytes = false
        let bytes = sim.nodes.indices.map { Double(sim.nodes[$0].traffic.bytesSent - before[$0].bytesSent) / Double(steady) }
        let msgs = sim.nodes.indices.map { Double(sim.nodes[$0].traffic.messagesSent - before[$0].messagesSent) / Double(steady) }
        r.bytesPerNodePerSecond = bytes.reduce(0, +) / Double(bytes.count)
        r.messagesPerNodePerSecond = msgs.reduce(0, +) / Double(msgs.count)
        r.maxBytesPerNodePerSecond = bytes.max() ?? 0

        progress?("decisions")
        var ids: [RequestID] = []
        var micros: [Double] = []
        for _ in 0..<decisions {
            let t = ContinuousClock.now
            if let id = sim.submit(at: requester, job: SimJobSpec(promptTokens: 300, outputTokens: 50), timeout: .seconds(60)) { ids.append(id) }
            let d = ContinuousClock.now - t
            micros.append(Double(d.components.seconds) * 1e6 + Double(d.components.attoseconds) / 1e12)
            sim.run(for: .milliseconds(500))
        }
        sim.run(for: .seconds(60))
        r.decisionMeanMicros = micros.reduce(0, +) / Double(max(1, micros.count))
        r.decisionMaxMicros = micros.max() ?? 0
        r.decisionsAnswered = ids.filter { sim.nodes[requester].process.results[$0]?.isComplete == true }.count

        progress?("join")
        let joiner = sim.addNode(index: n + 1, genesis: genesis, seeds: [SimAddress.of(Int(rng.next() % UInt64(n)))], config: provider)
        let joinerID = SimSigner(index: joiner).nodeID
        var t0 = sim.now
        r.joinPeriods = periods(since: t0, until { s in
            s.nodes.indices.allSatisfy { !s.participates($0) || $0 == joiner || s.nodes[$0].process.membership.record(of: joinerID)?.status == .alive }
        })

        func gone(_ id: NodeID) -> (Simulation<SimNode>) -> Bool { { $0.noneHoldsLive(id) } }
        let (leaver, crasher) = Simulation<SimNode>.leaverAndCrasher(n: n, rng: &rng)
        progress?("leave")
        sim.perform(on: leaver) { p, now in p.leave(now: now) }
        t0 = sim.now
        r.leavePeriods = periods(since: t0, until(gone(SimSigner(index: leaver).nodeID)))
        progress?("crash")
        sim.crash(crasher)
        t0 = sim.now
        r.crashPeriods = periods(since: t0, until(gone(SimSigner(index: crasher).nodeID)))

        r.simulatedSeconds = (sim.now - start).seconds
        r.events = sim.eventsProcessed
        let wall = ContinuousClock.now - wallStart
        r.wallSeconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) / 1e18
        r.peakRSSMiB = peakRSSMiB()
        r.peakQueued = sim.stats.peakQueued
        return r
    }

    /// Hands every participating node every member's current signed record, in `states`
    /// messages of 64 from node 0, through the node's own receive path.
    static func preloadTables(_ sim: inout Simulation<SimNode>) {
        let records = sim.nodes.indices.filter { sim.participates($0) }.compactMap { i in
            sim.nodes[i].process.membership.signedRecord(of: sim.nodes[i].process.nodeID)
        }
        let from = sim.nodes[0].process.nodeID
        let chunks = stride(from: 0, to: records.count, by: 64).map { Array(records[$0..<min(records.count, $0 + 64)]) }
        for i in sim.nodes.indices where sim.participates(i) {
            for c in chunks {
                let m = SimWire.peer(.membership(MembershipMessage(.states(c.map { .record($0) }))), from: i == 0 ? records[1].value.node : from)
                sim.perform(on: i) { p, now in p.receive(m, fromAddress: SimAddress.of(0), now: now) }
            }
        }
    }

    /// This process's peak resident set size so far, in MiB (0 where unknown).
    public static func peakRSSMiB() -> Double {
        #if canImport(Glibc)
        var u = rusage()
        guard getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u) == 0 else { return 0 }
        return Double(u.ru_maxrss) / 1024   // kilobytes on Linux
        #else
        return 0
        #endif
    }
}

/// `scale.csv`, `scale.svg` and `report.md` of a set of `ScaleResult`s.
public struct ScaleReport {
    public var results: [ScaleResult]
    public var command: String
    /// Sizes still to run: the report is written after each size, so one from a run that
    /// stopped early says which sizes it lacks.
    public var pending: [Int]

    public init(results: [ScaleResult], command: String, pending: [Int] = []) {
        self.results = results
        self.command = command
        self.pending = pending
    }

    public static func p(_ v: Int?) -> String { v.map(String.init) ?? "never" }
    public static func bootstrap(_ r: ScaleResult) -> String { r.preloaded ? "preloaded" : p(r.bootstrapPeriods) }

    public var csv: String {
        var out = "nodes,seed,bootstrap_periods,join_periods,leave_periods,crash_periods,suspicion_periods,messages_per_node_s,"
            + "bytes_per_node_s,max_bytes_per_node_s,decision_mean_us,decision_max_us,decisions,answered,simulated_s,events,wall_s,"
            + "wall_us_per_node_s,peak_rss_mib,peak_events_queued\n"
        for r in results {
            let f = ScenarioReport.f
            out += [String(r.nodes), String(r.seed), Self.bootstrap(r), Self.p(r.joinPeriods), Self.p(r.leavePeriods),
                    Self.p(r.crashPeriods), f(r.suspicionPeriods, 1), f(r.messagesPerNodePerSecond, 1), f(r.bytesPerNodePerSecond, 0),
                    f(r.maxBytesPerNodePerSecond, 0), f(r.decisionMeanMicros, 1), f(r.decisionMaxMicros, 1), String(r.decisions),
                    String(r.decisionsAnswered), f(r.simulatedSeconds, 0), String(r.events), f(r.wallSeconds, 1),
                    f(r.wallMicrosPerNodeSecond, 1), f(r.peakRSSMiB, 0), String(r.peakQueued)].joined(separator: ",") + "\n"
        }
        return out
    }

    /// Periods until a join, a leave and a crash are known by all, against log10 N.
    public var svg: String {
        func series(_ name: String, _ v: (ScaleResult) -> Int?) -> (String, [(Double, Double)]) {
            (name, results.compactMap { r in v(r).map { (log10(Double(r.nodes)), Double($0)) } })
        }
        var plot = SVGPlot(title: "Periods until known by all", xLabel: "nodes (log scale)", yLabel: "gossip periods (1 s)",
                           series: [series("join", \.joinPeriods), series("leave", \.leavePeriods), series("crash", \.crashPeriods),
                                    series("bootstrap", \.bootstrapPeriods)].filter { !$0.1.isEmpty })
        plot.xTickLabel = { String(format: "%.0f", pow(10, $0)) }
        return plot.render()
    }

    public var markdown: String {
        var md = "# Scale: membership, gossip, decisions and simulator speed by network size\n\n"
        md += "Regenerate with:\n\n    \(command)\n\n"
        if !pending.isEmpty {
            md += "**Partial:** written while the run went on; sizes \(pending.map(String.init).joined(separator: ", ")) were not done yet.\n\n"
        }
        md += "| nodes | bootstrap | join | leave | crash (suspicion) | msgs/node/s | bytes/node/s (max) | decision µs mean (max) | answered | wall s | µs per node-second | peak RSS MiB | events queued (max) |\n"
        md += "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        let f = ScenarioReport.f
        for r in results {
            md += "| \(r.nodes) | \(Self.bootstrap(r)) | \(Self.p(r.joinPeriods)) | \(Self.p(r.leavePeriods)) | "
                + "\(Self.p(r.crashPeriods)) (\(f(r.suspicionPeriods, 1))) | \(f(r.messagesPerNodePerSecond, 1)) | "
                + "\(f(r.bytesPerNodePerSecond, 0)) (\(f(r.maxBytesPerNodePerSecond, 0))) | \(f(r.decisionMeanMicros, 0)) (\(f(r.decisionMaxMicros, 0))) | "
                + "\(r.decisionsAnswered)/\(r.decisions) | \(f(r.wallSeconds, 1)) | \(f(r.wallMicrosPerNodeSecond, 1)) | \(f(r.peakRSSMiB, 0)) | \(r.peakQueued) |\n"
        }
        md += "\nColumns: docs/experiments/README.md, \"Scale\". Periods are 1 s gossip periods until every participating "
            + "node agreed; wall times, decision costs and memory are of one simulator process on this machine (peak RSS is "
            + "cumulative over the sizes of one run; the first size's largest decision includes warm-up).\n"
        md += "\n![Periods until known by all](scale.svg)\n"
        return md
    }

    public func write(to directory: String) throws {
        try writeReportFiles([("scale.csv", csv), ("scale.svg", svg), ("report.md", markdown)], to: directory)
    }
}
