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
    let profiles: [SimEngineProfile]

    public init(scenario: Scenario, book: ProfileBook, arrivals: [Arrival]) throws {
        self.scenario = scenario
        self.book = book
        self.arrivals = arrivals
        self.nodes = scenario.expandedNodes
        self.profiles = try nodes.map { try book.profile($0.group.profile) }
    }

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
        var engines = nodes.indices.map { SimEngine(profile: profiles[$0], capacity: nodes[$0].group.capacity) }
        let delay = (scenario.network.minDelayMs + scenario.network.maxDelayMs) / 2 / 1000
        let timeout = scenario.requestTimeoutS
        var records = arrivals.map {
            RequestRecord(mode: mode, index: $0.index, node: $0.node, arrival: $0.at, promptTokens: $0.job.promptTokens,
                          outputTokens: $0.job.outputTokens)
        }
        var placedOn: [Int: (engine: Int, extra: Double)] = [:]
        var next = 0, deadlineCursor = 0, events = 0
        func at(_ t: Double) -> Instant { Instant(nanoseconds: Int64((t * 1e9).rounded())) }
        func seconds(_ i: Instant) -> Double { Double(i.nanoseconds) / 1e9 }
        while events < 100_000_000 {
            events += 1
            let tArrival = next < arrivals.count ? arrivals[next].at + (mode == .single ? 0 : 0) : Double.infinity
            let tDeadline = deadlineCursor < arrivals.count ? arrivals[deadlineCursor].at + timeout : Double.infinity
            var tEngine = Double.infinity, which = -1
            for (i, e) in engines.enumerated() {
                if let n = e.nextEvent.map(seconds), n < tEngine { tEngine = n; which = i }
            }
            let t = min(tArrival, tDeadline, tEngine)
            guard t.isFinite else { break }
            if tEngine <= t, which >= 0 {
                for (s, ev) in engines[which].due(now: at(tEngine)) {
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
            } else if tDeadline <= t {
                let idx = deadlineCursor
                deadlineCursor += 1
                if records[idx].latency == nil, records[idx].failure == nil {
                    records[idx].failure = "deadlineExceeded"
                    if let p = placedOn.removeValue(forKey: idx) { engines[p.engine].cancel(StreamID(UInt64(idx + 1)), now: at(t)) }
                }
            } else {
                let a = arrivals[next]
                next += 1
                let target = mode == .single ? a.node : leastLoaded(for: nodes[a.node].group.model, engines: engines)
                let extra = target == a.node ? 0 : delay
                placedOn[a.index] = (target, extra)
                engines[target].start(StreamID(UInt64(a.index + 1)), a.job, now: at(a.at + extra))
                if next % 1024 == 0 { progress?(Double(next) / Double(max(1, arrivals.count))) }
            }
        }
        return ModeRun(mode: mode, records: records, events: events)
    }

    private func leastLoaded(for model: String, engines: [SimEngine]) -> Int {
        var best = -1, bestLoad = Double.infinity
        for (i, n) in nodes.enumerated() where n.group.model == model {
            let u = max(Double(engines[i].load) / Double(max(1, engines[i].maxRunning)), engines[i].kvUsage)
            if u < bestLoad { best = i; bestLoad = u }
        }
        return best
    }

    // MARK: wwwserve: the product's node machines

    /// The scenario's genesis: 1,000 credits to every node, price 1 credit, no duels.
    var genesis: Genesis {
        var g = [NodeID: Credits]()
        for n in nodes { g[SimSigner(index: n.index).nodeID] = Credits(credits: 1000) }
        return Genesis(networkID: "sim-\(scenario.name)", parameters: GenesisParameters(duelProbability: 0), grants: g,
                       seeds: [SimAddress.of(0)])
    }

    func nodeConfig(_ n: ScenarioNode) -> SimNodeConfig {
        let p = n.group.policy
        let policy = SchedulingPolicy(offloadFrequency: p.offloadFrequency, acceptFrequency: p.acceptFrequency, loadTarget: p.loadTarget)
        var c = SimNodeConfig.provider(model: n.group.model, capacity: n.group.capacity,
                                       stake: Credits(micro: Int64((p.stake * 1e6).rounded())), policy: policy)
        c.engine = profiles[n.index]
        c.period = .milliseconds(Int64(scenario.gossipPeriodMs))
        c.machine.queueTimeout = .milliseconds(Int64(scenario.requestTimeoutS * 1000))
        return c
    }

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
        for n in nodes {
            sim.addNode(index: n.index, genesis: g, seeds: n.index == 0 ? [] : [SimAddress.of(0)], config: nodeConfig(n),
                        after: .milliseconds(Int64(n.index % 1000) * 3))
        }
        let start = sim.now + .nanoseconds(Int64(scenario.warmupS * 1e9))
        var ids: [Int: RequestID] = [:]
        for (k, a) in arrivals.enumerated() {
            sim.run(until: start + .nanoseconds(Int64((a.at * 1e9).rounded())))
            ids[a.index] = sim.submit(at: a.node, model: nodes[a.node].group.model, job: a.job,
                                      timeout: .nanoseconds(Int64(scenario.requestTimeoutS * 1e9)))
            if k % 256 == 0 { progress?(Double(k) / Double(max(1, arrivals.count))) }
        }
        sim.run(until: start + .nanoseconds(Int64(((arrivals.last?.at ?? 0) + scenario.requestTimeoutS + 5) * 1e9)))
        var records: [RequestRecord] = []
        for a in arrivals {
            var r = RequestRecord(mode: .wwwserve, index: a.index, node: a.node, arrival: a.at, promptTokens: a.job.promptTokens,
                                  outputTokens: a.job.outputTokens)
            if let id = ids[a.index], let res = sim.nodes[a.node].process.results[id] {
                let arrival = res.arrival
                r.ttft = res.committedAt.map { ($0 - arrival).seconds }
                if res.isComplete, let f = res.finishedAt { r.latency = (f - arrival).seconds }
                if let f = res.failure { r.failure = "\(f)" } else if res.finishedAt == nil { r.failure = "unfinished" }
                r.executor = res.executor.map { id in nodes.firstIndex { SimSigner(index: $0.index).nodeID == id } ?? -1 } ?? a.node
            } else {
                r.failure = "node down"
            }
            records.append(r)
        }
        let l0 = sim.nodes[0].process.ledger
        let balances = nodes.map { Double(l0.balance(of: SimSigner(index: $0.index).nodeID).micro) / 1e6 }
        let conserved = sim.nodes.allSatisfy { $0.process.ledger.totalBalance == g.totalSupply }
        return ModeRun(mode: .wwwserve, records: records, balances: balances, conservation: conserved, events: sim.eventsProcessed)
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
