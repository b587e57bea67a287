import Foundation
import Sluice
import SluiceDefinition
import SluiceEngine
import SluiceStore
import SluiceStoreSQLite
import SluiceTesting
import Synchronization
import Testing

struct Totals: Codable, Sendable, Hashable {
    var count: Int
    var names: [String]
}

/// Runs Swift pipelines on a real SQLite store.
struct SwiftFixture {
    let dir: TemporaryDirectory
    let store: SQLiteStateStore
    let layout: StateLayout

    init() throws {
        dir = try TemporaryDirectory(prefix: "swift-api")
        layout = StateLayout(directory: dir.file(".sluice"))
        store = try SQLiteStateStore.open(path: layout.databasePath)
    }

    func engine(_ pipelines: [Pipeline]) -> Engine {
        var stages = InProcessStages()
        for p in pipelines { p.register(in: &stages) }
        return Engine(store: store, layout: layout, inProcess: stages)
    }

    func run(_ pipeline: Pipeline) async throws -> (RunOutcome, RunRecord) {
        let engine = engine([pipeline])
        guard case .started(let run) = try await engine.start(pipeline.spec) else { throw EngineError(.overlap, "not started") }
        return (try await engine.execute(run), run)
    }

    /// Starts the pipeline, waits until `ready` holds (at most 20 s), looks at the run with `meanwhile`
    /// while it runs, cancels it, and returns how it ended, with the engine (to resume it).
    func runCancelled(_ pipeline: Pipeline, when ready: @escaping @Sendable () -> Bool,
                      meanwhile: (RunRecord) async throws -> Void = { _ in }) async throws -> (RunOutcome, RunRecord, Engine) {
        let engine = engine([pipeline])
        guard case .started(let run) = try await engine.start(pipeline.spec) else { throw EngineError(.overlap, "not started") }
        async let outcome = engine.execute(run)
        for _ in 0..<2000 where !ready() { try await Task.sleep(for: .milliseconds(10)) }
        try await meanwhile(run)
        _ = try await engine.cancel(run)
        return (try await outcome, run, engine)
    }
}

@Suite("Swift API")
struct SwiftAPITests {
    @Test func typedResultsRoundTripThroughTheStore() async throws {
        let f = try SwiftFixture()
        let received = Mutex<Totals?>(nil)
        let list = Stage("list") { _ in Totals(count: 2, names: ["a.csv", "b.csv"]) }
        let use = Stage("use", needs: list) { context in
            let totals = try await context.result(of: list)
            received.withLock { $0 = totals }
            return totals.names.joined(separator: "+")
        }
        let pipeline = try Pipeline("typed", root: f.dir.path) {
            list
            use
        }
        let (outcome, run) = try await f.run(pipeline)
        #expect(outcome == .success)
        #expect(received.withLock { $0 } == Totals(count: 2, names: ["a.csv", "b.csv"]))
        let stored = try await f.store.results(run: run.id, stage: "use")
        #expect(try JSONDecoder().decode(String.self, from: try #require(stored["main"])) == "a.csv+b.csv")
    }

    @Test func optionsParamsAndCountersReachTheRecord() async throws {
        let f = try SwiftFixture()
        let attempts = Mutex(0)
        let flaky = Stage("flaky") { context -> Int in
            let n = attempts.withLock { $0 += 1; return $0 }
            context.count("rows", 10)
            if n < 2 { throw CocoaError(.fileReadCorruptFile) }
            context.reject("row 7", reason: "negative amount")
            return Int(context.param("base") ?? "0")! + n
        }.retries(3, initial: .milliseconds(10), jitter: 0)
        let pipeline = try Pipeline("options", params: ["base": "40"], root: f.dir.path) {
            flaky
            Command("after", ["sh", "-c", "test \"$SLUICE_PARAM_BASE\" = 40"], needs: flaky)
        }
        let (outcome, run) = try await f.run(pipeline)
        #expect(outcome == .success)
        #expect(try await f.store.attempts(of: run.id).filter { $0.stage == "flaky" }.map(\.outcome) == [.failed, .success])
        let report = try await RunReport.build(store: f.store, runID: run.id)
        let stage = try #require(report.stages.first { $0.name == "flaky" })
        #expect(stage.counters == ["rows": 10], "only the successful attempt's counts")
        #expect(stage.rejected == 1)
        #expect(stage.rejectedRecords == ["row 7: negative amount"])
        let stored = try await f.store.results(run: run.id, stage: "flaky")
        #expect(try JSONDecoder().decode(Int.self, from: try #require(stored["main"])) == 42)
    }

