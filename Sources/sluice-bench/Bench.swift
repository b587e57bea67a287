import Foundation
import SluiceCore
#if canImport(Glibc)
import Glibc
#endif

/// Runs the workloads and prints the table (or JSON).
enum Bench {
    struct Options {
        var quick = false
        var json = false
        var repetitions = 3
        var workloads: [String] = []
        var million = false
        var postgres: String?
    }

    struct Figure: Codable {
        var seconds: Double
        var spread: Double
        var rssBytes: Int64?
    }

    struct Row: Codable {
        var workload: String
        var n: Int
        var sluice: Figure
        var perTaskMicroseconds: Double
        /// W6: per task beyond a run with one item, (T(N) − T(1)) / (N − 1), in turns with it.
        var perTaskBeyondFixedMicroseconds: Double? = nil
        var baseline: String
        var baselineFigure: Figure
        var ratio: Double
        var check: String
        var note: String?
    }

    static let all = ["W1", "W2", "W3", "W4", "W5", "W6", "R1"]

    static func main(_ args: [String]) async throws {
        var options = Options()
        var rest = args[...]
        while let arg = rest.popFirst() {
            switch arg {
            case "--postgres":
                guard let url = rest.popFirst() else { throw BenchError("--postgres needs a URL (postgres://user@host:port/database)") }
                options.postgres = url
            case "--quick": options.quick = true; options.repetitions = 1
            case "--json": options.json = true
            case "--million": options.million = true
            case "-h", "--help":
                print("usage: sluice-bench [--quick] [--json] [--million] [--postgres URL] [W1 W2 W3 W4 W5 W6 R1]")
                return
            default:
                guard all.contains(arg.uppercased()) else { throw BenchError("unknown workload or option '\(arg)'") }
                options.workloads.append(arg.uppercased())
            }
        }
        if options.workloads.isEmpty { options.workloads = all }
        var rows: [Row] = []
        var skipped: [String: String] = [:]
        for workload in options.workloads {
            switch workload {
            case "W1": rows.append(try w1(n: options.quick ? 500 : 10_000, options))
            case "W2": rows.append(try w2(n: options.quick ? 40 : 500, options))
            case "W4": rows.append(try w4(n: options.quick ? 20 : 100, options))
            case "W5": rows.append(try w5(options))
            case "W6":
                var sizes = options.quick ? [200, 2_000] : [1_000, 10_000, 100_000]
                if options.million && !options.quick { sizes.append(1_000_000) }
                for n in sizes { rows.append(try w1(n: n, options, name: "W6", scale: true)) }
            case "W3":
                if let admin = postgresURL(options) {
                    rows.append(try await w3(n: options.quick ? 300 : 20_000, admin: admin, options))
                } else {
                    skipped["W3"] = "needs a PostgreSQL server: --postgres URL or SLUICE_BENCH_POSTGRES (`source scripts/test-postgres.sh` starts a throwaway one)"
                }
            case "R1": rows.append(try r1(n: options.quick ? 2_000 : 10_000, repetitions: options.quick ? 2 : 20, options))
            default: break
            }
        }
        if options.json {
            let encoder = JSONEncoder()
            encoder.keyEncodingStrategy = .convertToSnakeCase
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            struct Output: Codable { var machine: String; var rows: [Row]; var skipped: [String: String] }
            FileHandle.standardOutput.write(try encoder.encode(Output(machine: machine(), rows: rows, skipped: skipped)))
            print()
        } else {
            print(table(rows))
            for (w, why) in skipped.sorted(by: { $0.key < $1.key }) { print("\(w): skipped — \(why)") }
            print("\n\(machine()); medians of \(options.repetitions) run\(options.repetitions == 1 ? "" : "s"), spread = max − min")
        }
    }

    // MARK: workloads

    /// W1 and W6 up to 10,000 items take a tenth of a second or less: a moment the machine is busy
    /// elsewhere moves one of three repetitions by a third (W6 at 10,000 items: 2.80x, then 3.96x in
    /// the next run), so these take nine, as W5 takes ten.
    static func shortRuns(_ o: Options, n: Int) -> Options {
        var short = o
        if !o.quick && n <= 10_000 { short.repetitions = max(o.repetitions, 9) }
        return short
    }

