import Testing
@testable import WWWBackends
import WWWNode

/// An engine's `/metrics` is input: any value it reports is read without trapping.
@Suite("engine metrics")
struct EngineMetricsTests {
    @Test func knownGaugesAreRead() {
        let text = """
        # HELP vllm:num_requests_running running
        vllm:num_requests_running{model_name="m"} 3
        vllm:num_requests_waiting{model_name="m"} 2
        vllm:gpu_cache_usage_perc{model_name="m"} 0.25
        """
        let l = EngineMetrics.load(from: EngineMetrics.parse(text), capacity: 4)
        #expect(l?.running == 3 && l?.waiting == 2 && l?.kv == 0.25)
    }

    @Test func hostileValuesAreClamped() {
        let text = """
        llamacpp:requests_processing 1e300
        llamacpp:requests_deferred{a="1"} 1e308
        llamacpp:requests_deferred{a="2"} 1e308
        llamacpp:kv_cache_usage_ratio -5
        """
        let l = EngineMetrics.load(from: EngineMetrics.parse(text), capacity: 4)
        #expect(l?.running == 1_000_000 && l?.waiting == 1_000_000 && l?.kv == 0)
        #expect(EngineMetrics.count(.nan) == 0 && EngineMetrics.count(-3) == 0)
    }
}

@Suite("config errors name config keys")
struct ConfigKeyNameTests {
    @Test func policyErrorsUseTheSnakeCaseKey() {
        var p = PolicySection()
        p.offloadFrequency = 2
        #expect(throws: ConfigError.self) { try p.schedulingPolicy() }
        do { _ = try p.schedulingPolicy() } catch let e as ConfigError {
            #expect(e.message.hasPrefix("policy.offload_frequency must be"), "\(e.message)")
        } catch { Issue.record("\(error)") }
        p.offloadFrequency = 1
        p.offerTimeoutMs = 0
        do { _ = try p.schedulingPolicy() } catch let e as ConfigError {
            #expect(e.message.hasPrefix("policy.offer_timeout_ms must be"), "\(e.message)")
        } catch { Issue.record("\(error)") }
    }
}
