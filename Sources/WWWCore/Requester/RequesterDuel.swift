/// Duels in the node machine (DESIGN.md §6 step 5): the requester's second copy, its
/// judges and its settlement, and the judge's side. The pure rules live in `Duel`,
/// `JudgePanel` and `JudgeDuty`; this file wires them to offers, streams and messages.
///
/// Requester: when an offloaded job becomes a duel, its first two stake-ordered executors
/// are the duel's `first` (the normal offer round's first candidate) and `second` (a
/// parallel "second copy" offer); both offers carry `DuelTerms` and both accept answers a
/// `DuelAcceptance`. The user gets whichever copy has content first (the first copy while
/// both are silent); the driver keeps both answers' texts (`collectAnswer`). Once both finished, the panel is asked
/// (`requestJudgements`); verdicts or the deadline settle the duel (`duelSettlement`,
/// appended and published). Anything else — a rejected or failed copy, the first offer
/// going to another candidate, the user leaving before both finished — abandons it.
struct DuelRun: Sendable {
    var duel: Duel
    /// The user's request, while it lives.
    var request: RequestID?
    /// The copy the user does not read, while it runs: its stream and executor (the second
    /// copy, or the first one after the second won the first-content race).
    var shadow: StreamID?
    var shadowExecutor: NodeID
    /// The second copy's price is reserved.
    var shadowSpend = true
    /// The judges' fees, reserved from the start until the duel ends (settled: paid).
    var feesReserved: Credits = .zero
    /// The job's model (for the cooldown of an executor whose accepted copy failed).
    var model: String = ""
    /// The user's copy finished (the user's answer is complete).
    var firstDone = false
}

/// A judge request this node took.
struct JudgeTask: Sendable {
    var spec: DuelPairSpec
    var requesterAddress: String
}

extension NodeMachine {
    // MARK: Requester: starting a duel

    /// Decides whether the job of `id` becomes a duel (once per job, before its first
    /// offer) and starts the second copy. `order` is the stake order of executors.
    mutating func maybeStartDuel(_ id: RequestID, job: JobID, order: [NodeID], now: Instant, into out: inout [NodeDirective]) {
        guard config.duel.runDuels, let net, duels[job] == nil else { return }
        let p = net.genesis.parameters
        guard p.duelProbability > 0, prng.next() % UInt64(partsPerMillionOne) < UInt64(p.duelProbability) else { return }
        // The draw says duel: from here on a job that runs single says why.
        guard duels.count < config.duel.maxDuels else { return out.append(.notify(.duelSkipped(job: job, reason: .maxDuels))) }
        guard order.count >= 2, let address = net.address(of: order[1]) else {
            return out.append(.notify(.duelSkipped(job: job, reason: .tooFewExecutors)))
        }
        let (e1, e2) = (order[0], order[1])
        var candidates: [(node: NodeID, stake: Credits)] = []
        net.membership.forEachAlivePeer { r in
            if r.judging { candidates.append((r.node, net.ledger.effectiveStake(declared: r.stake, of: r.node))) }
        }
        guard let judges = JudgePanel.select(job: job, requester: net.me, executors: e1, e2, candidates: candidates,
                                             count: p.judgesPerDuel, crypto: net.crypto) else {
            return out.append(.notify(.duelSkipped(job: job, reason: .tooFewJudges)))
        }
        let fees = p.judgeFee.scaled(Int64(p.judgesPerDuel), 1)
        guard self.net!.reserveSpend(net.price + fees) else { return out.append(.notify(.duelSkipped(job: job, reason: .cannotPay))) }
        var run = DuelRun(duel: Duel(job: job, requester: net.me, first: e1, second: e2, judges: judges,
                                     judgingTimeout: config.duel.judgingTimeout), request: id, shadowExecutor: e2,
                          feesReserved: fees, model: requests[id]!.spec.model)
        let s = makeStream()
        run.shadow = s
        duels[job] = run
        duelStreams[s] = job
        let offer = OfferMessage(authorization: Signed(authorization(id, job: job, executor: e2), by: net.signer),
                                 duel: duelTerms(job, executor: e2))
        out.append(.notify(.duelStarted(job: job, first: e1, second: e2)))
        out.append(.openOffer(s, to: e2, address: address, offer, request: id))
        out.append(.setTimer(.offer(s), at: min(now + config.policy.offerTimeout, requests[id]!.placementDeadline)))
    }

    /// The payment authorization of `id`'s job for `executor`.
    func authorization(_ id: RequestID, job: JobID, executor: NodeID) -> PaymentAuthorization {
        let r = requests[id]!
        return PaymentAuthorization(job: job, requester: nodeID!, executor: executor, model: r.spec.model,
                                    price: net!.price, expiresAt: r.spec.deadline)
    }