    /// W1 at `n` items; for W6 (`scale`), a run with one item and the floor with no rows take turns with
    /// it too, so that each row also gives the cost per task beyond a run's fixed cost — opening a new
    /// store, planning three stages, the first use of the items' path, writing the report: what a run of
    /// 1,000 items divides by 1,000 and one of 1,000,000 by a million — measured at the same moments as
    /// the row's own runs (this machine's speed drifts by a tenth within minutes, and at 1,000 items the
    /// difference is a fifth of either run). The floor's total ÷ N is not flat either: its empty file.
    static func w1(n: Int, _ o: Options, name: String = "W1", scale: Bool = false) throws -> Row {
        let runs = shortRuns(o, n: n)
        var whats = [["w1", String(n)], ["w1-taskgroup", String(n)], ["store-floor", String(n)]]
        if scale { whats += [["w1", "1"], ["store-floor", "0"]] }
        let raw = try measureInTurns(whats, runs)
        let (sluice, group, floor) = (summary(raw[0]), summary(raw[1]), summary(raw[2]))
        var note = String(format: "no-store task group: %.4f s (%.0fx)", group.figure.seconds, sluice.figure.seconds / max(group.figure.seconds, 1e-9))
        if runs.repetitions != o.repetitions { note = "medians of \(runs.repetitions); " + note }
        var beyond: Double?
        if scale {
            // Medians of each repetition's own difference: the two runs of a pair ran a moment apart.
            let one = raw[3].map(\.seconds), empty = raw[4].map(\.seconds)
            let perTask = median(zip(raw[0], one).map { ($0.seconds - $1) / Double(max(n - 1, 1)) * 1e6 })
            let floorPerRow = median(zip(raw[2], empty).map { ($0.seconds - $1) / Double(n) * 1e6 })
            beyond = perTask
            note += String(format: "; beyond a run with one item (%.1f ms): %.1f µs per task", median(one) * 1000, perTask)
            note += String(format: "; the floor: %.1f µs per row, beyond its empty file (%.1f ms) %.1f µs",
                           floor.figure.seconds / Double(n) * 1e6, median(empty) * 1000, floorPerRow)
        }
        return Row(workload: name, n: n, sluice: sluice.figure, perTaskMicroseconds: sluice.figure.seconds / Double(n) * 1e6,
                   perTaskBeyondFixedMicroseconds: beyond,
                   baseline: "store floor", baselineFigure: floor.figure, ratio: sluice.figure.seconds / floor.figure.seconds,
                   check: sluice.check, note: note)
    }

    static func w4(n: Int, _ o: Options) throws -> Row {
        let measured = try repeatMeasures([["w4", String(n)], ["w4-plain", String(n)]], o)
        let (sluice, plain) = (measured[0], measured[1])
        return Row(workload: "W4", n: n, sluice: sluice.figure, perTaskMicroseconds: sluice.figure.seconds / Double(n) * 1e6,
                   baseline: "plain calls", baselineFigure: plain.figure,
                   ratio: sluice.figure.seconds / max(plain.figure.seconds, 1e-9), check: sluice.check,
                   note: String(format: "engine overhead per stage (store opening included): %.3f ms", (sluice.figure.seconds - plain.figure.seconds) / Double(n) * 1000))
    }

