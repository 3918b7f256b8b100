/// The requester's side of a node machine: every user request from the scheduling decision
/// to the end of its answer (DESIGN.md §6.1–6.4). See `RequestLifecycle` for the states.
extension NodeMachine {
    // MARK: Arrival

    mutating func userRequest(_ id: RequestID, _ spec: UserRequestSpec, now: Instant, into out: inout [NodeDirective]) {
        guard requests[id] == nil else { return }   // the driver never reuses an id
        if let failure = admissionProblem(spec) {
            out.append(.respond(id, .reject(failure)))
            out.append(.notify(.requestEnded(id, failure: failure)))
            return
        }
        requests[id] = RequestLifecycle(id: id, spec: spec, now: now, queueTimeout: config.queueTimeout, policy: config.policy)
        out.append(.setTimer(.deadline(id), at: spec.deadline))
        // First come, first served: while older requests for the model wait, a new one
        // queues behind them, and the oldest gets the next try.
        if oldestWaiting(for: spec.model) != nil {
            wait(id, now: now, into: &out)
            if requests[id] != nil { wake(models: [spec.model], limit: 1, now: now, into: &out) }
            return
        }
        place(id, now: now, into: &out)
    }

    /// The oldest request waiting for `model`.
    func oldestWaiting(for model: String) -> RequestID? {
        waiting.first { requests[$0]?.spec.model == model }
    }

    /// Checks that need no decision: is the model served at all, may it be, is there room.
    private func admissionProblem(_ spec: UserRequestSpec) -> RequestFailure? {
        guard phase == .running else { return .shuttingDown }
        let local = backends.serves(spec.model)
        let remote = net?.peersServe(spec.model) ?? false
        if !local && !remote {
            // A pure requester cannot tell an unknown model from one whose providers are all
            // away right now: that is a retryable 503, not a 404.
            return (backends.isEmpty && isNetworked) ? .noPeerServes(model: spec.model) : .modelNotFound(model: spec.model)
        }
        if !local && !spec.allowOffload { return .offloadForbidden(model: spec.model) }
        if requests.count >= config.maxRequests { return .queueFull }
        return nil
    }

    // MARK: Step 1

    /// One pass through step 1 for a request that is waiting or whose last target failed.
    mutating func place(_ id: RequestID, now: Instant, into out: inout [NodeDirective]) {
        guard let r = requests[id], r.route.canStart else { return }
        let model = r.spec.model
        let local = backends.load(model: model, excluding: r.route.backendsOnRoute)
        let pinned = !canOffload(r)
        let mayOffload = (net?.spendable ?? .zero) >= (net?.price ?? .zero)
        let decision = RequestScheduler.decide(model: model, localLoad: local, pinnedLocal: pinned, mayOffload: mayOffload,
                                               retryCount: r.passes, policy: config.policy, prng: &prng)
        requests[id]!.passes += 1
        switch decision {
        case .runLocal, .queueLocal:
            if let b = backends.admit(model: model, own: true, excluding: r.route.backendsOnRoute) {
                startLocal(id, backend: b, into: &out)
            } else if pinned {
                fail(id, r.lastFailure ?? .overloaded(model: model), now: now, into: &out)
            } else {
                wait(id, now: now, into: &out)
            }
        case .offload:
            offload(id, now: now, into: &out)
        case .retryAfter(let d):
            wait(id, now: now, after: d, into: &out)
        case .reject(.noBackendAndCannotOffload):
            // Wait when credits are only tied up in running offloads, or when local backends
            // for the model may come back; otherwise this node cannot pay for a job.
            let failure = RequestFailure.cannotPay(balance: net?.spendable ?? .zero, price: net?.price ?? .zero)
            let paysLater = net.map { $0.ledger.balance(of: $0.me) >= $0.price } ?? false
            if canOffload(r) && (paysLater || backends.serves(model)) {
                requests[id]!.lastFailure = requests[id]!.lastFailure ?? failure
                wait(id, now: now, into: &out)
            } else {
                fail(id, failure, now: now, into: &out)
            }
        case .reject(.pinnedLocalWithoutBackend):
            var failure: RequestFailure = backends.serves(model) ? .backendUnavailable(model: model) : .offloadForbidden(model: model)
            if let t = backends.throttle(model: model) {
                failure = .throttled(model: model, status: t.status, retryAfter: max(t.until - now, .zero))
            }
            fail(id, r.lastFailure ?? failure, now: now, into: &out)
        }
    }

