/// SWIM-style gossip membership as a pure state machine (DESIGN.md §4).
///
/// Sources: Das, Gupta, Motivala, "SWIM: Scalable Weakly-consistent Infection-style Process
/// Group Membership Protocol" (DSN 2002); hashicorp/memberlist (push-pull, suspicion and
/// retransmit scaling); apple/swift-cluster-membership (`SWIM.Instance` returning
/// directives). Anti-entropy walks the NodeID space in bounded digest ranges (Scuttlebutt-
/// like reconciliation, van Renesse et al. 2008) so every message stays bounded.
///
/// Driving it (the node shell or WWWSim):
/// 1. `init(...)`, then `start(now:seeds:)` once.
/// 2. Call `tick(now:)` at `nextDeadline` (or at least once per `protocolPeriod`).
/// 3. Hand every received membership message to `receive(_:from:fromAddress:now:)`; `from`
///    is the authenticated sender of the signed envelope.
/// 4. Call `updateLocal(_:now:)` when models/capacity/load/accepting/stake change, and
///    `leave(now:)` before shutting down.
/// Every input returns `[MembershipDirective]`, executed in order: `.send` messages (best
/// effort) and notifications (`memberUp`/`memberChanged`/`memberDown`/`memberRemoved`,
/// `localUpdated`, `rejected`). Query the table with `members`, `alivePeers()`, `record(of:)`.
///
/// Each protocol period a node (a) resolves the previous probe (unacked → `suspect`),
/// (b) pings the next member of a shuffled round-robin list and, if no ack arrives within
/// `probeTimeout`, sends ping-req to `indirectProbes` random members, (c) push-pulls a
/// bounded digest with `fanout` random live members (plus one dead one, so healed
/// partitions reconnect), (d) retries its seeds while it knows no live peer. A suspect
/// becomes `dead` after the suspicion timeout unless it refutes by raising its incarnation.
///
/// Lifeguard (Dadgar, Phillips, Currey, "Lifeguard: Local Health Awareness for More
/// Accurate Failure Detection", 2018; memberlist's awareness and suspicion):
/// - local health: a node whose own probes fail, or that has to refute suspicions of
///   itself, is probably the slow one; its health score (0…`maxLocalHealth`) stretches its
///   own protocol period and probe timeout by `1 + score`, and an acked probe lowers it;
/// - suspicion: a suspicion starts at `suspicionMaxMultiplier ×` the base timeout and
///   shrinks (logarithmically) towards the base as distinct members independently report
///   the same suspicion;
/// - refutation first: this node's own new record rides first on every message until it
///   was sent `retransmitLimit` times, and a message to a member held suspect carries the
///   suspicion, so the subject learns it at once and refutes (the buddy system).
///
/// Only the subject's own signed records and this node's own timers make a member `dead`
/// here (DESIGN.md §9): a suspicion or death claim gossiped by another member makes the
/// subject at most `suspect` (which it refutes by raising its incarnation), and counts as
/// one confirmation of this node's suspicion; claims from senders that are not live
/// members are ignored, and so are claims about a member that spoke to this node within
/// the last protocol period. A stranger, or a lying member, cannot evict a node that answers.
public struct Membership: Sendable {
    /// Lifecycle of the local node.
    public enum Phase: Hashable, Sendable {
        /// Constructed; `start` not called.
        case idle
        /// Started with seeds and no live peer known yet: seeds are retried every period.
        case joining
        /// Taking part in probing and gossip.
        case active
        /// `leave` was called; all inputs are ignored.
        case left
    }

    /// A peer-table entry: the subject's latest signed record plus a verdict at exactly
    /// that record's incarnation (if any).
    ///
    /// 24 bytes: every node holds one per member (10,000 nodes: 10⁸ entries in a
    /// simulation), so the rare verdict is boxed and "not vouched" is a sentinel.
    struct Entry: Sendable {
        final class VerdictBox: Sendable {
            let verdict: MemberVerdict
            init(_ v: MemberVerdict) { verdict = v }
        }

        var signed: Signed<MemberRecord>
        private var verdictBox: VerdictBox?
        private var vouchedNanos = Int64.min

        init(signed: Signed<MemberRecord>, verdict: MemberVerdict?, vouchedUntil: Instant?) {
            self.signed = signed
            self.verdict = verdict
            self.vouchedUntil = vouchedUntil
        }

        var verdict: MemberVerdict? {
            get { verdictBox?.verdict }
            set { verdictBox = newValue.map(VerdictBox.init) }
        }

        /// The subject sent this node an authenticated message recently: claims about it
        /// are ignored until then.
        var vouchedUntil: Instant? {
            get { vouchedNanos == .min ? nil : Instant(nanoseconds: vouchedNanos) }
            set { vouchedNanos = newValue?.nanoseconds ?? .min }
        }

        /// Extends `vouchedUntil` to `until`; returns the record's address.
        mutating func vouch(until: Instant) -> String {
            if vouchedNanos < until.nanoseconds { vouchedNanos = until.nanoseconds }
            return signed.value.address
        }

        var status: MemberStatus { signed.value.status == .left ? .left : (verdict?.status ?? .alive) }
        var incarnation: UInt64 { signed.value.incarnation }
        var isLive: Bool { status == .alive || status == .suspect }
        var view: MemberRecord {
            var r = signed.value
            r.status = status
            return r
        }
        var digestEntry: MembershipDigestEntry { MembershipDigestEntry(node: signed.value.node, incarnation: incarnation, status: status) }
        var digestState: DigestState { DigestState(digestEntry) }
    }

    /// A member's version as digests show it, and its fingerprint term
    /// (`MembershipDigest.mix`), beside its id in `order` (24 bytes).
    struct DigestState: Sendable {
        var incarnation: UInt64
        var status: MemberStatus
        var mix: UInt64
        init(_ e: MembershipDigestEntry) {
            incarnation = e.incarnation
            status = e.status
            mix = MembershipDigest.mix(e)
        }
    }

    struct ProbeTarget: Hashable, Sendable {
        var node: NodeID
        var seq: UInt64
        var incarnation: UInt64
    }

    /// The SWIM failure-detector state of the current protocol period.
    enum ProbeState: Hashable, Sendable {
        /// No probe outstanding (no live peer, or the previous one was acked).
        case idle
        /// Ping sent; at `indirectAt` without an ack, ping-req goes to helpers.
        case direct(ProbeTarget, indirectAt: Instant)
        /// Ping-req sent to `helpers`; an ack from the target or a helper ends it.
        case indirect(ProbeTarget, helpers: [NodeID])
    }

    /// A suspicion this node holds (Lifeguard's LHA-suspicion): it expires at `deadline`,
    /// which moves from `start + max` towards `start + min` as distinct members confirm it.
    struct Suspicion: Hashable, Sendable {
        var start: Instant
        var min: Duration
        var max: Duration
        /// Confirmations wanted to reach `min` (0: `min` at once).
        var wanted: Int
        /// Distinct authenticated senders that reported this suspicion (at most `wanted`).
        var confirmers: [NodeID]
        var deadline: Instant { start + MembershipMath.suspicionTimeout(min: min, max: max, confirmations: confirmers.count, wanted: wanted) }
    }

