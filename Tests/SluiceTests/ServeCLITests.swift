import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SluiceTesting
import Testing

/// `sluice serve` as a user runs it: real processes, real files, real time (short intervals).
@Suite("CLI: sluice serve")
struct ServeCLITests {
    /// Starts `sluice serve` with its stderr (the server's log) in `log`.
    func serve(_ cli: CLI, _ arguments: [String], log: String, command: String = "serve", extra: [String] = []) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CLI.executable)
        process.arguments = [command] + arguments + extra + ["--state-dir", cli.dir.file(".sluice")]
        process.currentDirectoryURL = URL(fileURLWithPath: cli.dir.path)
        _ = FileManager.default.createFile(atPath: cli.dir.file(log), contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        process.standardError = FileHandle(forWritingAtPath: cli.dir.file(log))
        try process.run()
        return process
    }

    func stop(_ process: Process) async throws {
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(20)
        while process.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!process.isRunning && process.terminationStatus == 0, "serve exits 0 after SIGTERM")
    }

    func text(_ cli: CLI, _ file: String) -> String { (try? String(contentsOfFile: cli.dir.file(file), encoding: .utf8)) ?? "" }

    /// The recorded runs, from `sluice runs --json` (a table row's columns shift for an interrupted run).
    func runs(_ cli: CLI) throws -> [(trigger: String, status: String)] {
        let data = Data(try cli.run(["runs", "--limit", "200", "--json"]).stdout.utf8)
        let rows = try JSONSerialization.jsonObject(with: data) as? [[String: String]] ?? []
        return rows.map { ($0["trigger"] ?? "", $0["status"] ?? "") }
    }

    @Test func twoReplicasElectOneToFireSchedulesAndTheOtherTakesOverWhenItDies() async throws {
        let cli = CLI(dir: try TemporaryDirectory(prefix: "serve"))
        try """
            name: tick
            overlap: allow
            schedule:
              every: 1s
            stages:
              hello:
                run: ["sh", "-c", "echo tick >> ticks.txt"]
            """.write(toFile: cli.dir.file("tick.yml"), atomically: true, encoding: .utf8)
        let a = try serve(cli, ["tick.yml", "--leader-lease", "2s"], log: "a.log")
        let b = try serve(cli, ["tick.yml", "--leader-lease", "2s"], log: "b.log")
        defer { for p in [a, b] where p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let leads = "this replica fires the schedules now"
        try await cli.wait { text(cli, "ticks.txt").split(separator: "\n").count >= 3 }
        #expect(text(cli, "a.log").contains(leads) != text(cli, "b.log").contains(leads), "exactly one replica fires the schedules")
        // The leader dies without a word; the other replica takes the schedules over within the lease.
        let (leader, follower, followerLog) = text(cli, "a.log").contains(leads) ? (a, b, "b.log") : (b, a, "a.log")
        kill(leader.processIdentifier, SIGKILL)
        leader.waitUntilExit()
        let before = text(cli, "ticks.txt").split(separator: "\n").count
        try await cli.wait(seconds: 30) {
            text(cli, followerLog).contains(leads) && text(cli, "ticks.txt").split(separator: "\n").count >= before + 3
        }
        try await stop(follower)
        let triggers = try runs(cli).map(\.trigger)
        #expect(triggers.count >= 6)
        #expect(Set(triggers).count == triggers.count, "no scheduled time started twice: \(triggers)")
        #expect(triggers.allSatisfy { $0.hasPrefix("schedule ") }, "\(triggers)")
        #expect(text(cli, "ticks.txt").split(separator: "\n").count <= triggers.count)
    }

    @Test func missedFiringsAreMadeUpByPolicyAfterADowntime() async throws {
        let cli = CLI(dir: try TemporaryDirectory(prefix: "serve"))
        try """
            name: catchup
            overlap: allow
            schedule:
              every: 1s
              missed: all
              max_missed: 2
            stages:
              hello:
                run: ["true"]
            """.write(toFile: cli.dir.file("p.yml"), atomically: true, encoding: .utf8)
        let first = try serve(cli, ["p.yml"], log: "first.log")
        try await cli.wait { (try? runs(cli).count) ?? 0 >= 1 }
        try await stop(first)
        try await Task.sleep(for: .seconds(4))
        let second = try serve(cli, ["p.yml"], log: "second.log")
        try await cli.wait { (try? runs(cli).filter { $0.trigger.hasSuffix("(catch-up)") }.count) ?? 0 >= 2 }
        try await Task.sleep(for: .milliseconds(500))
        try await stop(second)
        #expect(try runs(cli).filter { $0.trigger.hasSuffix("(catch-up)") }.count == 2, "at most max_missed catch-up runs")
    }

    @Test func aFileStartsOneRunOnceItSettledAndNeverAgain() async throws {
        let cli = CLI(dir: try TemporaryDirectory(prefix: "serve"))
        try FileManager.default.createDirectory(atPath: cli.dir.file("inbox"), withIntermediateDirectories: true)
        try """
            name: inbox
            overlap: allow
            on_files:
              glob: "inbox/*.csv"
              settle: 2s
            stages:
              load:
                run: ["sh", "-c", "echo \\"$0\\" >> loaded.txt", "{{params.trigger_file}}"]
            """.write(toFile: cli.dir.file("p.yml"), atomically: true, encoding: .utf8)
        let server = try serve(cli, ["p.yml"], log: "serve.log")
        try await cli.wait { text(cli, "serve.log").contains("serving 'inbox'") }
        try "a,b\n".write(toFile: cli.dir.file("inbox/one.csv"), atomically: true, encoding: .utf8)
        try "ignored".write(toFile: cli.dir.file("inbox/notes.txt"), atomically: true, encoding: .utf8)
        let written = try #require(try FileManager.default.attributesOfItem(atPath: cli.dir.file("inbox/one.csv"))[.modificationDate] as? Date)
        try await cli.wait { text(cli, "loaded.txt") == "inbox/one.csv\n" }
        // Judged from the record, not from this test's timing: the run was created after the settle time.
        let id = try #require(try cli.run(["runs"]).stdout.split(separator: "\n").dropFirst().first?.split(separator: " ").first.map(String.init))
        let created = try #require(try cli.show(id)["created_at"] as? String).flatMap { try? Date($0, strategy: .iso8601) }
        #expect(try #require(created).timeIntervalSince(written) >= 2, "nothing starts before the file settled")
        try await stop(server)
        // A restart sees the same file: its run is recorded, so nothing starts again.
        let again = try serve(cli, ["p.yml"], log: "again.log")
        try "c,d\n".write(toFile: cli.dir.file("inbox/two.csv"), atomically: true, encoding: .utf8)
        try await cli.wait { text(cli, "loaded.txt").contains("inbox/two.csv") }
        try await Task.sleep(for: .seconds(1))
        try await stop(again)
        #expect(text(cli, "loaded.txt") == "inbox/one.csv\ninbox/two.csv\n")
        #expect(try runs(cli).count == 2)
    }

    @Test func aBrokenEditKeepsThePreviousVersionAndShutdownCancelsWhatOutlivesTheGrace() async throws {
        let cli = CLI(dir: try TemporaryDirectory(prefix: "serve"))
        let valid = """
            name: slow
            schedule:
              every: 1s
            stages:
              wait:
                grace: 1s
                run: ["sleep", "60"]
            """
        try valid.write(toFile: cli.dir.file("p.yml"), atomically: true, encoding: .utf8)
        let server = try serve(cli, ["p.yml", "--grace", "1s"], log: "serve.log")
        try await cli.wait { text(cli, "serve.log").contains("of 'slow' started") }
        try (valid + "\n    retries: lots\n").write(toFile: cli.dir.file("p.yml"), atomically: true, encoding: .utf8)
        try await cli.wait { text(cli, "serve.log").contains("does not validate") }
        #expect(text(cli, "serve.log").contains("p.yml:8:"), "the error names file:line: \(text(cli, "serve.log"))")
        try await stop(server)
        let log = text(cli, "serve.log")
        #expect(log.contains("grace period over: cancelling run"))
        #expect(try runs(cli).map(\.status) == ["cancelled"], "one run (overlap skip), cancelled and recorded")
    }
}