    /// A request may leave this node when it allows it and an alive peer serves its model.
    private func canOffload(_ r: RequestLifecycle) -> Bool {
        r.spec.allowOffload && (net?.peersServe(r.spec.model) ?? false)
    }

    private mutating func startLocal(_ id: RequestID, backend: String, into out: inout [NodeDirective]) {
        let s = makeStream()
        requests[id]!.route.executing(on: .local(backend))
        requests[id]!.phase = .running(stream: s, target: .local(backend))
        requestStreams[s] = id
        out.append(.runInference(s, InferenceJob(backend: backend, model: requests[id]!.spec.model, owner: .user(id))))
    }

    // MARK: Steps 2–3

    private mutating func offload(_ id: RequestID, now: Instant, into out: inout [NodeDirective]) {
        guard isNetworked, let r = requests[id] else { return }
        if !r.spendReserved {
            guard net!.reserveSpend() else { return wait(id, now: now, into: &out) }
            requests[id]!.spendReserved = true
        }
        if r.job == nil {
            let job = net!.newJob(into: &out)
            requests[id]!.job = job
            jobRequests[job] = id
        }
        let order = net!.orderedExecutors(model: r.spec.model, excluding: r.route.peersOnRoute, policy: config.policy, prng: &prng)
        var candidates = order
        if r.job == nil, let job = requests[id]!.job {   // the job's first offload: a duel?
            maybeStartDuel(id, job: job, order: order, now: now, into: &out)
            // The second copy's executor is not a candidate for the first.
            if let second = duels[job]?.duel.second { candidates.removeAll { $0 == second } }
        }
        var round = OfferRound(policy: config.policy, overallDeadline: r.placementDeadline)
        let action = round.start(candidates: candidates, now: now)
        roundAction(id, round: round, action, now: now, into: &out)
    }

    /// Executes an `OfferRound` action for request `id` whose round is now `round`.
    private mutating func roundAction(_ id: RequestID, round: OfferRound, _ first: OfferRound.Action, now: Instant,
                                      into out: inout [NodeDirective]) {
        var round = round
        var action = first
        // Each step consumes one candidate, so the loop ends within maxOfferAttempts steps.
        for _ in 0...SchedulingPolicy.maxOfferAttemptsLimit {
            switch action {
            case .sendOffer(let to, _, let deadline):
                guard let address = net?.address(of: to) else {
                    out.append(.notify(.offer(.requester, .unreachable)))
                    action = round.unreachable(from: to, now: now)
                    continue
                }
                sendOffer(id, to: to, address: address, round: round, deadline: deadline, into: &out)
                return
            case .execute, .ignore:
                return
            case .fallback(let reason):
                out.append(.notify(.offer(.requester, .fallback(reason))))
                releaseSpend(id)
                return wait(id, now: now, into: &out)
            }
        }
    }

    private mutating func sendOffer(_ id: RequestID, to: NodeID, address: String, round: OfferRound, deadline: Instant,
                                    into out: inout [NodeDirective]) {
        guard let r = requests[id], let job = r.job, let net else { return }
        let auth = authorization(id, job: job, executor: to)
        let offer = OfferMessage(authorization: Signed(auth, by: net.signer), route: r.route.peersOnRoute,
                                 duel: duelTerms(job, executor: to, into: &out))
        let s = makeStream()
        requests[id]!.phase = .offering(round: round, stream: s, executor: to)
        requestStreams[s] = id
        out.append(.openOffer(s, to: to, address: address, offer, request: id))
        out.append(.setTimer(.offer(s), at: deadline))
    }

