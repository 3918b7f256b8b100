/// Reads gauges out of an engine's Prometheus text exposition (`/metrics`, text format
/// 0.0.4) to learn its load, per DESIGN.md §6.1.
///
/// Known engines: vLLM (`vllm:num_requests_running`, `vllm:num_requests_waiting`,
/// `vllm:gpu_cache_usage_perc` or `vllm:kv_cache_usage_perc`), SGLang
/// (`sglang:num_running_reqs`, `sglang:num_queue_reqs`, `sglang:token_usage`), llama.cpp
/// server (`llamacpp:requests_processing`, `llamacpp:requests_deferred`,
/// `llamacpp:kv_cache_usage_ratio`). Values of series with labels are summed per name.
public enum EngineMetrics {
    /// Parses `name{labels} value` samples; comments and malformed lines are skipped.
    public static func parse(_ text: String, maxLines: Int = 100_000) -> [String: Double] {
        var out: [String: Double] = [:]
        var count = 0
        for rawLine in text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            count += 1
            if count > maxLines { break }
            let line = rawLine.drop(while: { $0 == " " })
            guard !line.isEmpty, line.first != "#" else { continue }
            let nameEnd = line.firstIndex(where: { $0 == "{" || $0 == " " }) ?? line.endIndex
            let name = String(line[..<nameEnd])
            var rest = line[nameEnd...]
            if rest.first == "{" {
                guard let close = rest.lastIndex(of: "}") else { continue }
                rest = rest[rest.index(after: close)...]
            }
            let fields = rest.split(separator: " ")
            guard let first = fields.first, let value = Double(first), value.isFinite else { continue }
            out[name, default: 0] += value
        }
        return out
    }

    /// The load an engine's metrics describe, or nil if they name none of the known gauges.
    public static func load(from samples: [String: Double], capacity: Int) -> (running: Int, waiting: Int, kv: Double?)? {
        let table: [(running: String, waiting: String, kv: [String])] = [
            ("vllm:num_requests_running", "vllm:num_requests_waiting", ["vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"]),
            ("sglang:num_running_reqs", "sglang:num_queue_reqs", ["sglang:token_usage"]),
            ("llamacpp:requests_processing", "llamacpp:requests_deferred", ["llamacpp:kv_cache_usage_ratio"]),
        ]
        for row in table {
            guard let running = samples[row.running] else { continue }
            let waiting = samples[row.waiting] ?? 0
            let kv = row.kv.lazy.compactMap { samples[$0] }.first
            return (count(running), count(waiting), kv.map { $0.isFinite ? min(1, max(0, $0)) : 1 })
        }
        return nil
    }

    /// An engine's gauge as a request count, 0…1,000,000: whatever the engine reports
    /// (1e300, a sum that overflowed to infinity, NaN) never traps a conversion.
    static func count(_ v: Double) -> Int {
        guard v.isFinite else { return v == .infinity ? 1_000_000 : 0 }
        return Int(min(1_000_000, max(0, v.rounded())))
    }
}
