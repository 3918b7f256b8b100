import ArgumentParser
import Foundation
import WWWCore
import WWWNode
import WWWSim
import WWWStore

/// `wwwserve bench ledger`: resident memory against ledger size, on the node's own path —
/// the product's `Ledger` appending job receipts (100 nodes paying each other, simulator
/// crypto so that signing does not dominate the run) and the node's SQLite `EventStore`
/// holding them. Samples the process's RSS at each size, then restores a ledger from the
/// store page by page, as a restarting node does, in a child process (so its RSS is that
/// of start-up alone). The baseline, measured in the same run, is the events' own encoded
/// size (JSON, as stored and sent): what a ledger that keeps its events in memory holds at
/// least. The ratio says how many bytes of memory each byte of ledger costs.
struct LedgerBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger", abstract: "RSS against ledger size (events in SQLite, state in memory).")

    @Option(help: "Comma-separated ledger sizes (events) to sample at.")
    var sizes = "0,10000,100000,1000000"
    @Option(help: "Nodes in the genesis (requesters and executors alike).")
    var nodes = 100
    @Option(help: "Network-wide events per second of simulated time (10 req/s is 864,000 events a day).")
    var rate = 10.0
    @Option(help: "Seconds a payment authorization lives (the node's default request_timeout_s).")
    var authorizationTTL = 300.0
    @Option(help: "Directory for the SQLite store (default: a fresh temporary one, removed after).")
    var dataDir: String?
    @Flag(help: "Print one JSON object instead of the table.")
    var json = false
    @Option(help: .hidden)
    var restoreFrom: String?

    func run() throws {
        if let restoreFrom { return try restoreChild(restoreFrom) }
        let points = sizes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }.sorted()
        guard !points.isEmpty, points.allSatisfy({ (0...20_000_000).contains($0) }), (2...10_000).contains(nodes),
              rate > 0, rate <= 1e6, authorizationTTL > 0, authorizationTTL <= 86400 * 365 else {
            throw ValidationError("--sizes: 0...20000000 each; --nodes: 2...10000; --rate: (0, 1e6]; --authorization-ttl: (0, 1 year]")
        }
        let dir = dataDir ?? NSTemporaryDirectory() + "wwwserve-bench-ledger-\(getpid())"
        defer { if dataDir == nil { try? FileManager.default.removeItem(atPath: dir) } }
        let store = try EventStore<LedgerEvent>(dataDirectory: dir)
        let genesis = Self.genesis(nodes: nodes)
        var ledger = Ledger(genesis: genesis, crypto: SimCrypto())
        var gen = Generator(nodes: nodes, genesis: genesis, rate: rate, ttl: authorizationTTL)
        var rows: [Row] = []
        let rss0 = Self.rssBytes()
        let t0 = Date()
        for target in points {
            try gen.append(upTo: target, ledger: &ledger, store: store)
            rows.append(Row(events: gen.appended, rssMiB: Double(Self.rssBytes() - rss0) / 1_048_576,
                            encodedMiB: Double(gen.encodedBytes) / 1_048_576, liveKeys: ledger.liveEffectCount))
        }
        let appendSeconds = Date().timeIntervalSince(t0)
        let restore = try restoreInChild(dir)
        report(rows, appendSeconds: appendSeconds, dbMiB: Self.fileMiB(store.path), restore: restore, ledger: ledger)
    }

    struct Row {
        var events: Int
        var rssMiB: Double
        var encodedMiB: Double
        var liveKeys: Int
    }

    struct RestoreResult: Codable {
        var events: Int
        var rssMiB: Double
        var baselineRSSMiB: Double
        var seconds: Double
        var balancesMatch: Bool?
    }

    /// Makes job receipts: requester i pays executor i+1; time advances at `rate`.
    struct Generator {
        let signers: [SimSigner]
        let crypto = SimCrypto()
        let price: Credits
        let step: Duration
        let ttl: Duration
        var now = Instant(seconds: 1_700_000_000)
        var appended = 0
        var encodedBytes = 0
        var pending: [LedgerEvent] = []
        let encoder = JSONEncoder()

        init(nodes: Int, genesis: Genesis, rate: Double, ttl: Double) {
            signers = (0..<nodes).map { SimSigner(index: $0) }
            price = genesis.parameters.pricePerJob
            step = .nanoseconds(Int64(1e9 / rate))
            self.ttl = .nanoseconds(Int64(ttl * 1e9))
        }

        mutating func append(upTo target: Int, ledger: inout Ledger, store: EventStore<LedgerEvent>) throws {
            while appended < target {
                let n = signers.count
                let requester = signers[appended % n], executor = signers[(appended + 1) % n]
                let auth = PaymentAuthorization(
                    job: JobID.derive(requester: requester.nodeID, sequence: UInt64(appended / n + 1), crypto: crypto),
                    requester: requester.nodeID, executor: executor.nodeID, model: "m", price: price, expiresAt: now + ttl)
                let body = LedgerEventBody.jobReceipt(JobReceipt(authorization: Signed(auth, by: requester),
                                                                 responseHash: crypto.sha256(Array("r\(appended)".utf8)),
                                                                 inputTokens: 100, outputTokens: 200))
                now = now + step
                guard case .persist(let events)? = ledger.append(body, now: now, signer: executor).first else {
                    throw ValidationError("bench: the ledger refused event \(appended)")
                }
                pending += events
                if appended % 64 == 0, let e = events.first { encodedBytes += 64 * ((try? encoder.encode(e).count) ?? 0) }
                appended += 1
                // The node writes each event in its own transaction; the bench batches 1,000
                // (the same rows, far fewer fsyncs).
                if pending.count >= 1000 { try flush(store) }
            }
            try flush(store)
        }

        mutating func flush(_ store: EventStore<LedgerEvent>) throws {
            guard !pending.isEmpty else { return }
            try store.append(pending)
            pending = []
        }
    }

    static func genesis(nodes: Int) -> Genesis {
        var grants: [NodeID: Credits] = [:]
        for i in 0..<nodes { grants[SimSigner(index: i).nodeID] = Credits(credits: 1_000_000_000) }
        return Genesis(networkID: "bench", grants: grants, seeds: [])
    }

    /// Runs this command again with `--restore-from` and reads its JSON line.
    func restoreInChild(_ dir: String) throws -> RestoreResult {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CommandLine.arguments[0].hasPrefix("/") ? CommandLine.arguments[0]
                              : FileManager.default.currentDirectoryPath + "/" + CommandLine.arguments[0])
        p.arguments = ["bench", "ledger", "--nodes", "\(nodes)", "--restore-from", dir]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw ValidationError("bench: the restore child failed (\(p.terminationStatus))") }
        return try JSONDecoder().decode(RestoreResult.self, from: data)
    }

    /// The child: restores a ledger from the store as a starting node does; prints JSON.
    func restoreChild(_ dir: String) throws {
        let base = Self.rssBytes()
        let store = try EventStore<LedgerEvent>(dataDirectory: dir)
        let t0 = Date()
        let (ledger, summary, _) = try store.restoreLedger(genesis: Self.genesis(nodes: nodes), crypto: SimCrypto(),
                                                        config: LedgerConfig())
        let r = RestoreResult(events: summary.restored, rssMiB: Double(Self.rssBytes() - base) / 1_048_576,
                              baselineRSSMiB: Double(base) / 1_048_576, seconds: Date().timeIntervalSince(t0),
                              balancesMatch: ledger.totalBalance == ledger.genesis.totalSupply)
        print(String(decoding: try JSONEncoder().encode(r), as: UTF8.self))
    }

    func report(_ rows: [Row], appendSeconds: Double, dbMiB: Double, restore: RestoreResult, ledger: Ledger) {
        let last = rows.last!
        let perEvent = last.events > 0 ? last.rssMiB * 1_048_576 / Double(last.events) : 0
        let ratio = last.encodedMiB > 0 ? last.rssMiB / last.encodedMiB : 0
        if json {
            let out: [String: Any] = [
                "benchmark": "ledger", "build": buildConfiguration, "nodes": nodes, "rate": rate, "chained": ledger.chainedCount,
                "rows": rows.map { ["events": $0.events, "rss_growth_mib": $0.rssMiB, "encoded_mib": $0.encodedMiB,
                                    "live_effect_keys": $0.liveKeys] },
                "rss_bytes_per_event": perEvent, "rss_over_encoded": ratio, "append_seconds": appendSeconds,
                "sqlite_mib": dbMiB, "restore_events": restore.events, "restore_rss_growth_mib": restore.rssMiB,
                "restore_seconds": restore.seconds]
            if let d = try? JSONSerialization.data(withJSONObject: out, options: [.sortedKeys, .prettyPrinted]) {
                print(String(decoding: d, as: UTF8.self))
            }
            return
        }
        print("bench ledger (\(buildConfiguration) build, \(nodes) nodes, job receipts at \(rate) events/s, events in SQLite)")
        print("  events      RSS growth (MiB)   encoded events (MiB, baseline)   ratio   live effect keys")
        for r in rows {
            let ratio = r.encodedMiB > 0 ? String(format: "%.3f", r.rssMiB / r.encodedMiB) : "-"
            print(String(format: "  %-10d  %16.1f   %30.1f   %5@   %d", r.events, r.rssMiB, r.encodedMiB, ratio, r.liveKeys))
        }
        let firstNonZero = rows.first { $0.events > 0 }
        if let f = firstNonZero, f.events < last.events {
            let marginal = (last.rssMiB - f.rssMiB) * 1_048_576 / Double(last.events - f.events)
            print(String(format: "  marginal RSS from %d to %d events: %.1f bytes per event (growth %.1f → %.1f MiB)",
                         f.events, last.events, marginal, f.rssMiB, last.rssMiB))
        }
        print(String(format: "  RSS growth at %d events: %.1f MiB, %.3f × the encoded size; appended in %.1f s",
                     last.events, last.rssMiB, ratio, appendSeconds))
        print(String(format: "  SQLite files (database and WAL): %.1f MiB", dbMiB))
        print(String(format: "  restart: restored %d events page by page in %.1f s; RSS growth %.1f MiB (process base %.1f MiB)",
                     restore.events, restore.seconds, restore.rssMiB, restore.baselineRSSMiB))
    }

    static func fileMiB(_ path: String) -> Double {
        let size = [path, path + "-wal"].compactMap { try? FileManager.default.attributesOfItem(atPath: $0)[.size] as? Int }.reduce(0, +)
        return Double(size) / 1_048_576
    }

    /// Resident set size of this process, from /proc/self/statm (0 where unavailable).
    static func rssBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
              let pages = text.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
