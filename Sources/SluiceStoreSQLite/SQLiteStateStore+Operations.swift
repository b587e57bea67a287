import Foundation
import GRDB
import GRDBSQLite
import SluiceCore
import SluiceStore

extension SQLiteStateStore {
    // MARK: runs

    public func createRun(_ run: RunRecord, overlap: OverlapPolicy, now: Date, events: [EventRecord]) async throws -> CreateRunResult {
        try await write { db in
            if let key = run.idempotencyKey,
               let row = try db.row(sql: "SELECT \(Self.runColumns) FROM runs WHERE idempotency_key = ?", arguments: [key]) {
                return .duplicate(try Self.runRecord(row))
            }
            if overlap != .allow {
                let active = try db.rows(sql: """
                    SELECT \(Self.runColumns) FROM runs WHERE pipeline = ? AND status IN ('pending', 'running')
                      AND (lease_expires_at IS NULL OR lease_expires_at > ?) ORDER BY id
                    """, arguments: [run.pipeline, now.timeIntervalSince1970]).map(Self.runRecord)
                if !active.isEmpty { return .overlapping(active) }
            }
            try db.exec(sql: """
                INSERT INTO runs (id, pipeline, spec, params, trigger, status, created_at, started_at, finished_at,
                  cancel_requested_at, lease_owner, lease_host, lease_pid, lease_expires_at, idempotency_key, run_dir)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?, ?)
                """, arguments: [run.id.rawValue, run.pipeline, try Self.json(run.spec), try Self.json(run.params),
                                 run.trigger, run.status.rawValue, run.createdAt.timeIntervalSince1970,
                                 run.startedAt?.timeIntervalSince1970, run.leaseOwner?.id, run.leaseOwner?.host,
                                 run.leaseOwner.map { Int64($0.pid) }, run.leaseExpiresAt?.timeIntervalSince1970,
                                 run.idempotencyKey, run.runDir])
            for (position, stage) in run.spec.stages.enumerated() {
                try db.exec(sql: "INSERT INTO stages (run_id, name, position, status, producer, tolerance, queue, max_running) VALUES (?, ?, ?, 'pending', ?, ?, ?, ?)",
                               arguments: [run.id.rawValue, stage.name, position, stage.forEach,
                                           stage.forEach == nil ? nil : try Self.json(stage.maxFailedItems),
                                           stage.queueName, stage.concurrency])
            }
            try Self.insert(events, db)
            try Self.joinSession(run, now: now, db)
            return .created(run)
        }
    }

    public func run(_ id: RunID) async throws -> RunRecord? {
        try readNow { db in
            try db.row(sql: "SELECT \(Self.runColumns) FROM runs WHERE id = ?", arguments: [id.rawValue]).map(Self.runRecord)
        }
    }

    public func runs(idPrefix prefix: String, limit: Int) async throws -> [RunRecord] {
        try await read { db in
            try db.rows(sql: "SELECT \(Self.runColumns) FROM runs WHERE substr(id, 1, ?) = ? ORDER BY id DESC LIMIT ?",
                             arguments: [prefix.count, prefix, limit]).map(Self.runRecord)
        }
    }

    public func recentRuns(pipeline: String?, limit: Int) async throws -> [RunRecord] {
        try await read { db in
            if let pipeline {
                return try db.rows(sql: "SELECT \(Self.runColumns) FROM runs WHERE pipeline = ? ORDER BY created_at DESC, id DESC LIMIT ?",
                                        arguments: [pipeline, limit]).map(Self.runRecord)
            }
            return try db.rows(sql: "SELECT \(Self.runColumns) FROM runs ORDER BY created_at DESC, id DESC LIMIT ?",
                                    arguments: [limit]).map(Self.runRecord)
        }
    }

    public func unfinishedRuns(pipeline: String) async throws -> [RunRecord] {
        try await read { db in
            try db.rows(sql: "SELECT \(Self.runColumns) FROM runs WHERE pipeline = ? AND status IN ('pending', 'running') ORDER BY id",
                             arguments: [pipeline]).map(Self.runRecord)
        }
    }

    public func openRuns(limit: Int) async throws -> [RunRecord] {
        try await read { db in
            try db.rows(sql: "SELECT \(Self.runColumns) FROM runs WHERE status IN ('pending', 'running') ORDER BY created_at, id LIMIT ?",
                             arguments: [limit]).map(Self.runRecord)
        }
    }

    public func acquireRun(_ id: RunID, owner: LeaseOwner, until: Date, replacing: LeaseOwner?, now: Date,
                           events: [EventRecord]) async throws -> LeaseResult {
        try await write { db in
            guard let row = try db.row(sql: "SELECT \(Self.runColumns) FROM runs WHERE id = ?", arguments: [id.rawValue]) else {
                return .notFound
            }
            let run = try Self.runRecord(row)
            if let holder = run.leaseOwner, holder.id != owner.id, let expires = run.leaseExpiresAt, expires > now,
               holder.id != replacing?.id {
                return .heldBy(holder, until: expires)
            }
            let status: RunStatus = .running
            try db.exec(sql: """
                UPDATE runs SET status = ?, started_at = COALESCE(started_at, ?), finished_at = NULL,
                  lease_owner = ?, lease_host = ?, lease_pid = ?, lease_expires_at = ? WHERE id = ?
                """, arguments: [status.rawValue, now.timeIntervalSince1970, owner.id, owner.host, Int64(owner.pid),
                                 until.timeIntervalSince1970, id.rawValue])
            try Self.insert(events, db)
            return .acquired(run.acquired(by: owner, until: until, now: now))
        }
    }

    public func renewLeases(run: RunID, owner: LeaseOwner, until: Date) async throws -> Bool {
        try await write { db in
            try db.exec(sql: "UPDATE runs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?",
                           arguments: [until.timeIntervalSince1970, run.rawValue, owner.id])
            guard db.changesCount == 1 else { return false }
            try db.exec(sql: "UPDATE tasks SET lease_expires_at = ? WHERE run_id = ? AND status = 'running' AND lease_owner = ?",
                           arguments: [until.timeIntervalSince1970, run.rawValue, owner.id])
            return true
        }
    }

    public func expireLease(run: RunID, owner: LeaseOwner, now: Date) async throws {
        try await write { db in
            try db.exec(sql: "UPDATE runs SET lease_expires_at = ? WHERE id = ? AND lease_owner = ?",
                           arguments: [now.timeIntervalSince1970, run.rawValue, owner.id])
            try db.exec(sql: "UPDATE tasks SET lease_expires_at = ? WHERE run_id = ? AND lease_owner = ? AND status = 'running'",
                           arguments: [now.timeIntervalSince1970, run.rawValue, owner.id])
        }
    }

    public func requestCancel(_ id: RunID, now: Date, events: [EventRecord]) async throws -> CancelRequestResult {
        try await write { db in
            guard let row = try db.row(sql: "SELECT \(Self.runColumns) FROM runs WHERE id = ?", arguments: [id.rawValue]) else {
                return .notFound
            }
            var run = try Self.runRecord(row)
            if run.status.isTerminal { return .alreadyFinished(run) }
            if run.cancelRequestedAt == nil {
                try db.exec(sql: "UPDATE runs SET cancel_requested_at = ? WHERE id = ?",
                               arguments: [now.timeIntervalSince1970, id.rawValue])
                try Self.insert(events, db)
                run.cancelRequestedAt = now
            }
            return .requested(run)
        }
    }

    public func cancelRequested(_ id: RunID) async throws -> Bool {
        try readNow { db in
            try db.one(Bool.self, sql: "SELECT cancel_requested_at IS NOT NULL FROM runs WHERE id = ?", arguments: [id.rawValue]) ?? false
        }
    }

    public func finishRun(_ id: RunID, outcome: RunOutcome, owner: LeaseOwner, now: Date, events: [EventRecord]) async throws -> Bool {
        try await write { db in
            try db.exec(sql: """
                UPDATE runs SET status = ?, finished_at = ?, lease_owner = NULL, lease_host = NULL, lease_pid = NULL,
                  lease_expires_at = NULL
                WHERE id = ? AND status IN ('pending', 'running')
                  AND (lease_owner IS NULL OR lease_owner = ? OR lease_expires_at < ?)
                """, arguments: [outcome.runStatus.rawValue, now.timeIntervalSince1970, id.rawValue, owner.id,
                                 now.timeIntervalSince1970])
            guard db.changesCount == 1 else { return false }
            try Self.insert(events, db)
            try Self.runEnded(id, outcome: outcome, now: now, db)
            return true
        }
    }

