import Testing
@testable import WWWCore

/// Fixtures for the exact-directive tests of `NodeMachine` (prefixed to stay clear of other
/// suites). Node numbers are FakeSigner seeds; addresses are "10.0.0.<n>:7070".
enum NodeFx {
    static let crypto = FakeCrypto()
    static let t0 = Instant(seconds: 1_000_000)
    static let price = Credits(credits: 1)

    static func signer(_ n: UInt8) -> FakeSigner { FakeSigner(seed: n) }
    static func id(_ n: UInt8) -> NodeID { signer(n).nodeID }
    static func addr(_ n: UInt8) -> String { "10.0.0.\(n):7070" }

    /// 100 credits to each of `nodes`.
    static func genesis(_ nodes: [UInt8] = [1, 2, 3, 4, 5]) -> Genesis {
        var g = [NodeID: Credits]()
        for n in nodes { g[id(n)] = Credits(credits: 100) }
        return Genesis(networkID: "test", grants: g)
    }

    static func backend(_ name: String = "local", model: String = "m", capacity: Int = 1, limit: Int? = nil) -> LocalBackendConfig {
        LocalBackendConfig(name: name, models: [ModelDescriptor(name: model)], capacity: capacity, admissionLimit: limit ?? 2 * capacity)
    }

    /// A policy without randomness in executor choice: no exploration.
    static func policy(_ edit: (inout SchedulingPolicy) -> Void = { _ in }) -> SchedulingPolicy {
        var p = SchedulingPolicy(explorationShare: 0)
        edit(&p)
        return p
    }

    /// A started standalone machine (no network).
    static func standalone(_ backends: [LocalBackendConfig] = [backend()], policy: SchedulingPolicy = policy(),
                           queueTimeout: Duration = .seconds(60)) -> NodeMachine {
        var m = NodeMachine(config: NodeMachineConfig(backends: backends, policy: policy, queueTimeout: queueTimeout), network: nil, seed: 1)
        #expect(m.handle(.start, now: t0) == [])
        return m
    }

    /// A started network machine for node `me` with no seeds.
    static func networked(_ me: UInt8, backends: [LocalBackendConfig] = [], policy: SchedulingPolicy = policy(),
                          queueTimeout: Duration = .seconds(60), maxPending: Int = 256, jobFloor: UInt64 = 0,
                          genesis: Genesis = genesis()) -> NodeMachine {
        let setup = NetworkSetup(genesis: genesis, signer: signer(me), crypto: crypto, address: addr(me), seeds: [],
                                 declaredStake: Credits(credits: 10), jobSequenceBlock: 4,
                                 restored: NodeRestoreState(jobSequenceFloor: jobFloor))
        var m = NodeMachine(config: NodeMachineConfig(backends: backends, policy: policy, queueTimeout: queueTimeout, maxPending: maxPending),
                            network: setup, seed: UInt64(me))
        _ = m.handle(.start, now: t0)
        return m
    }

    /// `n`'s self-signed member record serving `models`.
    static func record(_ n: UInt8, models: [String] = ["m"], accepting: Bool = true, stake: Int64 = 10, utilizationPPM: Int = 0,
                       incarnation: UInt64 = 1, judging: Bool = false) -> Signed<MemberRecord> {
        Signed(MemberRecord(node: id(n), address: addr(n), incarnation: incarnation, status: .alive,
                            models: models.map { ModelDescriptor(name: $0) }, capacity: 1, utilizationPPM: utilizationPPM,
                            accepting: accepting, stake: Credits(credits: stake), updatedAt: t0, judging: judging), by: signer(n))
    }

    /// Lets `m` learn `records` through one push-pull state transfer from the first one.
    static func learn(_ m: inout NodeMachine, _ records: [Signed<MemberRecord>], now: Instant = t0) -> [NodeDirective] {
        let from = records[0].value.node
        let msg = MembershipMessage(.states(records.map { .record($0) }))
        return m.handle(.peerMessage(.membership(msg), from: from, fromAddress: records[0].value.address), now: now)
    }

    /// A digest-only ledger sync from `n` (so `m` has heard a digest and may sign).
    static func heardFrom(_ m: inout NodeMachine, _ n: UInt8, now: Instant = t0) -> [NodeDirective] {
        m.handle(.peerMessage(.ledgerSync(LedgerSyncMessage(role: .push, digest: [:])), from: id(n), fromAddress: addr(n)), now: now)
    }

    static func job(_ requester: UInt8, _ seq: UInt64) -> JobID { JobID.derive(requester: id(requester), sequence: seq, crypto: crypto) }

    static func auth(requester: UInt8, executor: UInt8, seq: UInt64, model: String = "m", price: Credits = price,
                     expiresAt: Instant, signedBy: UInt8? = nil) -> Signed<PaymentAuthorization> {
        Signed(PaymentAuthorization(job: job(requester, seq), requester: id(requester), executor: id(executor), model: model,
                                    price: price, expiresAt: expiresAt), by: signer(signedBy ?? requester))
    }

    static func answer(job: JobID, requester: UInt8, executor: UInt8, reason: OfferRejectionReason?, at: Instant) -> Signed<OfferAnswer> {
        Signed(OfferAnswer(job: job, requester: id(requester), executor: id(executor), reason: reason, answeredAt: at), by: signer(executor))
    }

    static func spec(_ model: String = "m", allowOffload: Bool = true, deadline: Instant = t0 + .seconds(300)) -> UserRequestSpec {
        UserRequestSpec(model: model, allowOffload: allowOffload, deadline: deadline)
    }

    static func outcome(_ tag: String = "answer") -> StreamOutcome {
        StreamOutcome(responseHash: crypto.sha256(Array(tag.utf8)), usage: TokenUsage(promptTokens: 3, completionTokens: 5))
    }

    /// The directives without membership timers and notifications (for tests about other parts).
    static func sansMembership(_ ds: [NodeDirective]) -> [NodeDirective] {
        ds.filter {
            switch $0 {
            case .setTimer(.membership, _), .notify(.membership): false
            default: true
            }
        }
    }
}
