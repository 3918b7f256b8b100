import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import WWWAPI
import WWWBackends
import WWWCore
import WWWCrypto

/// Why an offer was turned down, sent back as 409 `OfferAnswer`.
struct OfferRejected: Error {
    let reason: String
}

extension PeerNetwork {
    // MARK: requester side

    /// Step 1 (§6.1) with this node's policy and generator.
    func decide(model: String, localLoad: LoadSnapshot?, pinnedLocal: Bool, retryCount: Int) -> SchedulingDecision {
        RequestScheduler.decide(model: model, localLoad: localLoad, pinnedLocal: pinnedLocal,
                                mayOffload: ledger.balance(of: me) - pendingSpend >= genesis.parameters.pricePerJob,
                                retryCount: retryCount, policy: policy, prng: &prng)
    }

    /// Reserves the price of one offload until it ends (`releaseSpend`), so parallel
    /// requests cannot promise more than the balance.
    func reserveSpend() -> Bool {
        let price = genesis.parameters.pricePerJob
        guard ledger.balance(of: me) - pendingSpend >= price else { return false }
        pendingSpend = pendingSpend + price
        return true
    }

    func releaseSpend() {
        pendingSpend = pendingSpend - genesis.parameters.pricePerJob
        precondition(pendingSpend >= .zero, "released more spend than reserved")
    }

    /// This node's balance and the price per job, for error messages.
    func balanceAndPrice() -> (Credits, Credits) { (ledger.balance(of: me) - pendingSpend, genesis.parameters.pricePerJob) }

    /// Whether any alive peer advertises `model`.
    func peersServe(_ model: String) -> Bool {
        membership.alivePeers().contains { $0.models.contains { $0.name == model } }
    }

    /// Alive peers that advertise at least one model.
    func networkServingPeers() -> Int {
        membership.alivePeers().filter { !$0.models.isEmpty }.count
    }

    /// Models reachable through alive peers.
    func networkModels() -> [ModelDescriptor] {
        var seen = Set<String>()
        return membership.alivePeers().flatMap(\.models).filter { seen.insert($0.name).inserted }.sorted { $0.name < $1.name }
    }

    /// Step 2 (§6.2): eligible executors for `model`, best first.
    func orderedExecutors(model: String, excluded: Set<NodeID>) -> [NodeID] {
        let candidates = membership.alivePeers().map { r in
            ExecutorCandidate(node: r.node, alive: true, servesModel: r.models.contains { $0.name == model },
                              accepting: r.accepting, stake: ledger.effectiveStake(declared: r.stake, of: r.node),
                              utilization: Double(r.utilizationPPM) / 1e6, balance: ledger.balance(of: r.node))
        }
        return ExecutorSelector(policy: policy).orderedNodes(candidates: candidates, requester: me, excluded: excluded,
                                                             limit: policy.maxOfferAttempts, prng: &prng)
    }

    /// A fresh job id; the sequence number is stored before use, so it is never reused.
    func newJob() throws -> JobID {
        let seq = try store.incrementCounter("job_seq", by: 1)
        return JobID.derive(requester: me, sequence: UInt64(seq), crypto: crypto)
    }

    func address(of node: NodeID) -> String? { membership.record(of: node)?.address }

    /// The signed offer for `executor` (§5 payment authorization inside the offer).
    func sealOffer(job: JobID, executor: NodeID, request: ChatCompletionRequest, route: [NodeID], expiresAt: Instant) throws -> Envelope {
        let auth = Signed(PaymentAuthorization(job: job, requester: me, executor: executor, model: request.model,
                                               price: genesis.parameters.pricePerJob, expiresAt: expiresAt), by: key)
        return try Envelope.seal(kind: PeerKind.offer, message: OfferMessage(authorization: auth, request: request, route: route),
                                 to: executor, sentAt: wallClockNow(), signer: key)
    }

    nonisolated var peerClient: HTTPClient { client }

    // MARK: executor side