    /// A fan-out of in-process tasks (run as local tasks, their successes written into their items):
    /// every task's counters and rejected records add up exactly in the report, with its task figures —
    /// in the report the engine writes (the stage's summary read as soon as it ended, while the join ran)
    /// as in one built from the store afterwards.
    @Test func countersOfALocalFanOutAddUpInTheReport() async throws {
        let f = try SwiftFixture()
        let numbers = Discover<Int>("numbers") { _, items in
            for i in 0..<500 { try await items.send(i) }
        }
        let work = ForEach("work", over: numbers) { context, x -> Int in
            context.count("seen", 1)
            context.count("value", x)
            if x % 100 == 7 { context.reject("item \(x)", reason: "ends in 7") }
            return x
        }
        let join = Stage("join", needs: work) { context -> Int in
            var total = 0
            for try await (_, value) in context.streamedResults(of: work) { total += value }
            return total
        }
        let pipeline = try Pipeline("counted", root: f.dir.path) { numbers; work; join }
        let engine = f.engine([pipeline])
        guard case .started(let run) = try await engine.start(pipeline.spec) else { throw EngineError(.overlap, "not started") }
        let written = Mutex<RunReport?>(nil)
        #expect(try await engine.execute(run, reported: { report in written.withLock { $0 = report } }) == .success)
        let built = try await RunReport.build(store: f.store, runID: run.id)
        let reports = [try #require(written.withLock { $0 }), built]
        for report in reports {
            let stage = try #require(report.stages.first { $0.name == "work" })
            #expect(stage.counters == ["seen": 500, "value": 124_750])
            #expect(stage.rejected == 5 && stage.rejectedRecords?.count == 5)
            #expect(stage.metrics?.tasks == 500 && stage.metrics?.succeeded == 500 && stage.metrics?.meanTaskMs != nil)
            #expect(report.stages.first { $0.name == "join" }?.status == "success")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let metrics = try reports.map { try encoder.encode($0.stages.first { $0.name == "work" }?.metrics) }
        #expect(metrics[0] == metrics[1], "the written report's task figures are those the store gives afterwards")
        #expect(try await f.store.attempts(of: run.id).filter { $0.stage == "work" }.count == 500)
    }

    @Test func cancellationReachesARunningClosure() async throws {
        let f = try SwiftFixture()
        let sawCancellation = Mutex(false)
        let started = Mutex(false)
        let slow = Stage("slow") { _ in
            started.withLock { $0 = true }
            do {
                try await Task.sleep(for: .seconds(60))
            } catch is CancellationError {
                sawCancellation.withLock { $0 = true }
                throw CancellationError()
            }
        }
        let pipeline = try Pipeline("cancel", root: f.dir.path) { slow }
        let (outcome, run, _) = try await f.runCancelled(pipeline, when: { started.withLock { $0 } })
        #expect(outcome == .cancelled)
        #expect(sawCancellation.withLock { $0 })
        #expect(try await f.store.attempts(of: run.id).map(\.outcome) == [.cancelled])
    }

    @Test func cancellingAFanOutStopsTheTaskRunningAndRecordsTheRestAsCancelled() async throws {
        // Microsecond tasks first (so they are claimed ahead and run in rows), then slow ones: the cancel
        // lands while a row is part done.
        let f = try SwiftFixture()
        let slowStarted = Mutex(0)
        let numbers = Discover<Int>("numbers") { _, items in
            for i in 0..<400 { try await items.send(i) }
        }
        let work = ForEach("work", over: numbers) { _, x -> Int in
            if x >= 300 {
                slowStarted.withLock { $0 += 1 }
                try await Task.sleep(for: .seconds(60))
            }
            return x
        }
        let pipeline = try Pipeline("cancel-rows", concurrency: 2, root: f.dir.path) { numbers; work }
        let (outcome, run, _) = try await f.runCancelled(pipeline, when: { slowStarted.withLock { $0 } >= 2 })
        #expect(outcome == .cancelled)
        let attempts = try await f.store.attempts(of: run.id).filter { $0.stage == "work" }
        let tasks = try await f.store.tasks(of: run.id).filter { $0.stage == "work" }
        #expect(tasks.count == 400)
        #expect(attempts.filter { $0.outcome == .success }.count == 300, "the quick ones succeeded")
        #expect(!attempts.contains { $0.outcome == .failed || $0.outcome == .running }, "nothing failed or left running")
        let cancelled = attempts.filter { $0.outcome == .cancelled }
        #expect(cancelled.filter { $0.message == "cancelled because the run was cancelled" }.count == 2, "the two running were stopped")
        #expect(cancelled.allSatisfy { $0.message == "cancelled because the run was cancelled" || $0.message == "cancelled before it started" })
        #expect(tasks.allSatisfy { $0.status == .success || $0.status == .cancelled })
        #expect(slowStarted.withLock { $0 } == 2, "no slow task started after the cancel")
    }

    /// An in-process fan-out runs as local tasks (SQLite): cancelled mid-way, the items left are recorded
    /// as cancelled tasks; resumed, exactly those run, each once, and the join once.
    @Test func aCancelledLocalFanOutResumesOnlyTheItemsLeft() async throws {
        let f = try SwiftFixture()
        let runs = Mutex([Int: Int]()), held = Mutex(true), joins = Mutex(0)
        let numbers = Discover<Int>("numbers") { _, items in
            for i in 0..<300 { try await items.send(i) }
        }
        let work = ForEach("work", over: numbers) { _, x -> Int in
            runs.withLock { $0[x, default: 0] += 1 }
            if x >= 200, held.withLock({ $0 }) { try await Task.sleep(for: .seconds(60)) }
            return x
        }
        let sum = Stage("sum", needs: work) { context -> Int in
            joins.withLock { $0 += 1 }
            return try await context.results(of: work).values.reduce(0, +)
        }
        let pipeline = try Pipeline("local-resume", concurrency: 2, root: f.dir.path) { numbers; work; sum }
        let (outcome, run, engine) = try await f.runCancelled(pipeline, when: { runs.withLock { $0.keys.filter { $0 >= 200 }.count } >= 2 }) { run async throws in
            #expect(try await f.store.tasks(of: run.id).filter { $0.stage == "work" }.count < 300, "local: an item has no task row until it ends")
            #expect(try await f.store.taskCounts(run: run.id)["work"]?.pending ?? 0 > 0)
        }
        #expect(outcome == .cancelled)
        let before = try await f.store.tasks(of: run.id).filter { $0.stage == "work" }
        #expect(before.count == 300, "every item is a task once cancelled: the local ones left were recorded as cancelled")
        let done = Set(before.filter { $0.status == .success }.map(\.key))
        #expect(done.count >= 200 && done.count < 300)

        held.withLock { $0 = false }
        #expect(try await engine.execute(run, resume: true) == .success)
        let after = try await f.store.tasks(of: run.id).filter { $0.stage == "work" }
        #expect(after.count == 300 && after.allSatisfy { $0.status == .success })
        let attempts = try await f.store.attempts(of: run.id).filter { $0.stage == "work" }
        #expect(attempts.filter { $0.outcome == .success }.count == 300, "one success per item")
        let ranAgain = runs.withLock { r in done.filter { r[Int($0)!] != 1 } }
        #expect(ranAgain.isEmpty, "items done before the cancel did not run again: \(ranAgain.sorted().prefix(5))")
        #expect(joins.withLock { $0 } == 1)
        let total = try await f.store.results(run: run.id, stage: "sum")["main"].map { try JSONDecoder().decode(Int.self, from: $0) }
        #expect(total == (0..<300).reduce(0, +))
    }

    /// Local tasks are read as a claim would take them: slow ones (or ones not measured yet) for the
    /// free slots only, not a batch ahead (their items would wait in memory, and a cancel would find
    /// hundreds started in name only).
    @Test func slowLocalTasksAreReadForTheFreeSlotsOnly() async throws {
        let f = try SwiftFixture()
        let started = Mutex(0)
        let numbers = Discover<Int>("numbers") { _, items in
            for i in 0..<60 { try await items.send(i) }
        }
        let work = ForEach("work", over: numbers) { _, x -> Int in
            started.withLock { $0 += 1 }
            try await Task.sleep(for: .milliseconds(30))
            return x
        }
        let pipeline = try Pipeline("slow-local", concurrency: 2, root: f.dir.path) { numbers; work }
        let (outcome, run, _) = try await f.runCancelled(pipeline, when: { started.withLock { $0 } >= 6 })
        #expect(outcome == .cancelled)
        let tasks = try await f.store.tasks(of: run.id).filter { $0.stage == "work" }
        #expect(tasks.count == 60, "every item is a task once cancelled")
        let attempts = try await f.store.attempts(of: run.id).filter { $0.stage == "work" }
        let unstarted = attempts.filter { $0.message == "cancelled before it started" }.count
        #expect(unstarted <= 2, "\(unstarted) read ahead of the free slots")
        #expect(attempts.count == started.withLock { $0 } + unstarted, "an attempt for each task that ran, and none for the items never read")
    }

    @Test func aTimeoutCancelsTheClosure() async throws {
        let f = try SwiftFixture()
        let pipeline = try Pipeline("timeout", root: f.dir.path) {
            Stage("slow") { _ in try await Task.sleep(for: .seconds(60)) }.timeout(.milliseconds(100))
        }
        let (outcome, run) = try await f.run(pipeline)
        #expect(outcome == .failed)
        #expect(try await f.store.attempts(of: run.id).map(\.outcome) == [.timedOut])
    }

    @Test func definitionErrorsAreRejectedWhenBuilt() throws {
        let a = Stage("a") { _ in 1 }
        let stray = Stage("stray") { _ in 2 }
        #expect { try Pipeline("dupes") { a; Stage("a") { _ in 3 } } } throws: { error in
            "\(error)".contains("two stages are named 'a'")
        }
        #expect { try Pipeline("missing") { Stage("b", needs: stray) { _ in 1 } } } throws: { error in
            "\(error)".contains("stage 'b' needs 'stray', which is not a stage of pipeline 'missing'")
        }
        #expect {
            try Pipeline("cycle") {
                Command("x", ["true"], needs: StageNamed("y"))
                Command("y", ["true"], needs: StageNamed("x"))
            }
        } throws: { error in "\(error)".contains("cycle: x → y → x") }
        #expect { try Pipeline("regex") { Command("c", ["true"]).doneWhen("([") } } throws: { error in
            "\(error)".contains("done_when '([' is not a valid regular expression")
        }
        // The limits YAML checks hold for Swift too: `concurrency: 0` would wait forever.
        let numbers = Discover<Int>("numbers") { _ in [1, 2] }
        #expect { try Pipeline("zero") { numbers; ForEach("w", over: numbers, concurrency: 0) { _, x in x } } } throws: { error in
            "\(error)".contains("stage 'w': concurrency must be at least 1, got 0")
        }
        #expect { try Pipeline("over") { numbers; ForEach("w", over: numbers, maxFailedItems: .percent(150)) { _, x in x } } } throws: { error in
            "\(error)".contains("stage 'w': max_failed_items is 150%: a percentage must be between 0% and 100%")
        }
        #expect { try Pipeline("negative") { numbers; ForEach("w", over: numbers, maxFailedItems: .count(-1)) { _, x in x } } } throws: { error in
            "\(error)".contains("stage 'w': max_failed_items is -1: a count must be at least 0")
        }
        // A discovery nobody takes items from failed only when it emitted its first item, at run time.
        #expect { try Pipeline("orphan") { numbers } } throws: { error in
            "\(error)".contains("stage 'numbers' is a Discover, but no ForEach takes its items")
        }
    }

    /// A discovery that yields an async sequence streams: an item's task runs while the sequence goes on,
    /// and an item yielded twice is recorded once.
    @Test func aDiscoveryFromAnAsyncSequenceStreams() async throws {
        let f = try SwiftFixture()
        final class Flags: Sendable { let firstDone = Mutex(false), overlapped = Mutex(false) }
        let flags = Flags()
        let numbers = Discover<Int>("numbers", sequence: { _ in
            AsyncStream<Int> { continuation in
                Task { [flags] in
                    continuation.yield(1)
                    // The rest comes once item 1's task has ended (at most 20 s: without streaming it never would).
                    for _ in 0..<2000 where !flags.firstDone.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(10)) }
                    flags.overlapped.withLock { $0 = flags.firstDone.withLock { $0 } }
                    for x in [2, 2, 3] { continuation.yield(x) }
                    continuation.finish()
                }
            }
        })
        let tens = ForEach("tens", over: numbers) { _, x -> Int in
            if x == 1 { flags.firstDone.withLock { $0 = true } }
            return x * 10
        }
        let sum = Stage("sum", needs: tens) { context -> Int in
            var total = 0
            for try await (_, value) in context.streamedResults(of: tens) { total += value }
            return total
        }
        let pipeline = try Pipeline("stream", root: f.dir.path) { numbers; tens; sum }
        let (outcome, run) = try await f.run(pipeline)
        #expect(outcome == .success)
        #expect(flags.overlapped.withLock { $0 }, "item 1 was processed while the sequence was still going")
        let recorded = try await f.store.results(run: run.id, stage: "sum")["main"]
        #expect(recorded.map { String(decoding: $0, as: UTF8.self) } == "60", "10 + 20 + 30: the second 2 is the same item")
    }

    /// A stage reads the results of stages upstream of it only: any other may not have ended (or started).
    @Test func resultsOfAStageNotUpstreamAreRefused() async throws {
        let f = try SwiftFixture()
        let numbers = Discover<Int>("numbers") { _ in [1, 2, 3] }
        let double = ForEach("double", over: numbers) { _, x in x * 2 }
        let sum = Stage("sum", needs: double) { context -> Int in
            var total = 0
            for try await (_, value) in context.streamedResults(of: double) { total += value }
            return total
        }
        let stray = Stage("stray") { context -> Int in try await context.results(of: double).count }
        let strayStream = Stage("stray-stream") { context -> Int in
            var n = 0
            for try await _ in context.streamedResults(of: double) { n += 1 }
            return n
        }
        let pipeline = try Pipeline("upstream", root: f.dir.path) { numbers; double; sum; stray; strayStream }
        let (outcome, run) = try await f.run(pipeline)
        #expect(outcome == .partialSuccess, "some stages succeeded, two failed")
        let statuses = Dictionary(uniqueKeysWithValues: try await f.store.stages(of: run.id).map { ($0.name, $0.status) })
        #expect(statuses == ["numbers": .success, "double": .success, "sum": .success, "stray": .failed, "stray-stream": .failed])
        let messages = try await f.store.attempts(of: run.id).filter { $0.stage.hasPrefix("stray") }.compactMap(\.message)
        #expect(messages.count == 2 && messages.allSatisfy { $0.contains("reads the results of 'double', which is not upstream of it") }, "\(messages)")
    }

    @Test func theSamePipelineInYAMLAndSwiftGivesEquivalentRecords() async throws {
        let f = try SwiftFixture()
        let yaml = """
            name: same
            params: { who: world }
            stages:
              hello: { run: [sh, -c, "echo hello $0", "{{params.who}}"] }
              fails: { needs: [hello], run: [sh, -c, "exit 3"], retries: { attempts: 2, initial: 10ms, jitter: false } }
              skipped: { needs: [hello], when: { files: "nothing-here/*" }, run: ["true"] }
              blocked: { needs: [fails], run: ["true"] }
              always: { needs: [fails], proceed_if: [always], run: ["true"] }
            """
        let fromYAML = try #require(PipelineLoader.parse(yaml: yaml, file: "same.yml", root: f.dir.path).spec)
        let hello = Command("hello", ["sh", "-c", "echo hello $0", "{{params.who}}"])
        let fails = Command("fails", ["sh", "-c", "exit 3"], needs: hello).retries(2, initial: .milliseconds(10), jitter: 0)
        let fromSwift = try Pipeline("same", params: ["who": "world"], root: f.dir.path) {
            hello
            fails
            Command("skipped", ["true"], needs: hello).when(files: "nothing-here/*")
            Command("blocked", ["true"], needs: fails)
            Command("always", ["true"], needs: fails).proceed(if: .always)
        }
        func withoutLocations(_ stages: [StageSpec]) -> [StageSpec] { stages.map { var s = $0; s.location = nil; return s } }
        #expect(withoutLocations(fromYAML.stages) == withoutLocations(fromSwift.spec.stages))
        let engine = f.engine([fromSwift])
        var records: [[String]] = []
        for spec in [fromYAML, fromSwift.spec] {
            guard case .started(let run) = try await engine.start(spec) else { Issue.record("not started"); return }
            #expect(try await engine.execute(run) == .partialSuccess)
            let stages = try await f.store.stages(of: run.id).map { "\($0.name)=\($0.status.rawValue)" }
            let events = try await f.store.events(run: run.id, afterID: 0, limit: 1000).map { "\($0.stage ?? "-") \($0.event)" }
            records.append(stages + events)
        }
        #expect(records[0] == records[1])
    }

    @Test func aSwiftRunCannotBeExecutedWithoutItsCode() async throws {
        let f = try SwiftFixture()
        let pipeline = try Pipeline("needs-code", root: f.dir.path) { Stage("s") { _ in 1 } }
        guard case .started(let run) = try await f.engine([pipeline]).start(pipeline.spec) else { Issue.record("not started"); return }
        await #expect { _ = try await f.engine([]).execute(run) } throws: { error in
            "\(error)".contains("has Swift stages (s) that this executable does not define")
        }
    }
}

