import Testing
@testable import WWWCore

/// A random but reproducible set of valid events (receipts, duplicate receipts, duels) and,
/// optionally, an equivocating author whose chain forks.
struct LedgerUniverse {
    var events: [LedgerEvent] = []
    var equivocator: NodeID?
    var now = LedgerFx.t0

    init(seed: UInt64, size: Int, equivocate: Bool) {
        typealias Fx = LedgerFx
        var rng = SeededPRNG(seed: seed)
        var seqs = [Int: UInt64]()
        var bodies = [Int: [LedgerEventBody]]()
        var jobSeq: UInt64 = 0
        func pick(_ n: Int, excluding: Set<Int>) -> [Int] {
            var out = [Int]()
            while out.count < n {
                let x = 1 + Int(rng.next() % 10)
                if !excluding.contains(x) && !out.contains(x) { out.append(x) }
            }
            return out
        }
        for i in 0..<size {
            let at = Fx.t0 + .seconds(Int64(i))
            let roll = rng.next() % 10
            var author: Int
            var body: LedgerEventBody
            if roll == 9, let (a, previous) = bodies.sorted(by: { $0.key < $1.key }).first {
                author = a                                           // republish: a duplicate effect key
                body = previous[Int(rng.next() % UInt64(previous.count))]
            } else if roll >= 7 {
                let parties = pick(3, excluding: [])
                let judges = pick(3, excluding: Set(parties))
                var verdicts = [Int: DuelChoice]()
                for j in judges where rng.next() % 4 != 0 {
                    verdicts[j] = DuelChoice.allCases[Int(rng.next() % 3)]
                }
                jobSeq += 1
                author = parties[0]
                body = .duelSettlement(Fx.settlement(
                    requester: parties[0], first: parties[1], second: parties[2], judges: judges, verdicts: verdicts,
                    bond1: Credits(micro: Int64(rng.next() % 5_000_000)), bond2: Credits(micro: Int64(rng.next() % 5_000_000)),
                    stakeAtRisk: Credits(micro: Int64(rng.next() % 20_000_000)), seq: jobSeq))
            } else {
                let parties = pick(2, excluding: [])
                jobSeq += 1
                author = parties[1]
                body = Fx.receipt(requester: parties[0], executor: parties[1], seq: jobSeq,
                                  price: Credits(micro: 1 + Int64(rng.next() % 3_000_000)))
            }
            seqs[author, default: 0] += 1
            bodies[author, default: []].append(body)
            events.append(Fx.event(author, seqs[author]!, body, at: at))
        }
        now = Fx.t0 + .seconds(Int64(size + 1))
        guard equivocate else { return }
        // The most active author forks its chain at a random point and continues both branches.
        let x = seqs.max { ($0.value, $1.key) < ($1.value, $0.key) }!.key
        let forkAt = 1 + rng.next() % seqs[x]!
        for s in forkAt...(forkAt + rng.next() % 3) {
            jobSeq += 1
            let victim = x == 1 ? 2 : 1
            events.append(Fx.event(x, s, Fx.receipt(requester: victim, executor: x, seq: jobSeq)))
        }
        equivocator = Fx.node(x)
    }

    /// Delivers every event once, in (author, authorSeq) order, to a fresh ledger.
    func reference() -> Ledger { storedReference().ledger }

    func storedReference() -> StoredLedger {
        var l = StoredLedger()
        let ordered = events.sorted { ($0.author, $0.authorSeq, $0.id) < ($1.author, $1.authorSeq, $1.id) }
        l.receive(ordered, from: LedgerFx.node(12), now: now)
        return l
    }
}

@Suite("Ledger: properties")
struct LedgerPropertyTests {
    typealias Fx = LedgerFx

    /// Random chunks with random drops, then full redeliveries (anti-entropy resends) until
    /// nothing changes; conservation is checked after every delivery.
    private func deliverRandomly(_ u: LedgerUniverse, rng: inout SeededPRNG, recent: Int = 16) -> StoredLedger {
        var s = StoredLedger(Fx.ledger(LedgerConfig(maxBufferedEvents: 8, maxLookahead: 6, recentPerAuthor: recent)))
        var pending = u.events.shuffled(using: &rng)
        while !pending.isEmpty {
            let n = min(pending.count, 1 + Int(rng.next() % 8))
            let chunk = Array(pending.prefix(n)).filter { _ in rng.next() % 5 != 0 }
            pending.removeFirst(n)
            s.receive(chunk, from: Fx.node(12), now: u.now)
            #expect(s.ledger.totalBalance == s.ledger.genesis.totalSupply)
        }
        for _ in 0..<(2 * u.events.count) {
            let before = (s.ledger.digest(), s.ledger.chainedCount, s.ledger.equivocators)
            for chunk in u.events.shuffled(using: &rng).ledgerChunked(8) {
                s.receive(chunk, from: Fx.node(12), now: u.now)
            }
            if (s.ledger.digest(), s.ledger.chainedCount, s.ledger.equivocators) == before { break }
        }
        return s
    }