    mutating func offerAnswered(_ signed: Signed<OfferAnswer>, from: NodeID, now: Instant, into out: inout [NodeDirective]) {
        let a = signed.value
        guard let net, signed.signer == from, a.executor == from, a.requester == net.me, signed.isValid(net.crypto),
              a.accepted == (a.reason == nil)
        else {
            out.append(.notify(.peerMessageRefused(.offerAnswer, from: from, reason: "answer not signed by its executor")))
            return
        }
        if shadowAnswered(a, from: from, now: now, into: &out) { return }
        guard let id = jobRequests[a.job], let r = requests[id], case .offering(var round, let s, let executor) = r.phase,
              executor == from, case .offering(let candidate, _, _) = round.state, candidate == from
        else { return }   // stale: that offer was given up already
        out.append(.cancelTimer(.offer(s)))
        let next: OfferRound.Action
        if let reason = a.reason {
            out.append(.notify(.offer(.requester, .rejected(reason))))
            next = round.rejected(from: from, reason: reason, now: now)
        } else {
            next = round.accepted(from: from, now: now)
            if case .execute = next {
                requests[id]!.route.executing(on: .peer(from))
                requests[id]!.phase = .running(stream: s, target: .peer(from))
                out.append(.notify(.offer(.requester, .accepted)))
                firstCopyAccepted(a, stream: s, now: now, into: &out)
                return
            }
            // The accept came at or after the offer's deadline: the round moved on.
            out.append(.notify(.offer(.requester, .timedOut)))
        }
        out.append(.cancelStream(s))
        requestStreams[s] = nil
        roundAction(id, round: round, next, now: now, into: &out)
    }

    mutating func offerTimedOut(_ s: StreamID, now: Instant, into out: inout [NodeDirective]) {
        if shadowOfferTimedOut(s, now: now, into: &out) { return }
        guard let id = requestStreams[s], let r = requests[id], case .offering(var round, let current, _) = r.phase,
              current == s else { return }
        let next = round.timeout(now: now)
        if case .ignore = next { return }
        out.append(.cancelStream(s))
        requestStreams[s] = nil
        out.append(.notify(.offer(.requester, .timedOut)))
        roundAction(id, round: round, next, now: now, into: &out)
    }

    // MARK: Step 4

    mutating func requestStreamEvent(_ s: StreamID, _ e: StreamEvent, now: Instant, into out: inout [NodeDirective]) {
        guard let id = requestStreams[s], let r = requests[id] else { return }
        observeFirstCopy(r, stream: s, e, now: now, into: &out)
        switch (r.phase, e) {
        case (.offering(var round, let current, let executor), _) where current == s:
            // No answer yet, and the connection failed (or the executor broke protocol).
            out.append(.cancelTimer(.offer(s)))
            out.append(.cancelStream(s))
            requestStreams[s] = nil
            out.append(.notify(.offer(.requester, .unreachable)))
            let next = round.unreachable(from: executor, now: now)   // mutates the round first
            roundAction(id, round: round, next, now: now, into: &out)
        case (.running(let current, let target), .firstContent) where current == s:
            requests[id]!.route.firstByte(from: target)
            requests[id]!.phase = .committed(stream: s, target: target)
            out.append(.respond(id, .commit(stream: s, executor: target.peer)))
        case (.running(let current, let target), .finished) where current == s:
            // Finished without a content chunk first (an empty answer): commit, then end.
            requests[id]!.route.firstByte(from: target)
            out.append(.respond(id, .commit(stream: s, executor: target.peer)))
            completed(id, stream: s, target: target, now: now, into: &out)
        case (.running(let current, let target), .failed(let f)) where current == s:
            attemptFailed(id, stream: s, target: target, failure: f, now: now, into: &out)
        case (.committed(let current, let target), .finished) where current == s:
            completed(id, stream: s, target: target, now: now, into: &out)
        case (.committed(let current, let target), .failed(let f)) where current == s:
            _ = requests[id]!.route.failed(target, failure: f, now: now)
            endAttempt(id, stream: s, target: target, now: now, into: &out)
            finish(id, .abort(.stream(s, f)), failure: .stream(s, f), now: now, into: &out)
        default:
            break
        }
    }

    private mutating func completed(_ id: RequestID, stream s: StreamID, target: RelayTarget, now: Instant,
                                    into out: inout [NodeDirective]) {
        requests[id]!.route.finished(from: target)
        endAttempt(id, stream: s, target: target, now: now, into: &out)
        finish(id, .complete(stream: s), failure: nil, now: now, into: &out)
    }