@Suite("CLI: HTTP trigger")
struct HTTPTriggerTests {
    @Test func onlyAValidTokenStartsARunAndTheAnswerIsItsID() async throws {
        let cli = CLI(dir: try TemporaryDirectory(prefix: "http"))
        try """
            name: hook
            overlap: allow
            params:
              who: nobody
            stages:
              greet:
                run: ["sh", "-c", "echo hello $0 >> greetings.txt", "{{params.who}}"]
            """.write(toFile: cli.dir.file("hook.yml"), atomically: true, encoding: .utf8)
        let token = try cli.run(["token", "create", "tests"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.hasPrefix("slc_"))
        let port = 20_000 + Int.random(in: 0..<20_000)
        let server = try ServeCLITests().serve(cli, ["hook.yml", "--http", "127.0.0.1:\(port)"], log: "serve.log")
        defer { kill(server.processIdentifier, SIGKILL) }
        let url = URL(string: "http://127.0.0.1:\(port)/api/pipelines/hook/runs")!
        func post(_ body: String, token: String?, to target: URL = url) async throws -> (Int, [String: Any]) {
            var request = URLRequest(url: target)
            request.httpMethod = "POST"
            request.httpBody = Data(body.utf8)
            if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
            let (data, response) = try await URLSession.shared.data(for: request)
            return ((response as? HTTPURLResponse)?.statusCode ?? 0,
                    (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:])
        }
        try await cli.wait { (try? Data(contentsOf: URL(string: "http://127.0.0.1:\(port)/api/health")!)) != nil }
        #expect(try await post(#"{"params": {"who": "mallory"}}"#, token: nil).0 == 401)
        #expect(try await post(#"{"params": {"who": "mallory"}}"#, token: "slc_wrong").0 == 401)
        #expect(try await post(#"{"params": {"whom": "x"}}"#, token: token).0 == 400)
        #expect(try await post("{not json", token: token).0 == 400)
        #expect(try await post("{}", token: token, to: URL(string: "http://127.0.0.1:\(port)/api/pipelines/nope/runs")!).0 == 404)
        let (status, created) = try await post(#"{"params": {"who": "alice"}, "idempotency_key": "k1"}"#, token: token)
        #expect(status == 201)
        let id = try #require(created["run_id"] as? String)
        let (again, replay) = try await post(#"{"params": {"who": "alice"}, "idempotency_key": "k1"}"#, token: token)
        #expect(again == 200 && replay["run_id"] as? String == id, "the same key answers the same run")
        try await cli.wait { (try? String(contentsOfFile: cli.dir.file("greetings.txt"), encoding: .utf8)) == "hello alice\n" }
        try await cli.wait { (try? cli.stageStatuses(id)) == ["greet": "success"] }
        #expect(try cli.run(["runs"]).stdout.split(separator: "\n").count == 2, "one run: the refused requests started nothing")
        #expect(try cli.run(["token", "revoke", "tests"]).status == 0)
        #expect(try await post("{}", token: token).0 == 401, "a revoked token is refused")
    }
}
