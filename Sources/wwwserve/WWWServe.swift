import ArgumentParser
import Foundation
import Logging
import WWWBench
import WWWNode

@main
struct WWWServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wwwserve",
        abstract: "A decentralized LLM-serving network node.",
        subcommands: [NodeCommand.self, DemoCommand.self, BenchCommand.self, PeersCommand.self, CreditsCommand.self, KeygenCommand.self, GenesisCommand.self, SimCommand.self, JudgeEvalCommand.self],
        defaultSubcommand: nil)
}

struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "node", abstract: "Run one node serving the OpenAI chat API.")

    @Option(name: .long, help: "Config file (YAML or JSON). Without it: the embedded default (managed llama.cpp with SmolLM2-135M).")
    var config: String?
    @Option(name: .long, help: "Bind host (overrides the file and WWWSERVE_HOST).")
    var host: String?
    @Option(name: .long, help: "Bind port; 0 picks a free one (overrides the file and WWWSERVE_PORT).")
    var port: Int?
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String?
    @Option(name: .long, help: "Data directory (key, ledger, engine logs).")
    var dataDir: String?
    @Option(name: .long, help: "Genesis file of the network to take part in (overrides network.genesis).")
    var genesis: String?
    @Option(name: .long, help: "host:port of a node of an existing network to join through (repeatable).")
    var join: [String] = []

    func run() async throws {
        var cfg = try config.map { try NodeConfig.load(path: $0, validate: false) } ?? NodeConfig.embeddedDefault
        try cfg.applyEnvironment(ProcessInfo.processInfo.environment)
        if let host { cfg.node.host = host }
        if let port { cfg.node.port = port }
        if let logLevel { cfg.node.logLevel = logLevel }
        if let dataDir { cfg.node.dataDir = dataDir }
        if let genesis {
            if cfg.network == nil { cfg.network = NetworkSection(genesis: genesis) } else { cfg.network!.genesis = genesis }
        }
        if !join.isEmpty {
            guard cfg.network != nil else {
                throw ConfigError("--join needs the network's genesis file: pass --genesis PATH or a config with a network: section")
            }
            cfg.network!.join += join
        }
        do {
            try cfg.validate()
        } catch let e as ConfigError {
            throw ConfigError(config.map { "\($0): \(e.message)" } ?? e.message)
        }
        let logger = makeLogger(level: cfg.node.logLevel)
        let node = try Node(config: cfg, logger: logger)
        try await node.run()
    }
}

func makeLogger(level: String) -> Logger {
    LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
    var logger = Logger(label: "wwwserve")
    logger.logLevel = Logger.Level(rawValue: level) ?? .info
    return logger
}