    /// Verifies an offer and applies this node's acceptance policy (§6.3).
    /// - Throws: `OfferRejected` (→ 409) or an `APIError` for a bad envelope.
    func admitOffer(_ env: Envelope) throws -> OfferMessage {
        let v = try verify(env, kind: PeerKind.offer)
        let offer = try decodeBody(v, OfferMessage.self)
        let auth = offer.authorization
        guard auth.signer == v.from, auth.value.requester == v.from, auth.isValid(crypto) else { throw OfferRejected(reason: "badAuthorization") }
        guard auth.value.executor == me else { throw OfferRejected(reason: "wrongExecutor") }
        guard auth.value.model == offer.request.model else { throw OfferRejected(reason: "modelMismatch") }
        guard auth.value.expiresAt > wallClockNow() else { throw OfferRejected(reason: "expired") }
        guard readyToAppend else {
            metrics.offer(role: "executor", outcome: "rejected_catchingUp")
            throw OfferRejected(reason: "catchingUp")
        }
        let job = auth.value.job
        guard acceptedJobs[job] == nil, !receiptedJobs.contains(job) else {
            metrics.offer(role: "executor", outcome: "rejected_duplicateJob")
            throw OfferRejected(reason: "duplicateJob")
        }
        let promised = acceptedJobs.values.filter { $0.requester == auth.value.requester }.reduce(Credits.zero) { $0 + $1.price }
        let outcome = AcceptanceDecision.evaluate(
            price: auth.value.price, servesModel: pool.serves(offer.request.model),
            localLoad: pool.localLoad(model: offer.request.model),
            requesterCoversPrice: ledger.balance(of: auth.value.requester) - promised >= auth.value.price,
            ownUsersWaiting: pool.ownUsersWaiting(model: offer.request.model), policy: policy, prng: &prng)
        if case .reject(let r) = outcome {
            metrics.offer(role: "executor", outcome: "rejected_\(r.rawValue)")
            throw OfferRejected(reason: r.rawValue)
        }
        metrics.offer(role: "executor", outcome: "accepted")
        precondition(acceptedJobs.count < 100_000, "accepted jobs are bounded by admission")
        acceptedJobs[job] = (auth.value.requester, auth.value.price)
        return offer
    }

    /// The executor's job ended without a receipt (requester gone, engine failed).
    func abandonJob(_ job: JobID) { acceptedJobs[job] = nil }
}

/// The requester's side of offloading (§6.2–6.4) as a `Backend`: offer rounds over the
/// stake-ordered executors, then relay of the accepted executor's stream, failing over to
/// another executor while nothing has reached the user.
final class NetworkBackend: Backend, @unchecked Sendable {
    let name = "network"
    let kind = "network"
    let models: [BackendModel] = []
    let capacity = 1
    let network: PeerNetwork
    let policy: SchedulingPolicy
    let requestTimeout: Duration
    let logger: Logger
    let metrics: NodeMetrics
    private let lock = NSLock()
    private var _executor: NodeID?

    init(network: PeerNetwork, policy: SchedulingPolicy, requestTimeout: Duration, metrics: NodeMetrics, logger: Logger) {
        self.network = network
        self.policy = policy
        self.requestTimeout = requestTimeout
        self.metrics = metrics
        self.logger = logger
    }

    /// The executor currently serving the request.
    var executor: NodeID? { lock.withLock { _executor } }

    func status() async -> BackendStatus {
        BackendStatus(name: name, kind: kind, healthy: true, url: nil, pid: nil, load: LoadSnapshot(running: 0, waiting: 0, capacity: 1), restarts: 0, lastError: nil)
    }

    func chat(_ request: ChatCompletionRequest, model: BackendModel) async throws -> ChunkStream {
        try await start(request)
    }

    /// Reserves the price, runs `start`, and releases the reservation when the stream ends.
    func startReserved(_ request: ChatCompletionRequest) async throws -> ChunkStream {
        guard await network.reserveSpend() else {
            let (balance, price) = await network.balanceAndPrice()
            throw BackendError.unavailable("this node's spendable credit balance (\(balance)) does not cover the price of a job (\(price)); it earns credits by serving other nodes' jobs", retryAfter: 5)
        }
        let inner: ChunkStream
        do {
            inner = try await start(request)
        } catch {
            await network.releaseSpend()
            throw error
        }
        let network = self.network
        let (stream, c) = ChunkStream.makeStream()
        let task = Task {
            do {
                for try await chunk in inner {
                    if case .terminated = c.yield(chunk) { break }
                }
                c.finish()
            } catch {
                c.finish(throwing: error)
            }
            await network.releaseSpend()
        }
        c.onTermination = { reason in if case .cancelled = reason { task.cancel() } }
        return stream
    }

    /// Runs the first offer round before returning, so a round that finds no executor
    /// throws here (and the caller can go back to step 1); failovers after an executor
    /// accepted happen inside the returned stream.
    /// - Throws: `BackendError.unavailable` when no peer accepted.
    func start(_ request: ChatCompletionRequest) async throws -> ChunkStream {
        let job = try await network.newJob()
        let deadline = wallClockNow() + requestTimeout
        guard let first = await offerRound(job: job, request: request, excluded: [], deadline: deadline) else {
            throw BackendError.unavailable("no peer accepted the job for '\(request.model)'", retryAfter: 1)
        }
        let (stream, continuation) = ChunkStream.makeStream()
        let task = Task { await self.relay(job: job, request: request, first: first, deadline: deadline, into: continuation) }
        continuation.onTermination = { reason in if case .cancelled = reason { task.cancel() } }
        return stream
    }

