import Foundation
import WWWCore

/// The node machine's timers in the shell: one deadline per `NodeTimer` key (setting a key
/// replaces its deadline) and one task that sleeps until the earliest and fires what is
/// due. Setting an earlier deadline wakes the sleeper at once.
///
/// Not thread-safe on its own: `NodeRuntime` calls it under its lock.
struct TimerQueue {
    private var deadlines: [NodeTimer: Instant] = [:]
    /// The instant the sleeping task wakes at, and a handle to wake it earlier.
    private var sleepingUntil: Instant?
    private var sleeper: Task<Void, Never>?

    var count: Int { deadlines.count }

    mutating func set(_ timer: NodeTimer, at: Instant) {
        deadlines[timer] = at
        if let until = sleepingUntil, at < until { sleeper?.cancel() }
    }

    mutating func cancel(_ timer: NodeTimer) { deadlines[timer] = nil }

    /// The earliest deadline.
    var earliest: Instant? { deadlines.values.min() }

    /// Removes and returns the timers due at `now`, earliest first (ties by key).
    mutating func popDue(now: Instant) -> [NodeTimer] {
        let due = deadlines.filter { $0.value <= now }.sorted { ($0.value, $0.key) < ($1.value, $1.key) }
        for (t, _) in due { deadlines[t] = nil }
        return due.map(\.key)
    }

    /// Records the sleeper the timer task waits on.
    mutating func sleeping(until: Instant, task: Task<Void, Never>) {
        sleepingUntil = until
        sleeper = task
    }

    mutating func awake() {
        sleepingUntil = nil
        sleeper = nil
    }

    mutating func stop() {
        sleeper?.cancel()
        deadlines.removeAll()
    }
}
