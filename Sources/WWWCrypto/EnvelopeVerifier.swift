import Foundation
import WWWCore

/// Why an envelope was refused. Each is counted (`EnvelopeVerifier.rejections`) for metrics.
public enum EnvelopeRejection: String, Error, Hashable, Sendable, CaseIterable {
    /// `to` names another node, or is absent where the route requires it.
    case wrongRecipient
    /// `|now − sentAt|` exceeds the window.
    case stale
    /// The signature is not `from`'s valid Ed25519 signature over the signing bytes.
    case badSignature
    /// `(from, nonce)` was already accepted within the window.
    case replayedNonce
    /// The replay cache is full of nonces still inside the window; refusing is the only
    /// way to keep the no-replay guarantee (the sender retries with a fresh nonce).
    case replayCacheFull
    /// This sender already holds its share of the replay cache (`perSenderCapacity`): one
    /// key — a stranger's fresh one included — cannot fill the cache and cut the node off
    /// from everyone else.
    case senderOverQuota
}

/// Checks incoming envelopes (DESIGN.md §3): recipient, freshness, signature, replay.
///
/// A value-type state machine: the only state is the replay cache and the counters;
/// the caller passes `now` (wall clock, ns) and serializes access (e.g. a lock or actor).
///
/// Check order is cheapest first — recipient, freshness, then signature, then replay —
/// and a nonce is remembered only after the signature verified, so forged envelopes can
/// never fill the cache or block a real sender's nonce. Nonces are keyed by `(from, nonce)`.
///
/// Replay cache: an accepted `(from, nonce)` is remembered until `sentAt + window`
/// (after that the envelope is stale anyway). At most `capacity` entries; expired ones are
/// evicted oldest-expiry first. When full of unexpired entries the verifier REJECTS new
/// envelopes (`replayCacheFull`) rather than forget a nonce still inside the window: a
/// flood degrades availability, never safety; and one sender holds at most
/// `perSenderCapacity` of it, so a single key cannot fill it for everyone. Limitation: if the wall clock jumps back by
/// more than the window, a nonce already evicted could be accepted once more.
public struct EnvelopeVerifier: Sendable {
    /// Accepted clock difference either way (default 60 s).
    public let window: Duration
    /// Maximum remembered nonces (default 100 000; about 10 MB).
    public let capacity: Int
    /// Maximum remembered nonces of one sender (default `capacity / 16`: over a 60 s
    /// window about 100 envelopes a second from one node, far above what gossip and
    /// offers send to one peer).
    public let perSenderCapacity: Int
    private let crypto: any CryptoProvider
    private var cache: ReplayCache
    /// Count of each rejection since creation.
    public private(set) var rejections: [EnvelopeRejection: Int] = [:]
    /// Count of accepted envelopes since creation.
    public private(set) var accepted: Int = 0

    public init(crypto: any CryptoProvider, window: Duration = .seconds(60), capacity: Int = 100_000, perSenderCapacity: Int? = nil) {
        precondition(window > .zero && capacity > 0)
        self.window = window
        self.capacity = capacity
        self.perSenderCapacity = max(1, perSenderCapacity ?? capacity / 16)
        self.crypto = crypto
        self.cache = ReplayCache(capacity: capacity)
    }

    /// Number of nonces currently remembered.
    public var rememberedNonces: Int { cache.count }

    /// Verifies `envelope` addressed to `me` at time `now`.
    /// - Parameter allowUnaddressed: accept `to == nil` (only the join route sets this).
    /// - Returns: the verified envelope, or the first failed check (which is also counted).
    public mutating func verify(_ envelope: Envelope, me: NodeID, now: Instant, allowUnaddressed: Bool = false) -> Result<VerifiedEnvelope, EnvelopeRejection> {
        let result = check(envelope, me: me, now: now, allowUnaddressed: allowUnaddressed)
        switch result {
        case .success: accepted += 1
        case .failure(let r): rejections[r, default: 0] += 1
        }
        return result
    }