    /// A claim (suspect or dead) about an alive member that other members gossiped,
    /// checked by this node's own probe — a ping that carries the claim (so the subject can
    /// refute it), then ping-req through helpers — before it makes the member suspect here.
    struct Claim: Hashable, Sendable {
        var verdict: MemberVerdict
        /// The check ping's sequence number; 0 while the claim only waits for a refutation.
        var seq: UInt64
        /// Without an ack by then, ping-req goes to helpers.
        var indirectAt: Instant
        /// Helpers asked; nil before the indirect step.
        var helpers: [NodeID]?
        /// Without an ack by then, the subject becomes suspect.
        var deadline: Instant
        /// Distinct authenticated senders of the claim (they confirm the suspicion).
        var claimers: [NodeID]
        var regossip: Bool
        /// This node is checking the claim with its own ping (not only waiting).
        var isChecking: Bool { seq != 0 }
    }

    /// A ping-req this node is relaying.
    struct Relay: Hashable, Sendable {
        var requester: NodeID
        var requesterAddress: String
        var originalSeq: UInt64
        var target: NodeID
        var expiresAt: Instant
    }

    public let config: MembershipConfig
    let crypto: any CryptoProvider
    let signer: any MessageSigner

    public private(set) var phase: Phase = .idle
    /// This node's latest self-signed record.
    public private(set) var localRecord: Signed<MemberRecord>

    var prng: SeededPRNG
    var seeds: [String] = []
    var seedCursor = 0
    var entries: [NodeID: Entry] = [:]
    /// Sorted keys of `entries` (deterministic iteration; dictionaries are not).
    var order: [NodeID] = []
    /// `states[i]` is the incarnation and effective status of `order[i]`, so digests of a
    /// range are read off two arrays instead of a lookup per member.
    var states: [DigestState] = []
    /// Entries whose status is alive or suspect.
    var liveCount = 0
    var rumors: RumorQueue
    var probe: ProbeState = .idle
    var probeQueue: [NodeID] = []
    var nextSeq: UInt64 = 1
    var relays: [UInt64: Relay] = [:]
    /// Members held suspect, by subject.
    var suspicions: [NodeID: Suspicion] = [:]
    /// Claims being checked, by subject (at most `maxConfirmations`).
    var claims: [NodeID: Claim] = [:]
    /// Lifeguard's local health multiplier, 0…`maxLocalHealth`.
    public private(set) var localHealth = 0
    /// Messages that still carry this node's latest record first (refutation priority).
    var selfRumorBudget = 0
    /// When a refutation last raised `localHealth`.
    var healthRaisedByRefutationAt: Instant = .zero
    /// A claim in the message being received already made this node refute.
    var refutedInThisMessage = false
    /// Members this node held dead that a record in the message being handled brought
    /// back (at most the message's bounded states and rumors).
    var revivedInThisMessage: [NodeID] = []
    var tombstoneDeadlines: [NodeID: Instant] = [:]
    var nextPeriodAt: Instant = .zero
    var nextRejoinAt: Instant = .zero
    var digestCursor: NodeID? = nil
    var pendingMetadata: MemberMetadata? = nil

    /// - Parameters:
    ///   - address: this node's advertised "host:port".
    ///   - incarnation: the first incarnation to sign. A restarting node should pass a
    ///     value above any it signed before (persisted from `localUpdated`, or the wall
    ///     clock in seconds); it also refutes stale states about itself when it sees them.
    ///   - seed: PRNG seed (peer choice, probe order).
    public init(
        config: MembershipConfig = MembershipConfig(), signer: any MessageSigner, crypto: any CryptoProvider,
        address: String, metadata: MemberMetadata = MemberMetadata(), incarnation: UInt64 = 0, seed: UInt64
    ) {
        config.validate()
        precondition(incarnation < UInt64(Int64.max), "incarnation fits Int64")
        self.config = config
        self.signer = signer
        self.crypto = crypto
        self.prng = SeededPRNG(seed: seed)
        self.rumors = RumorQueue(capacity: config.maxQueuedRumors)
        let r = MemberRecord(
            node: signer.nodeID, address: address, incarnation: incarnation, status: .alive,
            models: metadata.models, capacity: metadata.capacity, utilizationPPM: metadata.utilizationPPM,
            accepting: metadata.accepting, stake: metadata.stake, updatedAt: .zero)
        self.localRecord = Signed(r, by: signer)
    }

    // MARK: - Queries

    /// This node's id.
    public var nodeID: NodeID { signer.nodeID }

    /// Every member in the table, this node included, sorted by NodeID, each with its
    /// effective status (tombstones included until they expire).
    public var members: [MemberRecord] {
        var out = order.map { entries[$0]!.view }
        let i = out.firstIndex { nodeID < $0.node } ?? out.count
        out.insert(localRecord.value, at: i)
        return out
    }

    /// Other members whose effective status is `alive`, sorted by NodeID.
    public func alivePeers() -> [MemberRecord] {
        order.compactMap { id in
            let e = entries[id]!
            return e.status == .alive ? e.view : nil
        }
    }

    /// Calls `body` with the record (status as signed) of every other member whose
    /// effective status is `alive`, in NodeID order, without building an array: the
    /// scheduler and the duel pick from every alive peer at each decision.
    public func forEachAlivePeer(_ body: (borrowing MemberRecord) -> Void) {
        for id in order {
            guard let e = entries[id], e.status == .alive else { continue }
            body(e.signed.value)
        }
    }

    /// Up to `count` distinct random members whose effective status is `alive`, as
    /// (id, address), in pick order, drawn from `prng` (the caller's: ledger fan-out and
    /// anti-entropy partners). Rejection sampling over the table when alive members are
    /// plenty (O(count), not O(members)); a partial shuffle of the alive ones otherwise.
    public func randomAlivePeers(_ count: Int, prng: inout SeededPRNG) -> [(node: NodeID, address: String)] {
        guard count > 0, !order.isEmpty else { return [] }
        var picked: [(node: NodeID, address: String)] = []
        if aliveMemberCount - 1 > 4 * count {
            var attempts = 0
            while picked.count < count && attempts < 32 * count {
                attempts += 1
                let id = order[StakeSampling.uniformIndex(count: order.count, prng: &prng)]
                guard let e = entries[id], e.status == .alive, !picked.contains(where: { $0.node == id }) else { continue }
                picked.append((id, e.signed.value.address))
            }
            if picked.count == count { return picked }
        }
        var pool: [(node: NodeID, address: String)] = []
        for id in order {
            guard let e = entries[id], e.status == .alive, !picked.contains(where: { $0.node == id }) else { continue }
            pool.append((id, e.signed.value.address))
        }
        var i = 0
        while picked.count < count && i < pool.count {
            let j = i + StakeSampling.uniformIndex(count: pool.count - i, prng: &prng)
            pool.swapAt(i, j)
            picked.append(pool[i])
            i += 1
        }
        return picked
    }

