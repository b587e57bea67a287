import Foundation
import GRDB
import Testing
import SluiceCore
import SluiceStore
import SluiceStoreSQLite
import SluiceTesting

@Suite("SQLite store")
struct StoreTests {
    let dir: TemporaryDirectory
    let store: SQLiteStateStore
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let me = LeaseOwner(id: "me", host: "h", pid: 1)
    let other = LeaseOwner(id: "other", host: "h2", pid: 2)

    init() throws {
        dir = try TemporaryDirectory(prefix: "store")
        store = try SQLiteStateStore.open(path: dir.file("state.sqlite"))
    }

    func spec(overlap: OverlapPolicy = .skip) -> PipelineSpec {
        PipelineSpec(name: "p", overlap: overlap, root: dir.path, stages: [
            StageSpec(name: "a", command: .argv(["true"])),
            StageSpec(name: "b", needs: ["a"], command: .argv(["true"])),
        ])
    }

    func newRun(_ id: String, overlap: OverlapPolicy = .skip, key: String? = nil, lease: Date? = nil) -> RunRecord {
        RunRecord(id: RunID(id), pipeline: "p", spec: spec(overlap: overlap), params: ["x": "1"], trigger: "test",
                  status: .pending, createdAt: now, leaseOwner: me, leaseExpiresAt: lease ?? now.addingTimeInterval(30),
                  idempotencyKey: key, runDir: dir.file("runs/\(id)"))
    }

    func event(_ run: String, _ name: String) -> EventRecord {
        EventRecord(runID: RunID(run), pipeline: "p", event: name, time: now, message: name)
    }

    @Test func runsRoundTripWithTheirSpecAndStages() async throws {
        guard case .created = try await store.createRun(newRun("r1"), overlap: .skip, now: now, events: [event("r1", "run.created")]) else {
            Issue.record("not created"); return
        }
        let run = try #require(try await store.run(RunID("r1")))
        #expect(run.spec == spec())
        #expect(run.params == ["x": "1"])
        #expect(try await store.stages(of: RunID("r1")).map(\.status) == [.pending, .pending])
        #expect(try await store.events(run: RunID("r1"), afterID: 0, limit: 10).map(\.event) == ["run.created"])
        #expect(try await store.runs(idPrefix: "r", limit: 5).map(\.id.rawValue) == ["r1"])
    }

    @Test func overlapSkipRefusesASecondActiveRunUntilTheLeaseExpires() async throws {
        _ = try await store.createRun(newRun("r1"), overlap: .skip, now: now, events: [])
        guard case .overlapping(let active) = try await store.createRun(newRun("r2"), overlap: .skip, now: now, events: []) else {
            Issue.record("second run must overlap"); return
        }
        #expect(active.map(\.id.rawValue) == ["r1"])
        guard case .created = try await store.createRun(newRun("r3"), overlap: .allow, now: now, events: []) else {
            Issue.record("allow starts anyway"); return
        }
        // r1's lease expired (its process died): it no longer counts as active.
        try await store.expireLease(run: RunID("r1"), owner: me, now: now)
        try await store.expireLease(run: RunID("r3"), owner: me, now: now)
        guard case .created = try await store.createRun(newRun("r4"), overlap: .skip, now: now.addingTimeInterval(1), events: []) else {
            Issue.record("expired leases are not active"); return
        }
    }

    @Test func idempotencyKeyReturnsTheExistingRun() async throws {
        _ = try await store.createRun(newRun("r1", key: "k"), overlap: .allow, now: now, events: [])
        guard case .duplicate(let existing) = try await store.createRun(newRun("r2", key: "k"), overlap: .allow, now: now, events: []) else {
            Issue.record("duplicate key must not create a run"); return
        }
        #expect(existing.id.rawValue == "r1")
        #expect(try await store.run(RunID("r2")) == nil)
    }

    @Test func leasesAreExclusive() async throws {
        _ = try await store.createRun(newRun("r1"), overlap: .skip, now: now, events: [])
        guard case .heldBy(let holder, _) = try await store.acquireRun(RunID("r1"), owner: other, until: now.addingTimeInterval(30),
                                                                          replacing: nil, now: now, events: []) else {
            Issue.record("a live lease must not be taken"); return
        }
        #expect(holder.id == "me")
        guard case .acquired(let run) = try await store.acquireRun(RunID("r1"), owner: other, until: now.addingTimeInterval(90),
                                                                   replacing: me, now: now, events: []) else {
            Issue.record("a dead holder's lease can be replaced"); return
        }
        #expect(run.status == .running)
        #expect(try await store.renewLeases(run: RunID("r1"), owner: me, until: now.addingTimeInterval(60)) == false)
        #expect(try await store.renewLeases(run: RunID("r1"), owner: other, until: now.addingTimeInterval(60)) == true)
    }

