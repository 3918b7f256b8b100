import Synchronization
import WWWCore

/// Signatures `SimCrypto` already verified (bounded: emptied when full).
final class VerifiedMemo: Sendable {
    struct Key: Hashable {
        var signer: NodeID
        var signature: [UInt8]
        var value: Int

        /// The signature in one hasher call (the synthesized hash fed its 64 bytes one by one).
        func hash(into hasher: inout Hasher) {
            hasher.combine(signer)
            signature.withUnsafeBytes { hasher.combine(bytes: $0) }
            hasher.combine(value)
        }
    }

    static let shared = VerifiedMemo()
    static let capacity = 1 << 21
    private let seen = Mutex(Set<Key>())

    func contains(_ k: Key) -> Bool { seen.withLock { $0.contains(k) } }

    func insert(_ k: Key) {
        seen.withLock { s in
            if s.count >= Self.capacity { s.removeAll(keepingCapacity: true) }
            s.insert(k)
        }
    }
}

/// A deterministic, insecure stand-in for Ed25519/SHA-256 so that the simulator (which may
/// not link swift-crypto) can run thousands of signing nodes. Hash: four FNV-1a-64 lanes;
/// signature: hash(publicKey ++ message) twice with different lane offsets (64 bytes).
public struct SimCrypto: CryptoProvider {
    public init() {}

    public func sha256(_ data: [UInt8]) -> [UInt8] { SimCrypto.hash(data, salt: 0) }

    public func verify(signature: [UInt8], message: [UInt8], signer: NodeID) -> Bool {
        signature == SimCrypto.signature(publicKey: signer.bytes, message: message)
    }

    /// Verifies once per (signer, signature, value) in the whole process: a simulated
    /// network of N nodes checks every gossiped record N times, and encoding it each time
    /// was a fifth of the run at 1,000 nodes. Only successes are remembered, keyed by the
    /// value's hash as well as the signature, so a tampered value still fails.
    public func verify<V: CanonicallyEncodable & Hashable>(signature: [UInt8], of value: V, signer: NodeID) -> Bool {
        let key = VerifiedMemo.Key(signer: signer, signature: signature, value: value.hashValue)
        if VerifiedMemo.shared.contains(key) { return true }
        guard verify(signature: signature, message: value.canonical.bytes, signer: signer) else { return false }
        VerifiedMemo.shared.insert(key)
        return true
    }

    static func hash(_ data: [UInt8], salt: UInt64) -> [UInt8] { hash(data, [], salt: salt) }

    /// The four lanes over `a ++ b`, in one pass without concatenating (the simulator hashes
    /// every event several times; this keeps debug-build runs fast).
    static func hash(_ a: [UInt8], _ b: [UInt8], salt: UInt64) -> [UInt8] {
        let prime: UInt64 = 0x0000_0100_0000_01B3
        func start(_ lane: UInt64) -> UInt64 { 0xcbf2_9ce4_8422_2325 &+ (lane &+ salt) &* 0x9E37_79B9_7F4A_7C15 }
        var h0 = start(0), h1 = start(1), h2 = start(2), h3 = start(3)
        for part in [a, b] {
            part.withUnsafeBufferPointer { p in
                var i = 0
                let n = p.count
                while i < n {
                    let x = UInt64(p[i])
                    h0 = (h0 ^ x) &* prime
                    h1 = (h1 ^ x) &* prime
                    h2 = (h2 ^ x) &* prime
                    h3 = (h3 ^ x) &* prime
                    i += 1
                }
            }
        }
        var out = [UInt8](repeating: 0, count: 32)
        for (lane, h) in [h0, h1, h2, h3].enumerated() {
            let f = h ^ (h >> 29)
            for i in 0..<8 { out[lane * 8 + i] = UInt8(truncatingIfNeeded: f >> (8 * UInt64(i))) }
        }
        return out
    }

    static func signature(publicKey: [UInt8], message: [UInt8]) -> [UInt8] {
        hash(publicKey, message, salt: 4) + hash(publicKey, message, salt: 8)
    }
}

