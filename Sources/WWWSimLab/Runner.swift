import Foundation
import WWWCore
import WWWSim

/// How one request of a scenario ended in one mode.
public struct RequestRecord: Sendable, Hashable {
    public var mode: Scenario.Mode
    public var index: Int
    public var node: Int
    /// Seconds after the workload's start.
    public var arrival: Double
    /// Seconds from arrival to the first content at the user, and to the end; nil if never.
    public var ttft: Double?
    public var latency: Double?
    /// The node whose engine ran the answer the user got.
    public var executor: Int?
    /// Why it failed (timeouts included); nil when answered.
    public var failure: String?
    public var promptTokens: Int
    public var outputTokens: Int

    public var ok: Bool { failure == nil && latency != nil }
}

/// What a run of one mode produced.
public struct ModeRun: Sendable {
    public var mode: Scenario.Mode
    public var records: [RequestRecord]
    /// wwwserve mode: each node's final balance (credits) in node 0's ledger, and whether
    /// every node's ledger held Σ balances = Σ grants at the end.
    public var balances: [Double] = []
    public var conservation = true
    /// Per node: mean requests running on its engine over the workload's duration
    /// (sampled each second), and its duel record (wwwserve with duels).
    public var meanRunning: [Double] = []
    public var duelRecords: [DuelRecord?] = []
    /// wwwserve: (seconds after the workload's start, every node's balance) samples.
    public var balanceSeries: [(Double, [Double])] = []
    /// Simulator cost: events processed and wall seconds.
    public var events = 0
    public var wallSeconds = 0.0
}

/// Runs a scenario's modes over the same arrivals.
public struct ScenarioRunner {
    public let scenario: Scenario
    public let book: ProfileBook
    public let arrivals: [Arrival]
    public let nodes: [ScenarioNode]
    /// Per node: its engine's profile (quality overridden where the scenario says), nil
    /// for a node without an engine.
    let profiles: [SimEngineProfile?]

    public init(scenario: Scenario, book: ProfileBook, arrivals: [Arrival]) throws {
        self.scenario = scenario
        self.book = book
        self.arrivals = arrivals
        self.nodes = scenario.expandedNodes
        self.profiles = try nodes.map { n in
            guard n.group.profile != "none" else { return nil }
            var p = try book.profile(n.group.profile)
            if let q = n.group.quality { p.quality = q }
            return p
        }
    }

    /// Node events by time (index, action), and the nodes absent at the start (they join).
    var nodeEvents: [(at: Double, node: Int, action: String)] {
        let byName = Dictionary(uniqueKeysWithValues: nodes.map { ($0.name, $0.index) })
        return scenario.events.compactMap { e in byName[e.node].map { (e.atS, $0, e.action) } }.sorted { ($0.at, $0.node) < ($1.at, $1.node) }
    }

    var absentAtStart: Set<Int> {
        var first: [Int: String] = [:]
        for e in nodeEvents where first[e.node] == nil { first[e.node] = e.action }
        return Set(first.filter { $0.value == "join" }.keys)
    }

    /// Seconds a leaving node drains before its process exits (the shell's default
    /// `shutdown_grace_s`); what still runs then fails.
    static let leaveGraceS = 10.0

    /// The node events as process changes: a leave, then its exit `leaveGraceS` later.
    /// With `joinsScheduled`, a node's first join is left out (it was added with a delay).
    func processChanges(joinsScheduled: Bool) -> [(at: Double, node: Int, action: String)] {
        var out: [(at: Double, node: Int, action: String)] = []
        var joined = Set<Int>()
        let absent = absentAtStart
        for e in nodeEvents {
            if joinsScheduled, e.action == "join", absent.contains(e.node), joined.insert(e.node).inserted { continue }
            out.append(e)
            if e.action == "leave" { out.append((e.at + Self.leaveGraceS, e.node, "exit")) }
        }
        return out.sorted { ($0.at, $0.node) < ($1.at, $1.node) }
    }

    /// Sample instants (seconds after the workload's start) of the running-requests mean.
    var runningSamples: [Double] { stride(from: 0.5, to: scenario.durationS, by: 1).map { $0 } }

    public func run(_ mode: Scenario.Mode, progress: ((Double) -> Void)? = nil) -> ModeRun {
        let clock = ContinuousClock.now
        var r: ModeRun
        switch mode {
        case .single, .centralized: r = runFlat(mode, progress: progress)
        case .wwwserve: r = runNetwork(progress: progress)
        }
        r.wallSeconds = (ContinuousClock.now - clock).seconds
        return r
    }

    // MARK: Baselines (no protocol: engines and an oracle dispatcher)

