import AsyncHTTPClient
import Foundation
import Logging
import WWWCore
import WWWCrypto
import WWWStore

/// A network node's identity and I/O: key, SQLite store, envelope verifier, peer client.
struct PeerContext: Sendable {
    let key: NodeKey
    let crypto: SwiftCryptoProvider
    let store: EventStore<LedgerEvent>
    let verifier: LockedEnvelopeVerifier
    let genesis: Genesis
    /// The address peers reach this node at.
    let advertise: String
    let client: HTTPClient
    /// Deadline of one one-way peer call.
    let peerTimeout: Duration
    /// Bounds the one-way messages being handled at once.
    let inbound = InboundGate(limit: InboundGate.defaultLimit)

    /// Opens the key, the genesis and the store, and builds the machine's network setup
    /// from what the store holds (events, incarnation, job sequence).
    static func open(config: NodeConfig, section: NetworkSection, logger: Logger) throws -> (PeerContext, NetworkSetup) {
        let genesis = try loadGenesis(section.genesis)
        let keyPath = section.keyFile ?? (config.node.dataDir as NSString).appendingPathComponent("node.key")
        let key = try NodeKey.loadOrCreate(path: keyPath)
        try FileManager.default.createDirectory(atPath: config.node.dataDir, withIntermediateDirectories: true)
        let dbPath = (config.node.dataDir as NSString).appendingPathComponent("ledger.sqlite")
        let store: EventStore<LedgerEvent>
        let crypto = SwiftCryptoProvider()
        let ledgerConfig = LedgerConfig()
        let restoredLedger: (ledger: Ledger, summary: LedgerRestoreSummary, damaged: Int)
        do {
            store = try EventStore<LedgerEvent>(dataDirectory: config.node.dataDir)
        } catch {
            throw ConfigError("cannot open the ledger database \(dbPath): \(error)")
        }
        try checkGenesis(genesis, store: store, crypto: crypto, dbPath: dbPath)
        do {
            restoredLedger = try store.restoreLedger(genesis: genesis, crypto: crypto, config: ledgerConfig)
        } catch {
            throw ConfigError("cannot open the ledger database \(dbPath): \(error). If it is damaged, move it away and restart: the node fetches the network's events from its peers (events only this node held are lost).")
        }
        if restoredLedger.damaged > 0 {
            logger.warning("deleted damaged ledger rows; peers will send the genuine events again",
                           metadata: ["rows": "\(restoredLedger.damaged)", "path": "\(dbPath)"])
        }
        let restored = NodeRestoreState(ledger: restoredLedger.ledger, summary: restoredLedger.summary, incarnation: try nextIncarnation(store: store),
                                        jobSequenceFloor: try jobSequenceFloor(store: store))
        let advertise = section.advertise ?? "\(config.node.host):\(config.node.port)"
        var mc = MembershipConfig()
        mc.protocolPeriod = .milliseconds(section.gossipPeriodMs)
        mc.probeTimeout = .milliseconds(max(section.gossipPeriodMs / 2, 50))
        mc.loadPublishInterval = .milliseconds(section.gossipPeriodMs * 2)
        // Re-contact a seed every 10 periods (at least 5 s): a seed that restarted alone,
        // knowing nobody, is found again within that time.
        mc.rejoinInterval = max(.seconds(5), .milliseconds(section.gossipPeriodMs * 10))
        let setup = NetworkSetup(
            genesis: genesis, signer: key, crypto: crypto, address: advertise,
            seeds: Array(Set(genesis.seeds + section.join)).sorted(), membership: mc, ledger: ledgerConfig,
            period: .milliseconds(section.gossipPeriodMs), declaredStake: config.policy.declaredStake, restored: restored)
        let ctx = PeerContext(key: key, crypto: crypto, store: store, verifier: LockedEnvelopeVerifier(EnvelopeVerifier(crypto: crypto)),
                              genesis: genesis, advertise: advertise, client: Self.peerClient,
                              peerTimeout: .milliseconds(section.peerTimeoutMs))
        return (ctx, setup)
    }

    /// The process-wide client for peer traffic (like `HTTPClient.shared`, it lives as long
    /// as the process, so no shutdown can be missed; every call has its own deadline). A
    /// refused connection fails at once (no retries until the connect timeout: a dead
    /// executor's port refuses, and the offer must move on now); a peer silent for two
    /// minutes mid-stream fails the stream (a stopped process).
    static let peerClient: HTTPClient = {
        var cfg = HTTPClient.Configuration()
        cfg.timeout = .init(connect: .seconds(2), read: .seconds(120))
        cfg.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 16)
        cfg.connectionPool.retryConnectionEstablishment = false
        cfg.decompression = .disabled
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: cfg)
    }()

    /// A data directory belongs to one network: the first start records the genesis hash;
    /// a later start with another genesis is refused (its events and sequence numbers belong
    /// to the other network).
    static func checkGenesis(_ genesis: Genesis, store: EventStore<LedgerEvent>, crypto: any CryptoProvider, dbPath: String) throws {
        let hash = Hex.encode(genesis.hash(crypto))
        if let recorded = try store.state("genesis_hash") {
            guard recorded == hash else {
                throw ConfigError("the data directory's ledger \(dbPath) belongs to another network (genesis \(recorded.prefix(16))…, this genesis \(hash.prefix(16))…, network '\(genesis.networkID)'); use another node.data_dir for this network")
            }
        } else {
            try store.setState("genesis_hash", hash)
        }
    }

    static func loadGenesis(_ path: String) throws -> Genesis {
        guard let data = FileManager.default.contents(atPath: path) else { throw ConfigError("cannot read genesis file '\(path)'") }
        let g: Genesis
        do { g = try JSONDecoder().decode(Genesis.self, from: data) } catch {
            throw ConfigError("genesis file '\(path)' is not valid: \(error)")
        }
        if let p = g.problems.first { throw ConfigError("genesis file '\(path)': \(p)") }
        return g
    }

    /// Incarnations only grow: max(stored + 1, wall-clock seconds), stored before use.
    static func nextIncarnation(store: EventStore<LedgerEvent>) throws -> UInt64 {
        let stored = UInt64(try store.state("incarnation") ?? "0") ?? 0
        let next = max(stored + 1, UInt64(max(0, wallClockNow().nanoseconds / 1_000_000_000)))
        try store.setState("incarnation", String(next))
        return next
    }

    /// Job sequence numbers never repeat, even if the store was lost but the key kept: new
    /// jobs start above the persisted ceiling and above the wall clock in microseconds.
    static func jobSequenceFloor(store: EventStore<LedgerEvent>) throws -> UInt64 {
        let stored = UInt64(try store.state("job_seq") ?? "0") ?? 0
        return max(stored, UInt64(max(0, wallClockNow().nanoseconds / 1_000)))
    }
}

/// A counter of inbound one-way peer messages in progress, with a hard bound: past it a
/// message is shed (answered 503 at once) rather than queued behind the others.
final class InboundGate: @unchecked Sendable {
    /// Messages handled at once (reading, verifying, applying). A membership message takes
    /// well under a millisecond of CPU, so 64 in progress is a backlog already.
    static let defaultLimit = 64
    let limit: Int
    private let lock = NSLock()
    private var inProgress = 0

    init(limit: Int) { self.limit = limit }

    /// Takes a slot; false when all `limit` are taken.
    func enter() -> Bool {
        lock.withLock {
            guard inProgress < limit else { return false }
            inProgress += 1
            return true
        }
    }

    func leave() { lock.withLock { inProgress -= 1 } }
}
