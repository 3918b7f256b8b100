import Foundation
import Logging
import WWWNode

/// Runs a `Node` in-process: `node.run(onListening:)` in a task; cancelling the task
/// stops the server, the node's HTTP clients and any managed engine.
struct RunningNode {
    let node: Node
    let task: Task<Void, any Error>
    let port: Int

    var baseURL: String { "http://127.0.0.1:\(port)" }

    static func start(config: NodeConfig, logger: Logger) async throws -> RunningNode {
        let node = try Node(config: config, logger: logger)
        let (ports, cont) = AsyncStream<Int>.makeStream()
        let task = Task {
            defer { cont.finish() }
            try await node.run(onListening: { port in cont.yield(port) })
        }
        var it = ports.makeAsyncIterator()
        guard let port = await it.next(), port > 0 else {
            try await task.value
            throw BenchError("the node stopped before listening")
        }
        return RunningNode(node: node, task: task, port: port)
    }

    func stop() async {
        task.cancel()
        _ = await task.result
    }
}

/// Stops a server task (the fake upstream): cancel, then wait for it to finish.
func stopTask(_ task: Task<Void, any Error>) async {
    task.cancel()
    _ = await task.result
}