    /// Whether another member whose effective status is `alive` satisfies `predicate` (on
    /// its record as signed); stops at the first, copies nothing.
    public func containsAlivePeer(where predicate: (MemberRecord) -> Bool = { _ in true }) -> Bool {
        order.contains { id in
            let e = entries[id]!
            return e.status == .alive && predicate(e.signed.value)
        }
    }

    /// The record of `node` with its effective status (this node's own record for itself).
    public func record(of node: NodeID) -> MemberRecord? {
        node == nodeID ? localRecord.value : entries[node]?.view
    }

    /// The subject-signed record of `node` as held (status as signed, alive or left).
    public func signedRecord(of node: NodeID) -> Signed<MemberRecord>? {
        node == nodeID ? localRecord : entries[node]?.signed
    }

    /// Live members (alive or suspect), this node included: the N of the log(N) scalings.
    public var liveMemberCount: Int { liveCount + (phase == .left ? 0 : 1) }

    /// Members this node holds `alive`, itself included (O(1): the simulator checks it at
    /// every step for thousands of nodes).
    public var aliveMemberCount: Int { liveMemberCount - suspicions.count }

    /// Rumors waiting to be piggybacked (this node's own record included).
    public var queuedRumorCount: Int { rumors.count + (selfRumorBudget > 0 ? 1 : 0) }

    /// The base suspicion timeout (reached with enough independent confirmations).
    public var suspicionTimeout: Duration { MembershipMath.suspicionTimeout(members: liveMemberCount, config: config) }

    /// The protocol period stretched by local health: `protocolPeriod × (1 + localHealth)`.
    public var currentPeriod: Duration { config.protocolPeriod * (1 + localHealth) }

    /// The probe timeout stretched by local health.
    public var currentProbeTimeout: Duration { config.probeTimeout * (1 + localHealth) }

    /// When `tick` must next be called; nil when idle or left.
    public var nextDeadline: Instant? {
        guard phase == .joining || phase == .active else { return nil }
        var d = nextPeriodAt
        if case .direct(_, let at) = probe { d = min(d, at) }
        for s in suspicions.values { d = min(d, s.deadline) }
        for c in claims.values { d = min(d, c.helpers == nil ? c.indirectAt : c.deadline) }
        return d
    }

    // MARK: - Inputs

    /// Signs the first self-record and, when `seeds` are given, sends a push-pull (join
    /// request) to each seed address (at most `maxSeeds`; this node's own address is
    /// skipped). With no seeds the node is a network of one, waiting to be joined.
    public mutating func start(now: Instant, seeds: [String]) -> [MembershipDirective] {
        precondition(phase == .idle, "start once")
        self.seeds = Array(seeds.filter { $0 != localRecord.value.address }.prefix(config.maxSeeds))
        var out: [MembershipDirective] = []
        var r = localRecord.value
        r.updatedAt = now
        publishLocal(r, into: &out)
        nextPeriodAt = now + currentPeriod
        nextRejoinAt = now + (config.rejoinInterval ?? .zero)
        if self.seeds.isEmpty {
            phase = .active
        } else {
            phase = .joining
            for s in self.seeds { out.append(.send(.address(s), message(.pushPull(nextDigest())))) }
        }
        return out
    }

    /// Runs due timers: suspicion expiry, the indirect-probe step and, once per period,
    /// the period work (probe resolution and next probe, push-pull, seed retry, expiry of
    /// tombstones and relays, pending load publication).
    public mutating func tick(now: Instant) -> [MembershipDirective] {
        guard phase == .joining || phase == .active else { return [] }
        var out: [MembershipDirective] = []
        expireSuspicions(now: now, into: &out)
        claimsDue(now: now, into: &out)
        if now >= nextPeriodAt {
            periodTick(now: now, into: &out)
        }
        if case .direct(let t, let at) = probe, now >= at {
            sendIndirectProbes(t, into: &out)
        }
        return out
    }

    /// Handles one membership message whose envelope was signed by `from`, sent from
    /// `fromAddress`. Piggybacked rumors are applied first, then the body.
    public mutating func receive(_ m: MembershipMessage, from: NodeID, fromAddress: String, now: Instant) -> [MembershipDirective] {
        guard phase == .joining || phase == .active, from != nodeID else { return [] }
        var out: [MembershipDirective] = []
        refutedInThisMessage = false
        revivedInThisMessage = []
        // Any authenticated message from a member shows it is alive, for now; from the
        // subject of a check, it answers the check, and claims wait a suspicion timeout.
        let senderAddress = vouch(for: from, until: now + (claims.isEmpty || claims[from] == nil ? currentPeriod : suspicionTimeout))
        for r in m.rumors.prefix(4 * config.maxRumorsPerMessage) { apply(r, from: from, now: now, regossip: true, into: &out) }
        let reply = MembershipDestination.node(from, address: (m.rumors.isEmpty ? senderAddress : entries[from]?.signed.value.address) ?? fromAddress)
        switch m.body {
        case .ping(let seq, let target):
            if target == nodeID { out.append(.send(reply, message(.ack(seq: seq), to: from))) }
        case .ack(let seq):
            handleAck(seq: seq, from: from, now: now, into: &out)
        case .pingReq(let seq, let target, let targetAddress):
            handlePingReq(seq: seq, target: target, targetAddress: targetAddress, from: from, fromAddress: reply.address, now: now, into: &out)
        case .pushPull(let digest):
            handlePushPull(digest, from: from, now: now, reply: reply, into: &out)
        case .pushPullReply(let states, let wants):
            for s in states.prefix(4 * config.maxStatesPerMessage) { apply(s, from: from, now: now, regossip: false, into: &out) }
            let answer = statesFor(wants.prefix(4 * config.maxDigestEntries))
            if !answer.isEmpty { out.append(.send(reply, message(.states(answer)))) }
        case .states(let states):
            for s in states.prefix(4 * config.maxStatesPerMessage) { apply(s, from: from, now: now, regossip: false, into: &out) }
        }
        if phase == .joining && liveCount > 0 { phase = .active }
        return out
    }

    /// Publishes new metadata. Changes other than load are signed (incarnation + 1) and
    /// gossiped at once; a load-only change at most every `loadPublishInterval` (the
    /// latest value is kept and published by `tick` when due).
    public mutating func updateLocal(_ metadata: MemberMetadata, now: Instant) -> [MembershipDirective] {
        guard phase == .joining || phase == .active else {
            if phase == .idle { localRecord = Signed(withMetadata(localRecord.value, metadata), by: signer) }
            return []
        }
        let current = localRecord.value.metadata
        if metadata == current {
            pendingMetadata = nil
            return []
        }
        if metadata.sameExceptLoad(current) && now < localRecord.value.updatedAt + config.loadPublishInterval {
            pendingMetadata = metadata
            return []
        }
        pendingMetadata = nil
        var out: [MembershipDirective] = []
        var r = withMetadata(localRecord.value, metadata)
        r.incarnation += 1
        r.updatedAt = now
        publishLocal(r, into: &out)
        return out
    }