    @Test func claimCompleteAndRollUpOnce() async throws {
        let id = RunID("r1")
        _ = try await store.createRun(newRun("r1"), overlap: .skip, now: now, events: [])
        _ = try await store.acquireRun(id, owner: me, until: now.addingTimeInterval(30), replacing: nil, now: now, events: [])
        try await store.applyStageTransitions(run: id, [.start("a", taskKeys: ["main"]), .finish("b", .skipped, reason: "test")],
                                              now: now, events: [])
        // A stage no longer pending is left alone.
        try await store.applyStageTransitions(run: id, [.finish("a", .skipped, reason: "late")], now: now, events: [])
        #expect(try await store.stages(of: id).map(\.status) == [.running, .skipped])

        let claimed = try await store.claimTasks(run: id, owner: me, limit: 10, stageLimits: [:], now: now, leaseUntil: now.addingTimeInterval(30))
        #expect(claimed.count == 1)
        #expect(claimed.first?.attempt == 1)
        #expect(try await store.claimTasks(run: id, owner: other, limit: 10, stageLimits: [:], now: now, leaseUntil: now).isEmpty)

        let task = try #require(claimed.first).task
        var attempt = AttemptRecord(taskID: task.id, runID: id, stage: "a", number: 1, outcome: .failed, startedAt: now,
                                    finishedAt: now.addingTimeInterval(1), exitCode: 1)
        // Someone else's result for this attempt is refused.
        #expect(try await store.completeAttempt(attempt, result: nil, next: .fail, owner: other, now: now, events: [],
                                                stageEvent: { s in self.event("r1", "stage.\(s.status.rawValue)") }) == .leaseLost)
        // Retry: back to pending, not claimable before its time.
        #expect(try await store.completeAttempt(attempt, result: nil, next: .retry(notBefore: now.addingTimeInterval(10)), owner: me,
                                                now: now, events: [], stageEvent: { s in self.event("r1", "x") }) == .applied(stage: nil))
        #expect(try await store.claimTasks(run: id, owner: me, limit: 10, stageLimits: [:], now: now.addingTimeInterval(5), leaseUntil: now).isEmpty)
        let second = try await store.claimTasks(run: id, owner: me, limit: 10, stageLimits: [:], now: now.addingTimeInterval(10),
                                                leaseUntil: now.addingTimeInterval(40))
        #expect(second.first?.attempt == 2)
        attempt.number = 2
        attempt.outcome = .success
        attempt.exitCode = 0
        let result = try await store.completeAttempt(attempt, result: nil, next: .succeed, owner: me, now: now, events: [],
                                                     stageEvent: { s in self.event("r1", "stage.\(s.status.rawValue)") })
        guard case .applied(let stage?) = result else { Issue.record("the stage must roll up"); return }
        #expect(stage.status == .success)
        #expect(try await store.events(run: id, afterID: 0, limit: 10).map(\.event) == ["stage.success"])
        #expect(try await store.attempts(of: id).map(\.outcome) == [.failed, .success])
        #expect(try await store.finishRun(id, outcome: .success, owner: other, now: now, events: []) == false)
        #expect(try await store.finishRun(id, outcome: .success, owner: me, now: now, events: []) == true)
        #expect(try await store.run(id)?.status == .success)
    }

    @Test func abandonedAttemptsAreLostAndResumeResetsFailures() async throws {
        let id = RunID("r1")
        _ = try await store.createRun(newRun("r1"), overlap: .skip, now: now, events: [])
        try await store.applyStageTransitions(run: id, [.start("a", taskKeys: ["main"])], now: now, events: [])
        let claimed = try await store.claimTasks(run: id, owner: me, limit: 1, stageLimits: [:], now: now, leaseUntil: now.addingTimeInterval(30))
        try await store.recordProcess(task: claimed[0].task.id, attempt: 1, pid: 4242, startTicks: 99)
        let lost = try await store.abandonRunningAttempts(id, maxLostAttempts: 3, now: now, events: [])
        #expect(lost.map(\.pid) == [4242])
        #expect(lost.map(\.processStartTicks) == [99])
        #expect(try await store.attempts(of: id).map(\.outcome) == [.lost])
        let again = try await store.claimTasks(run: id, owner: other, limit: 1, stageLimits: [:], now: now, leaseUntil: now.addingTimeInterval(30))
        #expect(again.first?.attempt == 2)
        #expect(again.first?.attemptInBudget == 1, "a lost attempt does not use the retry budget")

        var attempt = AttemptRecord(taskID: again[0].task.id, runID: id, stage: "a", number: 2, outcome: .failed, startedAt: now)
        attempt.finishedAt = now
        _ = try await store.completeAttempt(attempt, result: nil, next: .fail, owner: other, now: now, events: [], stageEvent: { _ in self.event("r1", "s") })
        #expect(try await store.stages(of: id).map(\.status) == [.failed, .pending])
        try await store.prepareResume(id, retryFailed: true, now: now, events: [])
        #expect(try await store.stages(of: id).map(\.status) == [.running, .pending])
        let third = try await store.claimTasks(run: id, owner: other, limit: 1, stageLimits: [:], now: now, leaseUntil: now.addingTimeInterval(30))
        #expect(third.first?.attempt == 3)
        #expect(third.first?.attemptInBudget == 1, "resume gives a fresh retry budget")
    }

    @Test func aTaskThatKeepsLosingItsProcessFails() async throws {
        let id = RunID("r1")
        _ = try await store.createRun(newRun("r1"), overlap: .skip, now: now, events: [])
        try await store.applyStageTransitions(run: id, [.start("a", taskKeys: ["main"])], now: now, events: [])
        for round in 1...2 {
            _ = try await store.claimTasks(run: id, owner: me, limit: 1, stageLimits: [:], now: now, leaseUntil: now)
            _ = try await store.abandonRunningAttempts(id, maxLostAttempts: 2, now: now, events: [event("r1", "takeover")])
            #expect(try await store.tasks(of: id).first?.status == (round == 1 ? .pending : .failed))
        }
        #expect(try await store.stages(of: id).first?.status == .failed)
        #expect(try await store.events(run: id, afterID: 0, limit: 10).last?.message.contains("lost its process 2 times") == true)
    }

    @Test func aStoreFromANewerVersionIsRefusedAndLeftUnchanged() async throws {
        let path = dir.file("newer.sqlite")
        _ = try SQLiteStateStore.open(path: path)
        let queue = try DatabaseQueue(path: path)
        try await queue.write { db in try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v999-future')") }
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect {
            _ = try SQLiteStateStore.open(path: path)
        } throws: { error in
            (error as? StoreError)?.code == .newerSchema && "\(error)".contains("newer version of Sluice")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
    }
}
