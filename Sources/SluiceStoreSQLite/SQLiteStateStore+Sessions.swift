import Foundation
import GRDB
import SluiceCore
import SluiceStore

extension SQLiteStateStore {
    // MARK: sessions (inside createRun / finishRun transactions)

    /// Joins the run to its session, opening one when none fits. Called inside `createRun`'s transaction.
    static func joinSession(_ run: RunRecord, now: Date, _ db: Database) throws {
        guard let spec = run.spec.session else { return }
        let key = spec.groupKey(params: run.params, pipeline: run.pipeline)
        if let key, key.trimmingCharacters(in: .whitespaces).isEmpty {
            try insert([SessionRules.noKeyEvent(runID: run.id, pipeline: run.pipeline, spec: spec, now: now)], db)
            return
        }
        let candidates: [SessionRecord]
        switch spec.grouping {
        case .window(let window):
            candidates = try sessions(sql: "SELECT * FROM sessions WHERE name = ? AND opened_at >= ? ORDER BY opened_at DESC LIMIT 20",
                                      [spec.name, now.timeIntervalSince1970 - window.seconds], db)
        case .key:
            candidates = try sessions(sql: "SELECT * FROM sessions WHERE name = ? AND group_key = ? LIMIT 1", [spec.name, key], db)
        }
        let t = now.timeIntervalSince1970
        let event: EventRecord
        switch SessionRules.join(spec: spec, pipeline: run.pipeline, key: key, now: now, candidates: candidates) {
        case .open:
            let id = SessionRecord.generateID(name: spec.name, at: now)
            try db.exec(sql: "INSERT INTO sessions (id, name, group_key, status, spec, opened_at, deadline) VALUES (?, ?, ?, 'open', ?, ?, ?)",
                        arguments: [id, spec.name, key, try json(spec), t, t + spec.timeout.seconds])
            try db.exec(sql: "INSERT INTO session_members (session_id, pipeline, run_id, joined_at, late) VALUES (?, ?, ?, ?, 0)",
                        arguments: [id, run.pipeline, run.id.rawValue, t])
            event = SessionRules.joinEvent(runID: run.id, pipeline: run.pipeline, sessionID: id, opened: true, late: false, now: now)
        case .join(let id, let late, _):
            // A late run never replaces a member the session's report was decided with.
            try db.exec(sql: """
                INSERT INTO session_members (session_id, pipeline, run_id, joined_at, late) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (session_id, pipeline) DO UPDATE SET run_id = excluded.run_id, joined_at = excluded.joined_at, late = excluded.late
                WHERE NOT excluded.late OR session_members.late
                """, arguments: [id, run.pipeline, run.id.rawValue, t, late])
            event = db.changesCount == 0
                ? SessionRules.leftOutEvent(runID: run.id, pipeline: run.pipeline, sessionID: id, now: now)
                : SessionRules.joinEvent(runID: run.id, pipeline: run.pipeline, sessionID: id, opened: false, late: late, now: now)
        }
        try insert([event], db)
    }

    /// Records the end of a member run: completes its session when it was the last member, or reports it
    /// on its own when the session had closed. Writes the pipeline's own notifications. Inside `finishRun`.
    static func runEnded(_ id: RunID, outcome: RunOutcome, now: Date, _ db: Database) throws {
        guard let row = try db.row(sql: "SELECT \(runColumns) FROM runs WHERE id = ?", arguments: [id.rawValue]) else { return }
        let run = try runRecord(row)
        let rolledBack = try db.one(Bool.self, sql: "SELECT EXISTS (SELECT 1 FROM stages WHERE run_id = ? AND status = 'rolled_back')",
                                    arguments: [id.rawValue]) ?? false
        var rows = SessionRules.runNotifications(spec: run.spec, runID: id, outcome: outcome, rolledBack: rolledBack, now: now)
        if let sessionID = try db.one(String.self, sql: "SELECT session_id FROM session_members WHERE run_id = ?", arguments: [id.rawValue]),
           let session = try sessions(sql: "SELECT * FROM sessions WHERE id = ?", [sessionID], db).first {
            let end = SessionRules.memberEnded(session, runID: id, pipeline: run.pipeline, now: now)
            if end.completes {
                try db.exec(sql: "UPDATE sessions SET status = 'complete', closed_at = ? WHERE id = ? AND status = 'open'",
                            arguments: [now.timeIntervalSince1970, sessionID])
            }
            if end.late {
                try db.exec(sql: "UPDATE session_members SET late = 1 WHERE session_id = ? AND run_id = ?", arguments: [sessionID, id.rawValue])
            }
            rows += end.notifications
            try insert(end.events, db)
        }
        try insert(rows, db)
    }

