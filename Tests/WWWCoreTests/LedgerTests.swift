import Foundation
import Testing
@testable import WWWCore
import WWWSim

@Suite("Ledger: canonical format")
struct LedgerCanonicalTests {
    static let auth = PaymentAuthorization(
        job: JobID(bytes: [UInt8](repeating: 0x01, count: 32)),
        requester: NodeID(bytes: [UInt8](repeating: 0x02, count: 32)),
        executor: NodeID(bytes: [UInt8](repeating: 0x03, count: 32)),
        model: "smollm2", price: Credits(credits: 1), expiresAt: Instant(seconds: 5))
    static let h01 = String(repeating: "01", count: 32)
    static let h02 = String(repeating: "02", count: 32)
    static let h03 = String(repeating: "03", count: 32)
    static let h04 = String(repeating: "04", count: 32)
    static let authJSON = #"{"executor":"\#(h03)","expiresAt":5000000000,"job":"\#(h01)","model":"smollm2","price":1000000,"requester":"\#(h02)","type":"paymentAuthorization"}"#

    static var body: LedgerEventBody {
        .jobReceipt(JobReceipt(
            authorization: Signed(value: auth, signer: auth.requester, signature: [UInt8](repeating: 0xab, count: 64)),
            responseHash: [UInt8](repeating: 0x04, count: 32), inputTokens: 7, outputTokens: 9))
    }
    static let bodyJSON = #"{"authorization":{"signature":"\#(String(repeating: "ab", count: 64))","signer":"\#(h02)","value":\#(authJSON)},"inputTokens":7,"kind":"jobReceipt","outputTokens":9,"responseHash":"\#(h04)"}"#

    @Test func paymentAuthorizationBytes() {
        #expect(String(decoding: Self.auth.canonical.bytes, as: UTF8.self) == Self.authJSON)
    }

    @Test func jobReceiptBodyBytes() {
        #expect(String(decoding: Self.body.canonical.bytes, as: UTF8.self) == Self.bodyJSON)
    }

    @Test func unsignedEventBytes() {
        let e = LedgerEvent(id: EventID(bytes: [UInt8](repeating: 0, count: 32)), author: Self.auth.executor,
                            authorSeq: 1, createdAt: Instant(seconds: 4), body: Self.body, signature: [])
        let expected = #"{"author":"\#(Self.h03)","authorSeq":1,"body":\#(Self.bodyJSON),"createdAt":4000000000,"type":"ledgerEvent"}"#
        #expect(String(decoding: e.unsignedCanonical.bytes, as: UTF8.self) == expected)
    }

    @Test func genesisBytesSortGrantsAndSeeds() {
        let g = Genesis(networkID: "testnet", grants: [Self.auth.requester: Credits(credits: 100)], seeds: ["b:1", "a:2"])
        let params = #"{"abstainingJudgePenalty":50000,"duelProbability":100000,"judgeFee":200000,"judgesPerDuel":3,"loserBondShare":500000,"minorityJudgePenalty":200000,"pricePerJob":1000000}"#
        let expected = #"{"grants":{"\#(Self.h02)":100000000},"networkID":"testnet","parameters":\#(params),"seeds":["a:2","b:1"],"type":"genesis"}"#
        #expect(String(decoding: g.canonical.bytes, as: UTF8.self) == expected)
        #expect(g.hash(LedgerFx.crypto) == LedgerFx.crypto.sha256(Array(expected.utf8)))
        #expect(g.totalSupply == Credits(credits: 100))
        #expect(g.problems.isEmpty)
    }

    @Test func genesisDecodesWithDefaultsAndRoundTrips() throws {
        let json = #"{"networkID":"n","parameters":{"judgesPerDuel":5},"grants":{"\#(Self.h02)":7},"seeds":["x:1"]}"#
        let g = try JSONDecoder().decode(Genesis.self, from: Data(json.utf8))
        #expect(g.parameters == GenesisParameters(judgesPerDuel: 5))
        #expect(g.grants == [Self.auth.requester: Credits(micro: 7)])
        #expect(g.seeds == ["x:1"])
        let again = try JSONDecoder().decode(Genesis.self, from: JSONEncoder().encode(g))
        #expect(again == g)
        let bad = Genesis(networkID: "", parameters: GenesisParameters(duelProbability: 2_000_000),
                          grants: [Self.auth.requester: Credits(micro: -1)])
        #expect(bad.problems.count == 3)
    }

