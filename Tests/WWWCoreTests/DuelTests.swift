import Testing
@testable import WWWCore

@Suite("Duel: panel, requester machine, judge duty, settlement in the ledger")
struct DuelTests {
    typealias Fx = LedgerFx
    let t0 = LedgerFx.t0

    // MARK: Panel

    @Test("the panel excludes the parties, needs enough stake holders, and is the same for any input order")
    func panelSelection() {
        let job = Fx.job(1, 1)
        let all = (1...12).map { (node: Fx.node($0), stake: Credits(credits: Int64($0))) }
        let p = JudgePanel.select(job: job, requester: Fx.node(1), executors: Fx.node(2), Fx.node(3), candidates: all, count: 3, crypto: Fx.crypto)
        #expect(p?.count == 3)
        #expect(p.map { !$0.contains(Fx.node(1)) && !$0.contains(Fx.node(2)) && !$0.contains(Fx.node(3)) } == true)
        #expect(p == p?.sorted())
        // Recomputable: any order of the candidate list, and executors swapped, give the same panel.
        var rng = SeededPRNG(seed: 5)
        let q = JudgePanel.select(job: job, requester: Fx.node(1), executors: Fx.node(3), Fx.node(2),
                                  candidates: all.shuffled(using: &rng) + all, count: 3, crypto: Fx.crypto)
        #expect(q == p)
        // Zero stake never judges; too few holders: no panel.
        let few = [(node: Fx.node(4), stake: Credits(credits: 1)), (node: Fx.node(5), stake: .zero), (node: Fx.node(6), stake: Credits(credits: 2))]
        #expect(JudgePanel.select(job: job, requester: Fx.node(1), executors: Fx.node(2), Fx.node(3), candidates: few, count: 3, crypto: Fx.crypto) == nil)
        #expect(JudgePanel.select(job: job, requester: Fx.node(1), executors: Fx.node(2), Fx.node(3), candidates: few, count: 2, crypto: Fx.crypto)
                == [Fx.node(4), Fx.node(6)].sorted())
    }

    @Test("panels follow stake: over many jobs a judge with 9× the stake sits on far more panels")
    func panelFollowsStake() {
        let cands = [(node: Fx.node(4), stake: Credits(credits: 90))] + (5...9).map { (node: Fx.node($0), stake: Credits(credits: 10)) }
        var counts: [NodeID: Int] = [:]
        for seq in UInt64(1)...400 {
            let p = JudgePanel.select(job: Fx.job(1, seq), requester: Fx.node(1), executors: Fx.node(2), Fx.node(3),
                                      candidates: cands, count: 1, crypto: Fx.crypto)!
            counts[p[0], default: 0] += 1
        }
        // Expected share 90/140 ≈ 0.64 (≈ 257 of 400); each 10-stake judge ≈ 29.
        #expect((200...310).contains(counts[Fx.node(4)] ?? 0))
        #expect((5...9).allSatisfy { (10...60).contains(counts[Fx.node($0)] ?? 0) })
    }

    // MARK: Requester machine

    private func duel() -> Duel {
        Duel(job: Fx.job(1, 1), requester: Fx.node(1), first: Fx.node(2), second: Fx.node(3),
             judges: [4, 5, 6].map(Fx.node).sorted(), judgingTimeout: .seconds(30))
    }

    private func accept(_ d: inout Duel, _ e: Int, bond: Credits = Credits(credits: 5)) -> [Duel.Directive] {
        d.accepted(Signed(d.acceptance(for: Fx.node(e), bond: bond, expiresAt: t0 + .seconds(600)), by: Fx.signer(e)),
                   now: t0, crypto: Fx.crypto)
    }

    private func verdict(_ spec: DuelPairSpec, judge j: Int, _ o: PairwisePreference, _ s: PairwisePreference) -> Signed<JudgeVerdict> {
        JudgeDuty.verdict(spec, original: o, swapped: s, stakeAtRisk: Credits(credits: 10), signer: Fx.signer(j))
    }

    @Test("both answers in → verdicts requested; all verdicts → a settlement the ledger accepts and applies")
    func fullDuel() {
        var d = duel()
        #expect(accept(&d, 2) == [] && accept(&d, 3) == [])
        let h1 = Fx.hash("answer 1"), h2 = Fx.hash("answer 2")
        #expect(d.finished(Fx.node(2), responseHash: h1, now: t0 + .seconds(1), crypto: Fx.crypto) == [])
        let out = d.finished(Fx.node(3), responseHash: h2, now: t0 + .seconds(2), crypto: Fx.crypto)
        let pair = DuelPair.hash(job: d.job, first: Fx.node(2), firstResponse: h1, second: Fx.node(3), secondResponse: h2, crypto: Fx.crypto)
        let spec = DuelPairSpec(job: d.job, requester: Fx.node(1), first: Fx.node(2), second: Fx.node(3),
                                firstResponseHash: h1, secondResponseHash: h2, pairHash: pair, judges: d.judges)
        #expect(out == [.requestVerdicts(spec, judges: d.judges, deadline: t0 + .seconds(32))])
        #expect(d.phase == .judging(deadline: t0 + .seconds(32)))
        // Judges 4 and 5 prefer the first answer in both orders; 6 is position-biased (A, A) → tie.
        let fee = Credits(micro: 200_000)
        for (j, o, s) in [(4, PairwisePreference.a, PairwisePreference.b), (5, .a, .b)] {
            #expect(d.verdict(verdict(spec, judge: j, o, s), minimumStakeAtRisk: .zero, signer: Fx.signer(1), fee: fee, crypto: Fx.crypto) == [])
        }
        let last = d.verdict(verdict(spec, judge: 6, .a, .a), minimumStakeAtRisk: .zero, signer: Fx.signer(1), fee: fee, crypto: Fx.crypto)
        guard case .settle(let s)? = last.first, last.count == 1 else { Issue.record("expected a settlement"); return }
        #expect(s.majority == .first && s.verdicts.map(\.value.choice) == [.first, .first, .tie].sortedByJudge(s))
        // The ledger validates and applies it: bond 5 from 3 to 2, fees 0.2 each to 4, 5, 6,
        // judge 6 (minority, tie) pays 20 % of 10 = 2 to 4 and 5.
        var l = Fx.ledger()
        let e = Fx.event(1, 1, .duelSettlement(s), at: t0 + .seconds(3))
        #expect(l.receive([e], from: Fx.node(9), now: t0 + .seconds(3)) == [.persist([e]), .acknowledge(to: Fx.node(9), digest: [Fx.node(1): 1])])
        #expect(Fx.deltas(l) == [Fx.node(1): -600_000, Fx.node(2): 5_000_000, Fx.node(3): -5_000_000,
                                 Fx.node(4): 1_200_000, Fx.node(5): 1_200_000, Fx.node(6): -1_800_000])
        #expect(l.totalBalance == l.genesis.totalSupply)
        #expect(d.isOver && d.verdict(verdict(spec, judge: 6, .b, .a), minimumStakeAtRisk: .zero, signer: Fx.signer(1), fee: fee, crypto: Fx.crypto) == [])
    }

    @Test("verdicts off the panel, about another pair, duplicated, forged or under-staked are ignored")
    func badVerdictsAreIgnored() {
        var d = duel()
        _ = accept(&d, 2); _ = accept(&d, 3)
        _ = d.finished(Fx.node(2), responseHash: Fx.hash("a"), now: t0, crypto: Fx.crypto)
        guard case .requestVerdicts(let spec, _, _)? = d.finished(Fx.node(3), responseHash: Fx.hash("b"), now: t0, crypto: Fx.crypto).first
        else { Issue.record("expected verdict requests"); return }
        let fee = Credits(micro: 1)
        func feed(_ v: Signed<JudgeVerdict>, min: Credits = .zero) -> [Duel.Directive] {
            d.verdict(v, minimumStakeAtRisk: min, signer: Fx.signer(1), fee: fee, crypto: Fx.crypto)
        }
        #expect(feed(verdict(spec, judge: 7, .a, .b)) == [])                  // not on the panel
        var other = spec
        other.pairHash = Fx.hash("other pair")
        #expect(feed(verdict(other, judge: 4, .a, .b)) == [])                 // another pair
        let good = verdict(spec, judge: 4, .a, .b)
        let forged = Signed(value: good.value, signer: Fx.node(4), signature: Fx.signer(5).sign(good.value.canonical.bytes))
        #expect(feed(forged) == [])
        #expect(feed(good, min: Credits(credits: 11)) == [])                  // stake at risk below the judge's stake
        #expect(feed(good) == [] && feed(good) == [])                         // kept once
        #expect(d.collectedVerdicts == [good])
        // The deadline settles with the one verdict (the other two judges abstained).
        #expect(d.deadlinePassed(now: t0 + .seconds(29), signer: Fx.signer(1), fee: fee) == [])
        let out = d.deadlinePassed(now: t0 + .seconds(30), signer: Fx.signer(1), fee: fee)
        guard case .settle(let s)? = out.first else { Issue.record("expected a settlement"); return }
        #expect(s.verdicts == [good] && s.majority == nil)   // 1 of 3 is no majority: no bond moves
    }

    @Test("a failed copy, a bad or missing acceptance, or no verdict abandons the duel")
    func abandonments() {
        var d = duel()
        #expect(d.failed(Fx.node(2)) == [.abandon(.executorFailed(Fx.node(2)))] && d.isOver)
        var e = duel()
        let wrongPanel = DuelAcceptance(job: e.job, requester: Fx.node(1), executor: Fx.node(2), judges: [Fx.node(7)],
                                        bond: .zero, expiresAt: t0 + .seconds(60))
        #expect(e.accepted(Signed(wrongPanel, by: Fx.signer(2)), now: t0, crypto: Fx.crypto) == [.abandon(.badAcceptance(from: Fx.node(2)))])
        var f = duel()
        _ = accept(&f, 2)
        _ = f.finished(Fx.node(2), responseHash: Fx.hash("a"), now: t0, crypto: Fx.crypto)
        #expect(f.finished(Fx.node(3), responseHash: Fx.hash("b"), now: t0, crypto: Fx.crypto) == [.abandon(.missingAcceptance)])
        var g = duel()
        _ = accept(&g, 2); _ = accept(&g, 3)
        _ = g.finished(Fx.node(2), responseHash: Fx.hash("a"), now: t0, crypto: Fx.crypto)
        _ = g.finished(Fx.node(3), responseHash: Fx.hash("b"), now: t0, crypto: Fx.crypto)
        #expect(g.deadlinePassed(now: t0 + .seconds(30), signer: Fx.signer(1), fee: .zero) == [.abandon(.noVerdicts)])
    }

    // MARK: Judge duty

    @Test("a judge takes only a consistent request from the duel's requester")
    func judgeDuty() {
        let h1 = Fx.hash("a"), h2 = Fx.hash("b"), job = Fx.job(1, 1)
        let panel = [4, 5, 6].map(Fx.node).sorted()
        let spec = DuelPairSpec(job: job, requester: Fx.node(1), first: Fx.node(2), second: Fx.node(3), firstResponseHash: h1,
                                secondResponseHash: h2,
                                pairHash: DuelPair.hash(job: job, first: Fx.node(2), firstResponse: h1, second: Fx.node(3), secondResponse: h2, crypto: Fx.crypto),
                                judges: panel)
        func refusal(_ s: DuelPairSpec, me: Int = 4, from: Int = 1) -> JudgeDuty.Refusal? {
            JudgeDuty.refusal(s, me: Fx.node(me), from: Fx.node(from), judgesPerDuel: 3, crypto: Fx.crypto)
        }
        #expect(refusal(spec) == nil)
        #expect(refusal(spec, me: 7) == .notOnPanel)
        #expect(refusal(spec, from: 9) == .partyToTheDuel)
        var bad = spec
        bad.pairHash = h1
        #expect(refusal(bad) == .badHashes)
        var small = spec
        small.judges = [Fx.node(4)]
        #expect(refusal(small) == .badPanel)
        let v = JudgeDuty.verdict(spec, original: .b, swapped: .a, stakeAtRisk: Credits(credits: 3), signer: Fx.signer(4))
        #expect(v.value.choice == .second && v.value.pairHash == spec.pairHash && v.isValid(Fx.crypto))
    }
}

private extension Array where Element == DuelChoice {
    /// The choices as the settlement lists them (verdicts ascending by judge).
    func sortedByJudge(_ s: DuelSettlement) -> [DuelChoice] {
        let byJudge: [NodeID: DuelChoice] = [LedgerFx.node(4): self[0], LedgerFx.node(5): self[1], LedgerFx.node(6): self[2]]
        return s.verdicts.map { byJudge[$0.value.judge]! }
    }
}
