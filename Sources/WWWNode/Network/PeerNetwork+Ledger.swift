import AsyncHTTPClient
import Foundation
import NIOCore
import WWWAPI
import WWWCore
import WWWCrypto
import WWWStore

extension PeerNetwork {
    /// Events per anti-entropy message.
    static let syncBatch = 256

    /// Runs ledger directives: persist first (an event is on disk before anything that
    /// depends on it), then publish / report.
    func executeLedger(_ directives: [LedgerDirective], publishTo extra: [NodeID] = []) throws {
        for d in directives {
            switch d {
            case .persist(let events):
                _ = try store.append(events)
                metrics.ledgerEvents(events.count)
            case .publish(let events):
                publish(events, extra: extra)
            case .equivocation(let proof):
                logger.warning("equivocation detected", metadata: ["author": "\(proof.author)", "seq": "\(proof.authorSeq)"])
                try? store.record(Equivocation(author: proof.author.hex, authorSeq: proof.authorSeq, ids: proof.first.idHex, proof.second.idHex))
                publish([proof.first, proof.second])
            case .rejected(let e, let reason):
                metrics.peerMessage(kind: PeerKind.ledger, outcome: "event_rejected")
                logger.debug("ledger event rejected", metadata: ["event": "\(e.idHex.prefix(12))", "reason": "\(reason)"])
            case .acknowledge:
                break
            }
        }
    }

    /// Pushes new events to `fanout` alive peers at once (anti-entropy repairs the rest).
    func publish(_ events: [LedgerEvent], extra: [NodeID] = []) {
        var targets = Set(extra)
        var peers = membership.alivePeers()
        StakeSampling.shuffle(&peers, prng: &prng)
        for p in peers.prefix(3) { targets.insert(p.node) }
        for t in targets where t != me {
            guard let addr = membership.record(of: t)?.address else { continue }
            let sync = makeSync(events)
            Task { _ = await self.syncWith(address: addr, node: t, sync: sync) }
        }
    }

    /// One push-pull with a random alive peer per period.
    func antiEntropy() {
        guard let peer = membership.alivePeers().randomElement(using: &prng) else { return }
        let sync = makeSync([])
        Task {
            guard let reply = await self.syncWith(address: peer.address, node: peer.node, sync: sync) else { return }
            await self.answerSync(reply, from: peer)
        }
    }

    /// A sync message: this node's digest, `events`, and the equivocation proofs it holds.
    func makeSync(_ events: [LedgerEvent]) -> LedgerSync {
        LedgerSync(digest: ledger.digest(), events: events, proofs: LedgerSyncProofs.carried(by: ledger))
    }

    /// Applies the peer's reply, then pushes what the peer lacks.
    func answerSync(_ reply: LedgerSync, from peer: MemberRecord) async {
        noteDigest(reply.nodeDigest)
        applyRemote(reply.events + reply.proofs, from: peer.node)
        let missing = ledger.eventsMissing(from: reply.nodeDigest, limit: Self.syncBatch)
        guard !missing.isEmpty else { return }
        _ = await syncWith(address: peer.address, node: peer.node, sync: makeSync(missing))
    }

    /// Remembers how long a chain of this node's own events peers know (see `readyToAppend`).
    func noteDigest(_ digest: [NodeID: UInt64]) {
        heardDigest = true
        remoteSelfHighWater = max(remoteSelfHighWater, digest[me] ?? 0)
    }

    /// True once this node may sign new events: a peer's digest has arrived (or the node
    /// is alone) and no peer knows a longer chain of this node's own events than it holds,
    /// so a node that lost its store cannot re-sign a sequence number it already used
    /// (which every peer would prove as equivocation).
    var readyToAppend: Bool {
        (heardDigest || membership.alivePeers().isEmpty) && remoteSelfHighWater <= ledger.highWater(of: me)
    }

    func syncWith(address: String, node: NodeID, sync: LedgerSync) async -> LedgerSync? {
        do {
            let env = try Envelope.seal(kind: PeerKind.ledger, message: sync, to: node, sentAt: wallClockNow(), signer: key)
            let resp = try await post(address: address, path: "/p2p/v1/ledger", envelope: env)
            let body = try await resp.body.collect(upTo: 32 << 20)
            guard resp.status == .ok else { return nil }
            return try JSONDecoder().decode(LedgerSync.self, from: Data(buffer: body))
        } catch {
            metrics.peerMessage(kind: PeerKind.ledger, outcome: "send_failed")
            return nil
        }
    }

