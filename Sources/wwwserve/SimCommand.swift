import ArgumentParser
import WWWCore
import WWWSim

/// `wwwserve sim`: deterministic in-memory runs of the real protocol core.
struct SimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sim", abstract: "Run the protocol core in the deterministic simulator.",
        subcommands: [ConvergenceCommand.self])
}

/// `wwwserve sim convergence`: periods until a join, a leave and a crash are known by all
/// N nodes, and gossip traffic per node per period (DESIGN.md §4 targets).
struct ConvergenceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convergence", abstract: "Measure membership convergence and traffic at several network sizes.")

    @Option(help: "Comma-separated network sizes.") var nodes = "10,100"
    @Option(help: "Seeds per size (runs are deterministic per seed).") var seeds = 3
    @Option(help: "First seed.") var firstSeed: UInt64 = 1
    @Option(help: "Message loss probability in the simulated network.") var loss = 0.0

    func run() throws {
        let sizes = nodes.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !sizes.isEmpty, sizes.allSatisfy({ $0 >= 2 && $0 <= 5_000 }) else {
            throw ValidationError("--nodes must list sizes between 2 and 5000")
        }
        guard seeds >= 1, seeds <= 100, (0..<1).contains(loss) else { throw ValidationError("--seeds in 1...100, --loss in [0, 1)") }
        var network = SimNetworkConfig()
        network.lossProbability = loss
        print("N      seed  bootstrap  join  leave  crash (suspicion)  msgs/node/period  bytes/node/period")
        for n in sizes {
            for s in 0..<seeds {
                let r = ConvergenceExperiment.run(n: n, seed: firstSeed + UInt64(s), network: network)
                func p(_ v: Int?) -> String { v.map(String.init) ?? "never" }
                let row: [String] = [
                    String(n).padding(toLength: 6, withPad: " ", startingAt: 0),
                    String(r.seed).padding(toLength: 5, withPad: " ", startingAt: 0),
                    p(r.bootstrapPeriods).padding(toLength: 10, withPad: " ", startingAt: 0),
                    p(r.joinPeriods).padding(toLength: 5, withPad: " ", startingAt: 0),
                    p(r.leavePeriods).padding(toLength: 6, withPad: " ", startingAt: 0),
                    "\(p(r.crashPeriods)) (\(String(format: "%.1f", r.suspicionTimeoutPeriods)))".padding(toLength: 18, withPad: " ", startingAt: 0),
                    String(format: "%.1f", r.messagesPerNodePerPeriod).padding(toLength: 17, withPad: " ", startingAt: 0),
                    String(format: "%.0f", r.bytesPerNodePerPeriod),
                ]
                print(row.joined(separator: " "))
            }
        }
    }
}