    @Test func eventCodableRoundTripKeepsIdentity() throws {
        let receipt = LedgerFx.event(2, 1, LedgerFx.receipt(requester: 1, executor: 2, seq: 1))
        let duel = LedgerFx.event(1, 1, .duelSettlement(LedgerFx.settlement(
            requester: 1, first: 2, second: 3, judges: [4, 5, 6], verdicts: [4: .first, 5: .tie])))
        for e in [receipt, duel] {
            let data = try JSONEncoder().encode(e)
            let back = try JSONDecoder().decode(LedgerEvent.self, from: data)
            #expect(back == e)
            #expect(back.computedID(LedgerFx.crypto) == e.id)
            #expect(e.idHex.count == 64)
        }
        let object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(receipt)) as! [String: Any]
        #expect(Set(object.keys) == ["id", "author", "authorSeq", "createdAt", "body", "signature"])
        #expect(object["id"] as? String == receipt.idHex)
    }
}

@Suite("Ledger: directives")
struct LedgerDirectiveTests {
    typealias Fx = LedgerFx

    @Test func appendPersistsThenPublishesWithNextSequence() {
        var l = Fx.ledger()
        let body1 = Fx.receipt(requester: 1, executor: 2, seq: 1)
        let body2 = Fx.receipt(requester: 3, executor: 2, seq: 1)
        let e1 = Fx.event(2, 1, body1), e2 = Fx.event(2, 2, body2, at: Fx.t0 + .seconds(1))
        #expect(l.append(body1, now: Fx.t0, signer: Fx.signer(2)) == [.persist([e1]), .publish([e1])])
        #expect(l.append(body2, now: Fx.t0 + .seconds(1), signer: Fx.signer(2)) == [.persist([e2]), .publish([e2])])
        #expect(l.digest() == [Fx.node(2): 2])
        #expect(l.balance(of: Fx.node(2)) == Credits(credits: 102))
        #expect(l.balance(of: Fx.node(1)) == Credits(credits: 99))
        #expect(l.balance(of: Fx.node(3)) == Credits(credits: 99))
        #expect(l.totalBalance == l.genesis.totalSupply)
    }

    @Test func appendOfInvalidBodyIsRejectedAndDoesNotConsumeSequence() {
        var l = Fx.ledger()
        let wrong = Fx.receipt(requester: 1, executor: 3, seq: 1)  // names executor 3, author is 2
        #expect(l.append(wrong, now: Fx.t0, signer: Fx.signer(2)) == [.rejected(Fx.event(2, 1, wrong), .wrongExecutor)])
        #expect(l.highWater(of: Fx.node(2)) == 0)
        #expect(l.chainedCount == 0)
    }

