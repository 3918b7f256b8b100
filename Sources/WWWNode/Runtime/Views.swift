import Crypto
import Foundation
import WWWCore

extension NodeRuntime {
    /// This node's membership view for `wwwserve peers` and `GET /p2p/v1/peers`.
    public func peersView() -> [PeerView] {
        withMachine { m in
            guard let membership = m.membership, let ledger = m.ledger, let me = m.nodeID else { return [] }
            return membership.members.map { r in
                PeerView(node: r.node.hex, address: r.address, status: r.status.rawValue, incarnation: r.incarnation,
                         models: r.models.map(\.name), capacity: r.capacity, utilization: Double(r.utilizationPPM) / 1e6,
                         accepting: r.accepting, stake: "\(ledger.effectiveStake(declared: r.stake, of: r.node))",
                         balance: "\(ledger.balance(of: r.node))", isSelf: r.node == me, judging: r.judging)
            }
        }
    }

    /// Balances and stakes in this node's ledger view, for `wwwserve credits`. Computed
    /// under the lock (no copy of the ledger escapes it); the event-set hash outside.
    public func creditsView() -> CreditsView? {
        guard let peer else { return nil }
        let snapshot: CreditsView? = withMachine { m in
            guard let ledger = m.ledger, let me = m.nodeID else { return nil }
            let genesis = ledger.genesis
            let stakes = Dictionary((m.membership?.members ?? []).map { ($0.node, $0.stake) }, uniquingKeysWith: { a, _ in a })
            let nodes = Set(genesis.grants.keys).union(ledger.balances.keys).union(stakes.keys).sorted()
            let rows = nodes.map { n -> CreditsView.Row in
                let d = n == me ? m.declaredStake : (stakes[n] ?? .zero)
                return CreditsView.Row(node: n.hex, balance: "\(ledger.balance(of: n))", balanceMicro: ledger.balance(of: n).micro,
                                       declaredStake: "\(d)", effectiveStake: "\(ledger.effectiveStake(declared: d, of: n))",
                                       equivocating: ledger.isEquivocating(n), duelWins: ledger.duelRecords[n]?.wins ?? 0,
                                       duelLosses: ledger.duelRecords[n]?.losses ?? 0, duelTies: ledger.duelRecords[n]?.ties ?? 0,
                                       duelWinRate: ledger.duelRecords[n]?.winRate)
            }
            return CreditsView(network: genesis.networkID, me: me.hex, events: ledger.chainedCount,
                                   digest: Dictionary(uniqueKeysWithValues: ledger.digest().map { ($0.key.hex, $0.value) }),
                                   eventSetHash: "", totalSupply: "\(genesis.totalSupply)", rows: rows)
        }
        guard var view = snapshot else { return nil }
        // SHA-256 over the stored ids, ascending, concatenated (streamed from the store).
        var hasher = SHA256()
        do { try peer.store.forEachID { hasher.update(data: Array($0.utf8)) } } catch { return nil }
        view.eventSetHash = Hex.encode(Array(hasher.finalize()))
        return view
    }
}
