import Foundation

/// A one-line progress bar on stderr (a line per tenth when stderr is not a terminal), for long runs
/// (`wwwserve demo`, `wwwserve judge-eval`). Thread-safe.
public final class ProgressBar: @unchecked Sendable {
    private let total: Int
    private let noun: String
    private let finishLabel: String
    private var done = 0
    private var failed = 0
    private let lock = NSLock()
    private let tty = isatty(STDERR_FILENO) != 0

    /// - Parameters:
    ///   - noun: what is counted ("requests", "pairs").
    ///   - finishLabel: the start of the line `finish()` prints on stdout.
    public init(total: Int, noun: String, finishLabel: String) {
        self.total = total
        self.noun = noun
        self.finishLabel = finishLabel
        draw()
    }

    public func advance(ok: Bool) {
        lock.withLock {
            done += 1
            if !ok { failed += 1 }
        }
        draw()
    }

    /// Moves the bar to `done` (monotone: a smaller value is ignored).
    public func update(done value: Int) {
        let moved: Bool = lock.withLock {
            guard value > done else { return false }
            done = min(value, total)
            return true
        }
        if moved { draw() }
    }

    public func clearLine() { if tty { FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8)) } }

    private func draw() {
        fflush(nil)   // what was printed on stdout comes before this line in a shared log
        let (d, f) = lock.withLock { (done, failed) }
        guard tty else {
            // Not a terminal (a log file, CI): one line at every tenth of the way.
            if total > 0, d > 0, d * 10 / total != (d - 1) * 10 / total || d == total {
                FileHandle.standardError.write(Data("  \(d)/\(total) \(noun) done, \(f) failed\n".utf8))
            }
            return
        }
        let width = 30
        let filled = total == 0 ? width : min(width, d * width / total)
        let bar = String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled)
        let line = "[\(bar)] \(d)/\(total) done, \(f) failed"
        FileHandle.standardError.write(Data("\r\u{1B}[2K\(line)".utf8))
    }

    /// Ends the bar's line and prints `<finishLabel>: d/total <noun>, f failed` on stdout.
    public func finish() {
        if tty { FileHandle.standardError.write(Data("\n".utf8)) }
        let (d, f) = lock.withLock { (done, failed) }
        Swift.print("\(finishLabel): \(d)/\(total) \(noun), \(f) failed")
    }
}
