import Foundation
import Testing
import WWWCore
@testable import WWWStore
import GRDB

/// A stand-in for the ledger's event type.
struct TestEvent: StorableEvent, Equatable {
    var id: String
    var author: String
    var seq: UInt64
    var createdAt: Int64
    var payload: String
    /// When true, encoding throws (to test batch atomicity).
    var poison: Bool = false

    var storeID: String { id }
    var storeAuthor: String { author }
    var storeAuthorSeq: UInt64 { seq }
    var storeCreatedAt: Int64 { createdAt }

    struct Poisoned: Error {}
    private enum CodingKeys: String, CodingKey { case id, author, seq, createdAt, payload }
    init(id: String, author: String, seq: UInt64, createdAt: Int64 = 1_000, payload: String = "p", poison: Bool = false) {
        self.id = id; self.author = author; self.seq = seq; self.createdAt = createdAt; self.payload = payload; self.poison = poison
    }
    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        id = try c.decode(String.self, forKey: .id)
        author = try c.decode(String.self, forKey: .author)
        seq = try c.decode(UInt64.self, forKey: .seq)
        createdAt = try c.decode(Int64.self, forKey: .createdAt)
        payload = try c.decode(String.self, forKey: .payload)
    }
    func encode(to encoder: any Encoder) throws {
        if poison { throw Poisoned() }
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(author, forKey: .author)
        try c.encode(seq, forKey: .seq)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(payload, forKey: .payload)
    }
}

/// A fresh directory (not yet created: the store creates it) removed at the end.
struct TempDir: ~Copyable {
    let path = NSTemporaryDirectory() + "wwwstore-\(UUID().uuidString)/data"
    deinit { try? FileManager.default.removeItem(atPath: (path as NSString).deletingLastPathComponent) }
}

typealias Store = EventStore<TestEvent>

@Suite struct EventStoreTests {
    let a = String(repeating: "aa", count: 32)
    let b = String(repeating: "bb", count: 32)

    @Test func appendThenReopenGivesSameEventsInOrder() throws {
        let dir = TempDir()
        let events = [
            TestEvent(id: "e3", author: b, seq: 1),
            TestEvent(id: "e2", author: a, seq: 2, payload: "x\u{0}y"),
            TestEvent(id: "e1", author: a, seq: 1, createdAt: -5),
        ]
        do {
            let store = try Store(dataDirectory: dir.path)
            #expect(try store.append(events) == AppendOutcome(inserted: 3, duplicates: 0, equivocations: []))
        }
        #expect(FileManager.default.fileExists(atPath: dir.path + "/ledger.sqlite"))
        let reopened = try Store(dataDirectory: dir.path)
        #expect(try reopened.loadAll() == [events[2], events[1], events[0]])
        #expect(try reopened.count() == 3)
        #expect(try reopened.heads() == [a: 2, b: 1])
        #expect(try reopened.events(author: a, afterSeq: 1) == [events[1]])
        #expect(try reopened.event(id: "e3") == events[0])
        #expect(try reopened.event(id: "nope") == nil)
    }

    @Test func duplicateIdIsIgnored() throws {
        let dir = TempDir()
        let store = try Store(dataDirectory: dir.path)
        let e = TestEvent(id: "e1", author: a, seq: 1)
        try store.append([e])
        #expect(try store.append([e, e]) == AppendOutcome(inserted: 0, duplicates: 2, equivocations: []))
        #expect(try store.count() == 1)
        #expect(try store.equivocations() == [])
    }

    @Test func sameAuthorSeqDifferentEventsAreBothKeptAsEquivocation() throws {
        let dir = TempDir()
        let store = try Store(dataDirectory: dir.path)
        let first = TestEvent(id: "f1", author: a, seq: 7, payload: "pay b")
        let second = TestEvent(id: "c2", author: a, seq: 7, payload: "pay c")
        try store.append([first])
        let eq = Equivocation(author: a, authorSeq: 7, ids: "c2", "f1")
        #expect(try store.append([second]) == AppendOutcome(inserted: 1, duplicates: 0, equivocations: [eq]))
        #expect(eq.firstID == "c2" && eq.secondID == "f1")
        #expect(try store.loadAll() == [second, first])
        // Re-recording is idempotent, and survives reopen.
        try store.record(eq)
        #expect(try Store(dataDirectory: dir.path).equivocations() == [eq])
    }

    @Test func journalModeIsWALAndSyncIsFull() throws {
        let dir = TempDir()
        let store = try Store(dataDirectory: dir.path)
        #expect(try store.journalMode() == "wal")
        #expect(try store.synchronousLevel() == 2)
    }

