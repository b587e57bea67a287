import Foundation
import PostgresNIO
import SluiceCore
import SluiceStore

extension PostgresStateStore {
    /// The advisory lock key under which runs join sessions of one name ("slse").
    static let sessionLock: Int32 = 0x736c_7365

    // MARK: sessions (inside createRun / finishRun transactions)

    /// Joins the run to its session, opening one when none fits. Inside `createRun`'s transaction; joiners of
    /// one session name take turns (an advisory lock), so two first members never open two sessions.
    static func joinSession(_ run: RunRecord, now: Date, _ tx: Tx) async throws {
        guard let spec = run.spec.session else { return }
        try await tx.exec("SELECT pg_advisory_xact_lock(\(sessionLock), hashtext(\(spec.name)))")
        let key = spec.groupKey(params: run.params, pipeline: run.pipeline)
        if let key, key.trimmingCharacters(in: .whitespaces).isEmpty {
            try await insert([SessionRules.noKeyEvent(runID: run.id, pipeline: run.pipeline, spec: spec, now: now)], tx)
            return
        }
        let t = now.timeIntervalSince1970
        let candidates: [SessionRecord]
        switch spec.grouping {
        case .window(let window):
            candidates = try await sessions("""
                SELECT * FROM sessions WHERE name = \(spec.name) AND opened_at >= \(t - window.seconds) ORDER BY opened_at DESC LIMIT 20
                """, tx)
        case .key:
            candidates = try await sessions("SELECT * FROM sessions WHERE name = \(spec.name) AND group_key = \(key) LIMIT 1", tx)
        }
        let event: EventRecord
        switch SessionRules.join(spec: spec, pipeline: run.pipeline, key: key, now: now, candidates: candidates) {
        case .open:
            let id = SessionRecord.generateID(name: spec.name, at: now)
            try await tx.exec("""
                INSERT INTO sessions (id, name, group_key, status, spec, opened_at, deadline)
                VALUES (\(id), \(spec.name), \(key), 'open', \(try json(spec)), \(t), \(t + spec.timeout.seconds))
                """)
            try await tx.exec("""
                INSERT INTO session_members (session_id, pipeline, run_id, joined_at, late) VALUES (\(id), \(run.pipeline), \(run.id.rawValue), \(t), false)
                """)
            event = SessionRules.joinEvent(runID: run.id, pipeline: run.pipeline, sessionID: id, opened: true, late: false, now: now)
        case .join(let id, var late, _):
            // The session row is locked so a member finishing at this moment completes it before or after, not during.
            let status = try await tx.value("SELECT status FROM sessions WHERE id = \(id) FOR UPDATE", as: String.self)
            if status != SessionStatus.open.rawValue { late = true }
            // A late run never replaces a member the session's report was decided with.
            let written = try await tx.rows("""
                INSERT INTO session_members (session_id, pipeline, run_id, joined_at, late) VALUES (\(id), \(run.pipeline), \(run.id.rawValue), \(t), \(late))
                ON CONFLICT (session_id, pipeline) DO UPDATE SET run_id = excluded.run_id, joined_at = excluded.joined_at, late = excluded.late
                WHERE NOT excluded.late OR session_members.late
                RETURNING run_id
                """)
            event = written.isEmpty
                ? SessionRules.leftOutEvent(runID: run.id, pipeline: run.pipeline, sessionID: id, now: now)
                : SessionRules.joinEvent(runID: run.id, pipeline: run.pipeline, sessionID: id, opened: false, late: late, now: now)
        }
        try await insert([event], tx)
    }

    /// Records the end of a member run: completes its session when it was the last member (the session row
    /// locked first, so of two last members finishing at once exactly one sees the other ended), or reports
    /// it on its own when the session had closed. Writes the pipeline's own notifications. Inside `finishRun`.
    static func runEnded(_ id: RunID, outcome: RunOutcome, now: Date, _ tx: Tx) async throws {
        guard let row = try await tx.rows("SELECT * FROM runs WHERE id = \(id.rawValue)").first else { return }
        let run = try runRecord(row)
        let rolledBack = try await tx.value("""
            SELECT EXISTS (SELECT 1 FROM stages WHERE run_id = \(id.rawValue) AND status = 'rolled_back')
            """, as: Bool.self) ?? false
        var rows = SessionRules.runNotifications(spec: run.spec, runID: id, outcome: outcome, rolledBack: rolledBack, now: now)
        if let sessionID = try await tx.value("SELECT session_id FROM session_members WHERE run_id = \(id.rawValue)", as: String.self) {
            try await tx.exec("SELECT 1 FROM sessions WHERE id = \(sessionID) FOR UPDATE")
            if let session = try await sessions("SELECT * FROM sessions WHERE id = \(sessionID)", tx).first {
                let end = SessionRules.memberEnded(session, runID: id, pipeline: run.pipeline, now: now)
                if end.completes {
                    try await tx.exec("""
                        UPDATE sessions SET status = 'complete', closed_at = \(now.timeIntervalSince1970) WHERE id = \(sessionID) AND status = 'open'
                        """)
                }
                if end.late {
                    try await tx.exec("UPDATE session_members SET late = true WHERE session_id = \(sessionID) AND run_id = \(id.rawValue)")
                }
                rows += end.notifications
                try await insert(end.events, tx)
            }
        }
        try await insert(rows, tx)
    }

