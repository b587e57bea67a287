import Foundation
import Sluice
import SluiceCore
import SluiceEngine
import SluiceStore
import SluiceSupervisor
import SluiceTesting
import Synchronization
import Testing

/// Workers cooperating on runs through one store, each with its own lease owner.
struct WorkerFixture {
    let h: StoreHarness
    let layout: StateLayout

    init(_ kind: StoreKind) async throws {
        h = try await StoreHarness(kind)
        layout = StateLayout(directory: h.dir.file(".sluice"))
    }

    func engine(_ pipelines: [Pipeline] = [], lease: Duration = .seconds(30)) -> Engine {
        var stages = InProcessStages()
        for p in pipelines { p.register(in: &stages) }
        var configuration = Engine.Configuration()
        configuration.leaseDuration = lease
        configuration.heartbeat = min(.seconds(5), lease / 3)
        return Engine(store: h.store, layout: layout, configuration: configuration, inProcess: stages)
    }

    /// Runs `count` workers until no run is open.
    func workers(_ count: Int, concurrency: Int, pipelines: [Pipeline] = [], lease: Duration = .seconds(30)) async throws -> [Worker.Summary] {
        try await withThrowingTaskGroup(of: Worker.Summary.self) { group in
            for _ in 0..<count {
                var options = Worker.Options(concurrency: concurrency)
                options.poll = .milliseconds(20)
                options.exitWhenIdle = true
                let worker = Worker(engine: engine(pipelines, lease: lease), options: options)
                group.addTask { try await worker.run(shutdown: StopSignal()) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
    }
}

@Suite("Workers: many processes, one record")
struct WorkerTests {
    @Test(arguments: StoreKind.allCases) func aDetachedRunIsExecutedByTwoWorkersOnce(kind: StoreKind) async throws {
        let f = try await WorkerFixture(kind)
        let spec = PipelineSpec(name: "fan", concurrency: 4, root: f.h.dir.path, stages: [
            StageSpec(name: "discover", command: .shell("for i in $(seq 1 30); do echo \"{\\\"id\\\": $i}\"; done")),
            StageSpec(name: "process", command: .argv(["sh", "-c", "echo $1 >> processed.txt", "-", "{{item.id}}"]),
                      forEach: "discover", concurrency: 3),
            StageSpec(name: "join", needs: ["process"], command: .shell("echo joined >> joins.txt")),
        ])
        guard case .started(let run) = try await f.engine().start(spec, detached: true) else { Issue.record("not started"); return }
        #expect(run.leaseOwner == .workerPool)
        let summaries = try await f.workers(2, concurrency: 2)
        let record = try #require(try await f.h.store.run(run.id))
        #expect(record.status == .success)
        #expect(summaries.map(\.runsFinished).reduce(0, +) == 1, "exactly one worker finished the run")
        #expect(summaries.map(\.attempts).reduce(0, +) == 32)
        let processed = try String(contentsOfFile: f.h.dir.file("processed.txt"), encoding: .utf8).split(separator: "\n")
        #expect(processed.count == 30 && Set(processed).count == 30, "every item processed once")
        #expect(try String(contentsOfFile: f.h.dir.file("joins.txt"), encoding: .utf8) == "joined\n")
        let events = try await f.h.store.events(run: run.id, afterID: 0, limit: 1000).map(\.event)
        #expect(events.filter { $0 == "run.success" }.count == 1)
        #expect(events.filter { $0 == "stage.success" }.count == 3)
        #expect(FileManager.default.fileExists(atPath: RunFiles(directory: run.runDir).report), "the finisher wrote report.json")
    }

    /// Issue 6's race: many workers complete the last tasks of a fan-out stage at the same moment; the
    /// join starts exactly once, every time.
    @Test(arguments: StoreKind.allCases) func theJoinStartsExactlyOnceWhenWorkersFinishTogether(kind: StoreKind) async throws {
        let f = try await WorkerFixture(kind)
        for round in 0..<100 {
            let joins = Mutex(0)
            let arrived = Mutex(0)
            let items = 8
            let find = Discover<Doc>("find") { _, emitter in
                for i in 0..<items { try emitter.emit(Doc(id: "d\(i)", words: i)) }
            }
            // Every item waits until all are running, so their completions race.
            let count = ForEach("count", over: find) { _, doc -> Int in
                arrived.withLock { $0 += 1 }
                while arrived.withLock({ $0 }) < items { try await Task.sleep(for: .milliseconds(1)) }
                return doc.words
            }
            let join = Stage("join", needs: count) { context -> Int in
                joins.withLock { $0 += 1 }
                return try await context.results(of: count).values.reduce(0, +)
            }
            let pipeline = try Pipeline("race-\(round)", concurrency: items, root: f.h.dir.path) { find; count; join }
            guard case .started(let run) = try await f.engine([pipeline]).start(pipeline.spec, detached: true) else {
                Issue.record("not started"); return
            }
            _ = try await f.workers(4, concurrency: 2, pipelines: [pipeline])
            #expect(joins.withLock { $0 } == 1, "round \(round): the join ran \(joins.withLock { $0 }) times")
            #expect(try await f.h.store.run(run.id)?.status == .success)
            let joinAttempts = try await f.h.store.attempts(of: run.id).filter { $0.stage == "join" }
            #expect(joinAttempts.count == 1)
            let sum = try await f.h.store.results(run: run.id, stage: "join")["main"]
            #expect(sum.flatMap { try? JSONDecoder().decode(Int.self, from: $0) } == 28)
            if joins.withLock({ $0 }) != 1 { break }
        }
    }

    /// A discovery that sends its items (waiting while many are unrecorded) and a join that folds the
    /// results a page at a time see every item once, on both stores; pages walk the results in task order.
    @Test(arguments: StoreKind.allCases) func sentItemsAndPagedResultsCoverEveryItemOnce(kind: StoreKind) async throws {
        let f = try await WorkerFixture(kind)
        let n = 1_500
        let find = Discover<Int>("find") { _, items in
            for i in 0..<n { try await items.send(i) }
        }
        let triple = ForEach("triple", over: find) { _, x in x * 3 }
        let join = Stage("join", needs: triple) { context -> [Int] in
            var total = 0, count = 0
            for try await (_, value) in context.streamedResults(of: triple) { total += value; count += 1 }
            let whole = try await context.results(of: triple)
            return [total, count, whole.values.reduce(0, +), whole.count]
        }
        let pipeline = try Pipeline("paged", concurrency: 4, root: f.h.dir.path) { find; triple; join }
        let engine = f.engine([pipeline])
        guard case .started(let run) = try await engine.start(pipeline.spec) else { Issue.record("not started"); return }
        #expect(try await engine.execute(run) == .success)
        let answer = try await f.h.store.results(run: run.id, stage: "join")["main"].map { try JSONDecoder().decode([Int].self, from: $0) }
        let expected = 3 * n * (n - 1) / 2
        #expect(answer == [expected, n, expected, n], "streamed and whole results agree")

        var seen: [TaskID] = [], keys = Set<String>(), after: TaskID = 0
        while true {
            let page = try await f.h.store.resultPage(run: run.id, stage: "triple", afterTaskID: after, limit: 97)
            seen += page.map(\.taskID)
            keys.formUnion(page.map(\.key))
            guard let last = page.last else { break }
            after = last.taskID
        }
        #expect(seen.count == n && keys.count == n, "every result once")
        #expect(seen == seen.sorted(), "in task order")
        #expect(try await f.h.store.resultPage(run: run.id, stage: "join", afterTaskID: 0, limit: 10).map(\.key) == ["main"])
    }

    @Test(arguments: StoreKind.allCases) func aTaskWhoseWorkerVanishedIsTakenBackAfterItsLease(kind: StoreKind) async throws {
        let f = try await WorkerFixture(kind)
        let spec = PipelineSpec(name: "lease", root: f.h.dir.path, stages: [
            StageSpec(name: "only", command: .shell("echo done >> done.txt")),
        ])
        let engine = f.engine()
        guard case .started(let run) = try await engine.start(spec, detached: true) else { Issue.record("not started"); return }
        // A worker that claimed the task and then vanished: its lease runs out in half a second.
        let now = Date()
        try await f.h.store.applyStageTransitions(run: run.id, [.start("only", taskKeys: ["main"])], now: now, events: [])
        let ghost = LeaseOwner(id: "ghost", host: "elsewhere", pid: 1)
        let claimed = try await f.h.store.claimTasks(run: run.id, owner: ghost, limit: 1, filter: .everything, now: now,
                                                     leaseUntil: now.addingTimeInterval(0.5))
        #expect(claimed.count == 1)
        try await Task.sleep(for: .milliseconds(600))
        _ = try await f.workers(1, concurrency: 1, lease: .seconds(3))
        #expect(try await f.h.store.run(run.id)?.status == .success)
        #expect(try await f.h.store.attempts(of: run.id).map(\.outcome) == [.lost, .success])
        #expect(try await f.h.store.attempts(ofTasks: [claimed[0].task.id]).first?.host == "elsewhere")
        #expect(try await f.h.store.events(run: run.id, afterID: 0, limit: 100).contains { $0.event == "task.lost" })
    }

    @Test(arguments: StoreKind.allCases) func workersServeOnlyTheirQueuesAndSkipSwiftStagesTheyCannotRun(kind: StoreKind) async throws {
        let f = try await WorkerFixture(kind)
        let spec = PipelineSpec(name: "queues", root: f.h.dir.path, stages: [
            StageSpec(name: "cpu", command: .shell("echo cpu >> ran.txt")),
            StageSpec(name: "gpu", command: .shell("echo gpu >> ran.txt"), queue: "gpu"),
            StageSpec(name: "code", command: .swift),
        ])
        guard case .started(let run) = try await f.engine().start(spec, detached: true) else { Issue.record("not started"); return }
        var options = Worker.Options(queues: ["default"], concurrency: 2)
        options.poll = .milliseconds(20)
        let stop = StopSignal()
        let worker = Worker(engine: f.engine(), options: options)
        async let summary = worker.run(shutdown: stop)
        let store = f.h.store
        try await waitUntil { try await store.taskCounts(run: run.id)["cpu"]?.success == 1 }
        try await Task.sleep(for: .milliseconds(200))
        stop.request()
        #expect(try await summary.attempts == 1)
        let counts = try await store.taskCounts(run: run.id)
        #expect(counts["gpu"]?.pending == 1, "the gpu queue is not served")
        #expect(counts["code"]?.pending == 1, "a Swift stage waits for a worker that has its code")
        #expect(try String(contentsOfFile: f.h.dir.file("ran.txt"), encoding: .utf8) == "cpu\n")
        let report = try await RunReport.build(store: store, runID: run.id)
        #expect(report.stages.first { $0.name == "gpu" }?.waiting?.contains("queue 'gpu'") == true, "show says why it waits")
        #expect(report.stages.first { $0.name == "code" }?.waiting?.contains("Swift code") == true)
    }

    @Test(arguments: StoreKind.allCases) func aCancelledDetachedRunIsStoppedAndRecordedByItsWorkers(kind: StoreKind) async throws {
        let f = try await WorkerFixture(kind)
        let spec = PipelineSpec(name: "cancel", root: f.h.dir.path, stages: [
            StageSpec(name: "long", command: .argv(["sleep", "60"]), grace: .seconds(1)),
            StageSpec(name: "after", needs: ["long"], command: .argv(["true"])),
        ])
        let engine = f.engine()
        guard case .started(let run) = try await engine.start(spec, detached: true) else { Issue.record("not started"); return }
        let store = f.h.store
        let done = try await withThrowingTaskGroup(of: [Worker.Summary].self) { group in
            group.addTask { try await f.workers(1, concurrency: 2) }
            try await waitUntil { try await store.taskCounts(run: run.id)["long"]?.running == 1 }
            try await Task.sleep(for: .milliseconds(300))
            _ = try await engine.cancel(try #require(try await store.run(run.id)))
            return try await group.next() ?? []
        }
        #expect(done.first?.runsFinished == 1)
        #expect(try await store.run(run.id)?.status == .cancelled)
        #expect(try await store.stages(of: run.id).map(\.status) == [.cancelled, .cancelled])
        #expect(try await store.attempts(of: run.id).map(\.outcome) == [.cancelled])
    }
}

/// Polls `condition` every 20 ms, for up to 30 s.
func waitUntil(_ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(30)
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("condition not met within 30 s")
}
