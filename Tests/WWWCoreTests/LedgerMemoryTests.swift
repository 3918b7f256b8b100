import Testing
@testable import WWWCore
import WWWSim

/// The ledger keeps its events in the driver's store, and in memory only what balances,
/// verification and anti-entropy need (docs/protocol.md, "Ledger memory").
@Suite("Ledger: bounded memory")
struct LedgerMemoryTests {
    typealias Fx = LedgerFx

    /// Receipts by executor 2, one per second, each authorization living `ttl`.
    private func receipts(_ n: Int, ttl: Duration = .seconds(30), requester: Int = 1) -> [LedgerEvent] {
        (1...n).map { i in
            let at = Fx.t0 + .seconds(Int64(i))
            return Fx.event(2, UInt64(i), Fx.receipt(requester: requester, executor: 2, seq: UInt64(i), expiresAt: at + ttl), at: at)
        }
    }

    @Test("effect keys are forgotten once the author's chain passes their expiry; balances stay exact")
    func expiredEffectKeysArePruned() {
        var l = Fx.ledger()
        let events = receipts(600, ttl: .seconds(30))
        for chunk in events.ledgerChunked(100) { _ = l.receive(chunk, from: Fx.node(9), now: Fx.t0 + .seconds(700)) }
        #expect(l.chainedCount == 600 && l.highWater(of: Fx.node(2)) == 600)
        #expect(l.balance(of: Fx.node(2)) == Credits(credits: 700) && l.balance(of: Fx.node(1)) == Credits(credits: -500))
        // At most the amortised bound: 2 × (keys alive after the last prune) + 64.
        #expect(l.liveEffectCount <= 2 * 31 + 64)
        #expect(l.liveReceipts(of: Fx.node(2)).allSatisfy { $0.expiresAt >= Fx.t0 + .seconds(600 - 31 - 64 * 2) })
    }

