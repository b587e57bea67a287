import Foundation
import GRDB
import SluiceCore
import SluiceStore

/// Reads for the HTTP API and `/metrics`.
extension SQLiteStateStore {
    public func runs(matching query: RunQuery) async throws -> [RunRecord] {
        var conditions: [String] = []
        var arguments: [(any DatabaseValueConvertible)?] = []
        if let pipeline = query.pipeline { conditions.append("pipeline = ?"); arguments.append(pipeline) }
        if !query.statuses.isEmpty {
            conditions.append("status IN (\(query.statuses.map { _ in "?" }.joined(separator: ",")))")
            arguments += query.statuses.map(\.rawValue)
        }
        if let after = query.createdAfter { conditions.append("created_at >= ?"); arguments.append(after.timeIntervalSince1970) }
        if let before = query.createdBefore { conditions.append("created_at < ?"); arguments.append(before.timeIntervalSince1970) }
        if let cursor = query.beforeID {
            conditions.append("(created_at, id) < (SELECT created_at, id FROM runs WHERE id = ?)")
            arguments.append(cursor.rawValue)
        }
        arguments.append(query.limit)
        let sql = "SELECT \(Self.runColumns) FROM runs\(conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")) ORDER BY created_at DESC, id DESC LIMIT ?"
        let bound = StatementArguments(arguments)
        return try await read { db in
            try Row.fetchAll(db, sql: sql, arguments: bound).map(Self.runRecord)
        }
    }

    public func task(_ id: TaskID) async throws -> TaskRecord? {
        try readNow { db in
            try db.row(sql: """
                SELECT \(Self.taskColumns) FROM tasks WHERE id = ? UNION ALL SELECT \(Self.taskColumns) FROM done_tasks WHERE id = ?
                """, arguments: [id, id]).map(Self.taskRecord)
        }
    }

    public func statistics(durationBounds: [Double]) async throws -> StoreStatistics {
        let buckets = durationBounds.enumerated().map { i, bound in
            "SUM(CASE WHEN a.finished_at - a.started_at <= \(bound) THEN 1 ELSE 0 END) AS b\(i)"
        }
        let durationsSQL = """
            SELECT r.pipeline AS pipeline, count(*) AS n, SUM(a.finished_at - a.started_at) AS total\(buckets.isEmpty ? "" : ", " + buckets.joined(separator: ", "))
            FROM (SELECT run_id, started_at, finished_at FROM attempts
                  UNION ALL SELECT run_id, done_started, done_finished FROM items WHERE done_stage IS NOT NULL) a
            JOIN runs r ON r.id = a.run_id WHERE a.finished_at IS NOT NULL GROUP BY r.pipeline
            """
        return try await read { db in
            var stats = StoreStatistics()
            for row in try db.rows(sql: "SELECT pipeline, status, count(*) AS n FROM runs GROUP BY pipeline, status") {
                stats.runs[.init(row["pipeline"], row["status"])] = row["n"]
            }
            for row in try db.rows(sql: """
                SELECT pipeline, CASE WHEN instr(trigger, ' ') > 0 THEN substr(trigger, 1, instr(trigger, ' ') - 1) ELSE trigger END AS kind,
                count(*) AS n FROM runs GROUP BY 1, 2
                """) {
                stats.triggers[.init(row["pipeline"], row["kind"])] = row["n"]
            }
            for row in try db.rows(sql: "SELECT kind, status, count(*) AS n FROM notifications GROUP BY 1, 2") {
                stats.notifications[.init(row["kind"], row["status"])] = row["n"]
            }
            for row in try db.rows(sql: "SELECT name, status, count(*) AS n FROM sessions GROUP BY 1, 2") {
                stats.sessions[.init(row["name"], row["status"])] = row["n"]
            }
            for row in try db.rows(sql: "SELECT r.pipeline AS pipeline, t.status AS status, count(*) AS n FROM tasks t JOIN runs r ON r.id = t.run_id GROUP BY 1, 2") {
                stats.tasks[.init(row["pipeline"], row["status"])] = row["n"]
            }
            // The items of local stages without a task yet are pending tasks (see `keepsLocalTasks`); the
            // tasks written into their items (`done_tasks`) succeeded, at their one attempt.
            var done: [String: Int] = [:]
            for row in try db.rows(sql: """
                SELECT r.pipeline AS pipeline, SUM(s.local_left) AS n, SUM(s.local_done) AS done FROM stages s JOIN runs r ON r.id = s.run_id
                WHERE s.local_left > 0 OR s.local_done > 0 GROUP BY 1
                """) {
                stats.tasks[.init(row["pipeline"], TaskStatus.pending.rawValue), default: 0] += row["n"] as Int
                stats.tasks[.init(row["pipeline"], TaskStatus.success.rawValue), default: 0] += row["done"] as Int
                done[row["pipeline"]] = row["done"]
            }
            for row in try db.rows(sql: """
                SELECT r.pipeline AS pipeline, a.outcome AS outcome, count(*) AS n, SUM(CASE WHEN a.number > 1 THEN 1 ELSE 0 END) AS retries
                FROM attempts a JOIN runs r ON r.id = a.run_id GROUP BY 1, 2
                """) {
                let pipeline: String = row["pipeline"]
                stats.attempts[.init(pipeline, row["outcome"])] = row["n"]
                stats.retries[pipeline, default: 0] += row["retries"] as Int
            }
            for (pipeline, n) in done where n > 0 {
                stats.attempts[.init(pipeline, AttemptOutcome.success.rawValue), default: 0] += n
            }
            for row in try Row.fetchAll(db, sql: durationsSQL) {
                stats.durations[row["pipeline"]] = .init(bounds: durationBounds,
                                                         cumulative: durationBounds.indices.map { (row["b\($0)"] as Int?) ?? 0 },
                                                         count: row["n"], sumSeconds: (row["total"] as Double?) ?? 0)
            }
            return stats
        }
    }
}