    public func abandonRunningAttempts(_ id: RunID, heldBy: String?, maxLostAttempts: Int, now: Date,
                                       events: [EventRecord]) async throws -> [AttemptRecord] {
        try await write { db in
            let t = now.timeIntervalSince1970
            // Local stages whose process no longer holds the run: their items become pending tasks.
            if let holder = try db.row(sql: "SELECT lease_owner, lease_expires_at FROM runs WHERE id = ?", arguments: [id.rawValue]) {
                let live = (holder[1] as Double?).map { $0 >= t } ?? false ? holder[0] as String? : nil
                for stage in try db.all(String.self, sql: "SELECT name FROM stages WHERE run_id = ? AND local_owner IS NOT NULL AND local_owner IS NOT ?",
                                        arguments: [id.rawValue, live]) {
                    try Self.endLocal(run: id, stage: stage, status: .pending, now: t, db)
                }
            }
            let lost = try db.rows(sql: """
                SELECT \(Self.columns(Self.attemptColumns, of: "a")) FROM attempts a JOIN tasks t ON t.id = a.task_id AND t.attempts = a.number
                WHERE t.run_id = ? AND a.outcome = 'running' AND t.status = 'running'
                  AND (t.lease_owner = ? OR t.lease_expires_at < ? OR t.lease_owner IS NULL)
                """, arguments: [id.rawValue, heldBy, t]).map(Self.attemptRecord)
            // A takeover is recorded even when nothing was running (an in-process fan-out holds its items in
            // memory: nothing of it is lost); a look for expired leases that found none is not.
            guard !lost.isEmpty || heldBy != nil else { return [] }
            for attempt in lost {
                try db.exec(sql: """
                    UPDATE attempts SET outcome = 'lost', finished_at = ?,
                      message = 'the process running this attempt ended before recording a result'
                    WHERE task_id = ? AND number = ? AND outcome = 'running'
                    """, arguments: [t, attempt.taskID, attempt.number])
                // A lost attempt does not use the retry budget, but a task that keeps losing its process
                // (it may be what kills it) fails after `maxLostAttempts`.
                try db.exec(sql: """
                    UPDATE tasks SET status = CASE WHEN lost_attempts + 1 >= ? THEN 'failed' ELSE 'pending' END,
                      finished_at = CASE WHEN lost_attempts + 1 >= ? THEN ? ELSE NULL END,
                      lease_owner = NULL, lease_expires_at = NULL, not_before = NULL,
                      lost_attempts = lost_attempts + 1, retry_base = retry_base + 1
                    WHERE id = ? AND status = 'running'
                    """, arguments: [maxLostAttempts, maxLostAttempts, t, attempt.taskID])
            }
            try Self.insert(events, db)
            for stage in Set(lost.map(\.stage)).sorted() {
                if let ended = try Self.rollUp(run: id, stage: stage, now: t, db) {
                    let event = EventRecord(runID: id, pipeline: events.first?.pipeline ?? "", stage: stage,
                                            event: "stage.\(ended.status.rawValue)", time: now,
                                            message: "stage ended: \(ended.status.rawValue) (its task lost its process \(maxLostAttempts) times)")
                    try Self.insert([event], db)
                    _ = try Self.rollUpConsumers(of: ended, pipeline: event.pipeline, now: now, db)
                }
            }
            return lost
        }
    }

    public func prepareResume(_ id: RunID, retryFailed: Bool, now: Date, events: [EventRecord]) async throws {
        try await write { db in
            let statuses = retryFailed ? "('failed', 'cancelled')" : "('cancelled')"
            try db.exec(sql: """
                UPDATE tasks SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, not_before = NULL,
                  retry_base = attempts, finished_at = NULL
                WHERE run_id = ? AND status IN \(statuses)
                """, arguments: [id.rawValue])
            // Stages that did not end well go back to work: running when they have tasks to do (or take
            // items from a producer), pending to be planned again otherwise. Without --retry-failed a
            // stage whose tasks failed keeps its failure, and so do the stages it blocked.
            let reopen = retryFailed ? "status NOT IN ('success', 'skipped')"
                : "(status IN ('cancelled', 'pending', 'running') OR EXISTS (SELECT 1 FROM tasks WHERE tasks.run_id = stages.run_id AND tasks.stage = stages.name AND tasks.status IN ('pending', 'running')))"
            try db.exec(sql: """
                UPDATE stages SET status = CASE WHEN local_done > 0 OR EXISTS (SELECT 1 FROM tasks WHERE tasks.run_id = stages.run_id
                    AND tasks.stage = stages.name) THEN 'running' ELSE 'pending' END,
                  reason = NULL, finished_at = NULL
                WHERE run_id = ? AND \(reopen)
                """, arguments: [id.rawValue])
            try db.exec(sql: "UPDATE runs SET cancel_requested_at = NULL, finished_at = NULL WHERE id = ?", arguments: [id.rawValue])
            try Self.insert(events, db)
            // A reopened stage whose tasks are all done (e.g. a fan-out stage whose producer finished) ends again at once.
            let t = now.timeIntervalSince1970
            for stage in try db.all(String.self, sql: "SELECT name FROM stages WHERE run_id = ? AND status = 'running' ORDER BY position", arguments: [id.rawValue]) {
                if let ended = try Self.rollUp(run: id, stage: stage, now: t, db) {
                    try Self.insert([Self.stageEndEvent(ended, pipeline: events.first?.pipeline ?? "", now: now)], db)
                }
            }
        }
    }

    // MARK: stages and tasks

    public func stages(of run: RunID) async throws -> [StageRecord] {
        // Read at every planning step (a chain of 100 stages reads them 100 times): through the C API.
        try readNow { db in
            var stages: [StageRecord] = []
            try db.cachedStatement(sql: "SELECT name, status, reason, started_at, finished_at FROM stages WHERE run_id = ? ORDER BY position")
                .forEachRow(binding: { $0.add(run.rawValue) }) { row in
                    stages.append(StageRecord(runID: run, name: RawColumns.text(row, 0),
                                              status: StageStatus(rawValue: RawColumns.text(row, 1)) ?? .failed,
                                              reason: RawColumns.optionalText(row, 2), startedAt: RawColumns.date(row, 3),
                                              finishedAt: RawColumns.date(row, 4)))
                }
            return stages
        }
    }

    public func tasks(of run: RunID) async throws -> [TaskRecord] {
        try await read { db in
            try db.rows(sql: """
                SELECT \(Self.taskColumns) FROM tasks WHERE run_id = ?
                UNION ALL SELECT \(Self.taskColumns) FROM done_tasks WHERE run_id = ? ORDER BY id
                """, arguments: [run.rawValue, run.rawValue]).map(Self.taskRecord)
        }
    }

    public func attempts(of run: RunID) async throws -> [AttemptRecord] {
        try await read { db in
            try db.rows(sql: """
                SELECT \(Self.columns(Self.attemptColumns, of: "a")) FROM tasks t CROSS JOIN attempts a ON a.task_id = t.id WHERE t.run_id = ?
                UNION ALL SELECT \(Self.attemptColumns) FROM done_attempts WHERE run_id = ? ORDER BY task_id, number
                """, arguments: [run.rawValue, run.rawValue]).map(Self.attemptRecord)
        }
    }

    public func applyStageTransitions(run: RunID, _ transitions: [StageTransition], now: Date, events: [EventRecord]) async throws {
        try await write { db in try Self.apply(transitions, run: run, now: now, events: events, db) }
    }

    public func applyStageTransitions(run: RunID, _ transitions: [StageTransition], now: Date, events: [EventRecord],
                                      thenClaim claim: ClaimRequest) async throws -> Claim {
        try await write { db in
            try Self.apply(transitions, run: run, now: now, events: events, db)
            return try Self.claim(run: run, claim, now: now, db)
        }
    }

