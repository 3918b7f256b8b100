import Testing
@testable import WWWCore

/// Admission control over a node's backends (moved from the shell's pool into the core).
@Suite struct LocalBackendsTests {
    func one(capacity: Int = 1, limit: Int) -> LocalBackends {
        LocalBackends([LocalBackendConfig(name: "scripted", models: [ModelDescriptor(name: "m")], capacity: capacity, admissionLimit: limit)])
    }

    @Test func admitsUpToTheLimitAndReleases() {
        var b = one(capacity: 2, limit: 2)
        #expect(b.admit(model: "m", own: true) == "scripted")
        #expect(b.admit(model: "m", own: true) == "scripted")
        #expect(b.admit(model: "m", own: true) == nil)
        #expect(b.admit(model: "other", own: true) == nil)
        b.release("scripted", own: true)
        #expect(b.inFlight("scripted") == 1)
        #expect(b.admit(model: "m", own: true) == "scripted")
        b.release("scripted", own: true)
        b.release("scripted", own: true)
        #expect(b.inFlight("scripted") == 0)
    }

    @Test func ownUsersWaitingCountsOnlyOwnRequestsBeyondCapacity() {
        var b = one(capacity: 1, limit: 4)
        #expect(b.admit(model: "m", own: false) != nil)   // a peer's job takes the one slot
        #expect(b.ownUsersWaiting(model: "m") == 0)
        #expect(b.admit(model: "m", own: true) != nil)
        #expect(b.ownUsersWaiting(model: "m") == 1)   // capacity 1 is taken; one own user waits
        #expect(b.load(model: "m") == LoadSnapshot(running: 1, waiting: 1, capacity: 1))
        b.release("scripted", own: false)
        #expect(b.ownUsersWaiting(model: "m") == 0)
        b.release("scripted", own: true)
        #expect(b.load(model: "other") == nil)
    }

    @Test func leastUtilizedHealthyBackendWinsAndUnhealthyOnesAreSkipped() {
        var b = LocalBackends([
            LocalBackendConfig(name: "a", models: [ModelDescriptor(name: "m")], capacity: 1, admissionLimit: 4),
            LocalBackendConfig(name: "b", models: [ModelDescriptor(name: "m")], capacity: 2, admissionLimit: 4),
        ])
        #expect(b.admit(model: "m", own: true) == "a")   // ties go to config order
        #expect(b.admit(model: "m", own: true) == "b")   // a is at 1.0, b at 0
        #expect(b.admit(model: "m", own: true) == "b")   // b at 0.5 < a at 1.0
        #expect(b.setHealth("b", healthy: false, kvCacheUsage: nil) == false)
        #expect(b.admit(model: "m", own: true) == "a")
        #expect(b.load(model: "m") == LoadSnapshot(running: 1, waiting: 1, capacity: 1))
        #expect(b.admit(model: "m", own: true, excluding: ["a"]) == nil)
        #expect(b.setHealth("b", healthy: true, kvCacheUsage: 0.5) == true)   // recovered
        #expect(b.load(model: "m")?.kvCacheUsage == 0.5)
    }
}
