import Foundation
import SluiceSupervisor
import SluiceTesting
import Testing

/// `sluice worker` processes, stopped the ways processes are stopped on real machines.
@Suite("CLI: sluice worker")
struct WorkerCLITests {
    /// The first attempt writes its number and blocks; later attempts finish at once.
    static let pipeline = """
        name: slow-first
        stages:
          only:
            grace: 1s
            run: ["sh", "-c", "echo $SLUICE_ATTEMPT >> started; if [ $SLUICE_ATTEMPT = 1 ]; then exec sleep 60; fi"]
        """

    func setUp() throws -> (CLI, String) {
        let cli = CLI(dir: try TemporaryDirectory(prefix: "worker-cli"))
        try Self.pipeline.write(toFile: cli.dir.file("p.yml"), atomically: true, encoding: .utf8)
        let result = try cli.run(["run", "p.yml", "--detach"])
        #expect(result.status == 0, "\(result.output)")
        let id = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(id.count > 10, "the run id is printed on stdout: \(result.output)")
        return (cli, id)
    }

    func started(_ cli: CLI) -> [String] {
        ((try? String(contentsOfFile: cli.dir.file("started"), encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    func attempts(_ cli: CLI, _ id: String) throws -> [[String: Any]] {
        let stages = (try cli.show(id)["stages"] as? [[String: Any]]) ?? []
        let tasks = stages.flatMap { ($0["tasks"] as? [[String: Any]]) ?? [] }
        return tasks.flatMap { ($0["attempts"] as? [[String: Any]]) ?? [] }
    }

    @Test func sigtermDrainsReleasesTheTaskAndExitsZero() async throws {
        let (cli, id) = try setUp()
        let worker = try cli.start(["worker", "--grace", "1s", "--poll", "100ms"])
        try await cli.wait { started(cli) == ["1"] }
        kill(worker.processIdentifier, SIGTERM)
        try await cli.wait { !worker.isRunning }
        #expect(worker.terminationStatus == 0, "a drained worker exits 0")
        // The task went back to the queue with its budget untouched (the stage allows one attempt):
        // the next worker runs it to success.
        let second = try cli.run(["worker", "--exit-when-idle", "--poll", "100ms"])
        #expect(second.status == 0, "\(second.output)")
        #expect(try cli.stageStatuses(id) == ["only": "success"])
        let outcomes = try attempts(cli, id).map { $0["outcome"] as? String ?? "" }
        #expect(outcomes == ["cancelled", "success"])
        #expect(try attempts(cli, id).first?["message"] as? String == "released: the worker shut down before it finished; the task goes back to the queue")
    }

    @Test func aKilledWorkersTaskIsTakenBackWhenItsLeaseExpires() async throws {
        let (cli, id) = try setUp()
        let worker = try cli.start(["worker", "--lease", "2s", "--poll", "100ms"])
        try await cli.wait { started(cli) == ["1"] }
        kill(worker.processIdentifier, SIGKILL)
        worker.waitUntilExit()
        let first = try attempts(cli, id).first
        let orphan = try #require(first?["pid"] as? Int, "the attempt's process was recorded")
        #expect(ProcFS.isAlive(Int32(orphan), startTicks: nil), "the killed worker's command outlives it")
        let second = try cli.run(["worker", "--exit-when-idle", "--lease", "2s", "--poll", "100ms"])
        #expect(second.status == 0, "\(second.output)")
        #expect(try cli.stageStatuses(id) == ["only": "success"])
        #expect(try attempts(cli, id).map { $0["outcome"] as? String ?? "" } == ["lost", "success"])
        #expect(!ProcFS.isAlive(Int32(orphan), startTicks: nil), "the lost attempt's process was stopped before the task ran again")
        #expect(started(cli) == ["1", "2"])
    }

    @Test func aRunAndAWorkerShareTheWorkAndTheRunProcessFinishesIt() async throws {
        let cli = CLI(dir: try TemporaryDirectory(prefix: "worker-cli"))
        try """
            name: shared
            concurrency: 2
            stages:
              discover:
                shell: "for i in $(seq 1 20); do echo \\"{\\\\\\"id\\\\\\": $i}\\"; done"
              process:
                for_each: discover
                run: ["sh", "-c", "sleep 0.1; echo $1 $PPID >> processed", "-", "{{item.id}}"]
              join:
                needs: [process]
                run: ["sh", "-c", "echo join >> joins"]
            """.write(toFile: cli.dir.file("p.yml"), atomically: true, encoding: .utf8)
        let worker = try cli.start(["worker", "--poll", "50ms", "--concurrency", "2"])
        defer { kill(worker.processIdentifier, SIGKILL) }
        // The worker is polling once it opened the store (under load, starting it can take longer than
        // the run's second of work: then only the run process would take items).
        try await cli.wait { FileManager.default.fileExists(atPath: cli.dir.file(".sluice/state.sqlite")) }
        try await Task.sleep(for: .milliseconds(200))
        let run = try cli.run(["run", "p.yml", "--no-tty"])
        #expect(run.status == 0, "\(run.output)")
        let processed = try String(contentsOfFile: cli.dir.file("processed"), encoding: .utf8).split(separator: "\n")
        #expect(processed.count == 20 && Set(processed.map { $0.split(separator: " ")[0] }).count == 20)
        #expect(Set(processed.map { $0.split(separator: " ")[1] }).count == 2, "both processes ran items")
        #expect(try String(contentsOfFile: cli.dir.file("joins"), encoding: .utf8) == "join\n")
    }
}

/// Workers against a PostgreSQL server that fails the ways servers and networks fail: nothing lost,
/// nothing recorded twice.
@Suite("CLI: workers and PostgreSQL faults")
struct PostgresFaultTests {
    /// Fast restarts of the server in the middle of a run drop every connection, in the middle of claims
    /// and completions. The workers reconnect and the run completes: nothing lost, no transition twice.
    /// (Before the store sent queries from the connection's event loop, a query written to a connection
    /// that had just closed never answered and a worker stopped with tasks marked running.)
    @Test func workersReconnectAfterServerRestartsAndTheRunCompletesWithNothingLostOrDoubled() async throws {
        // A server of its own: restarting the shared one would disturb the other tests.
        let server = try await TestPostgres.PrivateServer.start("pg-restart")
        do {
            try await fanOutSurvives(url: server.url) {
                for pause in [0.3, 0.7, 0.0] {
                    try await server.restart()
                    try await Task.sleep(for: .seconds(pause))
                }
            }
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    /// The server ends the workers' connections (as a failover, a proxy or a network drop does), again
    /// and again in the middle of the run.
    @Test func workersRideOutDroppedConnections() async throws {
        let url = try await TestPostgres.freshDatabase()
        let database = String(try #require(URLComponents(string: url)).path.dropFirst())
        try await fanOutSurvives(url: url) {
            for _ in 0..<4 {
                try await TestPostgres.execute(url, """
                    SELECT pg_terminate_backend(pid)::text FROM pg_stat_activity
                    WHERE datname = '\(database)' AND pid <> pg_backend_pid()
                    """)
                try await Task.sleep(for: .milliseconds(400))
            }
        }
    }

    /// A 40-item fan-out on two workers, disturbed by `disrupt` once a few items are done, completes with
    /// every item processed, each stage and the run ended once, and the join run once.
    func fanOutSurvives(url: String, disrupt: () async throws -> Void) async throws {
        let cli = CLI(dir: try TemporaryDirectory(prefix: "pg-faults"))
        try """
            name: faults
            stages:
              discover:
                shell: "for i in $(seq 1 40); do echo \\"{\\\\\\"id\\\\\\": $i}\\"; done"
              process:
                for_each: discover
                concurrency: 4
                run: ["sh", "-c", "sleep 0.1; echo $1 >> processed", "-", "{{item.id}}"]
              join:
                needs: [process]
                run: ["sh", "-c", "echo join >> joins"]
            """.write(toFile: cli.dir.file("p.yml"), atomically: true, encoding: .utf8)
        let id = try cli.run(["run", "p.yml", "--detach", "--state", url]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let workers = try (0..<2).map { _ in try cli.start(["worker", "--state", url, "--exit-when-idle", "--poll", "200ms", "--concurrency", "2"]) }
        defer { for w in workers where w.isRunning { kill(w.processIdentifier, SIGKILL) } }
        try await cli.wait(seconds: 60) {
            ((try? String(contentsOfFile: cli.dir.file("processed"), encoding: .utf8)) ?? "").split(separator: "\n").count >= 8
        }
        try await disrupt()
        try await cli.wait(seconds: 120) { workers.allSatisfy { !$0.isRunning } }
        #expect(workers.allSatisfy { $0.terminationStatus == 0 }, "the workers exit 0 once the run is done")
        let show = try cli.run(["show", id, "--json", "--all-tasks", "--state", url])
        let report = try #require(try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any], "\(show.output)")
        #expect(report["status"] as? String == "success")
        let stages = (report["stages"] as? [[String: Any]]) ?? []
        #expect(stages.map { $0["status"] as? String ?? "" } == ["success", "success", "success"])
        let process = stages.first { $0["name"] as? String == "process" }
        #expect((process?["metrics"] as? [String: Any])?["succeeded"] as? Int == 40, "every item succeeded once")
        let processed = try String(contentsOfFile: cli.dir.file("processed"), encoding: .utf8).split(separator: "\n")
        #expect(Set(processed).count == 40, "no item lost")
        #expect(try String(contentsOfFile: cli.dir.file("joins"), encoding: .utf8) == "join\n", "the join ran once")
        #expect(try await TestPostgres.execute(url, "SELECT count(*)::text FROM events WHERE run_id = '\(id)' AND event = 'stage.success'") == ["3"],
                "each stage ended once")
        #expect(try await TestPostgres.execute(url, "SELECT count(*)::text FROM events WHERE run_id = '\(id)' AND event = 'run.success'") == ["1"])
    }

    /// A worker paused (SIGSTOP) past its lease, as a partitioned or swapped-out machine is: another worker
    /// takes the task over and finishes it; when the paused worker resumes, nothing it reports replaces
    /// the attempt that replaced its own.
    @Test func aPausedWorkersLateResultDoesNotOverwriteTheAttemptThatReplacedIt() async throws {
        let url = try await TestPostgres.freshDatabase()
        let cli = CLI(dir: try TemporaryDirectory(prefix: "pg-sigstop"))
        try """
            name: paused
            stages:
              only:
                grace: 1s
                run: ["sh", "-c", "echo $SLUICE_ATTEMPT >> started; if [ $SLUICE_ATTEMPT = 1 ]; then echo $$ > first.pid; sleep 60; fi; echo $SLUICE_ATTEMPT >> finished"]
            """.write(toFile: cli.dir.file("p.yml"), atomically: true, encoding: .utf8)
        let id = try cli.run(["run", "p.yml", "--detach", "--state", url]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let paused = try cli.start(["worker", "--state", url, "--lease", "2s", "--poll", "100ms"])
        defer { if paused.isRunning { kill(paused.processIdentifier, SIGKILL) } }
        try await cli.wait { lines(cli, "started") == ["1"] }
        kill(paused.processIdentifier, SIGSTOP)
        // Its command keeps running (its own process group); the lease runs out.
        // (The paused worker may have been stopped inside a transaction: its row locks last until the
        // server ends its idle session, 15 s, so the other worker may wait that long.)
        let other = try cli.start(["worker", "--state", url, "--lease", "2s", "--poll", "100ms", "--exit-when-idle"])
        defer { if other.isRunning { kill(other.processIdentifier, SIGKILL) } }
        try await cli.wait(seconds: 120) { !other.isRunning }
        #expect(!other.isRunning && other.terminationStatus == 0, "the other worker finished the run and exited 0")
        kill(paused.processIdentifier, SIGCONT)
        // The resumed worker finds it no longer holds the task; whatever it then reports is refused.
        try await Task.sleep(for: .seconds(3))
        kill(paused.processIdentifier, SIGTERM)
        try await cli.wait { !paused.isRunning }
        #expect(paused.terminationStatus == 0)
        let show = try cli.run(["show", id, "--json", "--all-tasks", "--state", url])
        let report = try #require(try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any], "\(show.output)")
        #expect(report["status"] as? String == "success")
        let stages = (report["stages"] as? [[String: Any]]) ?? []
        let attempts = stages.flatMap { ($0["tasks"] as? [[String: Any]]) ?? [] }.flatMap { ($0["attempts"] as? [[String: Any]]) ?? [] }
        #expect(attempts.map { $0["outcome"] as? String ?? "" } == ["lost", "success"], "the replacing attempt's success stands")
        #expect(lines(cli, "started") == ["1", "2"])
        #expect(lines(cli, "finished") == ["2"], "the first attempt's command was stopped when its task was taken over")
        let first = try #require(Int32(lines(cli, "first.pid").first ?? ""), "the first attempt wrote its pid")
        #expect(kill(first, 0) != 0, "the first attempt's command (pid \(first)) is gone, not left running")
        #expect(try await TestPostgres.execute(url, "SELECT count(*)::text FROM events WHERE run_id = '\(id)' AND event = 'stage.success'") == ["1"])
        #expect(try await TestPostgres.execute(url, "SELECT outcome FROM attempts ORDER BY number") == ["lost", "success"])
    }

    func lines(_ cli: CLI, _ file: String) -> [String] {
        ((try? String(contentsOfFile: cli.dir.file(file), encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }
}
