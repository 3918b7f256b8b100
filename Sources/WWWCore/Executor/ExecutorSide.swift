/// The executor's side of offloading (DESIGN.md §6.3–6.4): answer offers with a signed
/// accept or reject, run accepted jobs on a local backend, and publish the `jobReceipt`
/// once the answer was delivered.
extension NetworkState {
    /// Handles an offer from `from`; an accepted job runs on stream `s`. Checks, in order (the first that fails is the typed
    /// rejection reason in the signed answer):
    ///
    /// 1. `badAuthorization` — the payment authorization is not signed by the sender, names
    ///    another requester, or claims to stay valid more than a day; `wrongExecutor`;
    ///    `expired`; `priceTooLow` — below the genesis price;
    /// 2. `catchingUp` — this node may not sign ledger events yet (`readyToAppend`);
    /// 3. `duplicateJob` — the job was accepted or receipted here before; `overloaded` —
    ///    every healthy backend for the model is cooling down after a 429/503;
    /// 4. the acceptance policy (`AcceptanceDecision.evaluate`): `notServing`,
    ///    `priceTooLow`, `insufficientFunds` (balance minus credits already promised here),
    ///    `ownUsersFirst` (own requests queued in the engine or waiting in the machine),
    ///    `overloaded`, `policy`;
    /// 5. `duelTermsRefused` — a duel offer whose panel is malformed or whose bond exceeds
    ///    `loserBondShare` of this node's effective stake;
    /// 6. `overloaded` — no backend slot below its admission limit.
    ///
    /// An accepted duel offer's answer carries this executor's signed `DuelAcceptance` of
    /// the terms (expiring with the payment authorization).
    ///
    /// Directives: the answer (`send(.offerAnswer)` to the sender), then on accept
    /// `runInference(stream, job)`, then a notification.
    mutating func receiveOffer(_ offer: OfferMessage, from: NodeID, fromAddress: String, stream s: StreamID,
                               ownWaiting: (String) -> Int, backends: inout LocalBackends, policy: SchedulingPolicy,
                               now: Instant, prng: inout SeededPRNG, into out: inout [NodeDirective]) {
        let auth = offer.authorization
        let model = auth.value.model
        var reason = ExecutorJobs.offerProblem(offer, from: from, me: me, now: now, price: price, crypto: crypto)
        if reason == nil, !readyToAppend { reason = .catchingUp }
        if reason == nil, executor.isKnown(auth.value.job) { reason = .duplicateJob }
        if reason == nil, backends.throttle(model: model) != nil { reason = .overloaded }   // every engine cooling down
        if reason == nil {
            let covers = ledger.balance(of: from) - executor.promised(by: from) >= auth.value.price
            let outcome = AcceptanceDecision.evaluate(
                price: auth.value.price, servesModel: backends.healthyServes(model), localLoad: backends.load(model: model),
                requesterCoversPrice: covers, ownUsersWaiting: backends.ownUsersWaiting(model: model) + ownWaiting(model),
                policy: policy, prng: &prng)
            if case .reject(let r) = outcome { reason = r }
        }
        if reason == nil, let terms = offer.duel, !terms.acceptable(executor: me, requester: from,
                                                                   judgesPerDuel: genesis.parameters.judgesPerDuel, maxBond: maxDuelBond) {
            reason = .duelTermsRefused
        }
        var backend: String?
        if reason == nil {
            backend = backends.admit(model: model, own: false)
            if backend == nil { reason = .overloaded }
        }
        let acceptance = reason == nil ? offer.duel.map { t in
            Signed(DuelAcceptance(job: auth.value.job, requester: from, executor: me, judges: t.judges, bond: t.bond,
                                  expiresAt: auth.value.expiresAt), by: signer)
        } : nil
        let answer = OfferAnswer(job: auth.value.job, requester: from, executor: me, reason: reason, answeredAt: now,
                                 duelAcceptance: acceptance)
        out.append(.send(.offerAnswer(Signed(answer, by: signer)), to: from, address: fromAddress))
        if let backend {
            executor.accept(auth, stream: s, backend: backend, now: now)
            out.append(.runInference(s, InferenceJob(backend: backend, model: model, owner: .peer(job: auth.value.job, requester: from))))
            out.append(.notify(.offer(.executor, .accepted)))
        } else {
            out.append(.notify(.offer(.executor, .rejected(reason ?? .overloaded))))
        }
    }

    /// The largest bond this executor signs for a duel: `loserBondShare` of its effective stake.
    var maxDuelBond: Credits {
        ledger.effectiveStake(declared: declaredStake, of: me).scaled(genesis.parameters.loserBondShare, partsPerMillionOne)
    }

    /// An event on an executor's stream. Returns the backend whose slot was freed, if any.
    mutating func executorStream(_ s: StreamID, _ event: StreamEvent, backends: inout LocalBackends, now: Instant,
                                 prng: inout SeededPRNG, into out: inout [NodeDirective]) -> String? {
        switch event {
        case .firstContent:
            return nil
        case .finished(let outcome):
            guard let job = executor.end(stream: s, receipted: true) else { return nil }
            backends.release(job.backend, own: false)
            recordReceipt(job, outcome, now: now, prng: &prng, into: &out)
            return job.backend
        case .failed:
            // The requester went away or the engine failed: no delivery, no receipt.
            guard let job = executor.end(stream: s, receipted: false) else { return nil }
            backends.release(job.backend, own: false)
            out.append(.cancelStream(s))
            return job.backend
        }
    }

    /// Signs and publishes the `jobReceipt` (§5) — to the requester at once, and to the
    /// fanout. Refused (never signed) while this node is catching up on its own chain, so
    /// that it cannot equivocate.
    private mutating func recordReceipt(_ job: ExecutorJobs.Accepted, _ outcome: StreamOutcome, now: Instant,
                                        prng: inout SeededPRNG, into out: inout [NodeDirective]) {
        let jobID = job.authorization.value.job
        guard readyToAppend else {
            out.append(.notify(.receiptRefused(job: jobID, reason: "this node is catching up on its own ledger chain")))
            return
        }
        let receipt = JobReceipt(authorization: job.authorization, responseHash: outcome.responseHash,
                                 inputTokens: UInt32(clamping: outcome.usage?.promptTokens ?? 0),
                                 outputTokens: UInt32(clamping: outcome.usage?.completionTokens ?? 0))
        let extra = address(of: job.requester).map { [(job.requester, $0)] } ?? []
        if let why = appendOwn(.jobReceipt(receipt), extra: extra, now: now, prng: &prng, into: &out) {
            out.append(.notify(.receiptRefused(job: jobID, reason: "\(why)")))
        } else {
            out.append(.notify(.receiptRecorded(job: jobID, requester: job.requester)))
        }
    }
}