@Suite("Swift API: a user's executable")
struct SwiftExecutableTests {
    static let demo = Bundle.module.bundleURL.deletingLastPathComponent().appendingPathComponent("sluice-demo").path

    @Test func aKilledSwiftRunResumesInANewProcessWithItsResults() async throws {
        let dir = try TemporaryDirectory(prefix: "swift-resume")
        func tool(_ args: [String]) throws -> Process {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: Self.demo)
            p.arguments = args
            p.currentDirectoryURL = URL(fileURLWithPath: dir.path)
            p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            p.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try p.run()
            return p
        }
        let first = try tool(["run", "resumable", "--no-tty"])
        let cli = CLI(dir: dir)
        try await cli.wait { FileManager.default.fileExists(atPath: dir.file("waiting")) }
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        _ = FileManager.default.createFile(atPath: dir.file("resumed"), contents: nil)
        let resume = try tool(["resume", "latest", "--no-tty"])
        resume.waitUntilExit()
        #expect(resume.terminationStatus == 0)
        #expect(try String(contentsOfFile: dir.file("last.txt"), encoding: .utf8) == "3 42 fast\n",
                "the resumed stage read the result recorded before the crash")
        #expect(try String(contentsOfFile: dir.file("first.count"), encoding: .utf8) == "ran\n", "finished stages are not re-run")
        #expect(try String(contentsOfFile: dir.file("middle.count"), encoding: .utf8) == "ran\nran\n")

        let again = try cli.run(["resume", "latest"], stateDir: false)
        #expect(again.stdout.contains("already succeeded"))
    }
}