    /// Also with a memory of one event per author, so that most old events go through the
    /// store as candidates and equivocations are proven by the store.
    @Test(arguments: 0..<24)
    func anyDeliveryOrderGivesTheSameBalances(seed: Int) {
        let u = LedgerUniverse(seed: UInt64(seed), size: 36, equivocate: seed % 3 == 0)
        let stored = u.storedReference()
        let ref = stored.ledger
        #expect(ref.totalBalance == ref.genesis.totalSupply)
        #expect(ref.equivocators == (u.equivocator.map { [$0] } ?? []))
        #expect(ref.balances != ref.genesis.grants, "the universe moves credits")
        var rng = SeededPRNG(seed: UInt64(seed) &+ 1_000)
        for round in 0..<4 {
            let s = deliverRandomly(u, rng: &rng, recent: round == 3 ? 1 : 16)
            let l = s.ledger
            #expect(l.balances == ref.balances)
            #expect(l.digest() == ref.digest())
            #expect(l.equivocators == ref.equivocators)
            #expect(l.bufferedCount == 0)
            if u.equivocator == nil {
                #expect(s.heldEvents == stored.heldEvents)
                #expect(l.chainedCount == u.events.count)
            }
        }
    }

    @Test(arguments: 0..<12)
    func antiEntropyConvergesThroughBoundedBatches(seed: Int) {
        let u = LedgerUniverse(seed: UInt64(seed) &+ 77, size: 30, equivocate: seed % 2 == 0)
        let stored = u.storedReference()
        let source = stored.ledger
        var replica = Fx.ledger()
        var rng = SeededPRNG(seed: UInt64(seed))
        var rounds = 0
        while true {
            let limit = 1 + Int(rng.next() % 7)
            let batch = stored.eventsMissing(from: replica.digest(), limit: limit)
            // Ranges count slots; an equivocated slot yields both of its events.
            #expect(Set(batch.map { "\($0.author)/\($0.authorSeq)" }).count <= limit)
            if batch.isEmpty { break }
            let d = replica.receive(batch, from: Fx.node(12), now: u.now)
            #expect(!d.contains { if case .rejected = $0 { true } else { false } })
            rounds += 1
            #expect(rounds <= u.events.count)
        }
        #expect(replica.digest() == source.digest())
        // A proof travels by push (`.equivocation`), not by the digest.
        for proof in source.equivocationProofs {
            _ = replica.receive([proof.first, proof.second], from: Fx.node(12), now: u.now)
        }
        #expect(replica.equivocators == source.equivocators)
        #expect(replica.balances == source.balances)
    }

    @Test(arguments: 0..<16)
    func equivocationIsAlwaysDetectedWhateverTheOrder(seed: Int) {
        let u = LedgerUniverse(seed: UInt64(seed) &+ 500, size: 20, equivocate: true)
        var rng = SeededPRNG(seed: UInt64(seed))
        var proofs = 0
        var s = StoredLedger(Fx.ledger(LedgerConfig(recentPerAuthor: 1 + seed % 3)))
        for chunk in u.events.shuffled(using: &rng).ledgerChunked(1 + Int(rng.next() % 5)) {
            for d in s.receive(chunk, from: Fx.node(12), now: u.now) {
                if case .equivocation(let p) = d {
                    proofs += 1
                    #expect(p.author == u.equivocator && p.verify(Fx.crypto))
                }
            }
        }
        #expect(proofs == 1)
        #expect(s.ledger.equivocators == [u.equivocator!])
        #expect(s.ledger.balances == u.reference().balances)
    }

    @Test func restoreAfterRandomDeliveryReproducesTheState() {
        let u = LedgerUniverse(seed: 4242, size: 40, equivocate: true)
        var rng = SeededPRNG(seed: 9)
        let s = deliverRandomly(u, rng: &rng)
        let l = s.ledger
        var restarted = Fx.ledger()
        let summary = restarted.restore(s.heldEvents.shuffled(using: &rng))
        #expect(summary.restored == s.heldEvents.count && summary.corrupt.isEmpty)
        #expect(summary.equivocators == l.equivocators)
        #expect(restarted.balances == l.balances && restarted.digest() == l.digest())
        let again = restarted.receive(u.events, from: Fx.node(12), now: u.now)
        #expect(!again.contains { if case .persist = $0 { true } else { false } })
        #expect(restarted.balances == l.balances)
    }
}

extension Array {
    /// Consecutive slices of at most `size` elements.
    func ledgerChunked(_ size: Int) -> [[Element]] {
        precondition(size > 0)
        return stride(from: 0, to: count, by: size).map { Array(self[$0..<Swift.min($0 + size, count)]) }
    }
}
