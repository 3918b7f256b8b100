import Foundation
import GRDB
import WWWCore

/// What the store needs to know about a ledger event; the ledger's event type conforms.
///
/// The store does not interpret events: it keeps the Codable JSON as the `body` column and
/// indexes these four fields. `storeID` is the event's content hash (hex), unique per event.
public protocol StorableEvent: Codable, Sendable {
    /// The content hash of the event's canonical unsigned bytes, lowercase hex.
    var storeID: String { get }
    /// The authoring node (NodeID hex).
    var storeAuthor: String { get }
    /// The author's sequence number for this event (≤ Int64.max).
    var storeAuthorSeq: UInt64 { get }
    /// Creation time, integer nanoseconds since the Unix epoch.
    var storeCreatedAt: Int64 { get }
}

/// Two different events by one author with one sequence number: proof of equivocation
/// (DESIGN.md §5). `firstID < secondID` (string order), so each pair is recorded once.
public struct Equivocation: Hashable, Sendable, Codable {
    public let author: String
    public let authorSeq: UInt64
    public let firstID: String
    public let secondID: String

    /// Orders the two ids.
    public init(author: String, authorSeq: UInt64, ids a: String, _ b: String) {
        precondition(a != b, "an equivocation needs two different events")
        self.author = author
        self.authorSeq = authorSeq
        self.firstID = min(a, b)
        self.secondID = max(a, b)
    }
}

/// The result of one `append`.
public struct AppendOutcome: Equatable, Sendable {
    /// Events newly written.
    public var inserted: Int = 0
    /// Events already present (same id), ignored.
    public var duplicates: Int = 0
    /// Equivocations newly found by this batch (also stored).
    public var equivocations: [Equivocation] = []
}

/// Errors from `EventStore`.
public enum EventStoreError: Error, CustomStringConvertible {
    /// `authorSeq` above Int64.max cannot be stored in SQLite's INTEGER.
    case sequenceOutOfRange(id: String, seq: UInt64)
    /// An event failed to encode; the whole batch was rolled back.
    case encodingFailed(id: String, underlying: any Error)
    /// A stored body failed to decode as the event type.
    case decodingFailed(id: String, underlying: any Error)
    /// A state value is not an integer where one was expected.
    case notAnInteger(key: String, value: String)

    public var description: String {
        switch self {
        case .sequenceOutOfRange(let id, let seq): return "event \(id): author sequence \(seq) exceeds Int64.max"
        case .encodingFailed(let id, let e): return "event \(id) failed to encode (batch rolled back): \(e)"
        case .decodingFailed(let id, let e): return "stored event \(id) failed to decode: \(e)"
        case .notAnInteger(let key, let value): return "node state \(key) = \(value) is not an integer"
        }
    }
}

/// The node's durable replica of the ledger's grow-only event set (DESIGN.md §5), plus
/// node state that must survive restarts (own next author sequence, own incarnation).
///
/// File: `<dataDirectory>/ledger.sqlite`, SQLite in WAL mode via a GRDB `DatabasePool`
/// (one writer, concurrent readers), `PRAGMA synchronous = FULL` so a committed
/// transaction survives power loss: when `append` returns the events are on disk and may
/// be acknowledged.
///
/// Schema (migration "v1"):
/// - `events(id TEXT PRIMARY KEY, author TEXT, author_seq INTEGER, created_at INTEGER,
///   body BLOB)` + index `(author, author_seq)`; deliberately NOT unique on
///   `(author, author_seq)`: two different events with one sequence number are both kept as
///   proof of equivocation.
/// - `equivocations(author, author_seq, first_id, second_id)`, primary key on all four.
/// - `node_state(key TEXT PRIMARY KEY, value TEXT)`.
///
/// Thread-safe (`Sendable`); calls block on SQLite I/O, so call from a thread that may block.
public final class EventStore<E: StorableEvent>: Sendable {
    /// The database file name inside the data directory.
    public static var fileName: String { "ledger.sqlite" }

