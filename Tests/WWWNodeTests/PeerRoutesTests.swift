import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing
import WWWAPI
import WWWCore
import WWWCrypto
@testable import WWWNode

/// A network node (no backends) in a temp directory, with a genesis naming it and a peer.
struct NetworkFixture {
    let dir: String
    let config: NodeConfig
    let peer = try! NodeKey(rawRepresentation: Array(repeating: 7, count: 32))
    let me: NodeKey

    init() throws {
        dir = NSTemporaryDirectory() + "wwwserve-peer-test-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        me = try NodeKey.loadOrCreate(path: dir + "/node.key")
        let genesis = Genesis(networkID: "test", grants: [me.nodeID: Credits(credits: 10), peer.nodeID: Credits(credits: 10)], seeds: [])
        try JSONEncoder().encode(genesis).write(to: URL(fileURLWithPath: dir + "/genesis.json"))
        var cfg = NodeConfig(network: NetworkSection(genesis: dir + "/genesis.json"))
        cfg.node.dataDir = dir
        config = try NodeConfig.parse(String(decoding: try JSONEncoder().encode(cfg.networkOnlyYAML), as: UTF8.self))
    }

    func app() throws -> (some ApplicationProtocol, NodeMetrics) {
        let metrics = NodeMetrics()
        let pool = BackendPool(entries: [])
        let runtime = try NodeRuntime(config: config, pool: pool, metrics: metrics, logger: Logger(label: "test"))
        runtime.start()
        let http = NodeHTTP(config: config, pool: pool, metrics: metrics, nodeName: "n", logger: Logger(label: "test"), runtime: runtime)
        return (Application(router: http.router()), metrics)
    }

    /// A signed one-way ledger sync request from `peer` (its listen address is the discard
    /// port on loopback, so the machine's reply goes nowhere).
    func envelope(_ kind: String = PeerMessageKind.ledger.rawValue, to: NodeID?, sentAt: Instant = wallClockNow(), signer: NodeKey? = nil, nonce: [UInt8]? = nil) throws -> ByteBuffer {
        let body = PeerMessageBody(fromAddress: "127.0.0.1:9", message: .ledgerSync(LedgerSyncMessage(role: .request, digest: [:])))
        let env = try Envelope.seal(kind: kind, message: body, to: to, sentAt: sentAt, signer: signer ?? peer, nonce: nonce ?? Envelope.randomNonce())
        return ByteBuffer(data: try JSONEncoder().encode(env))
    }
}

extension NodeConfig {
    /// The config as a plain dictionary YAML can parse (JSON is YAML).
    var networkOnlyYAML: [String: [String: String]] {
        ["node": ["data_dir": node.dataDir], "network": ["genesis": network!.genesis]]
    }
}

func errorCodeOf(_ buffer: ByteBuffer) -> String? {
    guard let v = try? JSONDecoder().decode(JSONValue.self, from: Data(buffer: buffer)),
          case .object(let o) = v, case .object(let e)? = o["error"], case .string(let c)? = e["code"] else { return nil }
    return c
}

