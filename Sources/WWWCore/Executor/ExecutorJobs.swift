/// The executor's bookkeeping (DESIGN.md §5, §6.3–6.4): jobs accepted here and not yet
/// receipted or abandoned, credits promised per requester, and recently receipted jobs, so
/// that a job never runs twice and one requester cannot overdraw through parallel offers.
///
/// Every table is bounded: accepted jobs by local admission (each holds a backend slot),
/// receipted jobs by their authorization's expiry (pruned by `prune(now:)`; a replay after
/// expiry is refused as `expired`) and by `maxRemembered`.
struct ExecutorJobs: Sendable {
    struct Accepted: Sendable {
        var authorization: Signed<PaymentAuthorization>
        var stream: StreamID
        var backend: String
        var acceptedAt: Instant
        var requester: NodeID { authorization.value.requester }
        var price: Credits { authorization.value.price }
    }

    /// Receipted jobs kept for duplicate checks (oldest expiries dropped beyond it).
    static let maxRemembered = 100_000

    private(set) var accepted: [JobID: Accepted] = [:]
    private var byStream: [StreamID: JobID] = [:]
    /// Receipted jobs and their authorizations' expiry.
    private var receipted: [JobID: Instant] = [:]

    init(receipted: [(JobID, Instant)] = []) {
        for (j, e) in receipted.suffix(Self.maxRemembered) { self.receipted[j] = e }
    }

    var acceptedCount: Int { accepted.count }

    /// The prices of `requester`'s jobs accepted here and not yet ended: credits it has
    /// promised this executor beyond what its ledger balance already shows.
    func promised(by requester: NodeID) -> Credits {
        accepted.values.filter { $0.requester == requester }.reduce(.zero) { $0 + $1.price }
    }

    func isKnown(_ job: JobID) -> Bool { accepted[job] != nil || receipted[job] != nil }

    /// The checks about the offer itself, in order; nil when it may go on to the
    /// acceptance policy.
    /// Longest an authorization may stay claimable: past it, an offer is refused as a bad
    /// authorization (a job that lives forever would pin a slot and a promise of credits).
    static let maxLifetime = Duration.seconds(24 * 3600)

    static func offerProblem(_ offer: OfferMessage, from: NodeID, me: NodeID, now: Instant, price: Credits,
                             crypto: any CryptoProvider) -> OfferRejectionReason? {
        let auth = offer.authorization
        guard auth.signer == from, auth.value.requester == from, auth.isValid(crypto) else { return .badAuthorization }
        guard auth.value.executor == me else { return .wrongExecutor }
        guard auth.value.expiresAt > now else { return .expired }
        guard auth.value.expiresAt <= now + maxLifetime else { return .badAuthorization }
        // The network's price is the genesis price: a lower one is refused whatever the policy.
        guard auth.value.price >= price else { return .priceTooLow }
        return nil
    }

    mutating func accept(_ auth: Signed<PaymentAuthorization>, stream: StreamID, backend: String, now: Instant) {
        let job = auth.value.job
        assert(accepted[job] == nil, "a job is accepted once")
        accepted[job] = Accepted(authorization: auth, stream: stream, backend: backend, acceptedAt: now)
        byStream[stream] = job
    }

    /// The accepted job running on `stream`.
    func job(on stream: StreamID) -> Accepted? { byStream[stream].flatMap { accepted[$0] } }

    /// Ends the job on `stream`; `receipted` remembers it against replays.
    mutating func end(stream: StreamID, receipted wasReceipted: Bool) -> Accepted? {
        guard let job = byStream.removeValue(forKey: stream), let a = accepted.removeValue(forKey: job) else { return nil }
        if wasReceipted { remember(job, until: a.authorization.value.expiresAt) }
        return a
    }

    mutating func remember(_ job: JobID, until: Instant) {
        receipted[job] = until
        if receipted.count > Self.maxRemembered {
            // Drop the earliest expiries (ties by job id, for determinism).
            let drop = receipted.sorted { ($0.value, $0.key) < ($1.value, $1.key) }.prefix(receipted.count - Self.maxRemembered)
            for (j, _) in drop { receipted[j] = nil }
        }
    }

    /// Forgets receipted jobs whose authorization has expired (replays of them are refused
    /// as `expired` anyway).
    mutating func prune(now: Instant) {
        receipted = receipted.filter { $0.value > now }
    }

    /// Accepted jobs whose authorization expired: they can no longer be paid, so whatever
    /// still runs them is abandoned (a bound on the table, whatever the driver missed).
    func expired(now: Instant) -> [StreamID] {
        accepted.values.filter { $0.authorization.value.expiresAt <= now }.map(\.stream).sorted()
    }
}