    @Test func receiveValidPersistsBeforeAcknowledging() {
        var l = Fx.ledger()
        let e = Fx.event(2, 1, Fx.receipt(requester: 1, executor: 2, seq: 1))
        #expect(l.receive([e], from: Fx.node(9), now: Fx.t0)
                == [.persist([e]), .acknowledge(to: Fx.node(9), digest: [Fx.node(2): 1])])
        #expect(Fx.deltas(l) == [Fx.node(1): -1_000_000, Fx.node(2): 1_000_000])
    }

    @Test func receiveRejectsBadAuthorSignature() {
        var l = Fx.ledger()
        let good = Fx.event(2, 1, Fx.receipt(requester: 1, executor: 2, seq: 1))
        let forged = LedgerEvent(id: good.id, author: good.author, authorSeq: 1, createdAt: good.createdAt,
                                 body: good.body, signature: Fx.signer(3).sign(good.unsignedCanonical.bytes))
        #expect(l.receive([forged], from: Fx.node(9), now: Fx.t0)
                == [.rejected(forged, .badSignature), .acknowledge(to: Fx.node(9), digest: [:])])
        #expect(l.chainedCount == 0 && Fx.deltas(l).isEmpty)
    }

    @Test func receiveRejectsRuleBreakers() {
        let cases: [(LedgerEvent, LedgerRejection)] = [
            // executor 3 publishes an authorization naming executor 2
            (Fx.event(3, 1, Fx.receipt(requester: 1, executor: 2, seq: 1)), .wrongExecutor),
            // authorization signed by someone other than the requester
            (Fx.event(2, 1, Fx.receipt(requester: 1, executor: 2, seq: 1, signedBy: 5)), .badAuthorization),
            // published after the authorization expired
            (Fx.event(2, 1, Fx.receipt(requester: 1, executor: 2, seq: 1, expiresAt: Fx.t0 - .seconds(1))),
             .expiredAuthorization),
            (Fx.event(2, 1, Fx.receipt(requester: 2, executor: 2, seq: 1)), .selfPayment),
            (Fx.event(2, 1, Fx.receipt(requester: 1, executor: 2, seq: 1, price: Credits(micro: -1))), .badAmount),
            (Fx.event(2, 1, Fx.receipt(requester: 1, executor: 2, seq: 1, price: Credits(credits: 1201))), .badAmount),
            (Fx.event(2, 0, Fx.receipt(requester: 1, executor: 2, seq: 1)), .badSequence),
            (Fx.event(2, 1, Fx.receipt(requester: 1, executor: 2, seq: 1), at: Fx.t0 + .seconds(601)), .fromTheFuture),
        ]
        for (e, reason) in cases {
            var l = Fx.ledger()
            #expect(l.receive([e], from: Fx.node(9), now: Fx.t0)
                    == [.rejected(e, reason), .acknowledge(to: Fx.node(9), digest: [:])], "\(reason)")
            #expect(l.chainedCount == 0)
        }
        #expect(LedgerRejection.fromTheFuture.isTransient && !LedgerRejection.wrongExecutor.isTransient)
    }

    @Test func receiveRejectsTamperedID() {
        var l = Fx.ledger()
        let good = Fx.event(2, 1, Fx.receipt(requester: 1, executor: 2, seq: 1))
        let other = Fx.event(2, 1, Fx.receipt(requester: 1, executor: 2, seq: 2))
        let tampered = LedgerEvent(id: other.id, author: good.author, authorSeq: 1, createdAt: good.createdAt,
                                   body: good.body, signature: good.signature)
        #expect(l.receive([tampered], from: Fx.node(9), now: Fx.t0)
                == [.rejected(tampered, .idMismatch), .acknowledge(to: Fx.node(9), digest: [:])])
    }

    @Test func gapIsBufferedThenFilled() {
        var l = Fx.ledger()
        let e1 = Fx.event(2, 1, Fx.receipt(requester: 1, executor: 2, seq: 1))
        let e2 = Fx.event(2, 2, Fx.receipt(requester: 1, executor: 2, seq: 2))
        let e3 = Fx.event(2, 3, Fx.receipt(requester: 1, executor: 2, seq: 3))
        #expect(l.receive([e3, e2], from: Fx.node(9), now: Fx.t0) == [.acknowledge(to: Fx.node(9), digest: [:])])
        #expect(l.bufferedCount == 2 && l.chainedCount == 0 && Fx.deltas(l).isEmpty)
        #expect(l.receive([e1], from: Fx.node(9), now: Fx.t0)
                == [.persist([e1, e2, e3]), .acknowledge(to: Fx.node(9), digest: [Fx.node(2): 3])])
        #expect(l.bufferedCount == 0)
        #expect(Fx.deltas(l) == [Fx.node(1): -3_000_000, Fx.node(2): 3_000_000])
    }

    @Test func bufferBoundsRefuseTransiently() {
        var l = Fx.ledger(LedgerConfig(maxBufferedEvents: 1, maxLookahead: 3))
        let far = Fx.event(2, 5, Fx.receipt(requester: 1, executor: 2, seq: 5))
        let e2 = Fx.event(2, 2, Fx.receipt(requester: 1, executor: 2, seq: 2))
        let e3 = Fx.event(2, 3, Fx.receipt(requester: 1, executor: 2, seq: 3))
        #expect(l.receive([far, e2, e3], from: Fx.node(9), now: Fx.t0)
                == [.rejected(far, .tooFarAhead), .rejected(e3, .bufferFull), .acknowledge(to: Fx.node(9), digest: [:])])
        #expect(l.bufferedCount == 1)
    }

    @Test func receiveBatchIsBounded() {
        var l = Fx.ledger(LedgerConfig(maxReceiveBatch: 1))
        let e1 = Fx.event(2, 1, Fx.receipt(requester: 1, executor: 2, seq: 1))
        let e2 = Fx.event(2, 2, Fx.receipt(requester: 1, executor: 2, seq: 2))
        #expect(l.receive([e1, e2], from: Fx.node(9), now: Fx.t0)
                == [.persist([e1]), .rejected(e2, .batchTooLarge), .acknowledge(to: Fx.node(9), digest: [Fx.node(2): 1])])
        #expect(l.receive([], from: Fx.node(9), now: Fx.t0) == [])
    }

    @Test func duplicateEventIsIgnored() {
        var l = Fx.ledger()
        let e = Fx.event(2, 1, Fx.receipt(requester: 1, executor: 2, seq: 1))
        _ = l.receive([e], from: Fx.node(9), now: Fx.t0)
        #expect(l.receive([e, e], from: Fx.node(8), now: Fx.t0) == [.acknowledge(to: Fx.node(8), digest: [Fx.node(2): 1])])
        #expect(Fx.deltas(l) == [Fx.node(1): -1_000_000, Fx.node(2): 1_000_000])
    }

    @Test func duplicateReceiptForOneJobCountsOnce() {
        var l = Fx.ledger()
        let body = Fx.receipt(requester: 1, executor: 2, seq: 1)
        let e1 = Fx.event(2, 1, body), e2 = Fx.event(2, 2, body, at: Fx.t0 + .seconds(1))
        #expect(e1.id != e2.id)
        _ = l.receive([e2, e1], from: Fx.node(9), now: Fx.t0 + .seconds(1))
        #expect(l.chainedCount == 2)
        #expect(Fx.deltas(l) == [Fx.node(1): -1_000_000, Fx.node(2): 1_000_000])
    }

    @Test func equivocationIsProvenAndExcludesTheAuthor() {
        var l = Fx.ledger()
        let a = Fx.event(2, 1, Fx.receipt(requester: 1, executor: 2, seq: 1))
        let b = Fx.event(2, 1, Fx.receipt(requester: 3, executor: 2, seq: 1))
        let other = Fx.event(4, 1, Fx.receipt(requester: 2, executor: 4, seq: 7))  // 2 pays 4: not 2's event
        _ = l.receive([a, other], from: Fx.node(9), now: Fx.t0)
        #expect(Fx.deltas(l) == [Fx.node(1): -1_000_000, Fx.node(4): 1_000_000])
        let proof = EquivocationProof(a, b)
        #expect(l.receive([b], from: Fx.node(9), now: Fx.t0)
                == [.persist([b]), .equivocation(proof), .acknowledge(to: Fx.node(9), digest: [Fx.node(2): 1, Fx.node(4): 1])])
        #expect(proof.verify(Fx.crypto))
        #expect(l.isEquivocating(Fx.node(2)) && l.equivocators == [Fx.node(2)] && l.equivocationProofs == [proof])
        // 2's own receipt no longer counts; the payment 2 signed to 4 still does.
        #expect(Fx.deltas(l) == [Fx.node(2): -1_000_000, Fx.node(4): 1_000_000])
        // Later events of 2 are kept but never counted; further conflicts add nothing.
        let c = Fx.event(2, 1, Fx.receipt(requester: 5, executor: 2, seq: 1))
        let next = Fx.event(2, 2, Fx.receipt(requester: 5, executor: 2, seq: 2))
        #expect(l.receive([c, next], from: Fx.node(9), now: Fx.t0)
                == [.persist([next]), .acknowledge(to: Fx.node(9), digest: [Fx.node(2): 2, Fx.node(4): 1])])
        #expect(Fx.deltas(l) == [Fx.node(2): -1_000_000, Fx.node(4): 1_000_000])
    }

    @Test func equivocationInsideTheBufferIsProven() {
        var l = Fx.ledger()
        let a = Fx.event(2, 2, Fx.receipt(requester: 1, executor: 2, seq: 1))
        let b = Fx.event(2, 2, Fx.receipt(requester: 3, executor: 2, seq: 1))
        let proof = EquivocationProof(a, b)
        #expect(l.receive([a, b], from: Fx.node(9), now: Fx.t0)
                == [.persist([proof.first, proof.second]), .equivocation(proof), .acknowledge(to: Fx.node(9), digest: [:])])
        let e1 = Fx.event(2, 1, Fx.receipt(requester: 1, executor: 2, seq: 9))
        // The buffered one joins the chain without being persisted a second time.
        #expect(l.receive([e1], from: Fx.node(9), now: Fx.t0)
                == [.persist([e1]), .acknowledge(to: Fx.node(9), digest: [Fx.node(2): 2])])
        #expect(Fx.deltas(l).isEmpty)
    }

    @Test func forgedEquivocationProofDoesNotVerify() {
        let a = Fx.event(2, 1, Fx.receipt(requester: 1, executor: 2, seq: 1))
        let b = Fx.event(2, 1, Fx.receipt(requester: 3, executor: 2, seq: 1))
        let forgedB = LedgerEvent(id: b.id, author: b.author, authorSeq: 1, createdAt: b.createdAt, body: b.body,
                                  signature: Fx.signer(5).sign(b.unsignedCanonical.bytes))
        #expect(!EquivocationProof(a, forgedB).verify(Fx.crypto))
    }

    @Test func digestAndEventsMissing() {
        var l = Fx.ledger()
        let lo = min(Fx.node(2), Fx.node(3)) == Fx.node(2) ? 2 : 3
        let hi = lo == 2 ? 3 : 2
        let a1 = Fx.event(lo, 1, Fx.receipt(requester: 1, executor: lo, seq: 1))
        let a2 = Fx.event(lo, 2, Fx.receipt(requester: 1, executor: lo, seq: 2))
        let b1 = Fx.event(hi, 1, Fx.receipt(requester: 1, executor: hi, seq: 3))
        _ = l.receive([b1, a2, a1], from: Fx.node(9), now: Fx.t0)
        #expect(l.digest() == [Fx.node(lo): 2, Fx.node(hi): 1])
        let (nlo, nhi) = (Fx.node(lo), Fx.node(hi))
        #expect(l.rangesMissing(from: [:], limit: 10)
                == [LedgerRange(author: nlo, afterSeq: 0, count: 2), LedgerRange(author: nhi, afterSeq: 0, count: 1)])
        #expect(l.rangesMissing(from: [:], limit: 2) == [LedgerRange(author: nlo, afterSeq: 0, count: 2)])
        #expect(l.rangesMissing(from: [nlo: 1], limit: 10)
                == [LedgerRange(author: nlo, afterSeq: 1, count: 1), LedgerRange(author: nhi, afterSeq: 0, count: 1)])
        #expect(l.rangesMissing(from: [nlo: 2, nhi: 1], limit: 10) == [])
        #expect(l.rangesMissing(from: [nlo: 5, nhi: 0], limit: 10) == [LedgerRange(author: nhi, afterSeq: 0, count: 1)])
        #expect(l.rangesMissing(from: [:], limit: 0) == [])
        // The simulator's store reads the ranges as the node's SQLite store does.
        var log = SimEventLog()
        _ = log.append([b1, a2, a1])
        #expect(log.events(in: l.rangesMissing(from: [nlo: 1], limit: 10)) == [a2, b1])
    }

    @Test func restoreIsIdempotentAndNeverAppliesTwice() {
        var source = Fx.ledger()
        var events = [LedgerEvent]()
        for seq in UInt64(1)...4 {
            let d = source.append(Fx.receipt(requester: 1, executor: 2, seq: seq), now: Fx.t0, signer: Fx.signer(2))
            guard case .persist(let es) = d[0] else { Issue.record("expected persist"); return }
            events += es
        }
        var l = Fx.ledger()
        var rng = SeededPRNG(seed: 7)
        let first = l.restore(events.shuffled(using: &rng))
        #expect(first == LedgerRestoreSummary(restored: 4, duplicates: 0, corrupt: [], equivocators: []))
        #expect(l.balances == source.balances && l.digest() == [Fx.node(2): 4])
        let second = l.restore(events)
        #expect(second == LedgerRestoreSummary(restored: 0, duplicates: 4, corrupt: [], equivocators: []))
        #expect(l.balances == source.balances)
        #expect(l.receive(events, from: Fx.node(9), now: Fx.t0) == [.acknowledge(to: Fx.node(9), digest: [Fx.node(2): 4])])
        #expect(l.balances == source.balances)
        // The local node continues its chain after the restored high-water.
        let body = Fx.receipt(requester: 3, executor: 2, seq: 1)
        let e5 = Fx.event(2, 5, body)
        #expect(l.append(body, now: Fx.t0, signer: Fx.signer(2)) == [.persist([e5]), .publish([e5])])
    }

    @Test func restoreSkipsCorruptRowsAndRefindsEquivocation() {
        let a = Fx.event(2, 1, Fx.receipt(requester: 1, executor: 2, seq: 1))
        let b = Fx.event(2, 1, Fx.receipt(requester: 3, executor: 2, seq: 1))
        let good = Fx.event(4, 1, Fx.receipt(requester: 1, executor: 4, seq: 2))
        let corrupt = LedgerEvent(id: a.id, author: Fx.node(5), authorSeq: 1, createdAt: a.createdAt, body: a.body,
                                  signature: a.signature)
        var l = Fx.ledger()
        let s = l.restore([good, b, corrupt, a], verifySignatures: true)
        #expect(s == LedgerRestoreSummary(restored: 3, duplicates: 0, corrupt: [a.id], equivocators: [Fx.node(2)]))
        #expect(l.isEquivocating(Fx.node(2)))
        #expect(Fx.deltas(l) == [Fx.node(1): -1_000_000, Fx.node(4): 1_000_000])
    }

    @Test func effectiveStakeAndCanCover() {
        var l = Fx.ledger()
        #expect(l.effectiveStake(declared: Credits(credits: 30), of: Fx.node(1)) == Credits(credits: 30))
        #expect(l.effectiveStake(declared: Credits(credits: 300), of: Fx.node(1)) == Credits(credits: 100))
        #expect(l.effectiveStake(declared: Credits(credits: -3), of: Fx.node(1)) == .zero)
        #expect(l.canCover(Fx.node(1), price: Credits(credits: 100)))
        // Node 1 signs away 101 credits: negative balance, no stake, cannot pay.
        _ = l.receive([Fx.event(2, 1, Fx.receipt(requester: 1, executor: 2, seq: 1, price: Credits(credits: 101)))],
                      from: Fx.node(9), now: Fx.t0)
        #expect(l.balance(of: Fx.node(1)) == Credits(credits: -1))
        #expect(l.effectiveStake(declared: Credits(credits: 30), of: Fx.node(1)) == .zero)
        #expect(!l.canCover(Fx.node(1), price: Credits(micro: 1)))
        #expect(l.canCover(Fx.node(2), price: Credits(credits: 201)))
        #expect(!l.canCover(Fx.node(2), price: Credits(credits: 202)))
        #expect(l.effectiveStake(declared: Credits(credits: 1), of: Fx.node(11)) == Credits(credits: 1))
    }
}
