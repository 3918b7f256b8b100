import Foundation

/// One request of a replayed workload: when it arrives and what it asks.
public struct WorkloadRequest: Sendable, Hashable {
    /// Offset from the start of the replay.
    public var arrival: Duration
    public var prompt: String
    /// Where the prompt came from, e.g. "mt_bench:81".
    public var source: String
    public var maxTokens: Int
}

/// Reads the real data in `../shared/data` (see its README): Azure LLM inference traces
/// (CC-BY-4.0) for arrival times and output lengths, MT-Bench and Arena-Hard prompts
/// (Apache-2.0) for the text.
public enum Workload {
    /// Candidate locations of the shared data directory, most specific first.
    public static func dataDirectory(explicit: String? = nil, containing marker: String = "prompts/mt_bench_questions.jsonl") -> String? {
        var candidates: [String] = []
        if let explicit { candidates.append(explicit) }
        if let env = ProcessInfo.processInfo.environment["WWWSERVE_SHARED_DATA"] { candidates.append(env) }
        let cwd = FileManager.default.currentDirectoryPath
        candidates += [cwd + "/../shared/data", cwd + "/shared/data"]
        let exe = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        for _ in 0..<6 {
            candidates.append(dir.appendingPathComponent("../shared/data").standardized.path)
            dir = dir.deletingLastPathComponent()
        }
        return candidates.first { FileManager.default.fileExists(atPath: $0 + "/" + marker) }
    }

    /// The first turn of every MT-Bench question, then every Arena-Hard prompt; with
    /// `withReferences`, only the MT-Bench questions that carry a reference answer (math,
    /// reasoning, coding: what a reference judge can decide).
    public static func prompts(dataDir: String, limit: Int = 10_000, withReferences: Bool = false) throws -> [(source: String, text: String)] {
        var out: [(String, String)] = []
        let mt = try String(contentsOfFile: dataDir + "/prompts/mt_bench_questions.jsonl", encoding: .utf8)
        for line in mt.split(whereSeparator: \.isNewline) where out.count < limit {
            guard let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let turns = obj["turns"] as? [String], let first = turns.first else { continue }
            if withReferences, ((obj["reference"] as? [String])?.first ?? "").isEmpty { continue }
            out.append(("mt_bench:\(obj["question_id"] ?? "?")", first))
        }
        if withReferences { return out }
        let arenaPath = dataDir + "/prompts/arena_hard_v0.1_questions.jsonl"
        if let arena = try? String(contentsOfFile: arenaPath, encoding: .utf8) {
            for line in arena.split(whereSeparator: \.isNewline) where out.count < limit {
                guard let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                      let p = obj["prompt"] as? String else { continue }
                out.append(("arena_hard:\(String(describing: obj["uid"] ?? "?").prefix(8))", p))
            }
        }
        return out
    }

    /// Rows of an Azure trace: (seconds since the first row, context tokens, generated tokens).
    public static func trace(path: String, limit: Int) throws -> [(t: Double, context: Int, generated: Int)] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var rows: [(Double, Int, Int)] = []
        var t0: Double?
        let fmt = DateFormatter()
        fmt.locale = Locale(identifier: "en_US_POSIX")
        fmt.timeZone = TimeZone(identifier: "UTC")
        fmt.dateFormat = "yyyy-MM-dd HH:mm:ss"
        for line in text.split(whereSeparator: \.isNewline).dropFirst() where rows.count < limit {
            let f = line.split(separator: ",")
            guard f.count == 3, let ctx = Int(f[1]), let gen = Int(f[2]) else { continue }
            let stamp = f[0].split(separator: ".")
            guard let date = fmt.date(from: String(stamp[0])) else { continue }
            let frac = stamp.count > 1 ? (Double("0." + stamp[1]) ?? 0) : 0
            let t = date.timeIntervalSince1970 + frac
            if t0 == nil { t0 = t }
            rows.append((t - t0!, ctx, gen))
        }
        return rows
    }

    /// `count` requests: arrivals from the trace, stretched so the mean rate is `rate`
    /// requests/s (2 cores cannot serve the trace's 5.5 req/s); output lengths from the
    /// trace capped at `maxTokens`; prompts cycled in order.
    public static func replay(dataDir: String, trace: String = "conv", count: Int, rate: Double, maxTokens: Int,
                              withReferences: Bool = false) throws -> [WorkloadRequest] {
        precondition(count > 0 && rate > 0 && maxTokens > 0)
        let rows = try self.trace(path: dataDir + "/traces/AzureLLMInferenceTrace_\(trace).csv", limit: count)
        let prompts = try self.prompts(dataDir: dataDir, withReferences: withReferences)
        guard !rows.isEmpty, !prompts.isEmpty else { throw ConfigError("the trace or the prompt files are empty") }
        let span = max(rows.last!.t, 1e-3)
        let traceRate = Double(rows.count - 1) / span
        let stretch = rows.count > 1 ? traceRate / rate : 1
        return rows.enumerated().map { i, row in
            let p = prompts[i % prompts.count]
            return WorkloadRequest(arrival: .milliseconds(Int64(row.t * stretch * 1000)), prompt: p.text, source: p.source,
                                   maxTokens: max(8, min(maxTokens, row.generated)))
        }
    }
}