    /// `single`: each request runs on its own node's engine. `centralized`: on the engine
    /// for its model with the lowest true utilization (running + waiting over its slots,
    /// or KV use if higher) at arrival, ties to the lower index; a request sent to another
    /// node pays the network's mean one-way delay there and back.
    func runFlat(_ mode: Scenario.Mode, progress: ((Double) -> Void)?) -> ModeRun {
        var engines: [SimEngine?] = nodes.indices.map { i in profiles[i].map { SimEngine(profile: $0, capacity: nodes[i].group.capacity) } }
        let delay = (scenario.network.minDelayMs + scenario.network.maxDelayMs) / 2 / 1000
        let timeout = scenario.requestTimeoutS
        var records = arrivals.map {
            RequestRecord(mode: mode, index: $0.index, node: $0.node, arrival: $0.at, promptTokens: $0.job.promptTokens,
                          outputTokens: $0.job.outputTokens)
        }
        let samples = runningSamples
        var running = [Double](repeating: 0, count: nodes.count)
        var placedOn: [Int: (engine: Int, extra: Double)] = [:]
        var up = nodes.map { !absentAtStart.contains($0.index) }
        let changes = processChanges(joinsScheduled: false)
        var changeCursor = 0
        var next = 0, deadlineCursor = 0, sampleCursor = 0, events = 0
        func at(_ t: Double) -> Instant { Instant(nanoseconds: Int64((t * 1e9).rounded())) }
        func seconds(_ i: Instant) -> Double { Double(i.nanoseconds) / 1e9 }
        while events < 100_000_000 {
            events += 1
            let tArrival = next < arrivals.count ? arrivals[next].at : Double.infinity
            let tDeadline = deadlineCursor < arrivals.count ? arrivals[deadlineCursor].at + timeout : Double.infinity
            let tSample = sampleCursor < samples.count ? samples[sampleCursor] : Double.infinity
            let tChange = changeCursor < changes.count ? changes[changeCursor].at : Double.infinity
            var tEngine = Double.infinity, which = -1
            for (i, e) in engines.enumerated() {
                if let n = e?.nextEvent.map(seconds), n < tEngine { tEngine = n; which = i }
            }
            let t = min(tArrival, tDeadline, tEngine, tSample, tChange)
            guard t.isFinite else { break }
            if tChange <= t, tChange < tEngine {
                let ch = changes[changeCursor]
                changeCursor += 1
                // A leave takes no new work; at its exit (or a crash) what still runs fails.
                if ch.action == "exit" || ch.action == "crash" {
                    for (idx, p) in placedOn where p.engine == ch.node {
                        records[idx].failure = ch.action == "crash" ? "executorCrashed" : "executorLeft"
                        engines[ch.node]?.cancel(StreamID(UInt64(idx + 1)), now: at(t))
                        placedOn[idx] = nil
                    }
                }
                up[ch.node] = ch.action == "join" || ch.action == "restart"
            } else if tEngine <= t, which >= 0 {
                for (s, ev) in engines[which]!.due(now: at(tEngine)) {
                    let idx = Int(s.raw) - 1
                    guard let p = placedOn[idx], records[idx].failure == nil, records[idx].latency == nil else { continue }
                    switch ev {
                    case .firstContent: records[idx].ttft = tEngine + p.extra - records[idx].arrival
                    case .finished:
                        records[idx].latency = tEngine + p.extra - records[idx].arrival
                        records[idx].executor = p.engine
                        placedOn[idx] = nil
                    case .failed(let f): records[idx].failure = "\(f)"
                    }
                }
            } else if tSample <= t {
                sampleCursor += 1
                for i in engines.indices { running[i] += Double(engines[i]?.runningCount ?? 0) }
            } else if tDeadline <= t {
                let idx = deadlineCursor
                deadlineCursor += 1
                if records[idx].latency == nil, records[idx].failure == nil {
                    records[idx].failure = "deadlineExceeded"
                    if let p = placedOn.removeValue(forKey: idx) { engines[p.engine]!.cancel(StreamID(UInt64(idx + 1)), now: at(t)) }
                }
            } else {
                let a = arrivals[next]
                next += 1
                guard up[a.node] else {
                    records[a.index].failure = "node down"
                    continue
                }
                let target = mode == .single ? (engines[a.node] == nil ? -1 : a.node)
                    : leastLoaded(for: nodes[a.node].group.model, job: a.job, engines: engines, up: up)
                guard target >= 0 else {
                    records[a.index].failure = "noEngine"
                    continue
                }
                let extra = target == a.node ? 0 : delay
                placedOn[a.index] = (target, extra)
                engines[target]!.start(StreamID(UInt64(a.index + 1)), a.job, now: at(a.at + extra))
                if next % 1024 == 0 { progress?(Double(next) / Double(max(1, arrivals.count))) }
            }
        }
        var r = ModeRun(mode: mode, records: records, events: events)
        r.meanRunning = running.map { $0 / Double(max(1, samples.count)) }
        return r
    }

