import Foundation
import WWWBackends
import WWWCore

/// The node's backends: the engines themselves, by name, with their admission limits.
/// Admission control (which backend takes a request, own users first) is the node
/// machine's (`LocalBackends` in WWWCore); this is only the registry the shell looks
/// engines up in.
public final class BackendPool: Sendable {
    public struct Entry: Sendable {
        public let backend: any Backend
        /// Requests admitted at once, running or queued (`capacity + max_queue`).
        public let admissionLimit: Int

        public init(backend: any Backend, admissionLimit: Int) {
            self.backend = backend
            self.admissionLimit = admissionLimit
        }
    }

    public let entries: [Entry]

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
}
