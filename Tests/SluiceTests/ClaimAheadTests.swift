import Testing
import SluiceCore
@testable import SluiceEngine

/// How many Swift fan-out tasks a process claims ahead of its free slots.
@Suite("Claiming ahead")
struct ClaimAheadTests {
    let fan = StageSpec(name: "fan", command: .swift, forEach: "find")
    let other = StageSpec(name: "other", command: .swift, forEach: "find")

    @Test func nothingAheadUntilEveryFanOutStageIsMeasuredThenAboutTwentyMillisecondsOfWork() {
        var times = ClaimAhead()
        #expect(times.ahead("p", fanOut: [fan], concurrency: 4) == 0, "unknown task time: free slots only")
        #expect(times.ahead("p", fanOut: [], concurrency: 4) == 0, "no Swift fan-out stage")
        times.add(.microseconds(5), for: .init(pipeline: "p", stage: "fan"))
        #expect(times.ahead("p", fanOut: [fan], concurrency: 4) == ClaimAhead.limit, "microsecond tasks: a full batch")
        #expect(times.ahead("p", fanOut: [fan, other], concurrency: 4) == 0, "another fan-out stage is still unmeasured")
        #expect(times.ahead("q", fanOut: [fan], concurrency: 4) == 0, "times are per pipeline")
        times.add(.milliseconds(1), for: .init(pipeline: "p", stage: "other"))
        #expect(times.ahead("p", fanOut: [fan, other], concurrency: 4) == 80, "the slowest stage decides: 4 × 20 ms / 1 ms")
        times.add(.seconds(2), for: .init(pipeline: "p", stage: "fan"))
        #expect(times.ahead("p", fanOut: [fan], concurrency: 4) == 0, "slow tasks are not held back from other workers")
    }

    @Test func aClaimFillsFreeSlotsOrRefillsTheBatchAheadWhenItRunsLow() {
        var times = ClaimAhead()
        #expect(times.want("p", fanOut: [fan], concurrency: 4, running: 1, ready: 0) == 3, "unmeasured: the free slots")
        times.add(.microseconds(5), for: .init(pipeline: "p", stage: "fan"))
        #expect(times.want("p", fanOut: [fan], concurrency: 4, running: 4, ready: 0) == ClaimAhead.limit)
        #expect(times.want("p", fanOut: [fan], concurrency: 4, running: 4, ready: 200) == 0, "more than a quarter left")
        #expect(times.want("p", fanOut: [fan], concurrency: 4, running: 4, ready: 100) == ClaimAhead.limit - 100, "refilled")
        #expect(times.want("p", fanOut: [fan], concurrency: 4, running: 1, ready: 200, readyBlocked: true) == ClaimAhead.limit - 200,
                "everything waiting is held by a stage limit")
        #expect(times.want("p", fanOut: [], concurrency: 4, running: 2, ready: 1) == 1, "no Swift fan-out stage: the free slots")
        // Tasks of 20 ms at concurrency 3: three ahead. An empty queue is refilled (a quarter of 3 is 0).
        var slow = ClaimAhead()
        slow.add(.milliseconds(20), for: .init(pipeline: "p", stage: "fan"))
        #expect(slow.want("p", fanOut: [fan], concurrency: 3, running: 3, ready: 0) == 3)
        #expect(slow.want("p", fanOut: [fan], concurrency: 3, running: 0, ready: 0) == 3)
    }

    @Test func theMeanFollowsTheRecentTasks() {
        var times = ClaimAhead()
        let key = ClaimAhead.Key(pipeline: "p", stage: "fan")
        times.add(.milliseconds(50), for: key) // a first task that waited for the pool
        for _ in 0..<12 { times.add(.microseconds(10), for: key) }
        #expect(times.ahead("p", fanOut: [fan], concurrency: 2) == ClaimAhead.limit, "a dozen quick tasks outweigh one slow start")
    }
}