/// The signer matching `SimCrypto`; node `index` gets a NodeID derived from it.
public struct SimSigner: MessageSigner {
    public let nodeID: NodeID
    public init(index: Int) { nodeID = NodeID(bytes: SimCrypto.hash(Array("sim-node-\(index)".utf8), salt: 99)) }
    public func sign(_ message: [UInt8]) -> [UInt8] { SimCrypto.signature(publicKey: nodeID.bytes, message: message) }
}

/// A membership message with the parts of the signed envelope the core needs (DESIGN.md §3).
public struct MembershipPacket: Hashable, Sendable {
    public var from: NodeID
    public var message: MembershipMessage
}

/// Drives one `Membership` core in a `Simulation`: the simulator's stand-in for the shell.
public struct MembershipProcess: MembershipMember {
    public var membership: Membership
    public let seeds: [String]
    /// Notifications (everything but `.send`) in order, when `keepNotifications`.
    public private(set) var notifications: [MembershipDirective] = []
    public var keepNotifications: Bool
    /// Bounded notification log.
    public static let maxNotifications = 10_000

    /// Bytes a signed envelope adds around a body: from/to (64 hex each), sentAt, nonce,
    /// 64-byte signature in hex, keys and punctuation.
    public static let envelopeOverhead = 320

    public init(membership: Membership, seeds: [String], keepNotifications: Bool = false) {
        self.membership = membership
        self.seeds = seeds
        self.keepNotifications = keepNotifications
    }

    public var address: String { membership.localRecord.value.address }
    public var nodeID: NodeID { membership.nodeID }
    public var isParticipating: Bool { membership.phase != .left && membership.phase != .idle }
    public var nextDeadline: Instant? { membership.nextDeadline }

    public mutating func start(now: Instant) -> [SimSend<MembershipPacket>] {
        route(membership.start(now: now, seeds: seeds))
    }

    public mutating func tick(now: Instant) -> [SimSend<MembershipPacket>] {
        route(membership.tick(now: now))
    }

    public mutating func receive(_ p: MembershipPacket, fromAddress: String, now: Instant) -> [SimSend<MembershipPacket>] {
        route(membership.receive(p.message, from: p.from, fromAddress: fromAddress, now: now))
    }

    public func wireSize(of p: MembershipPacket) -> Int {
        p.message.canonical.bytes.count + MembershipProcess.envelopeOverhead
    }

    /// Runs a core input (`leave`, `updateLocal`) and routes its directives.
    public mutating func perform(_ input: (inout Membership) -> [MembershipDirective]) -> [SimSend<MembershipPacket>] {
        route(input(&membership))
    }

    mutating func route(_ directives: [MembershipDirective]) -> [SimSend<MembershipPacket>] {
        var out: [SimSend<MembershipPacket>] = []
        for d in directives {
            switch d {
            case .send(let dest, let m):
                out.append(SimSend(to: dest.address, message: MembershipPacket(from: membership.nodeID, message: m)))
            default:
                if keepNotifications && notifications.count < MembershipProcess.maxNotifications { notifications.append(d) }
            }
        }
        return out
    }
}

extension Simulation where P == MembershipProcess {
    /// Adds a membership node `index` at "10.0.x.y:7070" seeded with `seeds`.
    @discardableResult
    public mutating func addMember(
        index: Int, seeds: [String], config: MembershipConfig = MembershipConfig(), incarnation: UInt64 = 0,
        after delay: Duration = .zero
    ) -> Int {
        let m = Membership(
            config: config, signer: SimSigner(index: index), crypto: SimCrypto(),
            address: SimAddress.of(index), incarnation: incarnation, seed: UInt64(index) &* 0x9E37_79B9_7F4A_7C15 &+ 1)
        return add(MembershipProcess(membership: m, seeds: seeds), after: delay)
    }
}

/// Simulated addresses.
public enum SimAddress {
    public static func of(_ index: Int) -> String { "10.\(index / 65_536 % 256).\(index / 256 % 256).\(index % 256):7070" }
}
