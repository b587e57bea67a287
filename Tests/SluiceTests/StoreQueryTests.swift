import Foundation
import Testing
import SluiceCore
import SluiceStore
import SluiceTesting

/// The store reads the HTTP API and `/metrics` use, checked against each store (part of the store contract).
@Suite("Store contract: API queries")
struct StoreQueryTests {
    func record(_ h: StoreHarness, _ id: String, pipeline: String, created: Double, trigger: String = "manual") -> RunRecord {
        var run = h.newRun(id)
        run.pipeline = pipeline
        run.spec.name = pipeline
        run.spec.overlap = .allow
        run.createdAt = h.now.addingTimeInterval(created)
        run.trigger = trigger
        return run
    }

    @Test(arguments: StoreKind.allCases) func runsAreFilteredAndPagedByCursorNewestFirst(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let store = h.store
        // Newest first by creation time (ids of one second sort at random: the last one here sorts first by id).
        let plan: [(String, String, Double, RunOutcome?)] = [
            ("20260101-000001-aaaaaa", "p", 1, .success), ("20260101-000002-aaaaaa", "q", 2, .failed),
            ("20260101-000003-aaaaaa", "p", 3, .failed), ("20260101-000004-aaaaaa", "p", 4, nil),
            ("20260101-000005-aaaaaa", "q", 5, .success), ("20260101-000005-000000", "q", 6, .cancelled),
        ]
        for (id, pipeline, created, outcome) in plan {
            guard case .created = try await store.createRun(record(h, id, pipeline: pipeline, created: created), overlap: .allow,
                                                            now: h.now, events: []) else { Issue.record("not created"); return }
            if let outcome { #expect(try await store.finishRun(RunID(id), outcome: outcome, owner: h.me, now: h.now, events: [])) }
        }
        func ids(_ query: RunQuery) async throws -> [String] { try await store.runs(matching: query).map(\.id.rawValue) }
        #expect(try await ids(RunQuery(limit: 10)) == plan.map(\.0).reversed())
        #expect(try await ids(RunQuery(pipeline: "p", limit: 10)) == ["20260101-000004-aaaaaa", "20260101-000003-aaaaaa", "20260101-000001-aaaaaa"])
        #expect(try await ids(RunQuery(statuses: [.failed], limit: 10)) == ["20260101-000003-aaaaaa", "20260101-000002-aaaaaa"])
        #expect(try await ids(RunQuery(pipeline: "q", statuses: [.success, .pending], limit: 10)) == ["20260101-000005-aaaaaa"])
        #expect(try await ids(RunQuery(pipeline: "q", limit: 1)) == ["20260101-000005-000000"])
        #expect(try await ids(RunQuery(createdAfter: h.now.addingTimeInterval(2), createdBefore: h.now.addingTimeInterval(4), limit: 10))
                == ["20260101-000003-aaaaaa", "20260101-000002-aaaaaa"])
        // Pages of two: every run once, in order.
        var seen: [String] = []
        var cursor: RunID?
        repeat {
            let page = try await store.runs(matching: RunQuery(beforeID: cursor, limit: 2))
            #expect(page.count <= 2)
            seen += page.map(\.id.rawValue)
            cursor = page.count == 2 ? page.last?.id : nil
        } while cursor != nil
        #expect(seen == plan.map(\.0).reversed())
        #expect(try await ids(RunQuery(beforeID: RunID("20260101-000001-aaaaaa"), limit: 10)).isEmpty)
    }

    @Test(arguments: StoreKind.allCases) func aTaskIsFoundByIdAndStatisticsCountEveryRunTaskAndAttempt(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let store = h.store, now = h.now, me = h.me
        let id = RunID("r1")
        _ = try await store.createRun(record(h, "r1", pipeline: "p", created: 0, trigger: "schedule 2026-01-01T00:00:00Z"), overlap: .allow, now: now, events: [])
        _ = try await store.createRun(record(h, "r2", pipeline: "q", created: 1, trigger: "http"), overlap: .allow, now: now, events: [])
        _ = try await store.acquireRun(id, owner: me, until: now.addingTimeInterval(30), replacing: nil, now: now, events: [])
        try await store.applyStageTransitions(run: id, [.start("a", taskKeys: ["main"])], now: now, events: [])
        let task = try #require(try await store.claimTasks(run: id, owner: me, limit: 1, filter: .everything, now: now,
                                                           leaseUntil: now.addingTimeInterval(30)).first).task
        #expect(try await store.task(task.id)?.key == "main")
        #expect(try await store.task(task.id)?.runID == id)
        #expect(try await store.task(task.id + 1000) == nil)
        var attempt = AttemptRecord(taskID: task.id, runID: id, stage: "a", number: 1, outcome: .failed, startedAt: now,
                                    finishedAt: now.addingTimeInterval(1), exitCode: 1)
        _ = try await store.completeAttempt(attempt, result: nil, next: .retry(notBefore: now), owner: me, now: now, events: [],
                                            stageEvent: { _ in h.event("r1", "x") })
        _ = try await store.claimTasks(run: id, owner: me, limit: 1, filter: .everything, now: now, leaseUntil: now.addingTimeInterval(30))
        attempt.number = 2
        attempt.outcome = .success
        attempt.finishedAt = now.addingTimeInterval(3)
        _ = try await store.completeAttempt(attempt, result: nil, next: .succeed, owner: me, now: now, events: [],
                                            stageEvent: { _ in h.event("r1", "stage.success") })

        let stats = try await store.statistics(durationBounds: [0.5, 2, 10])
        #expect(stats.runs == [.init("p", "running"): 1, .init("q", "pending"): 1])
        #expect(stats.triggers == [.init("p", "schedule"): 1, .init("q", "http"): 1])
        #expect(stats.tasks == [.init("p", "success"): 1])
        #expect(stats.attempts == [.init("p", "failed"): 1, .init("p", "success"): 1])
        #expect(stats.retries == ["p": 1])
        let durations = try #require(stats.durations["p"])
        #expect(durations.cumulative == [0, 1, 2])
        #expect(durations.count == 2)
        #expect(abs(durations.sumSeconds - 4) < 0.001)
    }
}
