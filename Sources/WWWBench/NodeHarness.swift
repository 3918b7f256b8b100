import AsyncHTTPClient
import Foundation
import Logging
import ServiceLifecycle
import WWWNode

/// Runs services in-process under a ServiceGroup of our own (no signal handling), so they
/// can be stopped with a graceful shutdown: servers stop accepting, finish in-flight
/// requests and close; a nested group (the node's own) follows its parent's shutdown.
struct ServiceRunner {
    let group: ServiceGroup
    let task: Task<Void, any Error>

    init(_ service: any Service, logger: Logger) {
        var cfg = ServiceGroupConfiguration(services: [.init(service: service)], gracefulShutdownSignals: [], logger: logger)
        cfg.maximumGracefulShutdownDuration = .seconds(15)
        cfg.maximumCancellationDuration = .seconds(5)
        let group = ServiceGroup(configuration: cfg)
        self.group = group
        task = Task { try await group.run() }
    }

    /// Graceful shutdown, then waits for the group to finish (bounded by the durations above).
    func stop() async {
        await group.triggerGracefulShutdown()
        _ = await task.result
    }
}

/// `Node.run(onListening:)` as a service.
private struct NodeService: Service {
    let node: Node
    let onListening: @Sendable (Int) async -> Void
    func run() async throws { try await node.run(onListening: onListening) }
}

/// A `Node` running in-process on 127.0.0.1.
struct RunningNode {
    let node: Node
    let runner: ServiceRunner
    let port: Int

    var baseURL: String { "http://127.0.0.1:\(port)" }

    static func start(config: NodeConfig, logger: Logger) async throws -> RunningNode {
        let node = try Node(config: config, logger: logger)
        let (ports, cont) = AsyncStream<Int>.makeStream()
        let runner = ServiceRunner(NodeService(node: node, onListening: { cont.yield($0) }), logger: logger)
        let watcher = Task { _ = await runner.task.result; cont.finish() }
        var it = ports.makeAsyncIterator()
        guard let port = await it.next(), port > 0 else {
            _ = await watcher.value
            try await runner.task.value
            throw BenchError("the node stopped before listening")
        }
        return RunningNode(node: node, runner: runner, port: port)
    }

    func stop() async { await runner.stop() }

    private struct Readiness: Decodable {
        struct B: Decodable {
            let healthy: Bool
            let url: String?
            let last_error: String?
        }
        let backends: [B]
    }

    /// Polls the node's `/ready` until its first backend is healthy; returns that backend's
    /// URL (the managed engine's). Throws after `timeout` seconds with the last error seen.
    func waitForEngine(client: HTTPClient, timeout: Double) async throws -> String {
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
        var last = "no answer from /ready"
        while ContinuousClock.now < deadline {
            if let (status, body) = try? await getJSON(client: client, url: baseURL + "/ready"),
               let r = try? JSONDecoder().decode(Readiness.self, from: body), let b = r.backends.first {
                if status == 200, b.healthy, let url = b.url { return url }
                last = b.last_error ?? "engine not healthy yet"
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw BenchError("the llama.cpp engine did not become ready within \(Int(timeout)) s: \(last)")
    }
}
