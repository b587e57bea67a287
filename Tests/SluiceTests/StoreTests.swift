import Foundation
import GRDB
import Testing
import SluiceCore
import SluiceStore
import SluiceStorePostgres
@testable import SluiceStoreSQLite
import SluiceTesting

/// The stores the contract tests run against. PostgreSQL needs a server (`SLUICE_TEST_POSTGRES`).
enum StoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }
}

/// A fresh, empty store of one kind, with the records the contract tests use.
struct StoreHarness: Sendable {
    let dir: TemporaryDirectory
    let kind: StoreKind
    /// The SQLite file or the PostgreSQL URL the store was opened on.
    let location: String
    let store: any StateStore
    let now = Date(timeIntervalSince1970: 1_800_000_000)
    let me = LeaseOwner(id: "me", host: "h", pid: 1)
    let other = LeaseOwner(id: "other", host: "h2", pid: 2)

    init(_ kind: StoreKind) async throws {
        dir = try TemporaryDirectory(prefix: "store")
        self.kind = kind
        switch kind {
        case .sqlite: location = dir.file("state.sqlite")
        case .postgres: location = try await TestPostgres.freshDatabase()
        }
        store = try await Self.open(kind, location)
    }

    /// Another store on the same data (another process, as far as the store can tell).
    func another() async throws -> any StateStore {
        try await Self.open(kind, location)
    }

    private static func open(_ kind: StoreKind, _ location: String) async throws -> any StateStore {
        switch kind {
        case .sqlite: try SQLiteStateStore.open(path: location)
        case .postgres: try await PostgresStateStore.open(url: location)
        }
    }

    func spec(overlap: OverlapPolicy = .skip, stages: [StageSpec]? = nil) -> PipelineSpec {
        PipelineSpec(name: "p", overlap: overlap, root: dir.path, stages: stages ?? [
            StageSpec(name: "a", command: .argv(["true"])),
            StageSpec(name: "b", needs: ["a"], command: .argv(["true"])),
        ])
    }

    func newRun(_ id: String, overlap: OverlapPolicy = .skip, key: String? = nil, lease: Date? = nil,
                owner: LeaseOwner? = nil, stages: [StageSpec]? = nil) -> RunRecord {
        RunRecord(id: RunID(id), pipeline: "p", spec: spec(overlap: overlap, stages: stages), params: ["x": "1"], trigger: "test",
                  status: .pending, createdAt: now, leaseOwner: owner ?? me, leaseExpiresAt: lease ?? now.addingTimeInterval(30),
                  idempotencyKey: key, runDir: dir.file("runs/\(id)"))
    }

    func event(_ run: String, _ name: String) -> EventRecord {
        EventRecord(runID: RunID(run), pipeline: "p", event: name, time: now, message: name)
    }
}

/// What every `StateStore` must do, checked against each store.
@Suite("Store contract")
struct StoreContractTests {
    @Test(arguments: StoreKind.allCases) func runsRoundTripWithTheirSpecAndStages(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let store = h.store, now = h.now
        guard case .created = try await store.createRun(h.newRun("r1"), overlap: .skip, now: now, events: [h.event("r1", "run.created")]) else {
            Issue.record("not created"); return
        }
        let run = try #require(try await store.run(RunID("r1")))
        #expect(run.spec == h.spec())
        #expect(run.params == ["x": "1"])
        #expect(try await store.stages(of: RunID("r1")).map(\.status) == [.pending, .pending])
        #expect(try await store.events(run: RunID("r1"), afterID: 0, limit: 10).map(\.event) == ["run.created"])
        #expect(try await store.runs(idPrefix: "r", limit: 5).map(\.id.rawValue) == ["r1"])
    }

    @Test(arguments: StoreKind.allCases) func stageSummariesGiveTheMeanAndThe95thPercentileOfTaskDurations(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let id = RunID("r1")
        _ = try await h.store.createRun(h.newRun("r1"), overlap: .skip, now: h.now, events: [])
        try await h.store.applyStageTransitions(run: id, [.start("a", taskKeys: (1...20).map { "k\($0)" })], now: h.now, events: [])
        let claimed = try await h.store.claimTasks(run: id, owner: h.me, limit: 20, filter: .everything, now: h.now,
                                                   leaseUntil: h.now.addingTimeInterval(30))
        #expect(claimed.count == 20)
        // Task kN took N ms.
        let completions = claimed.map { c -> AttemptCompletion in
            let n = Double(c.task.key.dropFirst())!
            var attempt = AttemptRecord(taskID: c.task.id, runID: id, stage: "a", number: c.attempt, outcome: .success, startedAt: h.now)
            attempt.finishedAt = h.now.addingTimeInterval(n / 1000)
            return AttemptCompletion(attempt: attempt, result: nil, next: .succeed, events: [], stageEvent: { _ in h.event("r1", "s") })
        }
        _ = try await h.store.completeAttempts(completions, owner: h.me, now: h.now)
        let summary = try #require(try await h.store.stageSummaries(run: id)["a"])
        #expect(summary.counts.success == 20)
        #expect(summary.meanTaskMs == 10.5)
        #expect(summary.p95TaskMs == 19, "the 19th of 20 durations")
        // One stage's summary alone is the same (an ended fan-out stage's is read while the run goes on).
        #expect(try await h.store.stageSummaries(run: id, of: ["a"]) == ["a": summary])
        #expect(try await h.store.stageSummaries(run: id, of: ["b"])["a"] == nil)
    }