    func applyRemote(_ events: [LedgerEvent], from: NodeID) {
        guard !events.isEmpty else { return }
        for batch in stride(from: 0, to: events.count, by: 1024).map({ Array(events[$0..<min($0 + 1024, events.count)]) }) {
            do {
                try executeLedger(ledger.receive(batch, from: from, now: wallClockNow()))
            } catch {
                logger.error("could not persist ledger events; they stay unapplied until the next sync", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Handles `POST /p2p/v1/ledger`: applies the sender's events and answers with events
    /// the sender lacks plus this node's digest.
    public func receiveLedger(_ env: Envelope) throws -> LedgerSync {
        let v = try verify(env, kind: PeerKind.ledger)
        let sync = try decodeBody(v, LedgerSync.self)
        guard sync.events.count <= 4 * Self.syncBatch, sync.proofs.count <= 2 * LedgerSyncProofs.maxProofs else {
            throw APIError.invalidRequest("too many events in one sync message", code: "too_many_events")
        }
        noteDigest(sync.nodeDigest)
        applyRemote(sync.events + sync.proofs, from: v.from)
        return makeSync(ledger.eventsMissing(from: sync.nodeDigest, limit: Self.syncBatch))
    }

    /// Publishes the executor's `jobReceipt` after it delivered the response (§5).
    func recordReceipt(_ auth: Signed<PaymentAuthorization>, content: String, usage: Usage?) {
        defer { acceptedJobs[auth.value.job] = nil }
        receiptedJobs.insert(auth.value.job)
        let receipt = JobReceipt(authorization: auth, responseHash: crypto.sha256(Array(content.utf8)),
                                 inputTokens: UInt32(clamping: usage?.promptTokens ?? 0),
                                 outputTokens: UInt32(clamping: usage?.completionTokens ?? 0))
        let directives = ledger.append(.jobReceipt(receipt), now: wallClockNow(), signer: key)
        do {
            // The receipt goes to the requester at once (and to `fanout` random peers).
            try executeLedger(directives, publishTo: [auth.value.requester])
            metrics.jobReceipt()
        } catch {
            logger.error("could not persist a job receipt", metadata: ["job": "\(auth.value.job)", "error": "\(error)"])
        }
    }

    // MARK: - Views

    public func peersView() -> [PeerView] {
        membership.members.map { r in
            PeerView(node: r.node.hex, address: r.address, status: r.status.rawValue, incarnation: r.incarnation,
                     models: r.models.map(\.name), capacity: r.capacity, utilization: Double(r.utilizationPPM) / 1e6,
                     accepting: r.accepting, stake: "\(ledger.effectiveStake(declared: r.stake, of: r.node))",
                     balance: "\(ledger.balance(of: r.node))", isSelf: r.node == me)
        }
    }

    public func creditsView() -> CreditsView {
        let nodes = Set(genesis.grants.keys).union(ledger.balances.keys).union(membership.members.map(\.node)).sorted()
        let rows = nodes.map { n -> CreditsView.Row in
            let declared = n == me ? declaredStake : (membership.record(of: n)?.stake ?? .zero)
            return CreditsView.Row(node: n.hex, balance: "\(ledger.balance(of: n))", balanceMicro: ledger.balance(of: n).micro,
                                   declaredStake: "\(declared)", effectiveStake: "\(ledger.effectiveStake(declared: declared, of: n))",
                                   equivocating: ledger.isEquivocating(n))
        }
        let ids = ledger.heldEvents.map(\.idHex).sorted().joined()
        return CreditsView(network: genesis.networkID, me: me.hex, events: ledger.heldCount,
                           digest: Dictionary(uniqueKeysWithValues: ledger.digest().map { ($0.key.hex, $0.value) }),
                           eventSetHash: Hex.encode(crypto.sha256(Array(ids.utf8))), totalSupply: "\(genesis.totalSupply)", rows: rows)
    }
}
