import Foundation

/// A single-reader mailbox: `yield` never blocks; `next` returns a buffered value without
/// suspending (the common case: the machine answered within the `submit` that the reader
/// itself made), else waits. Cancelling the waiting task, or `finish`, ends the wait with nil.
final class Mailbox<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var buffer: [T] = []
    private var waiter: CheckedContinuation<T?, Never>?
    private var finished = false

    func yield(_ value: T) {
        lock.lock()
        guard !finished else { return lock.unlock() }
        if let w = waiter {
            waiter = nil
            lock.unlock()
            w.resume(returning: value)
        } else {
            buffer.append(value)
            lock.unlock()
        }
    }

    /// No more values after the buffered ones.
    func finish() {
        lock.lock()
        finished = true
        let w = waiter
        waiter = nil
        lock.unlock()
        w?.resume(returning: nil)
    }

    func next() async -> T? {
        if let v = take() { return v }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<T?, Never>) in
                lock.lock()
                if !buffer.isEmpty {
                    let v = buffer.removeFirst()
                    lock.unlock()
                    return c.resume(returning: v)
                }
                if finished || Task.isCancelled {
                    lock.unlock()
                    return c.resume(returning: nil)
                }
                waiter = c
                lock.unlock()
            }
        } onCancel: {
            lock.lock()
            let w = waiter
            waiter = nil
            lock.unlock()
            w?.resume(returning: nil)
        }
    }

    /// A buffered value, if any, without waiting.
    func poll() -> T? { take() }

    private func take() -> T? {
        lock.lock()
        defer { lock.unlock() }
        return buffer.isEmpty ? nil : buffer.removeFirst()
    }
}
