import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// R1: W1 with tasks that sleep 1 ms (`sluice-demo run fan-out -p sleep_ms=1`), its process SIGKILLed at
/// a random moment, then `sluice-demo resume`; each repetition must end `success` with every item
/// recorded exactly once as successful and the join recorded once. Reports the time `resume` took.
extension Bench {
    struct CrashCheck {
        var done: Int
        var failed: Int
        var joinSuccesses: Int
        var status: String
    }

    static func r1(n: Int, repetitions: Int, _ o: Options) throws -> Row {
        let demo = try sibling("sluice-demo")
        // The run takes about n × 1 ms / 2 slots; kills land between 5 % and 90 % of it (a kill before the
        // process recorded its run, or after it ended, is tried again).
        let length = Double(n) * 0.001 / 2
        // Not before 0.3 s: a debug build under load takes that long to record its run.
        let window = max(0.3, length * 0.05)...max(0.6, length * 0.9)
        var resumes: [Double] = [], kills: [Double] = []
        var rss: Int64 = 0
        var finishedFirst = 0, attempts = 0
        while kills.count < repetitions {
            attempts += 1
            guard attempts <= repetitions * 4 else {
                throw BenchError("R1: only \(kills.count) of \(attempts - 1) kills landed while the run was going; is the machine overloaded?")
            }
            let dir = try scratch()
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let state = ["--state-dir", dir + "/.sluice"]
            let pid = try spawnDetached([demo, "run", "fan-out", "-p", "n=\(n)", "-p", "sleep_ms=1", "--no-tty"] + state, in: dir)
            let after = Double.random(in: window)
            usleep(useconds_t(after * 1_000_000))
            kill(pid, SIGKILL)
            let (status, _) = waitFor(pid)
            let runs = try spawn([demo, "runs", "--json", "--limit", "1"] + state, in: dir)
            let listed = (try? JSONSerialization.jsonObject(with: Data(runs.stdout.utf8)) as? [[String: String]]) ?? []
            guard let id = listed.first?["run_id"] else { continue }  // killed before the run was recorded
            if status == 0 {
                // The run ended before the kill: its record must be whole all the same.
                finishedFirst += 1
                let check = try crashCheck(demo, id, state, dir)
                guard check.status == "success", check.done == n, check.joinSuccesses == 1 else {
                    throw BenchError("R1: a run that was not killed is wrong: \(check)")
                }
                continue
            }
            let resumed = try spawn([demo, "resume", id, "--no-tty"] + state, in: dir)
            guard resumed.status == 0 else { throw BenchError("R1: resume after a kill at \(after) s exited \(resumed.status)") }
            let check = try crashCheck(demo, id, state, dir)
            guard check.status == "success", check.done == n, check.failed == 0, check.joinSuccesses == 1 else {
                throw BenchError("R1: after a kill at \(String(format: "%.3f", after)) s and resume: \(check) (expected \(n) items done, the join once)")
            }
            kills.append(after)
            resumes.append(resumed.seconds)
            rss = max(rss, resumed.rssBytes)
        }
        let resume = figure(resumes, rss: rss)
        let killed = figure(kills, rss: nil)
        return Row(workload: "R1", n: n, sluice: resume, perTaskMicroseconds: resume.seconds / Double(n) * 1e6,
                   baseline: "time before the SIGKILL", baselineFigure: killed, ratio: Double(kills.count) / Double(repetitions),
                   check: "\(kills.count)/\(repetitions) killed runs completed after resume, 0 items lost, join once each",
                   note: String(format: "%d/%d completed after resume, 0 lost, join once; sluice wall = the resume; kills after %.2f–%.2f s; %d run(s) ended before their kill (checked too)",
                                kills.count, repetitions, kills.min() ?? 0, kills.max() ?? 0, finishedFirst))
    }

    /// What the run's record says: items done and failed in the fan-out stage, successful attempts of the join.
    static func crashCheck(_ demo: String, _ id: String, _ state: [String], _ dir: String) throws -> CrashCheck {
        let show = try spawn([demo, "show", id, "--json"] + state, in: dir)
        guard let report = try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any] else {
            throw BenchError("R1: `show \(id) --json` printed no report (exit \(show.status))")
        }
        let stages = (report["stages"] as? [[String: Any]]) ?? []
        func stage(_ name: String) -> [String: Any] { stages.first { $0["name"] as? String == name } ?? [:] }
        let progress = stage("double")["progress"] as? [String: Any] ?? [:]
        let joinTasks = stage("sum")["tasks"] as? [[String: Any]] ?? []
        let joins = joinTasks.flatMap { ($0["attempts"] as? [[String: Any]]) ?? [] }.filter { $0["outcome"] as? String == "success" }.count
        return CrashCheck(done: progress["done"] as? Int ?? -1, failed: progress["failed"] as? Int ?? -1,
                          joinSuccesses: joins, status: report["status"] as? String ?? "?")
    }
}