    /// Leaves gracefully: signs a `left` record (incarnation + 1) and sends it, as a rumor
    /// on an empty `states` message, to up to `2 × fanout` random live members, which
    /// gossip it on.
    /// Afterwards every input is ignored.
    public mutating func leave(now: Instant) -> [MembershipDirective] {
        guard phase == .joining || phase == .active else { return [] }
        var out: [MembershipDirective] = []
        var r = localRecord.value
        r.incarnation += 1
        r.status = .left
        r.updatedAt = now
        publishLocal(r, into: &out)
        let rumor = MembershipRumor.record(localRecord)
        selfRumorBudget = 0
        for peer in randomPeers(2 * config.fanout, excluding: []) {
            out.append(.send(destination(peer), MembershipMessage(.states([]), rumors: [rumor])))
        }
        phase = .left
        probe = .idle
        return out
    }
}

// MARK: - Period work

extension Membership {
    mutating func periodTick(now: Instant, into out: inout [MembershipDirective]) {
        resolveProbe(now: now, into: &out)
        expireTombstones(now: now, into: &out)
        relays = relays.filter { $0.value.expiresAt > now }
        if let p = pendingMetadata, now >= localRecord.value.updatedAt + config.loadPublishInterval {
            out += updateLocal(p, now: now)
        }
        contactSeeds(now: now, into: &out)
        startProbe(now: now, into: &out)
        pushPullRound(into: &out)
        nextPeriodAt = nextPeriodAt + currentPeriod
        if nextPeriodAt <= now { nextPeriodAt = now + currentPeriod }
    }

    /// An unacked probe from the previous period makes its target `suspect` (and this
    /// node's local health worse: the fault may be its own slowness).
    mutating func resolveProbe(now: Instant, into out: inout [MembershipDirective]) {
        switch probe {
        case .idle: return
        case .direct(let t, _), .indirect(let t, _):
            probe = .idle
            changeLocalHealth(+1)
            guard let e = entries[t.node], e.status == .alive, e.incarnation == t.incarnation else { return }
            let v = MemberVerdict(node: t.node, incarnation: t.incarnation, status: .suspect, origin: nodeID)
            adoptVerdict(v, now: now, regossip: true, into: &out)
        }
    }

    /// Joining, or active with no live peer: push-pull the next seed each period (round
    /// robin: `start` already asked them all, and a mass start must not turn the seeds
    /// into hot spots). Otherwise every `rejoinInterval`: push-pull the next seed unless it
    /// is a live member.
    mutating func contactSeeds(now: Instant, into out: inout [MembershipDirective]) {
        guard !seeds.isEmpty else { return }
        let rejoining = phase != .joining && liveCount > 0
        if rejoining {
            guard let interval = config.rejoinInterval, now >= nextRejoinAt else { return }
            nextRejoinAt = now + interval
        }
        let s = seeds[seedCursor % seeds.count]
        seedCursor = (seedCursor + 1) % seeds.count
        // A seed that is a live member already is in touch: asking it again would only make
        // every seed a hot spot that grows with the network.
        if rejoining && order.contains(where: { entries[$0]!.isLive && entries[$0]!.signed.value.address == s }) { return }
        out.append(.send(.address(s), message(.pushPull(nextDigest()))))
    }

    /// Pings the next live member of the shuffled round-robin probe list (SWIM §4.3).
    mutating func startProbe(now: Instant, into out: inout [MembershipDirective]) {
        guard let target = nextProbeTarget(), let e = entries[target] else { return }
        let t = ProbeTarget(node: target, seq: takeSeq(), incarnation: e.incarnation)
        probe = .direct(t, indirectAt: now + currentProbeTimeout)
        out.append(.send(destination(target), message(.ping(seq: t.seq, target: target), to: target)))
    }

    mutating func nextProbeTarget() -> NodeID? {
        for _ in 0..<2 {
            while let id = probeQueue.popLast() {
                if entries[id]?.isLive == true { return id }
            }
            var q = order.filter { entries[$0]!.isLive }
            shuffle(&q)
            probeQueue = q
        }
        return nil
    }

    mutating func sendIndirectProbes(_ t: ProbeTarget, into out: inout [MembershipDirective]) {
        guard let e = entries[t.node] else {
            probe = .idle
            return
        }
        let helpers = randomPeers(config.indirectProbes, excluding: [t.node])
        probe = .indirect(t, helpers: helpers)
        for h in helpers {
            out.append(.send(destination(h), message(.pingReq(seq: t.seq, target: t.node, targetAddress: e.signed.value.address))))
        }
    }

    /// Push-pull with `fanout` random live members, plus one random `dead` member
    /// (memberlist's gossip-to-the-dead) so that healed partitions merge again.
    /// Live members get a summary digest, the dead one a full digest.
    /// A node in poor local health push-pulls with fewer peers (`fanout / (1 + score)`, at
    /// least one): it sheds its own load, and anti-entropy still goes on.
    mutating func pushPullRound(into out: inout [MembershipDirective]) {
        guard phase == .active else { return }
        for p in randomPeers(max(1, config.fanout / (1 + localHealth)), excluding: []) {
            out.append(.send(destination(p), message(.pushPull(nextDigest(summary: true)), to: p)))
        }
        if let dead = randomDead() { out.append(.send(destination(dead), message(.pushPull(nextDigest())))) }
    }

    mutating func expireSuspicions(now: Instant, into out: inout [MembershipDirective]) {
        guard !suspicions.isEmpty else { return }
        let due = suspicions.compactMap { id, s in s.deadline <= now ? (s.deadline, id) : nil }.sorted { $0 < $1 }
        for (_, id) in due {
            suspicions[id] = nil
            guard let e = entries[id], e.status == .suspect else { continue }
            let v = MemberVerdict(node: id, incarnation: e.incarnation, status: .dead, origin: nodeID)
            adoptVerdict(v, now: now, regossip: true, into: &out)
        }
    }

    mutating func expireTombstones(now: Instant, into out: inout [MembershipDirective]) {
        let due = tombstoneDeadlines.filter { $0.value <= now }.map(\.key).sorted()
        for id in due {
            tombstoneDeadlines[id] = nil
            guard let e = entries[id], e.status.isTombstone else { continue }
            setEntry(nil, for: id)
            suspicions[id] = nil
            claims[id] = nil
            out.append(.memberRemoved(id))
        }
    }
}

// MARK: - Message handlers

extension Membership {
    mutating func handleAck(seq: UInt64, from: NodeID, now: Instant, into out: inout [MembershipDirective]) {
        if let (id, _) = claims.first(where: { $0.value.seq == seq && ($0.value.helpers ?? []).contains(from) }) {
            vouch(for: id, until: now + suspicionTimeout)   // a helper reached the subject
            return
        }
        switch probe {
        case .direct(let t, _) where t.seq == seq && from == t.node:
            probe = .idle
            changeLocalHealth(-1)
            return
        case .indirect(let t, let helpers) where t.seq == seq && (from == t.node || helpers.contains(from)):
            probe = .idle
            changeLocalHealth(-1)
            return
        default: break
        }
        if let r = relays[seq], r.target == from {
            relays[seq] = nil
            out.append(.send(.node(r.requester, address: r.requesterAddress), message(.ack(seq: r.originalSeq))))
        }
    }