    /// Starts of attempts (`task.start`) handed to `completeAttempts` are recorded in its transaction,
    /// before the completions' own events; alone (no completion yet) they are recorded all the same.
    @Test(arguments: StoreKind.allCases) func attemptStartsAreRecordedWithTheCompletionsBeforeTheirEvents(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let id = RunID("r1")
        _ = try await h.store.createRun(h.newRun("r1"), overlap: .skip, now: h.now, events: [])
        try await h.store.applyStageTransitions(run: id, [.start("a", taskKeys: ["k1", "k2"])], now: h.now, events: [])
        let claimed = try await h.store.claimTasks(run: id, owner: h.me, limit: 2, filter: .everything, now: h.now,
                                                   leaseUntil: h.now.addingTimeInterval(30))
        #expect(claimed.count == 2)
        #expect(try await h.store.completeAttempts([], processes: [], started: [h.event("r1", "task.start k1")], owner: h.me, now: h.now)
                == [], "starts alone: no completion to answer for")
        let completions = claimed.map { c in
            AttemptCompletion(attempt: AttemptRecord(taskID: c.task.id, runID: id, stage: "a", number: c.attempt, outcome: .success,
                                                     startedAt: h.now, finishedAt: h.now),
                              result: nil, next: .succeed, events: [h.event("r1", "task.success \(c.task.key)")],
                              stageEvent: { _ in h.event("r1", "stage.success") })
        }
        let results = try await h.store.completeAttempts(completions, processes: [], started: [h.event("r1", "task.start k2")],
                                                         owner: h.me, now: h.now)
        #expect(results.count == 2)
        #expect(try await h.store.events(run: id, afterID: 0, limit: 10).map(\.event)
                == ["task.start k1", "task.start k2", "task.success k1", "task.success k2", "stage.success"])
    }

    /// A claim that got all it asked for says whether more were claimable (SQLite knows; PostgreSQL says
    /// "maybe" then); one that left nothing behind must never say there is more.
    /// A find → work fan-out of Swift stages, `work` started local to `h.me` after `before` items were emitted.
    func localFanOut(_ h: StoreHarness, _ run: String, before: [String]) async throws -> RunID {
        let id = RunID(run)
        let stages = [StageSpec(name: "find", command: .swift), StageSpec(name: "work", command: .swift, forEach: "find")]
        _ = try await h.store.createRun(h.newRun(run, stages: stages), overlap: .allow, now: h.now, events: [])
        _ = try await h.store.acquireRun(id, owner: h.me, until: h.now.addingTimeInterval(30), replacing: nil, now: h.now, events: [])
        try await h.store.applyStageTransitions(run: id, [.start("find", taskKeys: ["main"])], now: h.now, events: [])
        _ = try await h.store.emitItems(run: id, stage: "find", items: before.map { ItemRecord(key: $0, value: Data("\"\($0)\"".utf8)) }, now: h.now)
        try await h.store.applyStageTransitions(run: id, [.startLocal("work", owner: h.me)], now: h.now, events: [])
        return id
    }

    func localCompletion(_ h: StoreHarness, _ task: TaskRecord, _ outcome: AttemptOutcome, next: TaskNext, result: Data? = nil) -> AttemptCompletion {
        let attempt = AttemptRecord(taskID: task.id, runID: task.runID, stage: task.stage, number: 1, outcome: outcome, startedAt: h.now,
                                    finishedAt: h.now.addingTimeInterval(1), message: outcome.rawValue, host: "h", pid: 1)
        return AttemptCompletion(attempt: attempt, result: result, next: next, events: [],
                                 stageEvent: { s in h.event(task.runID.rawValue, "stage.\(s.status.rawValue)") }, newTask: task)
    }

    /// A local stage's first read (and its join's first result page) starts at its own first item (kept in
    /// its producer's stage), not at the table's first row: earlier runs' items come before it, and the
    /// stage may have none yet.
    @Test func aLocalStageReadsItsOwnItemsInAStoreHoldingOtherRunsItems() async throws {
        let h = try await StoreHarness(.sqlite)
        let earlier = try await localFanOut(h, "r0", before: ["a", "b", "c"])
        let id = try await localFanOut(h, "r1", before: [])
        #expect(try await h.store.localTasks(run: id, stage: "work", owner: h.me, after: 0, limit: 10).isEmpty, "no items yet")
        _ = try await h.store.emitItems(run: id, stage: "find", items: ["k1", "k2"].map { ItemRecord(key: $0, value: Data("\"\($0)\"".utf8)) },
                                        now: h.now)
        let mine = try await h.store.localTasks(run: id, stage: "work", owner: h.me, after: 0, limit: 10)
        #expect(mine.map(\.task.key) == ["k1", "k2"] && mine.allSatisfy { $0.task.runID == id })
        let theirs = try await h.store.localTasks(run: earlier, stage: "work", owner: h.me, after: 0, limit: 10)
        #expect(theirs.map(\.task.key) == ["a", "b", "c"])
        let (lastOfEarlier, firstOfMine) = (try #require(theirs.last).position, try #require(mine.first).position)
        #expect(lastOfEarlier < firstOfMine, "r1's items come after r0's")
        #expect(try await h.store.localTasks(run: id, stage: "work", owner: h.me, after: firstOfMine, limit: 10).map(\.task.key) == ["k2"])
        // Their results, written into the items, page from each run's first.
        let completions = (theirs + mine).map { localCompletion(h, $0.task, .success, next: .succeed, result: Data("\"\($0.task.key)!\"".utf8)) }
        #expect(try await h.store.completeAttempts(completions, owner: h.me, now: h.now).count == 5)
        let page = try await h.store.resultPage(run: id, stage: "work", afterTaskID: 0, limit: 10)
        #expect(page.map(\.key) == ["k1", "k2"] && page.map(\.result) == [Data("\"k1!\"".utf8), Data("\"k2!\"".utf8)])
        #expect(try await h.store.resultPage(run: earlier, stage: "work", afterTaskID: 0, limit: 2).map(\.key) == ["a", "b"])
        #expect(try await h.store.resultPage(run: id, stage: "work", afterTaskID: page[0].taskID, limit: 10).map(\.key) == ["k2"])
        // Read with `sqlite3`, the views show these tasks and attempts as rows of their tables: every column,
        // and the process that ran them.
        let (views, ranBy) = try await DatabaseQueue(path: h.location).read { db in
            let columns = { (name: String) in Set(try Row.fetchAll(db, sql: "PRAGMA table_info(\(name))").map { $0["name"] as String }) }
            return ([try columns("tasks") == columns("done_tasks"), try columns("attempts") == columns("done_attempts")],
                    try Row.fetchAll(db, sql: "SELECT owner, host, pid FROM done_attempts WHERE run_id = 'r1'")
                        .map { "\($0["owner"] as String) \($0["host"] as String) \($0["pid"] as Int)" })
        }
        #expect(views == [true, true], "done_tasks and done_attempts have their tables' columns")
        #expect(ranBy == ["me h 1", "me h 1"])
    }

    /// Two runs whose discoveries write their items in turns (duplicates too): the rowids of each run's
    /// items interleave with the other's, and each run's result pages, stage summaries and local reads
    /// still hold its own items only, every one of them.
    @Test func runsWhoseItemsInterleaveReadTheirOwnResultsAndSummaries() async throws {
        let h = try await StoreHarness(.sqlite)
        let a = try await localFanOut(h, "ra", before: []), b = try await localFanOut(h, "rb", before: [])
        let item = { (key: String) in ItemRecord(key: key, value: Data("\"\(key)\"".utf8)) }
        for round in 0..<4 {
            _ = try await h.store.emitItems(run: a, stage: "find", items: ["a\(round)", "a\(round)x", "a0"].map(item), now: h.now)
            _ = try await h.store.emitItems(run: b, stage: "find", items: ["b\(round)"].map(item), now: h.now)
        }
        let ofA = try await h.store.localTasks(run: a, stage: "work", owner: h.me, after: 0, limit: 100)
        let ofB = try await h.store.localTasks(run: b, stage: "work", owner: h.me, after: 0, limit: 100)
        #expect(ofA.map(\.task.key) == ["a0", "a0x", "a1", "a1x", "a2", "a2x", "a3", "a3x"])
        #expect(ofB.map(\.task.key) == ["b0", "b1", "b2", "b3"])
        #expect(try #require(ofB.first).position < (try #require(ofA.last).position), "their rowids interleave")
        let completions = (ofA + ofB).map { localCompletion(h, $0.task, .success, next: .succeed, result: Data("\"\($0.task.key)!\"".utf8)) }
        _ = try await h.store.completeAttempts(completions, owner: h.me, now: h.now)
        for (run, tasks) in [(a, ofA), (b, ofB)] {
            var keys: [String] = [], after: TaskID = 0
            while true {
                let page = try await h.store.resultPage(run: run, stage: "work", afterTaskID: after, limit: 3)
                guard let last = page.last else { break }
                keys += page.map(\.key)
                #expect(page.allSatisfy { $0.result == Data("\"\($0.key)!\"".utf8) })
                after = last.taskID
            }
            #expect(keys == tasks.map(\.task.key), "\(run)'s results, in order, and no other run's")
            let all = try await h.store.results(run: run, stage: "work")
            #expect(all == Dictionary(uniqueKeysWithValues: tasks.map { ($0.task.key, Data("\"\($0.task.key)!\"".utf8)) }), "all of \(run)'s results at once")
            #expect(try await h.store.results(run: run, stage: "find").isEmpty, "the producer's task has not ended: no result, and none of its items'")
            let summary = try #require(try await h.store.stageSummaries(run: run)["work"])
            #expect(summary.counts.success == tasks.count && summary.attempts == tasks.count && summary.meanTaskMs == 1000)
        }
    }

    /// Batches of items whose keys are all new, all recorded before, or partly recorded before (and one
    /// twice within the batch): each key is recorded once, in the order it came, and a fan-out stage
    /// taking them gets one task per key under an id of its own — a stage started as any other, and one
    /// started local. (SQLite records `itemRows` items per statement and takes a statement's rows back
    /// when only some of them were new: these batches go through each of its paths.)
    @Test(arguments: StoreKind.allCases) func batchesOfItemsPartlyRecordedBeforeRecordEachKeyOnce(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let item = { (n: Int) in ItemRecord(key: "k\(n)", value: Data("\(n)".utf8)) }
        let stages = [StageSpec(name: "find", command: .swift), StageSpec(name: "work", command: .swift, forEach: "find")]
        let shared = RunID("r1")
        _ = try await h.store.createRun(h.newRun("r1", stages: stages), overlap: .allow, now: h.now, events: [])
        _ = try await h.store.acquireRun(shared, owner: h.me, until: h.now.addingTimeInterval(30), replacing: nil, now: h.now, events: [])
        try await h.store.applyStageTransitions(run: shared, [.start("find", taskKeys: ["main"]), .start("work", taskKeys: [])], now: h.now, events: [])
        let local = try await localFanOut(h, "r2", before: [])
        // k36–k39 recorded before, k45 twice, then k50–k66 new: the first 32 of the batch; then 8 more.
        let mixed = (36..<50).map(item) + [item(45)] + (50..<75).map(item)
        for run in [shared, local] {
            #expect(try await h.store.emitItems(run: run, stage: "find", items: (0..<40).map(item), now: h.now) == 40)
            #expect(try await h.store.emitItems(run: run, stage: "find", items: (0..<32).map(item), now: h.now) == 0, "all recorded before")
            #expect(try await h.store.emitItems(run: run, stage: "find", items: mixed, now: h.now) == 35)
            let expected = (0..<75).map { "k\($0)" }
            #expect(try await h.store.items(run: run, stage: "find").map(\.key) == expected)
            let tasks = run == local && h.store.keepsLocalTasks
                ? try await h.store.localTasks(run: run, stage: "work", owner: h.me, after: 0, limit: 100).map(\.task)
                : try await h.store.tasks(of: run).filter { $0.stage == "work" }
            #expect(tasks.map(\.key).sorted() == expected.sorted(), "\(run): one task per key")
            #expect(Set(tasks.map(\.id)).count == 75 && !tasks.contains { $0.id == 0 }, "\(run): ids of their own")
            #expect(try await h.store.taskCounts(run: run)["work"]?.pending == 75)
        }
    }

    /// Local tasks (`keepsLocalTasks`): the items of a stage started local have no task row until their
    /// task ends, and count as pending meanwhile; a completion writes the task and its attempt under the
    /// id reserved for the item; once the stage's process no longer holds the run, the items left become
    /// pending tasks and its late results are refused. A store without local tasks starts the stage as
    /// any other.
    @Test(arguments: StoreKind.allCases) func localTasksAreWrittenWhenTheyEndAndBecomeTasksWhenTheirProcessGoes(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let store = h.store
        let id = try await localFanOut(h, "r1", before: ["k1", "k2"])
        _ = try await store.emitItems(run: id, stage: "find", items: ["k3", "k1", "k4"].map { ItemRecord(key: $0, value: Data("\"\($0)\"".utf8)) },
                                      now: h.now)
        guard store.keepsLocalTasks else {
            #expect(try await store.tasks(of: id).filter { $0.stage == "work" }.map(\.status) == [.pending, .pending, .pending, .pending])
            return
        }
        #expect(try await store.tasks(of: id).filter { $0.stage == "work" }.isEmpty)
        #expect(try await store.taskCounts(run: id)["work"]?.pending == 4)
        // The metrics' queue depth counts them too (with find's own pending task).
        #expect(try await store.statistics(durationBounds: []).tasks[StoreStatistics.Key("p", "pending")] == 5)
        let first = try await store.localTasks(run: id, stage: "work", owner: h.me, after: 0, limit: 3)
        #expect(first.map(\.task.key) == ["k1", "k2", "k3"])
        #expect(Set(first.map(\.task.id)).count == 3 && first.map(\.task.item) == ["k1", "k2", "k3"].map { Data("\"\($0)\"".utf8) })
        #expect(try await store.localTasks(run: id, stage: "work", owner: h.other, after: 0, limit: 10).isEmpty, "local to its owner only")
        let rest = try await store.localTasks(run: id, stage: "work", owner: h.me, after: try #require(first.last).position, limit: 10)
        #expect(rest.map(\.task.key) == ["k4"])

        let tasks = first.map(\.task)
        let results = try await store.completeAttempts([
            localCompletion(h, tasks[0], .success, next: .succeed, result: Data("1".utf8)),
            localCompletion(h, tasks[1], .failed, next: .retry(notBefore: h.now.addingTimeInterval(10))),
            localCompletion(h, tasks[2], .failed, next: .fail),
        ], owner: h.me, now: h.now)
        #expect(results == [.applied(stage: nil), .applied(stage: nil), .applied(stage: nil)])
        let written = try await store.tasks(of: id).filter { $0.stage == "work" }
        #expect(written.map(\.id) == tasks.map(\.id) && written.map(\.key) == ["k1", "k2", "k3"])
        #expect(written.map(\.status) == [.success, .pending, .failed] && written.map(\.attempts) == [1, 1, 1])
        #expect(try await store.results(run: id, stage: "work") == ["k1": Data("1".utf8)])
        let attempts = try await store.attempts(ofTasks: tasks.map(\.id))
        #expect(attempts.map(\.outcome) == [.success, .failed, .failed] && attempts.allSatisfy { $0.number == 1 && $0.finishedAt != nil })
        // Every way of reading a task and its attempt sees the success as it was recorded.
        let k1 = try #require(try await store.task(tasks[0].id))
        #expect(k1.key == "k1" && k1.status == .success && k1.attempts == 1 && k1.item == Data("\"k1\"".utf8) && k1.finishedAt != nil)
        let ofRun = try await store.attempts(of: id).filter { $0.stage == "work" }
        #expect(ofRun.map(\.taskID) == tasks.map(\.id) && ofRun.map(\.outcome) == [.success, .failed, .failed])
        #expect(ofRun[0].host == "h" && ofRun[0].pid == 1 && ofRun[0].message == "success" && ofRun[0].wallMs == 1000)
        let summary = try #require(try await store.stageSummaries(run: id)["work"])
        #expect(summary.attempts == 3 && summary.counts.success == 1 && summary.counts.pending == 2 && summary.meanTaskMs == 1000)
        let stats = try await store.statistics(durationBounds: [0.5, 2])
        #expect(stats.tasks[StoreStatistics.Key("p", "success")] == 1 && stats.attempts[StoreStatistics.Key("p", "success")] == 1)
        #expect(stats.durations["p"]?.count == 3 && stats.durations["p"]?.cumulative == [0, 3])
        #expect(try await store.tasks(of: id, all: ["work"], unsuccessful: []).map(\.key) == ["k1", "k2", "k3"])
        let counts = try #require(try await store.taskCounts(run: id)["work"])
        #expect(counts.pending == 2 && counts.success == 1 && counts.failed == 1, "k4 left, k2 to retry")
        #expect(try await store.localTasks(run: id, stage: "work", owner: h.me, after: 0, limit: 10).map(\.task.key) == ["k4"])
        // Written once: the same completion again is refused.
        #expect(try await store.completeAttempts([localCompletion(h, tasks[0], .success, next: .succeed)], owner: h.me, now: h.now) == [.leaseLost])
        // The retry is an ordinary pending task.
        let retried = try await store.claimTasks(run: id, owner: h.me, limit: 10, filter: ClaimFilter(excludedStages: ["find"]), now: h.now.addingTimeInterval(10),
                                                 leaseUntil: h.now.addingTimeInterval(40))
        #expect(retried.map(\.task.key) == ["k2"] && retried.map(\.attempt) == [2])

        // Another process takes the run over: k4 becomes a pending task under its reserved id; the first
        // process's late result for it is refused.
        _ = try await store.acquireRun(id, owner: h.other, until: h.now.addingTimeInterval(60), replacing: h.me, now: h.now, events: [])
        _ = try await store.abandonRunningAttempts(id, heldBy: h.me.id, maxLostAttempts: 3, now: h.now.addingTimeInterval(11), events: [])
        let k4 = try #require(try await store.tasks(of: id).first { $0.key == "k4" })
        #expect(k4.id == rest[0].task.id && k4.status == .pending)
        #expect(try await store.localTasks(run: id, stage: "work", owner: h.me, after: 0, limit: 10).isEmpty)
        #expect(try await store.completeAttempts([localCompletion(h, rest[0].task, .success, next: .succeed)], owner: h.me, now: h.now) == [.leaseLost])
        #expect(try await store.taskCounts(run: id)["work"]?.pending == 2, "k4 and the lost k2")
    }

    /// A local stage ends when its producer ended and its last item's task is written (in that
    /// completion's transaction); a cancel records the items left as cancelled tasks, which a resume
    /// runs again.
    @Test func aLocalStageRollsUpWithItsLastTaskAndACancelRecordsTheRest() async throws {
        let h = try await StoreHarness(.sqlite) // the store that keeps local tasks
        let store = h.store
        let id = try await localFanOut(h, "r1", before: ["k1", "k2"])
        let find = try #require(try await store.claimTasks(run: id, owner: h.me, limit: 1, filter: .everything, now: h.now,
                                                           leaseUntil: h.now.addingTimeInterval(30)).first)
        let found = AttemptRecord(taskID: find.task.id, runID: id, stage: "find", number: 1, outcome: .success, startedAt: h.now,
                                  finishedAt: h.now)
        _ = try await store.completeAttempt(found, result: nil, next: .succeed, owner: h.me, now: h.now, events: [],
                                            stageEvent: { s in h.event("r1", "stage.\(s.status.rawValue)") })
        #expect(try await store.stages(of: id).map(\.status) == [.success, .running], "two items left")
        let tasks = try await store.localTasks(run: id, stage: "work", owner: h.me, after: 0, limit: 10).map(\.task)
        #expect(try await store.completeAttempts([localCompletion(h, tasks[0], .success, next: .succeed)], owner: h.me, now: h.now)
                == [.applied(stage: nil)])
        let last = try await store.completeAttempts([localCompletion(h, tasks[1], .success, next: .succeed)], owner: h.me, now: h.now)
        guard case .applied(let stage?, _) = last.first else { Issue.record("the stage must end with its last task: \(last)"); return }
        #expect(stage.status == .success)

        let other = try await localFanOut(h, "r2", before: ["k1", "k2", "k3"])
        let started = try await store.localTasks(run: other, stage: "work", owner: h.me, after: 0, limit: 1).map(\.task)
        try await store.cancelUnfinished(run: other, now: h.now, events: [])
        #expect(try await store.tasks(of: other).filter { $0.stage == "work" }.map(\.status) == [.cancelled, .cancelled, .cancelled])
        #expect(try await store.completeAttempts([localCompletion(h, started[0], .success, next: .succeed)], owner: h.me, now: h.now)
                == [.leaseLost], "the task started before the cancel was recorded cancelled with the others")
        try await store.prepareResume(other, retryFailed: false, now: h.now, events: [])
        #expect(try await store.tasks(of: other).filter { $0.stage == "work" }.map(\.status) == [.pending, .pending, .pending])
    }

    /// Results are read a page at a time in task order, whether a task was written on its own or (a
    /// local task that succeeded at once, in the SQLite store) into its item's row.
    @Test func resultPagesGoInTaskOrderWhereverTheTasksWereWritten() async throws {
        let h = try await StoreHarness(.sqlite) // the store that keeps local tasks
        let store = h.store
        let id = try await localFanOut(h, "r1", before: ["k1", "k2", "k3", "k4", "k5"])
        let tasks = try await store.localTasks(run: id, stage: "work", owner: h.me, after: 0, limit: 10).map(\.task)
        let result = { (key: String) in Data("\"\(key)!\"".utf8) }
        _ = try await store.completeAttempts([
            localCompletion(h, tasks[0], .success, next: .succeed, result: result("k1")),
            localCompletion(h, tasks[1], .failed, next: .retry(notBefore: h.now)),
            localCompletion(h, tasks[2], .success, next: .succeed, result: result("k3")),
            localCompletion(h, tasks[3], .failed, next: .retry(notBefore: h.now)),
            localCompletion(h, tasks[4], .success, next: .succeed, result: result("k5")),
        ], owner: h.me, now: h.now)
        // k2 and k4 succeed at their second attempt, as ordinary tasks.
        let retried = try await store.claimTasks(run: id, owner: h.me, limit: 10, filter: ClaimFilter(excludedStages: ["find"]), now: h.now,
                                                 leaseUntil: h.now.addingTimeInterval(30))
        #expect(retried.map(\.task.key) == ["k2", "k4"])
        for claimed in retried {
            let attempt = AttemptRecord(taskID: claimed.task.id, runID: id, stage: "work", number: 2, outcome: .success, startedAt: h.now,
                                        finishedAt: h.now)
            _ = try await store.completeAttempt(attempt, result: result(claimed.task.key), next: .succeed, owner: h.me, now: h.now,
                                                events: [], stageEvent: { s in h.event("r1", "stage.\(s.status.rawValue)") })
        }
        for limit in [1, 2, 3, 5, 10] {
            var keys: [String] = [], ids: [TaskID] = [], after: TaskID = 0
            while true {
                let page = try await store.resultPage(run: id, stage: "work", afterTaskID: after, limit: limit)
                #expect(page.count <= limit)
                guard let last = page.last else { break }
                keys += page.map(\.key)
                ids += page.map(\.taskID)
                #expect(page.allSatisfy { $0.result == result($0.key) })
                after = last.taskID
            }
            #expect(keys == ["k1", "k2", "k3", "k4", "k5"], "pages of \(limit)")
            #expect(ids == tasks.map(\.id))
        }
        #expect(try await store.results(run: id, stage: "work") == Dictionary(uniqueKeysWithValues: tasks.map { ($0.key, result($0.key)) }))
        #expect(try await store.taskCounts(run: id)["work"]?.success == 5)
    }

    @Test(arguments: StoreKind.allCases) func aClaimTellsWhetherMoreTasksWereClaimable(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let id = RunID("r1")
        _ = try await h.store.createRun(h.newRun("r1"), overlap: .skip, now: h.now, events: [])
        try await h.store.applyStageTransitions(run: id, [.start("a", taskKeys: ["k1", "k2", "k3"])], now: h.now, events: [])
        let claim = { (limit: Int) in
            try await h.store.claimTasks(run: id, ClaimRequest(owner: h.me, limit: limit, leaseUntil: h.now.addingTimeInterval(30)),
                                         now: h.now)
        }
        let first = try await claim(2)
        #expect(first.tasks.count == 2 && first.more, "a third task was waiting")
        let second = try await claim(1)
        #expect(second.tasks.count == 1)
        if kind == .sqlite { #expect(!second.more, "the last task was claimed") }
        let third = try await claim(5)
        #expect(third.tasks.isEmpty && !third.more)
    }

    /// Starting a stage and claiming its tasks in one call: the claim sees the tasks the start created.
    @Test(arguments: StoreKind.allCases) func startingAStageCanClaimItsTasksAtOnce(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let id = RunID("r1")
        _ = try await h.store.createRun(h.newRun("r1"), overlap: .skip, now: h.now, events: [])
        let request = ClaimRequest(owner: h.me, limit: 2, leaseUntil: h.now.addingTimeInterval(30))
        let taken = try await h.store.applyStageTransitions(run: id, [.start("a", taskKeys: ["k1", "k2", "k3"])], now: h.now,
                                                            events: [h.event("r1", "stage.start")], thenClaim: request)
        #expect(taken.tasks.map(\.task.key) == ["k1", "k2"] && taken.more)
        #expect(taken.tasks.allSatisfy { $0.attempt == 1 && $0.task.status == .running })
        #expect(try await h.store.stages(of: id).first { $0.name == "a" }?.status == .running)
        #expect(try await h.store.taskCounts(run: id)["a"].map { [$0.running, $0.pending] } == [2, 1])
        #expect(try await h.store.events(run: id, afterID: 0, limit: 10).map(\.event) == ["stage.start"])
        // Nothing started: nothing claimed either way.
        let none = try await h.store.applyStageTransitions(run: id, [.start("a", taskKeys: ["k4"])], now: h.now, events: [],
                                                           thenClaim: ClaimRequest(owner: h.me, limit: 5, leaseUntil: h.now))
        #expect(none.tasks.map(\.task.key) == ["k3"], "the stage was running already: no new task, the one left claimed")
    }

    /// What a report lists, in one read: every task of some stages, the unsuccessful ones of others.
    @Test(arguments: StoreKind.allCases) func tasksOfSomeStagesAndTheUnsuccessfulOnesOfOthers(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let id = RunID("r1")
        _ = try await h.store.createRun(h.newRun("r1"), overlap: .skip, now: h.now, events: [])
        try await h.store.applyStageTransitions(run: id, [.start("a", taskKeys: ["main"]), .start("b", taskKeys: ["k1", "k2", "k3"])],
                                                now: h.now, events: [])
        let claimed = try await h.store.claimTasks(run: id, owner: h.me, limit: 3, filter: .everything, now: h.now,
                                                   leaseUntil: h.now.addingTimeInterval(30))
        let completions = claimed.compactMap { c -> AttemptCompletion? in
            guard c.task.key != "k3" else { return nil }  // k3 stays running
            let next: TaskNext = c.task.key == "k2" ? .fail : .succeed
            let attempt = AttemptRecord(taskID: c.task.id, runID: id, stage: c.task.stage, number: c.attempt,
                                        outcome: next == .fail ? .failed : .success, startedAt: h.now)
            return AttemptCompletion(attempt: attempt, result: nil, next: next, events: [], stageEvent: { _ in h.event("r1", "s") })
        }
        _ = try await h.store.completeAttempts(completions, owner: h.me, now: h.now)
        let listed = try await h.store.tasks(of: id, all: ["a"], unsuccessful: ["b"])
        #expect(listed.map(\.key) == ["main", "k2", "k3"])
        #expect(listed.map(\.id) == listed.map(\.id).sorted())
        #expect(try await h.store.tasks(of: id, all: ["a", "b"], unsuccessful: []).count == 4)
        #expect(try await h.store.tasks(of: id, all: [], unsuccessful: []).isEmpty)
    }

    @Test(arguments: StoreKind.allCases) func overlapSkipRefusesASecondActiveRunUntilTheLeaseExpires(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let store = h.store, now = h.now, me = h.me
        _ = try await store.createRun(h.newRun("r1"), overlap: .skip, now: now, events: [])
        guard case .overlapping(let active) = try await store.createRun(h.newRun("r2"), overlap: .skip, now: now, events: []) else {
            Issue.record("second run must overlap"); return
        }
        #expect(active.map(\.id.rawValue) == ["r1"])
        guard case .created = try await store.createRun(h.newRun("r3"), overlap: .allow, now: now, events: []) else {
            Issue.record("allow starts anyway"); return
        }
        // r1's lease expired (its process died): it no longer counts as active.
        try await store.expireLease(run: RunID("r1"), owner: me, now: now)
        try await store.expireLease(run: RunID("r3"), owner: me, now: now)
        guard case .created = try await store.createRun(h.newRun("r4"), overlap: .skip, now: now.addingTimeInterval(1), events: []) else {
            Issue.record("expired leases are not active"); return
        }
    }

    @Test(arguments: StoreKind.allCases) func idempotencyKeyReturnsTheExistingRun(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let store = h.store, now = h.now
        _ = try await store.createRun(h.newRun("r1", key: "k"), overlap: .allow, now: now, events: [])
        guard case .duplicate(let existing) = try await store.createRun(h.newRun("r2", key: "k"), overlap: .allow, now: now, events: []) else {
            Issue.record("duplicate key must not create a run"); return
        }
        #expect(existing.id.rawValue == "r1")
        #expect(try await store.run(RunID("r2")) == nil)
    }

    @Test(arguments: StoreKind.allCases) func leasesAreExclusive(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let store = h.store, now = h.now, me = h.me, other = h.other
        _ = try await store.createRun(h.newRun("r1"), overlap: .skip, now: now, events: [])
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

    @Test(arguments: StoreKind.allCases) func claimCompleteAndRollUpOnce(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let store = h.store, now = h.now, me = h.me, other = h.other
        let id = RunID("r1")
        _ = try await store.createRun(h.newRun("r1"), overlap: .skip, now: now, events: [])
        _ = try await store.acquireRun(id, owner: me, until: now.addingTimeInterval(30), replacing: nil, now: now, events: [])
        try await store.applyStageTransitions(run: id, [.start("a", taskKeys: ["main"]), .finish("b", .skipped, reason: "test")],
                                              now: now, events: [])
        // A stage no longer pending is left alone.
        try await store.applyStageTransitions(run: id, [.finish("a", .skipped, reason: "late")], now: now, events: [])
        #expect(try await store.stages(of: id).map(\.status) == [.running, .skipped])

        let claimed = try await store.claimTasks(run: id, owner: me, limit: 10, filter: .everything, now: now, leaseUntil: now.addingTimeInterval(30))
        #expect(claimed.count == 1)
        #expect(claimed.first?.attempt == 1)
        #expect(try await store.claimTasks(run: id, owner: other, limit: 10, filter: .everything, now: now, leaseUntil: now).isEmpty)

        let task = try #require(claimed.first).task
        var attempt = AttemptRecord(taskID: task.id, runID: id, stage: "a", number: 1, outcome: .failed, startedAt: now,
                                    finishedAt: now.addingTimeInterval(1), exitCode: 1)
        // Someone else's result for this attempt is refused.
        #expect(try await store.completeAttempt(attempt, result: nil, next: .fail, owner: other, now: now, events: [],
                                                stageEvent: { s in h.event("r1", "stage.\(s.status.rawValue)") }) == .leaseLost)
        // Retry: back to pending, not claimable before its time.
        #expect(try await store.completeAttempt(attempt, result: nil, next: .retry(notBefore: now.addingTimeInterval(10)), owner: me,
                                                now: now, events: [], stageEvent: { s in h.event("r1", "x") }) == .applied(stage: nil))
        #expect(try await store.claimTasks(run: id, owner: me, limit: 10, filter: .everything, now: now.addingTimeInterval(5), leaseUntil: now).isEmpty)
        let second = try await store.claimTasks(run: id, owner: me, limit: 10, filter: .everything, now: now.addingTimeInterval(10),
                                                leaseUntil: now.addingTimeInterval(40))
        #expect(second.first?.attempt == 2)
        attempt.number = 2
        attempt.outcome = .success
        attempt.exitCode = 0
        let result = try await store.completeAttempt(attempt, result: nil, next: .succeed, owner: me, now: now, events: [],
                                                     stageEvent: { s in h.event("r1", "stage.\(s.status.rawValue)") })
        guard case .applied(let stage?, _) = result else { Issue.record("the stage must roll up"); return }
        #expect(stage.status == .success)
        #expect(try await store.events(run: id, afterID: 0, limit: 10).map(\.event) == ["stage.success"])
        #expect(try await store.attempts(of: id).map(\.outcome) == [.failed, .success])
        #expect(try await store.finishRun(id, outcome: .success, owner: other, now: now, events: []) == false)
        #expect(try await store.finishRun(id, outcome: .success, owner: me, now: now, events: []) == true)
        #expect(try await store.run(id)?.status == .success)
    }

    @Test(arguments: StoreKind.allCases) func aBatchOfCompletionsRecordsEveryFieldOfEachAttemptAndTask(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let store = h.store, now = h.now, me = h.me
        let id = RunID("r1")
        _ = try await store.createRun(h.newRun("r1"), overlap: .skip, now: now, events: [])
        _ = try await store.acquireRun(id, owner: me, until: now.addingTimeInterval(30), replacing: nil, now: now, events: [])
        try await store.applyStageTransitions(run: id, [.start("a", taskKeys: ["ok", "bad", "again", "back"])], now: now, events: [])
        let claimed = try await store.claimTasks(run: id, owner: me, limit: 10, filter: .everything, now: now, leaseUntil: now.addingTimeInterval(30))
        let ids = Dictionary(uniqueKeysWithValues: claimed.map { ($0.task.key, $0.task.id) })
        let end = now.addingTimeInterval(2.5)
        func completion(_ key: String, _ attempt: AttemptRecord, result: Data? = nil, _ next: TaskNext) -> AttemptCompletion {
            AttemptCompletion(attempt: attempt, result: result, next: next, events: [h.event("r1", "task.\(key)")],
                              stageEvent: { s in h.event("r1", "stage.\(s.status.rawValue)") })
        }
        let ok = AttemptRecord(taskID: ids["ok"]!, runID: id, stage: "a", number: 1, outcome: .success, startedAt: now, finishedAt: end,
                               exitCode: 0, cpuMs: 12, peakRSSBytes: 4096, stdoutBytes: 10, stderrBytes: 3, stderrTail: "w\u{e9}rn \"q\"\nline2",
                               message: "fine", pid: 4242, processStartTicks: 99, counters: ["rows": "7", "na\u{ef}ve": "1"])
        let bad = AttemptRecord(taskID: ids["bad"]!, runID: id, stage: "a", number: 1, outcome: .failed, startedAt: now, finishedAt: end,
                                signal: 9, message: "killed")
        let again = AttemptRecord(taskID: ids["again"]!, runID: id, stage: "a", number: 1, outcome: .failed, startedAt: now, finishedAt: end,
                                  exitCode: 75)
        let back = AttemptRecord(taskID: ids["back"]!, runID: id, stage: "a", number: 1, outcome: .cancelled, startedAt: now, finishedAt: end)
        let results = try await store.completeAttempts([
            completion("ok", ok, result: Data([0, 1, 2, 255]), .succeed),
            completion("bad", bad, .fail),
            completion("again", again, .retry(notBefore: now.addingTimeInterval(60))),
            completion("back", back, .release),
            completion("ok", ok, result: Data([7]), .succeed), // the same attempt twice in one batch: once
        ], owner: me, now: end)
        #expect(results == [.applied(stage: nil), .applied(stage: nil), .applied(stage: nil), .applied(stage: nil), .leaseLost])

        let attempts = Dictionary(uniqueKeysWithValues: try await store.attempts(of: id).map { ($0.taskID, $0) })
        let recordedOK = try #require(attempts[ids["ok"]!])
        #expect(recordedOK.outcome == .success && recordedOK.exitCode == 0 && recordedOK.cpuMs == 12 && recordedOK.peakRSSBytes == 4096)
        #expect(recordedOK.stdoutBytes == 10 && recordedOK.stderrBytes == 3 && recordedOK.stderrTail == "w\u{e9}rn \"q\"\nline2")
        #expect(recordedOK.message == "fine" && recordedOK.pid == 4242 && recordedOK.processStartTicks == 99)
        #expect(recordedOK.counters == ["rows": "7", "na\u{ef}ve": "1"])
        #expect(recordedOK.finishedAt == end && recordedOK.startedAt == now)
        #expect(attempts[ids["bad"]!]?.signal == 9 && attempts[ids["bad"]!]?.exitCode == nil && attempts[ids["bad"]!]?.message == "killed")
        #expect(attempts[ids["again"]!]?.exitCode == 75 && attempts[ids["again"]!]?.outcome == .failed)
        #expect(attempts[ids["back"]!]?.outcome == .cancelled)

        let tasks = Dictionary(uniqueKeysWithValues: try await store.tasks(of: id).map { ($0.key, $0) })
        #expect(tasks["ok"]?.status == .success && tasks["ok"]?.finishedAt == end && tasks["ok"]?.leaseOwner == nil)
        #expect(tasks["bad"]?.status == .failed && tasks["bad"]?.finishedAt == end)
        #expect(tasks["again"]?.status == .pending && tasks["again"]?.notBefore == now.addingTimeInterval(60) && tasks["again"]?.finishedAt == nil)
        #expect(tasks["back"]?.status == .pending && tasks["back"]?.notBefore == nil)
        #expect(try await store.results(run: id, stage: "a") == ["ok": Data([0, 1, 2, 255])], "only the success's result, the first one")
        #expect(try await store.events(run: id, afterID: 0, limit: 10).map(\.event) == ["task.ok", "task.bad", "task.again", "task.back"])
        // The released task comes back with its try given back; the retried one only after its time.
        let next = try await store.claimTasks(run: id, owner: me, limit: 10, filter: .everything, now: now.addingTimeInterval(3),
                                              leaseUntil: now.addingTimeInterval(30))
        #expect(next.map(\.task.key) == ["back"])
        #expect(next.first?.attempt == 2 && next.first?.attemptInBudget == 1)
    }

    @Test(arguments: StoreKind.allCases) func abandonedAttemptsAreLostAndResumeResetsFailures(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let store = h.store, now = h.now, me = h.me, other = h.other
        let id = RunID("r1")
        _ = try await store.createRun(h.newRun("r1"), overlap: .skip, now: now, events: [])
        try await store.applyStageTransitions(run: id, [.start("a", taskKeys: ["main"])], now: now, events: [])
        let claimed = try await store.claimTasks(run: id, owner: me, limit: 1, filter: .everything, now: now, leaseUntil: now.addingTimeInterval(30))
        try await store.recordProcess(task: claimed[0].task.id, attempt: 1, pid: 4242, startTicks: 99)
        let lost = try await store.abandonRunningAttempts(id, heldBy: me.id, maxLostAttempts: 3, now: now, events: [])
        #expect(lost.map(\.pid) == [4242])
        #expect(lost.map(\.processStartTicks) == [99])
        #expect(try await store.attempts(of: id).map(\.outcome) == [.lost])
        let again = try await store.claimTasks(run: id, owner: other, limit: 1, filter: .everything, now: now, leaseUntil: now.addingTimeInterval(30))
        #expect(again.first?.attempt == 2)
        #expect(again.first?.attemptInBudget == 1, "a lost attempt does not use the retry budget")

        var attempt = AttemptRecord(taskID: again[0].task.id, runID: id, stage: "a", number: 2, outcome: .failed, startedAt: now)
        attempt.finishedAt = now
        _ = try await store.completeAttempt(attempt, result: nil, next: .fail, owner: other, now: now, events: [], stageEvent: { _ in h.event("r1", "s") })
        #expect(try await store.stages(of: id).map(\.status) == [.failed, .pending])
        try await store.prepareResume(id, retryFailed: true, now: now, events: [])
        #expect(try await store.stages(of: id).map(\.status) == [.running, .pending])
        let third = try await store.claimTasks(run: id, owner: other, limit: 1, filter: .everything, now: now, leaseUntil: now.addingTimeInterval(30))
        #expect(third.first?.attempt == 3)
        #expect(third.first?.attemptInBudget == 1, "resume gives a fresh retry budget")
    }

    @Test(arguments: StoreKind.allCases) func aTaskThatKeepsLosingItsProcessFails(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let store = h.store, now = h.now, me = h.me
        let id = RunID("r1")
        _ = try await store.createRun(h.newRun("r1"), overlap: .skip, now: now, events: [])
        try await store.applyStageTransitions(run: id, [.start("a", taskKeys: ["main"])], now: now, events: [])
        for round in 1...2 {
            _ = try await store.claimTasks(run: id, owner: me, limit: 1, filter: .everything, now: now, leaseUntil: now)
            _ = try await store.abandonRunningAttempts(id, heldBy: me.id, maxLostAttempts: 2, now: now, events: [h.event("r1", "takeover")])
            #expect(try await store.tasks(of: id).first?.status == (round == 1 ? .pending : .failed))
        }
        #expect(try await store.stages(of: id).first?.status == .failed)
        #expect(try await store.events(run: id, afterID: 0, limit: 10).last?.message.contains("lost its process 2 times") == true)
    }


    @Test(arguments: StoreKind.allCases) func claimsHonourQueuesExcludedStagesAndStageConcurrencyAcrossOwners(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let store = h.store, now = h.now, me = h.me, other = h.other
        let id = RunID("r1")
        let stages = [StageSpec(name: "cpu", command: .argv(["true"]), concurrency: 2),
                      StageSpec(name: "gpu", command: .argv(["true"]), queue: "gpu"),
                      StageSpec(name: "swift", command: .swift)]
        _ = try await store.createRun(h.newRun("r1", owner: .workerPool, stages: stages), overlap: .allow, now: now, events: [])
        try await store.applyStageTransitions(run: id, [.start("cpu", taskKeys: ["1", "2", "3"]), .start("gpu", taskKeys: ["1", "2"]),
                                                        .start("swift", taskKeys: ["main"])], now: now, events: [])
        #expect(try await store.run(id)?.status == .running, "a run recorded for workers starts with its first stage")
        let later = now.addingTimeInterval(30)
        let gpu = try await store.claimTasks(run: id, owner: me, limit: 10, filter: ClaimFilter(queues: ["gpu"]), now: now, leaseUntil: later)
        #expect(gpu.map(\.task.stage) == ["gpu", "gpu"])
        let first = try await store.claimTasks(run: id, owner: me, limit: 1, filter: ClaimFilter(queues: ["default"], excludedStages: ["swift"]),
                                               now: now, leaseUntil: later)
        #expect(first.map(\.task.stage) == ["cpu"])
        // The stage allows two at once, whoever holds them: the other owner gets one more, not two.
        let second = try await store.claimTasks(run: id, owner: other, limit: 10, filter: ClaimFilter(excludedStages: ["swift"]),
                                                now: now, leaseUntil: later)
        #expect(second.map(\.task.stage) == ["cpu"])
        #expect(try await store.taskCounts(run: id)["cpu"]?.pending == 1)
        // Every task another owner holds has its lease renewed, and only those.
        #expect(try await store.renewTaskLeases(owner: other, until: now.addingTimeInterval(90)) == Set(second.map(\.task.id)))
        let leases = try await store.tasks(of: id).filter { $0.status == .running }.map { ($0.leaseOwner ?? "", $0.leaseExpiresAt) }
        #expect(leases.filter { $0.0 == "other" }.allSatisfy { $0.1 == now.addingTimeInterval(90) })
        #expect(try await store.run(id)?.leaseExpiresAt == now.addingTimeInterval(90), "the worker-pool lease follows its workers")
        // A cancel request stops every claim.
        _ = try await store.requestCancel(id, now: now, events: [])
        #expect(try await store.claimTasks(run: id, owner: me, limit: 10, filter: .everything, now: now, leaseUntil: later).isEmpty)
    }

    /// A takeover is recorded even when no attempt was running (an in-process fan-out loses nothing);
    /// a look for expired leases that found none records nothing.
    @Test(arguments: StoreKind.allCases) func aTakeoverIsRecordedEvenWithNothingLost(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let store = h.store, now = h.now
        let id = RunID("r1")
        _ = try await store.createRun(h.newRun("r1", owner: h.me), overlap: .allow, now: now, events: [])
        #expect(try await store.abandonRunningAttempts(id, heldBy: nil, maxLostAttempts: 3, now: now, events: [h.event("r1", "run.reclaim")]).isEmpty)
        #expect(try await store.abandonRunningAttempts(id, heldBy: h.other.id, maxLostAttempts: 3, now: now, events: [h.event("r1", "run.abandoned")]).isEmpty)
        #expect(try await store.events(run: id, afterID: 0, limit: 100).map(\.event) == ["run.abandoned"])
    }

    @Test(arguments: StoreKind.allCases) func expiredLeasesAreReclaimedAndALateResultIsRefused(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let store = h.store, now = h.now, me = h.me, other = h.other
        let id = RunID("r1")
        _ = try await store.createRun(h.newRun("r1", owner: .workerPool), overlap: .allow, now: now, events: [])
        try await store.applyStageTransitions(run: id, [.start("a", taskKeys: ["1", "2"])], now: now, events: [])
        let mine = try await store.claimTasks(run: id, owner: me, limit: 1, filter: .everything, now: now, leaseUntil: now.addingTimeInterval(10))
        let theirs = try await store.claimTasks(run: id, owner: other, limit: 1, filter: .everything, now: now, leaseUntil: now.addingTimeInterval(60))
        // At 20 s my lease has expired, the other's has not: only mine is taken back.
        let lost = try await store.abandonRunningAttempts(id, heldBy: nil, maxLostAttempts: 3, now: now.addingTimeInterval(20),
                                                          events: [h.event("r1", "run.reclaim")])
        #expect(lost.map(\.taskID) == mine.map(\.task.id))
        #expect(try await store.tasks(of: id).map(\.status) == [.pending, .running])
        let again = try await store.claimTasks(run: id, owner: other, limit: 5, filter: .everything, now: now.addingTimeInterval(20),
                                               leaseUntil: now.addingTimeInterval(60))
        #expect(again.map(\.attempt) == [2])
        // The first holder wakes up and reports: refused, the new attempt is untouched.
        var late = AttemptRecord(taskID: mine[0].task.id, runID: id, stage: "a", number: 1, outcome: .success, startedAt: now)
        late.finishedAt = now.addingTimeInterval(21)
        #expect(try await store.completeAttempt(late, result: nil, next: .succeed, owner: me, now: now.addingTimeInterval(21), events: [],
                                                stageEvent: { _ in h.event("r1", "s") }) == .leaseLost)
        #expect(try await store.attempts(of: id).map(\.outcome) == [.lost, .running, .running])
        // A released task goes back at once, its retry budget untouched.
        var released = AttemptRecord(taskID: theirs[0].task.id, runID: id, stage: "a", number: 1, outcome: .cancelled, startedAt: now)
        released.finishedAt = now.addingTimeInterval(22)
        #expect(try await store.completeAttempt(released, result: nil, next: .release, owner: other, now: now.addingTimeInterval(22), events: [],
                                                stageEvent: { _ in h.event("r1", "s") }) == .applied(stage: nil))
        let back = try await store.claimTasks(run: id, owner: me, limit: 5, filter: .everything, now: now.addingTimeInterval(22),
                                              leaseUntil: now.addingTimeInterval(60))
        #expect(back.map(\.attemptInBudget) == [1])
    }

    @Test(arguments: StoreKind.allCases) func aRunIsFinishedOnceByWhoeverMay(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let store = h.store, now = h.now, me = h.me, other = h.other
        _ = try await store.createRun(h.newRun("pool", owner: .workerPool), overlap: .allow, now: now, events: [])
        _ = try await store.createRun(h.newRun("held", owner: me), overlap: .allow, now: now, events: [])
        #expect(try await store.openRuns(limit: 10).map(\.id.rawValue).sorted() == ["held", "pool"])
        // A live holder's run is finished by its holder only; the pool's by any worker, once.
        #expect(try await store.finishRun(RunID("held"), outcome: .success, owner: other, now: now, events: []) == false)
        #expect(try await store.finishRun(RunID("pool"), outcome: .success, owner: .workerPool, now: now, events: [h.event("pool", "run.success")]) == true)
        #expect(try await store.finishRun(RunID("pool"), outcome: .failed, owner: .workerPool, now: now, events: [h.event("pool", "run.failed")]) == false)
        #expect(try await store.run(RunID("pool"))?.status == .success)
        #expect(try await store.events(run: RunID("pool"), afterID: 0, limit: 10).map(\.event) == ["run.success"])
        // Once the holder's lease expired, anyone may finish its run.
        #expect(try await store.finishRun(RunID("held"), outcome: .failed, owner: other, now: now.addingTimeInterval(31), events: []) == true)
        #expect(try await store.openRuns(limit: 10).isEmpty)
    }

    /// Two processes start the same `overlap: skip` pipeline at the same moment: exactly one run.
    @Test(arguments: StoreKind.allCases) func concurrentStartsUnderOverlapSkipCreateOneRun(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let stores = [h.store, try await h.another(), try await h.another(), try await h.another()]
        for round in 1...10 {
            let results = try await withThrowingTaskGroup(of: CreateRunResult.self) { group in
                for (i, store) in stores.enumerated() {
                    group.addTask {
                        var run = h.newRun("o\(round)-\(i)")
                        run.pipeline = "p\(round)"
                        return try await store.createRun(run, overlap: .skip, now: h.now, events: [])
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            let created = results.filter { if case .created = $0 { true } else { false } }.count
            #expect(created == 1, "round \(round): \(created) runs created")
        }
    }

    @Test(arguments: StoreKind.allCases) func tokensAreStoredHashedAndCanBeRevoked(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let store = h.store, now = h.now
        #expect(try await store.createToken(APIToken(name: "ci", hash: "abc", createdAt: now)) == true)
        #expect(try await store.createToken(APIToken(name: "ci", hash: "def", createdAt: now)) == false, "names are unique")
        #expect(try await store.token(hash: "abc")?.name == "ci")
        #expect(try await store.token(hash: "zzz") == nil)
        #expect(try await store.revokeToken(name: "ci", now: now) == true)
        #expect(try await store.revokeToken(name: "ci", now: now) == false)
        #expect(try await store.token(hash: "abc") == nil, "a revoked token no longer authenticates")
        #expect(try await store.tokens().map(\.revokedAt) == [now])
    }

    @Test(arguments: StoreKind.allCases) func aNamedLeaseHasOneHolderUntilItExpiresOrIsReleased(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let store = h.store, now = h.now
        let later = now.addingTimeInterval(10)
        #expect(try await store.acquireLease("scheduler", holder: "a", until: later, now: now))
        #expect(try await store.acquireLease("scheduler", holder: "b", until: later, now: now) == false, "held by a")
        #expect(try await store.acquireLease("other", holder: "b", until: later, now: now), "leases are independent")
        #expect(try await store.acquireLease("scheduler", holder: "a", until: later.addingTimeInterval(10), now: now.addingTimeInterval(5)),
                "the holder renews")
        #expect(try await store.acquireLease("scheduler", holder: "b", until: later.addingTimeInterval(30), now: later.addingTimeInterval(5)) == false,
                "the renewal moved the expiry")
        #expect(try await store.acquireLease("scheduler", holder: "b", until: later.addingTimeInterval(30), now: later.addingTimeInterval(11)),
                "an expired lease is taken over")
        #expect(try await store.acquireLease("scheduler", holder: "a", until: later.addingTimeInterval(40), now: later.addingTimeInterval(12)) == false,
                "the old holder lost it")
        try await store.releaseLease("scheduler", holder: "a")
        #expect(try await store.acquireLease("scheduler", holder: "c", until: later.addingTimeInterval(40), now: later.addingTimeInterval(12)) == false,
                "a release by a non-holder changes nothing")
        try await store.releaseLease("scheduler", holder: "b")
        #expect(try await store.acquireLease("scheduler", holder: "c", until: later.addingTimeInterval(40), now: later.addingTimeInterval(12)),
                "released: taken at once")
        // Many processes racing for a free lease: exactly one wins.
        var stores = [store]
        for _ in 1..<6 { stores.append(try await h.another()) }
        let wins = try await withThrowingTaskGroup(of: Bool.self) { group in
            for (i, s) in stores.enumerated() {
                group.addTask { try await s.acquireLease("race", holder: "p\(i)", until: later, now: now) }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(wins == 1)
    }

    @Test(arguments: StoreKind.allCases) func concurrentCompletionsOfAStagesLastTasksRollItUpOnce(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        var stores = [h.store]
        for _ in 1..<8 { stores.append(try await h.another()) }
        try await raceCompletions(h, stores: stores, rounds: 10)
    }
}