    /// The target failed before the first byte: fail over (step 1 again, excluding it) or fail.
    private mutating func attemptFailed(_ id: RequestID, stream s: StreamID, target: RelayTarget, failure f: RelayFailure,
                                        now: Instant, into out: inout [NodeDirective]) {
        endAttempt(id, stream: s, target: target, now: now, into: &out)
        requests[id]!.lastFailure = .stream(s, f)
        if case .throttled(let status, let retryAfter) = f {
            throttled(target, model: requests[id]!.spec.model, status: status, retryAfter: retryAfter, now: now, into: &out)
        }
        switch requests[id]!.route.failed(target, failure: f, now: now) {
        case .retryElsewhere:
            out.append(.notify(.offer(.requester, .failover)))
            place(id, now: now, into: &out)
        case .failRequest(let final):
            fail(id, final == .deadlineExceeded ? .deadlineExceeded : .stream(s, final), now: now, into: &out)
        case .failStream, .ignore:
            break
        }
    }

    /// Frees what an attempt held: its local slot, its credit reservation, its stream entry.
    private mutating func endAttempt(_ id: RequestID, stream s: StreamID, target: RelayTarget, now: Instant,
                                     into out: inout [NodeDirective]) {
        requestStreams[s] = nil
        switch target {
        case .local(let b):
            backends.release(b, own: true)
            slotFreed(backend: b, now: now, into: &out)
        case .peer:
            releaseSpend(id)
        }
    }

    private mutating func releaseSpend(_ id: RequestID) {
        guard requests[id]?.spendReserved == true else { return }
        requests[id]!.spendReserved = false
        net?.releaseSpend()
    }

    /// A duel's first copy runs on the request's own stream: tell the duel when it ends.
    private mutating func observeFirstCopy(_ r: RequestLifecycle, stream s: StreamID, _ e: StreamEvent, now: Instant,
                                           into out: inout [NodeDirective]) {
        guard let job = r.job, duels[job] != nil else { return }
        let target: RelayTarget? = switch r.phase {
        case .running(let cur, let t), .committed(let cur, let t): cur == s ? t : nil
        default: nil
        }
        guard case .peer(let executor)? = target else { return }
        switch e {
        case .finished(let o): firstCopyEnded(job: job, executor: executor, outcome: o, now: now, into: &out)
        case .failed: firstCopyEnded(job: job, executor: executor, outcome: nil, now: now, into: &out)
        case .firstContent: break
        }
    }

    // MARK: Waiting

    /// Parks the request until its next attempt (`after`, or a backoff growing with its
    /// passes), or fails it when its placement deadline has come.
    mutating func wait(_ id: RequestID, now: Instant, after: Duration? = nil, into out: inout [NodeDirective]) {
        guard let r = requests[id] else { return }
        if now >= r.placementDeadline {
            return fail(id, r.lastFailure ?? .noCapacity(model: r.spec.model), now: now, into: &out)
        }
        if !r.isWaiting || !waiting.contains(id) {
            guard waiting.count < config.maxPending else { return fail(id, .queueFull, now: now, into: &out) }
            waiting.insert(id, at: waiting.firstIndex { $0 > id } ?? waiting.count)
        }
        let retryAt = min(now + (after ?? backoff(passes: r.passes)), r.placementDeadline)
        requests[id]!.phase = .waiting(retryAt: retryAt)
        out.append(.setTimer(.retry(id), at: retryAt))
    }

    /// retryDelay × 2^(passes − 1), capped at `maxRetryBackoff`, at least 1 ms.
    func backoff(passes: Int) -> Duration {
        let base = max(config.policy.retryDelay, .milliseconds(1))
        let shift = min(max(passes - 1, 0), 10)
        return min(base * (1 << shift), config.maxRetryBackoff)
    }

    mutating func retryFired(_ id: RequestID, now: Instant, into out: inout [NodeDirective]) {
        guard let r = requests[id], case .waiting(let at) = r.phase, at <= now else { return }
        if let oldest = oldestWaiting(for: r.spec.model), oldest != id {
            // An older request goes first; this one keeps its place in the queue.
            wait(id, now: now, into: &out)
            return wake(models: [r.spec.model], limit: 1, now: now, into: &out)
        }
        unpark(id)
        place(id, now: now, into: &out)
    }

