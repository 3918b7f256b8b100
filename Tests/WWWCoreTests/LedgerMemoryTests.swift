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
