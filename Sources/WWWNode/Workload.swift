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
        for line in text.split(whereSeparator: \.isNewline).dropFirst() where rows.count < limit {
            let f = line.split(separator: ",")
            guard f.count == 3, let ctx = Int(f[1]), let gen = Int(f[2]) else { continue }
            let stamp = f[0].split(separator: ".")
            guard let seconds = utcSeconds(stamp[0]) else { continue }
            let frac = stamp.count > 1 ? (Double("0." + stamp[1]) ?? 0) : 0
            let t = Double(seconds) + frac
            if t0 == nil { t0 = t }
            rows.append((t - t0!, ctx, gen))
        }
        return rows
    }

    /// Seconds since 1970-01-01 00:00:00 UTC of a "yyyy-MM-dd HH:mm:ss" stamp (proleptic
    /// Gregorian; Hinnant's days-from-civil); nil when malformed. A DateFormatter took
    /// most of the simulator's start-up on the hour-long trace.
    static func utcSeconds(_ s: Substring) -> Int? {
        let u = Array(s.utf8)
        guard u.count == 19, u[4] == 45, u[7] == 45, u[10] == 32, u[13] == 58, u[16] == 58 else { return nil }
        func num(_ r: Range<Int>) -> Int? {
            var v = 0
            for i in r {
                guard u[i] >= 48, u[i] <= 57 else { return nil }
                v = v * 10 + Int(u[i] - 48)
            }
            return v
        }
        guard let y0 = num(0..<4), let m = num(5..<7), let d = num(8..<10), let hh = num(11..<13), let mm = num(14..<16),
              let ss = num(17..<19), (1...12).contains(m), (1...31).contains(d), hh < 24, mm < 60, ss < 61 else { return nil }
        let y = m <= 2 ? y0 - 1 : y0
        let era = y / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146_097 + doe - 719_468
        return days * 86_400 + hh * 3_600 + mm * 60 + ss
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
