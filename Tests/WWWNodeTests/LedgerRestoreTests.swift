import Foundation
import GRDB
import Testing
import WWWCore
import WWWCrypto
@testable import WWWNode
import WWWStore

@Suite("Node: restoring the ledger from a damaged store")
struct LedgerRestoreTests {
    @Test("a tampered row and an undecodable row are deleted at start-up, so peers can store the genuine events again")
    func damagedRowsAreDeleted() throws {
        let dir = NSTemporaryDirectory() + "wwwnode-restore-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let crypto = SwiftCryptoProvider()
        let requester = NodeKey.generate(), executor = NodeKey.generate()
        let genesis = Genesis(networkID: "t", grants: [requester.nodeID: Credits(credits: 100), executor.nodeID: Credits(credits: 100)])
        var ledger = Ledger(genesis: genesis, crypto: crypto)
        let t0 = Instant(seconds: 1_000_000)
        var events: [LedgerEvent] = []
        for seq in UInt64(1)...3 {
            let auth = PaymentAuthorization(job: JobID.derive(requester: requester.nodeID, sequence: seq, crypto: crypto),
                                            requester: requester.nodeID, executor: executor.nodeID, model: "m",
                                            price: Credits(credits: 1), expiresAt: t0 + .seconds(600))
            let body = LedgerEventBody.jobReceipt(JobReceipt(authorization: Signed(auth, by: requester),
                                                             responseHash: crypto.sha256(Array("r\(seq)".utf8)),
                                                             inputTokens: 1, outputTokens: 1))
            guard case .persist(let es)? = ledger.append(body, now: t0 + .seconds(Int64(seq)), signer: executor).first else {
                Issue.record("append refused"); return
            }
            events += es
        }
        let store = try EventStore<LedgerEvent>(dataDirectory: dir)
        try store.append(events)
        let db = try DatabaseQueue(path: store.path)
        try db.write { db in
            let body = try String.fetchOne(db, sql: "SELECT body FROM events WHERE id = ?", arguments: [events[1].idHex])!
            try db.execute(sql: "UPDATE events SET body = ? WHERE id = ?",
                           arguments: [Data(body.replacingOccurrences(of: "\"inputTokens\":1", with: "\"inputTokens\":9").utf8), events[1].idHex])
            try db.execute(sql: "UPDATE events SET body = ? WHERE id = ?", arguments: [Data("garbage{".utf8), events[2].idHex])
        }
        let (restored, summary, damaged) = try store.restoreLedger(genesis: genesis, crypto: crypto, config: LedgerConfig())
        #expect(damaged == 2 && summary.corrupt == [events[1].id])
        #expect(restored.highWater(of: executor.nodeID) == 1)
        #expect(try store.count() == 1)
        // A peer's copies are stored again, and the next start restores all three.
        #expect(try store.append([events[1], events[2]]).inserted == 2)
        let again = try store.restoreLedger(genesis: genesis, crypto: crypto, config: LedgerConfig())
        #expect(again.damaged == 0 && again.ledger.highWater(of: executor.nodeID) == 3 && again.ledger.balances == ledger.balances)
    }
}

@Suite("Node: a data directory belongs to one network")
struct DataDirGenesisTests {
    @Test("the first start records the genesis; another genesis on the same data directory is refused")
    func anotherGenesisIsRefused() throws {
        let dir = NSTemporaryDirectory() + "wwwnode-genesis-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let crypto = SwiftCryptoProvider()
        let store = try EventStore<LedgerEvent>(dataDirectory: dir)
        let a = Genesis(networkID: "a", grants: [NodeKey.generate().nodeID: Credits(credits: 1)])
        let b = Genesis(networkID: "b", grants: a.grants)
        try PeerContext.checkGenesis(a, store: store, crypto: crypto, dbPath: store.path)
        try PeerContext.checkGenesis(a, store: store, crypto: crypto, dbPath: store.path)
        #expect(throws: ConfigError.self) { try PeerContext.checkGenesis(b, store: store, crypto: crypto, dbPath: store.path) }
    }

    @Test("a genesis with a seed that is not host:port has a problem")
    func badSeed() {
        for good in ["127.0.0.1:7070", "localhost:80", "node-1.example.org:65535", "[::1]:8080"] {
            #expect(Genesis(networkID: "n", grants: [:], seeds: [good]).problems.isEmpty, "\(good)")
        }
        for bad in ["nohost", ":7070", "h:0", "h:99999", "h:x", "http://10.0.0.1:8080", "a b:80", "ftp://x:80", "user@h:80",
                    "::1:8080", "x:+80", "10.0.0.1:08080", "[]:80", "[::1:80"] {
            #expect(!Genesis(networkID: "n", grants: [:], seeds: [bad]).problems.isEmpty, "\(bad)")
        }
    }
}