    @Test("a replayed receipt after its key was pruned can never count: it is expired or before its predecessor")
    func aReplayAfterPruningCannotCount() {
        var l = Fx.ledger()
        let events = receipts(300, ttl: .seconds(10))
        _ = l.receive(events, from: Fx.node(9), now: Fx.t0 + .seconds(400))
        let before = l.balances
        // Receipt for job 1 again at seq 301: created within the authorization (before its
        // predecessor, so uncounted) …
        let backdated = Fx.event(2, 301, Fx.receipt(requester: 1, executor: 2, seq: 1, expiresAt: Fx.t0 + .seconds(11)),
                                 at: Fx.t0 + .seconds(5))
        #expect(l.receive([backdated], from: Fx.node(9), now: Fx.t0 + .seconds(400))
                == [.persist([backdated]), .acknowledge(to: Fx.node(9), digest: [Fx.node(2): 301])])
        #expect(l.balances == before && l.regressedCount == 1)
        // … or created after it: refused.
        let late = Fx.event(2, 302, Fx.receipt(requester: 1, executor: 2, seq: 1, expiresAt: Fx.t0 + .seconds(11)),
                            at: Fx.t0 + .seconds(400))
        #expect(l.receive([late], from: Fx.node(9), now: Fx.t0 + .seconds(400))
                == [.rejected(late, .expiredAuthorization), .acknowledge(to: Fx.node(9), digest: [Fx.node(2): 301])])
    }

    @Test("append never signs an event before its own predecessor (a clock that went back)")
    func appendKeepsCreatedAtMonotonic() {
        var l = Fx.ledger()
        _ = l.append(Fx.receipt(requester: 1, executor: 2, seq: 1), now: Fx.t0 + .seconds(10), signer: Fx.signer(2))
        let d = l.append(Fx.receipt(requester: 1, executor: 2, seq: 2), now: Fx.t0, signer: Fx.signer(2))
        guard case .persist(let es)? = d.first else { Issue.record("expected persist"); return }
        #expect(es.first?.createdAt == Fx.t0 + .seconds(10))
        #expect(l.balance(of: Fx.node(2)) == Credits(credits: 102) && l.regressedCount == 0)
    }

    @Test("an old conflicting event goes to the store as a candidate; the store's report proves it")
    func oldConflictsAreProvenThroughTheStore() {
        var s = StoredLedger(Fx.ledger(LedgerConfig(recentPerAuthor: 4)))
        let events = receipts(20)
        s.receive(events, from: Fx.node(9), now: Fx.t0 + .seconds(30))
        let rival = Fx.event(2, 3, Fx.receipt(requester: 3, executor: 2, seq: 3), at: Fx.t0 + .seconds(3))
        // Without the store the ledger cannot tell: it asks the store to write it.
        var bare = s.ledger
        #expect(bare.receive([rival], from: Fx.node(9), now: Fx.t0 + .seconds(30))
                == [.persist([rival]), .acknowledge(to: Fx.node(9), digest: [Fx.node(2): 20])])
        #expect(!bare.isEquivocating(Fx.node(2)))
        // The store holds events[2] at that slot: the conflict comes back and is proven.
        let proof = EquivocationProof(events[2], rival)
        #expect(bare.storedConflict(events[2], rival) == [.equivocation(proof)])
        #expect(bare.isEquivocating(Fx.node(2)) && Fx.deltas(bare).isEmpty)
        #expect(bare.storedConflict(events[2], rival) == [])
        // The driven replica does the same on its own.
        let out = s.receive([rival], from: Fx.node(9), now: Fx.t0 + .seconds(30))
        #expect(out.contains(.equivocation(proof)))
        #expect(s.ledger.balances == bare.balances)
        // An old duplicate is a candidate too, and the store ignores it.
        #expect(s.log.count == 21)
        s.receive([events[1]], from: Fx.node(9), now: Fx.t0 + .seconds(30))
        #expect(s.log.count == 21)
    }

    @Test("a stored 'conflict' that is not genuine proves nothing")
    func storedConflictChecksBothEvents() {
        var l = Fx.ledger()
        let a = Fx.event(2, 1, Fx.receipt(requester: 1, executor: 2, seq: 1))
        let b = Fx.event(2, 1, Fx.receipt(requester: 3, executor: 2, seq: 1))
        let forged = LedgerEvent(id: b.id, author: b.author, authorSeq: 1, createdAt: b.createdAt, body: b.body,
                                 signature: Fx.signer(5).sign(b.unsignedCanonical.bytes))
        let elsewhere = Fx.event(2, 2, Fx.receipt(requester: 3, executor: 2, seq: 2))
        #expect(l.storedConflict(a, forged) == [])
        #expect(l.storedConflict(a, elsewhere) == [])
        #expect(l.storedConflict(a, a) == [])
        #expect(!l.isEquivocating(Fx.node(2)))
    }

    @Test("restoring page by page gives the state of one whole restore", arguments: [1, 7, 64])
    func pagedRestoreEqualsWholeRestore(pageSize: Int) {
        var source = StoredLedger()
        source.receive(receipts(150, ttl: .seconds(20)) + receipts(1, requester: 3).map { _ in
            Fx.event(4, 1, Fx.receipt(requester: 5, executor: 4, seq: 1))
        }, from: Fx.node(9), now: Fx.t0 + .seconds(200))
        let all = source.heldEvents
        var whole = Fx.ledger()
        _ = whole.restore(all)
        var paged = Fx.ledger()
        var summary = LedgerRestoreSummary()
        var i = 0
        while i < all.count {
            summary.merge(paged.restore(Array(all[i..<min(all.count, i + pageSize)])))
            i += pageSize
        }
        #expect(summary == LedgerRestoreSummary(restored: 151))
        #expect(paged.balances == whole.balances && paged.digest() == whole.digest())
        #expect(paged.balances == source.ledger.balances && paged.liveEffectCount == whole.liveEffectCount)
    }

    @Test("a settlement after its acceptances expired is refused")
    func expiredAcceptanceIsRefused() {
        var l = Fx.ledger()
        let s = Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6], verdicts: [4: .first, 5: .first, 6: .first])
        let late = Fx.event(1, 1, .duelSettlement(s), at: s.expiresAt + .seconds(1))
        #expect(l.receive([late], from: Fx.node(9), now: late.createdAt)
                == [.rejected(late, .expiredAcceptance), .acknowledge(to: Fx.node(9), digest: [:])])
    }
}

@Suite("Ledger: bounded memory, hostile histories")
struct LedgerMemoryHostileTests {
    typealias Fx = LedgerFx

    /// 300 receipts by executor 2 (requester 1), one per second, authorizations living 10 s.
    private func longChain(_ l: inout Ledger) {
        let events = (1...300).map { i in
            let at = Fx.t0 + .seconds(Int64(i))
            return Fx.event(2, UInt64(i), Fx.receipt(requester: 1, executor: 2, seq: UInt64(i), expiresAt: at + .seconds(10)), at: at)
        }
        _ = l.receive(events, from: Fx.node(9), now: Fx.t0 + .seconds(400))
        #expect(l.liveEffectCount < 300)   // keys were pruned
    }

