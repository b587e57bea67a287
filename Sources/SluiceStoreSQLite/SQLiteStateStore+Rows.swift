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

    static func runRecord(_ row: Row) throws -> RunRecord {
        let owner: LeaseOwner? = (row["lease_owner"] as String?).map {
            LeaseOwner(id: $0, host: row["lease_host"] ?? "", pid: Int32(row["lease_pid"] as Int64? ?? 0))
        }
        return RunRecord(
            id: RunID(row["id"]), pipeline: row["pipeline"],
            spec: try decode(PipelineSpec.self, row["spec"], what: "pipeline definition"),
            params: try decode([String: String].self, row["params"], what: "params"),
            trigger: row["trigger"], status: RunStatus(rawValue: row["status"]) ?? .failed,
            createdAt: date(row, "created_at") ?? Date(timeIntervalSince1970: 0),
            startedAt: date(row, "started_at"), finishedAt: date(row, "finished_at"),
            cancelRequestedAt: date(row, "cancel_requested_at"), leaseOwner: owner,
            leaseExpiresAt: date(row, "lease_expires_at"), idempotencyKey: row["idempotency_key"],
            runDir: row["run_dir"])
    }

    static func stageRecord(_ row: Row) throws -> StageRecord {
        StageRecord(runID: RunID(row["run_id"]), name: row["name"], status: StageStatus(rawValue: row["status"]) ?? .failed,
                    reason: row["reason"], startedAt: date(row, "started_at"), finishedAt: date(row, "finished_at"))
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

    static func taskRecord(_ row: Row) throws -> TaskRecord {
        TaskRecord(id: row["id"], runID: RunID(row["run_id"]), stage: row["stage"], key: row["key"],
                   status: TaskStatus(rawValue: row["status"]) ?? .failed, attempts: row["attempts"],
                   lostAttempts: row["lost_attempts"], notBefore: date(row, "not_before"),
                   leaseOwner: row["lease_owner"], leaseExpiresAt: date(row, "lease_expires_at"),
                   createdAt: date(row, "created_at") ?? Date(timeIntervalSince1970: 0),
                   finishedAt: date(row, "finished_at"), item: row["item"])
    }

    static func attemptRecord(_ row: Row) throws -> AttemptRecord {
        AttemptRecord(taskID: row["task_id"], runID: RunID(row["run_id"]), stage: row["stage"], number: row["number"],
                      outcome: AttemptOutcome(rawValue: row["outcome"]) ?? .lost,
                      startedAt: date(row, "started_at") ?? Date(timeIntervalSince1970: 0),
                      finishedAt: date(row, "finished_at"),
                      exitCode: (row["exit_code"] as Int64?).map { Int32($0) },
                      signal: (row["signal"] as Int64?).map { Int32($0) },
                      cpuMs: row["cpu_ms"], peakRSSBytes: row["peak_rss"],
                      stdoutBytes: row["stdout_bytes"], stderrBytes: row["stderr_bytes"],
                      stderrTail: row["stderr_tail"], message: row["message"], host: row["host"],
                      pid: (row["pid"] as Int64?).map { Int32($0) }, processStartTicks: row["start_ticks"],
                      counters: (row["counters"] as String?).flatMap { try? JSONDecoder().decode([String: String].self, from: Data($0.utf8)) } ?? [:])
    }

    static func eventRecord(_ row: Row) throws -> EventRecord {
        EventRecord(id: row["id"], runID: RunID(row["run_id"]), pipeline: row["pipeline"], stage: row["stage"],
                    taskID: row["task_id"], attempt: row["attempt"], event: row["event"],
                    time: date(row, "ts") ?? Date(timeIntervalSince1970: 0), message: row["msg"],
                    attrs: (try? decode([String: String].self, row["attrs"], what: "event attributes")) ?? [:])
    }
}
