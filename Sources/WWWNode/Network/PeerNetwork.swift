import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import WWWAPI
import WWWBackends
import WWWCore
import WWWCrypto
import WWWStore

/// The node shell's driver of the network core (DESIGN.md §2–§6): it owns the
/// `Membership` and `Ledger` state machines, feeds them wall-clock time, verified peer
/// messages and timer ticks, and executes their directives (send over HTTP, persist to
/// SQLite before acknowledging, notify). All core state is touched only inside this actor.
public actor PeerNetwork: Service {
    public let me: NodeID
    public let genesis: Genesis
    let key: NodeKey
    let crypto = SwiftCryptoProvider()
    let store: EventStore<LedgerEvent>
    let section: NetworkSection
    let policy: SchedulingPolicy
    let declaredStake: Credits
    let pool: BackendPool
    let metrics: NodeMetrics
    let logger: Logger
    let client: HTTPClient
    let advertise: String
    var membership: Membership
    var ledger: Ledger
    var verifier: EnvelopeVerifier
    var prng: SeededPRNG
    /// Executor side: jobs accepted here and not yet receipted or abandoned, with their
    /// requester and price (so one requester cannot overdraw through parallel offers).
    var acceptedJobs: [JobID: (requester: NodeID, price: Credits)] = [:]
    /// Executor side: jobs this node has published a receipt for (never run twice).
    var receiptedJobs: Set<JobID> = []
    /// Requester side: credits promised to executors by offloads still running.
    var pendingSpend: Credits = .zero
    /// A peer's ledger digest has arrived since start.
    var heardDigest = false
    /// The longest chain of this node's own events any peer's digest showed.
    var remoteSelfHighWater: UInt64 = 0
    /// Fire-and-forget sends in flight (bounded; beyond the bound a send is dropped and counted).
    var outstandingSends = 0
    let maxOutstandingSends = 256
    var period: Duration { .milliseconds(section.gossipPeriodMs) }

    public init(config: NodeConfig, section: NetworkSection, pool: BackendPool, metrics: NodeMetrics, logger: Logger) throws {
        self.section = section
        self.pool = pool
        self.metrics = metrics
        self.logger = logger
        self.policy = try config.policy.schedulingPolicy()
        self.declaredStake = config.policy.declaredStake
        self.genesis = try Self.loadGenesis(section.genesis)
        let keyPath = section.keyFile ?? (config.node.dataDir as NSString).appendingPathComponent("node.key")
        self.key = try NodeKey.loadOrCreate(path: keyPath)
        self.me = key.nodeID
        self.advertise = section.advertise ?? "\(config.node.host):\(config.node.port)"
        try FileManager.default.createDirectory(atPath: config.node.dataDir, withIntermediateDirectories: true)
        let dbPath = (config.node.dataDir as NSString).appendingPathComponent("ledger.sqlite")
        let stored: [LedgerEvent]
        do {
            self.store = try EventStore<LedgerEvent>(dataDirectory: config.node.dataDir)
            stored = try store.loadAll()
        } catch {
            throw ConfigError("cannot open the ledger database \(dbPath): \(error). If it is damaged, move it away and restart: the node fetches the network's events from its peers (events only this node held are lost).")
        }
        var ledger = Ledger(genesis: genesis, crypto: crypto)
        let summary = ledger.restore(stored)
        self.ledger = ledger
        let seed = section.seed ?? UInt64.random(in: .min ... .max)
        self.prng = SeededPRNG(seed: seed ^ 0x5EED)
        self.verifier = EnvelopeVerifier(crypto: crypto)
        let incarnation = try Self.nextIncarnation(store: store)
        try Self.advanceJobSequence(store: store)
        let myID = key.nodeID
        let receipted = Set(ledger.heldEvents.compactMap { e -> JobID? in
            guard case .jobReceipt(let r) = e.body, e.author == myID else { return nil }
            return r.authorization.value.job
        })
        var mc = MembershipConfig()
        mc.protocolPeriod = .milliseconds(section.gossipPeriodMs)
        mc.probeTimeout = .milliseconds(max(section.gossipPeriodMs / 2, 50))
        mc.loadPublishInterval = .milliseconds(section.gossipPeriodMs * 2)
        // Re-contact a seed every 10 periods (at least 5 s): a seed that restarted alone,
        // knowing nobody, is found again within that time.
        mc.rejoinInterval = max(.seconds(5), .milliseconds(section.gossipPeriodMs * 10))
        self.receiptedJobs = receipted
        self.membership = Membership(config: mc, signer: key, crypto: crypto, address: advertise,
                                     metadata: MemberMetadata(), incarnation: incarnation, seed: seed)
        // The process-wide client: its lifetime is the process's, so no shutdown can be
        // missed; every peer call carries its own deadline (peer_timeout_ms or the request's).
        self.client = HTTPClient.shared
        logger.info("network identity", metadata: ["node": "\(key.nodeID.hex)", "network": "\(genesis.networkID)",
                                                    "restored_events": "\(summary.restored)", "incarnation": "\(incarnation)"])
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

    /// Job sequence numbers never repeat, even if the store was lost but the key kept: the
    /// counter starts at least at the wall clock in microseconds.
    static func advanceJobSequence(store: EventStore<LedgerEvent>) throws {
        let stored = Int64(try store.state("job_seq") ?? "0") ?? 0
        let floor = wallClockNow().nanoseconds / 1_000
        if stored < floor { try store.setState("job_seq", String(floor)) }
    }

    // MARK: - Service

    public func run() async throws {
        let seeds = Array(Set(genesis.seeds + section.join)).sorted()
        execute(membership.start(now: wallClockNow(), seeds: seeds))
        await withGracefulShutdownHandler {
            await self.loop()
        } onGracefulShutdown: {
            Task { await self.leave() }
        }
    }

    private var stopping = false

    private func loop() async {
        var nextSync = ContinuousClock.now
        while !Task.isCancelled && !stopping {
            let now = wallClockNow()
            execute(membership.tick(now: now))
            if ContinuousClock.now >= nextSync {
                publishLocalMetadata(now: now)
                antiEntropy()
                nextSync = ContinuousClock.now + period
            }
            let wake = membership.nextDeadline.map { max(Duration.milliseconds(5), min($0 - wallClockNow(), period)) } ?? period
            try? await Task.sleep(for: wake)
        }
    }

    /// Gossips `left` (best effort, bounded wait) before the process exits.
    func leave() async {
        guard !stopping else { return }
        stopping = true
        let directives = membership.leave(now: wallClockNow())
        await withTaskGroup(of: Void.self) { group in
            for case .send(let dest, let msg) in directives {
                group.addTask { await self.send(dest, msg) }
            }
        }
        logger.info("left the network")
    }

    func publishLocalMetadata(now: Instant) {
        let models = pool.models
        let capacity = pool.entries.reduce(0) { $0 + $1.backend.capacity }
        let load = pool.loadSnapshot()
        let meta = MemberMetadata(models: models, capacity: capacity,
                                  utilizationPPM: MemberRecord.utilizationPPM(of: load),
                                  accepting: !models.isEmpty && policy.acceptFrequency > 0,
                                  stake: ledger.effectiveStake(declared: declaredStake, of: me))
        execute(membership.updateLocal(meta, now: now))
    }

    // MARK: - Directives

    func execute(_ directives: [MembershipDirective]) {
        for d in directives {
            switch d {
            case .send(let dest, let msg):
                guard outstandingSends < maxOutstandingSends else { metrics.peerMessage(kind: "membership", outcome: "dropped"); continue }
                outstandingSends += 1
                Task { await self.send(dest, msg); self.sendDone() }
            case .memberUp(let r): logger.info("peer up", metadata: ["peer": "\(r.node)", "address": "\(r.address)"])
            case .memberDown(let r): logger.warning("peer down", metadata: ["peer": "\(r.node)", "status": "\(r.status)"])
            case .memberChanged, .memberRemoved, .localUpdated: break
            case .rejected(let from, let subject, let reason):
                metrics.peerMessage(kind: "membership", outcome: "rejected_\(reason.rawValue)")
                logger.debug("membership record rejected", metadata: ["from": "\(from)", "subject": "\(subject)", "reason": "\(reason)"])
            }
        }
    }

    func sendDone() { outstandingSends -= 1 }

    func send(_ dest: MembershipDestination, _ msg: MembershipMessage) async {
        let to: NodeID? = if case .node(let id, _) = dest { id } else { nil }
        do {
            let body = MembershipEnvelopeBody(fromAddress: advertise, message: msg)
            let env = try Envelope.seal(kind: PeerKind.membership, message: body, to: to, sentAt: wallClockNow(), signer: key)
            _ = try await post(address: dest.address, path: "/p2p/v1/membership", envelope: env)
            metrics.peerMessage(kind: "membership", outcome: "sent")
        } catch {
            metrics.peerMessage(kind: "membership", outcome: "send_failed")
        }
    }

    func post(address: String, path: String, envelope: Envelope, timeout: Duration? = nil) async throws -> HTTPClientResponse {
        var req = HTTPClientRequest(url: "http://\(address)\(path)")
        req.method = .POST
        req.headers.add(name: "Content-Type", value: "application/json")
        req.body = .bytes(ByteBuffer(data: try JSONEncoder().encode(envelope)))
        let t = timeout ?? .milliseconds(section.peerTimeoutMs)
        return try await client.execute(req, timeout: .nanoseconds(t.nanoseconds))
    }

    // MARK: - Inbound

    /// Verifies an inbound envelope of `kind`; counts rejections.
    func verify(_ env: Envelope, kind: String, allowUnaddressed: Bool = false) throws -> VerifiedEnvelope {
        guard env.kind == kind else {
            metrics.peerMessage(kind: kind, outcome: "rejected_wrong_kind")
            throw APIError.invalidRequest("envelope kind '\(env.kind)' does not belong on this route", code: "wrong_kind")
        }
        switch verifier.verify(env, me: me, now: wallClockNow(), allowUnaddressed: allowUnaddressed) {
        case .success(let v):
            metrics.peerMessage(kind: kind, outcome: "accepted")
            return v
        case .failure(let r):
            metrics.peerMessage(kind: kind, outcome: "rejected_\(r)")
            throw APIError(status: 401, message: "envelope rejected: \(r)", type: "invalid_request_error", code: "envelope_\(r)")
        }
    }

    public func receiveMembership(_ env: Envelope) throws {
        let v = try verify(env, kind: PeerKind.membership, allowUnaddressed: true)
        let body = try decodeBody(v, MembershipEnvelopeBody.self)
        guard Self.isHostPort(body.fromAddress) else {
            metrics.peerMessage(kind: PeerKind.membership, outcome: "rejected_malformed")
            throw APIError.invalidRequest("fromAddress must be host:port", code: "invalid_message")
        }
        execute(membership.receive(body.message, from: v.from, fromAddress: body.fromAddress, now: wallClockNow()))
    }

    /// Decodes a verified envelope's body; a body that does not decode is the sender's
    /// fault (400), counted as `rejected_malformed`.
    func decodeBody<T: Decodable>(_ v: VerifiedEnvelope, _ type: T.Type) throws -> T {
        do {
            return try v.decode(type)
        } catch {
            metrics.peerMessage(kind: v.kind, outcome: "rejected_malformed")
            throw APIError.invalidRequest("the envelope's body is not a valid \(v.kind) message", code: "invalid_message")
        }
    }

    static func isHostPort(_ s: String) -> Bool {
        guard s.count <= 300, let colon = s.lastIndex(of: ":"), let port = Int(s[s.index(after: colon)...]) else { return false }
        return colon > s.startIndex && (1...65535).contains(port)
    }

}