    static func insert(_ notifications: [NotificationRecord], _ tx: Tx) async throws {
        for n in notifications {
            try await tx.exec("""
                INSERT INTO notifications (kind, run_id, session_id, origin, action, status, attempts, created_at, next_attempt_at)
                VALUES (\(n.kind.rawValue), \(n.runID?.rawValue), \(n.sessionID), \(n.origin), \(try json(n.action)), 'pending', 0,
                  \(n.createdAt.timeIntervalSince1970), \(n.nextAttemptAt.timeIntervalSince1970))
                """)
        }
    }

    static func sessions(_ query: PostgresQuery, _ tx: Tx) async throws -> [SessionRecord] {
        var records: [SessionRecord] = []
        for row in try await tx.rows(query) {
            records.append(SessionRecord(
                id: try row["id"], name: try row["name"], key: try row["group_key"],
                status: SessionStatus(rawValue: try row["status"]) ?? .open,
                spec: try decode(SessionSpec.self, try row["spec"], what: "session definition"),
                openedAt: try row.date("opened_at") ?? Date(timeIntervalSince1970: 0),
                deadline: try row.date("deadline") ?? Date(timeIntervalSince1970: 0), closedAt: try row.date("closed_at")))
        }
        guard !records.isEmpty else { return [] }
        let ids = records.map(\.id)
        let members = try await tx.rows("""
            SELECT m.session_id, m.pipeline, m.run_id, m.joined_at, m.late, r.status FROM session_members m
            JOIN runs r ON r.id = m.run_id WHERE m.session_id = ANY(\(ids)::text[]) ORDER BY m.joined_at, m.pipeline
            """)
        var grouped: [String: [SessionRecord.Member]] = [:]
        for m in members {
            grouped[try m["session_id"], default: []].append(SessionRecord.Member(
                pipeline: try m["pipeline"], runID: RunID(try m["run_id"]),
                joinedAt: try m.date("joined_at") ?? Date(timeIntervalSince1970: 0),
                runStatus: RunStatus(rawValue: try m["status"]) ?? .failed, late: try m["late"]))
        }
        for i in records.indices { records[i].members = grouped[records[i].id] ?? [] }
        return records
    }

    static func notificationRecord(_ row: Row) throws -> NotificationRecord {
        NotificationRecord(id: try row["id"], kind: ReportKind(rawValue: try row["kind"]) ?? .runReport,
                           runID: (try row["run_id"] as String?).map(RunID.init), sessionID: try row["session_id"],
                           origin: try row["origin"], action: try decode(NotifyAction.self, try row["action"], what: "notification"),
                           status: NotificationStatus(rawValue: try row["status"]) ?? .failed,
                           attempts: Int(try row["attempts"] as Int64),
                           createdAt: try row.date("created_at") ?? Date(timeIntervalSince1970: 0),
                           nextAttemptAt: try row.date("next_attempt_at") ?? Date(timeIntervalSince1970: 0),
                           deliveredAt: try row.date("delivered_at"), lastError: try row["last_error"])
    }

    // MARK: StateStore

    public func sessions(matching query: SessionQuery) async throws -> [SessionRecord] {
        let status = query.status?.rawValue, limit = max(1, min(query.limit, 1000))
        return try await read { tx in
            try await Self.sessions("""
                SELECT * FROM sessions WHERE (\(query.name)::text IS NULL OR name = \(query.name))
                AND (\(status)::text IS NULL OR status = \(status))
                AND (\(query.idPrefix)::text IS NULL OR starts_with(id, \(query.idPrefix)))
                ORDER BY opened_at DESC, id DESC LIMIT \(limit)
                """, tx)
        }
    }

    public func session(ofRun run: RunID) async throws -> SessionRecord? {
        try await read { tx in
            try await Self.sessions("""
                SELECT * FROM sessions WHERE id = (SELECT session_id FROM session_members WHERE run_id = \(run.rawValue))
                """, tx).first
        }
    }

