import Foundation
import Logging
import PostgresNIO
import SluiceCore
#if canImport(Glibc)
import Glibc
#endif

/// W3: N trivial tasks (the `fan-out` pipeline of `sluice-demo`, in-process Swift tasks) recorded with
/// `run --detach`, then processed by two `sluice-demo worker --concurrency 32` processes against one
/// PostgreSQL database (in-process tasks cost next to nothing, so a worker runs many at once).
extension Bench {
    /// The PostgreSQL server W3 uses: `--postgres URL`, else `SLUICE_BENCH_POSTGRES`, else the tests'
    /// `SLUICE_TEST_POSTGRES`. Each repetition creates a database of its own on it.
    static func postgresURL(_ o: Options) -> String? {
        let environment = ProcessInfo.processInfo.environment
        return o.postgres ?? environment["SLUICE_BENCH_POSTGRES"].flatMap { $0.isEmpty ? nil : $0 }
            ?? environment["SLUICE_TEST_POSTGRES"].flatMap { $0.isEmpty ? nil : $0 }
    }

    static func w3(n: Int, admin: String, _ o: Options) async throws -> Row {
        let demo = try sibling("sluice-demo")
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var walls: [Double] = [], enqueues: [Double] = [], processing: [Double] = [], rss: [Int64] = []
        var shares: [String] = []
        for _ in 0..<o.repetitions {
            let url = try await freshDatabase(admin)
            let state = ["--state", url, "--state-dir", dir + "/.sluice"]
            let detach = try spawn([demo, "run", "fan-out", "-p", "n=\(n)", "--detach"] + state, in: dir)
            guard detach.status == 0, let id = detach.stdout.split(separator: "\n").last.map(String.init), !id.isEmpty else {
                throw BenchError("W3: `sluice-demo run fan-out --detach` failed (exit \(detach.status))")
            }
            let start = ContinuousClock.now
            let workers = try (0..<2).map { _ in
                try spawnDetached([demo, "worker", "--exit-when-idle", "--concurrency", "32", "--poll", "200ms"] + state, in: dir)
            }
            var peak: Int64 = 0
            for pid in workers {
                let (status, bytes) = waitFor(pid)
                guard status == 0 else { throw BenchError("W3: a worker exited \(status)") }
                peak = max(peak, bytes)
            }
            walls.append((ContinuousClock.now - start).seconds)
            rss.append(peak)
            let show = try spawn([demo, "show", id, "--json"] + state, in: dir)
            let report = try JSONSerialization.jsonObject(with: Data(show.stdout.utf8)) as? [String: Any]
            guard report?["status"] as? String == "success" else { throw BenchError("W3: the run did not succeed: \(show.stdout.prefix(300))") }
            let stages = (report?["stages"] as? [[String: Any]]) ?? []
            func span(_ name: String) -> (Date, Date)? {
                guard let stage = stages.first(where: { $0["name"] as? String == name }),
                      let a = (stage["started_at"] as? String).flatMap(parseTime), let b = (stage["finished_at"] as? String).flatMap(parseTime) else { return nil }
                return (a, b)
            }
            guard let discovery = span("numbers"), let tasks = span("double") else { throw BenchError("W3: stage times missing in the report") }
            enqueues.append(discovery.1.timeIntervalSince(discovery.0))
            processing.append(tasks.1.timeIntervalSince(tasks.0))
            // How the tasks were shared between the two workers (attempt owners).
            let owners = try await ownersCount(url)
            shares.append(owners.map(String.init).joined(separator: "/"))
        }
        let w1 = try repeatMeasure(["w1", String(n)], o)
        let wall = figure(walls, rss: rss.max())
        let process = figure(processing, rss: nil)
        let enqueue = figure(enqueues, rss: nil)
        return Row(workload: "W3", n: n, sluice: process, perTaskMicroseconds: process.seconds / Double(n) * 1e6,
                   baseline: "W1 on SQLite, same N", baselineFigure: w1.figure, ratio: process.seconds / max(w1.figure.seconds, 1e-9),
                   check: "run success; tasks per worker \(shares.joined(separator: ", "))",
                   note: String(format: "processing %.0f tasks/s (%.1fx celery's 543/s); enqueue (discovery) %.3f s; wall with startup %.3f s, peak RSS per worker %@",
                                Double(n) / max(process.seconds, 1e-9), Double(n) / max(process.seconds, 1e-9) / 543,
                                enqueue.seconds, wall.seconds, "\((wall.rssBytes ?? 0) / 1_048_576) MB"))
    }

    static func parseTime(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: text) ?? ISO8601DateFormatter().date(from: text)
    }

    static func freshDatabase(_ admin: String) async throws -> String {
        guard var parts = URLComponents(string: admin) else { throw BenchError("W3: '\(admin)' is not a PostgreSQL URL") }
        let name = "sluice_bench_" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        try await sql(admin, "CREATE DATABASE \(name)")
        parts.path = "/" + name
        guard let url = parts.string else { throw BenchError("W3: cannot build the database URL") }
        return url
    }

    static func ownersCount(_ url: String) async throws -> [Int] {
        try await sql(url, "SELECT count(*)::text FROM attempts WHERE stage = 'double' GROUP BY owner ORDER BY 1").compactMap { $0.flatMap(Int.init) }
    }

    /// Runs `text` on a connection of its own; the first column of each row.
    @discardableResult
    static func sql(_ url: String, _ text: String) async throws -> [String?] {
        guard let parts = URLComponents(string: url), let host = parts.host, let user = parts.user else {
            throw BenchError("W3: '\(url)' is not a PostgreSQL URL (postgres://user@host:port/database)")
        }
        let configuration = PostgresConnection.Configuration(host: host, port: parts.port ?? 5432, username: user,
                                                             password: parts.password ?? ProcessInfo.processInfo.environment["PGPASSWORD"],
                                                             database: String(parts.path.dropFirst()), tls: .disable)
        let logger = Logger(label: "sluice-bench")
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        do {
            let rows = try await connection.query(PostgresQuery(unsafeSQL: text), logger: logger).collect()
            try await connection.close()
            return try rows.map { row in try row.first.flatMap { $0.bytes == nil ? nil : try $0.decode(String.self) } }
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// Starts `argv` (output discarded) without waiting; `waitFor` collects it.
    static func spawnDetached(_ argv: [String], in dir: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv = ["/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", dir] + argv
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, cArgs, environ)
        guard rc == 0 else { throw BenchError("cannot start \(argv[4]): \(String(cString: strerror(rc)))") }
        return pid
    }

    /// The exit status and peak RSS of a process started by `spawnDetached`.
    static func waitFor(_ pid: pid_t) -> (status: Int32, rssBytes: Int64) {
        var status: Int32 = 0
        var usage = rusage()
        _ = wait4(pid, &status, 0, &usage)
        let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (exit, Int64(usage.ru_maxrss) * 1024)
    }
}