/// Each round: a stage of as many tasks as `stores`, each claimed by a different owner through its own
/// store, then all completed at once. Exactly one completion ends the stage, with one stage event.
func raceCompletions(_ h: StoreHarness, stores: [any StateStore], rounds: Int) async throws {
    let now = h.now
    for round in 1...rounds {
        let id = RunID("race-\(round)")
        let run = h.newRun(id.rawValue, owner: .workerPool, stages: [StageSpec(name: "a", command: .argv(["true"]))])
        _ = try await h.store.createRun(run, overlap: .allow, now: now, events: [])
        try await h.store.applyStageTransitions(run: id, [.start("a", taskKeys: stores.indices.map { "\($0)" })], now: now, events: [])
        var claims: [(any StateStore, LeaseOwner, ClaimedTask)] = []
        for (i, store) in stores.enumerated() {
            let owner = LeaseOwner(id: "w\(i)", host: "h", pid: Int32(i))
            let claimed = try await store.claimTasks(run: id, owner: owner, limit: 1, filter: .everything, now: now,
                                                     leaseUntil: now.addingTimeInterval(60))
            try #require(claimed.count == 1)
            claims.append((store, owner, claimed[0]))
        }
        let results = try await withThrowingTaskGroup(of: CompletionResult.self) { group in
            for (store, owner, claim) in claims {
                group.addTask {
                    let attempt = AttemptRecord(taskID: claim.task.id, runID: id, stage: "a", number: claim.attempt, outcome: .success,
                                                startedAt: now, finishedAt: now.addingTimeInterval(1), exitCode: 0)
                    return try await store.completeAttempt(attempt, result: nil, next: .succeed, owner: owner, now: now, events: [],
                                                           stageEvent: { s in h.event(id.rawValue, "stage.\(s.status.rawValue)") })
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let rolledUp = results.filter { if case .applied(let stage?, _) = $0 { stage.status == .success } else { false } }
        #expect(rolledUp.count == 1, "round \(round): \(rolledUp.count) completions ended the stage")
        #expect(results.allSatisfy { $0 != .leaseLost })
        #expect(try await h.store.stages(of: id).map(\.status) == [.success])
        #expect(try await h.store.events(run: id, afterID: 0, limit: 100).filter { $0.event.hasPrefix("stage.") }.count == 1)
    }
}

@Suite("SQLite store")
struct SQLiteStoreTests {
    let dir: TemporaryDirectory

    init() throws {
        dir = try TemporaryDirectory(prefix: "store")
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

    /// Items an earlier version wrote took their rowids from SQLite, which may be the ids of tasks: a local
    /// stage over them gives them task ids of their own and writes their tasks as rows, while the items
    /// written since are the rows of their tasks (`v13-done-items`). Nothing is lost or written twice.
    @Test func aLocalStageOverItemsAnEarlierVersionWroteRecordsEachTaskOnce() async throws {
        let path = dir.file("v12.sqlite")
        let queue = try DatabaseQueue(path: path)
        try Self.earlierMigrator(steps: 12).migrate(queue)
        let run = RunID("20261205-000000-abcdef")
        let spec = PipelineSpec(name: "p", root: "/tmp", stages: [StageSpec(name: "find", command: .swift),
                                                                  StageSpec(name: "work", command: .swift, forEach: "find")])
        let specJSON = String(decoding: try JSONEncoder().encode(spec), as: UTF8.self)
        try await queue.write { db in
            try db.execute(sql: """
                INSERT INTO runs (id, pipeline, spec, params, trigger, status, created_at, run_dir, lease_owner, lease_host, lease_pid, lease_expires_at)
                VALUES (?, 'p', ?, '{}', 'manual', 'running', 0, '/tmp/r', 'me', 'h', 1, 1e12);
                INSERT INTO stages (run_id, name, position, status) VALUES (?, 'find', 0, 'running');
                INSERT INTO stages (run_id, name, position, status, producer) VALUES (?, 'work', 1, 'pending', 'find');
                INSERT INTO tasks (id, run_id, stage, key, status, created_at) VALUES (1, ?, 'find', 'main', 'running', 0);
                UPDATE task_ids SET next = 2;
                INSERT INTO items (run_id, stage, key, seq, value, created_at) VALUES (?, 'find', 'k1', 1, '"k1"', 0), (?, 'find', 'k2', 2, '"k2"', 0);
                """, arguments: [run.rawValue, specJSON, run.rawValue, run.rawValue, run.rawValue, run.rawValue, run.rawValue])
        }
        try queue.close()

        let store = try SQLiteStateStore.open(path: path)
        let me = LeaseOwner(id: "me", host: "h", pid: 1), now = Date()
        try await store.applyStageTransitions(run: run, [.startLocal("work", owner: me)], now: now, events: [])
        _ = try await store.emitItems(run: run, stage: "find", items: [ItemRecord(key: "k3", value: Data("\"k3\"".utf8))], now: now)
        let local = try await store.localTasks(run: run, stage: "work", owner: me, after: 0, limit: 10).map(\.task)
        #expect(local.map(\.key) == ["k1", "k2", "k3"])
        #expect(Set(local.map(\.id) + [1]).count == 4, "no task id is taken twice: \(local.map(\.id))")
        let completions = local.map { task in
            AttemptCompletion(attempt: AttemptRecord(taskID: task.id, runID: run, stage: "work", number: 1, outcome: .success, startedAt: now,
                                                     finishedAt: now, host: "h", pid: 1),
                              result: Data("\"\(task.key)!\"".utf8), next: .succeed, events: [],
                              stageEvent: { s in EventRecord(runID: run, pipeline: "p", event: "stage", time: now, message: "\(s.status)") },
                              newTask: task)
        }
        #expect(try await store.completeAttempts(completions, owner: me, now: now) == Array(repeating: .applied(stage: nil), count: 3))
        #expect(try await store.completeAttempts(completions, owner: me, now: now) == Array(repeating: .leaseLost, count: 3), "written once")
        let written = try await store.tasks(of: run).filter { $0.stage == "work" }
        #expect(written.map(\.key) == ["k1", "k2", "k3"] && written.map(\.id) == local.map(\.id) && written.allSatisfy { $0.status == .success })
        #expect(try await store.results(run: run, stage: "work").count == 3)
        #expect(try await store.resultPage(run: run, stage: "work", afterTaskID: 0, limit: 10).map(\.key) == ["k1", "k2", "k3"])
        #expect(try await store.stageSummaries(run: run)["work"]?.attempts == 3)
        #expect(try await store.taskCounts(run: run)["work"] == TaskCounts(success: 3))
        let rows = try await DatabaseQueue(path: path).read { db in
            [try Int.fetchOne(db, sql: "SELECT count(*) FROM tasks WHERE stage = 'work'"),
             try Int.fetchOne(db, sql: "SELECT count(*) FROM items WHERE done_stage = 'work'")]
        }
        #expect(rows == [2, 1], "k1 and k2 as task rows, k3 in its item")
    }

    /// The migrations of an earlier version that applied `steps` schema steps: each step a migration of
    /// its own up to the eleventh; 12, the version of `schema-v11` (the eleven merged) and `v12-local-tasks`.
    static func earlierMigrator(steps: Int) -> DatabaseMigrator {
        var earlier = DatabaseMigrator()
        if steps <= SQLiteStateStore.schemaSteps.count {
            for step in SQLiteStateStore.schemaSteps.prefix(steps) { earlier.registerMigration(step.id, migrate: step.apply) }
        } else {
            earlier.registerMigration("schema-v11", merging: Set(SQLiteStateStore.schemaSteps.map(\.id))) { db, _ in
                for step in SQLiteStateStore.schemaSteps { try step.apply(db) }
            }
            earlier.registerMigration("v12-local-tasks", migrate: SQLiteStateStore.localTasksStep)
        }
        return earlier
    }

    /// Earlier versions applied the schema in steps; a new store is created at once. A store an earlier
    /// version left at any step opens, keeps its rows, and ends with the schema of a new store.
    @Test(arguments: [1, 5, SQLiteStateStore.schemaSteps.count, 12])
    func aStoreAnEarlierVersionWroteIsBroughtUpToDate(stepsApplied: Int) async throws {
        let fresh = dir.file("fresh.sqlite"), old = dir.file("old-\(stepsApplied).sqlite")
        _ = try SQLiteStateStore.open(path: fresh)
        let queue = try DatabaseQueue(path: old)
        try Self.earlierMigrator(steps: stepsApplied).migrate(queue)
        try await queue.write { db in
            try db.execute(sql: """
                INSERT INTO runs (id, pipeline, spec, params, trigger, status, created_at, run_dir)
                VALUES ('20261205-000000-abcdef', 'p', '{}', '{}', 'manual', 'success', 0, '/tmp/r')
                """)
        }
        try queue.close()

        _ = try SQLiteStateStore.open(path: old)
        let schema = { (path: String) throws -> [String] in
            try DatabaseQueue(path: path).read { db in
                try String.fetchAll(db, sql: "SELECT type || ' ' || name || ': ' || sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'grdb%' ORDER BY name")
            }
        }
        // Same tables and indexes (SQLite keeps the text of ALTERed tables slightly differently, so compare columns too).
        #expect(try schema(old).map { $0.prefix(while: { $0 != ":" }) } == schema(fresh).map { $0.prefix(while: { $0 != ":" }) })
        let columns = { (path: String) throws -> [String] in
            try DatabaseQueue(path: path).read { db in
                try String.fetchAll(db, sql: "SELECT m.name || '.' || p.name || ' ' || p.type FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' ORDER BY m.name, p.cid")
            }
        }
        #expect(try columns(old) == columns(fresh))
        let (runs, migrations) = try await DatabaseQueue(path: old).read { db in
            (try Int.fetchOne(db, sql: "SELECT count(*) FROM runs"), try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations"))
        }
        #expect(runs == 1)
        #expect(migrations == ["schema-v13", "v14-item-ranges"])
        // And it opens again without applying anything (nor calling itself newer).
        _ = try SQLiteStateStore.open(path: old)
    }
}
