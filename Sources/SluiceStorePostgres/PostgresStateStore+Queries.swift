import Foundation
import PostgresNIO
import SluiceCore
import SluiceStore

/// Reads for the HTTP API and `/metrics`.
extension PostgresStateStore {
    public func runs(matching query: RunQuery) async throws -> [RunRecord] {
        let statuses = query.statuses.map(\.rawValue)
        let after = query.createdAfter?.timeIntervalSince1970, before = query.createdBefore?.timeIntervalSince1970
        let cursor = query.beforeID?.rawValue
        return try await read { tx in
            try await tx.rows("""
                SELECT * FROM runs WHERE (\(query.pipeline)::text IS NULL OR pipeline = \(query.pipeline))
                AND (cardinality(\(statuses)::text[]) = 0 OR status = ANY(\(statuses)::text[]))
                AND (\(after)::float8 IS NULL OR created_at >= \(after)) AND (\(before)::float8 IS NULL OR created_at < \(before))
                AND (\(cursor)::text IS NULL OR (created_at, id) < (SELECT created_at, id FROM runs WHERE id = \(cursor)))
                ORDER BY created_at DESC, id DESC LIMIT \(query.limit)
                """).map(Self.runRecord)
        }
    }

    public func task(_ id: TaskID) async throws -> TaskRecord? {
        try await read { tx in
            try await tx.rows("SELECT * FROM tasks WHERE id = \(id)").first.map(Self.taskRecord)
        }
    }

    public func statistics(durationBounds: [Double]) async throws -> StoreStatistics {
        let buckets = durationBounds.enumerated().map { i, bound in
            "SUM(CASE WHEN a.finished_at - a.started_at <= \(bound) THEN 1 ELSE 0 END)::bigint AS b\(i)"
        }
        let durationsSQL = """
            SELECT r.pipeline AS pipeline, count(*) AS n, SUM(a.finished_at - a.started_at)::float8 AS total\(buckets.isEmpty ? "" : ", " + buckets.joined(separator: ", "))
            FROM attempts a JOIN runs r ON r.id = a.run_id WHERE a.finished_at IS NOT NULL GROUP BY r.pipeline
            """
        return try await read { tx in
            var stats = StoreStatistics()
            for row in try await tx.rows("SELECT pipeline, status, count(*) AS n FROM runs GROUP BY pipeline, status") {
                stats.runs[.init(try row["pipeline"], try row["status"])] = try row["n"]
            }
            for row in try await tx.rows("SELECT pipeline, split_part(trigger, ' ', 1) AS kind, count(*) AS n FROM runs GROUP BY 1, 2") {
                stats.triggers[.init(try row["pipeline"], try row["kind"])] = try row["n"]
            }
            for row in try await tx.rows("SELECT kind, status, count(*) AS n FROM notifications GROUP BY 1, 2") {
                stats.notifications[.init(try row["kind"], try row["status"])] = try row["n"]
            }
            for row in try await tx.rows("SELECT name, status, count(*) AS n FROM sessions GROUP BY 1, 2") {
                stats.sessions[.init(try row["name"], try row["status"])] = try row["n"]
            }
            for row in try await tx.rows("SELECT r.pipeline AS pipeline, t.status AS status, count(*) AS n FROM tasks t JOIN runs r ON r.id = t.run_id GROUP BY 1, 2") {
                stats.tasks[.init(try row["pipeline"], try row["status"])] = try row["n"]
            }
            for row in try await tx.rows("""
                SELECT r.pipeline AS pipeline, a.outcome AS outcome, count(*) AS n, SUM(CASE WHEN a.number > 1 THEN 1 ELSE 0 END)::bigint AS retries
                FROM attempts a JOIN runs r ON r.id = a.run_id GROUP BY 1, 2
                """) {
                let pipeline: String = try row["pipeline"]
                stats.attempts[.init(pipeline, try row["outcome"])] = try row["n"]
                stats.retries[pipeline, default: 0] += try row["retries"] as Int
            }
            for row in try await tx.rows(PostgresQuery(unsafeSQL: durationsSQL)) {
                stats.durations[try row["pipeline"]] = .init(bounds: durationBounds,
                                                             cumulative: try durationBounds.indices.map { (try row["b\($0)"] as Int?) ?? 0 },
                                                             count: try row["n"], sumSeconds: (try row["total"] as Double?) ?? 0)
            }
            return stats
        }
    }
}
