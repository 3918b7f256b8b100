import Testing
@testable import WWWNode

/// The Azure traces' timestamps are parsed without a DateFormatter.
@Suite("workload traces")
struct WorkloadTests {
    @Test func utcStampsMatchTheEpoch() {
        #expect(Workload.utcSeconds("2023-11-16 18:15:46") == 1_700_158_546)
        #expect(Workload.utcSeconds("2000-02-29 23:59:59") == 951_868_799)
        #expect(Workload.utcSeconds("1970-01-01 00:00:00") == 0)
    }

    @Test func malformedStampsAreRefused() {
        for s in ["2023-11-16T18:15:46", "2023-13-01 00:00:00", "2023-11-16 24:00:00", "2023-11-16 18:15", "2023-1a-16 18:15:46", ""] {
            #expect(Workload.utcSeconds(Substring(s)) == nil, "\(s)")
        }
    }
}