    static func apply(_ transitions: [StageTransition], run: RunID, now: Date, events: [EventRecord], _ db: Database) throws {
        let t = now.timeIntervalSince1970
        for transition in transitions {
            switch transition {
            case .start(let stage, _), .startLocal(let stage, _):
                try db.exec(sql: "UPDATE stages SET status = 'running', started_at = ?, reason = NULL WHERE run_id = ? AND name = ? AND status = 'pending'",
                               arguments: [t, run.rawValue, stage])
                guard db.changesCount == 1 else { continue }
                // A run recorded for workers starts when the first of its stages does.
                try db.exec(sql: "UPDATE runs SET status = 'running', started_at = COALESCE(started_at, ?) WHERE id = ? AND status = 'pending'",
                            arguments: [t, run.rawValue])
                if case .start(_, let keys) = transition, !keys.isEmpty {
                    let insert = try db.cachedStatement(sql: """
                        INSERT INTO tasks (id, run_id, stage, key, status, created_at) VALUES (?, ?, ?, ?, 'pending', ?)
                        ON CONFLICT (run_id, stage, key) DO NOTHING
                        """)
                    var id = try takeTaskIDs(keys.count, db)
                    for key in keys {
                        try insert.execute(arguments: [id, run.rawValue, stage, key, t])
                        id += 1
                    }
                }
                guard let producer = try db.one(String.self, sql: "SELECT producer FROM stages WHERE run_id = ? AND name = ?",
                                                arguments: [run.rawValue, stage]) else { continue }
                let emitted = try db.one(Int.self, sql: "SELECT count(*) FROM items WHERE run_id = ? AND stage = ?",
                                         arguments: [run.rawValue, producer]) ?? 0
                if case .startLocal(_, let owner) = transition {
                    // Its items so far get their task ids (their rowids; items written before `v13-done-items`,
                    // ids of their own); the tasks are written as they end.
                    try db.exec(sql: """
                        UPDATE items SET task_id = rowid WHERE run_id = ? AND stage = ? AND rowid >= (SELECT items_from FROM task_ids)
                        """, arguments: [run.rawValue, producer])
                    let older = try db.one(Int.self, sql: """
                        SELECT count(*) FROM items WHERE run_id = ? AND stage = ? AND rowid < (SELECT items_from FROM task_ids)
                        """, arguments: [run.rawValue, producer]) ?? 0
                    if older > 0 {
                        try db.exec(sql: """
                            UPDATE items SET task_id = numbered.id FROM (
                              SELECT rowid AS item, ? + row_number() OVER (ORDER BY seq) - 1 AS id FROM items
                              WHERE run_id = ? AND stage = ? AND rowid < (SELECT items_from FROM task_ids)
                            ) AS numbered WHERE items.rowid = numbered.item
                            """, arguments: [try takeTaskIDs(older, db), run.rawValue, producer])
                    }
                    // The process that runs its local tasks, kept after the stage ends (`done_attempts` shows it).
                    try db.exec(sql: """
                        UPDATE stages SET local_owner = ?, local_left = ?, local_by = ?, local_host = ?, local_pid = ?
                        WHERE run_id = ? AND name = ?
                        """, arguments: [owner.id, emitted, owner.id, owner.host, Int64(owner.pid), run.rawValue, stage])
                } else {
                    let first = try takeTaskIDs(emitted, db)
                    // A fan-out stage takes every item its producer emitted so far; later ones arrive with emitItems.
                    try db.exec(sql: """
                        INSERT INTO tasks (id, run_id, stage, key, status, created_at, item)
                        SELECT ? + row_number() OVER (ORDER BY seq) - 1, run_id, ?, key, 'pending', ?, value
                        FROM items WHERE run_id = ? AND stage = ? AND done_stage IS NOT ? ORDER BY seq
                        ON CONFLICT (run_id, stage, key) DO NOTHING
                        """, arguments: [first, stage, t, run.rawValue, producer, stage])
                }
                if let ended = try Self.rollUp(run: run, stage: stage, now: t, db) {
                    try Self.insert([Self.stageEndEvent(ended, pipeline: events.first?.pipeline ?? "", now: now)], db)
                }
            case .finish(let stage, let status, let reason):
                try db.exec(sql: "UPDATE stages SET status = ?, reason = ?, finished_at = ? WHERE run_id = ? AND name = ? AND status = 'pending'",
                               arguments: [status.rawValue, reason, t, run.rawValue, stage])
            }
        }
        try Self.insert(events, db)
    }

    /// Takes `n` task ids and returns the first. Every task row gets its id here, not from SQLite's rowid
    /// allocation (the largest id plus one), which would hand out again an id reserved for a local task
    /// (it is not a row until the task ends).
    static func takeTaskIDs(_ n: Int, _ db: Database) throws -> Int64 {
        try db.one(Int64.self, sql: "UPDATE task_ids SET next = next + ? RETURNING next - ?", arguments: [n, n]) ?? 1
    }

    /// The items of local stages of the run (all of them, or those `stage` names) that have no task row
    /// become task rows with `status` under their reserved ids, and the stages are local no more: their
    /// tasks go the way of every other task (claimed, taken back, resumed). `finished` for an end status.
    static func endLocal(run: RunID, stage: StageName? = nil, status: TaskStatus, now t: Double, _ db: Database) throws {
        let local = try db.rows(sql: """
            SELECT name, producer, local_left FROM stages WHERE run_id = ? AND local_owner IS NOT NULL AND (? IS NULL OR name = ?)
            """, arguments: [run.rawValue, stage, stage])
        for row in local {
            let name: String = row[0]
            // `local_left` counts the items without a task: with none, there is nothing to look for.
            if row[2] as Int > 0 {
                try db.exec(sql: """
                    INSERT INTO tasks (id, run_id, stage, key, status, created_at, finished_at, item)
                    SELECT i.task_id, i.run_id, ?, i.key, ?, ?, ?, i.value FROM items i
                    WHERE i.run_id = ? AND i.stage = ? AND i.task_id IS NOT NULL AND i.done_stage IS NULL
                      AND NOT EXISTS (SELECT 1 FROM tasks WHERE id = i.task_id)
                    ORDER BY i.seq
                    ON CONFLICT DO NOTHING
                    """, arguments: [name, status.rawValue, t, status.isTerminal ? t : nil, run.rawValue, row[1] as String?])
            }
            try db.exec(sql: "UPDATE stages SET local_owner = NULL, local_left = 0 WHERE run_id = ? AND name = ?",
                        arguments: [run.rawValue, name])
        }
    }

    public var keepsLocalTasks: Bool { true }

    public func localTasks(run: RunID, stage: StageName, owner: LeaseOwner, after position: Int64, limit: Int) async throws -> [LocalTask] {
        try readNow { db in
            guard let items = try Self.producerItems(run: run, consumer: stage, db), items.localOwner == owner.id,
                  let rowids = items.rowids else { return [] }
            var tasks: [LocalTask] = []
            // A stage's items are in rowid order as they were emitted (see `v13-done-items`): the read goes on
            // from the rowid it stopped at, through the table itself, between the producer's first and last
            // items (the rowids outside are other runs' items, millions in a long-lived store).
            let rows = try Row.fetchCursor(db.cachedStatement(sql: """
                SELECT i.rowid, i.task_id, i.key, i.value, i.created_at FROM items i NOT INDEXED
                WHERE i.rowid > ? AND i.rowid <= ? AND i.run_id = ? AND i.stage = ? AND i.task_id IS NOT NULL AND i.done_stage IS NULL
                  AND NOT EXISTS (SELECT 1 FROM tasks WHERE id = i.task_id)
                ORDER BY i.rowid LIMIT ?
                """), arguments: [max(position, rowids.lowerBound - 1), rowids.upperBound, run.rawValue, items.producer, limit])
            while let row = try rows.next() {
                let task = TaskRecord(id: row[1], runID: run, stage: stage, key: row[2], status: .running, attempts: 1, lostAttempts: 0,
                                      notBefore: nil, leaseOwner: owner.id, leaseExpiresAt: nil,
                                      createdAt: Date(timeIntervalSince1970: row[4]), finishedAt: nil, item: row[3])
                tasks.append(LocalTask(position: row[0], task: task))
            }
            return tasks
        }
    }

    /// The producer of fan-out stage `consumer` in `run`, the process the consumer runs local to (if it
    /// does), and the rowids its producer's items lie between (nil while it has none; other runs' items
    /// may lie between them too). Kept in the producer's stage as its items are written
    /// (`v14-item-ranges`): the (run, stage, key) index gives the smallest rowid only by reading all of
    /// the stage's entries.
    static func producerItems(run: RunID, consumer: StageName, _ db: Database)
        throws -> (producer: StageName, localOwner: String?, rowids: ClosedRange<Int64>?)? {
        guard let row = try db.row(sql: """
            SELECT s.producer, s.local_owner, p.first_item, p.last_item
            FROM stages s JOIN stages p ON p.run_id = s.run_id AND p.name = s.producer WHERE s.run_id = ? AND s.name = ?
            """, arguments: [run.rawValue, consumer]) else { return nil }
        guard let first = row[2] as Int64?, let last = row[3] as Int64?, first <= last else { return (row[0], row[1], nil) }
        return (row[0], row[1], first...last)
    }

    public func claimTasks(run: RunID, _ request: ClaimRequest, now: Date) async throws -> Claim {
        try await write { db in try Self.claim(run: run, request, now: now, db) }
    }