    private func relay(job: JobID, request: ChatCompletionRequest, first: (NodeID, HTTPClientResponse), deadline: Instant,
                       into c: ChunkStream.Continuation) async {
        var route = RelayRoute(policy: policy, deadline: deadline)
        var excluded: Set<NodeID> = []
        var next: (NodeID, HTTPClientResponse)? = first
        for _ in 0...policy.maxFailovers {
            guard let (executor, response) = next else {
                c.finish(throwing: BackendError.unavailable("no peer accepted the job for '\(request.model)'", retryAfter: 1))
                return
            }
            lock.withLock { _executor = executor }
            route.executing(on: executor)
            var sawContent = false
            do {
                for try await chunk in ChunkStream.sse(response.body, onEnd: {}) {
                    try Task.checkCancellation()
                    if !sawContent, chunk.carriesContentOrFinish { sawContent = true; _ = route.firstByte(from: executor) }
                    if case .terminated = c.yield(chunk) { throw CancellationError() }
                }
                route.finished(from: executor)
                c.finish()
                return
            } catch {
                if Task.isCancelled || error is CancellationError { c.finish(throwing: BackendError.cancelled); return }
                let mapped = OpenAIBackend.map(error)
                if sawContent { c.finish(throwing: mapped); return }
                switch route.executorFailed(executor, failure: Self.relayFailure(mapped), now: wallClockNow()) {
                case .retryElsewhere(let ex, _):
                    metrics.offer(role: "requester", outcome: "failover")
                    logger.warning("executor failed before the first byte; failing over", metadata: ["executor": "\(executor)", "error": "\(mapped)"])
                    excluded = Set(ex)
                    next = await offerRound(job: job, request: request, excluded: excluded, deadline: deadline)
                default:
                    c.finish(throwing: mapped)
                    return
                }
            }
        }
        c.finish(throwing: BackendError.unavailable("every executor failed", retryAfter: 1))
    }

    static func relayFailure(_ e: BackendError) -> RelayFailure {
        switch e {
        case .timeout: return .idleTimeout
        case .truncated: return .truncated
        case .unavailable, .cancelled: return .connectionLost
        case .overloaded: return .httpStatus(503)
        case .rejected(let s, _): return .httpStatus(s)
        case .failed(let m): return .executorError(m)
        }
    }

    /// One offer round (§6.3): offers go to the stake-ordered candidates one at a time;
    /// returns the accepting executor and its (streaming) response, or nil to fall back.
    private func offerRound(job: JobID, request: ChatCompletionRequest, excluded: Set<NodeID>, deadline: Instant)
        async -> (NodeID, HTTPClientResponse)?
    {
        let order = await network.orderedExecutors(model: request.model, excluded: excluded)
        var round = OfferRound(policy: policy, overallDeadline: deadline)
        var action = round.start(candidates: order, now: wallClockNow())
        for _ in 0...(policy.maxOfferAttempts + 1) {
            switch action {
            case .sendOffer(let to, _, let offerDeadline):
                let (next, response) = await sendOffer(job: job, to: to, request: request, route: Array(excluded),
                                                       offerDeadline: offerDeadline, requestDeadline: deadline, round: &round)
                action = next
                if case .execute = action, let response { return (to, response) }
            case .execute, .fallback, .ignore:
                metrics.offer(role: "requester", outcome: "fallback")
                return nil
            }
        }
        return nil
    }

    /// Sends one offer and feeds its outcome to `round`; the response is the accepted stream.
    private func sendOffer(job: JobID, to: NodeID, request: ChatCompletionRequest, route: [NodeID], offerDeadline: Instant,
                           requestDeadline: Instant, round: inout OfferRound) async -> (OfferRound.Action, HTTPClientResponse?) {
        do {
            guard let address = await network.address(of: to) else { return (round.timeout(now: offerDeadline), nil) }
            let env = try await network.sealOffer(job: job, executor: to, request: request, route: route, expiresAt: requestDeadline)
            let response = try await headWithin(offerDeadline - wallClockNow(), address: address, envelope: env, total: requestDeadline - wallClockNow())
            if response.status == .ok {
                metrics.offer(role: "requester", outcome: "accepted")
                return (round.accepted(from: to, now: wallClockNow()), response)
            }
            let body = (try? await response.body.collect(upTo: 1 << 16)).map { Data(buffer: $0) } ?? Data()
            let reason = (try? JSONDecoder().decode(OfferAnswer.self, from: body)).flatMap { OfferRejectionReason(rawValue: $0.reason) } ?? .policy
            metrics.offer(role: "requester", outcome: "rejected")
            return (round.rejected(from: to, reason: reason, now: wallClockNow()), nil)
        } catch {
            metrics.offer(role: "requester", outcome: "timeout")
            return (round.timeout(now: offerDeadline), nil)
        }
    }

    /// Posts the offer; the response head must arrive within `head` (the offer timeout),
    /// the whole stream within `total`.
    private func headWithin(_ head: Duration, address: String, envelope: Envelope, total: Duration) async throws -> HTTPClientResponse {
        try await withThrowingTaskGroup(of: HTTPClientResponse?.self) { group in
            group.addTask { try await self.network.post(address: address, path: "/p2p/v1/offer", envelope: envelope, timeout: total) }
            group.addTask {
                try await Task.sleep(for: max(head, .milliseconds(1)))
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next(), let response = first else { throw BackendError.timeout("offer not answered in time") }
            return response
        }
    }
}
