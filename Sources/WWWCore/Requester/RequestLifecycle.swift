/// One user request at the node that received it, from arrival to the end of its answer
/// (DESIGN.md §6.1–6.4).
///
/// ```
///            ┌──────────────── place (step 1: RequestScheduler.decide) ◀─────────────┐
/// arrival ──▶│ runLocal/queueLocal ─▶ running(local) ─firstContent─▶ committed ─▶ end
///            │ offload ─▶ offering(round) ─accept─▶ running(peer) ─firstContent─┘   │
///            │            └─reject/timeout/unreachable─▶ next offer or fallback ─┐    │
///            │ retryAfter / no room / fallback ─────────▶ waiting ─retry/signal──┘    │
///            └── failure before first content (RelayRoute: retryElsewhere) ──────────┘
/// ```
///
/// A request fails only when it cannot finish by its deadline: it waits (bounded queue,
/// growing pauses, woken early when capacity shows up) until its placement deadline
/// `min(deadline, arrival + queueTimeout)`.
struct RequestLifecycle: Sendable {
    enum Phase: Sendable {
        /// Waiting for placement; `retryAt` is its next attempt.
        case waiting(retryAt: Instant)
        /// An offer to `executor` is out on `stream`.
        case offering(round: OfferRound, stream: StreamID, executor: NodeID)
        /// The request runs on `target`; nothing has reached the user.
        case running(stream: StreamID, target: RelayTarget)
        /// `target`'s stream is being relayed to the user.
        case committed(stream: StreamID, target: RelayTarget)
    }

    let id: RequestID
    let spec: UserRequestSpec
    let arrivedAt: Instant
    /// No placement is attempted at or after this instant.
    let placementDeadline: Instant
    var phase: Phase
    /// Passes through step 1 so far.
    var passes = 0
    /// Targets tried, failover budget, deadline.
    var route: RelayRoute
    /// The job id, once the request was first offered.
    var job: JobID?
    /// The price of one job is reserved while an offer or an offloaded attempt is out.
    var spendReserved = false
    /// The last reason this request could not be placed or run, for its final error.
    var lastFailure: RequestFailure?

    init(id: RequestID, spec: UserRequestSpec, now: Instant, queueTimeout: Duration, policy: SchedulingPolicy) {
        self.id = id
        self.spec = spec
        self.arrivedAt = now
        self.placementDeadline = min(spec.deadline, now + queueTimeout)
        self.phase = .waiting(retryAt: now)
        self.route = RelayRoute(policy: policy, deadline: spec.deadline)
    }

    /// The stream of the current attempt, if any.
    var stream: StreamID? {
        switch phase {
        case .waiting: nil
        case .offering(_, let s, _), .running(let s, _), .committed(let s, _): s
        }
    }

    var isWaiting: Bool {
        if case .waiting = phase { return true }
        return false
    }
}