    private mutating func check(_ e: Envelope, me: NodeID, now: Instant, allowUnaddressed: Bool) -> Result<VerifiedEnvelope, EnvelopeRejection> {
        switch e.to {
        case .some(let to) where to != me: return .failure(.wrongRecipient)
        case .none where !allowUnaddressed: return .failure(.wrongRecipient)
        default: break
        }
        let skew = now - e.sentAt
        guard skew <= window, skew >= .zero - window else { return .failure(.stale) }
        guard e.hasValidSignature(crypto) else { return .failure(.badSignature) }
        let key = ReplayCache.Key(from: e.from, nonce: e.nonce)
        cache.prune(now: now)
        guard !cache.contains(key) else { return .failure(.replayedNonce) }
        guard cache.count < capacity else { return .failure(.replayCacheFull) }
        guard cache.count(of: e.from) < perSenderCapacity else { return .failure(.senderOverQuota) }
        guard cache.insert(key, expiry: e.sentAt + window) else { return .failure(.replayCacheFull) }
        return .success(VerifiedEnvelope(e))
    }
}

/// Thread-safe wrapper around `EnvelopeVerifier` for concurrent HTTP handlers.
public final class LockedEnvelopeVerifier: @unchecked Sendable {
    private let lock = NSLock()
    private var verifier: EnvelopeVerifier

    public init(_ verifier: EnvelopeVerifier) { self.verifier = verifier }

    public func verify(_ envelope: Envelope, me: NodeID, now: Instant, allowUnaddressed: Bool = false) -> Result<VerifiedEnvelope, EnvelopeRejection> {
        lock.lock(); defer { lock.unlock() }
        return verifier.verify(envelope, me: me, now: now, allowUnaddressed: allowUnaddressed)
    }

    /// A copy of the current state (counters for metrics).
    public var snapshot: EnvelopeVerifier {
        lock.lock(); defer { lock.unlock() }
        return verifier
    }
}

/// Bounded set of `(from, nonce)` with per-entry expiry; a binary min-heap on expiry
/// gives exact eviction of the oldest-expiring entries.
struct ReplayCache: Sendable {
    struct Key: Hashable, Sendable {
        let from: NodeID
        let nonce: [UInt8]
    }
    private struct Entry: Sendable {
        let expiry: Instant
        let key: Key
    }

    let capacity: Int
    private var members: Set<Key> = []
    private var heap: [Entry] = []
    private var perSender: [NodeID: Int] = [:]

    init(capacity: Int) { self.capacity = capacity }

    var count: Int { members.count }
    func count(of sender: NodeID) -> Int { perSender[sender] ?? 0 }
    func contains(_ key: Key) -> Bool { members.contains(key) }

    /// Drops every entry whose expiry is before `now`.
    mutating func prune(now: Instant) {
        while let top = heap.first, top.expiry < now {
            popMin()
            members.remove(top.key)
            let left = (perSender[top.key.from] ?? 1) - 1
            perSender[top.key.from] = left > 0 ? left : nil
        }
        assert(members.count == heap.count)
    }

    /// Adds `key`; false (and no change) when at capacity.
    mutating func insert(_ key: Key, expiry: Instant) -> Bool {
        precondition(!members.contains(key))
        guard members.count < capacity else { return false }
        members.insert(key)
        perSender[key.from, default: 0] += 1
        heap.append(Entry(expiry: expiry, key: key))
        siftUp(heap.count - 1)
        return true
    }

    private mutating func popMin() {
        let last = heap.removeLast()
        guard !heap.isEmpty else { return }
        heap[0] = last
        siftDown(0)
    }

    private mutating func siftUp(_ start: Int) {
        var i = start
        while i > 0 {
            let parent = (i - 1) / 2
            guard heap[i].expiry < heap[parent].expiry else { return }
            heap.swapAt(i, parent)
            i = parent
        }
    }

    private mutating func siftDown(_ start: Int) {
        var i = start
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < heap.count, heap[l].expiry < heap[m].expiry { m = l }
            if r < heap.count, heap[r].expiry < heap[m].expiry { m = r }
            guard m != i else { return }
            heap.swapAt(i, m)
            i = m
        }
    }
}