    mutating func handlePingReq(
        seq: UInt64, target: NodeID, targetAddress: String, from: NodeID, fromAddress: String, now: Instant,
        into out: inout [MembershipDirective]
    ) {
        // Only for a target this node knows, at the address its own signed record gives: a
        // ping-req can never make this node send to an address a stranger chose.
        guard target != nodeID, relays.count < config.maxPendingRelays, let address = entries[target]?.signed.value.address else { return }
        let mySeq = takeSeq()
        relays[mySeq] = Relay(requester: from, requesterAddress: fromAddress, originalSeq: seq, target: target, expiresAt: now + currentPeriod)
        out.append(.send(.node(target, address: address), message(.ping(seq: mySeq, target: target), to: target)))
    }

    /// Answers a digest: states in its range that the sender lacks or has older (random
    /// choice when more than `maxStatesPerMessage`), and wants for the ones it has newer.
    mutating func handlePushPull(_ d: MembershipDigest, from: NodeID, now: Instant, reply: MembershipDestination, into out: inout [MembershipDirective]) {
        if let fp = d.fingerprint {
            answerSummary(d, fingerprint: fp, reply: reply, into: &out)
            return
        }
        let compared = d.entries.prefix(4 * config.maxDigestEntries)
        let theirSelf = compared.first { $0.node == nodeID }
        // A digest that shows this node differently at its own incarnation is refuted; a higher incarnation is only a number: this node asks for the signed
        // record (a previous life's) in `wants` and refutes that (`applyRecord`).
        if let mine = theirSelf, mine.incarnation == localRecord.value.incarnation {
            refuteIfNeeded(seen: mine.incarnation, differs: mine.status != localRecord.value.status, now: now, into: &out)
        }
        var (newer, wants) = isSortedWithin(d, compared) ? compareSorted(d, compared) : compareByLookup(d, compared)
        if d.covers(nodeID), isNewer(localDigestEntry, than: theirSelf) { newer.insert(nodeID, at: 0) }
        if newer.count > config.maxStatesPerMessage {
            shuffle(&newer)
            newer = Array(newer.prefix(config.maxStatesPerMessage)).sorted()
        }
        let states = statesFor(newer[...])
        if states.isEmpty && wants.isEmpty && !d.entries.isEmpty && phase == .active { return }
        out.append(.send(reply, message(.pushPullReply(states: states, wants: wants))))
    }

    /// What a digest's entries (`compared`: the first `4 × maxDigestEntries`) show against
    /// this table: `newer`, members in the range held at a newer version here (in id
    /// order; this node's own record aside); `wants`, in the digest's order, entries among
    /// the first `maxDigestEntries` newer than held here (this node's own id when one shows
    /// it above its incarnation: a previous life's record). Tombstones are only exchanged
    /// with a side that knows the member: handing them to a node that already forgot it
    /// would restart its TTL there and keep it forever.
    typealias DigestComparison = (newer: [NodeID], wants: [NodeID])

    /// Whether the entries are strictly increasing and inside the digest's bounds (as an
    /// honest sender's are): then `compareSorted` walks them beside the table.
    func isSortedWithin(_ d: MembershipDigest, _ compared: ArraySlice<MembershipDigestEntry>) -> Bool {
        guard let first = compared.first, let last = compared.last else { return true }
        guard d.covers(first.node), d.covers(last.node) else { return false }
        return zip(compared, compared.dropFirst()).allSatisfy { $0.node < $1.node }
    }

    /// The comparison as a merge of two sorted runs: no table lookups (this was a sixth of
    /// the simulator's time at 1,000 nodes).
    func compareSorted(_ d: MembershipDigest, _ compared: ArraySlice<MembershipDigestEntry>) -> DigestComparison {
        let range = indexRange(of: d)
        var newer: [NodeID] = [], wants: [NodeID] = []
        var j = compared.startIndex
        let wantsEnd = compared.startIndex + min(compared.count, config.maxDigestEntries)
        /// Advances `j` past their entries below `id`, judging each for `wants`.
        func theirs(upTo id: NodeID?, mine: MembershipDigestEntry?) -> MembershipDigestEntry? {
            while j < compared.endIndex, id.map({ compared[j].node < $0 }) ?? true {
                let e = compared[j]
                if e.node == nodeID {
                    if j < wantsEnd && e.incarnation > localRecord.value.incarnation { wants.append(nodeID) }
                } else if j < wantsEnd && !e.status.isTombstone {
                    wants.append(e.node)   // not held here
                }
                j += 1
            }
            guard let id, j < compared.endIndex, compared[j].node == id else { return nil }
            let e = compared[j]
            if j < wantsEnd, isNewer(e, than: mine) { wants.append(e.node) }
            j += 1
            return e
        }
        for i in range {
            let mine = digestEntry(at: i)
            let their = theirs(upTo: mine.node, mine: mine)
            if isNewer(mine, than: their) && !(mine.status.isTombstone && their == nil) { newer.append(mine.node) }
        }
        _ = theirs(upTo: nil, mine: nil)
        return (newer, wants)
    }

    /// The comparison by table lookups, for entries in any order (a dishonest sender's).
    func compareByLookup(_ d: MembershipDigest, _ compared: ArraySlice<MembershipDigestEntry>) -> DigestComparison {
        let theirs = Dictionary(compared.map { ($0.node, $0) }, uniquingKeysWith: { a, _ in a })
        var newer: [NodeID] = []
        for mine in digestsInRange(d) {
            let their = theirs[mine.node]
            if isNewer(mine, than: their) && !(mine.status.isTombstone && their == nil) { newer.append(mine.node) }
        }
        var wants: [NodeID] = []
        for e in compared.prefix(config.maxDigestEntries) {
            if e.node == nodeID {
                if e.incarnation > localRecord.value.incarnation { wants.append(nodeID) }
                continue
            }
            let mine = entries[e.node]?.digestEntry
            if isNewer(e, than: mine) && !(e.status.isTombstone && mine == nil) { wants.append(e.node) }
        }
        return (newer, wants)
    }

    /// A summary that does not match ours is answered with our full digest of its range
    /// (truncated to `maxDigestEntries`, the upper bound shrinking accordingly).
    mutating func answerSummary(_ d: MembershipDigest, fingerprint: UInt64, reply: MembershipDestination, into out: inout [MembershipDirective]) {
        let range = indexRange(of: d)
        var mineFingerprint = states[range].reduce(0) { $0 &+ $1.mix }
        if d.covers(nodeID) { mineFingerprint = mineFingerprint &+ MembershipDigest.mix(localDigestEntry) }
        guard mineFingerprint != fingerprint else { return }
        var mine = range.map(digestEntry(at:))
        if d.covers(nodeID) { mine.insert(localDigestEntry, at: mine.firstIndex { nodeID < $0.node } ?? mine.count) }
        var full = MembershipDigest(lowerBound: d.lowerBound, upperBound: d.upperBound, entries: Array(mine.prefix(config.maxDigestEntries)))
        if mine.count > config.maxDigestEntries { full.upperBound = full.entries.last?.node }
        out.append(.send(reply, message(.pushPull(full))))
    }

