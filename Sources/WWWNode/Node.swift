import AsyncHTTPClient
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import WWWAPI
import WWWBackends
import WWWCore

/// An exclusive lock on a data directory (`flock` on `<data_dir>/node.lock`, which also
/// holds the owner's pid), taken before anything in it is read or written, so a second
/// process started on the same directory fails at once instead of changing its state.
final class DataDirLock: Sendable {
    let fd: Int32

    init(directory: String) throws {
        let path = (directory as NSString).appendingPathComponent("node.lock")
        let fd = open(path, O_CREAT | O_RDWR, 0o600)
        guard fd >= 0 else { throw ConfigError("cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let owner = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
            close(fd)
            throw ConfigError("data_dir \(directory) is in use by another wwwserve node (pid \(owner.isEmpty ? "?" : owner)); give each node its own data_dir")
        }
        _ = ftruncate(fd, 0)
        let pid = Array("\(getpid())\n".utf8)
        _ = pid.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        self.fd = fd
    }

    deinit { close(fd) }   // releases the lock
}

/// One wwwserve node: backends, HTTP API and services, run under swift-service-lifecycle
/// with graceful shutdown on SIGTERM/SIGINT (the server stops accepting, in-flight requests
/// get `shutdown_grace_s` to finish and are then cancelled; managed engines stop last).
public final class Node: Sendable {
    public let config: NodeConfig
    public let pool: BackendPool
    public let metrics: NodeMetrics
    public let logger: Logger
    let clients: [HTTPClient]
    let managed: [ManagedLlamaCppBackend]
    /// The node machine's interpreter (with the network part when the config has a
    /// `network:` section).
    public let runtime: NodeRuntime

    /// Held for the node's life: one process per data directory.
    let dataDirLock: DataDirLock

    /// Builds the node's parts; nothing starts until `run`.
    /// - Throws: `ConfigError` for a bad config, or when another node process uses `data_dir`.
    public init(config: NodeConfig, logger: Logger) throws {
        try config.validate()
        try FileManager.default.createDirectory(atPath: config.node.dataDir, withIntermediateDirectories: true)
        self.dataDirLock = try DataDirLock(directory: config.node.dataDir)
        self.config = config
        self.logger = logger
        self.metrics = NodeMetrics()
        var entries: [BackendPool.Entry] = []
        var clients: [HTTPClient] = []
        var managed: [ManagedLlamaCppBackend] = []
        for section in config.backends {
            let (backend, client, engine) = try Self.makeBackend(section, node: config.node, metrics: metrics, logger: logger)
            entries.append(.init(backend: backend, admissionLimit: section.admissionLimit))
            clients.append(client)
            if let engine { managed.append(engine) }
        }
        let pool = BackendPool(entries: entries)
        let metrics = self.metrics
        self.pool = pool
        self.clients = clients
        self.managed = managed
        do {
            self.runtime = try NodeRuntime(config: config, pool: pool, metrics: metrics, logger: logger)
        } catch {
            for c in clients { try? c.syncShutdown() }
            throw error
        }
    }

    static func makeBackend(_ s: NodeConfig.BackendSection, node: NodeConfig.NodeSection, metrics: NodeMetrics,
                            logger: Logger) throws -> (any Backend, HTTPClient, ManagedLlamaCppBackend?) {
        var cfg = HTTPClient.Configuration()
        cfg.timeout = .init(connect: .milliseconds(Int64(s.connectTimeoutS * 1000)), read: .milliseconds(Int64(s.readTimeoutS * 1000)))
        cfg.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: max(8, s.admissionLimit))
        cfg.decompression = .disabled
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: cfg)
        let models = s.models.map {
            BackendModel(descriptor: ModelDescriptor(name: $0.name, quantization: $0.quantization ?? "", hardware: $0.hardware ?? ""),
                         upstreamName: $0.upstreamName)
        }
        let timeouts = UpstreamTimeouts(connect: .milliseconds(Int64(s.connectTimeoutS * 1000)), read: .milliseconds(Int64(s.readTimeoutS * 1000)),
                                        total: .milliseconds(Int64(node.requestTimeoutS * 1000)))
        let http = OpenAIBackend(name: s.name, kind: s.kind, baseURL: s.baseURL, apiKey: s.apiKey, models: models,
                                 capacity: s.capacity, timeouts: timeouts, client: client, logger: logger)
        guard s.kind == "llamacpp" else { return (http, client, nil) }
        let l = s.llamacpp ?? NodeConfig.LlamaCppSection()
        let settings = LlamaCppSettings(modelPath: l.modelPath, python: l.python, threads: l.threads, contextTokens: l.ctx,
                                        parallel: l.parallel ?? s.capacity,
                                        logFile: (node.dataDir as NSString).appendingPathComponent("engine-\(s.name).log"),
                                        startTimeout: .milliseconds(Int64(l.startTimeoutS * 1000)))
        let engine = ManagedLlamaCppBackend(inner: http, settings: settings, logger: logger)
        return (engine, client, engine)
    }

    /// The name the node reports in `X-WWWServe-Node` and `/v1/models` (`owned_by`).
    public var name: String { runtime.nodeID?.hex ?? "wwwserve@\(config.node.host):\(config.node.port)" }

    /// Runs until SIGTERM/SIGINT (or task cancellation). `onListening` gets the bound port.
    public func run(onListening: (@Sendable (Int) async -> Void)? = nil) async throws {
        try FileManager.default.createDirectory(atPath: config.node.dataDir, withIntermediateDirectories: true)
        // The machine runs before the server accepts its first request (`start` is idempotent;
        // the runtime service only waits for shutdown then).
        runtime.start()
        let http = NodeHTTP(config: config, pool: pool, metrics: metrics, nodeName: name, logger: logger, runtime: runtime)
        let logger = self.logger
        let connections = runtime.connections
        let app = Application(
            router: http.router(),
            server: .http1(configuration: .init(additionalChannelHandlers: [connections.handler()],
                                                idleTimeout: .milliseconds(Int64(config.node.idleTimeoutS * 1000)))),
            configuration: .init(address: .hostname(config.node.host, port: config.node.port), serverName: "wwwserve"),
            services: managed.map { $0 as any Service } + [runtime as any Service],
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.info("wwwserve node listening", metadata: ["address": "http://\(channel.localAddress?.ipAddress ?? "?"):\(port)"])
                await onListening?(port)
            },
            logger: logger)
        // Shut down in reverse order: first the network hears that this node leaves (so no
        // new offers come while in-flight requests finish), then the server drains.
        var groupConfig = ServiceGroupConfiguration(services: [.init(service: app), .init(service: LeaveOnShutdown(runtime: runtime, logger: logger, graceS: config.node.shutdownGraceS))],
                                                    gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        groupConfig.maximumGracefulShutdownDuration = .milliseconds(Int64(config.node.shutdownGraceS * 1000))
        groupConfig.cancellationSignals = []
        let group = ServiceGroup(configuration: groupConfig)
        do {
            try await group.run()
        } catch {
            await shutdownClients()
            throw error
        }
        await shutdownClients()
        logger.info("wwwserve node stopped")
    }

    /// On graceful shutdown, gossips `left` at once (before the server's grace period).
    struct LeaveOnShutdown: Service {
        let runtime: NodeRuntime
        let logger: Logger
        let graceS: Double
        func run() async throws {
            try? await gracefulShutdown()
            logger.notice("shutting down: leaving the network, no new requests, in-flight ones finish",
                          metadata: ["grace_s": "\(graceS)"])
            await runtime.leave()
        }
    }

    func shutdownClients() async {
        for c in clients { try? await c.shutdown() }
    }
}
