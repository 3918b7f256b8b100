/// Step 1 of the request workflow (DESIGN.md §6.1): run a user's request locally, offload it,
/// queue it, retry it shortly, or reject it.
public enum SchedulingDecision: Hashable, Sendable {
    /// A local backend has room: run the request there now.
    case runLocal
    /// Offload: choose executors (step 2, `ExecutorSelector`) and run an `OfferRound` (step 3).
    /// When the round falls back, call `RequestScheduler.decide` again with `retryCount + 1`
    /// (after a pause: see `NodeMachine`'s pending queue).
    case offload
    /// Queue the request on the busy local backend (its own admission limit bounds the queue).
    case queueLocal
    /// Wait this long, then call `RequestScheduler.decide` again with `retryCount + 1`.
    case retryAfter(Duration)
    /// The request cannot be served by this node; answer the user with an error.
    case reject(SchedulingRejection)
}

/// Why step 1 refused a request. `description` is a user-facing sentence.
public enum SchedulingRejection: Hashable, Sendable, CustomStringConvertible {
    /// No local backend serves the model and this node may not offload (its balance is
    /// negative, DESIGN.md §5). Suggested HTTP status: 503.
    case noBackendAndCannotOffload(model: String)
    /// The request (user header or API-key policy) forbids offloading, and no local backend
    /// serves the model. Suggested HTTP status: 503.
    case pinnedLocalWithoutBackend(model: String)

    public var description: String {
        switch self {
        case .noBackendAndCannotOffload(let m):
            return "model '\(m)' is not served by this node, and this node cannot offload: its credit balance does not cover the price of a job"
        case .pinnedLocalWithoutBackend(let m):
            return "model '\(m)' is not served by this node, and this request may not be offloaded to peers"
        }
    }
}

/// The request scheduler's step-1 rule. Pure: the only state is the caller's PRNG.
public enum RequestScheduler {
    /// Decides what to do with one user request (DESIGN.md §6.1), in this order:
    ///
    /// 1. Pinned local (`pinnedLocal`: a user header or the API key forbids offloading):
    ///    `runLocal` below the load target, `queueLocal` at or above it, `reject` without a
    ///    local backend. No randomness is drawn.
    /// 2. No local backend for the model: `offload` if `mayOffload`, otherwise `reject`.
    ///    There is nothing local to fall back to, so passes never run out here: the caller
    ///    (`NodeMachine`) paces them and fails the request only at its deadline.
    /// 3. Local backend below `policy.loadTarget` (`utilization < loadTarget`): `runLocal`.
    /// 4. Retries exhausted (`retryCount ≥ policy.maxRetries`): `queueLocal` — a node that
    ///    holds a backend serves the request late rather than dropping it.
    /// 5. `mayOffload` and `bernoulli(offloadFrequency)`: `offload` (one draw, only when
    ///    `mayOffload`).
    /// 6. `bernoulli(queueFrequency)`: `queueLocal`.
    /// 7. Otherwise `retryAfter(policy.retryDelay)`.
    ///
    /// - Parameters:
    ///   - model: the requested model name (only used in rejection messages).
    ///   - localLoad: the load of the local backend serving `model`; nil when none does.
    ///   - pinnedLocal: the request must not leave this node.
    ///   - mayOffload: this node may offload now (its balance is ≥ 0, DESIGN.md §5).
    ///   - retryCount: earlier passes of this request through step 1 (retries and failed
    ///     offer rounds alike); 0 on arrival.
    ///   - policy: this node's policy (assumed valid).
    ///   - prng: consumed only in steps 5–6, so decisions replay exactly from a seed.
    public static func decide(
        model: String,
        localLoad: LoadSnapshot?,
        pinnedLocal: Bool,
        mayOffload: Bool,
        retryCount: Int,
        policy: SchedulingPolicy,
        prng: inout SeededPRNG
    ) -> SchedulingDecision {
        precondition(retryCount >= 0, "retryCount counts earlier passes; it cannot be negative")
        if pinnedLocal {
            guard let load = localLoad else { return .reject(.pinnedLocalWithoutBackend(model: model)) }
            return hasRoom(load, policy) ? .runLocal : .queueLocal
        }
        let exhausted = retryCount >= policy.maxRetries
        guard let load = localLoad else {
            return mayOffload ? .offload : .reject(.noBackendAndCannotOffload(model: model))
        }
        if hasRoom(load, policy) { return .runLocal }
        if exhausted { return .queueLocal }
        if mayOffload && prng.bernoulli(policy.offloadFrequency) { return .offload }
        if prng.bernoulli(policy.queueFrequency) { return .queueLocal }
        return .retryAfter(policy.retryDelay)
    }

    /// True when `load` is strictly below the policy's load target.
    public static func hasRoom(_ load: LoadSnapshot, _ policy: SchedulingPolicy) -> Bool {
        load.utilization < policy.loadTarget
    }
}
