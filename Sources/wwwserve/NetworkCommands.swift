import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import WWWCore
import WWWCrypto
import WWWNode

/// `wwwserve keygen`: creates (or reads) a node key and prints the node id.
struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "keygen", abstract: "Create or show a node's Ed25519 identity.")

    @Option(help: "Key file (created with mode 0600 when missing).") var keyFile = ".wwwserve/node.key"

    func run() throws {
        print(try NodeKey.loadOrCreate(path: keyFile).nodeID.hex)
    }
}

/// `wwwserve genesis`: writes a genesis file (network id, parameters, grants, seeds).
struct GenesisCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "genesis", abstract: "Write a network's genesis file.")

    @Option(help: "Network id.") var networkId = "wwwserve-local"
    @Option(name: .customLong("grant"), help: "NODE_ID=CREDITS (repeatable): initial credit grants.") var grants: [String] = []
    @Option(name: .customLong("seed"), help: "host:port of a seed node (repeatable).") var seeds: [String] = []
    @Option(help: "Price per job in credits.") var price = 1.0
    @Option(help: "Probability that an offloaded job becomes a duel, 0...1 (requesters with duel.run_duels).") var duelProbability = 0.1
    @Option(help: "Judges on a duel's panel, 1...64.") var judgesPerDuel = 3
    @Option(help: "Output file.") var out = "genesis.json"

    /// Most credits one grant or the price may be (keeps micro-credits far inside Int64).
    static let maxCredits = 1e12

    func run() throws {
        var g = [NodeID: Credits]()
        for grant in grants {
            let parts = grant.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let id = NodeID(hex: parts[0]), let amount = Double(parts[1]), amount.isFinite,
                  (0...Self.maxCredits).contains(amount) else {
                throw CLIError("--grant must be NODE_ID=CREDITS with a 64-hex node id and 0...1e12 credits, got '\(grant)'")
            }
            guard g[id] == nil else { throw CLIError("--grant names node \(parts[0].prefix(16))… twice") }
            let micro = Int64((amount * 1e6).rounded())
            guard micro > 0 || amount == 0 else { throw CLIError("--grant '\(grant)' is below one µcredit (0.000001)") }
            g[id] = Credits(micro: micro)
        }
        guard price.isFinite, (0...Self.maxCredits).contains(price) else { throw CLIError("--price must be 0...1e12 credits") }
        for seed in seeds where !isHostPort(seed) {
            throw CLIError("--seed must be host:port — a host name, IPv4 or [IPv6] address and a port in 1...65535, no scheme — got '\(seed)'")
        }
        guard Set(seeds).count == seeds.count else { throw CLIError("--seed lists one address twice") }
        guard duelProbability.isFinite, (0...1).contains(duelProbability) else { throw CLIError("--duel-probability must be in 0...1") }
        guard (1...64).contains(judgesPerDuel) else { throw CLIError("--judges-per-duel must be in 1...64") }
        if g.isEmpty {
            FileHandle.standardError.write(Data("warning: no --grant: nobody in this network has credits to offload with\n".utf8))
        }
        var params = GenesisParameters()
        params.pricePerJob = Credits(micro: Int64((price * 1e6).rounded()))
        params.duelProbability = PartsPerMillion((duelProbability * Double(partsPerMillionOne)).rounded())
        params.judgesPerDuel = judgesPerDuel
        let genesis = Genesis(networkID: networkId, parameters: params, grants: g, seeds: seeds)
        if let p = genesis.problems.first { throw CLIError("invalid genesis: \(p)") }
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try enc.encode(genesis).write(to: URL(fileURLWithPath: out))
        print("wrote \(out): network \(networkId), \(g.count) grants, \(seeds.count) seeds")
    }
}

/// GETs `url` and decodes its JSON body (5 s deadline, 16 MiB at most).
/// - Throws: `CLIError` for a non-200 answer; transport and decoding errors as they come.
func fetchJSON<T: Decodable>(_ type: T.Type, client: HTTPClient = .shared, url: String) async throws -> T {
    let resp = try await client.execute(HTTPClientRequest(url: url), timeout: .seconds(5))
    let body = try await resp.body.collect(upTo: 16 << 20)
    guard resp.status == .ok else { throw CLIError("\(url) answered HTTP \(resp.status.code): \(String(buffer: body).prefix(300))") }
    return try JSONDecoder().decode(T.self, from: Data(buffer: body))
}

