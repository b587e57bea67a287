import Foundation
import Testing
import SluiceSupervisor
import SluiceTesting

/// Runs the real `sluice` executable, as a user would.
struct CLI {
    static let executable: String = {
        // The test resources sit beside the built products: .build/<triple>/debug/sluice_SluiceTests.resources
        let products = Bundle.module.bundleURL.deletingLastPathComponent()
        return products.appendingPathComponent("sluice").path
    }()

    let dir: TemporaryDirectory

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var output: String { stdout + stderr }
    }

    func start(_ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        process.arguments = arguments + ["--state-dir", dir.file(".sluice")]
        process.currentDirectoryURL = URL(fileURLWithPath: dir.path)
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        return process
    }

    @discardableResult
    func run(_ arguments: [String], stateDir: Bool = true, environment: [String: String] = [:]) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable)
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new } }
        process.arguments = arguments + (stateDir ? ["--state-dir", dir.file(".sluice")] : [])
        process.currentDirectoryURL = URL(fileURLWithPath: dir.path)
        let out = dir.file(".out-\(UUID().uuidString)"), err = dir.file(".err-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        _ = FileManager.default.createFile(atPath: err, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: out)
        process.standardError = FileHandle(forWritingAtPath: err)
        try process.run()
        process.waitUntilExit()
        return Result(status: process.terminationStatus,
                      stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
                      stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
    }

    /// Waits (up to `seconds`) until `condition` holds.
    func wait(seconds: Double = 60, _ condition: () throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("condition not met within \(seconds) s")
    }

    func runID(_ result: Result) -> String? {
        result.output.split(separator: "\n").lazy.compactMap { line -> String? in
            guard line.hasPrefix("run ") else { return nil }
            return line.split(separator: " ").dropFirst().first.map(String.init)
        }.first
    }

    func show(_ id: String) throws -> [String: Any] {
        let result = try run(["show", id, "--json", "--all-tasks"])
        return (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? [:]
    }

    func stageStatuses(_ id: String) throws -> [String: String] {
        let stages = (try show(id)["stages"] as? [[String: Any]]) ?? []
        return Dictionary(uniqueKeysWithValues: stages.map { ($0["name"] as? String ?? "", $0["status"] as? String ?? "") })
    }
}

@Suite("CLI: the sluice executable")
struct CLITests {
    let cli: CLI
    init() throws { cli = CLI(dir: try TemporaryDirectory(prefix: "cli")) }

    /// Processes that open a new state folder at the same moment (`sluice serve` starting while
    /// `sluice runs` looks, workers starting together) all open it: the second of two switching the new
    /// file to WAL was told "database is locked" at once (about one process in a hundred here).
    @Test func processesOpeningANewStateFolderTogetherAllSucceed() async throws {
        for round in 0..<6 {
            let state = cli.dir.file("state-\(round)")
            let processes = try (0..<8).map { _ in
                let process = Process()
                process.executableURL = URL(fileURLWithPath: CLI.executable)
                process.arguments = ["runs", "--state-dir", state]
                process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
                process.standardError = FileHandle(forWritingAtPath: "/dev/null")
                try process.run()
                return process
            }
            for process in processes { process.waitUntilExit() }
            #expect(processes.allSatisfy { $0.terminationStatus == 0 }, "round \(round): \(processes.map(\.terminationStatus))")
        }
    }

    /// Business counters and rejected records as people read them: per stage and for the run in
    /// `sluice show`, the run's totals when `sluice run` ends.
    @Test func countersAndRejectedRecordsAreShownPerStageAndForTheRun() throws {
        try #"""
            name: counted
            stages:
              find: { run: [sh, -c, 'for i in 1 2 3; do echo "::item:: $i"; done'] }
              work: { for_each: find, run: [sh, -c, 'echo "::count:: rows 10"; test "$1" != 2 || echo "::reject:: {\"record\": \"row $1\", \"reason\": \"negative\"}"', sh, "{{item}}"] }
              audit: { needs: [work], run: [sh, -c, 'echo "::count:: audited 3"; echo "::reject:: {\"record\": {\"id\": 9}, \"reason\": \"bad id\"}"'] }
            """#.write(toFile: cli.dir.file("counted.yml"), atomically: true, encoding: .utf8)
        let run = try cli.run(["run", "counted.yml", "--no-tty"])
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("counters: audited 3 · rows 30 · 2 rejected"), "\(run.output)")
        let id = try #require(cli.runID(run))
        let show = try cli.run(["show", id]).stdout
        #expect(show.contains("3 items: 3 done, 0 failed"), "a fan-out stage's row counts its items: \(show)")
        #expect(show.contains("\ncounters\n"), "\(show)")
        #expect(show.contains("  work   rows 30 · 1 rejected\n"), "\(show)")
        #expect(show.contains("  audit  audited 3 · 1 rejected\n"), "\(show)")
        #expect(show.contains("  run    audited 3 · rows 30 · 2 rejected\n"), "\(show)")
        #expect(show.contains("  work: row 2: negative\n"), "\(show)")
        #expect(show.contains(#"  audit: {"id":9}: bad id"#), "\(show)")
        // `::item:: 2` is keyed 2, as `2` in $SLUICE_ITEMS would be.
        #expect(try cli.run(["show", id, "--json", "--all-tasks"]).stdout.contains(#""key" : "2""#))
    }

    @Test func initValidateRunShowAndExitCodes() throws {
        let initResult = try cli.run(["init"], stateDir: false)
        #expect(initResult.status == 0)
        #expect(try cli.run(["validate", "pipeline.yml"], stateDir: false).status == 0)
        let run = try cli.run(["run", "pipeline.yml", "-p", "count=4"])
        #expect(run.status == 0, "\(run.output)")
        #expect(run.stdout.contains("success"))
        let id = try #require(cli.runID(run))
        #expect(try cli.stageStatuses(id) == ["fetch": "success", "square": "success", "report": "success"])
        #expect(try cli.run(["logs", id, "--stage", "report"]).stdout.contains("total: 30"))
        #expect(try cli.run(["logs", id]).stdout.contains("run.success"))
        #expect(try cli.run(["runs"]).stdout.contains(id))
        #expect(try cli.run(["show", String(id.prefix(17))]).stdout.contains("report  success"))
        #expect(try cli.run(["init"], stateDir: false).status == 2, "init refuses to overwrite")
        let usage = try cli.run(["run"], stateDir: false)
        #expect(usage.status == 2)
        #expect(usage.stderr.contains("Missing expected argument"))
        #expect(try cli.run(["--help"], stateDir: false).status == 0)
    }

    @Test func partialAndFailedRunsExitOneAndTwo() throws {
        try cli.dir.write("p.yml", "name: p\nstages:\n  ok: { run: [\"true\"] }\n  bad: { run: [\"false\"] }\n")
        #expect(try cli.run(["run", "p.yml"]).status == 1)
        try cli.dir.write("f.yml", "name: f\nstages:\n  bad: { run: [sh, -c, \"echo nope >&2; exit 9\"] }\n")
        let failed = try cli.run(["run", "f.yml"])
        #expect(failed.status == 2)
        #expect(failed.stdout.contains("exited with code 9"))
        #expect(failed.stdout.contains("| nope"))
    }

    @Test func badInputGetsOneClearMessageAndANonzeroExit() throws {
        let missing = try cli.run(["run", "nope.yml"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("pipeline file 'nope.yml' does not exist"))

        try cli.dir.write("syntax.yml", "name: s\nstages:\n  a:\n    run: [\"x\"\n  b: {}\n")
        let syntax = try cli.run(["validate", "syntax.yml"], stateDir: false)
        #expect(syntax.status == 2)
        #expect(syntax.stderr.contains("syntax.yml:"))
        #expect(syntax.stderr.contains("YAML syntax error"))

        try cli.dir.write("unknown.yml", "name: u\nstages:\n  a: { needs: [bb], run: [\"true\"] }\n  b: { run: [\"true\"] }\n")
        let unknown = try cli.run(["run", "unknown.yml"])
        #expect(unknown.status == 2)
        #expect(unknown.stderr.contains("unknown.yml:3:16: error: stage 'a' needs unknown stage 'bb'"))
        #expect(unknown.stderr.contains("did you mean 'b'?"))

        try cli.dir.write("nocmd.yml", "name: n\nstages:\n  a: { run: [definitely-not-a-command] }\n")
        let nocmd = try cli.run(["run", "nocmd.yml"])
        #expect(nocmd.status == 2)
        #expect(nocmd.stdout.contains("'definitely-not-a-command' was not found on PATH"))

        // A state folder that cannot be created (its parent is a file).
        try cli.dir.write("afile", "x")
        let unwritable = try cli.run(["run", "nocmd.yml", "--state-dir", cli.dir.file("afile/state")], stateDir: false)
        #expect(unwritable.status == 2)
        #expect(unwritable.stderr.contains("cannot create the state folder"))

        for result in [missing, syntax, unknown, nocmd, unwritable] {
            #expect(!result.output.contains("Fatal error"), "crashed: \(result.output)")
            #expect(result.status < 128, "killed by a signal: \(result.output)")
        }
    }

    @Test func aStoreFromANewerVersionIsRefused() throws {
        try cli.dir.write("p.yml", "name: p\nstages:\n  a: { run: [\"true\"] }\n")
        #expect(try cli.run(["run", "p.yml"]).status == 0)
        let db = cli.dir.file(".sluice/state.sqlite")
        let sqlite = Process()
        sqlite.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        sqlite.arguments = ["python3", "-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(\"insert into grdb_migrations values ('v999')\"); c.commit()", db]
        try sqlite.run()
        sqlite.waitUntilExit()
        let result = try cli.run(["runs"])
        #expect(result.status == 2)
        #expect(result.stderr.contains("written by a newer version of Sluice"))
    }

    /// A pipeline whose middle stage runs long the first time and quickly the second time.
    func writeCrashPipeline() throws {
        try cli.dir.write("crash.yml", """
            name: crash
            stages:
              first: { run: [sh, -c, "echo ran >> first.count"] }
              middle:
                needs: [first]
                run: [sh, -c, "echo ran >> middle.count; if [ -f resumed ]; then exit 0; fi; sleep 60 & echo $! > orphan.pid; wait"]
              last: { needs: [middle], run: [sh, -c, "echo ran >> last.count"] }
            """)
    }

    /// Starts the crash pipeline, SIGKILLs `sluice run` while `middle` runs, and returns the pid of the
    /// background process that `middle` left behind.
    func startAndKillCrashRun() async throws -> Int32 {
        try writeCrashPipeline()
        let process = try cli.start(["run", "crash.yml", "--no-tty"])
        try await cli.wait { FileManager.default.fileExists(atPath: cli.dir.file("orphan.pid")) }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        return try #require(Int32(try String(contentsOfFile: cli.dir.file("orphan.pid"), encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    func lines(_ file: String) -> Int {
        ((try? String(contentsOfFile: cli.dir.file(file), encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    @Test func aKilledRunIsResumedAndOnlyUnfinishedWorkRunsAgain() async throws {
        let orphan = try await startAndKillCrashRun()

        let runs = try cli.run(["runs", "--json"])
        let id = try #require(((try JSONSerialization.jsonObject(with: Data(runs.stdout.utf8)) as? [[String: String]])?.first)?["run_id"])
        #expect(try cli.show(id)["status"] as? String == "running", "the killed run is still recorded as running")
        #expect(try cli.run(["runs"]).stdout.contains("running (interrupted)"))
        #expect(try cli.run(["show", id]).stdout.contains("sluice resume \(id)"))

        _ = FileManager.default.createFile(atPath: cli.dir.file("resumed"), contents: nil)
        let resumed = try cli.run(["resume", id, "--no-tty"])
        #expect(resumed.status == 0, "\(resumed.output)")
        #expect(!ProcFS.isAlive(orphan, startTicks: nil), "the dead runner's leftover process was stopped")
        #expect(lines("first.count") == 1, "a finished stage is not run again")
        #expect(lines("middle.count") == 2)
        #expect(lines("last.count") == 1)
        let report = try cli.show(id)
        #expect(report["status"] as? String == "success")
        let middle = ((report["stages"] as? [[String: Any]])?.first { $0["name"] as? String == "middle" })
        let outcomes = ((middle?["tasks"] as? [[String: Any]])?.first?["attempts"] as? [[String: Any]])?.compactMap { $0["outcome"] as? String }
        #expect(outcomes == ["lost", "success"])
        #expect(try cli.run(["resume", id]).stdout.contains("nothing to resume"))
    }

    /// An item whose attempt was lost to a killed `sluice run` is named in its `task.lost` event.
    @Test func aLostItemIsNamedWhenTheRunIsResumed() async throws {
        try #"""
            name: lost-item
            stages:
              find: { run: [sh, -c, 'echo "{\"key\": \"alpha\"}"'] }
              work: { for_each: find, run: [sh, -c, 'test -f resumed && exit 0; touch started; sleep 30', sh, "{{item.key}}"] }
            """#.write(toFile: cli.dir.file("lost.yml"), atomically: true, encoding: .utf8)
        let process = try cli.start(["run", "lost.yml", "--no-tty"])
        try await cli.wait { FileManager.default.fileExists(atPath: cli.dir.file("started")) }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        _ = FileManager.default.createFile(atPath: cli.dir.file("resumed"), contents: nil)
        let resumed = try cli.run(["resume", "latest", "--no-tty"])
        #expect(resumed.status == 0, "\(resumed.output)")
        #expect(resumed.output.contains("work task.lost: attempt 1 of item alpha was lost"), "\(resumed.output)")
    }

    @Test func cancellingARunWhoseProcessDiedCompletesItsRecord() async throws {
        let orphan = try await startAndKillCrashRun()
        let cancel = try cli.run(["cancel", "latest"])
        #expect(cancel.stdout.contains("cancelled (its process was gone"), "\(cancel.output)")
        #expect(try cli.show("latest")["status"] as? String == "cancelled")
        try await cli.wait(seconds: 5) { !ProcFS.isAlive(orphan, startTicks: nil) }
    }

    @Test func cancelFromAnotherProcessStopsTheRun() async throws {
        try cli.dir.write("long.yml", """
            name: long
            stages:
              wait: { run: [sh, -c, "echo $$ > task.pid; sleep 60"], grace: 2s }
              after: { needs: [wait], run: ["true"] }
            """)
        let process = try cli.start(["run", "long.yml", "--no-tty"])
        try await cli.wait { FileManager.default.fileExists(atPath: cli.dir.file("task.pid")) }
        let cancel = try cli.run(["cancel", "latest"])
        #expect(cancel.status == 0, "\(cancel.output)")
        #expect(cancel.stdout.contains("cancel requested"))
        process.waitUntilExit()
        #expect(process.terminationStatus == 130)
        let pid = try #require(Int32(try String(contentsOfFile: cli.dir.file("task.pid"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(!ProcFS.isAlive(pid, startTicks: nil))
        #expect(try cli.show("latest")["status"] as? String == "cancelled")
        #expect(try cli.stageStatuses("latest") == ["wait": "cancelled", "after": "cancelled"])
    }

    @Test func logsFollowATaskUntilItEnds() async throws {
        try cli.dir.write("talk.yml", "name: talk\nstages:\n  talk: { run: [sh, -c, \"touch started; for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done\"] }\n")
        let process = try cli.start(["run", "talk.yml", "--no-tty"])
        try await cli.wait { FileManager.default.fileExists(atPath: cli.dir.file("started")) }
        let followed = try cli.run(["logs", "latest", "--stage", "talk", "--follow"])
        process.waitUntilExit()
        #expect(followed.status == 0)
        #expect(followed.stdout == (1...5).map { "line \($0)\n" }.joined())
        let events = try cli.run(["logs", "latest", "--follow"])
        #expect(events.stdout.contains("run.success"))
    }

    @Test func interruptCancelsGracefully() async throws {
        try cli.dir.write("long.yml", "name: long\nstages:\n  wait: { run: [sh, -c, \"echo $$ > task.pid; sleep 60\"], grace: 2s }\n")
        let process = try cli.start(["run", "long.yml", "--no-tty"])
        try await cli.wait { FileManager.default.fileExists(atPath: cli.dir.file("task.pid")) }
        kill(process.processIdentifier, SIGINT)
        process.waitUntilExit()
        #expect(process.terminationStatus == 130)
        #expect(try cli.show("latest")["status"] as? String == "cancelled")
    }

    @Test func theSeed003ExampleRunsNatively() throws {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        let example = root.appendingPathComponent("examples/market-data")
        // Work on a copy so the repository's sample data stays as shipped.
        let copy = cli.dir.file("market-data")
        try FileManager.default.copyItem(atPath: example.path, toPath: copy)
        try? FileManager.default.removeItem(atPath: copy + "/.sluice")
        let reset = Process()
        reset.executableURL = URL(fileURLWithPath: "/bin/sh")
        reset.arguments = [copy + "/reset.sh"]
        reset.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        try reset.run()
        reset.waitUntilExit()
        let first = try cli.run(["run", "market-data/pipeline.yml", "--no-tty"])
        #expect(first.status == 0, "\(first.output)")
        let id = try #require(cli.runID(first))
        #expect(try cli.stageStatuses(id) == ["translate": "success", "analyze": "success", "merge": "success"])
        #expect(first.stdout.contains("done_when matched"))
        #expect(FileManager.default.fileExists(atPath: copy + "/data/analyzer_runs/merged/summary.json"))
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: copy + "/data/raw")) ?? []).filter { $0.hasSuffix(".csv") }.isEmpty,
                "raw files are deleted by the lifecycle policy after translate and analyze succeeded")
        #expect(try cli.run(["logs", id]).stdout.contains("lifecycle deleted data/raw/AAPL.csv"))
        // The next run finds no raw files: translate is skipped, analysis runs again.
        let second = try cli.run(["run", "market-data/pipeline.yml", "--no-tty"])
        #expect(second.status == 0)
        let id2 = try #require(cli.runID(second))
        #expect(try cli.stageStatuses(id2) == ["translate": "skipped", "analyze": "success", "merge": "success"])
    }
}

@Suite("CLI: fan-out crash and resume")
struct FanOutCrashTests {
    /// SIGKILLs `sluice run` at random moments of a 60-item fan-out, resumes, and checks that no item
    /// recorded as done runs again, every item finishes, and the join runs once.
    @Test(arguments: [0.3, 0.6, 0.9])
    func killedFanOutResumesWithoutRedoingCompletedItems(_ delay: Double) async throws {
        let cli = CLI(dir: try TemporaryDirectory(prefix: "fan-crash"))
        try cli.dir.write("fan.yml", #"""
            name: fan-crash
            concurrency: 4
            stages:
              find: { run: [sh, -c, 'for i in $(seq 1 60); do echo "{\"key\": \"k$i\"}"; done'] }
              work:
                for_each: find
                run: [sh, -c, 'echo "$1" >> ran.log; sleep 0.05', sh, "{{item.key}}"]
              join: { needs: [work], run: [sh, -c, 'echo joined >> join.log'] }
            """#)
        let process = try cli.start(["run", "fan.yml", "--no-tty"])
        try await Task.sleep(for: .seconds(delay + Double.random(in: 0..<0.3)))
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        try await Task.sleep(for: .milliseconds(100)) // let the orphaned item commands finish their line
        let ranBefore = (try? String(contentsOfFile: cli.dir.file("ran.log"), encoding: .utf8))?.split(separator: "\n").count ?? 0
        let report = try cli.show("latest")
        let work = (report["stages"] as? [[String: Any]])?.first { $0["name"] as? String == "work" }
        let done = Set(((work?["tasks"] as? [[String: Any]]) ?? []).filter { $0["status"] as? String == "success" }.compactMap { $0["key"] as? String })

        let resumed = try cli.run(["resume", "latest", "--no-tty"])
        #expect(resumed.status == 0, "\(resumed.output)")
        let ran = try String(contentsOfFile: cli.dir.file("ran.log"), encoding: .utf8).split(separator: "\n").map(String.init)
        let after = ran.dropFirst(ranBefore)
        #expect(Set(after).isDisjoint(with: done), "items recorded as done before the crash ran again")
        #expect(Set(ran) == Set((1...60).map { "k\($0)" }), "every item ran")
        // The join succeeded exactly once in the record. Its command ran once per attempt: a kill while the
        // join itself ran (before its result was recorded) loses that attempt, and it runs again.
        let final = try cli.show("latest")
        let join = (final["stages"] as? [[String: Any]])?.first { $0["name"] as? String == "join" }
        let attempts = ((join?["tasks"] as? [[String: Any]])?.first?["attempts"] as? [[String: Any]]) ?? []
        #expect(attempts.filter { $0["outcome"] as? String == "success" }.count == 1)
        #expect(attempts.allSatisfy { ["success", "lost"].contains($0["outcome"] as? String ?? "") })
        let joins = try String(contentsOfFile: cli.dir.file("join.log"), encoding: .utf8).split(separator: "\n").count
        // (A kill between the claim and the start records a lost attempt that never ran its command.)
        #expect(joins >= 1 && joins <= attempts.count, "the join ran at most once per recorded attempt")
        #expect(try cli.stageStatuses("latest") == ["find": "success", "work": "success", "join": "success"])
    }
}

@Suite("Benchmarks: the quick mode stays runnable")
struct BenchmarkSmokeTests {
    /// Runs every workload at small N. It checks the answers (the join's sum, every task recorded, every
    /// log captured), never the speed: speed is measured with `swift run -c release sluice-bench`.
    @Test func quickModeRunsEveryWorkloadCorrectly() throws {
        let bench = CLI.executable.replacingOccurrences(of: "/sluice", with: "/sluice-bench", options: .backwards)
        let dir = try TemporaryDirectory(prefix: "bench")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: bench)
        process.arguments = ["--quick", "--json"]
        let out = dir.file("bench.json")
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: out)
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out))) as? [String: Any])
        let rows = try #require(json["rows"] as? [[String: Any]])
        // W3 needs PostgreSQL: it runs when the tests have a server (always in CI).
        let postgres = ProcessInfo.processInfo.environment["SLUICE_TEST_POSTGRES"].map { !$0.isEmpty } ?? false
        #expect(Set(rows.compactMap { $0["workload"] as? String }) == (postgres ? ["W1", "W2", "W3", "W4", "W5", "W6", "R1"] : ["W1", "W2", "W4", "W5", "W6", "R1"]))
        let r1 = try #require(rows.first { $0["workload"] as? String == "R1" })
        #expect((r1["check"] as? String)?.hasPrefix("2/2 killed runs completed after resume") == true, "\(r1)")
        if postgres {
            let w3 = try #require(rows.first { $0["workload"] as? String == "W3" })
            #expect((w3["check"] as? String)?.hasPrefix("run success") == true, "\(w3)")
        }
        let w1 = try #require(rows.first { $0["workload"] as? String == "W1" })
        #expect((w1["check"] as? String)?.contains("sum 249500 = n(n-1), 500 tasks recorded") == true)
        // W6 gives, beside each N's total, its cost per task beyond a run with one item (measured in turns).
        let w6 = rows.filter { $0["workload"] as? String == "W6" }
        #expect(w6.count == 2 && w6.allSatisfy { $0["per_task_beyond_fixed_microseconds"] is Double }, "\(w6)")
    }
}
