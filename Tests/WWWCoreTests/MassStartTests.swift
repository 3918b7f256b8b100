import Testing
import WWWCore
import WWWSim

/// A mass start in the simulator with a per-message CPU cost, so that a node that receives
/// more than it can handle falls behind as a real process does (100 processes sharing two
/// cores spend about 20 ms per received and 15 ms per sent message of their share).
@Suite("mass start")
struct MassStartTests {
    static let sharedCPU = SimNetworkConfig(receiveCost: .milliseconds(20), sendCost: .milliseconds(15), inboundLimit: 64)

    @Test("60 nodes started at once on starved CPUs converge and stay converged without a false death", arguments: [1, 2, 3] as [UInt64])
    func converges(seed: UInt64) {
        let r = MassStartExperiment.run(n: 60, seed: seed, network: Self.sharedCPU, maxPeriods: 40, watchPeriods: 20)
        #expect(r.convergedPeriods != nil && r.convergedPeriods! <= 20, "\(r)")
        #expect(r.falseDeathPeriods == 0, "\(r)")
        #expect(r.watchedPeriods == 20)
    }

    @Test("Lifeguard's local health and suspicion scaling make a starved mass start converge sooner", arguments: [1, 2, 3] as [UInt64])
    func lifeguardHelps(seed: UInt64) {
        var off = MembershipConfig()
        off.maxLocalHealth = 0
        off.suspicionMaxMultiplier = 1
        let with = MassStartExperiment.run(n: 60, seed: seed, network: Self.sharedCPU, maxPeriods: 60, watchPeriods: 0)
        let without = MassStartExperiment.run(n: 60, seed: seed, config: off, network: Self.sharedCPU, maxPeriods: 60, watchPeriods: 0)
        #expect((with.convergedPeriods ?? 1_000) < (without.convergedPeriods ?? 1_000), "with: \(with); without: \(without)")
    }

    @Test("with no processing cost nothing is queued or shed")
    func freeCPU() {
        let r = MassStartExperiment.run(n: 30, seed: 1, network: SimNetworkConfig(), maxPeriods: 40, watchPeriods: 10)
        #expect(r.convergedPeriods != nil && r.shed == 0 && r.falseDeathPeriods == 0, "\(r)")
    }
}