@Suite("peer routes reject bad envelopes and count them")
struct PeerRoutesTests {
    @Test func acceptsAValidLedgerSyncThenRejectsItsReplay() async throws {
        let f = try NetworkFixture()
        let (app, metrics) = try f.app()
        let body = try f.envelope(to: f.me.nodeID)
        try await app.test(.router) { client in
            try await client.execute(uri: "/p2p/v1/message", method: .post, body: body) { r in
                #expect(r.status == .accepted)
            }
            try await client.execute(uri: "/p2p/v1/message", method: .post, body: body) { r in
                #expect(r.status == .unauthorized)
                #expect(errorCodeOf(r.body) == "envelope_replayedNonce")
            }
        }
        let text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(text.contains(#"wwwserve_peer_messages_total{kind="ledger",outcome="accepted"} 1"#))
        #expect(text.contains(#"wwwserve_peer_messages_total{kind="ledger",outcome="rejected_replayedNonce"} 1"#))
    }

    @Test func rejectsWrongRecipientStaleAndForged() async throws {
        let f = try NetworkFixture()
        let (app, metrics) = try f.app()
        let other = try NodeKey(rawRepresentation: Array(repeating: 9, count: 32))
        try await app.test(.router) { client in
            try await client.execute(uri: "/p2p/v1/message", method: .post, body: try f.envelope(to: other.nodeID)) { r in
                #expect(r.status == .unauthorized)
                #expect(errorCodeOf(r.body) == "envelope_wrongRecipient")
            }
            try await client.execute(uri: "/p2p/v1/message", method: .post, body: try f.envelope(to: f.me.nodeID, sentAt: wallClockNow() - .seconds(600))) { r in
                #expect(errorCodeOf(r.body) == "envelope_stale")
            }
            // Tamper with the body after signing.
            var env = try JSONDecoder().decode(Envelope.self, from: Data(buffer: try f.envelope(to: f.me.nodeID)))
            env = Envelope(from: env.from, to: env.to, sentAt: env.sentAt, nonce: env.nonce, kind: env.kind, body: env.body + " ", signature: env.signature)
            try await client.execute(uri: "/p2p/v1/message", method: .post, body: ByteBuffer(data: try JSONEncoder().encode(env))) { r in
                #expect(errorCodeOf(r.body) == "envelope_badSignature")
            }
            // The right envelope on the wrong route.
            try await client.execute(uri: "/p2p/v1/offer", method: .post, body: try f.envelope(to: f.me.nodeID)) { r in
                #expect(r.status == .badRequest)
                #expect(errorCodeOf(r.body) == "wrong_kind")
            }
            try await client.execute(uri: "/p2p/v1/message", method: .post, body: ByteBuffer(string: "{nope")) { r in
                #expect(r.status == .badRequest)
                #expect(errorCodeOf(r.body) == "invalid_envelope")
            }
        }
        let text = String(decoding: metrics.render(), as: UTF8.self)
        for reason in ["wrongRecipient", "stale", "badSignature"] {
            #expect(text.contains(#"wwwserve_peer_messages_total{kind="ledger",outcome="rejected_\#(reason)"} 1"#), "\(reason)")
        }
    }

    @Test func viewsShowThisNodeAndTheGenesis() async throws {
        let f = try NetworkFixture()
        let (app, _) = try f.app()
        try await app.test(.router) { client in
            try await client.execute(uri: "/p2p/v1/credits", method: .get) { r in
                let v = try JSONDecoder().decode(CreditsView.self, from: Data(buffer: r.body))
                #expect(v.me == f.me.nodeID.hex)
                #expect(v.totalSupply == "20.000000")
                #expect(v.rows.map(\.balanceMicro).reduce(0, +) == 20_000_000)
            }
            try await client.execute(uri: "/p2p/v1/peers", method: .get) { r in
                let peers = try JSONDecoder().decode([PeerView].self, from: Data(buffer: r.body))
                #expect(peers.map(\.node) == [f.me.nodeID.hex])
                #expect(peers.first?.isSelf == true)
            }
        }
    }

    @Test func policyConfigIsValidated() throws {
        let cfg = try NodeConfig.parse("""
        network: {genesis: g.json}
        policy: {offload_frequency: 0.25, accept_frequency: 0.5, stake: 12.5, load_target: 2}
        """)
        let p = try cfg.policy.schedulingPolicy()
        #expect(p.offloadFrequency == 0.25)
        #expect(p.loadTarget == 2)
        #expect(cfg.policy.declaredStake == Credits(micro: 12_500_000))
        #expect(throws: ConfigError.self) { try NodeConfig.parse("network: {genesis: g.json}\\npolicy: {accept_frequency: 1.5}") }
        #expect(throws: ConfigError.self) { try NodeConfig.parse("backends: []") }
    }
}