    static func w2(n: Int, _ o: Options) throws -> Row {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let yaml = """
            name: w2
            concurrency: 4
            stages:
              items: { run: [sh, -c, 'seq 1 \(n) | sed "s/.*/{\\"key\\": \\"&\\"}/"'] }
              echo:
                for_each: items
                concurrency: 4
                run: [sh, -c, 'echo out-$1; echo err-$1 >&2', sh, "{{item.key}}"]
            """
        try yaml.write(toFile: dir + "/w2.yml", atomically: true, encoding: .utf8)
        let figures = try repeatRuns(o, [{
            try? FileManager.default.removeItem(atPath: dir + "/.sluice")
            return try spawn([sluiceExecutable(), "run", "w2.yml", "--no-tty"], in: dir)
        }, {
            try? FileManager.default.removeItem(atPath: dir + "/out")
            try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: true)
            return try spawn(["/bin/sh", "-c", "seq \(n) | xargs -P4 -I{} sh -c 'sh -c \"echo out-{}; echo err-{} >&2\" > out/{}.out 2> out/{}.err'"], in: dir)
        }])
        let (sluice, xargs) = (figures[0], figures[1])
        // Check: every task's stdout and stderr were captured (the last run's).
        let logs = (try? FileManager.default.contentsOfDirectory(atPath: dir + "/.sluice/runs").first).map { dir + "/.sluice/runs/\($0)/logs/echo" }
        let captured = logs.flatMap { try? FileManager.default.contentsOfDirectory(atPath: $0) }?.count ?? 0
        guard captured == 2 * n else { throw BenchError("W2 captured \(captured) log files, expected \(2 * n)") }
        return Row(workload: "W2", n: n, sluice: sluice, perTaskMicroseconds: sluice.seconds / Double(n) * 1e6,
                   baseline: "xargs -P4, a file per task", baselineFigure: xargs, ratio: sluice.seconds / xargs.seconds,
                   check: "\(n) tasks, \(captured) log files", note: nil)
    }

    static func w5(_ o: Options) throws -> Row {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "name: w5\nstages:\n  one: { run: [\"true\"] }\n".write(toFile: dir + "/w5.yml", atomically: true, encoding: .utf8)
        let reps = max(o.repetitions, o.quick ? 3 : 10)
        var opts = o
        opts.repetitions = reps
        let figures = try repeatRuns(opts, [{ try spawn([sluiceExecutable(), "run", "w5.yml", "--no-tty"], in: dir) },
                                            { try spawn(["/bin/true"], in: dir) }])
        let (sluice, direct) = (figures[0], figures[1])
        return Row(workload: "W5", n: 1, sluice: sluice, perTaskMicroseconds: sluice.seconds * 1e6,
                   baseline: "running `true` directly", baselineFigure: direct, ratio: sluice.seconds / max(direct.seconds, 1e-9),
                   check: "exit 0", note: String(format: "%.1f ms beyond the command", (sluice.seconds - direct.seconds) * 1000))
    }

    // MARK: running

    struct Spawned {
        var seconds: Double
        var rssBytes: Int64
        var status: Int32
        var stdout: String
    }

    /// posix_spawn + wait4: wall time and the child's own peak RSS.
    static func spawn(_ argv: [String], in dir: String) throws -> Spawned {
        var pipe: [Int32] = [0, 0]
        guard Glibc.pipe(&pipe) == 0 else { throw BenchError("pipe failed") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipe[1], 1)
        posix_spawn_file_actions_addclose(&actions, pipe[0])
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        // `cd` then `exec`: the measured program keeps the pid, so wait4 reports its own resources.
        let argv = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", dir] + argv
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        var pid: pid_t = 0
        let start = ContinuousClock.now
        let rc = posix_spawn(&pid, argv[0], &actions, nil, cArgs, environ)
        close(pipe[1])
        guard rc == 0 else { close(pipe[0]); throw BenchError("cannot start \(argv[0]): \(String(cString: strerror(rc)))") }
        var output = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(pipe[0], &buffer, buffer.count)
            if n <= 0 { break }
            output.append(contentsOf: buffer[0..<n])
        }
        close(pipe[0])
        var status: Int32 = 0
        var usage = rusage()
        _ = wait4(pid, &status, 0, &usage)
        let seconds = (ContinuousClock.now - start).seconds
        let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return Spawned(seconds: seconds, rssBytes: Int64(usage.ru_maxrss) * 1024, status: exit,
                       stdout: String(decoding: output, as: UTF8.self))
    }

    /// Each body `repetitions` times, taking turns (one of each, then again): a side and its baseline
    /// see the same moments of a shared machine, whose speed drifts within a run of the benchmark.
    static func inTurns<T>(_ repetitions: Int, _ bodies: [() throws -> T]) throws -> [[T]] {
        var results = bodies.map { _ in [T]() }
        for _ in 0..<repetitions {
            for (i, body) in bodies.enumerated() { results[i].append(try body()) }
        }
        return results
    }

    /// Commands, each `o.repetitions` times in turns; each must exit 0.
    static func repeatRuns(_ o: Options, _ bodies: [() throws -> Spawned]) throws -> [Figure] {
        let runs = try inTurns(o.repetitions, bodies.map { body in {
            let r = try body()
            guard r.status == 0 else { throw BenchError("a measured command exited \(r.status)") }
            return r
        } })
        return runs.map { figure($0.map(\.seconds), rss: $0.map(\.rssBytes).max()) }
    }

    static func repeatMeasure(_ what: [String], _ o: Options) throws -> (figure: Figure, check: String) {
        try repeatMeasures([what], o)[0]
    }

    /// Measurements (`--measure WHAT N`, each in a process of its own), each `o.repetitions` times in turns.
    static func repeatMeasures(_ whats: [[String]], _ o: Options) throws -> [(figure: Figure, check: String)] {
        try measureInTurns(whats, o).map(summary)
    }

    /// Each measurement's results, repetition by repetition (the i-th of each ran in the same turn).
    static func measureInTurns(_ whats: [[String]], _ o: Options) throws -> [[Measure.Result]] {
        try inTurns(o.repetitions, whats.map { what in {
            let r = try spawn([selfExecutable(), "--measure"] + what, in: FileManager.default.currentDirectoryPath)
            guard r.status == 0, let line = r.stdout.split(separator: "\n").last,
                  let result = try? decoder.decode(Measure.Result.self, from: Data(line.utf8)) else {
                throw BenchError("measurement \(what.joined(separator: " ")) failed (exit \(r.status)): \(r.stdout.suffix(500))")
            }
            return result
        } })
    }

    static func summary(_ results: [Measure.Result]) -> (figure: Figure, check: String) {
        (figure(results.map(\.seconds), rss: results.map(\.rssBytes).max()), results.last?.check ?? "")
    }

    static let decoder: JSONDecoder = {
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        return d
    }()

    static func figure(_ seconds: [Double], rss: Int64?) -> Figure {
        Figure(seconds: median(seconds), spread: (seconds.max() ?? 0) - (seconds.min() ?? 0), rssBytes: rss)
    }

    /// The middle value (of an even count, the upper of the two middle ones).
    static func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

    static func selfExecutable() -> String {
        URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
    }

    /// The `sluice` executable built beside this one.
    static func sluiceExecutable() throws -> String { try sibling("sluice") }

    /// An executable of this package built beside this one.
    static func sibling(_ name: String) throws -> String {
        let path = URL(fileURLWithPath: selfExecutable()).deletingLastPathComponent().appendingPathComponent(name).path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw BenchError("\(path) is not built; run `swift build -c release` first")
        }
        return path
    }

    static func scratch() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-bench-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func machine() -> String {
        let memory = ProcessInfo.processInfo.physicalMemory / (1 << 30)
        return "\(ProcessInfo.processInfo.activeProcessorCount) cores, \(memory) GiB, \(ISO8601DateFormatter().string(from: Date()))"
    }

    static func table(_ rows: [Row]) -> String {
        func mb(_ b: Int64?) -> String { b.map { String(format: "%.0f MB", Double($0) / 1_048_576) } ?? "-" }
        func time(_ f: Figure) -> String { String(format: "%.3f s (±%.3f)", f.seconds, f.spread / 2) }
        let header = ["workload", "N", "sluice wall", "per task", "peak RSS", "baseline", "baseline wall", "ratio", "note"]
        let body = rows.map { r in
            [r.workload, String(r.n), time(r.sluice), r.perTaskMicroseconds >= 1000 ? String(format: "%.2f ms", r.perTaskMicroseconds / 1000) : String(format: "%.1f µs", r.perTaskMicroseconds),
             mb(r.sluice.rssBytes), r.baseline, time(r.baselineFigure),
             // A baseline under the timer's millisecond makes a ratio meaningless (W4's plain calls).
             r.baselineFigure.seconds < 0.0005 ? "—" : String(format: "%.2fx", r.ratio), r.note ?? ""]
        }
        let all = [header] + body
        let widths = header.indices.map { i in all.map { $0[i].count }.max() ?? 0 }
        return all.map { row in row.enumerated().map { i, c in c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }.joined(separator: "  ") }
            .joined(separator: "\n")
    }
}
