import Foundation
import WWWBackends
import WWWCore

/// The node's backends with per-backend admission control.
///
/// A request is admitted to a backend while its in-flight count is below
/// `capacity + max_queue`; the least-utilized healthy backend serving the model wins.
public final class BackendPool: @unchecked Sendable {
    public struct Entry: Sendable {
        public let backend: any Backend
        public let admissionLimit: Int
    }

    public let entries: [Entry]
    private let lock = NSLock()
    private var inFlight: [String: Int] = [:]
    /// Of `inFlight`, the requests of this node's own users (the rest came from peers).
    private var ownInFlight: [String: Int] = [:]

    public init(entries: [Entry]) {
        self.entries = entries
    }

    /// The user-facing models, in config order, without duplicates.
    public var models: [ModelDescriptor] {
        var seen = Set<String>()
        return entries.flatMap { $0.backend.models.map(\.descriptor) }.filter { seen.insert($0.name).inserted }
    }

    public func serves(_ model: String) -> Bool {
        entries.contains { $0.backend.models.contains { $0.descriptor.name == model } }
    }

    /// A reserved slot on a backend; `release()` exactly once.
    public struct Lease: Sendable {
        public let backend: any Backend
        public let model: BackendModel
        /// True for this node's own users, false for a peer's offloaded job.
        public let own: Bool
        fileprivate let pool: BackendPool

        public func release() { pool.release(backend.name, own: own) }
    }

    public enum AdmissionFailure: Error, Equatable {
        case unknownModel
        /// Every backend serving the model is at its admission limit.
        case overloaded
    }

    /// Reserves a slot on the least-loaded backend that serves `model`.
    public func admit(model: String, own: Bool = true) -> Result<Lease, AdmissionFailure> {
        lock.lock()
        defer { lock.unlock() }
        var best: (Entry, BackendModel, Double)?
        var servesAny = false
        for e in entries {
            guard let m = e.backend.models.first(where: { $0.descriptor.name == model }) else { continue }
            servesAny = true
            let used = inFlight[e.backend.name, default: 0]
            guard used < e.admissionLimit else { continue }
            let util = Double(used) / Double(e.backend.capacity)
            if best == nil || util < best!.2 { best = (e, m, util) }
        }
        guard servesAny else { return .failure(.unknownModel) }
        guard let (e, m, _) = best else { return .failure(.overloaded) }
        inFlight[e.backend.name, default: 0] += 1
        if own { ownInFlight[e.backend.name, default: 0] += 1 }
        return .success(Lease(backend: e.backend, model: m, own: own, pool: self))
    }

    fileprivate func release(_ name: String, own: Bool) {
        lock.lock()
        defer { lock.unlock() }
        let v = inFlight[name, default: 0] - 1
        precondition(v >= 0, "backend \(name) released more leases than it admitted")
        inFlight[name] = v
        if own {
            let o = ownInFlight[name, default: 0] - 1
            precondition(o >= 0 && o <= v, "own leases out of step with all leases")
            ownInFlight[name] = o
        }
    }

    /// Own-user requests waiting beyond capacity on the backends serving `model`
    /// (the executor's "own users first" rule, DESIGN.md §6.3).
    public func ownUsersWaiting(model: String) -> Int {
        lock.lock()
        defer { lock.unlock() }
        return entries.filter { $0.backend.models.contains { $0.descriptor.name == model } }.reduce(0) { sum, e in
            let total = inFlight[e.backend.name, default: 0]
            return sum + min(ownInFlight[e.backend.name, default: 0], max(0, total - e.backend.capacity))
        }
    }

    /// The node's own view of the load of the backends serving `model` (admitted requests
    /// against capacity); nil when no local backend serves it.
    public func localLoad(model: String) -> LoadSnapshot? {
        let serving = entries.filter { $0.backend.models.contains { $0.descriptor.name == model } }
        guard !serving.isEmpty else { return nil }
        return snapshot(of: serving)
    }

    /// The load over every backend (for the member record).
    public func loadSnapshot() -> LoadSnapshot { snapshot(of: entries) }

    private func snapshot(of list: [Entry]) -> LoadSnapshot {
        lock.lock()
        defer { lock.unlock() }
        var running = 0, waiting = 0, capacity = 0
        for e in list {
            let n = inFlight[e.backend.name, default: 0]
            running += min(n, e.backend.capacity)
            waiting += max(0, n - e.backend.capacity)
            capacity += e.backend.capacity
        }
        return LoadSnapshot(running: running, waiting: waiting, capacity: max(1, capacity))
    }

    /// Requests the node has admitted to `backend` and not finished.
    public func admitted(_ backend: String) -> Int {
        lock.lock()
        defer { lock.unlock() }
        return inFlight[backend, default: 0]
    }
}
