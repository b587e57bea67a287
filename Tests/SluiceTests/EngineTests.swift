import Foundation
import Testing
import SluiceCore
import SluiceDefinition
import SluiceEngine
import SluiceStore
import SluiceStoreSQLite
import SluiceSupervisor
import SluiceTesting

/// A pipeline folder with its own state folder, and an engine on a real SQLite file.
struct EngineFixture {
    let dir: TemporaryDirectory
    let engine: Engine
    let time: any TimeSource

    init(time: any TimeSource = SystemTimeSource(), configure: (inout Engine.Configuration) -> Void = { _ in }) throws {
        dir = try TemporaryDirectory(prefix: "engine")
        let layout = StateLayout(directory: dir.file(".sluice"))
        let store = try SQLiteStateStore.open(path: layout.databasePath)
        self.time = time
        var engine = Engine(store: store, layout: layout, time: time)
        configure(&engine.configuration)
        self.engine = engine
    }

    func spec(_ yaml: String) throws -> PipelineSpec {
        let loaded = PipelineLoader.parse(yaml: yaml, file: dir.file("pipeline.yml"), root: dir.path)
        guard let spec = loaded.spec else {
            throw EngineError(.invalidInput, loaded.diagnostics.map(\.description).joined(separator: "\n"))
        }
        return spec
    }