    /// The states (record, then verdict if any) of `ids`, at most `maxStatesPerMessage`.
    func statesFor(_ ids: ArraySlice<NodeID>) -> [MembershipRumor] {
        var out: [MembershipRumor] = []
        for id in ids where out.count < config.maxStatesPerMessage {
            if id == nodeID {
                out.append(.record(localRecord))
            } else if let e = entries[id] {
                out.append(.record(e.signed))
                if let v = e.verdict { out.append(.verdict(v)) }
            }
        }
        return out
    }

    func isNewer(_ a: MembershipDigestEntry, than b: MembershipDigestEntry?) -> Bool {
        guard let b else { return true }
        return (a.incarnation, a.status.rank) > (b.incarnation, b.status.rank)
    }

    var localDigestEntry: MembershipDigestEntry {
        MembershipDigestEntry(node: nodeID, incarnation: localRecord.value.incarnation, status: localRecord.value.status)
    }

    /// Digest entries of the members inside the digest's range, in order.
    func digestsInRange(_ d: MembershipDigest) -> LazyMapSequence<Range<Int>, MembershipDigestEntry> {
        indexRange(of: d).lazy.map { digestEntry(at: $0) }
    }

    /// The positions in `order` of the members inside the digest's range.
    func indexRange(of d: MembershipDigest) -> Range<Int> {
        let lo = d.lowerBound.map { lowerIndex(of: $0) } ?? 0
        let hi = d.upperBound.map { upperIndex(of: $0) } ?? order.count
        return lo..<max(lo, hi)
    }

    /// The digest entry of `order[i]`.
    func digestEntry(at i: Int) -> MembershipDigestEntry {
        MembershipDigestEntry(node: order[i], incarnation: states[i].incarnation, status: states[i].status)
    }

    /// The next digest: up to `maxDigestEntries` consecutive ids (self included) from the
    /// cursor, wrapping to the start when the end is reached; as a summary if asked.
    mutating func nextDigest(summary: Bool = false) -> MembershipDigest {
        // The table's ids with this node's own inserted at `mine`, read without copying the
        // table (it was copied for every digest: a third of the simulator's time at 1,000).
        let mine = lowerIndex(of: nodeID), count = order.count + 1
        func id(at k: Int) -> NodeID { k < mine ? order[k] : (k == mine ? nodeID : order[k - 1]) }
        var start = 0
        // The first position whose id is not below the cursor: as many as are below it.
        if let c = digestCursor { start = lowerIndex(of: c) + (nodeID < c ? 1 : 0) }
        if start >= count { start = 0 }
        let end = min(count, start + config.maxDigestEntries)
        let lower: NodeID? = start == 0 ? nil : id(at: start)
        let upper: NodeID? = end == count ? nil : id(at: end - 1)
        digestCursor = end == count ? nil : id(at: end)
        if summary {
            // The sum of the stored terms: the same as `fingerprint(of:)` over the entries.
            var fingerprint: UInt64 = 0
            for k in start..<end {
                fingerprint = fingerprint &+ (k < mine ? states[k].mix : (k == mine ? MembershipDigest.mix(localDigestEntry) : states[k - 1].mix))
            }
            return MembershipDigest(lowerBound: lower, upperBound: upper, entries: [], fingerprint: fingerprint)
        }
        var entries: [MembershipDigestEntry] = []
        entries.reserveCapacity(end - start)
        for k in start..<end {
            entries.append(k < mine ? digestEntry(at: k) : (k == mine ? localDigestEntry : digestEntry(at: k - 1)))
        }
        return MembershipDigest(lowerBound: lower, upperBound: upper, entries: entries)
    }
}

// MARK: - Applying state

extension Membership {
    /// Applies one state. `regossip`: queue it for piggybacking when it changed the table
    /// (true for rumors; false for push-pull transfers, which are anti-entropy, so that a
    /// node that catches up does not re-broadcast the whole table).
    mutating func apply(_ r: MembershipRumor, from: NodeID, now: Instant, regossip: Bool, into out: inout [MembershipDirective]) {
        switch r {
        case .record(let s): applyRecord(s, from: from, now: now, regossip: regossip, into: &out)
        case .verdict(let v): applyVerdict(v, from: from, now: now, regossip: regossip, into: &out)
        }
    }

    /// Accepts a subject-signed record if it is newer than the held one (higher
    /// incarnation; at equal incarnation `left` beats `alive`) and valid.
    mutating func applyRecord(_ s: Signed<MemberRecord>, from: NodeID, now: Instant, regossip: Bool, into out: inout [MembershipDirective]) {
        let id = s.value.node
        if id == nodeID {
            guard s.value != localRecord.value else { return }
            if let why = s.rejection(now: now, maxClockSkew: config.maxClockSkew, crypto: crypto) {
                out.append(.rejected(from: from, subject: id, reason: why))
                return
            }
            // A different record of ours (a previous life, even at our incarnation) is stale.
            refuteIfNeeded(seen: s.value.incarnation, differs: true, now: now, into: &out)
            return
        }
        let old = entries[id]
        if let old {
            let a = (s.value.incarnation, s.value.status.rank), b = (old.incarnation, old.signed.value.status.rank)
            guard a > b else { return }
        } else if s.value.status == .left {
            return // a departure of a node never known: nothing to forget (and no TTL to restart)
        }
        if let why = s.rejection(now: now, maxClockSkew: config.maxClockSkew, crypto: crypto) {
            out.append(.rejected(from: from, subject: id, reason: why))
            return
        }
        if old == nil && entries.count >= config.maxMembers {
            out.append(.rejected(from: from, subject: id, reason: .tableFull))
            return
        }
        let new = Entry(signed: s, verdict: nil, vouchedUntil: old?.vouchedUntil)
        if old?.status == .dead { revivedInThisMessage.append(id) }
        setEntry(new, for: id)
        // A newer record refutes any suspicion of the older one. (Tables that are empty
        // are not hashed into: this runs for every changed record.)
        if !suspicions.isEmpty { suspicions[id] = nil }
        if !claims.isEmpty { claims[id] = nil }
        if new.status.isTombstone { tombstoneDeadlines[id] = now + config.tombstoneTTL } else if !tombstoneDeadlines.isEmpty { tombstoneDeadlines[id] = nil }
        if regossip { rumors.push(.record(s)) }
        notify(old: old, new: new, into: &out)
    }