    private func leastLoaded(for model: String, job: SimJobSpec, engines: [SimEngine?], up: [Bool]) -> Int {
        var best = -1, bestLoad = Double.infinity
        for (i, n) in nodes.enumerated() where n.group.model == model && up[i] {
            guard let e = engines[i], e.fits(job) else { continue }
            let u = max(Double(e.load) / Double(max(1, e.maxRunning)), e.kvUsage)
            if u < bestLoad { best = i; bestLoad = u }
        }
        return best
    }

    // MARK: wwwserve: the product's node machines

    /// The scenario's genesis: each node's `grant` (1,000 credits by default), price 1
    /// credit, the scenario's duel probability and panel size (defaults for bonds and fees).
    var genesis: Genesis {
        var g = [NodeID: Credits]()
        for n in nodes { g[SimSigner(index: n.index).nodeID] = Credits(micro: Int64((n.group.grant * 1e6).rounded())) }
        var p = GenesisParameters(duelProbability: 0)
        if let d = scenario.duels {
            p.duelProbability = PartsPerMillion((d.probability * 1e6).rounded())
            p.judgesPerDuel = d.judgesPerDuel
        }
        return Genesis(networkID: "sim-\(scenario.name)", parameters: p, grants: g, seeds: [SimAddress.of(0)])
    }

    func nodeConfig(_ n: ScenarioNode) -> SimNodeConfig {
        let p = n.group.policy
        let policy = SchedulingPolicy(offloadFrequency: p.offloadFrequency, acceptFrequency: p.acceptFrequency, loadTarget: p.loadTarget)
        let stake = Credits(micro: Int64((p.stake * 1e6).rounded()))
        var c: SimNodeConfig
        if let profile = profiles[n.index] {
            c = SimNodeConfig.provider(model: n.group.model, capacity: n.group.capacity, stake: stake, policy: policy)
            c.engine = profile
        } else {
            c = SimNodeConfig.requester(policy: policy)
            c.declaredStake = stake
        }
        c.period = .milliseconds(Int64(scenario.gossipPeriodMs))
        c.machine.queueTimeout = .milliseconds(Int64(scenario.requestTimeoutS * 1000))
        if let d = scenario.duels {
            c.machine.duel = DuelConfig(runDuels: true, judge: n.group.judge, judgingTimeout: .seconds(30))
            if n.group.judge { c.judge = SimJudge(strengths: strengths, noise: d.noise, biasRate: d.positionBias) }
        }
        return c
    }

    /// Every executor's answer strength (its profile's quality), for the modelled judges.
    var strengths: [NodeID: Double] {
        var out: [NodeID: Double] = [:]
        for n in nodes { if let p = profiles[n.index] { out[SimSigner(index: n.index).nodeID] = p.quality } }
        return out
    }

    /// Simulated seconds a wwwserve run goes on after its last request ended.
    static let settleS = 30.0

