import Foundation
import GRDB
import SluiceCore
import SluiceStore

extension SQLiteStateStore {
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
                             hint: "the store may come from a different Sluice version; use another --state-dir")
        }
        return value
    }

    static func date(_ row: Row, _ column: String) -> Date? {
        (row[column] as Double?).map { Date(timeIntervalSince1970: $0) }
    }

    static func insert(_ events: [EventRecord], _ db: Database) throws {
        guard !events.isEmpty else { return }
        let statement = try db.cachedStatement(sql: """
            INSERT INTO events (run_id, pipeline, stage, task_id, attempt, event, ts, msg, attrs) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        for e in events {
            try statement.execute(arguments: [e.runID.rawValue, e.pipeline, e.stage, e.taskID, e.attempt, e.event,
                                              e.time.timeIntervalSince1970, e.message,
                                              e.attrs.isEmpty ? nil : try json(e.attrs)])
        }
    }

    // Records are read by column position from these column lists (`SELECT \(runColumns) FROM runs`):
    // looking a column up by name in a GRDB row compares lowercased names, which was a tenth of the CPU
    // of a chain of stages (every stage of the run is read to plan the next).
    static let runColumns = """
        id, pipeline, spec, params, trigger, status, created_at, started_at, finished_at, cancel_requested_at,
        lease_owner, lease_host, lease_pid, lease_expires_at, idempotency_key, run_dir
        """
    static let stageColumns = "run_id, name, status, reason, started_at, finished_at"
    static let taskColumns = """
        id, run_id, stage, key, status, attempts, lost_attempts, not_before, lease_owner, lease_expires_at, created_at,
        finished_at, item
        """
    static let attemptColumns = """
        task_id, run_id, stage, number, outcome, started_at, finished_at, exit_code, signal, cpu_ms, peak_rss, stdout_bytes,
        stderr_bytes, stderr_tail, message, host, pid, start_ticks, counters
        """
    static let eventColumns = "id, run_id, pipeline, stage, task_id, attempt, event, ts, msg, attrs"

    /// A column list with each column taken from the table named `alias` in a join (`a.task_id, a.run_id, …`).
    static func columns(_ list: String, of alias: String) -> String {
        names(list).map { "\(alias).\($0)" }.joined(separator: ", ")
    }

    /// The names in a column list, in order.
    static func names(_ list: String) -> [String] {
        list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    /// Debug builds (the tests) check that a row has the columns its decoder reads by position, so a
    /// column list and its decoder cannot drift apart unnoticed.
    static func expect(_ row: Row, _ list: String) {
        assert(Array(row.columnNames) == names(list), "row columns \(Array(row.columnNames)) are not \(list)")
    }

    static func date(_ row: Row, _ index: Int) -> Date? {
        (row[index] as Double?).map { Date(timeIntervalSince1970: $0) }
    }

    /// A run from a row of `runColumns`.
    static func runRecord(_ row: Row) throws -> RunRecord {
        expect(row, runColumns)
        let owner: LeaseOwner? = (row[10] as String?).map {
            LeaseOwner(id: $0, host: row[11] ?? "", pid: Int32(row[12] as Int64? ?? 0))
        }
        return RunRecord(
            id: RunID(row[0]), pipeline: row[1],
            spec: try decode(PipelineSpec.self, row[2], what: "pipeline definition"),
            params: try decode([String: String].self, row[3], what: "params"),
            trigger: row[4], status: RunStatus(rawValue: row[5]) ?? .failed,
            createdAt: date(row, 6) ?? Date(timeIntervalSince1970: 0),
            startedAt: date(row, 7), finishedAt: date(row, 8),
            cancelRequestedAt: date(row, 9), leaseOwner: owner,
            leaseExpiresAt: date(row, 13), idempotencyKey: row[14],
            runDir: row[15])
    }

    /// A stage from a row of `stageColumns`.
    static func stageRecord(_ row: Row) throws -> StageRecord {
        expect(row, stageColumns)
        return StageRecord(runID: RunID(row[0]), name: row[1], status: StageStatus(rawValue: row[2]) ?? .failed,
                    reason: row[3], startedAt: date(row, 4), finishedAt: date(row, 5))
    }

    /// The columns `claimedTask` reads, in its order (what the claim just set is not read back).
    static let claimedColumns = "id, stage, key, attempts, lost_attempts, created_at, item, retry_base"

    /// A task the claim moved to running under `owner` until `lease`, from a row of `claimedColumns`, read
    /// by position (a claim reads hundreds: looking each column up by name was a fifth of a claim).
    static func claimedTask(_ row: Row, run: RunID, owner: String, lease: Date) -> (task: TaskRecord, retryBase: Int) {
        let task = TaskRecord(id: row[0], runID: run, stage: row[1], key: row[2], status: .running, attempts: row[3],
                              lostAttempts: row[4], notBefore: nil, leaseOwner: owner, leaseExpiresAt: lease,
                              createdAt: Date(timeIntervalSince1970: row[5] as Double? ?? 0), finishedAt: nil, item: row[6])
        return (task, row[7] as Int? ?? 0)
    }

    /// A task from a row of `taskColumns`.
    static func taskRecord(_ row: Row) throws -> TaskRecord {
        expect(row, taskColumns)
        return TaskRecord(id: row[0], runID: RunID(row[1]), stage: row[2], key: row[3],
                   status: TaskStatus(rawValue: row[4]) ?? .failed, attempts: row[5],
                   lostAttempts: row[6], notBefore: date(row, 7),
                   leaseOwner: row[8], leaseExpiresAt: date(row, 9),
                   createdAt: date(row, 10) ?? Date(timeIntervalSince1970: 0),
                   finishedAt: date(row, 11), item: row[12])
    }

    /// An attempt from a row of `attemptColumns`.
    static func attemptRecord(_ row: Row) throws -> AttemptRecord {
        expect(row, attemptColumns)
        return AttemptRecord(taskID: row[0], runID: RunID(row[1]), stage: row[2], number: row[3],
                      outcome: AttemptOutcome(rawValue: row[4]) ?? .lost,
                      startedAt: date(row, 5) ?? Date(timeIntervalSince1970: 0),
                      finishedAt: date(row, 6),
                      exitCode: (row[7] as Int64?).map { Int32($0) },
                      signal: (row[8] as Int64?).map { Int32($0) },
                      cpuMs: row[9], peakRSSBytes: row[10],
                      stdoutBytes: row[11], stderrBytes: row[12],
                      stderrTail: row[13], message: row[14], host: row[15],
                      pid: (row[16] as Int64?).map { Int32($0) }, processStartTicks: row[17],
                      counters: (row[18] as String?).flatMap { try? JSONDecoder().decode([String: String].self, from: Data($0.utf8)) } ?? [:])
    }

    /// An event from a row of `eventColumns`.
    static func eventRecord(_ row: Row) throws -> EventRecord {
        expect(row, eventColumns)
        return EventRecord(id: row[0], runID: RunID(row[1]), pipeline: row[2], stage: row[3],
                    taskID: row[4], attempt: row[5], event: row[6],
                    time: date(row, 7) ?? Date(timeIntervalSince1970: 0), message: row[8],
                    attrs: (try? decode([String: String].self, row[9], what: "event attributes")) ?? [:])
    }
}
