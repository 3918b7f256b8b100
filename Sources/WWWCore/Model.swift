/// A model a node serves, as advertised to users (`/v1/models`) and peers (member records).
public struct ModelDescriptor: Hashable, Sendable, Codable {
    /// The user-facing model name, the OpenAI `model` field (e.g. "smollm2-135m-instruct").
    public var name: String
    /// Weight quantization (e.g. "Q4_1", "bf16", "int4wo-128"); empty when unknown.
    public var quantization: String
    /// Accelerator or host description (e.g. "A100-80GB", "cpu"); empty when unknown.
    public var hardware: String

    public init(name: String, quantization: String = "", hardware: String = "") {
        self.name = name
        self.quantization = quantization
        self.hardware = hardware
    }
}

/// A backend's load at one instant, however the backend measured it.
public struct LoadSnapshot: Hashable, Sendable, Codable {
    /// Requests being decoded now.
    public var running: Int
    /// Requests admitted but waiting for a slot.
    public var waiting: Int
    /// Concurrent requests the backend is configured to run (≥ 1).
    public var capacity: Int
    /// KV-cache usage in [0, 1] when the engine reports it.
    public var kvCacheUsage: Double?

    public init(running: Int, waiting: Int, capacity: Int, kvCacheUsage: Double? = nil) {
        self.running = running
        self.waiting = waiting
        self.capacity = max(1, capacity)
        self.kvCacheUsage = kvCacheUsage
    }

    /// Load as a fraction of capacity: max of (running + waiting) / capacity and KV usage.
    public var utilization: Double {
        let byCount = Double(running + waiting) / Double(capacity)
        return max(byCount, kvCacheUsage ?? 0)
    }
}
