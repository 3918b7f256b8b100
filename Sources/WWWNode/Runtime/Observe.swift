import Foundation
import Logging
import WWWAPI
import WWWBackends
import WWWCore

extension NodeRuntime {
    /// The user's error for a machine failure (under the lock: `.stream` looks up the
    /// attempt's own error, e.g. the engine's 400 with its message).
    func apiError(_ f: RequestFailure) -> APIError {
        switch f {
        case .modelNotFound(let m):
            return .modelNotFound(m)
        case .offloadForbidden(let m):
            return APIError(status: 404, message: "The model '\(m)' is not served on this node, and this request may not be offloaded to peers (X-WWWServe-Allow-Offload: false or the API key's allow_offload).", type: "invalid_request_error", param: "model", code: "model_not_found")
        case .noPeerServes(let m):
            return .unavailable("No peer currently serves '\(m)'; retry when providers are back.", retryAfter: 2)
        case .cannotPay(let balance, let price):
            return .unavailable("This node's spendable credit balance (\(balance)) does not cover the price of a job (\(price)); it earns credits by serving other nodes' jobs.", retryAfter: 5)
        case .overloaded(let m):
            return .overloaded("All backends serving '\(m)' are at capacity; retry shortly.", retryAfter: 1)
        case .backendUnavailable(let m):
            return .unavailable("The backends serving '\(m)' are down or restarting; retry shortly.", retryAfter: 2)
        case .throttled(let m, let status, let d):
            let seconds = max(1, Int((Double(d.nanoseconds) / 1e9).rounded(.up)))
            if status == 429 {
                return APIError(status: 429, message: "The engines serving '\(m)' are rate limited; retry after \(seconds) s.",
                                type: "rate_limit_error", code: "rate_limit_exceeded", retryAfter: seconds)
            }
            return .overloaded("The engines serving '\(m)' are overloaded; retry after \(seconds) s.", retryAfter: seconds)
        case .queueFull:
            return .overloaded("Too many requests are waiting on this node; retry shortly.", retryAfter: 1)
        case .shuttingDown:
            return .unavailable("This node is shutting down (or not started yet); retry on another node.", retryAfter: 1)
        case .noCapacity(let m):
            return .overloaded("No backend or peer could take a request for '\(m)' within \(Int(config.node.queueTimeoutS)) s; retry shortly.", retryAfter: 2)
        case .stream(let s, let failure):
            return streams[s]?.error?.apiError ?? Self.apiError(failure)
        case .deadlineExceeded:
            return .upstreamTimeout("The request did not finish within request_timeout_s (\(Int(config.node.requestTimeoutS)) s).")
        }
    }

    static func apiError(_ f: RelayFailure) -> APIError {
        switch f {
        case .connectionLost: return .upstream("The connection to the executor was lost.")
        case .httpStatus(let s) where s == 429 || s == 503: return .overloaded("The executor is overloaded (HTTP \(s)).", retryAfter: 1)
        case .httpStatus(let s) where (400..<500).contains(s):
            return APIError(status: s, message: "The request was rejected upstream (HTTP \(s)).", type: "invalid_request_error", code: "upstream_rejected")
        case .httpStatus(let s): return .upstream("The executor answered HTTP \(s).")
        case .throttled(let s, let d):
            let seconds = d.map { max(1, Int((Double($0.nanoseconds) / 1e9).rounded(.up))) } ?? 1
            if s == 429 {
                return APIError(status: 429, message: "The executor is rate limited (HTTP 429).", type: "rate_limit_error",
                                code: "rate_limit_exceeded", retryAfter: seconds)
            }
            return .overloaded("The executor is overloaded (HTTP \(s)).", retryAfter: seconds)
        case .idleTimeout: return .upstreamTimeout("The backend stopped sending.")
        case .truncated: return .upstream("The backend's stream ended before the answer was complete.")
        case .deadlineExceeded: return .upstreamTimeout("The request's deadline passed.")
        case .executorError(let m): return .upstream("The backend failed: \(m)")
        }
    }