    /// The duel terms an offer of `job` to `executor` carries (nil: not a duel copy). An
    /// offer of a duel's job to a third executor (the round moved on) abandons the duel.
    mutating func duelTerms(_ job: JobID, executor: NodeID, into out: inout [NodeDirective]) -> DuelTerms? {
        guard let run = duels[job], !run.duel.isOver else { return nil }
        guard executor == run.duel.first || executor == run.duel.second else {
            abandonDuel(job, .roundMovedOn, into: &out)
            return nil
        }
        return duelTerms(job, executor: executor)
    }

    private func duelTerms(_ job: JobID, executor: NodeID) -> DuelTerms? {
        guard let run = duels[job], let net else { return nil }
        let d = run.duel
        let partner = executor == d.first ? d.second : d.first
        // Both bonds: loserBondShare of the smaller stake, so each executor can cover it.
        let stakes = [d.first, d.second].map { n in
            net.ledger.effectiveStake(declared: net.membership.record(of: n)?.stake ?? .zero, of: n)
        }
        let bond = (stakes.min() ?? .zero).scaled(net.genesis.parameters.loserBondShare, partsPerMillionOne)
        return DuelTerms(judges: d.judges, bond: bond, partner: partner)
    }

    // MARK: Requester: answers and streams of the copies

    /// An offer answer for a duel's second copy; true when it was one.
    mutating func shadowAnswered(_ a: OfferAnswer, from: NodeID, now: Instant, into out: inout [NodeDirective]) -> Bool {
        guard let run = duels[a.job], let s = run.shadow, from == run.shadowExecutor, duelStreams[s] == a.job,
              !run.duel.isOver else { return false }
        out.append(.cancelTimer(.offer(s)))
        guard a.accepted, let acceptance = a.duelAcceptance else {
            out.append(.notify(.offer(.requester, a.accepted ? .accepted : .rejected(a.reason ?? .policy))))
            abandonDuel(a.job, .refused(from), into: &out)
            return true
        }
        out.append(.notify(.offer(.requester, .accepted)))
        out.append(.collectAnswer(s, job: a.job))
        applyDuel(a.job, duels[a.job]!.duel.accepted(acceptance, now: now, crypto: net!.crypto), now: now, into: &out)
        return true
    }

    /// The first copy's executor accepted: record its acceptance and keep its text.
    mutating func firstCopyAccepted(_ a: OfferAnswer, stream s: StreamID, now: Instant, into out: inout [NodeDirective]) {
        guard let run = duels[a.job], !run.duel.isOver, a.executor == run.duel.first else { return }
        guard let acceptance = a.duelAcceptance else { return abandonDuel(a.job, .badAcceptance(from: a.executor), into: &out) }
        out.append(.collectAnswer(s, job: a.job))
        applyDuel(a.job, duels[a.job]!.duel.accepted(acceptance, now: now, crypto: net!.crypto), now: now, into: &out)
    }

    /// The user's copy finished or failed.
    mutating func firstCopyEnded(job: JobID, executor: NodeID, outcome: StreamOutcome?, now: Instant, into out: inout [NodeDirective]) {
        guard let run = duels[job], !run.duel.isOver, executor != run.shadowExecutor,
              executor == run.duel.first || executor == run.duel.second else { return }
        guard let outcome else {
            failedAfterAccepting(job, executor, now: now, into: &out)
            return abandonDuel(job, .executorFailed(executor), into: &out)
        }
        duels[job]!.firstDone = true
        applyDuel(job, duels[job]!.duel.finished(executor, responseHash: outcome.responseHash, now: now, crypto: net!.crypto),
                  now: now, into: &out)
    }

    /// An event on the stream the user does not read (the second copy's offer and answer).
    mutating func duelStreamEvent(_ s: StreamID, job: JobID, _ e: StreamEvent, now: Instant, into out: inout [NodeDirective]) {
        guard let run = duels[job], run.shadow == s else { duelStreams[s] = nil; return }
        switch e {
        case .firstContent:
            if !raceWon(job, stream: s, now: now, into: &out) { out.append(.drainStream(s)) }
        case .finished(let o):
            endShadow(job, into: &out)
            applyDuel(job, duels[job]!.duel.finished(run.shadowExecutor, responseHash: o.responseHash, now: now, crypto: net!.crypto),
                      now: now, into: &out)
        case .failed:
            failedAfterAccepting(job, run.shadowExecutor, now: now, into: &out)
            abandonDuel(job, .executorFailed(run.shadowExecutor), into: &out)
        }
    }