    static func claim(run: RunID, _ request: ClaimRequest, now: Date, _ db: Database) throws -> Claim {
        let (owner, limit, filter, leaseUntil) = (request.owner, request.limit, request.filter, request.leaseUntil)
        guard limit > 0 else { return .none }
        let t = now.timeIntervalSince1970
        guard try db.one(Bool.self, sql: "SELECT cancel_requested_at IS NULL AND status IN ('pending', 'running') FROM runs WHERE id = ?",
                         arguments: [run.rawValue]) == true else { return .none }
        // Stages of other queues, and stages at their concurrency limit, are left out of the query, so
        // the oldest claimable tasks come first.
        var excluded: [String] = []
        var remaining: [StageName: Int] = [:]
        for row in try db.rows(sql: "SELECT name, queue, max_running FROM stages WHERE run_id = ? AND status = 'running'",
                               arguments: [run.rawValue]) {
            let name: String = row["name"]
            if filter.excludedStages.contains(name) || filter.queues.map({ !$0.contains(row["queue"] as String) }) == true {
                excluded.append(name)
                continue
            }
            guard let max = row["max_running"] as Int? else { continue }
            let busy = try db.one(Int.self, sql: "SELECT count(*) FROM tasks WHERE run_id = ? AND stage = ? AND status = 'running'",
                                  arguments: [run.rawValue, name]) ?? 0
            if busy >= max { excluded.append(name) } else { remaining[name] = max - busy }
        }
        let exclusion = excluded.isEmpty ? "" : " AND stage NOT IN (\(excluded.map { _ in "?" }.joined(separator: ",")))"
        let claimable = "SELECT id, stage FROM tasks WHERE run_id = ? AND status = 'pending' AND (not_before IS NULL OR not_before <= ?)\(exclusion) ORDER BY id LIMIT ?"
        // The oldest claimable tasks; with stage limits, more are read and those over a limit skipped.
        // One more than asked for tells whether more were claimable.
        var ids: [TaskID] = []
        var more = false
        for row in try db.rows(sql: claimable, arguments: StatementArguments(
            [run.rawValue, t] + excluded.map { $0 as any DatabaseValueConvertible } + [remaining.isEmpty ? limit + 1 : limit * 4])) {
            guard ids.count < limit else {
                more = true
                break
            }
            if !remaining.isEmpty {
                let stage: String = row[1]
                if let left = remaining[stage] {
                    guard left > 0 else { continue }
                    remaining[stage] = left - 1
                }
            }
            ids.append(row[0])
        }
        guard !ids.isEmpty else { return .none }
        let lease = leaseUntil.timeIntervalSince1970
        // One statement moves them all; each then gets its attempt row.
        var claimed: [ClaimedTask] = []
        claimed.reserveCapacity(ids.count)
        let until = Date(timeIntervalSince1970: lease)
        let marks = ids.map { _ in "?" }.joined(separator: ",")
        let rows = try Row.fetchCursor(db.cachedStatement(sql: """
            UPDATE tasks SET status = 'running', attempts = attempts + 1, lease_owner = ?, lease_expires_at = ?, not_before = NULL
            WHERE id IN (\(marks)) RETURNING \(Self.claimedColumns)
            """), arguments: StatementArguments([owner.id, lease] + ids.map { $0 as any DatabaseValueConvertible }))
        while let row = try rows.next() {
            let (task, base) = Self.claimedTask(row, run: run, owner: owner.id, lease: until)
            claimed.append(ClaimedTask(task: task, attempt: task.attempts, attemptInBudget: task.attempts - base, startedAt: now))
        }
        // Their attempt rows, all in one statement (a statement per task was a third of a claim).
        try db.exec(sql: """
            INSERT INTO attempts (task_id, number, run_id, stage, outcome, started_at, host, owner)
            SELECT id, attempts, run_id, stage, 'running', ?, ?, ? FROM tasks WHERE id IN (\(marks))
            """, arguments: StatementArguments([t, owner.host, owner.id] + ids.map { $0 as any DatabaseValueConvertible }))
        claimed.sort { $0.task.id < $1.task.id }
        try db.exec(sql: "UPDATE runs SET lease_expires_at = MAX(lease_expires_at, ?) WHERE id = ? AND lease_owner = ?",
                    arguments: [lease, run.rawValue, LeaseOwner.workerPool.id])
        return Claim(tasks: claimed, more: more)
    }

    public func renewTaskLeases(owner: LeaseOwner, until: Date) async throws -> Set<TaskID> {
        try await write { db in
            let u = until.timeIntervalSince1970
            let held = try db.all(Int64.self, sql: "SELECT id FROM tasks WHERE lease_owner = ? AND status = 'running'", arguments: [owner.id])
            try db.exec(sql: """
                UPDATE runs SET lease_expires_at = MAX(COALESCE(lease_expires_at, 0), ?) WHERE lease_owner = ?
                  AND id IN (SELECT DISTINCT run_id FROM tasks WHERE lease_owner = ? AND status = 'running')
                """, arguments: [u, LeaseOwner.workerPool.id, owner.id])
            try db.exec(sql: "UPDATE tasks SET lease_expires_at = ? WHERE lease_owner = ? AND status = 'running'",
                        arguments: [u, owner.id])
            return Set(held)
        }
    }

    public func completeAttempts(_ completions: [AttemptCompletion], processes: [ProcessStart], started: [EventRecord],
                                 owner: LeaseOwner, now: Date) async throws -> [CompletionResult] {
        guard !completions.isEmpty || !processes.isEmpty || !started.isEmpty else { return [] }
        return try await write { db in
            let t = now.timeIntervalSince1970
            try Self.insert(started, db)
            if !processes.isEmpty {
                let record = try db.cachedStatement(sql: "UPDATE attempts SET pid = ?, start_ticks = ? WHERE task_id = ? AND number = ?")
                for p in processes { try record.execute(arguments: [Int64(p.pid), p.startTicks, p.task, p.attempt]) }
            }
            var results: [CompletionResult] = []
            var touched: [(RunID, StageName, Int)] = [] // stage, index of its last completion in this batch
            // The task moves on only while this owner still holds this attempt: otherwise its lease was
            // lost (taken back, or another process took the run over) and nothing is written.
            let held = "id = ? AND status = 'running' AND attempts = ? AND lease_owner = ?"
            let endTask = try db.cachedStatement(sql: """
                UPDATE tasks SET status = ?, finished_at = ?, lease_owner = NULL, lease_expires_at = NULL,
                  lost_attempts = CASE WHEN ? THEN lost_attempts + 1 ELSE 0 END, result = ? WHERE \(held)
                """)
            let endAttempt = try db.cachedStatement(sql: """
                UPDATE attempts SET outcome = ?, started_at = ?, finished_at = ?, exit_code = ?, signal = ?, cpu_ms = ?, peak_rss = ?,
                  stdout_bytes = ?, stderr_bytes = ?, stderr_tail = ?, message = ?,
                  pid = COALESCE(?, pid), start_ticks = COALESCE(?, start_ticks), counters = ?
                WHERE task_id = ? AND number = ?
                """)
            // The local stages of this batch (a batch has one or two): whether each is local to `owner`, looked
            // up once, and how many of its tasks were written, and how many of those into their items.
            var local: [(run: RunID, stage: StageName, owned: Bool, ended: Int, done: Int)] = []
            var writeDone: Statement?
            results.reserveCapacity(completions.count)
            for (index, completion) in completions.enumerated() {
                if completion.newTask != nil {
                    let (run, stage) = (completion.attempt.runID, completion.attempt.stage)
                    let at = try local.lastIndex { $0.stage == stage && $0.run == run } ?? {
                        let owned = try db.one(Bool.self, sql: "SELECT local_owner IS ? FROM stages WHERE run_id = ? AND name = ?",
                                               arguments: [owner.id, run.rawValue, stage]) ?? false
                        local.append((run, stage, owned, 0, 0))
                        return local.count - 1
                    }()
                    if writeDone == nil { writeDone = try db.cachedStatement(sql: Self.writeDoneSQL) }
                    let written = local[at].owned ? try Self.recordLocal(completion, owner: owner, now: t, done: writeDone!, db) : .refused
                    guard written != .refused else {
                        results.append(.leaseLost)
                        continue
                    }
                    local[at].ended += 1
                    if written == .inItem { local[at].done += 1 }
                    if !completion.events.isEmpty { try Self.insert(completion.events, db) }
                    if touched.last.map({ $0.1 == stage && $0.0 == run }) == true {
                        touched[touched.count - 1].2 = index
                    } else {
                        touched.removeAll { $0.0 == run && $0.1 == stage }
                        touched.append((run, stage, index))
                    }
                    results.append(.applied(stage: nil))
                    continue
                }
                let attempt = completion.attempt
                let lostDelta = attempt.outcome == .lost ? "lost_attempts + 1" : "0"
                switch completion.next {
                case .succeed, .fail, .cancel:
                    let next = completion.next
                    let status: TaskStatus = next == .succeed ? .success : (next == .fail ? .failed : .cancelled)
                    try endTask.execute { b in
                        b.add(status.rawValue)
                        b.add(t)
                        b.add(attempt.outcome == .lost ? 1 : 0)
                        b.add(next == .succeed ? completion.result : nil)
                        b.add(attempt.taskID)
                        b.add(attempt.number)
                        b.add(owner.id)
                    }
                case .retry(let notBefore):
                    try db.exec(sql: """
                        UPDATE tasks SET status = 'pending', not_before = ?, lease_owner = NULL, lease_expires_at = NULL,
                          lost_attempts = \(lostDelta) WHERE \(held)
                        """, arguments: [notBefore.timeIntervalSince1970, attempt.taskID, attempt.number, owner.id])
                case .release:
                    try db.exec(sql: """
                        UPDATE tasks SET status = 'pending', not_before = NULL, lease_owner = NULL, lease_expires_at = NULL,
                          retry_base = retry_base + 1 WHERE \(held)
                        """, arguments: [attempt.taskID, attempt.number, owner.id])
                }
                guard db.changesCount == 1 else {
                    results.append(.leaseLost)
                    continue
                }
                let counters = attempt.counters.isEmpty ? nil : try Self.json(attempt.counters)
                try endAttempt.execute { b in
                    b.addEnding(of: attempt, finishedAt: attempt.finishedAt ?? now, counters: counters)
                    b.add(attempt.taskID)
                    b.add(attempt.number)
                }
                try Self.insert(completion.events, db)
                touched.removeAll { $0.0 == attempt.runID && $0.1 == attempt.stage }
                touched.append((attempt.runID, attempt.stage, index))
                results.append(.applied(stage: nil))
            }
            for stage in local where stage.ended > 0 {
                try db.exec(sql: "UPDATE stages SET local_left = local_left - ?, local_done = local_done + ? WHERE run_id = ? AND name = ?",
                            arguments: [stage.ended, stage.done, stage.run.rawValue, stage.stage])
            }
            // Each stage is rolled up once per batch, after all its completions: decided here, once.
            for (run, stageName, index) in touched {
                guard var stage = try Self.rollUp(run: run, stage: stageName, now: t, db) else { continue }
                let completion = completions[index]
                if stage.status == .failed, let reason = completion.rolledBack {
                    try db.exec(sql: "UPDATE stages SET status = 'rolled_back', reason = ? WHERE run_id = ? AND name = ?",
                                arguments: [reason, run.rawValue, stageName])
                    stage.status = .rolledBack
                    stage.reason = reason
                }
                try Self.insert([completion.stageEvent(stage)], db)
                let consumers = try Self.rollUpConsumers(of: stage, pipeline: completion.events.first?.pipeline ?? completion.stageEvent(stage).pipeline,
                                                         now: now, db)
                results[index] = .applied(stage: stage, consumers: consumers)
            }
            return results
        }
    }

