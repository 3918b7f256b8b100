import Testing
@testable import WWWCore

@Suite("Ledger: duelSettlement")
struct LedgerDuelTests {
    typealias Fx = LedgerFx

    /// Receives one settlement authored by `author` (default: the requester, node 1).
    private func settle(_ s: DuelSettlement, author: Int = 1, judges: Int = 3) -> (Ledger, [LedgerDirective], LedgerEvent) {
        var l = Fx.ledger(judges: judges)
        let e = Fx.event(author, 1, .duelSettlement(s))
        let d = l.receive([e], from: Fx.node(12), now: Fx.t0)
        return (l, d, e)
    }

    private func expectRejected(_ s: DuelSettlement, _ reason: LedgerRejection, author: Int = 1,
                                sourceLocation: SourceLocation = #_sourceLocation) {
        let (l, d, e) = settle(s, author: author)
        #expect(d == [.rejected(e, reason), .acknowledge(to: Fx.node(12), digest: [:])], sourceLocation: sourceLocation)
        #expect(l.chainedCount == 0, sourceLocation: sourceLocation)
    }

    @Test func winnerTakesLoserBondAndMinorityJudgePaysMajority() {
        let s = Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6],
                              verdicts: [4: .first, 5: .first, 6: .second])
        #expect(s.majority == .first)
        let (l, d, e) = settle(s)
        #expect(d == [.persist([e]), .acknowledge(to: Fx.node(12), digest: [Fx.node(1): 1])])
        #expect(Fx.deltas(l) == [
            Fx.node(1): -600_000,                 // three judge fees of 0.2
            Fx.node(2): 5_000_000,                // the loser's bond
            Fx.node(3): -5_000_000,
            Fx.node(4): 200_000 + 1_000_000,      // fee + half of 20 % of 10 credits
            Fx.node(5): 200_000 + 1_000_000,
            Fx.node(6): 200_000 - 2_000_000,
        ])
        #expect(l.totalBalance == l.genesis.totalSupply)
    }

    @Test func secondWinsWithTheFirstsBond() {
        let s = Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6],
                              verdicts: [4: .second, 5: .second, 6: .second], bond1: Credits(credits: 7))
        let (l, _, _) = settle(s)
        #expect(Fx.deltas(l) == [Fx.node(1): -600_000, Fx.node(2): -7_000_000, Fx.node(3): 7_000_000,
                                 Fx.node(4): 200_000, Fx.node(5): 200_000, Fx.node(6): 200_000])
    }

    @Test func tieMovesNoBondButStillPenalisesTheMinority() {
        let s = Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6],
                              verdicts: [4: .tie, 5: .tie, 6: .first])
        #expect(s.majority == .tie)
        let (l, _, _) = settle(s)
        #expect(Fx.deltas(l) == [Fx.node(1): -600_000, Fx.node(4): 1_200_000, Fx.node(5): 1_200_000,
                                 Fx.node(6): -1_800_000])
    }

    @Test func noMajorityMovesOnlyFees() {
        let split = Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6],
                                  verdicts: [4: .first, 5: .second, 6: .tie])
        #expect(split.majority == nil)
        let (l, _, _) = settle(split)
        #expect(Fx.deltas(l) == [Fx.node(1): -600_000, Fx.node(4): 200_000, Fx.node(5): 200_000, Fx.node(6): 200_000])
        // A left-out verdict cannot make a majority: 1 of a 3-judge panel is not more than half.
        let partial = Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6], verdicts: [4: .first, 5: .second])
        #expect(partial.majority == nil)
        let two = Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6], verdicts: [4: .first, 5: .first])
        #expect(two.majority == .first)
    }

    @Test func penaltyRemainderGoesToTheLowestMajorityJudge() {
        // 20 % of 10.000005 credits = 2_000_001 µcredits, split over two majority judges.
        let s = Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6],
                              verdicts: [4: .second, 5: .second, 6: .first],
                              stakeAtRisk: Credits(micro: 10_000_005))
        let (l, _, _) = settle(s)
        let lowest = min(Fx.node(4), Fx.node(5)), other = max(Fx.node(4), Fx.node(5))
        let d = Fx.deltas(l)
        #expect(d[lowest] == Int64(200_000 + 1_000_001))
        #expect(d[other] == Int64(200_000 + 1_000_000))
        #expect(d[Fx.node(6)] == Int64(200_000 - 2_000_001))
        #expect(l.totalBalance == l.genesis.totalSupply)
    }

    @Test func duplicateSettlementOfOneJobCountsOnce() {
        var l = Fx.ledger()
        let s = Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6], verdicts: [4: .first, 5: .first])
        let e1 = Fx.event(1, 1, .duelSettlement(s)), e2 = Fx.event(1, 2, .duelSettlement(s), at: Fx.t0 + .seconds(1))
        _ = l.receive([e1, e2], from: Fx.node(12), now: Fx.t0 + .seconds(1))
        #expect(l.chainedCount == 2)
        #expect(Fx.deltas(l) == [Fx.node(1): -400_000, Fx.node(2): 5_000_000, Fx.node(3): -5_000_000,
                                 Fx.node(4): 200_000, Fx.node(5): 200_000])
    }

    @Test func invalidSettlementsAreRejected() {
        let base = Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6], verdicts: [4: .first, 5: .first])
        // Published by someone other than the requester named in the acceptances.
        expectRejected(base, .badAcceptance, author: 7)
        // Acceptance signed by another node.
        var forged = base
        forged.second = Signed(base.second.value, by: Fx.signer(8))
        expectRejected(forged, .badAcceptance)
        forged.second = Signed(value: base.second.value, signer: base.second.signer, signature: base.first.signature)
        expectRejected(forged, .badAcceptance)
        // Executors disagree on the panel.
        var panel = base
        var a2 = base.second.value
        a2.judges = [4, 5, 7].map(Fx.node).sorted()
        panel.second = Signed(a2, by: Fx.signer(3))
        expectRejected(panel, .badPanel)
        // An executor on its own panel.
        let selfJudged = Fx.settlement(requester: 1, first: 2, second: 3, judges: [2, 5, 6], verdicts: [5: .first])
        expectRejected(selfJudged, .badPanel)
        // Wrong panel size for the genesis (3).
        let small = Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5], verdicts: [4: .first])
        expectRejected(small, .badPanel)
        // A verdict about another pair of answers.
        var otherPair = base
        var v = base.verdicts[0].value
        v.pairHash = Fx.hash("some other pair")
        otherPair.verdicts[0] = Signed(v, by: Fx.signer(Fx.signers.firstIndex { $0.nodeID == v.judge }! + 1))
        expectRejected(otherPair, .badVerdict)
        // A verdict signed by someone else than its judge.
        var badSig = base
        badSig.verdicts[0] = Signed(base.verdicts[0].value, by: Fx.signer(9))
        expectRejected(badSig, .badVerdict)
        // A verdict from outside the panel.
        let outsider = Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6], verdicts: [4: .first, 7: .first])
        var withOutsider = base
        withOutsider.verdicts = outsider.verdicts
        expectRejected(withOutsider, .badVerdict)
        // Fees not signed by the requester.
        var fees = base
        fees.judgeFees = Signed(base.judgeFees.value, by: Fx.signer(2))
        expectRejected(fees, .badJudgeFees)
        // Negative bond.
        let negative = Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6], verdicts: [4: .first],
                                     bond1: Credits(micro: -1))
        expectRejected(negative, .badAmount)
    }
}

