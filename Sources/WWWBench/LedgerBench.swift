import ArgumentParser
import Foundation
import WWWCore
import WWWSim

/// `wwwserve bench ledger`: resident memory against ledger size. Appends job receipts to
/// the product's `Ledger` (100 nodes paying each other, simulator crypto so that signing
/// does not dominate the run) and samples the process's RSS at each size. The baseline,
/// measured in the same run, is the events' own encoded size (JSON, as stored and sent):
/// the ratio says how many bytes of memory each byte of ledger costs.
struct LedgerBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ledger", abstract: "RSS against ledger size (events held in memory).")

    @Option(help: "Comma-separated ledger sizes (events) to sample at.")
    var sizes = "0,10000,100000,1000000"
    @Option(help: "Nodes in the genesis (requesters and executors alike).")
    var nodes = 100
    @Flag(help: "Print one JSON object instead of the table.")
    var json = false

    func run() throws {
        let points = sizes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }.sorted()
        guard !points.isEmpty, points.allSatisfy({ (0...20_000_000).contains($0) }), (2...10_000).contains(nodes) else {
            throw ValidationError("--sizes: 0...20000000 each; --nodes: 2...10000")
        }
        let crypto = SimCrypto()
        let signers = (0..<nodes).map { SimSigner(index: $0) }
        var grants: [NodeID: Credits] = [:]
        for s in signers { grants[s.nodeID] = Credits(credits: 1_000_000_000) }
        var ledger = Ledger(genesis: Genesis(networkID: "bench", grants: grants, seeds: []), crypto: crypto)
        let price = ledger.genesis.parameters.pricePerJob
        var now = Instant(seconds: 1_700_000_000)
        var appended = 0, encodedBytes = 0
        let encoder = JSONEncoder()
        var rows: [(events: Int, rssMiB: Double, encodedMiB: Double)] = []
        let rss0 = Self.rssBytes()
        for target in points {
            while appended < target {
                let requester = signers[appended % nodes], executor = signers[(appended + 1) % nodes]
                let seq = UInt64(appended / nodes + 1)
                let auth = PaymentAuthorization(job: JobID.derive(requester: requester.nodeID, sequence: seq, crypto: crypto),
                                                requester: requester.nodeID, executor: executor.nodeID, model: "m",
                                                price: price, expiresAt: now + .seconds(3600))
                let body = LedgerEventBody.jobReceipt(JobReceipt(authorization: Signed(auth, by: requester),
                                                                 responseHash: crypto.sha256(Array("r\(appended)".utf8)),
                                                                 inputTokens: 100, outputTokens: 200))
                now = now + .milliseconds(1)
                guard case .persist(let events)? = ledger.append(body, now: now, signer: executor).first, let e = events.first else {
                    throw ValidationError("bench: the ledger refused event \(appended)")
                }
                if appended % 64 == 0 { encodedBytes += 64 * ((try? encoder.encode(e).count) ?? 0) }
                appended += 1
            }
            rows.append((appended, Double(Self.rssBytes() - rss0) / 1_048_576, Double(encodedBytes) / 1_048_576))
        }
        report(rows, held: ledger.heldCount)
    }

    func report(_ rows: [(events: Int, rssMiB: Double, encodedMiB: Double)], held: Int) {
        let last = rows.last!
        let perEvent = last.events > 0 ? last.rssMiB * 1_048_576 / Double(last.events) : 0
        let ratio = last.encodedMiB > 0 ? last.rssMiB / last.encodedMiB : 0
        if json {
            let out: [String: Any] = [
                "benchmark": "ledger", "build": buildConfiguration, "nodes": nodes, "held": held,
                "rows": rows.map { ["events": $0.events, "rss_growth_mib": $0.rssMiB, "encoded_mib": $0.encodedMiB] },
                "rss_bytes_per_event": perEvent, "rss_over_encoded": ratio]
            if let d = try? JSONSerialization.data(withJSONObject: out, options: [.sortedKeys, .prettyPrinted]) {
                print(String(decoding: d, as: UTF8.self))
            }
            return
        }
        print("bench ledger (\(buildConfiguration) build, \(nodes) nodes, job receipts)")
        print("  events      RSS growth (MiB)   encoded events (MiB, baseline)   ratio")
        for r in rows {
            let ratio = r.encodedMiB > 0 ? String(format: "%.2f", r.rssMiB / r.encodedMiB) : "-"
            print(String(format: "  %-10d  %16.1f   %30.1f   %@", r.events, r.rssMiB, r.encodedMiB, ratio))
        }
        print(String(format: "  %.0f bytes of RSS per event at %d events (%.2f × the encoded size)", perEvent, last.events, ratio))
    }

    /// Resident set size of this process, from /proc/self/statm (0 where unavailable).
    static func rssBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8),
              let pages = text.split(separator: " ").dropFirst().first.flatMap({ Int($0) }) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }
}
