import AsyncHTTPClient
import Foundation
import NIOCore
import WWWNode

/// `wwwserve demo --duels`: waits for the duels to end and reports them.
extension DemoCluster {
    /// The counter samples of `name` on `url`'s `/metrics`, by their `outcome` label.
    func counters(_ name: String, url: String, client: HTTPClient) async -> [String: Double] {
        guard let resp = try? await client.execute(HTTPClientRequest(url: url + "/metrics"), timeout: .seconds(5)),
              let body = try? await resp.body.collect(upTo: 8 << 20) else { return [:] }
        var out: [String: Double] = [:]
        for line in String(buffer: body).split(separator: "\n") where line.hasPrefix(name + "{") {
            guard let open = line.range(of: "outcome=\""), let close = line[open.upperBound...].firstIndex(of: "\""),
                  let value = line.split(separator: " ").last.flatMap({ Double($0) }) else { continue }
            out[String(line[open.upperBound..<close]), default: 0] += value
        }
        return out
    }

    private var requesterURL: String { allURLs[specs.firstIndex(where: \.runsDuels) ?? 0] }

    /// Waits (at most 90 s) until every duel the requester started is settled or abandoned.
    func waitForDuels(client: HTTPClient) async {
        let deadline = ContinuousClock.now + .seconds(90)
        var announced = false
        while ContinuousClock.now < deadline {
            let d = await counters("wwwserve_duels_total", url: requesterURL, client: client)
            let over = d.filter { $0.key.hasPrefix("settled") || $0.key.hasPrefix("abandoned") }.values.reduce(0, +)
            if over >= (d["started"] ?? 0) { return }
            if !announced {
                print("waiting for \(Int((d["started"] ?? 0) - over)) duel(s) to be judged…")
                announced = true
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    func duelReport(client: HTTPClient, credits: [CreditsView]) async -> DemoDuelReport {
        let duels = await counters("wwwserve_duels_total", url: requesterURL, client: client)
        var verdicts: [String: Double] = [:]
        for url in allURLs {
            for (k, v) in await counters("wwwserve_judge_verdicts_total", url: url, client: client) { verdicts[k, default: 0] += v }
        }
        let view = credits.first { v in specs.firstIndex(where: \.runsDuels).map { v.me == ids[$0].hex } ?? false } ?? credits.first
        // Executors only (the nodes with an engine).
        let rows = ids.enumerated().compactMap { i, id -> (String, CreditsView.Row)? in
            guard specs[i].capacity > 0 else { return nil }
            return view?.rows.first { $0.node == id.hex }.map { (specs[i].name, $0) }
        }
        return DemoDuelReport(duels: duels, verdicts: verdicts, rows: rows)
    }
}

/// The duel part of the demo's summary.
struct DemoDuelReport {
    let duels: [String: Double]
    let verdicts: [String: Double]
    /// Executors' rows (name, credits row) in the requester's view.
    let rows: [(String, CreditsView.Row)]

    func print() {
        func n(_ d: [String: Double], _ k: String) -> Int { Int(d[k] ?? 0) }
        let abandonedBy = duels.filter { $0.key.hasPrefix("abandoned_") }.sorted { $0.key < $1.key }
        let abandoned = Int(abandonedBy.map(\.value).reduce(0, +))
        let reasons = abandonedBy.map { "\($0.key.dropFirst("abandoned_".count)) \(Int($0.value))" }.joined(separator: ", ")
        Swift.print("")
        Swift.print("== duels (the requester's metrics; judges: reference on MT-Bench references, lexical fallback) ==")
        Swift.print("duels run:         \(n(duels, "started")) started, \(n(duels, "settled_first") + n(duels, "settled_second") + n(duels, "settled_tie") + n(duels, "settled_no_majority")) settled "
                    + "(first \(n(duels, "settled_first")), second \(n(duels, "settled_second")), tie \(n(duels, "settled_tie")), no majority \(n(duels, "settled_no_majority"))), "
                    + "\(abandoned) abandoned" + (abandoned > 0 ? " (" + reasons + ")" : ""))
        let declined = verdicts.filter { $0.key.hasPrefix("declined") }.values.reduce(0, +)
        Swift.print("verdicts:          first \(n(verdicts, "first")), second \(n(verdicts, "second")), tie \(n(verdicts, "tie")); declined \(Int(declined))")
        Swift.print("win rate (W/L/T):  " + rows.map { name, r in
            let rate = r.duelWinRate.map { String(format: "%.2f", $0) } ?? "-"
            return "\(name) \(rate) (\(r.duelWins ?? 0)/\(r.duelLosses ?? 0)/\(r.duelTies ?? 0))"
        }.joined(separator: ", "))
    }
}