    private mutating func unpark(_ id: RequestID) {
        if let i = waiting.firstIndex(of: id) { waiting.remove(at: i) }
    }

    /// Capacity may have shown up for `models`: retry up to `maxWakePerSignal` waiting
    /// requests for them now, oldest first.
    mutating func wake(models: Set<String>, limit: Int? = nil, now: Instant, into out: inout [NodeDirective]) {
        guard !waiting.isEmpty, !models.isEmpty else { return }
        let due = waiting.filter { requests[$0].map { models.contains($0.spec.model) } ?? false }.prefix(limit ?? config.maxWakePerSignal)
        for id in due where requests[id]?.isWaiting == true {
            out.append(.cancelTimer(.retry(id)))
            unpark(id)
            place(id, now: now, into: &out)
        }
    }

    /// A local backend slot was freed (or the backend recovered).
    mutating func slotFreed(backend: String, now: Instant, into out: inout [NodeDirective]) {
        let models = Set(backends.slots.first { $0.config.name == backend }?.config.models.map(\.name) ?? [])
        wake(models: models, now: now, into: &out)
    }

    /// Membership notifications: a peer that is up or changed and advertises room may take
    /// waiting requests for its models.
    mutating func peersChanged(_ ds: [NodeDirective], now: Instant, into out: inout [NodeDirective]) {
        var models = Set<String>()
        for case .notify(.membership(let d)) in ds {
            switch d {
            case .memberUp(let r), .memberChanged(let r):
                if r.status == .alive && r.accepting && r.utilizationPPM < 1_000_000 { models.formUnion(r.models.map(\.name)) }
            default: break
            }
        }
        wake(models: models, now: now, into: &out)
    }

    // MARK: Endings

    mutating func userGone(_ id: RequestID, now: Instant, into out: inout [NodeDirective]) {
        guard let r = requests[id] else { return }
        cancelAttempt(r, now: now, into: &out)
        requests[id]!.route.abandon(.connectionLost)
        remove(id, into: &out)
        out.append(.notify(.requestEnded(id, failure: nil)))
    }

    mutating func deadlinePassed(_ id: RequestID, now: Instant, into out: inout [NodeDirective]) {
        guard let r = requests[id], now >= r.spec.deadline else { return }
        let committed: Bool = if case .committed = r.phase { true } else { false }
        cancelAttempt(r, now: now, into: &out)
        requests[id]!.route.abandon(.deadlineExceeded)
        finish(id, committed ? .abort(.deadlineExceeded) : .reject(.deadlineExceeded), failure: .deadlineExceeded,
               now: now, into: &out)
    }

    /// Stops whatever the request is doing now.
    private mutating func cancelAttempt(_ r: RequestLifecycle, now: Instant, into out: inout [NodeDirective]) {
        switch r.phase {
        case .waiting:
            out.append(.cancelTimer(.retry(r.id)))
            unpark(r.id)
        case .offering(_, let s, _):
            out.append(.cancelTimer(.offer(s)))
            out.append(.cancelStream(s))
            requestStreams[s] = nil
            releaseSpend(r.id)
        case .running(let s, let target), .committed(let s, let target):
            out.append(.cancelStream(s))
            endAttempt(r.id, stream: s, target: target, now: now, into: &out)
        }
    }

    private mutating func fail(_ id: RequestID, _ failure: RequestFailure, now: Instant, into out: inout [NodeDirective]) {
        finish(id, .reject(failure), failure: failure, now: now, into: &out)
    }

    private mutating func finish(_ id: RequestID, _ response: UserResponse, failure: RequestFailure?, now: Instant,
                                 into out: inout [NodeDirective]) {
        guard requests[id] != nil else { return }
        out.append(.respond(id, response))
        remove(id, into: &out)
        out.append(.notify(.requestEnded(id, failure: failure)))
    }

    private mutating func remove(_ id: RequestID, into out: inout [NodeDirective]) {
        guard let r = requests.removeValue(forKey: id) else { return }
        if r.spendReserved { net?.releaseSpend() }
        if let job = r.job {
            jobRequests[job] = nil
            requestEnded(job: job, into: &out)
        }
        if let s = r.stream { requestStreams[s] = nil }
        unpark(id)
        out.append(.cancelTimer(.deadline(id)))
    }
}