    public func expireSessions(now: Date) async throws -> [SessionRecord] {
        let t = now.timeIntervalSince1970
        // Only a session that timed out here (its notices are new work) wakes the others: every delivery
        // pass calls this, and a notice sent by each pass would wake every other pass, back and forth.
        return try await transaction(notifyWhen: { !$0.isEmpty }) { tx in
            let ids = try await tx.rows("""
                SELECT id FROM sessions WHERE status = 'open' AND deadline <= \(t) ORDER BY deadline FOR UPDATE SKIP LOCKED
                """).map { try $0["id"] as String }
            guard !ids.isEmpty else { return [] }
            var expired: [SessionRecord] = []
            for var session in try await Self.sessions("SELECT * FROM sessions WHERE id = ANY(\(ids)::text[])", tx) {
                let changed = try await tx.rows("""
                    UPDATE sessions SET status = 'timed_out', closed_at = \(t) WHERE id = \(session.id) AND status = 'open' RETURNING id
                    """)
                guard !changed.isEmpty else { continue }
                let (rows, events) = SessionRules.timedOut(session, now: now)
                try await Self.insert(rows, tx)
                try await Self.insert(events, tx)
                session.status = .timedOut
                session.closedAt = now
                expired.append(session)
            }
            return expired
        }
    }

    public func nextSessionDeadline() async throws -> Date? {
        try await read { tx in
            try await tx.value("SELECT MIN(deadline) FROM sessions WHERE status = 'open'", as: Double.self)
                .map { Date(timeIntervalSince1970: $0) }
        }
    }

    public func claimNotifications(owner: String, limit: Int, now: Date, leaseUntil: Date) async throws -> [NotificationRecord] {
        let t = now.timeIntervalSince1970, n = max(1, limit)
        return try await transaction { tx in
            try await tx.rows("""
                UPDATE notifications SET lease_owner = \(owner), lease_expires_at = \(leaseUntil.timeIntervalSince1970), attempts = attempts + 1
                WHERE id IN (SELECT id FROM notifications WHERE status = 'pending' AND next_attempt_at <= \(t)
                  AND (lease_expires_at IS NULL OR lease_expires_at < \(t)) ORDER BY id LIMIT \(n) FOR UPDATE SKIP LOCKED)
                RETURNING *
                """).map(Self.notificationRecord).sorted { $0.id < $1.id }
        }
    }

    public func finishDelivery(_ id: Int64, owner: String, outcome: DeliveryOutcome, now: Date) async throws -> Bool {
        let t = now.timeIntervalSince1970
        return try await transaction { tx in
            let query: PostgresQuery = switch outcome {
            case .delivered:
                """
                UPDATE notifications SET status = 'delivered', delivered_at = \(t), last_error = NULL, lease_owner = NULL, lease_expires_at = NULL
                WHERE id = \(id) AND lease_owner = \(owner) AND status = 'pending' RETURNING id
                """
            case .retry(let at, let error):
                """
                UPDATE notifications SET next_attempt_at = \(at.timeIntervalSince1970), last_error = \(error), lease_owner = NULL, lease_expires_at = NULL
                WHERE id = \(id) AND lease_owner = \(owner) AND status = 'pending' RETURNING id
                """
            case .failed(let error):
                """
                UPDATE notifications SET status = 'failed', last_error = \(error), lease_owner = NULL, lease_expires_at = NULL
                WHERE id = \(id) AND lease_owner = \(owner) AND status = 'pending' RETURNING id
                """
            }
            return try await tx.rows(query).count == 1
        }
    }

    public func notifications(matching query: NotificationQuery) async throws -> [NotificationRecord] {
        let status = query.status?.rawValue, run = query.runID?.rawValue, limit = max(1, min(query.limit, 1000))
        return try await read { tx in
            try await tx.rows("""
                SELECT * FROM notifications WHERE (\(status)::text IS NULL OR status = \(status))
                AND (\(run)::text IS NULL OR run_id = \(run)) AND (\(query.sessionID)::text IS NULL OR session_id = \(query.sessionID))
                ORDER BY id DESC LIMIT \(limit)
                """).map(Self.notificationRecord)
        }
    }

    public func retryNotification(_ id: Int64, now: Date) async throws -> Bool {
        try await transaction { tx in
            try await tx.rows("""
                UPDATE notifications SET status = 'pending', attempts = 0, next_attempt_at = \(now.timeIntervalSince1970)
                WHERE id = \(id) AND status = 'failed' RETURNING id
                """).count == 1
        }
    }

    public func nextNotificationTime() async throws -> Date? {
        try await read { tx in
            try await tx.value("SELECT MIN(next_attempt_at) FROM notifications WHERE status = 'pending'", as: Double.self)
                .map { Date(timeIntervalSince1970: $0) }
        }
    }
}