    /// A suspect/dead claim forwarded by `from`. About this node: refuted. From a sender
    /// that is not a live member: ignored. About a member at exactly the held incarnation,
    /// that has not spoken to this node within the last period: an alive member becomes
    /// `suspect` (never `dead`: only this node's own suspicion timer does that), and a
    /// suspect one counts `from` as a confirmation of the suspicion.
    mutating func applyVerdict(_ v: MemberVerdict, from: NodeID, now: Instant, regossip: Bool, into out: inout [MembershipDirective]) {
        guard v.status == .suspect || v.status == .dead, v.incarnation <= UInt64(Int64.max) else {
            out.append(.rejected(from: from, subject: v.node, reason: .malformed))
            return
        }
        if v.node == nodeID {
            // Only a claim at exactly our incarnation (a higher number is one nobody signed in
            // this life: a previous life's signed record comes through `applyRecord`), and at
            // most one refutation per message. Whoever sent it — in a mass start the buddy
            // that tells us may not be in our table yet — but only a live member's claim
            // counts against our local health.
            guard v.incarnation == localRecord.value.incarnation, !refutedInThisMessage else { return }
            if refuteIfNeeded(seen: v.incarnation, differs: true, now: now, into: &out) {
                refutedInThisMessage = true
                if entries[from]?.isLive == true { refutedSuspicion(now: now) }
            }
            return
        }
        guard entries[from]?.isLive == true else {
            out.append(.rejected(from: from, subject: v.node, reason: .notAMember))
            return
        }
        guard let e = entries[v.node], e.incarnation == v.incarnation, e.isLive else { return }
        if let until = e.vouchedUntil, now < until { return }
        // A member this node held dead, whose newer record the sender hands over in the same
        // message with its own `dead` verdict at that record's incarnation: both views say
        // dead (typically a refutation signed just before a crash, crossing a partition
        // heal), so it stays dead instead of coming back alive for the length of a check.
        if v.status == .dead, revivedInThisMessage.contains(v.node) {
            adoptVerdict(v, now: now, regossip: regossip, into: &out)
            return
        }
        if e.status == .suspect {
            confirmSuspicion(of: v.node, by: from, now: now)
            return
        }
        checkClaim(v, from: from, now: now, regossip: regossip, into: &out)
    }

    /// Holds a claim for two periods, and — at about `claimCheckers` members in all — pings
    /// its subject (the ping carries the claim, so the subject refutes it). `claimsDue`:
    /// a claim nobody's check refuted by then is checked by this node itself (one more
    /// period); a check without an ack makes the subject suspect. Past `maxPendingClaims`,
    /// further claims are dropped (gossip repeats them).
    mutating func checkClaim(_ v: MemberVerdict, from: NodeID, now: Instant, regossip: Bool, into out: inout [MembershipDirective]) {
        if var c = claims[v.node] {
            if !c.claimers.contains(from) && c.claimers.count < config.suspicionMultiplier { c.claimers.append(from) }
            c.regossip = c.regossip || regossip
            claims[v.node] = c
            return
        }
        guard claims.count < config.maxPendingClaims else { return }
        // About `claimCheckers` members in all check a claim themselves (chosen at random,
        // each with probability checkers / N): every member pinging the subject at once
        // would overload exactly the node that is slow already. The others wait twice a
        // period for the subject's refutation — which the checkers' pings ask for.
        let n = UInt64(max(1, liveMemberCount))
        var c = Claim(verdict: v, seq: 0, indirectAt: now, helpers: [], deadline: now + currentPeriod * 2,
                      claimers: [from], regossip: regossip)
        if runningChecks < config.maxConfirmations, prng.next() % n < UInt64(config.claimCheckers) {
            out.append(startCheck(&c, now: now, deadline: now + currentPeriod * 2))
        }
        claims[v.node] = c
    }

    /// Makes `c` a running check — its ping now (returned), ping-req after the probe
    /// timeout, suspect at `deadline` without an ack.
    mutating func startCheck(_ c: inout Claim, now: Instant, deadline: Instant) -> MembershipDirective {
        c.seq = takeSeq()
        c.indirectAt = now + currentProbeTimeout
        c.helpers = nil
        c.deadline = deadline
        return checkPing(c.verdict, seq: c.seq)
    }

    /// Claims this node is checking with its own ping now (at most `maxConfirmations`).
    var runningChecks: Int { claims.values.filter(\.isChecking).count }

    /// A ping to the subject of claim `v` that carries the claim first.
    mutating func checkPing(_ v: MemberVerdict, seq: UInt64) -> MembershipDirective {
        var ping = message(.ping(seq: seq, target: v.node), to: v.node)
        ping.rumors = Array(([MembershipRumor.verdict(v)] + ping.rumors).prefix(config.maxRumorsPerMessage))
        return .send(destination(v.node), ping)
    }

    /// Due check steps, in NodeID order: ping-req after the probe timeout; unanswered at
    /// the deadline, the subject becomes suspect, the claimers counting as confirmations.
    mutating func claimsDue(now: Instant, into out: inout [MembershipDirective]) {
        guard !claims.isEmpty else { return }
        for id in claims.keys.sorted() {
            guard var c = claims[id] else { continue }
            if now < c.deadline {
                guard c.helpers == nil, now >= c.indirectAt, let e = entries[id] else { continue }
                let helpers = randomPeers(config.indirectProbes, excluding: [id])
                c.helpers = helpers
                claims[id] = c
                for h in helpers {
                    out.append(.send(destination(h), message(.pingReq(seq: c.seq, target: id, targetAddress: e.signed.value.address))))
                }
                continue
            }
            claims[id] = nil
            guard let e = entries[id], e.incarnation == c.verdict.incarnation, e.status == .alive else { continue }
            if !c.isChecking && runningChecks >= config.maxConfirmations {
                // No check slot free: wait another period (only a failed check makes a suspect).
                c.deadline = now + currentPeriod
                claims[id] = c
                continue
            }
            if !c.isChecking {
                // Nobody's check brought a refutation: this node checks now, for one period.
                out.append(startCheck(&c, now: now, deadline: now + currentPeriod))
                claims[id] = c
                continue
            }
            let v = MemberVerdict(node: id, incarnation: c.verdict.incarnation, status: .suspect, origin: c.verdict.origin)
            adoptVerdict(v, now: now, regossip: c.regossip, into: &out)
            for claimer in c.claimers { confirmSuspicion(of: id, by: claimer, now: now) }
        }
    }

    /// `node` showed it is alive: claims about it wait until `until`; a running check ends.
    /// Returns the address its record gives (nil: not a member). One table lookup, in place.
    @discardableResult
    mutating func vouch(for node: NodeID, until: Instant) -> String? {
        if !claims.isEmpty { claims[node] = nil }
        return entries[node]?.vouch(until: until)
    }

    /// Counts `from` as an independent confirmation of this node's suspicion of `node`.
    mutating func confirmSuspicion(of node: NodeID, by from: NodeID, now: Instant) {
        guard var s = suspicions[node], s.confirmers.count < s.wanted, !s.confirmers.contains(from) else { return }
        s.confirmers.append(from)
        suspicions[node] = s
    }

    /// Having to refute a suspicion worsens local health — at most once per period, so that
    /// a flood of claims cannot pin this node at the slowest period.
    mutating func refutedSuspicion(now: Instant) {
        guard now >= healthRaisedByRefutationAt + currentPeriod else { return }
        healthRaisedByRefutationAt = now
        changeLocalHealth(+1)
    }

    /// Moves the local health score by `delta`, within 0…`maxLocalHealth`.
    mutating func changeLocalHealth(_ delta: Int) {
        localHealth = Swift.max(0, Swift.min(config.maxLocalHealth, localHealth + delta))
    }