    func runNetwork(progress: ((Double) -> Void)?) -> ModeRun {
        let g = genesis
        let net = SimNetworkConfig(minDelay: .nanoseconds(Int64(scenario.network.minDelayMs * 1e6)),
                                   maxDelay: .nanoseconds(Int64(scenario.network.maxDelayMs * 1e6)),
                                   lossProbability: scenario.network.loss)
        let horizon = scenario.warmupS + (arrivals.last?.at ?? 0) + scenario.requestTimeoutS + 60
        var sim = Simulation<SimNode>(seed: scenario.seed, network: net,
                                      limits: SimLimits(maxTime: Instant(seconds: 1_700_000_000) + .seconds(Int64(horizon) + 1),
                                                        maxEvents: 200_000_000))
        sim.measureBytes = false
        let absent = absentAtStart
        let firstJoin = Dictionary(nodeEvents.filter { $0.action == "join" }.map { ($0.node, $0.at) }, uniquingKeysWith: min)
        for n in nodes {
            let delay: Duration = absent.contains(n.index)
                ? .nanoseconds(Int64((scenario.warmupS + firstJoin[n.index]!) * 1e9))
                : .milliseconds(Int64(n.index % 1000) * 3)
            sim.addNode(index: n.index, genesis: g, seeds: n.index == 0 ? [] : [SimAddress.of(0)], config: nodeConfig(n), after: delay)
        }
        let start = sim.now + .nanoseconds(Int64(scenario.warmupS * 1e9))
        func instant(_ t: Double) -> Instant { start + .nanoseconds(Int64((t * 1e9).rounded())) }
        // Until every request ended (at the latest its timeout after the last arrival), then
        // `settleS` more for receipts and duels to settle and spread.
        var end = (arrivals.last?.at ?? 0) + scenario.requestTimeoutS + 5
        var pending = Set<Int>()
        let runSamples = runningSamples
        let balanceSamples = stride(from: 0, through: end, by: scenario.samplePeriodS).map { $0 }
        var running = [Double](repeating: 0, count: nodes.count)
        var series: [(Double, [Double])] = []
        var ids: [Int: RequestID] = [:]
        let changes = processChanges(joinsScheduled: true)
        var (ai, ri, bi, ci) = (0, 0, 0, 0)
        while true {
            let ta = ai < arrivals.count ? arrivals[ai].at : .infinity
            let tr = ri < runSamples.count ? runSamples[ri] : .infinity
            let tb = bi < balanceSamples.count ? balanceSamples[bi] : .infinity
            let tc = ci < changes.count ? changes[ci].at : .infinity
            let t = min(ta, tr, tb, tc)
            guard t <= end else { break }
            sim.run(until: instant(t))
            if tc == t {
                let ch = changes[ci]
                ci += 1
                switch ch.action {
                case "leave": sim.perform(on: ch.node) { p, now in p.leave(now: now) }
                case "exit", "crash": if sim.nodes[ch.node].up { sim.crash(ch.node) }
                case "restart", "join": sim.restartNode(ch.node, genesis: g, seeds: [SimAddress.of(0)])
                default: break
                }
            } else if ta == t {
                let a = arrivals[ai]
                ai += 1
                ids[a.index] = sim.submit(at: a.node, model: nodes[a.node].group.model, job: a.job,
                                          timeout: .nanoseconds(Int64(scenario.requestTimeoutS * 1e9)))
                pending.insert(a.index)
                if ai % 256 == 0 { progress?(Double(ai) / Double(max(1, arrivals.count))) }
            } else if tr == t {
                ri += 1
                for i in nodes.indices where sim.nodes[i].up { running[i] += Double(sim.nodes[i].process.runningOnEngines) }
            } else {
                bi += 1
                let l = sim.nodes[0].process.ledger
                series.append((t, nodes.map { Double(l.balance(of: SimSigner(index: $0.index).nodeID).micro) / 1e6 }))
                if ai == arrivals.count, ci == changes.count, !pending.isEmpty || end > t + Self.settleS {
                    pending = pending.filter { i in
                        let a = arrivals[i]
                        guard let id = ids[i], sim.nodes[a.node].up, let res = sim.nodes[a.node].process.results[id] else { return false }
                        return res.finishedAt == nil && res.failure == nil
                    }
                    if pending.isEmpty { end = min(end, t + Self.settleS) }
                }
            }
        }
        sim.run(until: instant(end))
        var records: [RequestRecord] = []
        for a in arrivals {
            var r = RequestRecord(mode: .wwwserve, index: a.index, node: a.node, arrival: a.at, promptTokens: a.job.promptTokens,
                                  outputTokens: a.job.outputTokens)
            if let id = ids[a.index], let res = sim.nodes[a.node].process.results[id] {
                let arrival = res.arrival
                r.ttft = res.committedAt.map { ($0 - arrival).seconds }
                if res.isComplete, let f = res.finishedAt { r.latency = (f - arrival).seconds }
                if let f = res.failure { r.failure = "\(f)" } else if res.finishedAt == nil { r.failure = "unfinished" }
                if r.ok {
                    r.executor = res.executor.map { id in nodes.firstIndex { SimSigner(index: $0.index).nodeID == id } ?? -1 } ?? a.node
                }
            } else {
                r.failure = "node down"
            }
            records.append(r)
        }
        let l0 = sim.nodes[0].process.ledger
        let balances = nodes.map { Double(l0.balance(of: SimSigner(index: $0.index).nodeID).micro) / 1e6 }
        let conserved = sim.nodes.allSatisfy { $0.process.ledger.totalBalance == g.totalSupply }
        var r = ModeRun(mode: .wwwserve, records: records, balances: balances, conservation: conserved, events: sim.eventsProcessed)
        r.meanRunning = running.map { $0 / Double(max(1, runSamples.count)) }
        r.balanceSeries = series
        r.duelRecords = nodes.map { l0.duelRecords[SimSigner(index: $0.index).nodeID] }
        return r
    }
}