@Suite("Ledger: duel records (win rates)")
struct LedgerDuelRecordTests {
    typealias Fx = LedgerFx

    @Test("counted settlements give each executor wins, losses and ties; an equivocating requester's are uncounted")
    func records() {
        var l = Fx.ledger()
        let won = Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6], verdicts: [4: .first, 5: .first, 6: .second], seq: 1)
        let tied = Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6], verdicts: [4: .tie, 5: .tie], seq: 2)
        let lost = Fx.settlement(requester: 7, first: 2, second: 3, judges: [4, 5, 6], verdicts: [4: .second, 5: .second], seq: 1)
        _ = l.receive([Fx.event(1, 1, .duelSettlement(won)), Fx.event(1, 2, .duelSettlement(tied), at: Fx.t0 + .seconds(1)),
                       Fx.event(7, 1, .duelSettlement(lost))], from: Fx.node(9), now: Fx.t0 + .seconds(1))
        #expect(l.duelRecords[Fx.node(2)] == DuelRecord(wins: 1, losses: 1, ties: 1))
        #expect(l.duelRecords[Fx.node(3)] == DuelRecord(wins: 1, losses: 1, ties: 1))
        #expect(l.duelRecords[Fx.node(2)]?.winRate == 1.0 / 3.0 && l.duelRecords[Fx.node(4)] == nil)
        // Requester 7 equivocates: its settlement stops counting, records included.
        let rival = Fx.event(7, 1, .duelSettlement(Fx.settlement(requester: 7, first: 2, second: 3, judges: [4, 5, 6],
                                                                 verdicts: [4: .first, 5: .first], seq: 9)))
        _ = l.receive([rival], from: Fx.node(9), now: Fx.t0 + .seconds(1))
        #expect(l.isEquivocating(Fx.node(7)))
        #expect(l.duelRecords[Fx.node(2)] == DuelRecord(wins: 1, ties: 1) && l.duelRecords[Fx.node(3)] == DuelRecord(losses: 1, ties: 1))
    }

    @Test("two settlements of one job: only the smaller id's outcome counts, whatever the order")
    func smallerIDWins() {
        let a = Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6], verdicts: [4: .first, 5: .first], seq: 1)
        let b = Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6], verdicts: [4: .second, 5: .second], seq: 1)
        let e1 = Fx.event(1, 1, .duelSettlement(a)), e2 = Fx.event(1, 2, .duelSettlement(b), at: Fx.t0 + .seconds(1))
        var l1 = Fx.ledger(), l2 = Fx.ledger()
        _ = l1.receive([e1, e2], from: Fx.node(9), now: Fx.t0 + .seconds(1))
        _ = l2.receive([e2], from: Fx.node(9), now: Fx.t0 + .seconds(1))
        _ = l2.receive([e1], from: Fx.node(9), now: Fx.t0 + .seconds(1))
        #expect(l1.duelRecords == l2.duelRecords && l1.balances == l2.balances)
        let winner = e1.id < e2.id ? Fx.node(2) : Fx.node(3)
        #expect(l1.duelRecords[winner] == DuelRecord(wins: 1))
    }
}