    /// A copy failed after its executor accepted the duel: no bond can move (nobody can
    /// prove who cut the stream), so the requester gives that executor no new job for the
    /// model for `DuelConfig.failedCopyCooldown`. An executor that drops duel copies to
    /// dodge its bond loses this requester's work instead (an honest one that fails pays
    /// the same, as after a 503).
    private mutating func failedAfterAccepting(_ job: JobID, _ executor: NodeID, now: Instant, into out: inout [NodeDirective]) {
        guard let run = duels[job], run.duel.hasAccepted(executor), config.duel.failedCopyCooldown > .zero, isNetworked else { return }
        let until = now + config.duel.failedCopyCooldown
        guard let ends = net!.coolDown(executor, model: run.model, until: until) else { return }
        out.append(.setTimer(.cooldown(.peer(executor), model: run.model), at: ends))
        out.append(.notify(.coolingDown(.peer(executor), model: run.model, status: 0, until: ends)))
    }

    /// The first-content race: the copy the user does not read has content first while the
    /// user's copy, accepted, has none yet. The user gets it instead; the other becomes the
    /// copy read only for the judges. False when the user's copy stays (it had content
    /// first, the route may not switch, or the user is gone).
    private mutating func raceWon(_ job: JobID, stream s: StreamID, now: Instant, into out: inout [NodeDirective]) -> Bool {
        guard let run = duels[job], let id = run.request, let r = requests[id],
              case .running(let userStream, .peer(let userExecutor)) = r.phase else { return false }
        let winner = run.shadowExecutor
        guard requests[id]!.route.raced(to: .peer(winner)) else { return false }
        requests[id]!.phase = .committed(stream: s, target: .peer(winner))
        requestStreams[s] = id
        requestStreams[userStream] = nil
        duelStreams[s] = nil
        duelStreams[userStream] = job
        duels[job]!.shadow = userStream
        duels[job]!.shadowExecutor = userExecutor
        out.append(.respond(id, .commit(stream: s, executor: winner)))
        return true
    }

    /// The second copy's offer got no answer in time.
    mutating func shadowOfferTimedOut(_ s: StreamID, now: Instant, into out: inout [NodeDirective]) -> Bool {
        guard let job = duelStreams[s], let run = duels[job], run.shadow == s else { return false }
        out.append(.notify(.offer(.requester, .timedOut)))
        abandonDuel(job, .offerTimedOut(run.shadowExecutor), into: &out)
        return true
    }

    /// The user's request ends (`remove`): a duel whose first copy did not finish is over.
    mutating func requestEnded(job: JobID, into out: inout [NodeDirective]) {
        guard let run = duels[job] else { return }
        duels[job]!.request = nil
        let userExecutor = run.shadowExecutor == run.duel.first ? run.duel.second : run.duel.first
        _ = userExecutor
        if !run.firstDone && !run.duel.isOver { abandonDuel(job, .requestEnded, into: &out) }
    }

    private mutating func endShadow(_ job: JobID, into out: inout [NodeDirective]) {
        guard let run = duels[job] else { return }
        if let s = run.shadow { duelStreams[s] = nil }
        duels[job]!.shadow = nil
        if run.shadowSpend {
            duels[job]!.shadowSpend = false
            net?.releaseSpend()
        }
    }

    // MARK: Requester: judging and settlement

    mutating func verdictArrived(_ v: Signed<JudgeVerdict>, from: NodeID, now: Instant, into out: inout [NodeDirective]) {
        guard let net, duels[v.value.job] != nil, v.signer == from else { return }
        let stake = net.ledger.effectiveStake(declared: net.membership.record(of: from)?.stake ?? .zero, of: from)
        applyDuel(v.value.job, duels[v.value.job]!.duel.verdict(v, minimumStakeAtRisk: stake, signer: net.signer,
                                                                fee: net.genesis.parameters.judgeFee, crypto: net.crypto),
                  now: now, into: &out)
    }

    mutating func duelDeadline(_ job: JobID, now: Instant, into out: inout [NodeDirective]) {
        guard let net, duels[job] != nil else { return }
        applyDuel(job, duels[job]!.duel.deadlinePassed(now: now, signer: net.signer, fee: net.genesis.parameters.judgeFee),
                  now: now, into: &out)
    }