    static func insert(_ notifications: [NotificationRecord], _ db: Database) throws {
        for n in notifications {
            try db.exec(sql: """
                INSERT INTO notifications (kind, run_id, session_id, origin, action, status, attempts, created_at, next_attempt_at)
                VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?)
                """, arguments: [n.kind.rawValue, n.runID?.rawValue, n.sessionID, n.origin, try json(n.action),
                                 n.createdAt.timeIntervalSince1970, n.nextAttemptAt.timeIntervalSince1970])
        }
    }

    static func sessions(sql: String, _ arguments: StatementArguments, _ db: Database) throws -> [SessionRecord] {
        var records = try db.rows(sql: sql, arguments: arguments).map { row in
            SessionRecord(id: row["id"], name: row["name"], key: row["group_key"],
                          status: SessionStatus(rawValue: row["status"]) ?? .open,
                          spec: try decode(SessionSpec.self, row["spec"], what: "session definition"),
                          openedAt: date(row, "opened_at") ?? Date(timeIntervalSince1970: 0),
                          deadline: date(row, "deadline") ?? Date(timeIntervalSince1970: 0), closedAt: date(row, "closed_at"))
        }
        guard !records.isEmpty else { return [] }
        let ids = records.map(\.id)
        let members = try db.rows(sql: """
            SELECT m.session_id, m.pipeline, m.run_id, m.joined_at, m.late, r.status FROM session_members m
            JOIN runs r ON r.id = m.run_id
            WHERE m.session_id IN (\(ids.map { _ in "?" }.joined(separator: ", "))) ORDER BY m.joined_at, m.pipeline
            """, arguments: StatementArguments(ids))
        let grouped = Dictionary(grouping: members, by: { $0["session_id"] as String })
        for i in records.indices {
            records[i].members = (grouped[records[i].id] ?? []).map { m in
                SessionRecord.Member(pipeline: m["pipeline"], runID: RunID(m["run_id"]),
                                     joinedAt: date(m, "joined_at") ?? Date(timeIntervalSince1970: 0),
                                     runStatus: RunStatus(rawValue: m["status"]) ?? .failed, late: m["late"] as Bool)
            }
        }
        return records
    }

    static func notificationRecord(_ row: Row) throws -> NotificationRecord {
        NotificationRecord(id: row["id"], kind: ReportKind(rawValue: row["kind"]) ?? .runReport,
                           runID: (row["run_id"] as String?).map(RunID.init), sessionID: row["session_id"],
                           origin: row["origin"], action: try decode(NotifyAction.self, row["action"], what: "notification"),
                           status: NotificationStatus(rawValue: row["status"]) ?? .failed, attempts: row["attempts"],
                           createdAt: date(row, "created_at") ?? Date(timeIntervalSince1970: 0),
                           nextAttemptAt: date(row, "next_attempt_at") ?? Date(timeIntervalSince1970: 0),
                           deliveredAt: date(row, "delivered_at"), lastError: row["last_error"])
    }

    // MARK: StateStore

    public func sessions(matching query: SessionQuery) async throws -> [SessionRecord] {
        try await read { db in
            var clauses: [String] = [], args: [(any DatabaseValueConvertible)?] = []
            if let name = query.name { clauses.append("name = ?"); args.append(name) }
            if let status = query.status { clauses.append("status = ?"); args.append(status.rawValue) }
            if let prefix = query.idPrefix { clauses.append("substr(id, 1, ?) = ?"); args.append(prefix.count); args.append(prefix) }
            args.append(max(1, min(query.limit, 1000)))
            let filter = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
            return try Self.sessions(sql: "SELECT * FROM sessions \(filter) ORDER BY opened_at DESC, id DESC LIMIT ?",
                                     StatementArguments(args), db)
        }
    }

    public func session(ofRun run: RunID) async throws -> SessionRecord? {
        try readNow { db in
            try Self.sessions(sql: "SELECT * FROM sessions WHERE id = (SELECT session_id FROM session_members WHERE run_id = ?)",
                              [run.rawValue], db).first
        }
    }

