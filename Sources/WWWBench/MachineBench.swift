import ArgumentParser
import Foundation
import WWWCore
import WWWCrypto

/// `wwwserve bench machine`: the node machine's own cost per request, with no I/O at all —
/// a local request (arrival → first content → end) and an offloaded one (arrival → offer →
/// signed answer → first content → end, on a requester that knows `--peers` providers).
/// Reports µs per request; the same loop without the machine's work is the baseline.
struct MachineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "machine",
        abstract: "CPU cost of the node machine per request (no I/O).")

    @Option(help: "Requests per kind.")
    var requests: Int = 100_000
    @Option(help: "Providers the requester knows (executor choice sorts them).")
    var peers: Int = 100
    @Flag(help: "Print one JSON object instead of the table.")
    var json = false

    func validate() throws {
        guard (1...10_000_000).contains(requests) else { throw ValidationError("--requests must be in 1...10000000") }
        guard (1...10_000).contains(peers) else { throw ValidationError("--peers must be in 1...10000") }
    }

    func run() throws {
        let local = Self.measure(requests) { Self.localCycle(requests: $0) }
        let offload = Self.measure(min(requests, 20_000)) { Self.offloadCycle(requests: $0, peers: peers) }
        if json {
            let out: [String: Any] = ["benchmark": "machine", "build": buildConfiguration, "local_us_per_request": local,
                                      "offload_us_per_request": offload, "peers": peers]
            print(String(decoding: try JSONSerialization.data(withJSONObject: out, options: [.sortedKeys, .prettyPrinted]), as: UTF8.self))
        } else {
            print("bench machine (\(buildConfiguration) build)")
            print(String(format: "  local request:     %8.2f µs of machine work per request", local))
            print(String(format: "  offloaded request: %8.2f µs per request (%d peers known, one Ed25519 sign + verify included)", offload, peers))
        }
    }

    static func measure(_ n: Int, _ body: (Int) -> Void) -> Double {
        body(max(1, n / 10))   // warm-up
        let start = ContinuousClock.now
        body(n)
        let d = ContinuousClock.now - start
        return Double(d.components.seconds) * 1e6 / Double(n) + Double(d.components.attoseconds) / 1e12 / Double(n)
    }

    static func localCycle(requests n: Int) {
        let backend = LocalBackendConfig(name: "b", models: [ModelDescriptor(name: "m")], capacity: 8)
        var m = NodeMachine(config: NodeMachineConfig(backends: [backend]), network: nil, seed: 1)
        var now = Instant(seconds: 1_700_000_000)
        _ = m.handle(.start, now: now)
        var sink = 0
        for i in 0..<n {
            let r = RequestID(UInt64(i + 1))
            now = now + .microseconds(10)
            let a = m.handle(.userRequest(r, UserRequestSpec(model: "m", deadline: now + .seconds(300))), now: now)
            guard case .runInference(let s, _)? = a.last else { fatalError("bench: the request did not start") }
            sink &+= m.handle(.stream(s, .firstContent), now: now).count
            sink &+= m.handle(.stream(s, .finished(StreamOutcome(responseHash: [], usage: nil))), now: now).count
        }
        precondition(sink > 0 && m.activeRequests == 0)
    }

    static func offloadCycle(requests n: Int, peers: Int) {
        let crypto = SwiftCryptoProvider()
        let me = NodeKey.generate()
        let keys = (0..<peers).map { _ in NodeKey.generate() }
        var grants: [NodeID: Credits] = [me.nodeID: Credits(credits: 1_000_000_000)]
        for k in keys { grants[k.nodeID] = Credits(credits: 100) }
        let genesis = Genesis(networkID: "bench", grants: grants)
        var now = Instant(seconds: 1_700_000_000)
        var m = NodeMachine(config: NodeMachineConfig(), network: NetworkSetup(genesis: genesis, signer: me, crypto: crypto,
                                                                                 address: "127.0.0.1:1"), seed: 1)
        _ = m.handle(.start, now: now)
        let records = keys.enumerated().map { i, k in
            MembershipRumor.record(Signed(MemberRecord(node: k.nodeID, address: "127.0.0.1:\(2 + i)", incarnation: 1, status: .alive,
                                                       models: [ModelDescriptor(name: "m")], capacity: 8, stake: Credits(credits: 10),
                                                       updatedAt: now), by: k))
        }
        for chunk in stride(from: 0, to: records.count, by: 16) {
            let msg = MembershipMessage(.states(Array(records[chunk..<min(records.count, chunk + 16)])))
            _ = m.handle(.peerMessage(.membership(msg), from: keys[0].nodeID, fromAddress: "127.0.0.1:2"), now: now)
        }
        let byID = Dictionary(uniqueKeysWithValues: keys.map { ($0.nodeID, $0) })
        for i in 0..<n {
            let r = RequestID(UInt64(i + 1))
            now = now + .microseconds(10)
            let a = m.handle(.userRequest(r, UserRequestSpec(model: "m", deadline: now + .seconds(300))), now: now)
            guard let (s, to, offer) = a.lazy.compactMap({ d -> (StreamID, NodeID, OfferMessage)? in
                if case .openOffer(let s, let to, _, let o, _) = d { (s, to, o) } else { nil }
            }).first, let key = byID[to] else { fatalError("bench: no offer was made") }
            let answer = Signed(OfferAnswer(job: offer.job, requester: me.nodeID, executor: to, reason: nil, answeredAt: now), by: key)
            _ = m.handle(.peerMessage(.offerAnswer(answer), from: to, fromAddress: "127.0.0.1:2"), now: now)
            _ = m.handle(.stream(s, .firstContent), now: now)
            _ = m.handle(.stream(s, .finished(StreamOutcome(responseHash: [], usage: nil))), now: now)
        }
        precondition(m.activeRequests == 0)
    }
}