    @Test func batchIsAtomicWhenOneEventFailsToEncode() throws {
        let dir = TempDir()
        let store = try Store(dataDirectory: dir.path)
        let batch = [
            TestEvent(id: "ok1", author: a, seq: 1),
            TestEvent(id: "bad", author: a, seq: 2, poison: true),
            TestEvent(id: "ok3", author: a, seq: 3),
        ]
        #expect {
            try store.append(batch)
        } throws: { error in
            guard case EventStoreError.encodingFailed(let id, _) = error else { return false }
            return id == "bad"
        }
        #expect(try store.count() == 0)
        #expect(try Store(dataDirectory: dir.path).loadAll() == [])
    }

    @Test func sequenceAboveInt64MaxIsRefusedAtomically() throws {
        let dir = TempDir()
        let store = try Store(dataDirectory: dir.path)
        #expect(throws: EventStoreError.self) {
            try store.append([TestEvent(id: "ok", author: a, seq: 1), TestEvent(id: "big", author: a, seq: UInt64.max)])
        }
        #expect(try store.count() == 0)
    }

    @Test func stateAndCountersSurviveReopen() throws {
        let dir = TempDir()
        do {
            let store = try Store(dataDirectory: dir.path)
            #expect(try store.state("incarnation") == nil)
            #expect(try store.incrementCounter("incarnation") == 1)
            #expect(try store.incrementCounter("incarnation") == 2)
            #expect(try store.incrementCounter("nextAuthorSeq", by: 5) == 5)
            try store.setState("note", "hello")
            try store.setState("gone", "x")
            try store.setState("gone", nil)
        }
        let store = try Store(dataDirectory: dir.path)
        #expect(try store.state("incarnation") == "2")
        #expect(try store.incrementCounter("incarnation") == 3)
        #expect(try store.state("nextAuthorSeq") == "5")
        #expect(try store.state("note") == "hello")
        #expect(try store.state("gone") == nil)
        #expect(throws: EventStoreError.self) { try store.incrementCounter("note") }
    }
}

@Suite struct EventStoreReadTests {
    typealias Store = EventStore<TestEvent>

    @Test func runsAreReadAsFarAsTheyAreContiguous() throws {
        let dir = TempDir()
        let store = try Store(dataDirectory: dir.path)
        // a: 1, 2, 2' (an equivocation), 3, 5 (4 missing); b: 1.
        try store.append([TestEvent(id: "a1", author: "a", seq: 1), TestEvent(id: "a2", author: "a", seq: 2),
                          TestEvent(id: "a2x", author: "a", seq: 2), TestEvent(id: "a3", author: "a", seq: 3),
                          TestEvent(id: "a5", author: "a", seq: 5), TestEvent(id: "b1", author: "b", seq: 1)])
        #expect(try store.events(inRuns: [("a", 1, 10)]).map(\.id) == ["a2", "a2x", "a3"])
        #expect(try store.events(inRuns: [("a", 0, 1), ("b", 0, 5)]).map(\.id) == ["a1", "b1"])
        #expect(try store.events(inRuns: [("a", 3, 2)]).map(\.id) == [])
        #expect(try store.events(inRuns: [("a", 4, 1), ("c", 0, 3)]).map(\.id) == ["a5"])
    }

    @Test(arguments: [1, 2, 5, 4096])
    func pagesVisitEveryEventOnceInRestoreOrder(pageSize: Int) throws {
        let dir = TempDir()
        let store = try Store(dataDirectory: dir.path)
        let events = (1...7).flatMap { s in ["b", "a"].map { TestEvent(id: "\($0)\(s)", author: $0, seq: UInt64(s)) } }
            + [TestEvent(id: "a3x", author: "a", seq: 3)]
        try store.append(events.shuffled())
        var seen: [String] = []
        try store.forEachPage(size: pageSize) { page in
            #expect(page.count <= pageSize)
            seen += page.map(\.id)
        }
        #expect(seen == (try store.loadAll()).map(\.id))
        #expect(seen.count == 15 && seen.prefix(4) == ["a1", "a2", "a3", "a3x"])
        var ids: [String] = []
        try store.forEachID { ids.append($0) }
        #expect(ids == seen.sorted())
    }
}

@Suite struct EventStoreDamageTests {
    @Test func undecodableRowsAreSkippedAndCanBeDeleted() throws {
        let dir = TempDir()
        let store = try EventStore<TestEvent>(dataDirectory: dir.path)
        try store.append([TestEvent(id: "a1", author: "a", seq: 1), TestEvent(id: "a2", author: "a", seq: 2),
                          TestEvent(id: "a3", author: "a", seq: 3)])
        let db = try DatabaseQueue(path: store.path)
        try db.write { try $0.execute(sql: "UPDATE events SET body = ? WHERE id = 'a2'", arguments: [Data("garbage{".utf8)]) }
        var bad: [String] = [], seen: [String] = []
        try store.forEachPage(size: 2, undecodable: { bad.append($0) }) { seen += $0.map(\.id) }
        #expect(bad == ["a2"] && seen == ["a1", "a3"])
        #expect(try store.delete(ids: bad + ["nope"]) == 1)
        #expect(try store.count() == 2)
        // The genuine event can be stored again.
        #expect(try store.append([TestEvent(id: "a2", author: "a", seq: 2)]).inserted == 1)
    }
}