    @Test("a back-dated event cannot open the way for a second, equally back-dated replay (receipt)")
    func twoStepReceiptReplay() {
        var l = Fx.ledger()
        longChain(&l)
        let before = l.balances
        let filler = Fx.event(2, 301, Fx.receipt(requester: 3, executor: 2, seq: 1, expiresAt: Fx.t0 + .seconds(900)), at: Fx.t0 + .seconds(5))
        let replay = Fx.event(2, 302, Fx.receipt(requester: 1, executor: 2, seq: 1, expiresAt: Fx.t0 + .seconds(11)), at: Fx.t0 + .seconds(5))
        _ = l.receive([filler, replay], from: Fx.node(9), now: Fx.t0 + .seconds(400))
        #expect(l.highWater(of: Fx.node(2)) == 302)
        #expect(l.balances == before && l.regressedCount == 2)
        // The same history, short enough that nothing was pruned, gives the same balances.
        var short = Fx.ledger()
        let few = (1...3).map { i in
            let at = Fx.t0 + .seconds(Int64(100 + i))
            return Fx.event(2, UInt64(i), Fx.receipt(requester: 1, executor: 2, seq: UInt64(i + 10), expiresAt: at + .seconds(10)), at: at)
        }
        let f2 = Fx.event(2, 4, Fx.receipt(requester: 3, executor: 2, seq: 1, expiresAt: Fx.t0 + .seconds(900)), at: Fx.t0 + .seconds(5))
        let r2 = Fx.event(2, 5, Fx.receipt(requester: 1, executor: 2, seq: 11, expiresAt: Fx.t0 + .seconds(111)), at: Fx.t0 + .seconds(5))
        _ = short.receive(few + [f2, r2], from: Fx.node(9), now: Fx.t0 + .seconds(400))
        #expect(Fx.deltas(short) == [Fx.node(1): -3_000_000, Fx.node(2): 3_000_000])
    }

    @Test("the same two-step replay of a settlement moves no bond twice")
    func twoStepSettlementReplay() {
        var l = Fx.ledger()
        // Requester 1 settles 200 duels, one per second (acceptances living 10 s each).
        var events: [LedgerEvent] = []
        for i in 1...200 {
            var s = Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6], verdicts: [4: .first, 5: .first, 6: .first],
                                  seq: UInt64(i))
            let at = Fx.t0 + .seconds(Int64(i))
            s = Self.expiring(s, at: at + .seconds(10))
            events.append(Fx.event(1, UInt64(i), .duelSettlement(s), at: at))
        }
        _ = l.receive(events, from: Fx.node(9), now: Fx.t0 + .seconds(300))
        let before = l.balances
        let first = Self.expiring(Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6],
                                                verdicts: [4: .first, 5: .first, 6: .first], seq: 1), at: Fx.t0 + .seconds(11))
        let filler = Self.expiring(Fx.settlement(requester: 1, first: 2, second: 3, judges: [4, 5, 6],
                                                 verdicts: [4: .tie, 5: .tie, 6: .tie], seq: 999), at: Fx.t0 + .seconds(900))
        _ = l.receive([Fx.event(1, 201, .duelSettlement(filler), at: Fx.t0 + .seconds(5)),
                       Fx.event(1, 202, .duelSettlement(first), at: Fx.t0 + .seconds(5))], from: Fx.node(9), now: Fx.t0 + .seconds(300))
        #expect(l.highWater(of: Fx.node(1)) == 202 && l.balances == before)
    }

    /// `s` with both acceptances re-signed to expire at `at`.
    static func expiring(_ s: DuelSettlement, at: Instant) -> DuelSettlement {
        var a1 = s.first.value, a2 = s.second.value
        a1.expiresAt = at
        a2.expiresAt = at
        let signer1 = Fx.signers.first { $0.nodeID == a1.executor }!, signer2 = Fx.signers.first { $0.nodeID == a2.executor }!
        return DuelSettlement(job: s.job, firstResponseHash: s.firstResponseHash, secondResponseHash: s.secondResponseHash,
                              first: Signed(a1, by: signer1), second: Signed(a2, by: signer2), verdicts: s.verdicts, judgeFees: s.judgeFees)
    }

    @Test("replayed old events cost at most maxCandidatesPerReceive checks per message, and none once checked")
    func oldReplaysAreBounded() {
        var l = Fx.ledger()
        let events = (1...1100).map { i in
            Fx.event(2, UInt64(i), Fx.receipt(requester: 1, executor: 2, seq: UInt64(i)), at: Fx.t0)
        }
        for chunk in events.ledgerChunked(1000) { _ = l.receive(chunk, from: Fx.node(9), now: Fx.t0) }
        let old = Array(events.prefix(1000))
        var written = 0
        for _ in 0..<5 {
            for case .persist(let es) in l.receive(old, from: Fx.node(8), now: Fx.t0) { written += es.count }
        }
        // 32 per message; the ids checked stay remembered (1024), so later replays of the
        // same 32 are skipped: 5 messages × 32 at most, and far fewer in practice.
        #expect(written <= 5 * 32)
        #expect(l.skippedOldEvents >= 5 * 1000 - written)
    }
}