    /// Records this node's own verdict (a failed probe, an expired suspicion, or a claim
    /// its probe confirmed) at exactly the held record's incarnation when it raises the status.
    mutating func adoptVerdict(_ v: MemberVerdict, now: Instant, regossip: Bool, into out: inout [MembershipDirective]) {
        guard let old = entries[v.node], old.incarnation == v.incarnation, old.status.rank < v.status.rank else { return }
        var new = old
        new.verdict = v
        setEntry(new, for: v.node)
        if v.status == .suspect {
            let n = liveMemberCount
            let wanted = n - 2 < config.suspicionMultiplier - 2 ? 0 : config.suspicionMultiplier - 2
            suspicions[v.node] = Suspicion(start: now, min: suspicionTimeout,
                                           max: suspicionTimeout * config.suspicionMaxMultiplier, wanted: max(0, wanted), confirmers: [])
        } else {
            suspicions[v.node] = nil
            tombstoneDeadlines[v.node] = now + config.tombstoneTTL
        }
        if regossip { rumors.push(.verdict(v)) }
        notify(old: old, new: new, into: &out)
    }

    /// SWIM refutation: a state about this node above our incarnation, or at it but
    /// different from our current record (`differs`: a suspicion, a death, a record of a
    /// previous life), makes us sign `alive` at `max(seen, ours) + 1`. Returns whether it did.
    @discardableResult
    mutating func refuteIfNeeded(seen: UInt64, differs: Bool, now: Instant, into out: inout [MembershipDirective]) -> Bool {
        let mine = localRecord.value
        guard phase == .joining || phase == .active, seen < UInt64(Int64.max) else { return false }
        guard seen > mine.incarnation || (seen == mine.incarnation && differs) else { return false }
        var r = mine
        r.incarnation = max(seen, mine.incarnation) + 1
        r.updatedAt = max(now, mine.updatedAt)
        publishLocal(r, into: &out)
        return true
    }

    /// Signs `r` as this node's record; it rides first on the next `retransmitLimit` messages.
    mutating func publishLocal(_ r: MemberRecord, into out: inout [MembershipDirective]) {
        localRecord = Signed(r, by: signer)
        selfRumorBudget = MembershipMath.retransmitLimit(members: liveMemberCount, config: config)
        out.append(.localUpdated(localRecord))
    }

    func withMetadata(_ r: MemberRecord, _ m: MemberMetadata) -> MemberRecord {
        var r = r
        r.models = m.models
        r.capacity = m.capacity
        r.utilizationPPM = m.utilizationPPM
        r.accepting = m.accepting
        r.stake = m.stake
        r.judging = m.judging
        return r
    }

    func notify(old: Entry?, new: Entry, into out: inout [MembershipDirective]) {
        let before = old?.status, after = new.status
        switch (before, after) {
        case (nil, .alive), (nil, .suspect):
            out.append(.memberUp(new.view))
        case (nil, _):
            break // a tombstone for a node never seen alive: kept silently
        case (.some(let b), _) where b.isTombstone && !after.isTombstone:
            out.append(.memberUp(new.view))
        case (.some(let b), _) where !b.isTombstone && after.isTombstone:
            out.append(.memberDown(new.view))
        case (.some(let b), _) where b.isTombstone && after.isTombstone:
            break
        default:
            out.append(.memberChanged(new.view))
        }
    }

    /// Replaces (or with nil removes) an entry, keeping `order` and `liveCount` in step.
    mutating func setEntry(_ e: Entry?, for id: NodeID) {
        let old = entries[id]
        if old?.isLive == true { liveCount -= 1 }
        if e?.isLive == true { liveCount += 1 }
        switch (old, e) {
        case (nil, .some(let new)):
            let i = lowerIndex(of: id)
            order.insert(id, at: i)
            states.insert(new.digestState, at: i)
        case (.some, nil):
            let i = lowerIndex(of: id)
            order.remove(at: i)
            states.remove(at: i)
        case (.some(let before), .some(let new)):
            if before.incarnation != new.incarnation || before.status != new.status { states[lowerIndex(of: id)] = new.digestState }
        case (nil, nil): break
        }
        entries[id] = e
        assert(order.count == entries.count && states.count == order.count && liveCount >= 0, "table bookkeeping")
    }
}

// MARK: - Helpers

extension Membership {
    /// A message with piggybacked rumors: this node's own new record first (refutations
    /// spread before anything else), then — to a member held suspect — that suspicion (so
    /// the subject can refute it), then the queue's.
    mutating func message(_ body: MembershipMessage.Body, to recipient: NodeID? = nil) -> MembershipMessage {
        var first: [MembershipRumor] = []
        if selfRumorBudget > 0 {
            selfRumorBudget -= 1
            first.append(.record(localRecord))
        }
        if let recipient, let e = entries[recipient], e.status == .suspect, let v = e.verdict { first.append(.verdict(v)) }
        let limit = MembershipMath.retransmitLimit(members: liveMemberCount, config: config)
        rumors.take(limit: config.maxRumorsPerMessage - first.count, retransmitLimit: limit, into: &first)
        return MembershipMessage(body, rumors: first)
    }

    func destination(_ id: NodeID) -> MembershipDestination {
        .node(id, address: entries[id]?.signed.value.address ?? "")
    }

    mutating func takeSeq() -> UInt64 {
        defer { nextSeq += 1 }
        return nextSeq
    }

    /// Index of the first id in `order` not less than `id`.
    func lowerIndex(of id: NodeID) -> Int {
        var lo = 0, hi = order.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if order[mid] < id { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Index of the first id in `order` greater than `id`.
    func upperIndex(of id: NodeID) -> Int {
        var lo = 0, hi = order.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if id < order[mid] { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }

    mutating func shuffle(_ a: inout [NodeID]) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            let j = Int(prng.next() % UInt64(i + 1))
            a.swapAt(i, j)
        }
    }

    /// Up to `count` distinct random live (alive or suspect) members not in `excluding`,
    /// in pick order. Rejection sampling when the table is large, a shuffle otherwise.
    mutating func randomPeers(_ count: Int, excluding: [NodeID]) -> [NodeID] {
        guard count > 0, liveCount > 0 else { return [] }
        var picked: [NodeID] = []
        if liveCount > 4 * (count + excluding.count) {
            var attempts = 0
            while picked.count < count && attempts < 32 * count {
                attempts += 1
                let id = order[Int(prng.next() % UInt64(order.count))]
                if entries[id]!.isLive && !excluding.contains(id) && !picked.contains(id) { picked.append(id) }
            }
            if picked.count == count { return picked }
        }
        var pool = order.filter { entries[$0]!.isLive && !excluding.contains($0) && !picked.contains($0) }
        shuffle(&pool)
        picked += pool.prefix(count - picked.count)
        return picked
    }

    /// A random member whose status is `dead` (not `left`), if any.
    mutating func randomDead() -> NodeID? {
        guard !tombstoneDeadlines.isEmpty else { return nil }
        let dead = tombstoneDeadlines.keys.filter { entries[$0]?.status == .dead }.sorted()
        guard !dead.isEmpty else { return nil }
        return dead[Int(prng.next() % UInt64(dead.count))]
    }
}
