import WWWCore

/// A simulated process that runs a membership core (`MembershipProcess` alone, or `SimNode`'s
/// whole node machine): what convergence checks and experiments read of it.
public protocol MembershipMember: SimulatedProcess {
    /// The core's table as it is now.
    var membership: Membership { get }
    var nodeID: NodeID { get }
    /// Started and not left: the process takes part in the protocol.
    var isParticipating: Bool { get }
}

extension Simulation where P: MembershipMember {
    /// True for a node that is up, has started and has not left.
    @inlinable
    public func participates(_ i: Int) -> Bool { nodes[i].up && nodes[i].process.isParticipating }

    /// True when every participating node holds every other participating node as
    /// `alive`, and no crashed or departed node as alive or suspect.
    @inlinable
    public func membershipConverged() -> Bool {
        let live = nodes.indices.filter { participates($0) }
        let upIDs = live.map { nodes[$0].process.nodeID }
        let downIDs = nodes.indices.filter { !participates($0) }.map { nodes[$0].process.nodeID }
        for i in live {
            let m = nodes[i].process.membership
            for id in upIDs where m.record(of: id)?.status != .alive { return false }
            for id in downIDs {
                if let s = m.record(of: id)?.status, s == .alive || s == .suspect { return false }
            }
        }
        return true
    }

    /// True when no participating node holds `id` alive or suspect (a leave or a crash is
    /// known by all).
    @inlinable
    public func noneHoldsLive(_ id: NodeID) -> Bool {
        nodes.indices.allSatisfy { i in
            guard participates(i) else { return true }
            let st = nodes[i].process.membership.record(of: id)?.status
            return st != .alive && st != .suspect
        }
    }

    /// Two random nodes among 1..<n (never the seed node 0), distinct when n ≥ 3: the one
    /// that leaves and the one that crashes in the convergence and scale experiments.
    public static func leaverAndCrasher(n: Int, rng: inout SeededPRNG) -> (leaver: Int, crasher: Int) {
        precondition(n >= 2, "a node besides the seed node")
        let leaver = 1 + Int(rng.next() % UInt64(n - 1))
        var crasher = 1 + Int(rng.next() % UInt64(n - 1))
        if crasher == leaver { crasher = leaver == n - 1 ? 1 : leaver + 1 }
        return (leaver, crasher)
    }
}
