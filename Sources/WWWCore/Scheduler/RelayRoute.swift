/// Where one attempt at a request runs: a backend of this node, or a peer executor.
public enum RelayTarget: Hashable, Sendable, CustomStringConvertible {
    /// The local backend with this name.
    case local(String)
    /// A peer that accepted the job.
    case peer(NodeID)

    /// The peer, for `.peer`.
    public var peer: NodeID? {
        if case .peer(let n) = self { return n }
        return nil
    }

    public var description: String {
        switch self {
        case .local(let b): "local:\(b)"
        case .peer(let n): "peer:\(n.short)"
        }
    }
}

/// Step 4 of the request workflow, requester side (DESIGN.md §6.4): which target a request is
/// relayed from, and what to do when it fails.
///
/// The rule (§6a): nothing is committed to the user before the first content chunk. A
/// target failing before that is retried elsewhere — another local backend or another peer
/// (bounded by `maxFailovers` and the deadline) — and the user never sees it; once a byte
/// has reached the user the stream ends with an in-stream error event. Local backends and
/// peers follow the same rule.
///
/// ```
/// idle ─executing─▶ awaitingFirstByte ─firstByte─▶ streaming ─finished─▶ completed
///                     │ failed (retryable, budget left)  │ failed
///                     ▼                                  ▼
///                  retrying ─executing─▶ …             failed (failStream)
///                     │ noExecutorAvailable / failed otherwise
///                     ▼
///                  failed (failRequest)
/// ```
public struct RelayRoute: Hashable, Sendable {
    public enum State: Hashable, Sendable {
        /// No target yet.
        case idle
        /// `target` runs the request; nothing has reached the user.
        case awaitingFirstByte(RelayTarget)
        /// Content from `target` has reached the user.
        case streaming(RelayTarget)
        /// The last target failed before the first byte; the driver is finding another.
        case retrying
        /// The answer was delivered (terminal).
        case completed
        /// The request failed (terminal).
        case failed(RelayFailure)
    }

    /// What the driver must do after a failure.
    public enum Action: Hashable, Sendable {
        /// Place the request again (step 1), excluding the targets in `excluding`, and report
        /// the new target with `executing(on:)`. `failover` counts from 1.
        case retryElsewhere(excluding: [RelayTarget], failover: Int)
        /// Answer the user with a real HTTP error (nothing was committed yet).
        case failRequest(RelayFailure)
        /// Send an in-stream `data: {"error":…}` event, then end the stream.
        case failStream(RelayFailure)
        /// Stale input (another target, or a terminal route): nothing to do.
        case ignore
    }

    /// Most failovers (≥ 0), usually `policy.maxFailovers`.
    public let maxFailovers: Int
    /// No failover starts at or after this instant.
    public let deadline: Instant
    /// The current state.
    public private(set) var state: State = .idle
    /// Every target that has run this request, in order (bounded by `maxFailovers + 1`).
    public private(set) var targets: [RelayTarget] = []
    /// Failovers used so far.
    public private(set) var failovers = 0
    /// The failure that sent the route to `retrying`, if any.
    public private(set) var lastFailure: RelayFailure?

    public init(maxFailovers: Int, deadline: Instant) {
        precondition((0...SchedulingPolicy.maxFailoversLimit).contains(maxFailovers), "maxFailovers out of range")
        self.maxFailovers = maxFailovers
        self.deadline = deadline
    }

    public init(policy: SchedulingPolicy, deadline: Instant) {
        self.init(maxFailovers: policy.maxFailovers, deadline: deadline)
    }

    /// The peers on the route, in order (exclude them from executor choice).
    public var peersOnRoute: [NodeID] { targets.compactMap(\.peer) }

    /// The local backends on the route.
    public var backendsOnRoute: Set<String> {
        Set(targets.compactMap { if case .local(let b) = $0 { b } else { nil } })
    }

    /// True when `executing(on:)` may be called now.
    public var canStart: Bool { state == .idle || state == .retrying }

    /// The driver started the request on `target`.
    /// - Precondition: `canStart`, and `target` is not already on the route.
    public mutating func executing(on target: RelayTarget) {
        precondition(canStart, "executing(on:) needs an idle or retrying route")
        precondition(!targets.contains(target), "a target is tried once per route")
        targets.append(target)
        assert(targets.count <= maxFailovers + 1)
        state = .awaitingFirstByte(target)
    }

    /// The first content chunk from `target` is about to be written to the user: from now
    /// on failures end the stream. Returns false (and changes nothing) when `target` is not
    /// the one awaited — the driver must drop that chunk.
    @discardableResult
    public mutating func firstByte(from target: RelayTarget) -> Bool {
        guard case .awaitingFirstByte(let current) = state, current == target else { return false }
        state = .streaming(target)
        return true
    }

    /// A duel's other copy (`target`, not on the route) had content first, while the awaited
    /// target had none: it takes the awaited target's place and streams to the user now.
    /// Returns false (and changes nothing) unless the route awaits a first byte.
    @discardableResult
    public mutating func raced(to target: RelayTarget) -> Bool {
        guard case .awaitingFirstByte = state, !targets.contains(target), !targets.isEmpty else { return false }
        targets[targets.count - 1] = target
        state = .streaming(target)
        return true
    }

    /// `target` finished its answer cleanly.
    public mutating func finished(from target: RelayTarget) {
        switch state {
        case .awaitingFirstByte(let current), .streaming(let current):
            if current == target { state = .completed }
        default: break
        }
    }

    /// `target` failed with `failure` at `now`.
    public mutating func failed(_ target: RelayTarget, failure: RelayFailure, now: Instant) -> Action {
        switch state {
        case .streaming(let current) where current == target:
            state = .failed(failure)
            return .failStream(failure)
        case .awaitingFirstByte(let current) where current == target:
            lastFailure = failure
            guard failure.warrantsFailover, failovers < maxFailovers, now < deadline else {
                let final: RelayFailure = (failure.warrantsFailover && now >= deadline) ? .deadlineExceeded : failure
                state = .failed(final)
                return .failRequest(final)
            }
            failovers += 1
            state = .retrying
            return .retryElsewhere(excluding: targets, failover: failovers)
        default:
            return .ignore
        }
    }

    /// While retrying, the driver found no target (no candidate, or the wait for one ran
    /// out): fail the request with the last target's failure.
    public mutating func noExecutorAvailable() -> Action {
        guard state == .retrying else { return .ignore }
        let failure = lastFailure ?? .connectionLost
        state = .failed(failure)
        return .failRequest(failure)
    }

    /// The user went away or the deadline passed: the route ends without an answer.
    public mutating func abandon(_ failure: RelayFailure) {
        switch state {
        case .completed, .failed: return
        default: state = .failed(failure)
        }
    }
}