    /// Starts and executes a run, returning its outcome and record.
    func run(_ yaml: String, params: [String: String] = [:]) async throws -> (RunOutcome, RunRecord) {
        guard case .started(let run) = try await engine.start(try spec(yaml), params: params) else {
            throw EngineError(.overlap, "not started")
        }
        let outcome = try await engine.execute(run)
        return (outcome, try #require(try await engine.store.run(run.id)))
    }

    func events(_ run: RunRecord) async throws -> [EventRecord] {
        try await engine.store.events(run: run.id, afterID: 0, limit: 100_000)
    }

    func stageStatuses(_ run: RunRecord) async throws -> [String: StageStatus] {
        Dictionary(uniqueKeysWithValues: try await engine.store.stages(of: run.id).map { ($0.name, $0.status) })
    }
}

@Suite("Engine: runs on a real store with real commands")
struct EngineTests {
    @Test func stagesRunInDependencyOrderAndConditionsDecide() async throws {
        let f = try EngineFixture()
        let (outcome, run) = try await f.run("""
            name: order
            stages:
              c: { needs: [b], run: [sh, -c, "echo c >> order.txt"] }
              b: { needs: [a], run: [sh, -c, "echo b >> order.txt"] }
              a: { run: [sh, -c, "echo a >> order.txt"] }
              needs-files: { needs: [a], when: { files: "missing/*.csv" }, run: ["false"] }
              after-skip: { needs: [needs-files], run: ["false"] }
              tolerant: { needs: [needs-files], proceed_if: [success, skipped], run: ["true"] }
              if-a: { needs: [a], when: { upstream: { a: success } }, run: ["true"] }
            """)
        #expect(outcome == .success)
        #expect(try String(contentsOfFile: f.dir.file("order.txt"), encoding: .utf8) == "a\nb\nc\n")
        let statuses = try await f.stageStatuses(run)
        #expect(statuses == ["a": .success, "b": .success, "c": .success, "needs-files": .skipped,
                             "after-skip": .skipped, "tolerant": .success, "if-a": .success])
        let events = try await f.events(run)
        let starts = events.filter { $0.event == "stage.start" }.compactMap(\.stage)
        #expect(starts.firstIndex(of: "a")! < starts.firstIndex(of: "b")!)
        #expect(starts.firstIndex(of: "b")! < starts.firstIndex(of: "c")!)
        #expect(events.first { $0.stage == "needs-files" }?.message.contains("no file matches 'missing/*.csv'") == true)
    }

    @Test func aFailureBlocksDependantsAndMakesThePipelinePartial() async throws {
        let f = try EngineFixture()
        let (outcome, run) = try await f.run("""
            name: partial
            stages:
              ok: { run: ["true"] }
              bad: { run: [sh, -c, "echo broken input >&2; exit 4"] }
              after-bad: { needs: [bad], run: ["true"] }
              always: { needs: [bad], proceed_if: [always], run: ["true"] }
            """)
        #expect(outcome == .partialSuccess)
        #expect(outcome.exitCode == 1)
        #expect(run.status == .partialSuccess)
        #expect(try await f.stageStatuses(run) == ["ok": .success, "bad": .failed, "after-bad": .upstreamFailed, "always": .success])
        let attempts = try await f.engine.store.attempts(of: run.id)
        let bad = try #require(attempts.first { $0.stage == "bad" })
        #expect(bad.exitCode == 4)
        #expect(bad.stderrTail == "broken input")
    }

    @Test func everythingFailingIsAFailure() async throws {
        let f = try EngineFixture()
        let (outcome, _) = try await f.run("name: f\nstages:\n  only: { run: [\"false\"] }\n")
        #expect(outcome == .failed)
        #expect(outcome.exitCode == 2)
    }

    @Test func retriesFollowTheBackoffOnTheInjectedClock() async throws {
        let clock = TestTimeSource()
        let f = try EngineFixture(time: clock)
        let start = clock.now()
        let (outcome, run) = try await f.run("""
            name: retry
            stages:
              flaky:
                run: [sh, -c, "echo x >> tries; test $(wc -l < tries) -ge 3"]
                retries: { attempts: 4, backoff: exponential, initial: 10s, max: 1m, jitter: false }
            """)
        #expect(outcome == .success)
        let attempts = try await f.engine.store.attempts(of: run.id)
        #expect(attempts.map(\.outcome) == [.failed, .failed, .success])
        let delays = try await f.events(run).filter { $0.event == "task.retry" }.compactMap { $0.attrs["delay_ms"] }
        #expect(delays == ["10000", "20000"])
        // The engine waited on the injected clock, not in real time: 10 s + 20 s of virtual time passed.
        #expect(clock.now().timeIntervalSince(start) >= 30)
    }

    @Test func onlyListedExitCodesAreRetried() async throws {
        let f = try EngineFixture(time: TestTimeSource())
        let (outcome, run) = try await f.run("""
            name: codes
            stages:
              s:
                run: [sh, -c, "exit 2"]
                retries: { attempts: 5, initial: 1s, exit_codes: [75] }
            """)
        #expect(outcome == .failed)
        #expect(try await f.engine.store.attempts(of: run.id).count == 1)
        #expect(try await f.events(run).contains { $0.event == "task.gave_up" && $0.message.contains("exit code 2 is not in retries.exit_codes") })
    }

    @Test func timeoutAndHangAreRecordedAndRetried() async throws {
        let f = try EngineFixture(time: TestTimeSource())
        let (outcome, run) = try await f.run("""
            name: limits
            stages:
              slow: { run: [sleep, "20"], timeout: 300ms, grace: 1s, retries: { attempts: 2, initial: 1s } }
              silent: { run: [sh, -c, "echo hi; sleep 20"], hang_after: 400ms, grace: 1s }
            """)
        #expect(outcome == .failed)
        let attempts = try await f.engine.store.attempts(of: run.id)
        #expect(attempts.filter { $0.stage == "slow" }.map(\.outcome) == [.timedOut, .timedOut])
        #expect(attempts.filter { $0.stage == "silent" }.map(\.outcome) == [.hung])
        // `sleep` ends on SIGTERM: no SIGKILL was needed, and the message does not claim one.
        #expect(attempts.filter { $0.stage == "slow" }.allSatisfy { $0.message == "timed out after 300ms; stopped (SIGTERM)" },
                "\(attempts.map { $0.message ?? "" })")
        let names = Set(try await f.events(run).map(\.event))
        #expect(names.isSuperset(of: ["task.timeout", "task.hang", "task.retry"]))
    }

    /// A command that ignores SIGTERM is killed after its grace period, and its timeout says so.
    @Test func aTimeoutThatNeededSIGKILLSaysSo() async throws {
        let f = try EngineFixture()
        let (outcome, run) = try await f.run("""
            name: stubborn
            stages:
              stubborn: { run: [sh, -c, "trap '' TERM; sleep 20 & wait; sleep 20"], timeout: 200ms, grace: 300ms }
            """)
        #expect(outcome == .failed)
        let attempt = try #require(try await f.engine.store.attempts(of: run.id).first)
        #expect(attempt.outcome == .timedOut)
        #expect(attempt.message == "timed out after 200ms; stopped (SIGTERM, then SIGKILL after 300ms)", "\(attempt.message ?? "")")
    }

    @Test func concurrencyIsBounded() async throws {
        let f = try EngineFixture()
        let (outcome, run) = try await f.run("""
            name: bounded
            concurrency: 2
            stages:
              a: { run: [sleep, "0.3"] }
              b: { run: [sleep, "0.3"] }
              c: { run: [sleep, "0.3"] }
              d: { run: [sleep, "0.3"] }
            """)
        #expect(outcome == .success)
        let attempts = try await f.engine.store.attempts(of: run.id)
        var maxOverlap = 0
        for a in attempts {
            let overlap = attempts.filter { $0.startedAt <= a.startedAt && ($0.finishedAt ?? .distantFuture) > a.startedAt }.count
            maxOverlap = max(maxOverlap, overlap)
        }
        #expect(maxOverlap == 2)
    }

    @Test func paramsReachArgvWholeAndEnvironment() async throws {
        let f = try EngineFixture()
        let hostile = "x; touch pwned $(id)"
        let (outcome, run) = try await f.run("""
            name: params
            params: { target: default, other: "2" }
            env: { FROM_PIPELINE: "p-{{params.other}}" }
            stages:
              show:
                run: [sh, -c, 'printf "%s|%s|%s|%s" "$1" "$SLUICE_PARAM_TARGET" "$FROM_PIPELINE" "$SLUICE_STAGE" > out.txt', sh, "--t={{params.target}}"]
            """, params: ["target": hostile])
        #expect(outcome == .success)
        #expect(try String(contentsOfFile: f.dir.file("out.txt"), encoding: .utf8) == "--t=\(hostile)|\(hostile)|p-2|show")
        #expect(!FileManager.default.fileExists(atPath: f.dir.file("pwned")))
        #expect(run.params == ["target": hostile, "other": "2"])
    }

    @Test func unknownParamIsRefusedWithAHint() async throws {
        let f = try EngineFixture()
        await #expect { _ = try await f.run("name: p\nparams: { input: a }\nstages:\n  s: { run: [\"true\"] }\n", params: ["inptu": "x"]) } throws: { error in
            "\(error)".contains("has no param 'inptu'") && "\(error)".contains("did you mean 'input'?")
        }
    }

    /// Derived files are replaced whole (written beside, renamed over); nothing is left beside them, and
    /// a folder that is not there is reported with the path and what to do.
    @Test func aDerivedFileIsReplacedWholeAndAFailureSaysWhere() throws {
        let dir = try TemporaryDirectory(prefix: "replace")
        defer { dir.remove() }
        let path = dir.file("report.json")
        try RunFiles.replace(path, with: Data("old".utf8))
        try RunFiles.replace(path, with: Data("new".utf8))
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "new")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["report.json"])
        #expect { try RunFiles.replace(dir.file("gone/report.json"), with: Data()) } throws: { error in
            "\(error)".contains(dir.file("gone/report.json")) && "\(error)".contains("No such file or directory")
                && (error as? EngineError)?.hint?.contains("writable") == true
        }
    }

    @Test func theRecordsAreWrittenAndAgreeWithTheStore() async throws {
        let f = try EngineFixture()
        let (_, run) = try await f.run("""
            name: records
            stages:
              hello: { run: [sh, -c, "echo out; echo err >&2"] }
              fail: { needs: [hello], run: [sh, -c, "echo why >&2; exit 3"] }
            """)
        let files = RunFiles(directory: run.runDir)
        #expect(try String(contentsOfFile: files.stdout(stage: "hello", task: "main", attempt: 1), encoding: .utf8) == "out\n")
        #expect(try String(contentsOfFile: files.stderr(stage: "hello", task: "main", attempt: 1), encoding: .utf8) == "err\n")
        let lines = try String(contentsOfFile: files.events, encoding: .utf8).split(separator: "\n")
        let stored = try await f.events(run)
        #expect(lines.count == stored.count)
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            for key in ["run_id", "pipeline", "stage", "task", "event", "ts", "msg", "attrs"] {
                #expect(object.keys.contains(key), "event line lacks \(key): \(line)")
            }
            let ts = try #require(object["ts"] as? String)
            #expect(ts.range(of: #"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$"#, options: .regularExpression) != nil, "ts \(ts)")
        }
        let eventNames = stored.map(\.event)
        for name in ["run.start", "stage.start", "task.start", "task.success", "task.failure", "stage.failed", "run.partial_success"] {
            #expect(eventNames.contains(name), "missing \(name)")
        }
        // Each stage's events in the order they happened (a start is recorded with the next commit).
        for stage in ["hello", "fail"] {
            let own = stored.filter { $0.stage == stage }.map(\.event)
            #expect(own == ["stage.start", "task.start", stage == "hello" ? "task.success" : "task.failure",
                            stage == "hello" ? "stage.success" : "stage.failed"], "\(stage): \(own)")
        }
        let report = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: files.report))) as? [String: Any])
        #expect(report["outcome"] as? String == "partial_success")
        #expect(report["exit_code"] as? Int == 1)
        let stages = try #require(report["stages"] as? [[String: Any]])
        let failed = try #require(stages.first { $0["name"] as? String == "fail" })
        let attempt = try #require(((failed["tasks"] as? [[String: Any]])?.first?["attempts"] as? [[String: Any]])?.first)
        #expect(attempt["exit_code"] as? Int == 3)
        #expect(attempt["stderr_tail"] as? [String] == ["why"])
        let log = try String(contentsOfFile: files.log, encoding: .utf8)
        #expect(log.contains("[fail] attempt 1 task.failure: attempt 1 exited with code 3"))
    }

    @Test func cancellingStopsRunningProcessesAndRecordsTheRun() async throws {
        let f = try EngineFixture()
        let spec = try f.spec("""
            name: cancel
            stages:
              long: { run: [sh, -c, "echo $$ > pid; sleep 30"], grace: 2s }
              later: { needs: [long], run: ["true"] }
            """)
        guard case .started(let run) = try await f.engine.start(spec) else { Issue.record("not started"); return }
        async let outcome = f.engine.execute(run)
        // Wait for the process to be running, then cancel as `sluice cancel` would.
        for _ in 0..<400 where !FileManager.default.fileExists(atPath: f.dir.file("pid")) {
            try await Task.sleep(for: .milliseconds(50))
        }
        _ = try await f.engine.cancel(run)
        #expect(try await outcome == .cancelled)
        let pid = try #require(Int32(try String(contentsOfFile: f.dir.file("pid"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(!ProcFS.isAlive(pid, startTicks: nil))
        #expect(try await f.stageStatuses(run) == ["long": .cancelled, "later": .cancelled])
        #expect(try await f.engine.store.run(run.id)?.status == .cancelled)
        #expect(try await f.engine.store.attempts(of: run.id).map(\.outcome) == [.cancelled])
    }

    @Test func overlapSkipAndQueue() async throws {
        let f = try EngineFixture()
        let yaml = "name: ov\noverlap: skip\nstages:\n  s: { run: [sleep, \"0.5\"] }\n"
        guard case .started(let first) = try await f.engine.start(try f.spec(yaml)) else { Issue.record("not started"); return }
        guard case .skipped(let active) = try await f.engine.start(try f.spec(yaml)) else { Issue.record("must skip"); return }
        #expect(active.map(\.id) == [first.id])
        // queue: waits until the first run ended, then starts.
        async let firstOutcome = f.engine.execute(first)
        let queued = try await f.engine.start(try f.spec(yaml.replacingOccurrences(of: "skip", with: "queue")))
        guard case .started(let second) = queued else { Issue.record("queue must start eventually"); return }
        #expect(try await firstOutcome == .success)
        #expect(try await f.engine.store.run(first.id)?.status == .success)
        #expect(try await f.engine.execute(second) == .success)
    }

    @Test func aCommandThatDoesNotExistFailsClearlyWithoutRetries() async throws {
        let f = try EngineFixture(time: TestTimeSource())
        let (outcome, run) = try await f.run("name: nf\nstages:\n  s: { run: [no-such-tool-here], retries: 3 }\n")
        #expect(outcome == .failed)
        let attempts = try await f.engine.store.attempts(of: run.id)
        #expect(attempts.map(\.outcome) == [.spawnFailed])
        #expect(attempts.first?.message?.contains("'no-such-tool-here' was not found on PATH") == true)
    }
}