    /// Full path of the database file.
    public let path: String
    private let pool: DatabasePool

    /// Opens or creates `<dataDirectory>/ledger.sqlite` (creating the directory, mode 0700)
    /// and migrates the schema. Throws GRDB's `DatabaseError` or a file-system error.
    public init(dataDirectory: String) throws {
        try FileManager.default.createDirectory(
            atPath: dataDirectory, withIntermediateDirectories: true,
            attributes: [.posixPermissions: 0o700])
        path = (dataDirectory as NSString).appendingPathComponent(Self.fileName)
        var config = Configuration()
        config.busyMode = .timeout(10)
        pool = try DatabasePool(path: path, configuration: config)
        // GRDB's DatabasePool sets `synchronous = NORMAL` on its writer connection when it
        // enables WAL, after `prepareDatabase` runs, so FULL must be set here, on the one
        // long-lived writer connection (the setting is per connection; readers never commit).
        try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        try Self.migrator.migrate(pool)
    }

    private static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE events (
                    id TEXT PRIMARY KEY NOT NULL,
                    author TEXT NOT NULL,
                    author_seq INTEGER NOT NULL,
                    created_at INTEGER NOT NULL,
                    body BLOB NOT NULL
                );
                CREATE INDEX events_author_seq ON events(author, author_seq);
                CREATE TABLE equivocations (
                    author TEXT NOT NULL,
                    author_seq INTEGER NOT NULL,
                    first_id TEXT NOT NULL,
                    second_id TEXT NOT NULL,
                    PRIMARY KEY (author, author_seq, first_id, second_id)
                );
                CREATE TABLE node_state (
                    key TEXT PRIMARY KEY NOT NULL,
                    value TEXT NOT NULL
                );
                """)
        }
        return m
    }

    // MARK: Events

    /// Writes `events` in one transaction: all land or none (an encoding or SQL failure
    /// rolls the batch back and throws). Ids already stored are ignored (INSERT OR IGNORE).
    /// A new event whose `(author, authorSeq)` matches a stored event with a different id is
    /// kept, and the pair is recorded in `equivocations`. Durable when it returns.
    @discardableResult
    public func append(_ events: [E]) throws -> AppendOutcome {
        guard !events.isEmpty else { return AppendOutcome() }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try pool.write { db in
            var outcome = AppendOutcome()
            for event in events {
                let id = event.storeID
                guard event.storeAuthorSeq <= UInt64(Int64.max) else {
                    throw EventStoreError.sequenceOutOfRange(id: id, seq: event.storeAuthorSeq)
                }
                let body: Data
                do { body = try encoder.encode(event) } catch {
                    throw EventStoreError.encodingFailed(id: id, underlying: error)
                }
                let seq = Int64(event.storeAuthorSeq)
                try db.execute(
                    sql: "INSERT OR IGNORE INTO events (id, author, author_seq, created_at, body) VALUES (?, ?, ?, ?, ?)",
                    arguments: [id, event.storeAuthor, seq, event.storeCreatedAt, body])
                guard db.changesCount == 1 else { outcome.duplicates += 1; continue }
                outcome.inserted += 1
                let others = try String.fetchAll(
                    db, sql: "SELECT id FROM events WHERE author = ? AND author_seq = ? AND id != ? ORDER BY id",
                    arguments: [event.storeAuthor, seq, id])
                for other in others {
                    let eq = Equivocation(author: event.storeAuthor, authorSeq: event.storeAuthorSeq, ids: id, other)
                    try Self.insert(eq, db)
                    if db.changesCount == 1 { outcome.equivocations.append(eq) }
                }
            }
            return outcome
        }
    }

    /// Every stored event, ordered by (author, author_seq, id).
    public func loadAll() throws -> [E] {
        try decodeRows(sql: "SELECT id, body FROM events ORDER BY author, author_seq, id", arguments: [])
    }

    /// The events of `author` with sequence number > `afterSeq`, ascending, at most `limit`.
    public func events(author: String, afterSeq: UInt64, limit: Int = 1000) throws -> [E] {
        precondition(limit > 0)
        let after = Int64(clamping: afterSeq)
        return try decodeRows(
            sql: "SELECT id, body FROM events WHERE author = ? AND author_seq > ? ORDER BY author_seq, id LIMIT ?",
            arguments: [author, after, limit])
    }

    /// The events of each run `(author, afterSeq, count)`: sequence numbers `afterSeq + 1 …
    /// afterSeq + count`, ascending, as far as they are contiguous (a slot with two events —
    /// an equivocation — yields both, by id). One read transaction.
    public func events(inRuns runs: [(author: String, afterSeq: UInt64, count: Int)]) throws -> [E] {
        let rows: [Row] = try pool.read { db in
            var out: [Row] = []
            for run in runs where run.count > 0 {
                let after = Int64(clamping: run.afterSeq)
                let last = after &+ Int64(run.count)
                let found = try Row.fetchAll(
                    db, sql: "SELECT id, author_seq, body FROM events WHERE author = ? AND author_seq > ? AND author_seq <= ? ORDER BY author_seq, id",
                    arguments: [run.author, after, last])
                var expected = after + 1
                for row in found {
                    let seq: Int64 = row["author_seq"]
                    if seq == expected { expected += 1 } else if seq != expected - 1 { break }
                    out.append(row)
                }
            }
            return out
        }
        return try decode(rows)
    }

    /// Calls `body` with every stored event, `pageSize` at a time, ordered by (author,
    /// author_seq, id) — the order `Ledger.restore` wants — holding one page in memory.
    /// A row whose body does not decode is skipped and its id passed to `undecodable`
    /// (a damaged row must not keep the node from starting; delete it and let anti-entropy
    /// bring the event back).
    public func forEachPage(size pageSize: Int = 4096, undecodable: (String) -> Void = { _ in },
                            _ body: ([E]) throws -> Void) throws {
        precondition(pageSize > 0)
        var after: (author: String, seq: Int64, id: String)? = nil
        while true {
            let rows: [Row] = try pool.read { db in
                guard let a = after else {
                    return try Row.fetchAll(db, sql: "SELECT id, author, author_seq, body FROM events ORDER BY author, author_seq, id LIMIT ?",
                                            arguments: [pageSize])
                }
                return try Row.fetchAll(
                    db, sql: "SELECT id, author, author_seq, body FROM events WHERE (author, author_seq, id) > (?, ?, ?) ORDER BY author, author_seq, id LIMIT ?",
                    arguments: [a.author, a.seq, a.id, pageSize])
            }
            guard let last = rows.last else { return }
            after = (last["author"], last["author_seq"], last["id"])
            try body(try decode(rows, failed: { id, _ in undecodable(id) }))
            if rows.count < pageSize { return }
        }
    }

    /// Calls `body` with every stored event id (hex), ascending, without loading bodies.
    public func forEachID(_ body: (String) -> Void) throws {
        try pool.read { db in
            let cursor = try String.fetchCursor(db, sql: "SELECT id FROM events ORDER BY id")
            while let id = try cursor.next() { body(id) }
        }
    }

    /// Deletes the rows with these ids (damaged rows found at restore), in one transaction;
    /// returns how many went. The genuine events come back through anti-entropy.
    @discardableResult
    public func delete(ids: [String]) throws -> Int {
        guard !ids.isEmpty else { return 0 }
        return try pool.write { db in
            var n = 0
            for id in ids {
                try db.execute(sql: "DELETE FROM events WHERE id = ?", arguments: [id])
                n += db.changesCount
            }
            return n
        }
    }

    /// The event with `id`, or nil.
    public func event(id: String) throws -> E? {
        try decodeRows(sql: "SELECT id, body FROM events WHERE id = ?", arguments: [id]).first
    }

    /// Number of stored events.
    public func count() throws -> Int {
        try pool.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM events") ?? 0 }
    }

    /// The highest stored sequence number per author (for anti-entropy digests).
    public func heads() throws -> [String: UInt64] {
        try pool.read { db in
            var out: [String: UInt64] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT author, MAX(author_seq) AS seq FROM events GROUP BY author") {
                let seq: Int64 = row["seq"]
                out[row["author"]] = UInt64(seq)
            }
            return out
        }
    }

    private func decodeRows(sql: String, arguments: StatementArguments) throws -> [E] {
        try decode(try pool.read { db in try Row.fetchAll(db, sql: sql, arguments: arguments) })
    }

    /// Decodes the rows' bodies. A body that does not decode goes to `failed` (its id and
    /// the error), which throws to stop or returns to skip the row.
    private func decode(_ rows: [Row], failed: (String, any Error) throws -> Void = { id, e in
        throw EventStoreError.decodingFailed(id: id, underlying: e)
    }) throws -> [E] {
        let decoder = JSONDecoder()
        var out: [E] = []
        out.reserveCapacity(rows.count)
        for row in rows {
            let id: String = row["id"]
            let body: Data = row["body"]
            do { out.append(try decoder.decode(E.self, from: body)) } catch { try failed(id, error) }
        }
        return out
    }

    // MARK: Equivocations

    /// Records an equivocation found elsewhere (e.g. by the ledger core); idempotent.
    public func record(_ equivocation: Equivocation) throws {
        try pool.write { db in try Self.insert(equivocation, db) }
    }

    /// All recorded equivocations, ordered by (author, author_seq, first_id, second_id).
    public func equivocations() throws -> [Equivocation] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM equivocations ORDER BY author, author_seq, first_id, second_id").map { row in
                let seq: Int64 = row["author_seq"]
                return Equivocation(author: row["author"], authorSeq: UInt64(seq), ids: row["first_id"], row["second_id"])
            }
        }
    }

    private static func insert(_ eq: Equivocation, _ db: Database) throws {
        try db.execute(
            sql: "INSERT OR IGNORE INTO equivocations (author, author_seq, first_id, second_id) VALUES (?, ?, ?, ?)",
            arguments: [eq.author, Int64(clamping: eq.authorSeq), eq.firstID, eq.secondID])
    }

    // MARK: Node state

    /// Sets (or with nil, deletes) a node-state value. Durable when it returns.
    public func setState(_ key: String, _ value: String?) throws {
        try pool.write { db in
            if let value {
                try db.execute(sql: "INSERT OR REPLACE INTO node_state (key, value) VALUES (?, ?)", arguments: [key, value])
            } else {
                try db.execute(sql: "DELETE FROM node_state WHERE key = ?", arguments: [key])
            }
        }
    }

    /// The node-state value for `key`, or nil.
    public func state(_ key: String) throws -> String? {
        try pool.read { db in try String.fetchOne(db, sql: "SELECT value FROM node_state WHERE key = ?", arguments: [key]) }
    }

    /// Atomically adds `delta` to the integer at `key` (absent counts as 0) and returns the
    /// new value, durable when it returns. Use it to reserve a sequence number or bump the
    /// incarnation BEFORE using the value, so a restart never reuses one.
    /// Throws `notAnInteger` when the stored value is not an integer.
    @discardableResult
    public func incrementCounter(_ key: String, by delta: Int64 = 1) throws -> Int64 {
        try pool.write { db in
            let current = try String.fetchOne(db, sql: "SELECT value FROM node_state WHERE key = ?", arguments: [key])
            var value: Int64 = 0
            if let current {
                guard let v = Int64(current) else { throw EventStoreError.notAnInteger(key: key, value: current) }
                value = v
            }
            let next = value + delta
            try db.execute(sql: "INSERT OR REPLACE INTO node_state (key, value) VALUES (?, ?)", arguments: [key, String(next)])
            return next
        }
    }

    // MARK: Diagnostics

    /// SQLite's journal mode for this database ("wal").
    public func journalMode() throws -> String {
        try pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") ?? "" }
    }

    /// SQLite's `synchronous` setting on the writer connection (2 = FULL).
    public func synchronousLevel() throws -> Int {
        try pool.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
    }
}
