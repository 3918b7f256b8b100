/// Step 3 of the request workflow, requester side (DESIGN.md §6.3): offer one job to ordered
/// candidates, one at a time, until one accepts, the attempts run out, or the deadline passes.
///
/// One `OfferRound` per job (per duel executor). The shell signs and sends each offer, arms a
/// timer for the returned deadline, and feeds back `accepted`, `rejected` and `timeout`.
///
/// ```
/// idle ──start──▶ offering(c₁, 1) ──reject/timeout──▶ offering(c₂, 2) … ──▶ exhausted
///                      │ accept                              │ accept
///                      ▼                                     ▼
///                 accepted(c₁)                          accepted(c₂)
/// ```
///
/// Time: an offer is live in `[sentAt, deadline)`, where `deadline = min(sentAt +
/// offerTimeout, overallDeadline)`. The shell should put that deadline in the payment
/// authorization's `expiresAt`, so an executor never starts a job whose offer has lapsed.
/// An accept at or after the deadline counts as a timeout; a `timeout` before it is a stale
/// timer and is ignored.
public struct OfferRound: Hashable, Sendable {
    /// Where the round is.
    public enum State: Hashable, Sendable {
        /// `start` not called yet.
        case idle
        /// Waiting for `candidate`'s answer to offer number `attempt` (1-based) until `deadline`.
        case offering(candidate: NodeID, attempt: Int, deadline: Instant)
        /// `executor` accepted; the job runs there (terminal).
        case accepted(executor: NodeID)
        /// No executor; fall back to step 1 (terminal).
        case exhausted(OfferFallbackReason)
    }

    /// What the shell must do after an input.
    public enum Action: Hashable, Sendable {
        /// Sign and send the offer to `to`, with `expiresAt = deadline`; arm a timer for
        /// `deadline` that calls `timeout(now:)`.
        case sendOffer(to: NodeID, attempt: Int, deadline: Instant)
        /// Run the job on `on` (stream, relay, receipt: step 4, `RelayRoute`).
        case execute(on: NodeID)
        /// Give up on offloading this time: call `RequestScheduler.decide` again with
        /// `retryCount + 1`.
        case fallback(OfferFallbackReason)
        /// Nothing to do: the input was stale (another node, a lapsed timer, a terminal round).
        case ignore
    }

    /// How one offer ended, for logs and the simulator's statistics.
    public enum AttemptOutcome: Hashable, Sendable {
        case pending
        case accepted
        case rejected(OfferRejectionReason)
        case timedOut
        /// The connection failed (refused, reset) or the answer was invalid.
        case unreachable
    }

    /// One offer sent in this round.
    public struct Attempt: Hashable, Sendable {
        public var candidate: NodeID
        public var sentAt: Instant
        public var deadline: Instant
        public var outcome: AttemptOutcome
    }

    /// Most offers this round sends (1 ≤ maxAttempts ≤ `SchedulingPolicy.maxOfferAttemptsLimit`).
    public let maxAttempts: Int
    /// How long each offer waits (> 0).
    public let offerTimeout: Duration
    /// No offer is sent or honoured at or after this instant.
    public let overallDeadline: Instant

    /// The current state.
    public private(set) var state: State = .idle
    /// Every offer sent, in order (at most `maxAttempts`).
    public private(set) var attempts: [Attempt] = []
    private var candidates: [NodeID] = []
    private var nextIndex = 0

    /// - Parameters:
    ///   - maxAttempts: usually `policy.maxOfferAttempts`.
    ///   - offerTimeout: usually `policy.offerTimeout`.
    ///   - overallDeadline: when the whole offer phase must be over (e.g. the request's
    ///     arrival plus its time-to-first-token budget).
    public init(maxAttempts: Int, offerTimeout: Duration, overallDeadline: Instant) {
        precondition((1...SchedulingPolicy.maxOfferAttemptsLimit).contains(maxAttempts), "maxAttempts out of range")
        precondition(offerTimeout > .zero, "offerTimeout must be positive")
        self.maxAttempts = maxAttempts
        self.offerTimeout = offerTimeout
        self.overallDeadline = overallDeadline
    }