    public func expireSessions(now: Date) async throws -> [SessionRecord] {
        try await write { db in
            let due = try Self.sessions(sql: "SELECT * FROM sessions WHERE status = 'open' AND deadline <= ? ORDER BY deadline",
                                        [now.timeIntervalSince1970], db)
            var expired: [SessionRecord] = []
            for var session in due {
                try db.exec(sql: "UPDATE sessions SET status = 'timed_out', closed_at = ? WHERE id = ? AND status = 'open'",
                            arguments: [now.timeIntervalSince1970, session.id])
                guard db.changesCount == 1 else { continue }
                let (rows, events) = SessionRules.timedOut(session, now: now)
                try Self.insert(rows, db)
                try Self.insert(events, db)
                session.status = .timedOut
                session.closedAt = now
                expired.append(session)
            }
            return expired
        }
    }

    public func nextSessionDeadline() async throws -> Date? {
        try readNow { db in
            try db.one(Double.self, sql: "SELECT MIN(deadline) FROM sessions WHERE status = 'open'").map { Date(timeIntervalSince1970: $0) }
        }
    }

    public func claimNotifications(owner: String, limit: Int, now: Date, leaseUntil: Date) async throws -> [NotificationRecord] {
        try await write { db in
            let t = now.timeIntervalSince1970
            let due = try db.rows(sql: """
                SELECT * FROM notifications WHERE status = 'pending' AND next_attempt_at <= ?
                  AND (lease_expires_at IS NULL OR lease_expires_at < ?) ORDER BY id LIMIT ?
                """, arguments: [t, t, max(1, limit)]).map(Self.notificationRecord)
            for n in due {
                try db.exec(sql: "UPDATE notifications SET lease_owner = ?, lease_expires_at = ?, attempts = attempts + 1 WHERE id = ?",
                            arguments: [owner, leaseUntil.timeIntervalSince1970, n.id])
            }
            return due.map { var n = $0; n.attempts += 1; return n }
        }
    }

    public func finishDelivery(_ id: Int64, owner: String, outcome: DeliveryOutcome, now: Date) async throws -> Bool {
        try await write { db in
            let t = now.timeIntervalSince1970
            switch outcome {
            case .delivered:
                try db.exec(sql: """
                    UPDATE notifications SET status = 'delivered', delivered_at = ?, last_error = NULL, lease_owner = NULL, lease_expires_at = NULL
                    WHERE id = ? AND lease_owner = ? AND status = 'pending'
                    """, arguments: [t, id, owner])
            case .retry(let at, let error):
                try db.exec(sql: """
                    UPDATE notifications SET next_attempt_at = ?, last_error = ?, lease_owner = NULL, lease_expires_at = NULL
                    WHERE id = ? AND lease_owner = ? AND status = 'pending'
                    """, arguments: [at.timeIntervalSince1970, error, id, owner])
            case .failed(let error):
                try db.exec(sql: """
                    UPDATE notifications SET status = 'failed', last_error = ?, lease_owner = NULL, lease_expires_at = NULL
                    WHERE id = ? AND lease_owner = ? AND status = 'pending'
                    """, arguments: [error, id, owner])
            }
            return db.changesCount == 1
        }
    }

    public func notifications(matching query: NotificationQuery) async throws -> [NotificationRecord] {
        try await read { db in
            var clauses: [String] = [], args: [(any DatabaseValueConvertible)?] = []
            if let status = query.status { clauses.append("status = ?"); args.append(status.rawValue) }
            if let run = query.runID { clauses.append("run_id = ?"); args.append(run.rawValue) }
            if let session = query.sessionID { clauses.append("session_id = ?"); args.append(session) }
            args.append(max(1, min(query.limit, 1000)))
            let filter = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
            return try db.rows(sql: "SELECT * FROM notifications \(filter) ORDER BY id DESC LIMIT ?", arguments: StatementArguments(args))
                .map(Self.notificationRecord)
        }
    }

    public func retryNotification(_ id: Int64, now: Date) async throws -> Bool {
        try await write { db in
            try db.exec(sql: "UPDATE notifications SET status = 'pending', attempts = 0, next_attempt_at = ? WHERE id = ? AND status = 'failed'",
                        arguments: [now.timeIntervalSince1970, id])
            return db.changesCount == 1
        }
    }

    public func nextNotificationTime() async throws -> Date? {
        try readNow { db in
            try db.one(Double.self, sql: "SELECT MIN(next_attempt_at) FROM notifications WHERE status = 'pending'")
                .map { Date(timeIntervalSince1970: $0) }
        }
    }
}
