/// A job's identity: SHA-256 of the canonical `{"requester": hex, "seq": n}` (DESIGN.md §1).
public struct JobID: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    /// 32 bytes.
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) {
        precondition(bytes.count == 32, "a JobID is 32 bytes")
        self.bytes = bytes
    }

    public init?(hex: String) {
        guard let b = Hex.decode(hex), b.count == 32 else { return nil }
        self.bytes = b
    }

    /// One hasher call over the raw bytes (the synthesized hash fed them one at a time:
    /// the simulator spent a sixth of its time there).
    public func hash(into hasher: inout Hasher) { bytes.withUnsafeBytes { hasher.combine(bytes: $0) } }

    /// The job id of the requester's `sequence`-th job.
    public static func derive(requester: NodeID, sequence: UInt64, crypto: any CryptoProvider) -> JobID {
        let v = CanonicalValue.object(["requester": .string(requester.hex), "seq": .int(Int64(sequence))])
        return JobID(bytes: crypto.sha256(v.bytes))
    }

    public var hex: String { Hex.encode(bytes) }
    public var description: String { String(hex.prefix(12)) }
    public static func < (a: JobID, b: JobID) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        guard let id = JobID(hex: try c.decode(String.self)) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "JobID must be 64 hex characters")
        }
        self = id
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(hex)
    }
}

/// The requester's signed promise to pay (DESIGN.md §5, `jobReceipt`): carried inside the
/// offer; the executor countersigns it with the response hash once it delivered.
public struct PaymentAuthorization: Hashable, Sendable, Codable, CanonicallyEncodable {
    public var job: JobID
    public var requester: NodeID
    public var executor: NodeID
    /// The user-facing model name.
    public var model: String
    public var price: Credits
    /// After this instant the executor may no longer claim the payment.
    public var expiresAt: Instant

    public init(job: JobID, requester: NodeID, executor: NodeID, model: String, price: Credits, expiresAt: Instant) {
        self.job = job
        self.requester = requester
        self.executor = executor
        self.model = model
        self.price = price
        self.expiresAt = expiresAt
    }

    public var canonical: CanonicalValue {
        .object([
            "type": .string("paymentAuthorization"),
            "job": .string(job.hex),
            "requester": .string(requester.hex),
            "executor": .string(executor.hex),
            "model": .string(model),
            "price": .int(price.micro),
            "expiresAt": .int(expiresAt.nanoseconds),
        ])
    }
}

/// A value together with its signer's Ed25519 signature over the value's canonical bytes.
///
/// Immutable storage is shared: a copy is one reference (a simulated network of 10,000
/// nodes holds every member's record in every table, and gossip copies records into
/// every message). Value semantics are kept: setting a field makes a new storage.
public struct Signed<Value: CanonicallyEncodable & Hashable & Sendable & Codable>: Hashable, Sendable, Codable {
    final class Storage: Sendable {
        let value: Value
        let signer: NodeID
        let signature: [UInt8]

        init(value: Value, signer: NodeID, signature: [UInt8]) {
            self.value = value
            self.signer = signer
            self.signature = signature
        }
    }

    private var storage: Storage

    public var value: Value {
        get { storage.value }
        set { storage = Storage(value: newValue, signer: storage.signer, signature: storage.signature) }
    }

    public var signer: NodeID {
        get { storage.signer }
        set { storage = Storage(value: storage.value, signer: newValue, signature: storage.signature) }
    }

    /// 64 bytes.
    public var signature: [UInt8] {
        get { storage.signature }
        set { storage = Storage(value: storage.value, signer: storage.signer, signature: newValue) }
    }

    public init(value: Value, signer: NodeID, signature: [UInt8]) {
        storage = Storage(value: value, signer: signer, signature: signature)
    }

    /// Signs `value` with `signer`.
    public init(_ value: Value, by signer: any MessageSigner) {
        storage = Storage(value: value, signer: signer.nodeID, signature: signer.sign(value.canonical.bytes))
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.storage === b.storage || (a.signer == b.signer && a.signature == b.signature && a.value == b.value)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(value)
        hasher.combine(signer)
        hasher.combine(signature)
    }

    /// True when the signature is valid for `signer`.
    public func isValid(_ crypto: any CryptoProvider) -> Bool {
        crypto.verify(signature: signature, of: value, signer: signer)
    }

    private enum CodingKeys: String, CodingKey { case value, signer, signature }

    /// `{"value":…,"signer":hex,"signature":hex}`. A signature stored by earlier versions
    /// as an array of byte values still decodes.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let value = try c.decode(Value.self, forKey: .value)
        let signer = try c.decode(NodeID.self, forKey: .signer)
        let signature: [UInt8]
        if let hex = try? c.decode(String.self, forKey: .signature) {
            guard let b = Hex.decode(hex) else {
                throw DecodingError.dataCorruptedError(forKey: .signature, in: c, debugDescription: "expected a hex string")
            }
            signature = b
        } else {
            signature = try c.decode([UInt8].self, forKey: .signature)
        }
        storage = Storage(value: value, signer: signer, signature: signature)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(value, forKey: .value)
        try c.encode(signer, forKey: .signer)
        try c.encode(Hex.encode(signature), forKey: .signature)
    }
}
