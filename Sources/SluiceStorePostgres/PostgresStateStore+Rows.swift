import Foundation
import Logging
import PostgresNIO
import SluiceCore
import SluiceStore

/// One connection inside a store operation (a transaction, or a plain read).
struct Tx {
    let connection: PostgresConnection
    let logger: Logger

    func rows(_ query: PostgresQuery) async throws -> [Row] {
        try await result(query).rows.map { Row(raw: $0.makeRandomAccess()) }
    }

    func exec(_ query: PostgresQuery) async throws {
        _ = try await result(query)
    }

    /// The first column of the first row, nil when there is no row or it is NULL.
    func value<T: PostgresDecodable>(_ query: PostgresQuery, as type: T.Type) async throws -> T? {
        guard let row = try await result(query).rows.first, let cell = row.first, cell.bytes != nil else { return nil }
        return try cell.decode(T.self)
    }

    /// Runs `query` and collects its rows, handing it to the connection from the connection's own event
    /// loop after checking that the connection is still open (see `onOpenConnection`). Queries go through
    /// postgres-nio's future-based API, submitted on the loop: every statement but the prepared ones.
    func result(_ query: PostgresQuery) async throws -> PostgresQueryResult {
        let connection = self.connection, logger = self.logger
        return try await connection.eventLoop.flatSubmit { () -> EventLoopFuture<PostgresQueryResult> in
            guard !connection.isClosed else { return connection.eventLoop.makeFailedFuture(ConnectionClosed()) }
            return connection.query(query, logger: logger)
        }.get()
    }

    /// Runs a named prepared statement: PostgreSQL parses and plans it once per connection, and each
    /// later call sends only its values.
    func rows<Text: StatementText>(_ text: Text.Type, _ bind: (inout PostgresBindings) throws -> Void = { _ in }) async throws -> [Row] {
        var bindings = PostgresBindings()
        try bind(&bindings)
        let statement = Prepared<Text>(bindings: bindings), logger = self.logger
        return try await onOpenConnection { connection in
            var rows: [Row] = []
            for try await row in try await connection.execute(statement, logger: logger) { rows.append(Row(raw: row)) }
            return rows
        }
    }

    func exec<Text: StatementText>(_ text: Text.Type, _ bind: (inout PostgresBindings) throws -> Void = { _ in }) async throws {
        _ = try await rows(text, bind)
    }

    /// Hands a query or statement to the connection from the connection's own event loop, after
    /// checking that the connection is still open.
    ///
    /// postgres-nio (1.33.2) writes a query into the connection's channel without a way back: when the
    /// channel closed just before (the server restarted), the write goes nowhere and the answer never
    /// comes, so a store call waited forever and a worker stopped with tasks marked running. `send` starts
    /// on the loop (a task executor preference), so the check and postgres-nio's write, which it makes
    /// before its first suspension, are one job there: nothing can close the channel in between, and an
    /// open channel's handler fails every query it holds when the connection drops later.
    private func onOpenConnection<T: Sendable>(_ send: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        let connection = self.connection
        return try await withTaskExecutorPreference(EventLoopTaskExecutor(connection.eventLoop)) {
            guard !connection.isClosed else { throw ConnectionClosed() }
            return try await send(connection)
        }
    }
}

/// The text of a prepared statement: a name unique in the store, and its SQL with `$1`… placeholders.
protocol StatementText: SendableMetatype {
    static var name: String { get }
    static var sql: String { get }
}

/// A prepared statement whose rows are read by column name.
struct Prepared<Text: StatementText>: PostgresPreparedStatement {
    static var name: String { Text.name }
    static var sql: String { Text.sql }
    let bindings: PostgresBindings

    func makeBindings() throws -> PostgresBindings { bindings }
    func decodeRow(_ row: PostgresRow) throws -> PostgresRandomAccessRow { row.makeRandomAccess() }
}

/// Runs jobs on a NIO event loop: an async call made with this as its task executor preference starts
/// on the loop's thread, as the loop's own work does.
final class EventLoopTaskExecutor: TaskExecutor {
    let loop: any EventLoop

    init(_ loop: any EventLoop) { self.loop = loop }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}

/// The connection closed before a query could be sent on it.
struct ConnectionClosed: Error, CustomStringConvertible {
    var description: String { "the connection to the server closed" }
}

/// A row read by column name.
struct Row {
    let raw: PostgresRandomAccessRow

    subscript<T: PostgresDecodable>(_ column: String) -> T {
        get throws { try raw[column].decode(T.self) }
    }

    func date(_ column: String) throws -> Date? {
        try (self[column] as Double?).map { Date(timeIntervalSince1970: $0) }
    }

    func int32(_ column: String) throws -> Int32? {
        try (self[column] as Int64?).flatMap { Int32(exactly: $0) }
    }

    func data(_ column: String) throws -> Data? {
        try (self[column] as ByteBuffer?).map { Data($0.readableBytesView) }
    }
}