/// Fetches one JSON view from a running node for a CLI command.
func fetchView<T: Decodable>(_ type: T.Type, node: String, path: String) async throws -> T {
    // "host:port" (as peers and seeds are written) means http://host:port.
    guard node.contains("://") || isHostPort(node) else {
        throw CLIError("--node must be a URL (http://host:port) or host:port, got '\(node)'")
    }
    var base = node.contains("://") ? node : "http://" + node
    while base.hasSuffix("/") { base.removeLast() }
    do {
        return try await fetchJSON(type, url: base + path)
    } catch let e as CLIError {
        throw e
    } catch {
        let text = "\(error)"
        let why = text.contains("refused") ? "connection refused — is a node running there?" : text
        throw CLIError("cannot reach a wwwserve node at \(base): \(why)")
    }
}

/// A command failure reported as one line (`Error: …`), without the usage text.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// `wwwserve peers`: a node's view of the membership.
struct PeersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "peers", abstract: "Show a node's view of the network's members.")

    @Option(help: "The node's base URL, or host:port.") var node = "http://127.0.0.1:8080"
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let peers = try await fetchView([PeerView].self, node: node, path: "/p2p/v1/peers")
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(peers), as: UTF8.self))
            return
        }
        print("NODE      ADDRESS               STATUS   INC         MODELS                     CAP  UTIL  ACC  JDG  STAKE         BALANCE")
        for p in peers {
            let line = [String(p.node.prefix(8)) + (p.isSelf ? "*" : " "), p.address.padding(toLength: 21, withPad: " ", startingAt: 0),
                        p.status.padding(toLength: 8, withPad: " ", startingAt: 0), String(p.incarnation).padding(toLength: 11, withPad: " ", startingAt: 0),
                        p.models.joined(separator: ",").padding(toLength: 26, withPad: " ", startingAt: 0),
                        String(p.capacity).padding(toLength: 4, withPad: " ", startingAt: 0), String(format: "%.2f", p.utilization),
                        p.accepting ? "yes" : "no ", p.judging == true ? "yes" : "no ", p.stake.padding(toLength: 13, withPad: " ", startingAt: 0), p.balance]
            print(line.joined(separator: " "))
        }
    }
}

/// `wwwserve credits`: balances and stakes in a node's ledger view.
struct CreditsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "credits", abstract: "Show balances and stakes in a node's ledger view.")

    @Option(help: "The node's base URL, or host:port.") var node = "http://127.0.0.1:8080"
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let v = try await fetchView(CreditsView.self, node: node, path: "/p2p/v1/credits")
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(v), as: UTF8.self))
            return
        }
        print("network \(v.network); this node \(v.me.prefix(8)); \(v.events) events; event-set hash \(v.eventSetHash.prefix(16)); supply \(v.totalSupply)")
        print("NODE       BALANCE          DECLARED STAKE   EFFECTIVE STAKE  EQUIVOCATING  DUELS W/L/T   WIN RATE")
        for r in v.rows {
            let wlt = "\(r.duelWins ?? 0)/\(r.duelLosses ?? 0)/\(r.duelTies ?? 0)"
            print([String(r.node.prefix(8)) + (r.node == v.me ? "*" : " "), r.balance.padding(toLength: 16, withPad: " ", startingAt: 0),
                   r.declaredStake.padding(toLength: 16, withPad: " ", startingAt: 0), r.effectiveStake.padding(toLength: 16, withPad: " ", startingAt: 0),
                   (r.equivocating ? "yes" : "no").padding(toLength: 13, withPad: " ", startingAt: 0),
                   wlt.padding(toLength: 13, withPad: " ", startingAt: 0),
                   r.duelWinRate.map { String(format: "%.2f", $0) } ?? "-"].joined(separator: " "))
        }
    }
}
