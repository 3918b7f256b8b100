/// One local backend as the machine sees it: what it serves and how much it takes.
public struct LocalBackendConfig: Hashable, Sendable {
    /// The operator's name for it, unique within the node.
    public var name: String
    public var models: [ModelDescriptor]
    /// Requests the engine runs at once (its slots).
    public var capacity: Int
    /// Requests admitted at once, running or queued in the engine (usually capacity plus a
    /// queue; 0 admits nothing).
    public var admissionLimit: Int

    public init(name: String, models: [ModelDescriptor], capacity: Int, admissionLimit: Int? = nil) {
        self.name = name
        self.models = models
        self.capacity = max(1, capacity)
        self.admissionLimit = max(0, admissionLimit ?? 5 * self.capacity)
    }

    public func serves(_ model: String) -> Bool { models.contains { $0.name == model } }
}

/// Admission control over this node's backends (DESIGN.md §6.1): in-flight counts per
/// backend, split into this node's own users and peers' jobs, plus the health and KV usage
/// the driver last reported. Pure bookkeeping; the machine decides.
struct LocalBackends: Sendable {
    struct Slot: Sendable {
        var config: LocalBackendConfig
        var inFlight = 0
        var ownInFlight = 0
        /// Assumed healthy until the driver says otherwise.
        var healthy = true
        var kvCacheUsage: Double?
        /// The models whose 429/503 cools them down here: the status the engine answered and
        /// when the cooldown ends (removed by the `.cooldown` timer). At most one entry per
        /// model the backend serves.
        var cooling: [String: (status: Int, until: Instant)] = [:]

        var utilization: Double { Double(inFlight) / Double(config.capacity) }
        /// Healthy, serving `model` and not cooling down for it: new requests may go here.
        func usable(for model: String) -> Bool { healthy && config.serves(model) && cooling[model] == nil }
    }

    private(set) var slots: [Slot]

    init(_ configs: [LocalBackendConfig]) {
        var seen = Set<String>()
        slots = configs.filter { seen.insert($0.name).inserted }.map { Slot(config: $0) }
    }

    var isEmpty: Bool { slots.isEmpty }

    /// The models served, in config order, without duplicates.
    var models: [ModelDescriptor] {
        var seen = Set<String>()
        return slots.flatMap(\.config.models).filter { seen.insert($0.name).inserted }
    }

    var totalCapacity: Int { slots.reduce(0) { $0 + $1.config.capacity } }

    func serves(_ model: String) -> Bool { slots.contains { $0.config.serves(model) } }

    /// Whether a usable backend (healthy, not cooling down) serves `model` outside `excluding`.
    func healthyServes(_ model: String, excluding: Set<String> = []) -> Bool {
        slots.contains { $0.usable(for: model) && !excluding.contains($0.config.name) }
    }

    /// The load of the usable backends serving `model` outside `excluding`; nil when none.
    func load(model: String, excluding: Set<String> = []) -> LoadSnapshot? {
        let list = slots.filter { $0.usable(for: model) && !excluding.contains($0.config.name) }
        return list.isEmpty ? nil : Self.snapshot(list)
    }

    /// The load over every backend (for the member record).
    var totalLoad: LoadSnapshot { Self.snapshot(slots) }

    /// Own-user requests waiting beyond capacity on the backends serving `model` (the
    /// executor's "own users first" rule, §6.3).
    func ownUsersWaiting(model: String) -> Int {
        slots.filter { $0.config.serves(model) }.reduce(0) { sum, s in
            sum + min(s.ownInFlight, max(0, s.inFlight - s.config.capacity))
        }
    }

    /// Reserves a slot on the least-utilized healthy backend that serves `model` and is
    /// below its admission limit; returns its name. Ties go to config order.
    mutating func admit(model: String, own: Bool, excluding: Set<String> = []) -> String? {
        var best: Int?
        for (i, s) in slots.enumerated() where s.usable(for: model) && !excluding.contains(s.config.name) {
            guard s.inFlight < s.config.admissionLimit else { continue }
            if best == nil || s.utilization < slots[best!].utilization { best = i }
        }
        guard let i = best else { return nil }
        slots[i].inFlight += 1
        if own { slots[i].ownInFlight += 1 }
        return slots[i].config.name
    }

    /// Releases a slot taken by `admit`. Unknown names and over-release are ignored (and
    /// asserted in debug builds): the counts never go negative.
    mutating func release(_ name: String, own: Bool) {
        guard let i = slots.firstIndex(where: { $0.config.name == name }) else {
            assertionFailure("release of unknown backend \(name)")
            return
        }
        assert(slots[i].inFlight > 0 && (!own || slots[i].ownInFlight > 0), "released more than admitted")
        slots[i].inFlight = max(0, slots[i].inFlight - 1)
        if own { slots[i].ownInFlight = max(0, slots[i].ownInFlight - 1) }
    }

    /// Records health and KV usage; returns true when the backend became healthy.
    mutating func setHealth(_ name: String, healthy: Bool, kvCacheUsage: Double?) -> Bool {
        guard let i = slots.firstIndex(where: { $0.config.name == name }) else { return false }
        let recovered = healthy && !slots[i].healthy
        slots[i].healthy = healthy
        slots[i].kvCacheUsage = kvCacheUsage.map { min(1, max(0, $0)) }
        return recovered
    }

    /// Starts (or extends) the cooldown of `model` on `name` after its engine answered
    /// `status`; returns when it ends, or nil when `name` does not serve `model`. A shorter
    /// cooldown never cuts a longer one.
    mutating func coolDown(_ name: String, model: String, status: Int, until: Instant) -> Instant? {
        guard let i = slots.firstIndex(where: { $0.config.name == name && $0.config.serves(model) }) else { return nil }
        if let c = slots[i].cooling[model], c.until >= until { return c.until }
        slots[i].cooling[model] = (status, until)
        return until
    }

    /// Ends the cooldown of `model` on `name` if it is due at `now`; true when it ended.
    mutating func cooldownEnded(_ name: String, model: String, now: Instant) -> Bool {
        guard let i = slots.firstIndex(where: { $0.config.name == name }), let c = slots[i].cooling[model], c.until <= now
        else { return false }
        slots[i].cooling[model] = nil
        return true
    }

    /// When every healthy backend serving `model` is cooling down for it: the status they
    /// answered and the earliest end of their cooldowns. nil when one is usable, or none
    /// is healthy (then the backends are down, not throttled).
    func throttle(model: String) -> (status: Int, until: Instant)? {
        let list = slots.filter { $0.healthy && $0.config.serves(model) }
        guard !list.isEmpty, list.allSatisfy({ $0.cooling[model] != nil }) else { return nil }
        return list.compactMap { $0.cooling[model] }.min { $0.until < $1.until }
    }

    /// In-flight requests on `name`.
    func inFlight(_ name: String) -> Int { slots.first { $0.config.name == name }?.inFlight ?? 0 }

    private static func snapshot(_ list: [Slot]) -> LoadSnapshot {
        var running = 0, waiting = 0, capacity = 0
        var kv: Double?
        for s in list {
            running += min(s.inFlight, s.config.capacity)
            waiting += max(0, s.inFlight - s.config.capacity)
            capacity += s.config.capacity
            if let k = s.kvCacheUsage { kv = min(kv ?? 1, k) }
        }
        return LoadSnapshot(running: running, waiting: waiting, capacity: max(1, capacity), kvCacheUsage: kv)
    }
}