extension PostgresStateStore {
    static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys]
        return e
    }()

    static func json(_ value: some Encodable) throws -> String {
        String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String?, what: String) throws -> T {
        guard let text, let value = try? JSONDecoder().decode(T.self, from: Data(text.utf8)) else {
            throw StoreError(.corrupt, "the state store holds an unreadable \(what)",
                             hint: "the store may come from a different Sluice version; use another database")
        }
        return value
    }

    static func bytes(_ data: Data?) -> ByteBuffer? {
        data.map { ByteBuffer(bytes: $0) }
    }

    /// Inserts events with one statement per thousand (values are bound, never spliced).
    static func insert(_ events: [EventRecord], _ tx: Tx) async throws {
        for start in stride(from: 0, to: events.count, by: 1000) {
            var binds = PostgresBindings(capacity: 9 * min(1000, events.count - start))
            var tuples: [String] = []
            for e in events[start..<min(events.count, start + 1000)] {
                let n = binds.count
                tuples.append("(" + (1...9).map { "$\(n + $0)" }.joined(separator: ", ") + ")")
                binds.append(e.runID.rawValue)
                binds.append(e.pipeline)
                binds.append(e.stage)
                binds.append(e.taskID)
                binds.append(e.attempt.map { Int64($0) })
                binds.append(e.event)
                binds.append(e.time.timeIntervalSince1970)
                binds.append(e.message)
                binds.append(e.attrs.isEmpty ? nil : try json(e.attrs))
            }
            try await tx.exec(PostgresQuery(unsafeSQL: """
                INSERT INTO events (run_id, pipeline, stage, task_id, attempt, event, ts, msg, attrs) VALUES \(tuples.joined(separator: ", "))
                """, binds: binds))
        }
    }

    static func runRecord(_ row: Row) throws -> RunRecord {
        let owner: LeaseOwner? = try (row["lease_owner"] as String?).map {
            LeaseOwner(id: $0, host: try row["lease_host"] ?? "", pid: try row.int32("lease_pid") ?? 0)
        }
        return RunRecord(
            id: RunID(try row["id"]), pipeline: try row["pipeline"],
            spec: try decode(PipelineSpec.self, try row["spec"], what: "pipeline definition"),
            params: try decode([String: String].self, try row["params"], what: "params"),
            trigger: try row["trigger"], status: RunStatus(rawValue: try row["status"]) ?? .failed,
            createdAt: try row.date("created_at") ?? Date(timeIntervalSince1970: 0),
            startedAt: try row.date("started_at"), finishedAt: try row.date("finished_at"),
            cancelRequestedAt: try row.date("cancel_requested_at"), leaseOwner: owner,
            leaseExpiresAt: try row.date("lease_expires_at"), idempotencyKey: try row["idempotency_key"],
            runDir: try row["run_dir"])
    }

    static func stageRecord(_ row: Row) throws -> StageRecord {
        StageRecord(runID: RunID(try row["run_id"]), name: try row["name"],
                    status: StageStatus(rawValue: try row["status"]) ?? .failed, reason: try row["reason"],
                    startedAt: try row.date("started_at"), finishedAt: try row.date("finished_at"))
    }

    static func taskRecord(_ row: Row) throws -> TaskRecord {
        TaskRecord(id: try row["id"], runID: RunID(try row["run_id"]), stage: try row["stage"], key: try row["key"],
                   status: TaskStatus(rawValue: try row["status"]) ?? .failed, attempts: try row["attempts"],
                   lostAttempts: try row["lost_attempts"], notBefore: try row.date("not_before"),
                   leaseOwner: try row["lease_owner"], leaseExpiresAt: try row.date("lease_expires_at"),
                   createdAt: try row.date("created_at") ?? Date(timeIntervalSince1970: 0),
                   finishedAt: try row.date("finished_at"), item: try row.data("item"))
    }

    static func attemptRecord(_ row: Row) throws -> AttemptRecord {
        AttemptRecord(taskID: try row["task_id"], runID: RunID(try row["run_id"]), stage: try row["stage"],
                      number: try row["number"], outcome: AttemptOutcome(rawValue: try row["outcome"]) ?? .lost,
                      startedAt: try row.date("started_at") ?? Date(timeIntervalSince1970: 0),
                      finishedAt: try row.date("finished_at"), exitCode: try row.int32("exit_code"),
                      signal: try row.int32("signal"), cpuMs: try row["cpu_ms"], peakRSSBytes: try row["peak_rss"],
                      stdoutBytes: try row["stdout_bytes"], stderrBytes: try row["stderr_bytes"],
                      stderrTail: try row["stderr_tail"], message: try row["message"], host: try row["host"],
                      pid: try row.int32("pid"), processStartTicks: try row["start_ticks"],
                      counters: (try row["counters"] as String?).flatMap { try? JSONDecoder().decode([String: String].self, from: Data($0.utf8)) } ?? [:])
    }

    static func eventRecord(_ row: Row) throws -> EventRecord {
        EventRecord(id: try row["id"], runID: RunID(try row["run_id"]), pipeline: try row["pipeline"], stage: try row["stage"],
                    taskID: try row["task_id"], attempt: try row["attempt"], event: try row["event"],
                    time: try row.date("ts") ?? Date(timeIntervalSince1970: 0), message: try row["msg"],
                    attrs: (try? decode([String: String].self, try row["attrs"], what: "event attributes")) ?? [:])
    }
}