    /// Executes a duel's directives.
    private mutating func applyDuel(_ job: JobID, _ ds: [Duel.Directive], now: Instant, into out: inout [NodeDirective]) {
        for d in ds {
            switch d {
            case .requestVerdicts(let spec, let judges, let deadline):
                var addresses: [NodeID: String] = [:]
                for j in judges { if let a = net?.address(of: j) { addresses[j] = a } }
                out.append(.requestJudgements(spec, judges: addresses))
                out.append(.setTimer(.duel(job), at: deadline))
            case .settle(let s):
                out.append(.cancelTimer(.duel(job)))
                out.append(.dropAnswers(job: job))
                let rejection = net!.appendOwn(.duelSettlement(s), extra: [], now: now, prng: &prng, into: &out)
                if let rejection {
                    out.append(.notify(.duelAbandoned(job: job, reason: .settlementRefused(rejection))))
                } else {
                    out.append(.notify(.duelSettled(job: job, majority: s.majority, verdicts: s.verdicts.count)))
                }
                finishDuel(job)
            case .abandon(let reason):
                abandonDuel(job, reason, into: &out)
            }
        }
    }

    /// Ends a duel without a settlement: stops the second copy, forgets the texts.
    mutating func abandonDuel(_ job: JobID, _ reason: DuelAbandonReason, into out: inout [NodeDirective]) {
        guard let run = duels[job] else { return }
        if let s = run.shadow {
            out.append(.cancelTimer(.offer(s)))
            out.append(.cancelStream(s))
        }
        endShadow(job, into: &out)
        out.append(.cancelTimer(.duel(job)))
        out.append(.dropAnswers(job: job))
        out.append(.notify(.duelAbandoned(job: job, reason: reason)))
        finishDuel(job)
    }

    private mutating func finishDuel(_ job: JobID) {
        guard let run = duels.removeValue(forKey: job) else { return }
        if let s = run.shadow { duelStreams[s] = nil }
        if run.shadowSpend { net?.releaseSpend() }
        if run.feesReserved > .zero { net?.releaseSpend(run.feesReserved) }
    }

    // MARK: Judge

    mutating func judgeRequested(_ spec: DuelPairSpec, from: NodeID, fromAddress: String, now: Instant,
                                 into out: inout [NodeDirective]) {
        guard let net, config.duel.judge, judgeTasks[spec.job] == nil else { return }
        if let refusal = JudgeDuty.refusal(spec, me: net.me, from: from, judgesPerDuel: net.genesis.parameters.judgesPerDuel,
                                           crypto: net.crypto) ?? judgeRefusal(spec, from: from, net: net) {
            out.append(.notify(.judgeRequestDeclined(job: spec.job, reason: refusal)))
            return
        }
        judged.insert(spec.job)
        // Answers go to the requester's own signed record's address, not one it names.
        let address = net.address(of: from) ?? fromAddress
        judgeTasks[spec.job] = JudgeTask(spec: spec, requesterAddress: address)
        out.append(.runJudgement(spec))
        out.append(.setTimer(.judgeTask(spec.job), at: now + config.duel.judgeTaskTimeout))
    }

    /// This judge's own checks beyond `JudgeDuty`: every party a live member it knows (a
    /// judge signs its stake at risk, so it judges only duels between real members), a
    /// job judged once, and bounded work overall and per requester.
    private func judgeRefusal(_ spec: DuelPairSpec, from: NodeID, net: NetworkState) -> JudgeDuty.Refusal? {
        let parties = [from, spec.first, spec.second] + spec.judges.filter { $0 != net.me }
        guard parties.allSatisfy({ n in
            guard let r = net.membership.record(of: n) else { return false }
            return r.status == .alive || r.status == .suspect
        }) else { return .unknownParty }
        guard !judged.contains(spec.job) else { return .duplicate }
        guard judgeTasks.count < config.duel.maxJudgeTasks,
              judgeTasks.values.count(where: { $0.spec.requester == from }) < config.duel.maxJudgeTasksPerRequester
        else { return .busy }
        return nil
    }

    mutating func judgementDone(_ job: JobID, original: PairwisePreference?, swapped: PairwisePreference?, now: Instant,
                                into out: inout [NodeDirective]) {
        guard let net, let task = judgeTasks.removeValue(forKey: job) else { return }
        out.append(.cancelTimer(.judgeTask(job)))
        guard let original, let swapped else { return }   // could not judge: abstain
        let stake = net.ledger.effectiveStake(declared: net.declaredStake, of: net.me)
        let v = JudgeDuty.verdict(task.spec, original: original, swapped: swapped, stakeAtRisk: stake, signer: net.signer)
        out.append(.send(.judgeVerdict(v), to: task.spec.requester, address: task.requesterAddress))
        out.append(.notify(.verdictSent(job: job, choice: v.value.choice)))
    }

    mutating func judgeTaskExpired(_ job: JobID, into out: inout [NodeDirective]) {
        guard judgeTasks.removeValue(forKey: job) != nil else { return }
        out.append(.notify(.judgeRequestDeclined(job: job, reason: .timedOut)))
    }
}
