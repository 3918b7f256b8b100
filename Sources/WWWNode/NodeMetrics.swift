import CoreMetrics
import Foundation
import Metrics
import Prometheus

/// The node's metrics, exposed in Prometheus text format on `GET /metrics`.
///
/// Uses the swift-metrics API with an injected `PrometheusMetricsFactory`, so each node
/// instance (tests run several in one process) owns its own registry.
public final class NodeMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    private let factory: PrometheusMetricsFactory

    public init() {
        registry = PrometheusCollectorRegistry()
        var f = PrometheusMetricsFactory(registry: registry)
        let latency: [Duration] = [.milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                                   .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
                                   .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30),
                                   .seconds(60), .seconds(120)]
        f.defaultDurationHistogramBuckets = latency
        factory = f
    }

    /// A finished user request: `endpoint` ("chat", "models", …), `status` HTTP code.
    public func request(endpoint: String, status: Int) {
        Counter(label: "wwwserve_requests_total", dimensions: [("endpoint", endpoint), ("status", String(status))], factory: factory).increment()
    }

    /// An error returned to a user, by type (`APIError.metricType`).
    public func error(type: String) {
        Counter(label: "wwwserve_errors_total", dimensions: [("type", type)], factory: factory).increment()
    }

    public func requestDuration(_ d: Duration, backend: String) {
        Timer(label: "wwwserve_request_duration_seconds", dimensions: [("backend", backend)], factory: factory).recordNanoseconds(d.nanosecondsClamped)
    }

    /// Time to first token: request arrival to the first content chunk.
    public func ttft(_ d: Duration, backend: String) {
        Timer(label: "wwwserve_ttft_seconds", dimensions: [("backend", backend)], factory: factory).recordNanoseconds(d.nanosecondsClamped)
    }

    /// Token counts (never negative: whatever an engine reports, a counter only grows).
    public func tokens(prompt: Int, completion: Int, backend: String) {
        Counter(label: "wwwserve_tokens_total", dimensions: [("direction", "in"), ("backend", backend)], factory: factory).increment(by: max(0, prompt))
        Counter(label: "wwwserve_tokens_total", dimensions: [("direction", "out"), ("backend", backend)], factory: factory).increment(by: max(0, completion))
    }

    public func inFlight(backend: String, delta: Int) {
        let m = Meter(label: "wwwserve_in_flight_requests", dimensions: [("backend", backend)], factory: factory)
        if delta > 0 { m.increment(by: Double(delta)) } else { m.decrement(by: Double(-delta)) }
    }

    /// An upstream request cancelled because the user went away.
    public func upstreamCancelled(backend: String) {
        Counter(label: "wwwserve_upstream_cancelled_total", dimensions: [("backend", backend)], factory: factory).increment()
    }

    /// The membership's Lifeguard local health score (0 = healthy, up to `maxLocalHealth`:
    /// this node's probes fail or it had to refute suspicions, so it slows its own period).
    public func membershipLocalHealth(_ score: Int) {
        Gauge(label: "wwwserve_membership_local_health", factory: factory).record(score)
    }

    public func backendHealthy(_ healthy: Bool, backend: String) {
        Gauge(label: "wwwserve_backend_healthy", dimensions: [("backend", backend)], factory: factory).record(healthy ? 1 : 0)
    }

    /// A peer message by kind ("membership", "ledger", "offer") and outcome ("sent",
    /// "accepted", "rejected_badSignature", "rejected_stale", "rejected_replayedNonce",
    /// "rejected_wrongRecipient", "send_failed", "dropped", …).
    /// A backend or peer answered 429/503 and cools down (`target`: "local" or "peer").
    public func cooldown(target: String, status: Int) {
        Counter(label: "wwwserve_upstream_cooldowns_total", dimensions: [("target", target), ("status", String(status))], factory: factory).increment()
    }

    public func peerMessage(kind: String, outcome: String) {
        Counter(label: "wwwserve_peer_messages_total", dimensions: [("kind", kind), ("outcome", outcome)], factory: factory).increment()
    }

    /// Offers by role ("requester", "executor") and outcome.
    public func offer(role: String, outcome: String) {
        Counter(label: "wwwserve_offers_total", dimensions: [("role", role), ("outcome", outcome)], factory: factory).increment()
    }

    /// Ledger events persisted (own and received).
    public func ledgerEvents(_ n: Int) {
        Counter(label: "wwwserve_ledger_events_persisted_total", factory: factory).increment(by: n)
    }

    /// Duels on this requester by outcome ("started", "settled_first", "settled_second",
    /// "settled_tie", "settled_no_majority", "abandoned_<reason>": executor_failed,
    /// bad_acceptance, missing_acceptance, no_verdicts, settlement_refused).
    public func duel(_ outcome: String) {
        Counter(label: "wwwserve_duels_total", dimensions: [("outcome", outcome)], factory: factory).increment()
    }

    /// Verdicts this judge sent, by choice ("first", "second", "tie"), and judge requests it
    /// declined ("declined_<reason>").
    public func verdict(_ outcome: String) {
        Counter(label: "wwwserve_judge_verdicts_total", dimensions: [("outcome", outcome)], factory: factory).increment()
    }

    /// Judge requests this requester sent ("sent"), or could not send ("not_sent_no_text":
    /// an answer missing or over `duel.max_answer_bytes`; "not_sent_hash_mismatch"), one
    /// per judge.
    public func duelJudgeRequests(outcome: String, count: Int) {
        Counter(label: "wwwserve_duel_judge_requests_total", dimensions: [("outcome", outcome)], factory: factory).increment(by: max(0, count))
    }

    /// Panel seats without a verdict in a settled duel (the judge abstained or was late).
    public func duelAbstentions(_ n: Int) {
        Counter(label: "wwwserve_duel_abstentions_total", factory: factory).increment(by: max(0, n))
    }

    /// How long this node's judge took for one pair (both orders).
    public func judgeLatency(_ d: Duration) {
        Timer(label: "wwwserve_judge_duration_seconds", factory: factory).recordNanoseconds(d.nanosecondsClamped)
    }

    /// Job receipts this node published as executor.
    public func jobReceipt() {
        Counter(label: "wwwserve_job_receipts_total", factory: factory).increment()
    }

    /// Prometheus text exposition (format 0.0.4).
    public func render() -> [UInt8] {
        var out: [UInt8] = []
        registry.emit(into: &out)
        return out
    }
}

extension Duration {
    var nanosecondsClamped: Int64 {
        let (s, a) = components
        if s > 9_000_000_000 { return .max }
        return s * 1_000_000_000 + a / 1_000_000_000
    }
}
