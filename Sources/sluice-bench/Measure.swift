import Foundation
import GRDB
import Sluice
import SluiceEngine
import SluiceStore
import SluiceStoreSQLite
import SluiceDefinition
import Synchronization
import SluiceCore

/// One measurement, in this (child) process: prints `{"seconds": …, "rss_bytes": …, "check": "…"}`.
enum Measure {
    struct Result: Codable {
        var seconds: Double
        var rssBytes: Int64
        /// What was verified (e.g. the join's sum), so a fast wrong answer never counts.
        var check: String
    }

    static func main(_ args: [String]) async throws {
        guard args.count >= 2, let n = Int(args[1]) else { throw BenchError("usage: --measure WHAT N") }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-bench-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        // SLUICE_BENCH_KEEP=1 keeps the state folder, to look at a run's events and timings afterwards.
        let keep = ProcessInfo.processInfo.environment["SLUICE_BENCH_KEEP"] == "1"
        defer { if keep { FileHandle.standardError.write(Data("kept \(folder.path)\n".utf8)) } else { try? FileManager.default.removeItem(at: folder) } }
        let clock = ContinuousClock()
        let start = clock.now
        let check: String
        switch args[0] {
        case "w1": check = try await fanOut(n, folder: folder)
        case "w1-taskgroup": check = await taskGroup(n)
        case "store-floor": check = try storeFloor(n, folder: folder)
        case "w4": check = try await chain(n, folder: folder)
        case "w4-plain": check = plainChain(n)
        default: throw BenchError("unknown measurement \(args[0])")
        }
        let seconds = (clock.now - start).seconds
        let result = Result(seconds: seconds, rssBytes: peakRSS(), check: check)
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        FileHandle.standardOutput.write(try encoder.encode(result))
        print()
    }

    static func peakRSS() -> Int64 {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Int64(usage.ru_maxrss) * 1024
    }

    static func engine(folder: URL, pipelines: [Pipeline]) throws -> Engine {
        let layout = StateLayout(directory: folder.appendingPathComponent(".sluice").path)
        let store = try SQLiteStateStore.open(path: layout.databasePath)
        var stages = InProcessStages()
        for p in pipelines { p.register(in: &stages) }
        var logger = Logger(label: "bench")
        logger.logLevel = .error
        return Engine(store: store, layout: layout, logger: logger, inProcess: stages)
    }

    /// W1: N integers discovered, one in-process task each (x * 2), a join that checks the sum; every task recorded.
    static func fanOut(_ n: Int, folder: URL) async throws -> String {
        let numbers = Discover<Int>("numbers") { _, items in
            for i in 0..<n { try await items.send(i) }
        }
        let double = ForEach("double", over: numbers) { _, x in x * 2 }
        let sum = Stage("sum", needs: double) { context -> Int in
            var total = 0
            for try await (_, value) in context.streamedResults(of: double) { total += value }
            return total
        }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let pipeline = try Pipeline("w1", concurrency: cores, root: folder.path) { numbers; double; sum }
        let engine = try engine(folder: folder, pipelines: [pipeline])
        guard case .started(let run) = try await engine.start(pipeline.spec) else { throw BenchError("W1 did not start") }
        let outcome = try await engine.execute(run)
        guard outcome == .success else { throw BenchError("W1 ended \(outcome.rawValue)") }
        let data = try await engine.store.results(run: run.id, stage: "sum")["main"]
        let total = try data.map { try JSONDecoder().decode(Int.self, from: $0) } ?? -1
        guard total == n * (n - 1) else { throw BenchError("W1 sum is \(total), expected \(n * (n - 1))") }
        let counts = try await engine.store.taskCounts(run: run.id)
        guard (counts["double"]?.success ?? 0) == n else { throw BenchError("W1 recorded \(counts["double"]?.success ?? 0) tasks, expected \(n)") }
        return "sum \(total) = n(n-1), \(n) tasks recorded"
    }

    /// W1's no-store baseline: the same work in a plain task group, nothing recorded.
    static func taskGroup(_ n: Int) async -> String {
        let total = await withTaskGroup(of: Int.self) { group in
            for i in 0..<n { group.addTask { i * 2 } }
            return await group.reduce(0, +)
        }
        return "sum \(total)"
    }

    /// The store floor: N rows inserted in one prepared transaction, then marked done in batched
    /// transactions, on a SQLite file in WAL mode — the least durable work possible for N items.
    static func storeFloor(_ n: Int, folder: URL) throws -> String {
        var config = Configuration()
        config.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
        let pool = try DatabasePool(path: folder.appendingPathComponent("floor.sqlite").path, configuration: config)
        try pool.write { db in try db.execute(sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, status TEXT NOT NULL, result INTEGER)") }
        try pool.write { db in
            let insert = try db.makeStatement(sql: "INSERT INTO t (id, status) VALUES (?, 'pending')")
            for i in 0..<n { try insert.execute(arguments: [i]) }
        }
        for batch in stride(from: 0, to: n, by: 500) {
            try pool.write { db in
                let update = try db.makeStatement(sql: "UPDATE t SET status = 'done', result = ? WHERE id = ?")
                for i in batch..<min(n, batch + 500) { try update.execute(arguments: [i * 2, i]) }
            }
        }
        let done = try pool.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM t WHERE status = 'done'") ?? 0 }
        guard done == n else { throw BenchError("store floor marked \(done) of \(n)") }
        return "\(done) rows"
    }

    /// W4: N stages, each needing the previous one, each a no-op Swift stage.
    static func chain(_ n: Int, folder: URL) async throws -> String {
        var components: [any PipelineComponent] = []
        var previous: Stage<NoResult>?
        for i in 0..<n {
            let stage = previous.map { p in Stage("s\(i)", needs: p) { _ in } } ?? Stage("s\(i)") { _ in }
            components.append(stage)
            previous = stage
        }
        let pipeline = try Pipeline("w4", concurrency: 1, root: folder.path) { components }
        let engine = try engine(folder: folder, pipelines: [pipeline])
        guard case .started(let run) = try await engine.start(pipeline.spec) else { throw BenchError("W4 did not start") }
        let outcome = try await engine.execute(run)
        guard outcome == .success else { throw BenchError("W4 ended \(outcome.rawValue)") }
        return "\(n) stages succeeded in order"
    }

    @inline(never) static func noop(_ i: Int) -> Int { i &+ 1 }

    static func plainChain(_ n: Int) -> String {
        var x = 0
        for i in 0..<n { x = noop(x &+ i) }
        return "\(x)"
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

