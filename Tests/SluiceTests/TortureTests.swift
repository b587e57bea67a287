import Foundation
import SluiceTesting
import Testing

/// The crash torture of docs/reliability.md: a fan-out SIGKILLed at random moments — the process running
/// it, then workers — resumed each time, until it completes. Checks: no item lost, no item run again
/// after it was recorded as done, the join recorded once, a consistent record.
///
/// CI size by default; full size by hand:
///     SLUICE_TORTURE_ITEMS=10000 SLUICE_TORTURE_KILLS=10 swift test --filter TortureTests
@Suite("Crash torture")
struct TortureTests {
    static let environment = ProcessInfo.processInfo.environment
    static let items = Int(environment["SLUICE_TORTURE_ITEMS"] ?? "") ?? 150
    static let kills = Int(environment["SLUICE_TORTURE_KILLS"] ?? "") ?? 3

    func setUp() throws -> CLI {
        let cli = CLI(dir: try TemporaryDirectory(prefix: "torture"))
        try cli.dir.write("fan.yml", #"""
            name: torture
            concurrency: 4
            stages:
              find: { run: [sh, -c, 'seq 1 \#(Self.items) | sed "s/.*/{\"key\": \"k&\"}/"'] }
              work:
                for_each: find
                concurrency: 4
                run: [sh, -c, 'echo "$1" >> ran.log; if [ "$(cat kill-at 2>/dev/null)" = "$1" ]; then rm -f kill-at; kill -9 $PPID; fi', sh, "{{item.key}}"]
              join: { needs: [work], run: [sh, -c, 'echo joined >> join.log'] }
            """#)
        return cli
    }

    func lines(_ cli: CLI, _ file: String) -> [String] {
        ((try? String(contentsOfFile: cli.dir.file(file), encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// Items recorded as done now.
    func done(_ cli: CLI, _ id: String) throws -> Set<String> {
        let work = (try cli.show(id)["stages"] as? [[String: Any]])?.first { $0["name"] as? String == "work" }
        return Set(((work?["tasks"] as? [[String: Any]]) ?? []).filter { $0["status"] as? String == "success" }.compactMap { $0["key"] as? String })
    }

    /// Arms the kill: the process that runs a randomly chosen item not run yet SIGKILLs itself (the
    /// item's command kills its parent, the process running it). Tied to the run's progress, not to the
    /// test's timing, so a kill lands mid-run however loaded the machine is. Returns false when every
    /// item ran already.
    func armKill(_ cli: CLI) throws -> Bool {
        let left = Set((1...Self.items).map { "k\($0)" }).subtracting(lines(cli, "ran.log"))
        guard let victim = left.randomElement() else { return false }
        try victim.write(toFile: cli.dir.file("kill-at"), atomically: true, encoding: .utf8)
        return true
    }

    /// What was recorded as done at one moment, and how many lines `ran.log` had then.
    struct Snapshot {
        var recorded: Set<String>
        var ranLines: Int
    }

    /// No run after a snapshot (until the very end) may be of an item recorded as done in it.
    func expectNothingRedone(_ cli: CLI, _ snapshots: [Snapshot]) {
        let ran = lines(cli, "ran.log")
        for (round, snapshot) in snapshots.enumerated() {
            let again = Set(ran.dropFirst(snapshot.ranLines)).intersection(snapshot.recorded)
            #expect(again.isEmpty, "kill \(round + 1): \(again.count) item(s) recorded as done ran again: \(again.sorted().prefix(5))")
        }
        #expect(!snapshots.isEmpty, "at least one kill landed")
    }

    func expectConsistent(_ cli: CLI, _ id: String) throws {
        #expect(Set(lines(cli, "ran.log")) == Set((1...Self.items).map { "k\($0)" }), "every item ran: none lost")
        let report = try cli.show(id)
        #expect(report["status"] as? String == "success")
        let stages = (report["stages"] as? [[String: Any]]) ?? []
        #expect(stages.map { $0["status"] as? String ?? "" } == ["success", "success", "success"])
        let work = stages.first { $0["name"] as? String == "work" }
        let tasks = (work?["tasks"] as? [[String: Any]]) ?? []
        #expect(tasks.count == Self.items)
        for task in tasks {
            let outcomes = ((task["attempts"] as? [[String: Any]]) ?? []).map { $0["outcome"] as? String ?? "" }
            // Exactly one recorded success per item; every other attempt was lost to a kill.
            #expect(outcomes.filter { $0 == "success" }.count == 1 && outcomes.allSatisfy { $0 == "success" || $0 == "lost" },
                    "item \(task["key"] ?? "?"): \(outcomes)")
        }
        let join = stages.first { $0["name"] as? String == "join" }
        let attempts = ((join?["tasks"] as? [[String: Any]])?.first?["attempts"] as? [[String: Any]]) ?? []
        #expect(attempts.filter { $0["outcome"] as? String == "success" }.count == 1, "the join recorded once")
        #expect(lines(cli, "join.log").count <= attempts.count, "the join ran at most once per recorded attempt")
    }

    @Test func theRunProcessKilledAgainAndAgainAndResumed() async throws {
        let cli = try setUp()
        var snapshots: [Snapshot] = []
        var id: String?
        for _ in 1...Self.kills {
            guard try armKill(cli) else { break }
            let process = try cli.start(id.map { ["resume", $0, "--no-tty"] } ?? ["run", "fan.yml", "--no-tty"])
            try await cli.wait(seconds: 300) { !process.isRunning }
            process.waitUntilExit()
            guard process.terminationReason == .uncaughtSignal else { break } // it finished before its item came up
            try await Task.sleep(for: .milliseconds(100)) // orphaned item commands finish their line
            let run = try id ?? (try cli.show("latest")["run_id"] as? String).unwrap("the run was recorded")
            id = run
            snapshots.append(Snapshot(recorded: try done(cli, run), ranLines: lines(cli, "ran.log").count))
        }
        try? FileManager.default.removeItem(atPath: cli.dir.file("kill-at"))
        let run = try id ?? (try cli.show("latest")["run_id"] as? String).unwrap("the run was recorded")
        let last = try cli.run(["resume", run, "--no-tty"])
        #expect(last.status == 0 || last.output.contains("nothing to resume") || last.output.contains("already"), "\(last.output)")
        expectNothingRedone(cli, snapshots)
        try expectConsistent(cli, run)
    }

    @Test func workersKilledAgainAndAgainWhileTheyShareTheRun() async throws {
        let cli = try setUp()
        let detached = try cli.run(["run", "fan.yml", "--detach"])
        #expect(detached.status == 0, "\(detached.output)")
        let id = detached.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let worker = ["worker", "--lease", "2s", "--poll", "100ms", "--concurrency", "4"]
        var workers = try [cli.start(worker), cli.start(worker)]
        defer { for w in workers where w.isRunning { kill(w.processIdentifier, SIGKILL) } }
        var snapshots: [Snapshot] = []
        for _ in 1...Self.kills {
            guard try armKill(cli) else { break }
            try await cli.wait(seconds: 300) { !workers.allSatisfy(\.isRunning) || lines(cli, "ran.log").count >= Self.items }
            guard let victim = workers.firstIndex(where: { !$0.isRunning }) else { break }
            workers[victim].waitUntilExit()
            #expect(workers[victim].terminationReason == .uncaughtSignal, "the worker was killed, it did not exit")
            try await Task.sleep(for: .milliseconds(100))
            snapshots.append(Snapshot(recorded: try done(cli, id), ranLines: lines(cli, "ran.log").count))
            workers[victim] = try cli.start(worker)
        }
        try? FileManager.default.removeItem(atPath: cli.dir.file("kill-at"))
        // The survivors finish (the killed ones' tasks come back after their lease).
        for w in workers where w.isRunning { kill(w.processIdentifier, SIGTERM) }
        for w in workers { w.waitUntilExit() }
        let last = try cli.run(["worker", "--lease", "2s", "--poll", "100ms", "--concurrency", "4", "--exit-when-idle"])
        #expect(last.status == 0, "\(last.output)")
        expectNothingRedone(cli, snapshots)
        try expectConsistent(cli, id)
    }
}

extension Optional {
    func unwrap(_ what: String) throws -> Wrapped {
        guard let self else { throw TortureFailure(message: "missing: \(what)") }
        return self
    }
}

struct TortureFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