    /// A round configured from `policy`.
    public init(policy: SchedulingPolicy, overallDeadline: Instant) {
        self.init(maxAttempts: policy.maxOfferAttempts, offerTimeout: policy.offerTimeout,
                  overallDeadline: overallDeadline)
    }

    /// Starts the round with candidates best first (from `ExecutorSelector`); duplicates are
    /// dropped. Returns the first `sendOffer`, or `fallback(.noCandidates)` /
    /// `fallback(.deadlineExceeded)`.
    /// - Precondition: the round is idle.
    public mutating func start(candidates: [NodeID], now: Instant) -> Action {
        precondition(state == .idle, "an OfferRound starts once")
        var seen = Set<NodeID>()
        self.candidates = candidates.filter { seen.insert($0).inserted }
        if self.candidates.isEmpty { return finish(.noCandidates) }
        return offerNext(now: now)
    }

    /// `from` accepted the offer. Honoured only from the current candidate before its
    /// deadline; at or after the deadline it counts as `timeout(now:)`; otherwise `.ignore`.
    public mutating func accepted(from node: NodeID, now: Instant) -> Action {
        guard case .offering(let candidate, _, let deadline) = state, candidate == node else { return .ignore }
        if now >= deadline { return timeout(now: now) }
        record(.accepted)
        state = .accepted(executor: node)
        return .execute(on: node)
    }

    /// `from` rejected the offer with `reason`. From the current candidate: the next offer or
    /// a fallback; otherwise `.ignore`.
    public mutating func rejected(from node: NodeID, reason: OfferRejectionReason, now: Instant) -> Action {
        guard case .offering(let candidate, _, _) = state, candidate == node else { return .ignore }
        record(.rejected(reason))
        return offerNext(now: now)
    }

    /// A timer fired. Acts only if the current offer's deadline has passed (`now ≥ deadline`);
    /// earlier timers are stale and ignored.
    public mutating func timeout(now: Instant) -> Action {
        guard case .offering(_, _, let deadline) = state, now >= deadline else { return .ignore }
        record(.timedOut)
        return offerNext(now: now)
    }

    /// The offer to `from` cannot be answered: the connection was refused or broke, or the
    /// answer did not verify. Like a timeout, but at once (a dead executor's port refuses
    /// connections immediately; waiting out `offerTimeout` would only delay the user).
    /// From the current candidate: the next offer or a fallback; otherwise `.ignore`.
    public mutating func unreachable(from node: NodeID, now: Instant) -> Action {
        guard case .offering(let candidate, _, _) = state, candidate == node else { return .ignore }
        record(.unreachable)
        return offerNext(now: now)
    }

    /// The nodes offered so far, in order (put them on the route's exclusion list).
    public var offeredNodes: [NodeID] { attempts.map(\.candidate) }

    // MARK: - Internals

    private mutating func offerNext(now: Instant) -> Action {
        if now >= overallDeadline { return finish(.deadlineExceeded) }
        if attempts.count >= maxAttempts { return finish(.attemptsExhausted) }
        guard nextIndex < candidates.count else { return finish(.candidatesExhausted) }
        let candidate = candidates[nextIndex]
        nextIndex += 1
        let deadline = min(now + offerTimeout, overallDeadline)
        attempts.append(Attempt(candidate: candidate, sentAt: now, deadline: deadline, outcome: .pending))
        assert(attempts.count <= maxAttempts)
        state = .offering(candidate: candidate, attempt: attempts.count, deadline: deadline)
        return .sendOffer(to: candidate, attempt: attempts.count, deadline: deadline)
    }

    private mutating func finish(_ reason: OfferFallbackReason) -> Action {
        state = .exhausted(reason)
        return .fallback(reason)
    }

    private mutating func record(_ outcome: AttemptOutcome) {
        precondition(!attempts.isEmpty, "an answer needs an offer")
        attempts[attempts.count - 1].outcome = outcome
    }
}

/// Why an `OfferRound` found no executor.
public enum OfferFallbackReason: String, Hashable, Sendable, Codable {
    /// The selector returned no eligible candidate.
    case noCandidates
    /// Every candidate offered rejected or timed out, and none is left.
    case candidatesExhausted
    /// `maxAttempts` offers were rejected or timed out.
    case attemptsExhausted
    /// The round's overall deadline passed.
    case deadlineExceeded
}