    /// A local task's success into its item's row (`recordLocal`), looked up once per batch.
    static let writeDoneSQL = """
        UPDATE items SET done_stage = ?, done_result = ?, done_started = ?, done_finished = ?, done_cpu_ms = ?,
          done_peak_rss = ?, done_message = ?, done_counters = ?
        WHERE rowid = ? AND task_id = rowid AND run_id = ? AND done_stage IS NULL
        """

    /// Where `recordLocal` wrote a local task.
    enum LocalWrite { case refused, inItem, rows }

    /// Writes a local task with its first attempt, as it ended (its stage is local to `owner`: the caller
    /// checked): a success with nothing but a result, times and counters into its item's row (`done_*`,
    /// see `v13-done-items`), anything else as a task row and an attempt row. `.refused` (nothing
    /// written) when its task was written meanwhile (`endLocal`: a cancel, a takeover).
    static func recordLocal(_ completion: AttemptCompletion, owner: LeaseOwner, now t: Double, done: Statement,
                            _ db: Database) throws -> LocalWrite {
        guard let task = completion.newTask else { return .refused }
        let status: TaskStatus, notBefore: Double?
        switch completion.next {
        case .succeed: (status, notBefore) = (.success, nil)
        case .fail: (status, notBefore) = (.failed, nil)
        case .cancel: (status, notBefore) = (.cancelled, nil)
        case .retry(let at): (status, notBefore) = (.pending, at.timeIntervalSince1970)
        case .release: return .refused // only workers release, and they run no local tasks
        }
        let counters = completion.attempt.counters.isEmpty ? nil : try json(completion.attempt.counters)
        // The attempt's fields are read where they are (not copied out: this runs for every task).
        if status == .success, completion.attempt.outcome == .success, completion.attempt.exitCode == nil,
           completion.attempt.signal == nil, completion.attempt.stdoutBytes == 0, completion.attempt.stderrBytes == 0,
           completion.attempt.stderrTail == nil, completion.attempt.processStartTicks == nil,
           completion.attempt.host == owner.host, completion.attempt.pid == owner.pid {
            try done.execute { b in
                b.add(completion.attempt.stage)
                b.add(completion.result)
                b.add(completion.attempt.startedAt.timeIntervalSince1970)
                b.add((completion.attempt.finishedAt ?? Date(timeIntervalSince1970: t)).timeIntervalSince1970)
                b.add(completion.attempt.cpuMs)
                b.add(completion.attempt.peakRSSBytes)
                b.add(completion.attempt.message)
                b.add(counters)
                b.add(task.id)
                b.add(completion.attempt.runID.rawValue)
            }
            if db.changesCount == 1 { return .inItem }
            // Already written there (never twice), or an item written before `v13-done-items` (its task id
            // is not its rowid): task rows, below.
            if try db.one(Bool.self, sql: "SELECT done_stage IS NOT NULL FROM items WHERE rowid = ? AND task_id = rowid",
                          arguments: [task.id]) == true { return .refused }
        }
        let attempt = completion.attempt
        let insertTask = try db.cachedStatement(sql: """
            INSERT INTO tasks (id, run_id, stage, key, status, attempts, not_before, created_at, finished_at, result, item)
            VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)
            ON CONFLICT DO NOTHING
            """)
        try insertTask.execute { b in
            b.add(task.id)
            b.add(task.runID.rawValue)
            b.add(task.stage)
            b.add(task.key)
            b.add(status.rawValue)
            b.add(notBefore)
            b.add(task.createdAt.timeIntervalSince1970)
            b.add(status.isTerminal ? t : nil)
            b.add(status == .success ? completion.result : nil)
            b.add(task.item)
        }
        guard db.changesCount == 1 else { return .refused }
        let insertAttempt = try db.cachedStatement(sql: """
            INSERT INTO attempts (task_id, number, run_id, stage, host, owner, outcome, started_at, finished_at, exit_code, signal,
              cpu_ms, peak_rss, stdout_bytes, stderr_bytes, stderr_tail, message, pid, start_ticks, counters)
            VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        try insertAttempt.execute { b in
            b.add(task.id)
            b.add(task.runID.rawValue)
            b.add(task.stage)
            b.add(attempt.host)
            b.add(owner.id)
            b.addEnding(of: attempt, finishedAt: attempt.finishedAt ?? Date(timeIntervalSince1970: t), counters: counters)
        }
        return .rows
    }

    /// Ends a running stage when all its tasks ended (and, for a fan-out stage, its producer will emit
    /// no more items): decided inside the caller's transaction, once. A stage that ends this way may
    /// end the fan-out stages that take its items too.
    static func rollUp(run: RunID, stage: StageName, now t: Double, _ db: Database) throws -> StageRecord? {
        guard let row = try db.row(sql: "SELECT producer, tolerance, local_left FROM stages WHERE run_id = ? AND name = ? AND status = 'running'",
                                         arguments: [run.rawValue, stage]) else { return nil }
        // Items of a local stage without a task yet are tasks to do.
        if row["local_left"] as Int > 0 { return nil }
        let producerName: String? = row["producer"]
        var producer = StageRollup.Producer.none
        if let producerName {
            let status = try db.one(String.self, sql: "SELECT status FROM stages WHERE run_id = ? AND name = ?",
                                             arguments: [run.rawValue, producerName]).flatMap { StageStatus(rawValue: $0) }
            switch status {
            case .pending?, .running?, nil: producer = .running
            case .success?, .partialSuccess?: producer = .succeeded
            default: producer = .stopped
            }
        }
        if producer == .running { return nil }
        // Cheap with the (run_id, stage, status) index: most completions leave work behind.
        let unfinished = try db.one(Bool.self, sql: "SELECT EXISTS (SELECT 1 FROM tasks WHERE run_id = ? AND stage = ? AND status IN ('pending', 'running'))",
                                           arguments: [run.rawValue, stage]) ?? false
        if unfinished { return nil }
        let tolerance = (row["tolerance"] as String?).flatMap { try? JSONDecoder().decode(FailureTolerance.self, from: Data($0.utf8)) } ?? .count(0)
        let counts = try taskCounts(run: run, stage: stage, db)
        guard let stageStatus = StageRollup.status(of: counts, producer: producer, tolerance: tolerance) else { return nil }
        // An ended stage is local no more (it has no item left without a task: `local_left` is 0).
        try db.exec(sql: "UPDATE stages SET status = ?, finished_at = ?, reason = ?, local_owner = NULL WHERE run_id = ? AND name = ? AND status = 'running'",
                       arguments: [stageStatus.rawValue, t,
                                   StageRollup.reason(stageStatus, of: counts, producer: producer, producerName: producerName, tolerance: tolerance),
                                   run.rawValue, stage])
        guard db.changesCount == 1 else { return nil }
        return try db.row(sql: "SELECT \(Self.stageColumns) FROM stages WHERE run_id = ? AND name = ?",
                                arguments: [run.rawValue, stage]).map(Self.stageRecord)
    }

    /// The tasks of the run's local stages that have no task row, by stage: items without a task yet
    /// (pending tasks to the reader) and tasks written into their item (`done_tasks`: successes).
    static func localCounts(run: RunID, stage: StageName? = nil, _ db: Database) throws -> [(StageName, TaskCounts)] {
        try db.rows(sql: """
            SELECT name, local_left, local_done FROM stages WHERE run_id = ? AND (? IS NULL OR name = ?) AND (local_left > 0 OR local_done > 0)
            """, arguments: [run.rawValue, stage, stage]).map { row in
            var counts = TaskCounts()
            counts.pending = row[1]
            counts.success = row[2]
            return (row[0], counts)
        }
    }

    static func taskCounts(run: RunID, stage: StageName, _ db: Database) throws -> TaskCounts {
        var counts = TaskCounts()
        for row in try db.rows(sql: "SELECT status, count(*) AS n FROM tasks WHERE run_id = ? AND stage = ? GROUP BY status",
                                    arguments: [run.rawValue, stage]) {
            if let status = TaskStatus(rawValue: row["status"]) { counts[status] = row["n"] }
        }
        for (_, local) in try localCounts(run: run, stage: stage, db) { counts.add(local) }
        return counts
    }

    static func stageEndEvent(_ stage: StageRecord, pipeline: String, now: Date) -> EventRecord {
        EventRecord(runID: stage.runID, pipeline: pipeline, stage: stage.name, event: "stage.\(stage.status.rawValue)",
                    time: now, message: "stage ended: \(stage.status.rawValue)\(stage.reason.map { " (\($0))" } ?? "")")
    }

    /// After a stage ended: the fan-out stages that take its items may end too (it emits no more).
    /// When it did not succeed, their pending tasks are cancelled first.
    static func rollUpConsumers(of producer: StageRecord, pipeline: String, now: Date, _ db: Database) throws -> [StageRecord] {
        let t = now.timeIntervalSince1970
        let consumers = try db.all(String.self, sql: "SELECT name FROM stages WHERE run_id = ? AND producer = ? AND status = 'running'",
                                            arguments: [producer.runID.rawValue, producer.name])
        var ended: [StageRecord] = []
        for consumer in consumers {
            if producer.status != .success && producer.status != .partialSuccess {
                try endLocal(run: producer.runID, stage: consumer, status: .cancelled, now: t, db)
                try db.exec(sql: "UPDATE tasks SET status = 'cancelled', finished_at = ? WHERE run_id = ? AND stage = ? AND status = 'pending'",
                               arguments: [t, producer.runID.rawValue, consumer])
            }
            if let stage = try rollUp(run: producer.runID, stage: consumer, now: t, db) {
                try insert([stageEndEvent(stage, pipeline: pipeline, now: now)], db)
                ended.append(stage)
                ended += try rollUpConsumers(of: stage, pipeline: pipeline, now: now, db)
            }
        }
        return ended
    }

    // MARK: items

    /// Items recorded by one statement (`emitItems`), and the statements that record one and `itemRows`.
    static let itemRows = 32
    static let insertItemSQL = "INSERT INTO items \(itemColumns) VALUES \(itemValues) ON CONFLICT DO NOTHING"
    static let insertItemsSQL = """
        INSERT INTO items \(itemColumns) VALUES \(Array(repeating: itemValues, count: itemRows).joined(separator: ", "))
        ON CONFLICT DO NOTHING
        """
    private static let itemColumns = "(rowid, run_id, stage, key, seq, value, created_at, task_id)"
    private static let itemValues = "(?, ?, ?, ?, ?, ?, ?, ?)"

    public func emitItems(run: RunID, stage: StageName, items: [ItemRecord], now: Date) async throws -> Int {
        guard !items.isEmpty else { return 0 }
        return try await write { db in
            let t = now.timeIntervalSince1970
            let first = try db.one(Int.self, sql: "SELECT emitted FROM stages WHERE run_id = ? AND name = ?",
                                   arguments: [run.rawValue, stage]) ?? 0
            var consumers: [String] = [], local: String?
            for row in try db.rows(sql: "SELECT name, local_owner IS NOT NULL FROM stages WHERE run_id = ? AND producer = ? AND status = 'running'",
                                   arguments: [run.rawValue, stage]) {
                if row[1] as Bool { local = row[0] } else { consumers.append(row[0]) }
            }
            // Every item takes its rowid from the task ids (one per item, used or not), so that the item of a
            // local stage is the id of the task it stands for (`task_id`; see `v13-done-items`).
            let firstID = try Self.takeTaskIDs(items.count, db)
            var id = firstID, seq = first, fresh = 0
            func bind(_ item: ItemRecord, id: Int64, seq: Int, _ b: inout RawBindings) {
                b.add(id)
                b.add(run.rawValue)
                b.add(stage)
                b.add(item.key)
                b.add(seq)
                b.add(item.value)
                b.add(t)
                b.add(local == nil ? nil : id)
            }
            let insertItem = try db.cachedStatement(sql: Self.insertItemSQL)
            func insertOne(_ item: ItemRecord) throws {
                try insertItem.execute { b in bind(item, id: id, seq: seq + 1, &b) }
                id += 1
                // Numbered without gaps: a duplicate takes no number.
                if db.changesCount == 1 {
                    seq += 1
                    fresh += 1
                }
            }
            // Rows of `itemRows` items in one statement: SQLite opens the table and its key index once for
            // them, not once per item (a fifth less of the writer's time per item). Numbered as if none were
            // a duplicate: when all were new (or none), so they are; when only some were, the rows are taken
            // back (the rowids are this batch's own) and recorded one at a time as above.
            let insertRows = try db.cachedStatement(sql: Self.insertItemsSQL)
            var next = items.startIndex
            while items.endIndex - next >= Self.itemRows {
                let rows = items[next..<next + Self.itemRows]
                next += Self.itemRows
                try insertRows.execute { b in
                    for (offset, item) in zip(Int64(0)..., rows) { bind(item, id: id + offset, seq: seq + 1 + Int(offset), &b) }
                }
                switch db.changesCount {
                case Self.itemRows:
                    id += Int64(Self.itemRows)
                    seq += Self.itemRows
                    fresh += Self.itemRows
                case 0:
                    id += Int64(Self.itemRows)
                default:
                    try db.exec(sql: "DELETE FROM items WHERE rowid >= ? AND rowid < ?", arguments: [id, id + Int64(Self.itemRows)])
                    for item in rows { try insertOne(item) }
                }
            }
            for item in items[next...] { try insertOne(item) }
            guard fresh > 0 else { return 0 }
            // The rowids this batch took bound the stage's items (`v14-item-ranges`).
            try db.exec(sql: """
                UPDATE stages SET emitted = emitted + ?, first_item = min(coalesce(first_item, ?), ?), last_item = max(coalesce(last_item, ?), ?)
                WHERE run_id = ? AND name = ?
                """, arguments: [fresh, firstID, firstID, id - 1, id - 1, run.rawValue, stage])
            if let local {
                try db.exec(sql: "UPDATE stages SET local_left = local_left + ? WHERE run_id = ? AND name = ?",
                            arguments: [fresh, run.rawValue, local])
            }
            // A task per new item for each fan-out stage already taking them: one statement per stage,
            // from the items just recorded (the rowids this batch took).
            for consumer in consumers {
                let base = try Self.takeTaskIDs(fresh, db)
                try db.exec(sql: """
                    INSERT INTO tasks (id, run_id, stage, key, status, created_at, item)
                    SELECT ? + seq - ? - 1, run_id, ?, key, 'pending', ?, value FROM items NOT INDEXED
                    WHERE rowid >= ? AND rowid < ? AND run_id = ? AND stage = ? ORDER BY rowid
                    ON CONFLICT (run_id, stage, key) DO NOTHING
                    """, arguments: [base, first, consumer, t, firstID, id, run.rawValue, stage])
            }
            return fresh
        }
    }

    public func items(run: RunID, stage: StageName) async throws -> [ItemRecord] {
        try await read { db in
            try db.rows(sql: "SELECT key, value FROM items WHERE run_id = ? AND stage = ? ORDER BY rowid",
                             arguments: [run.rawValue, stage]).map { ItemRecord(key: $0["key"], value: $0["value"]) }
        }
    }

    public func nextRetryTime(run: RunID) async throws -> Date? {
        try readNow { db in
            try db.one(Double.self, sql: "SELECT MIN(not_before) FROM tasks WHERE run_id = ? AND status = 'pending' AND not_before IS NOT NULL",
                                arguments: [run.rawValue]).map { Date(timeIntervalSince1970: $0) }
        }
    }

    public func taskCounts(run: RunID) async throws -> [StageName: TaskCounts] {
        try await read { db in
            var result: [StageName: TaskCounts] = [:]
            for row in try db.rows(sql: "SELECT stage, status, count(*) AS n FROM tasks WHERE run_id = ? GROUP BY stage, status",
                                        arguments: [run.rawValue]) {
                if let status = TaskStatus(rawValue: row["status"]) { result[row["stage"], default: TaskCounts()][status] = row["n"] }
            }
            for (stage, local) in try Self.localCounts(run: run, db) { result[stage, default: TaskCounts()].add(local) }
            return result
        }
    }

    /// Every page of `resultPage`: that is where a stage's results are read, whether written as task rows
    /// or into their items (a stage after a fan-out of 100,000 items reads none of them to find its one).
    public func results(run: RunID, stage: StageName) async throws -> [String: Data] {
        var results: [String: Data] = [:], after: TaskID = 0
        while true {
            let page = try await resultPage(run: run, stage: stage, afterTaskID: after, limit: 5_000)
            for result in page { results[result.key] = result.result }
            guard page.count == 5_000, let last = page.last else { return results }
            after = last.taskID
        }
    }

    public func resultPage(run: RunID, stage: StageName, afterTaskID: TaskID, limit: Int) async throws -> [TaskResult] {
        try readNow { db in
            // An index whose entries end with the rowid (id) walks the successful tasks in order from the cursor;
            // the tasks written into their items (`done_tasks`) are items in rowid order from it. The page is
            // the first `limit` of the two, by id.
            var page: [TaskResult] = []
            page.reserveCapacity(limit)
            let cursor = try Row.fetchCursor(db.cachedStatement(sql: """
                SELECT id, key, result FROM tasks
                WHERE run_id = ? AND status = 'success' AND id > ? AND stage = ? AND result IS NOT NULL ORDER BY id LIMIT ?
                """), arguments: [run.rawValue, afterTaskID, stage, limit])
            while let row = try cursor.next() { page.append(TaskResult(taskID: row[0], key: row[1], result: row[2])) }
            guard try Self.localCounts(run: run, stage: stage, db).contains(where: { $0.1.success > 0 }) else { return page }
            // By rowid from the cursor (the (run, stage, key) index would read all the run's items and sort them),
            // the columns read through SQLite's C API (a join reads every result of a fan-out this way).
            // The first page starts at the stage's first item, not at earlier runs' items.
            guard let items = try Self.producerItems(run: run, consumer: stage, db)?.rowids else { return page }
            let from = max(afterTaskID, items.lowerBound - 1)
            var done: [TaskResult] = []
            done.reserveCapacity(limit)
            try db.cachedStatement(sql: """
                SELECT rowid, key, done_result FROM items NOT INDEXED
                WHERE rowid > ? AND rowid <= ? AND run_id = ? AND done_stage = ? AND done_result IS NOT NULL ORDER BY rowid LIMIT ?
                """).forEachRow(binding: { b in
                    b.add(from)
                    b.add(items.upperBound)
                    b.add(run.rawValue)
                    b.add(stage)
                    b.add(limit)
                }) { row in
                    done.append(TaskResult(taskID: sqlite3_column_int64(row, 0), key: RawColumns.text(row, 1), result: RawColumns.blob(row, 2)))
                }
            guard !page.isEmpty else { return done }
            var merged: [TaskResult] = []
            merged.reserveCapacity(limit)
            var (t, d) = (0, 0)
            while merged.count < limit, t < page.count || d < done.count {
                if d == done.count || t < page.count && page[t].taskID < done[d].taskID {
                    merged.append(page[t])
                    t += 1
                } else {
                    merged.append(done[d])
                    d += 1
                }
            }
            return merged
        }
    }

    public func stageSummaries(run: RunID) async throws -> [StageName: StageSummary] {
        try await stageSummaries(run: run, only: nil)
    }

    public func stageSummaries(run: RunID, of stages: Set<StageName>) async throws -> [StageName: StageSummary] {
        try await stageSummaries(run: run, only: stages)
    }

    /// The summaries of the stages in `only` (nil: all): the pass over their attempts and done items only
    /// for those (the task counts, from indexes, for all, then left out).
    func stageSummaries(run: RunID, only: Set<StageName>?) async throws -> [StageName: StageSummary] {
        // The stages as a JSON array, for `json_each` (nil: every stage).
        let stagesJSON = try only.map { try Self.json($0.sorted()) }
        return try await read { db in
            var summaries: [StageName: StageSummary] = [:]
            for row in try db.rows(sql: "SELECT stage, status, count(*) AS n FROM tasks WHERE run_id = ? GROUP BY stage, status",
                                   arguments: [run.rawValue]) {
                if let status = TaskStatus(rawValue: row["status"]) { summaries[row["stage"], default: StageSummary()].counts[status] = row["n"] }
            }
            let localCounts = try Self.localCounts(run: run, db)
            for (stage, local) in localCounts { summaries[stage, default: StageSummary()].counts.add(local) }
            // Every attempt of the run in one pass (three passes, one per figure, took three times as long):
            // all attempts give the bytes, CPU and memory; each task's last finished attempt its wall time
            // (mean and 95th percentile); successful attempts their business counters.
            var durations: [StageName: [Double]] = [:]
            let cursor = try Row.fetchCursor(db.cachedStatement(sql: """
                SELECT a.stage, a.number = t.attempts AND a.finished_at IS NOT NULL, (a.finished_at - a.started_at) * 1000,
                  a.stdout_bytes + a.stderr_bytes, a.cpu_ms, a.peak_rss, CASE WHEN a.outcome = 'success' THEN a.counters END
                FROM tasks t CROSS JOIN attempts a ON a.task_id = t.id
                WHERE t.run_id = ? AND (?2 IS NULL OR t.stage IN (SELECT value FROM json_each(?2)))
                """), arguments: [run.rawValue, stagesJSON])
            var stage = "", summary = StageSummary()
            func flush() { if !stage.isEmpty { summaries[stage] = summary } }
            while let row = try cursor.next() {
                let name: String = row[0]
                if name != stage {
                    flush()
                    stage = name
                    summary = summaries[name] ?? StageSummary()
                }
                summary.attempts += 1
                summary.bytesWritten += row[3] as Int64
                summary.cpuMs += (row[4] as Int64?) ?? 0
                if let rss = row[5] as Int64? { summary.peakRSSBytes = max(summary.peakRSSBytes ?? rss, rss) }
                if row[1] as Bool, let ms = row[2] as Double? { durations[name, default: []].append(ms) }
                if let text = row[6] as String?, let counters = try? JSONDecoder().decode([String: String].self, from: Data(text.utf8)) {
                    summary.add(attemptCounters: counters)
                }
            }
            flush()
            // Then the tasks written into their items (`done_attempts`: one successful attempt each), a stage at
            // a time, their columns read through SQLite's C API: there can be a million of them, and a GRDB
            // row per item cost more than SQLite's work for it. The items are read in rowid order between
            // the producer's first and last (the key index would find each row by a lookup of its own).
            let done = try db.cachedStatement(sql: """
                SELECT (done_finished - done_started) * 1000, done_cpu_ms, done_peak_rss, done_counters
                FROM items NOT INDEXED WHERE rowid >= ? AND rowid <= ? AND run_id = ? AND done_stage = ?
                """)
            for (name, local) in localCounts where local.success > 0 && only?.contains(name) != false {
                guard let items = try Self.producerItems(run: run, consumer: name, db)?.rowids else { continue }
                var summary = summaries[name] ?? StageSummary(), taken = durations[name] ?? []
                taken.reserveCapacity(taken.count + local.success)
                try done.forEachRow(binding: { b in
                    b.add(items.lowerBound)
                    b.add(items.upperBound)
                    b.add(run.rawValue)
                    b.add(name)
                }) { row in
                    summary.attempts += 1
                    if sqlite3_column_type(row, 0) != SQLITE_NULL { taken.append(sqlite3_column_double(row, 0)) }
                    summary.cpuMs += sqlite3_column_int64(row, 1) // 0 when NULL
                    if sqlite3_column_type(row, 2) != SQLITE_NULL {
                        let rss = sqlite3_column_int64(row, 2)
                        summary.peakRSSBytes = max(summary.peakRSSBytes ?? rss, rss)
                    }
                    if let text = sqlite3_column_text(row, 3),
                       let counters = try? JSONDecoder().decode([String: String].self, from: Data(String(cString: text).utf8)) {
                        summary.add(attemptCounters: counters)
                    }
                }
                summaries[name] = summary
                durations[name] = taken
            }
            for (name, var taken) in durations where !taken.isEmpty {
                summaries[name]?.meanTaskMs = (taken.reduce(0, +) / Double(taken.count) * 10).rounded() / 10
                taken.sort()
                let index = max(0, Int((Double(taken.count) * 0.95).rounded(.up)) - 1)
                summaries[name]?.p95TaskMs = Int64(taken[index].rounded())
            }
            if let only { summaries = summaries.filter { only.contains($0.key) } }
            return summaries
        }
    }

    public func tasks(of run: RunID, all: [StageName], unsuccessful: [StageName]) async throws -> [TaskRecord] {
        guard !all.isEmpty || !unsuccessful.isEmpty else { return [] }
        return try await read { db in
            // Each part is a search of the (run, stage, status) index: named stages, and named statuses.
            func marks(_ n: Int) -> String { Array(repeating: "?", count: n).joined(separator: ",") }
            var parts: [String] = [], arguments: [any DatabaseValueConvertible] = []
            if !all.isEmpty {
                parts.append("SELECT \(Self.taskColumns) FROM tasks WHERE run_id = ? AND stage IN (\(marks(all.count)))")
                arguments += [run.rawValue] + all
                // Tasks written into their items, of the stages that have some (the others' would be a scan for none).
                let done = try Self.localCounts(run: run, db).filter { all.contains($0.0) && $0.1.success > 0 }.map(\.0)
                if !done.isEmpty {
                    parts.append("SELECT \(Self.taskColumns) FROM done_tasks WHERE run_id = ? AND stage IN (\(marks(done.count)))")
                    arguments += [run.rawValue] + done
                }
            }
            if !unsuccessful.isEmpty {
                let statuses = TaskStatus.allCases.filter { $0 != .success }.map(\.rawValue)
                parts.append("SELECT \(Self.taskColumns) FROM tasks WHERE run_id = ? AND stage IN (\(marks(unsuccessful.count))) AND status IN (\(marks(statuses.count)))")
                arguments += [run.rawValue] + unsuccessful + statuses
            }
            return try db.rows(sql: parts.joined(separator: " UNION ALL ") + " ORDER BY id", arguments: StatementArguments(arguments))
                .map(Self.taskRecord)
        }
    }

    public func attempts(ofTasks ids: [TaskID]) async throws -> [AttemptRecord] {
        guard !ids.isEmpty else { return [] }
        return try await read { db in
            var attempts: [AttemptRecord] = []
            for chunk in stride(from: 0, to: ids.count, by: 500).map({ Array(ids[$0..<min(ids.count, $0 + 500)]) }) {
                let marks = chunk.map { _ in "?" }.joined(separator: ",")
                attempts += try db.rows(sql: """
                    SELECT \(Self.attemptColumns) FROM attempts WHERE task_id IN (\(marks))
                    UNION ALL SELECT \(Self.attemptColumns) FROM done_attempts WHERE task_id IN (\(marks)) ORDER BY task_id, number
                    """, arguments: StatementArguments(chunk + chunk)).map(Self.attemptRecord)
            }
            return attempts
        }
    }

    public func cancelUnfinished(run: RunID, now: Date, events: [EventRecord]) async throws {
        try await write { db in
            let t = now.timeIntervalSince1970
            try Self.endLocal(run: run, status: .cancelled, now: t, db)
            try db.exec(sql: "UPDATE tasks INDEXED BY tasks_pending SET status = 'cancelled', finished_at = ? WHERE run_id = ? AND status = 'pending'",
                           arguments: [t, run.rawValue])
            try db.exec(sql: """
                UPDATE stages SET status = 'cancelled', finished_at = ?, reason = COALESCE(reason, 'the run was cancelled')
                WHERE run_id = ? AND status IN ('pending', 'running')
                """, arguments: [t, run.rawValue])
            try Self.insert(events, db)
        }
    }

    // MARK: API tokens

    public func createToken(_ token: APIToken) async throws -> Bool {
        try await write { db in
            try db.exec(sql: "INSERT INTO api_tokens (name, hash, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                        arguments: [token.name, token.hash, token.createdAt.timeIntervalSince1970])
            return db.changesCount == 1
        }
    }

    public func token(hash: String) async throws -> APIToken? {
        try readNow { db in
            try db.row(sql: "SELECT * FROM api_tokens WHERE hash = ? AND revoked_at IS NULL", arguments: [hash]).map(Self.tokenRecord)
        }
    }

    public func tokens() async throws -> [APIToken] {
        try await read { db in try db.rows(sql: "SELECT * FROM api_tokens ORDER BY name").map(Self.tokenRecord) }
    }

    public func acquireLease(_ name: String, holder: String, until: Date, now: Date) async throws -> Bool {
        try await write { db in
            try db.exec(sql: """
                INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                WHERE leases.holder = excluded.holder OR leases.expires_at < ?
                """, arguments: [name, holder, until.timeIntervalSince1970, now.timeIntervalSince1970])
            return db.changesCount == 1
        }
    }

    public func releaseLease(_ name: String, holder: String) async throws {
        try await write { db in
            try db.exec(sql: "DELETE FROM leases WHERE name = ? AND holder = ?", arguments: [name, holder])
        }
    }

    public func revokeToken(name: String, now: Date) async throws -> Bool {
        try await write { db in
            try db.exec(sql: "UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                        arguments: [now.timeIntervalSince1970, name])
            return db.changesCount == 1
        }
    }

    static func tokenRecord(_ row: Row) -> APIToken {
        APIToken(name: row["name"], hash: row["hash"], createdAt: date(row, "created_at") ?? Date(timeIntervalSince1970: 0),
                 revokedAt: date(row, "revoked_at"))
    }

    // MARK: artifacts

    public func recordArtifactVersion(_ v: ArtifactVersionRecord, events: [EventRecord]) async throws {
        let annotations = try Self.json(v.annotations)
        try await write { db in
            try db.exec(sql: """
                INSERT INTO artifact_versions (pipeline, name, version, sha256, size, created_at, run_id, stage, root, file, annotations)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING
                """, arguments: [v.pipeline, v.name, v.version, v.sha256, v.size, v.createdAt.timeIntervalSince1970,
                                 v.runID?.rawValue, v.stage, v.root, v.file, annotations])
            try Self.insert(events, db)
        }
    }

    public func artifactVersions(pipeline: String?, name: String?, run: RunID?) async throws -> [ArtifactVersionRecord] {
        try await read { db in
            try db.rows(sql: """
                SELECT * FROM artifact_versions WHERE (? IS NULL OR pipeline = ?) AND (? IS NULL OR name = ?) AND (? IS NULL OR run_id = ?)
                ORDER BY created_at DESC, pipeline, name, version DESC
                """, arguments: [pipeline, pipeline, name, name, run?.rawValue, run?.rawValue]).map { row in
                ArtifactVersionRecord(pipeline: row["pipeline"], name: row["name"], version: row["version"], sha256: row["sha256"],
                                      size: row["size"], createdAt: Self.date(row, "created_at") ?? Date(timeIntervalSince1970: 0),
                                      runID: (row["run_id"] as String?).map { RunID($0) }, stage: row["stage"],
                                      root: row["root"], file: row["file"],
                                      annotations: (try? JSONDecoder().decode([String: String].self, from: Data((row["annotations"] as String).utf8))) ?? [:])
            }
        }
    }

    // MARK: events

    public func appendEvents(_ events: [EventRecord]) async throws {
        guard !events.isEmpty else { return }
        try await write { db in try Self.insert(events, db) }
    }

    public func events(run: RunID, afterID: Int64, limit: Int) async throws -> [EventRecord] {
        try await read { db in
            try db.rows(sql: "SELECT \(Self.eventColumns) FROM events WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?",
                             arguments: [run.rawValue, afterID, limit]).map(Self.eventRecord)
        }
    }
}