    /// Logs and metrics for the machine's notifications.
    func observe(_ e: NodeEvent) {
        switch e {
        case .membership(let d): observe(d)
        case .offer(let role, let outcome): metrics.offer(role: role.rawValue, outcome: Self.label(outcome))
        case .ledgerEventRejected(let id, let reason):
            metrics.peerMessage(kind: PeerMessageKind.ledger.rawValue, outcome: "event_rejected")
            logger.debug("ledger event rejected", metadata: ["event": "\(id)", "reason": "\(reason)"])
        case .equivocation(let author, let seq):
            logger.warning("equivocation detected", metadata: ["author": "\(author)", "seq": "\(seq)"])
        case .receiptRecorded(let job, _):
            metrics.jobReceipt()
            logger.debug("job receipt published", metadata: ["job": "\(job)"])
        case .receiptRefused(let job, let reason):
            logger.warning("job receipt not signed", metadata: ["job": "\(job)", "reason": "\(reason)"])
        case .peerMessageRefused(let kind, let from, let reason):
            metrics.peerMessage(kind: kind.rawValue, outcome: "refused")
            logger.debug("peer message refused", metadata: ["kind": "\(kind)", "from": "\(from)", "reason": "\(reason)"])
        case .requestEnded(let id, let failure):
            if let failure {
                let e = apiError(failure)
                logger.log(level: e.status >= 500 ? .warning : .info, "request failed",
                           metadata: ["request": "\(id)", "status": "\(e.status)", "reason": "\(failure)", "message": "\(e.message)"])
            }
            endSession(id)
        case .coolingDown(let target, let model, let status, let until):
            // Status 0: not an HTTP answer but a duel copy that failed after its executor accepted.
            metrics.cooldown(target: target.peer == nil ? "local" : status == 0 ? "peer_failed_duel_copy" : "peer", status: status)
            logger.info("upstream cooling down", metadata: ["target": "\(target)", "model": "\(model)", "status": "\(status)",
                                                           "for_s": "\(Double((until - wallClockNow()).nanoseconds) / 1e9)"])
        case .duelStarted(let job, let first, let second):
            metrics.duel("started")
            logger.info("duel started", metadata: ["job": "\(job)", "first": "\(first)", "second": "\(second)"])
        case .duelSkipped(let job, let reason):
            metrics.duel("skipped_" + reason.metricLabel)
            logger.info("job drawn for a duel runs single", metadata: ["job": "\(job)", "reason": "\(reason.metricLabel)"])
        case .duelSettled(let job, let majority, let verdicts):
            metrics.duel("settled_" + (majority?.rawValue ?? "no_majority"))
            metrics.duelAbstentions((peer?.genesis.parameters.judgesPerDuel ?? verdicts) - verdicts)
            logger.info("duel settled", metadata: ["job": "\(job)", "majority": "\(majority?.rawValue ?? "none")", "verdicts": "\(verdicts)"])
        case .duelAbandoned(let job, let reason):
            metrics.duel("abandoned_" + reason.metricLabel)
            logger.info("duel abandoned", metadata: ["job": "\(job)", "reason": "\(reason)"])
        case .verdictSent(_, let choice):
            metrics.verdict(choice.rawValue)
        case .judgeRequestDeclined(let job, let reason):
            metrics.verdict("declined_\(reason.rawValue)")
            if reason == .timedOut { stopJudgement(job) }
            logger.debug("judge request declined", metadata: ["job": "\(job)", "reason": "\(reason.rawValue)"])
        }
    }

    private func observe(_ d: MembershipDirective) {
        switch d {
        case .memberUp(let r): logger.info("peer up", metadata: ["peer": "\(r.node)", "address": "\(r.address)"])
        case .memberDown(let r): logger.warning("peer down", metadata: ["peer": "\(r.node)", "status": "\(r.status)"])
        case .rejected(let from, let subject, let reason):
            metrics.peerMessage(kind: "membership", outcome: "rejected_\(reason.rawValue)")
            logger.debug("membership record rejected", metadata: ["from": "\(from)", "subject": "\(subject)", "reason": "\(reason)"])
        default: break
        }
    }

    static func label(_ o: OfferOutcome) -> String {
        switch o {
        case .accepted: "accepted"
        case .rejected(let r): "rejected_\(r.rawValue)"
        case .timedOut: "timeout"
        case .unreachable: "unreachable"
        case .fallback: "fallback"
        case .failover: "failover"
        }
    }
}

extension DuelAbandonReason {
    /// A bounded metric label.
    var metricLabel: String {
        switch self {
        case .executorFailed: "executor_failed"
        case .refused: "refused"
        case .offerTimedOut: "offer_timed_out"
        case .roundMovedOn: "round_moved_on"
        case .requestEnded: "request_ended"
        case .badAcceptance: "bad_acceptance"
        case .missingAcceptance: "missing_acceptance"
        case .noVerdicts: "no_verdicts"
        case .settlementRefused: "settlement_refused"
        }
    }
}

extension DuelSkipReason {
    var metricLabel: String {
        switch self {
        case .maxDuels: "max_duels"
        case .tooFewExecutors: "too_few_executors"
        case .tooFewJudges: "too_few_judges"
        case .cannotPay: "cannot_pay"
        }
    }
}
