import ArgumentParser
import Foundation
import Logging

/// `wwwserve bench`: the node's added latency and throughput against calling the same
/// upstream directly, measured side by side in one run (interleaved blocks, so machine
/// noise hits both sides alike). Results are ratios and differences against that
/// baseline, never absolute pass/fail timings.
public struct BenchCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the node against baselines run side by side (overhead, e2e, machine, ledger).",
        discussion: """
            overhead: a fast in-process fake upstream; p50/p90/p99 latency and TTFT, the latency \
            the node adds, and requests/s through the node relative to direct calls.
            e2e: the real model (a managed llama.cpp engine); generated tokens/s through the node \
            relative to calling the engine directly, same prompts, temperature 0, fixed seed.
            machine: the node machine's CPU cost per request, no I/O.
            ledger: resident memory against ledger size (ledger + SQLite store, and a restart).
            All traffic stays on 127.0.0.1.
            """,
        subcommands: [OverheadCommand.self, E2ECommand.self, MachineCommand.self, LedgerBenchCommand.self])

    public init() {}
}

/// Build configuration of this binary (debug Swift is many times slower than release).
let buildConfiguration: String = {
    #if DEBUG
    return "debug"
    #else
    return "release"
    #endif
}()

func makeBenchLogger(_ level: String) -> Logger {
    var logger = Logger(label: "wwwserve.bench") { StreamLogHandler.standardError(label: $0) }
    logger.logLevel = Logger.Level(rawValue: level) ?? .warning
    return logger
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Progress lines go to stderr so that `--json` output on stdout stays clean.
func progress(_ s: String) {
    fflush(nil)   // keep stdout's lines before this one in a shared log
    FileHandle.standardError.write(Data((s + "\n").utf8))
}

func makeTempDir(_ prefix: String) throws -> String {
    let path = (NSTemporaryDirectory() as NSString).appendingPathComponent("\(prefix)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}
