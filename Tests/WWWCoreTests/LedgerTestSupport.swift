import Testing
@testable import WWWCore
import WWWSim

/// Fixtures shared by the ledger tests (prefixed to stay clear of other suites).
enum LedgerFx {
    static let crypto = FakeCrypto()
    static let t0 = Instant(seconds: 1_000_000)
    static let grant = Credits(credits: 100)

    /// Signers 1...12; their NodeIDs are fake hashes, so sort when order matters.
    static let signers: [FakeSigner] = (1...12).map { FakeSigner(seed: UInt8($0)) }
    static func signer(_ i: Int) -> FakeSigner { signers[i - 1] }
    static func node(_ i: Int) -> NodeID { signers[i - 1].nodeID }

    /// 100 credits to each of nodes 1...12.
    static func genesis(judges: Int = 3) -> Genesis {
        var g = [NodeID: Credits]()
        for s in signers { g[s.nodeID] = grant }
        return Genesis(networkID: "test", parameters: GenesisParameters(judgesPerDuel: judges), grants: g, seeds: [])
    }

    static func ledger(_ config: LedgerConfig = LedgerConfig(), judges: Int = 3) -> Ledger {
        Ledger(genesis: genesis(judges: judges), crypto: crypto, config: config)
    }

    static func job(_ requester: Int, _ seq: UInt64) -> JobID {
        JobID.derive(requester: node(requester), sequence: seq, crypto: crypto)
    }

    static func hash(_ tag: String) -> [UInt8] { crypto.sha256(Array(tag.utf8)) }

    /// A jobReceipt body: `requester` authorizes `executor` to be paid `price` for job #`seq`.
    static func receipt(requester: Int, executor: Int, seq: UInt64, price: Credits = Credits(credits: 1),
                        expiresAt: Instant = t0 + .seconds(3600), signedBy: Int? = nil) -> LedgerEventBody {
        let auth = PaymentAuthorization(job: job(requester, seq), requester: node(requester), executor: node(executor),
                                        model: "m", price: price, expiresAt: expiresAt)
        let signed = Signed(auth, by: signer(signedBy ?? requester))
        return .jobReceipt(JobReceipt(authorization: signed, responseHash: hash("response \(seq)"),
                                      inputTokens: 10, outputTokens: 20))
    }

    /// A signed event by `author` at `seq` (not through a ledger).
    static func event(_ author: Int, _ seq: UInt64, _ body: LedgerEventBody, at: Instant = t0) -> LedgerEvent {
        LedgerEvent(authorSeq: seq, createdAt: at, body: body, signer: signer(author), crypto: crypto)
    }

    /// A duel settlement for requester `r`, executors `e1` (first) and `e2` (second), the
    /// panel `judges` and the given verdicts (judge index → choice); fees of 0.2 credit each
    /// to every judge that gave a verdict.
    static func settlement(requester r: Int, first e1: Int, second e2: Int, judges: [Int],
                           verdicts: [Int: DuelChoice], bond1: Credits = Credits(credits: 5),
                           bond2: Credits = Credits(credits: 5), stakeAtRisk: Credits = Credits(credits: 10),
                           seq: UInt64 = 1) -> DuelSettlement {
        let job = job(r, seq)
        let panel = judges.map(node).sorted()
        let a1 = DuelAcceptance(job: job, requester: node(r), executor: node(e1), judges: panel, bond: bond1, expiresAt: t0 + .seconds(3600))
        let a2 = DuelAcceptance(job: job, requester: node(r), executor: node(e2), judges: panel, bond: bond2, expiresAt: t0 + .seconds(3600))
        let h1 = hash("answer 1"), h2 = hash("answer 2")
        let pair = DuelPair.hash(job: job, first: node(e1), firstResponse: h1, second: node(e2),
                                 secondResponse: h2, crypto: crypto)
        let vs = verdicts.sorted { node($0.key) < node($1.key) }.map { j, choice in
            Signed(JudgeVerdict(job: job, judge: node(j), first: node(e1), second: node(e2), pairHash: pair,
                                choice: choice, stakeAtRisk: stakeAtRisk), by: signer(j))
        }
        let fees = JudgeFees(job: job, requester: node(r),
                             fees: vs.map { JudgeFee(judge: $0.value.judge, amount: Credits(micro: 200_000)) })
        return DuelSettlement(job: job, firstResponseHash: h1, secondResponseHash: h2,
                              first: Signed(a1, by: signer(e1)), second: Signed(a2, by: signer(e2)),
                              verdicts: vs, judgeFees: Signed(fees, by: signer(r)))
    }

    /// Balance changes from the genesis grant, for nodes whose balance changed.
    static func deltas(_ l: Ledger) -> [NodeID: Int64] {
        var d = [NodeID: Int64]()
        for n in Set(l.balances.keys).union(l.genesis.grants.keys) {
            let change = l.balance(of: n).micro - (l.genesis.grants[n] ?? .zero).micro
            if change != 0 { d[n] = change }
        }
        return d
    }
}

/// A ledger with its store, driven as the node drives them: `persist` directives go to an
/// in-memory `SimEventLog`, conflicts the store finds come back through `storedConflict`,
/// and anti-entropy reads its ranges from the store.
struct StoredLedger {
    var ledger: Ledger
    var log = SimEventLog()

    init(_ ledger: Ledger = LedgerFx.ledger()) { self.ledger = ledger }

    /// `Ledger.receive` plus the driver's part; returns the ledger's directives and those of
    /// the conflicts the store found.
    @discardableResult
    mutating func receive(_ events: [LedgerEvent], from: NodeID, now: Instant) -> [LedgerDirective] {
        drive(ledger.receive(events, from: from, now: now))
    }

    private mutating func drive(_ directives: [LedgerDirective]) -> [LedgerDirective] {
        var out = directives
        for case .persist(let events) in directives {
            for c in log.append(events) { out += drive(ledger.storedConflict(c.stored, c.written)) }
        }
        return out
    }

    /// Every stored event, in restore order.
    var heldEvents: [LedgerEvent] { log.all }

    /// The events anti-entropy would send a peer with `digest`.
    func eventsMissing(from digest: [NodeID: UInt64], limit: Int) -> [LedgerEvent] {
        log.events(in: ledger.rangesMissing(from: digest, limit: limit))
    }
}
