import Foundation
import PostgresNIO
import SluiceCore
import SluiceStore

extension PostgresStateStore {
    // MARK: runs

    public func createRun(_ run: RunRecord, overlap: OverlapPolicy, now: Date, events: [EventRecord]) async throws -> CreateRunResult {
        try await transaction(notify: true) { tx in
            // Creators of one pipeline take turns, so the overlap check and the insert are one decision.
            try await tx.exec("SELECT pg_advisory_xact_lock(\(Self.createRunLock), hashtext(\(run.pipeline)))")
            if let key = run.idempotencyKey,
               let row = try await tx.rows("SELECT * FROM runs WHERE idempotency_key = \(key)").first {
                return .duplicate(try Self.runRecord(row))
            }
            if overlap != .allow {
                let active = try await tx.rows("""
                    SELECT * FROM runs WHERE pipeline = \(run.pipeline) AND status IN ('pending', 'running')
                      AND (lease_expires_at IS NULL OR lease_expires_at > \(now.timeIntervalSince1970)) ORDER BY id
                    """).map(Self.runRecord)
                if !active.isEmpty { return .overlapping(active) }
            }
            // The key is unique across pipelines: a creator of another pipeline may hold it (the insert waits for it).
            let inserted = try await tx.rows("""
                INSERT INTO runs (id, pipeline, spec, params, trigger, status, created_at, started_at, lease_owner, lease_host,
                  lease_pid, lease_expires_at, idempotency_key, run_dir)
                VALUES (\(run.id.rawValue), \(run.pipeline), \(try Self.json(run.spec)), \(try Self.json(run.params)),
                  \(run.trigger), \(run.status.rawValue), \(run.createdAt.timeIntervalSince1970),
                  \(run.startedAt?.timeIntervalSince1970), \(run.leaseOwner?.id), \(run.leaseOwner?.host),
                  \(run.leaseOwner.map { Int64($0.pid) }), \(run.leaseExpiresAt?.timeIntervalSince1970),
                  \(run.idempotencyKey), \(run.runDir))
                ON CONFLICT (idempotency_key) DO NOTHING RETURNING id
                """)
            if inserted.isEmpty, let key = run.idempotencyKey,
               let row = try await tx.rows("SELECT * FROM runs WHERE idempotency_key = \(key)").first {
                return .duplicate(try Self.runRecord(row))
            }
            for (position, stage) in run.spec.stages.enumerated() {
                try await tx.exec("""
                    INSERT INTO stages (run_id, name, position, status, producer, tolerance, queue, max_running)
                    VALUES (\(run.id.rawValue), \(stage.name), \(position), 'pending', \(stage.forEach),
                      \(stage.forEach == nil ? nil : try Self.json(stage.maxFailedItems)), \(stage.queueName), \(stage.concurrency))
                    """)
            }
            try await Self.insert(events, tx)
            try await Self.joinSession(run, now: now, tx)
            return .created(run)
        }
    }

    public func run(_ id: RunID) async throws -> RunRecord? {
        try await read { tx in try await tx.rows("SELECT * FROM runs WHERE id = \(id.rawValue)").first.map(Self.runRecord) }
    }

    public func runs(idPrefix prefix: String, limit: Int) async throws -> [RunRecord] {
        try await read { tx in
            try await tx.rows("SELECT * FROM runs WHERE starts_with(id, \(prefix)) ORDER BY id DESC LIMIT \(limit)").map(Self.runRecord)
        }
    }

    public func recentRuns(pipeline: String?, limit: Int) async throws -> [RunRecord] {
        try await read { tx in
            try await tx.rows("""
                SELECT * FROM runs WHERE \(pipeline)::text IS NULL OR pipeline = \(pipeline) ORDER BY created_at DESC, id DESC LIMIT \(limit)
                """).map(Self.runRecord)
        }
    }

    public func unfinishedRuns(pipeline: String) async throws -> [RunRecord] {
        try await read { tx in
            try await tx.rows("SELECT * FROM runs WHERE pipeline = \(pipeline) AND status IN ('pending', 'running') ORDER BY id")
                .map(Self.runRecord)
        }
    }

    public func openRuns(limit: Int) async throws -> [RunRecord] {
        try await read { tx in
            try await tx.rows("SELECT * FROM runs WHERE status IN ('pending', 'running') ORDER BY created_at, id LIMIT \(limit)")
                .map(Self.runRecord)
        }
    }

    public func acquireRun(_ id: RunID, owner: LeaseOwner, until: Date, replacing: LeaseOwner?, now: Date,
                           events: [EventRecord]) async throws -> LeaseResult {
        try await transaction { tx in
            guard let row = try await tx.rows("SELECT * FROM runs WHERE id = \(id.rawValue) FOR UPDATE").first else {
                return .notFound
            }
            let run = try Self.runRecord(row)
            if let holder = run.leaseOwner, holder.id != owner.id, let expires = run.leaseExpiresAt, expires > now,
               holder.id != replacing?.id {
                return .heldBy(holder, until: expires)
            }
            try await tx.exec("""
                UPDATE runs SET status = 'running', started_at = COALESCE(started_at, \(now.timeIntervalSince1970)), finished_at = NULL,
                  lease_owner = \(owner.id), lease_host = \(owner.host), lease_pid = \(Int64(owner.pid)),
                  lease_expires_at = \(until.timeIntervalSince1970) WHERE id = \(id.rawValue)
                """)
            try await Self.insert(events, tx)
            return .acquired(run.acquired(by: owner, until: until, now: now))
        }
    }

    public func renewLeases(run: RunID, owner: LeaseOwner, until: Date) async throws -> Bool {
        try await transaction { tx in
            let u = until.timeIntervalSince1970
            guard try await !tx.rows("UPDATE runs SET lease_expires_at = \(u) WHERE id = \(run.rawValue) AND lease_owner = \(owner.id) RETURNING id").isEmpty
            else { return false }
            try await tx.exec("""
                UPDATE tasks SET lease_expires_at = \(u) WHERE run_id = \(run.rawValue) AND status = 'running' AND lease_owner = \(owner.id)
                """)
            return true
        }
    }

    public func expireLease(run: RunID, owner: LeaseOwner, now: Date) async throws {
        try await transaction { tx in
            let t = now.timeIntervalSince1970
            try await tx.exec("UPDATE runs SET lease_expires_at = \(t) WHERE id = \(run.rawValue) AND lease_owner = \(owner.id)")
            try await tx.exec("""
                UPDATE tasks SET lease_expires_at = \(t) WHERE run_id = \(run.rawValue) AND lease_owner = \(owner.id) AND status = 'running'
                """)
        }
    }

    public func requestCancel(_ id: RunID, now: Date, events: [EventRecord]) async throws -> CancelRequestResult {
        try await transaction(notify: true) { tx in
            guard let row = try await tx.rows("SELECT * FROM runs WHERE id = \(id.rawValue) FOR UPDATE").first else {
                return .notFound
            }
            var run = try Self.runRecord(row)
            if run.status.isTerminal { return .alreadyFinished(run) }
            if run.cancelRequestedAt == nil {
                try await tx.exec("UPDATE runs SET cancel_requested_at = \(now.timeIntervalSince1970) WHERE id = \(id.rawValue)")
                try await Self.insert(events, tx)
                run.cancelRequestedAt = now
            }
            return .requested(run)
        }
    }

    public func cancelRequested(_ id: RunID) async throws -> Bool {
        try await read { tx in
            try await tx.value("SELECT cancel_requested_at IS NOT NULL FROM runs WHERE id = \(id.rawValue)", as: Bool.self) ?? false
        }
    }

    public func finishRun(_ id: RunID, outcome: RunOutcome, owner: LeaseOwner, now: Date, events: [EventRecord]) async throws -> Bool {
        try await transaction(notify: true) { tx in
            // One UPDATE: a concurrent finisher waits for this row and then no longer matches.
            let t = now.timeIntervalSince1970
            let finished = try await tx.rows("""
                UPDATE runs SET status = \(outcome.runStatus.rawValue), finished_at = \(t), lease_owner = NULL, lease_host = NULL,
                  lease_pid = NULL, lease_expires_at = NULL
                WHERE id = \(id.rawValue) AND status IN ('pending', 'running')
                  AND (lease_owner IS NULL OR lease_owner = \(owner.id) OR lease_expires_at < \(t))
                RETURNING id
                """)
            guard !finished.isEmpty else { return false }
            try await Self.insert(events, tx)
            try await Self.runEnded(id, outcome: outcome, now: now, tx)
            return true
        }
    }

    public func abandonRunningAttempts(_ id: RunID, heldBy: String?, maxLostAttempts: Int, now: Date,
                                       events: [EventRecord]) async throws -> [AttemptRecord] {
        // Workers are woken when tasks went back to the queue, not by every look that found nothing.
        try await transaction(notifyWhen: { !$0.isEmpty }) { tx in
            let t = now.timeIntervalSince1970
            let lostWhere: PostgresQuery = """
                FROM attempts a JOIN tasks t ON t.id = a.task_id AND t.attempts = a.number
                WHERE t.run_id = \(id.rawValue) AND a.outcome = 'running' AND t.status = 'running'
                  AND (t.lease_owner = \(heldBy) OR t.lease_expires_at < \(t) OR t.lease_owner IS NULL)
                """
            let stages: [String] = try await tx.rows(PostgresQuery(unsafeSQL: "SELECT DISTINCT t.stage " + lostWhere.sql, binds: lostWhere.binds))
                .map { try $0["stage"] }
            var lost: [AttemptRecord] = []
            if !stages.isEmpty {
                try await Self.lockStages(stages.map { (id, $0) }, tx)
                // Read again under the stage locks: a completion may have ended some of them meanwhile.
                lost = try await tx.rows(PostgresQuery(unsafeSQL: "SELECT a.* " + lostWhere.sql + " ORDER BY a.task_id", binds: lostWhere.binds))
                    .map(Self.attemptRecord).filter { stages.contains($0.stage) }
            }
            // A takeover is recorded even when nothing was running; a look for expired leases that found none is not.
            guard !lost.isEmpty || heldBy != nil else { return [] }
            for attempt in lost {
                try await tx.exec("""
                    UPDATE attempts SET outcome = 'lost', finished_at = \(t),
                      message = 'the process running this attempt ended before recording a result'
                    WHERE task_id = \(attempt.taskID) AND number = \(attempt.number) AND outcome = 'running'
                    """)
                // A lost attempt does not use the retry budget, but a task that keeps losing its process
                // (it may be what kills it) fails after `maxLostAttempts`.
                try await tx.exec("""
                    UPDATE tasks SET status = CASE WHEN lost_attempts + 1 >= \(maxLostAttempts) THEN 'failed' ELSE 'pending' END,
                      finished_at = CASE WHEN lost_attempts + 1 >= \(maxLostAttempts) THEN \(t) ELSE NULL END,
                      lease_owner = NULL, lease_expires_at = NULL, not_before = NULL,
                      lost_attempts = lost_attempts + 1, retry_base = retry_base + 1
                    WHERE id = \(attempt.taskID) AND status = 'running'
                    """)
            }
            try await Self.insert(events, tx)
            for stage in Set(lost.map(\.stage)).sorted() {
                if let ended = try await Self.rollUp(run: id, stage: stage, now: t, tx) {
                    let event = EventRecord(runID: id, pipeline: events.first?.pipeline ?? "", stage: stage,
                                            event: "stage.\(ended.status.rawValue)", time: now,
                                            message: "stage ended: \(ended.status.rawValue) (its task lost its process \(maxLostAttempts) times)")
                    try await Self.insert([event], tx)
                    _ = try await Self.rollUpConsumers(of: ended, pipeline: event.pipeline, now: now, tx)
                }
            }
            return lost
        }
    }

    public func prepareResume(_ id: RunID, retryFailed: Bool, now: Date, events: [EventRecord]) async throws {
        try await transaction(notify: true) { tx in
            try await tx.exec("SELECT name FROM stages WHERE run_id = \(id.rawValue) ORDER BY name FOR UPDATE")
            let statuses = retryFailed ? ["failed", "cancelled"] : ["cancelled"]
            try await tx.exec("""
                UPDATE tasks SET status = 'pending', lease_owner = NULL, lease_expires_at = NULL, not_before = NULL,
                  retry_base = attempts, finished_at = NULL
                WHERE run_id = \(id.rawValue) AND status = ANY(\(statuses))
                """)
            // Stages that did not end well go back to work: running when they have tasks to do (or take
            // items from a producer), pending to be planned again otherwise. Without --retry-failed a
            // stage whose tasks failed keeps its failure, and so do the stages it blocked.
            try await tx.exec("""
                UPDATE stages SET status = CASE WHEN EXISTS (SELECT 1 FROM tasks WHERE tasks.run_id = stages.run_id
                    AND tasks.stage = stages.name) THEN 'running' ELSE 'pending' END,
                  reason = NULL, finished_at = NULL
                WHERE run_id = \(id.rawValue) AND (CASE WHEN \(retryFailed) THEN status NOT IN ('success', 'skipped')
                  ELSE status IN ('cancelled', 'pending', 'running') OR EXISTS (SELECT 1 FROM tasks WHERE tasks.run_id = stages.run_id
                    AND tasks.stage = stages.name AND tasks.status IN ('pending', 'running')) END)
                """)
            try await tx.exec("UPDATE runs SET cancel_requested_at = NULL, finished_at = NULL WHERE id = \(id.rawValue)")
            try await Self.insert(events, tx)
            // A reopened stage whose tasks are all done (e.g. a fan-out stage whose producer finished) ends again at once.
            let t = now.timeIntervalSince1970
            for row in try await tx.rows("SELECT name FROM stages WHERE run_id = \(id.rawValue) AND status = 'running' ORDER BY position") {
                if let ended = try await Self.rollUp(run: id, stage: try row["name"], now: t, tx) {
                    try await Self.insert([Self.stageEndEvent(ended, pipeline: events.first?.pipeline ?? "", now: now)], tx)
                }
            }
        }
    }

    // MARK: stages and tasks

    public func stages(of run: RunID) async throws -> [StageRecord] {
        try await read { tx in try await tx.rows("SELECT * FROM stages WHERE run_id = \(run.rawValue) ORDER BY position").map(Self.stageRecord) }
    }

    public func tasks(of run: RunID) async throws -> [TaskRecord] {
        try await read { tx in try await tx.rows("SELECT * FROM tasks WHERE run_id = \(run.rawValue) ORDER BY id").map(Self.taskRecord) }
    }

    public func attempts(of run: RunID) async throws -> [AttemptRecord] {
        try await read { tx in
            try await tx.rows("SELECT * FROM attempts WHERE run_id = \(run.rawValue) ORDER BY task_id, number").map(Self.attemptRecord)
        }
    }

    public func applyStageTransitions(run: RunID, _ transitions: [StageTransition], now: Date, events: [EventRecord]) async throws {
        let transitions = transitions.map(\.withoutLocal) // no local tasks here (`keepsLocalTasks`)
        try await transaction(notify: true) { tx in
            let t = now.timeIntervalSince1970
            // The stages changed, and the producers of those that start: a producer's row serializes its
            // emitItems with the start that copies its items.
            var names: [String] = []
            for transition in transitions {
                switch transition {
                case .start(let stage, _), .startLocal(let stage, _), .finish(let stage, _, _): names.append(stage)
                }
            }
            let producers: [String] = try await tx.rows("""
                SELECT producer FROM stages WHERE run_id = \(run.rawValue) AND name = ANY(\(names)) AND producer IS NOT NULL
                """).map { try $0["producer"] }
            try await tx.exec("""
                SELECT name FROM stages WHERE run_id = \(run.rawValue) AND name = ANY(\(names + producers)) ORDER BY name FOR UPDATE
                """)
            for transition in transitions {
                switch transition {
                case .start(let stage, let keys):
                    let started = try await tx.rows("""
                        UPDATE stages SET status = 'running', started_at = \(t), reason = NULL
                        WHERE run_id = \(run.rawValue) AND name = \(stage) AND status = 'pending' RETURNING producer
                        """)
                    guard let row = started.first else { continue }
                    // A run recorded for workers starts when the first of its stages does.
                    try await tx.exec("""
                        UPDATE runs SET status = 'running', started_at = COALESCE(started_at, \(t)) WHERE id = \(run.rawValue) AND status = 'pending'
                        """)
                    try await tx.exec("""
                        INSERT INTO tasks (run_id, stage, key, status, created_at)
                        SELECT \(run.rawValue), \(stage), k, 'pending', \(t) FROM unnest(\(keys)::text[]) WITH ORDINALITY AS u(k, n) ORDER BY n
                        ON CONFLICT (run_id, stage, key) DO NOTHING
                        """)
                    if let producer = try row["producer"] as String? {
                        // A fan-out stage takes every item its producer emitted so far; later ones arrive with emitItems.
                        try await tx.exec("""
                            INSERT INTO tasks (run_id, stage, key, status, created_at, item)
                            SELECT run_id, \(stage), key, 'pending', \(t), value FROM items
                            WHERE run_id = \(run.rawValue) AND stage = \(producer) ORDER BY seq
                            ON CONFLICT (run_id, stage, key) DO NOTHING
                            """)
                        if let ended = try await Self.rollUp(run: run, stage: stage, now: t, tx) {
                            try await Self.insert([Self.stageEndEvent(ended, pipeline: events.first?.pipeline ?? "", now: now)], tx)
                        }
                    }
                case .finish(let stage, let status, let reason):
                    try await tx.exec("""
                        UPDATE stages SET status = \(status.rawValue), reason = \(reason), finished_at = \(t)
                        WHERE run_id = \(run.rawValue) AND name = \(stage) AND status = 'pending'
                        """)
                case .startLocal: continue // mapped to .start above
                }
            }
            try await Self.insert(events, tx)
        }
    }

    /// Claims as the protocol says; `more` is "maybe" (true) when it got all it asked for.
    public func claimTasks(run: RunID, _ request: ClaimRequest, now: Date) async throws -> Claim {
        let tasks = try await claimedTasks(run: run, owner: request.owner, limit: request.limit, filter: request.filter, now: now,
                                           leaseUntil: request.leaseUntil)
        return Claim(tasks: tasks, more: tasks.count >= request.limit)
    }

    private func claimedTasks(run: RunID, owner: LeaseOwner, limit: Int, filter: ClaimFilter, now: Date,
                              leaseUntil: Date) async throws -> [ClaimedTask] {
        guard limit > 0 else { return [] }
        return try await transaction { tx in
            let t = now.timeIntervalSince1970
            // Stages of other queues, and stages at their concurrency limit, are left out of the query, so
            // the oldest claimable tasks come first. No row: the run is cancelled or over.
            var excluded: [String] = []
            var limited: [String] = []
            let stages = try await tx.rows(Statements.ClaimStages.self) { $0.append(run.rawValue) }
            if stages.isEmpty { return [] }
            for row in stages {
                guard let name = try row["name"] as String? else { continue } // no running stage
                let queue: String = try row["queue"]
                if filter.excludedStages.contains(name) || filter.queues.map({ !$0.contains(queue) }) == true {
                    excluded.append(name)
                } else if try row["max_running"] as Int? != nil {
                    limited.append(name)
                }
            }
            // A limited stage's row is locked before its running tasks are counted: its limit holds
            // across every claimer. Its tasks are chosen here, within what its limit leaves.
            var chosen: [TaskID]?
            if !limited.isEmpty {
                var remaining: [StageName: Int] = [:]
                for row in try await tx.rows("""
                    SELECT name, max_running FROM stages WHERE run_id = \(run.rawValue) AND name = ANY(\(limited)) AND status = 'running'
                    ORDER BY name FOR UPDATE
                    """) {
                    let name: String = try row["name"]
                    guard let max = try row["max_running"] as Int? else { continue }
                    let busy = try await tx.value("""
                        SELECT count(*) FROM tasks WHERE run_id = \(run.rawValue) AND stage = \(name) AND status = 'running'
                        """, as: Int.self) ?? 0
                    if busy >= max { excluded.append(name) } else { remaining[name] = max - busy }
                }
                var ids: [TaskID] = []
                for row in try await tx.rows("""
                    SELECT id, stage FROM tasks WHERE run_id = \(run.rawValue) AND status = 'pending'
                      AND (not_before IS NULL OR not_before <= \(t)) AND NOT (stage = ANY(\(excluded)))
                    ORDER BY id LIMIT \(limit * 4) FOR UPDATE SKIP LOCKED
                    """) where ids.count < limit {
                    let stage: String = try row["stage"]
                    if let left = remaining[stage] {
                        guard left > 0 else { continue }
                        remaining[stage] = left - 1
                    }
                    ids.append(try row["id"])
                }
                if ids.isEmpty { return [] }
                chosen = ids
            }
            // One statement: the oldest claimable tasks (or those chosen above, which this transaction
            // already locked) are locked and moved to running, their attempts inserted, and a worker-pool
            // run's lease stretched to cover them.
            return try await tx.rows(Statements.ClaimTasks.self) { b in
                b.append(run.rawValue)
                b.append(t)
                b.append(excluded)
                b.append(Int64(limit))
                b.append(owner.id)
                b.append(leaseUntil.timeIntervalSince1970)
                b.append(owner.host)
                b.append(LeaseOwner.workerPool.id)
                b.append(chosen)
            }.map { row in
                let task = try Self.taskRecord(row)
                let base = try row["retry_base"] as Int? ?? 0
                return ClaimedTask(task: task, attempt: task.attempts, attemptInBudget: task.attempts - base, startedAt: now)
            }
        }
    }

    public func renewTaskLeases(owner: LeaseOwner, until: Date) async throws -> Set<TaskID> {
        try await transaction { tx in
            let u = until.timeIntervalSince1970
            let renewed = try await tx.rows("""
                UPDATE tasks SET lease_expires_at = \(u) WHERE lease_owner = \(owner.id) AND status = 'running' RETURNING id, run_id
                """)
            let runs: [String] = Array(Set(try renewed.map { try $0["run_id"] as String })).sorted()
            if !runs.isEmpty {
                // Locked in id order: renewers of overlapping runs never wait for each other in a cycle.
                try await tx.exec("""
                    SELECT id FROM runs WHERE id = ANY(\(runs)) AND lease_owner = \(LeaseOwner.workerPool.id) ORDER BY id FOR UPDATE
                    """)
                try await tx.exec("""
                    UPDATE runs SET lease_expires_at = GREATEST(COALESCE(lease_expires_at, 0), \(u))
                    WHERE id = ANY(\(runs)) AND lease_owner = \(LeaseOwner.workerPool.id)
                    """)
            }
            return Set(try renewed.map { try $0["id"] as Int64 })
        }
    }

    // MARK: API tokens

    public func createToken(_ token: APIToken) async throws -> Bool {
        try await transaction { tx in
            try await tx.rows("""
                INSERT INTO api_tokens (name, hash, created_at) VALUES (\(token.name), \(token.hash), \(token.createdAt.timeIntervalSince1970))
                ON CONFLICT DO NOTHING RETURNING name
                """).count == 1
        }
    }

    public func acquireLease(_ name: String, holder: String, until: Date, now: Date) async throws -> Bool {
        try await transaction { tx in
            try await tx.rows("""
                INSERT INTO leases (name, holder, expires_at) VALUES (\(name), \(holder), \(until.timeIntervalSince1970))
                ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                WHERE leases.holder = excluded.holder OR leases.expires_at < \(now.timeIntervalSince1970)
                RETURNING holder
                """).count == 1
        }
    }

    public func releaseLease(_ name: String, holder: String) async throws {
        try await transaction { tx in
            try await tx.exec("DELETE FROM leases WHERE name = \(name) AND holder = \(holder)")
        }
    }

    public func token(hash: String) async throws -> APIToken? {
        try await read { tx in
            try await tx.rows("SELECT * FROM api_tokens WHERE hash = \(hash) AND revoked_at IS NULL").first.map(Self.tokenRecord)
        }
    }

    public func tokens() async throws -> [APIToken] {
        try await read { tx in try await tx.rows("SELECT * FROM api_tokens ORDER BY name").map(Self.tokenRecord) }
    }

    public func revokeToken(name: String, now: Date) async throws -> Bool {
        try await transaction { tx in
            try await tx.rows("""
                UPDATE api_tokens SET revoked_at = \(now.timeIntervalSince1970) WHERE name = \(name) AND revoked_at IS NULL RETURNING name
                """).count == 1
        }
    }

    // MARK: artifacts

    public func recordArtifactVersion(_ v: ArtifactVersionRecord, events: [EventRecord]) async throws {
        let annotations = try Self.json(v.annotations)
        try await transaction { tx in
            try await tx.exec("""
                INSERT INTO artifact_versions (pipeline, name, version, sha256, size, created_at, run_id, stage, root, file, annotations)
                VALUES (\(v.pipeline), \(v.name), \(Int64(v.version)), \(v.sha256), \(v.size), \(v.createdAt.timeIntervalSince1970),
                        \(v.runID?.rawValue), \(v.stage), \(v.root), \(v.file), \(annotations)) ON CONFLICT DO NOTHING
                """)
            try await Self.insert(events, tx)
        }
    }

    public func artifactVersions(pipeline: String?, name: String?, run: RunID?) async throws -> [ArtifactVersionRecord] {
        try await read { tx in
            try await tx.rows("""
                SELECT * FROM artifact_versions WHERE (\(pipeline)::text IS NULL OR pipeline = \(pipeline))
                  AND (\(name)::text IS NULL OR name = \(name)) AND (\(run?.rawValue)::text IS NULL OR run_id = \(run?.rawValue))
                ORDER BY created_at DESC, pipeline, name, version DESC
                """).map { row in
                ArtifactVersionRecord(pipeline: try row["pipeline"], name: try row["name"], version: Int(try row["version"] as Int64),
                                      sha256: try row["sha256"], size: try row["size"],
                                      createdAt: try row.date("created_at") ?? Date(timeIntervalSince1970: 0),
                                      runID: (try row["run_id"] as String?).map { RunID($0) }, stage: try row["stage"],
                                      root: try row["root"], file: try row["file"],
                                      annotations: try Self.decode([String: String].self, try row["annotations"], what: "artifact annotation"))
            }
        }
    }

    static func tokenRecord(_ row: Row) throws -> APIToken {
        APIToken(name: try row["name"], hash: try row["hash"], createdAt: try row.date("created_at") ?? Date(timeIntervalSince1970: 0),
                 revokedAt: try row.date("revoked_at"))
    }

    public func completeAttempts(_ completions: [AttemptCompletion], processes: [ProcessStart], started: [EventRecord],
                                 owner: LeaseOwner, now: Date) async throws -> [CompletionResult] {
        guard !completions.isEmpty || !processes.isEmpty || !started.isEmpty else { return [] }
        // Other workers are woken only when this may give them work: a stage ended (the next ones may
        // start, or the run may end) or a task went back to the queue. A plain success or failure does
        // not; the worker that recorded it claims for its own freed slots.
        let requeues = completions.contains { if case .release = $0.next { true } else { false } }
        let mayGiveWork: ([CompletionResult]) -> Bool = { results in
            requeues || results.contains { if case .applied(_?, _) = $0 { true } else { false } }
        }
        return try await transaction(notifyWhen: mayGiveWork) { tx in
            let t = now.timeIntervalSince1970
            // The stages whose tasks end here, and the fan-out stages their rollup may end, are locked
            // first: of two completions of a stage's last tasks, the second sees the first and rolls it up.
            if !completions.isEmpty { try await Self.lockStages(completions.map { ($0.attempt.runID, $0.attempt.stage) }, tx) }
            var results: [CompletionResult] = []
            var touched: [(RunID, StageName, Int)] = [] // stage, index of its last completion in this batch
            var events = started
            // Which of these tasks this owner still holds, at the attempt the completion is for: one look
            // for the whole batch, the rows locked.
            var held: [TaskID: Int] = [:]
            if !completions.isEmpty {
                for row in try await tx.rows(Statements.HeldTasks.self, { $0.append(completions.map(\.attempt.taskID)) }) where try row["lease_owner"] as String? == owner.id {
                    held[try row["id"] as Int64] = try row["attempts"] as Int
                }
            }
            // Processes started by attempts (after the locks above, in the order every completion takes them).
            for p in processes {
                try await tx.exec("""
                    UPDATE attempts SET pid = \(Int64(p.pid)), start_ticks = \(p.startTicks) WHERE task_id = \(p.task) AND number = \(p.attempt)
                    """)
            }
            var rows: [CompletionRow] = []
            for (index, completion) in completions.enumerated() {
                let attempt = completion.attempt
                guard held[attempt.taskID] == attempt.number else {
                    results.append(.leaseLost)
                    continue
                }
                held[attempt.taskID] = nil // a second completion of the same attempt in one batch is refused
                rows.append(try CompletionRow(completion, now: now))
                events += completion.events
                touched.removeAll { $0.0 == attempt.runID && $0.1 == attempt.stage }
                touched.append((attempt.runID, attempt.stage, index))
                results.append(.applied(stage: nil))
            }
            if !rows.isEmpty {
                // The attempts and their tasks, the whole batch in one statement (one round trip, however
                // many completions). A release gives the try back to the task's budget (retry_base) and
                // does not count as a lost attempt.
                let batch = String(decoding: try CompletionRow.encoder.encode(rows), as: UTF8.self)
                try await tx.exec(Statements.CompleteBatch.self) { $0.append(batch) }
            }
            try await Self.insert(events, tx)
            // Each stage is rolled up once per batch, after all its completions: decided here, once.
            for (run, stageName, index) in touched {
                guard var stage = try await Self.rollUp(run: run, stage: stageName, now: t, tx) else { continue }
                let completion = completions[index]
                if stage.status == .failed, let reason = completion.rolledBack {
                    try await tx.exec("""
                        UPDATE stages SET status = 'rolled_back', reason = \(reason) WHERE run_id = \(run.rawValue) AND name = \(stageName)
                        """)
                    stage.status = .rolledBack
                    stage.reason = reason
                }
                try await Self.insert([completion.stageEvent(stage)], tx)
                let consumers = try await Self.rollUpConsumers(of: stage, pipeline: completion.events.first?.pipeline ?? completion.stageEvent(stage).pipeline,
                                                               now: now, tx)
                results[index] = .applied(stage: stage, consumers: consumers)
            }
            return results
        }
    }

    /// Locks the rows of these stages and of the fan-out stages that take their items (transitively),
    /// in (run, name) order: every transaction takes stage locks in that order, so none waits in a cycle.
    static func lockStages(_ stages: [(RunID, StageName)], _ tx: Tx) async throws {
        try await tx.exec(Statements.LockStages.self) { b in
            b.append(stages.map(\.0.rawValue))
            b.append(stages.map(\.1))
        }
    }

    /// Ends a running stage when all its tasks ended (and, for a fan-out stage, its producer will emit
    /// no more items): decided inside the caller's transaction, which holds the stage's lock, once.
    static func rollUp(run: RunID, stage: StageName, now t: Double, _ tx: Tx) async throws -> StageRecord? {
        guard let row = try await tx.rows(Statements.RollUpStage.self, { b in
            b.append(run.rawValue)
            b.append(stage)
        }).first else { return nil }
        let producerName: String? = try row["producer"]
        var producer = StageRollup.Producer.none
        if producerName != nil {
            let status = (try row["producer_status"] as String?).flatMap { StageStatus(rawValue: $0) }
            switch status {
            case .pending?, .running?, nil: producer = .running
            case .success?, .partialSuccess?: producer = .succeeded
            default: producer = .stopped
            }
        }
        if producer == .running { return nil }
        let unfinished = try await tx.rows(Statements.StageUnfinished.self) { b in
            b.append(run.rawValue)
            b.append(stage)
        }.first.map { try $0["unfinished"] as Bool } ?? false
        if unfinished { return nil }
        let tolerance = (try row["tolerance"] as String?).flatMap { try? JSONDecoder().decode(FailureTolerance.self, from: Data($0.utf8)) } ?? .count(0)
        let counts = try await taskCounts(run: run, stage: stage, tx)
        guard let stageStatus = StageRollup.status(of: counts, producer: producer, tolerance: tolerance) else { return nil }
        let reason = StageRollup.reason(stageStatus, of: counts, producer: producer, producerName: producerName, tolerance: tolerance)
        return try await tx.rows("""
            UPDATE stages SET status = \(stageStatus.rawValue), finished_at = \(t), reason = \(reason)
            WHERE run_id = \(run.rawValue) AND name = \(stage) AND status = 'running' RETURNING *
            """).first.map(stageRecord)
    }

    static func taskCounts(run: RunID, stage: StageName, _ tx: Tx) async throws -> TaskCounts {
        var counts = TaskCounts()
        for row in try await tx.rows("""
            SELECT status, count(*) AS n FROM tasks WHERE run_id = \(run.rawValue) AND stage = \(stage) GROUP BY status
            """) {
            if let status = TaskStatus(rawValue: try row["status"]) { counts[status] = try row["n"] }
        }
        return counts
    }

    static func stageEndEvent(_ stage: StageRecord, pipeline: String, now: Date) -> EventRecord {
        EventRecord(runID: stage.runID, pipeline: pipeline, stage: stage.name, event: "stage.\(stage.status.rawValue)",
                    time: now, message: "stage ended: \(stage.status.rawValue)\(stage.reason.map { " (\($0))" } ?? "")")
    }

    /// After a stage ended: the fan-out stages that take its items may end too (it emits no more).
    /// When it did not succeed, their pending tasks are cancelled first. The caller locked them.
    static func rollUpConsumers(of producer: StageRecord, pipeline: String, now: Date, _ tx: Tx) async throws -> [StageRecord] {
        let t = now.timeIntervalSince1970
        let consumers: [String] = try await tx.rows("""
            SELECT name FROM stages WHERE run_id = \(producer.runID.rawValue) AND producer = \(producer.name) AND status = 'running' ORDER BY name
            """).map { try $0["name"] }
        var ended: [StageRecord] = []
        for consumer in consumers {
            if producer.status != .success && producer.status != .partialSuccess {
                try await tx.exec("""
                    UPDATE tasks SET status = 'cancelled', finished_at = \(t)
                    WHERE run_id = \(producer.runID.rawValue) AND stage = \(consumer) AND status = 'pending'
                    """)
            }
            if let stage = try await rollUp(run: producer.runID, stage: consumer, now: t, tx) {
                try await insert([stageEndEvent(stage, pipeline: pipeline, now: now)], tx)
                ended.append(stage)
                ended += try await rollUpConsumers(of: stage, pipeline: pipeline, now: now, tx)
            }
        }
        return ended
    }

    // MARK: items

    public func emitItems(run: RunID, stage: StageName, items: [ItemRecord], now: Date) async throws -> Int {
        guard !items.isEmpty else { return 0 }
        return try await transaction(notify: true) { tx in
            let t = now.timeIntervalSince1970
            // The producer's row serializes its emitters (seq) and the start of its consumers (which copy its items).
            try await tx.exec("SELECT name FROM stages WHERE run_id = \(run.rawValue) AND name = \(stage) FOR UPDATE")
            let seq = try await tx.value("""
                SELECT COALESCE(MAX(seq), 0) FROM items WHERE run_id = \(run.rawValue) AND stage = \(stage)
                """, as: Int.self) ?? 0
            let keys = items.map(\.key), values = items.map { ByteBuffer(bytes: $0.value) }
            let inserted = Set(try await tx.rows("""
                INSERT INTO items (run_id, stage, key, seq, value, created_at)
                SELECT \(run.rawValue), \(stage), k, \(seq) + n, v, \(t) FROM unnest(\(keys)::text[], \(values)::bytea[]) WITH ORDINALITY AS u(k, v, n)
                ORDER BY n ON CONFLICT DO NOTHING RETURNING key
                """).map { try $0["key"] as String })
            var seen = Set<String>()
            let fresh = items.filter { inserted.contains($0.key) && seen.insert($0.key).inserted }
            guard !fresh.isEmpty else { return 0 }
            let freshKeys = fresh.map(\.key), freshValues = fresh.map { ByteBuffer(bytes: $0.value) }
            for row in try await tx.rows("""
                SELECT name FROM stages WHERE run_id = \(run.rawValue) AND producer = \(stage) AND status = 'running' ORDER BY name
                """) {
                let consumer: String = try row["name"]
                try await tx.exec("""
                    INSERT INTO tasks (run_id, stage, key, status, created_at, item)
                    SELECT \(run.rawValue), \(consumer), k, 'pending', \(t), v
                    FROM unnest(\(freshKeys)::text[], \(freshValues)::bytea[]) WITH ORDINALITY AS u(k, v, n) ORDER BY n
                    ON CONFLICT (run_id, stage, key) DO NOTHING
                    """)
            }
            return fresh.count
        }
    }

    public func items(run: RunID, stage: StageName) async throws -> [ItemRecord] {
        try await read { tx in
            try await tx.rows("SELECT key, value FROM items WHERE run_id = \(run.rawValue) AND stage = \(stage) ORDER BY seq")
                .map { ItemRecord(key: try $0["key"], value: try $0.data("value") ?? Data()) }
        }
    }

    public func nextRetryTime(run: RunID) async throws -> Date? {
        try await read { tx in
            try await tx.value("""
                SELECT MIN(not_before) FROM tasks WHERE run_id = \(run.rawValue) AND status = 'pending' AND not_before IS NOT NULL
                """, as: Double.self).map { Date(timeIntervalSince1970: $0) }
        }
    }

    public func taskCounts(run: RunID) async throws -> [StageName: TaskCounts] {
        try await read { tx in
            var result: [StageName: TaskCounts] = [:]
            for row in try await tx.rows("SELECT stage, status, count(*) AS n FROM tasks WHERE run_id = \(run.rawValue) GROUP BY stage, status") {
                if let status = TaskStatus(rawValue: try row["status"]) { result[try row["stage"], default: TaskCounts()][status] = try row["n"] }
            }
            return result
        }
    }

    public func results(run: RunID, stage: StageName) async throws -> [String: Data] {
        try await read { tx in
            var results: [String: Data] = [:]
            for row in try await tx.rows("""
                SELECT key, result FROM tasks WHERE run_id = \(run.rawValue) AND stage = \(stage) AND status = 'success' AND result IS NOT NULL
                """) {
                results[try row["key"]] = try row.data("result")
            }
            return results
        }
    }

    public func resultPage(run: RunID, stage: StageName, afterTaskID: TaskID, limit: Int) async throws -> [TaskResult] {
        try await read { tx in
            // The (run_id, status, id) index walks the run's successful tasks in id order from the cursor.
            try await tx.rows("""
                SELECT id, key, result FROM tasks
                WHERE run_id = \(run.rawValue) AND status = 'success' AND id > \(afterTaskID) AND stage = \(stage) AND result IS NOT NULL
                ORDER BY id LIMIT \(limit)
                """).map { TaskResult(taskID: try $0["id"], key: try $0["key"], result: try $0.data("result") ?? Data()) }
        }
    }

    public func stageSummaries(run: RunID) async throws -> [StageName: StageSummary] {
        try await stageSummaries(run: run, only: nil)
    }

    public func stageSummaries(run: RunID, of stages: Set<StageName>) async throws -> [StageName: StageSummary] {
        try await stageSummaries(run: run, only: stages.sorted())
    }

    /// The summaries of the stages in `only` (nil: all), each figure computed only for those.
    func stageSummaries(run: RunID, only: [StageName]?) async throws -> [StageName: StageSummary] {
        try await transaction { tx in
            var summaries: [StageName: StageSummary] = [:]
            for row in try await tx.rows("""
                SELECT stage, status, count(*) AS n FROM tasks
                WHERE run_id = \(run.rawValue) AND (\(only)::text[] IS NULL OR stage = ANY(\(only))) GROUP BY stage, status
                """) {
                if let status = TaskStatus(rawValue: try row["status"]) { summaries[try row["stage"], default: StageSummary()].counts[status] = try row["n"] }
            }
            for row in try await tx.rows("""
                SELECT stage, count(*) AS n, COALESCE(sum(stdout_bytes + stderr_bytes), 0)::bigint AS bytes,
                  COALESCE(sum(cpu_ms), 0)::bigint AS cpu, max(peak_rss) AS rss FROM attempts
                WHERE run_id = \(run.rawValue) AND (\(only)::text[] IS NULL OR stage = ANY(\(only))) GROUP BY stage
                """) {
                let stage: String = try row["stage"]
                var summary = summaries[stage, default: StageSummary()]
                summary.attempts = try row["n"]
                summary.bytesWritten = try row["bytes"]
                summary.cpuMs = try row["cpu"]
                summary.peakRSSBytes = try row["rss"]
                summaries[stage] = summary
            }
            for stage in Array(summaries.keys) {
                let lastAttempts: PostgresQuery = """
                    FROM tasks t JOIN attempts a ON a.task_id = t.id AND a.number = t.attempts
                    WHERE t.run_id = \(run.rawValue) AND t.stage = \(stage) AND a.finished_at IS NOT NULL
                    """
                guard let row = try await tx.rows(PostgresQuery(unsafeSQL: "SELECT count(*) AS n, avg((a.finished_at - a.started_at) * 1000) AS mean "
                                                                + lastAttempts.sql, binds: lastAttempts.binds)).first,
                      let n = try row["n"] as Int?, n > 0 else { continue }
                summaries[stage]?.meanTaskMs = (try row["mean"] as Double?).map { ($0 * 10).rounded() / 10 }
                let offset = max(0, Int((Double(n) * 0.95).rounded(.up)) - 1)
                var binds = lastAttempts.binds
                binds.append(offset)
                summaries[stage]?.p95TaskMs = try await tx.value(PostgresQuery(
                    unsafeSQL: "SELECT (a.finished_at - a.started_at) * 1000 AS ms " + lastAttempts.sql + " ORDER BY ms LIMIT 1 OFFSET $\(binds.count)",
                    binds: binds), as: Double.self).map { Int64($0.rounded()) }
            }
            // Counters of successful attempts only: a retried attempt's counts would be counted twice.
            for row in try await tx.rows("""
                SELECT stage, counters FROM attempts WHERE run_id = \(run.rawValue) AND outcome = 'success' AND counters IS NOT NULL
                  AND (\(only)::text[] IS NULL OR stage = ANY(\(only)))
                """) {
                let stage: String = try row["stage"]
                guard let text = try row["counters"] as String?,
                      let counters = try? JSONDecoder().decode([String: String].self, from: Data(text.utf8)) else { continue }
                summaries[stage, default: StageSummary()].add(attemptCounters: counters)
            }
            return summaries
        }
    }

    public func tasks(of run: RunID, all: [StageName], unsuccessful: [StageName]) async throws -> [TaskRecord] {
        guard !all.isEmpty || !unsuccessful.isEmpty else { return [] }
        return try await read { tx in
            try await tx.rows("""
                SELECT * FROM tasks WHERE run_id = \(run.rawValue)
                  AND (stage = ANY(\(all)) OR (stage = ANY(\(unsuccessful)) AND status <> 'success')) ORDER BY id
                """).map(Self.taskRecord)
        }
    }

    public func attempts(ofTasks ids: [TaskID]) async throws -> [AttemptRecord] {
        guard !ids.isEmpty else { return [] }
        return try await read { tx in
            try await tx.rows("SELECT * FROM attempts WHERE task_id = ANY(\(ids)) ORDER BY task_id, number").map(Self.attemptRecord)
        }
    }

    public func cancelUnfinished(run: RunID, now: Date, events: [EventRecord]) async throws {
        try await transaction(notify: true) { tx in
            let t = now.timeIntervalSince1970
            try await tx.exec("SELECT name FROM stages WHERE run_id = \(run.rawValue) ORDER BY name FOR UPDATE")
            try await tx.exec("UPDATE tasks SET status = 'cancelled', finished_at = \(t) WHERE run_id = \(run.rawValue) AND status = 'pending'")
            try await tx.exec("""
                UPDATE stages SET status = 'cancelled', finished_at = \(t), reason = COALESCE(reason, 'the run was cancelled')
                WHERE run_id = \(run.rawValue) AND status IN ('pending', 'running')
                """)
            try await Self.insert(events, tx)
        }
    }

    // MARK: events

    public func appendEvents(_ events: [EventRecord]) async throws {
        guard !events.isEmpty else { return }
        try await transaction { tx in try await Self.insert(events, tx) }
    }

    public func events(run: RunID, afterID: Int64, limit: Int) async throws -> [EventRecord] {
        try await read { tx in
            try await tx.rows("SELECT * FROM events WHERE run_id = \(run.rawValue) AND id > \(afterID) ORDER BY id LIMIT \(limit)")
                .map(Self.eventRecord)
        }
    }
}

/// One completion as a row of the JSON batch that `completeAttempts` sends in one statement (keys are
/// the columns; a nil is left out, which the statement reads as NULL).
struct CompletionRow: Encodable {
    /// Keys in any order (the batch is read by PostgreSQL, never stored): no sorting per completion.
    static let encoder = JSONEncoder()

    var task_id: Int64
    var number: Int
    var outcome: String
    var started_at: Double
    var finished_at: Double
    var exit_code: Int64?
    var signal: Int64?
    var cpu_ms: Int64?
    var peak_rss: Int64?
    var stdout_bytes: Int64
    var stderr_bytes: Int64
    var stderr_tail: String?
    var message: String?
    var pid: Int64?
    var start_ticks: Int64?
    var counters: String?
    var status: String
    var task_finished_at: Double?
    var not_before: Double?
    var release: Bool
    var lost: Bool
    /// Base64 of the task's result (a success's only).
    var result: String?

    init(_ completion: AttemptCompletion, now: Date) throws {
        let attempt = completion.attempt
        let t = now.timeIntervalSince1970
        task_id = attempt.taskID
        number = attempt.number
        outcome = attempt.outcome.rawValue
        started_at = attempt.startedAt.timeIntervalSince1970
        finished_at = (attempt.finishedAt ?? now).timeIntervalSince1970
        exit_code = attempt.exitCode.map { Int64($0) }
        signal = attempt.signal.map { Int64($0) }
        cpu_ms = attempt.cpuMs
        peak_rss = attempt.peakRSSBytes
        stdout_bytes = attempt.stdoutBytes
        stderr_bytes = attempt.stderrBytes
        stderr_tail = attempt.stderrTail
        message = attempt.message
        pid = attempt.pid.map { Int64($0) }
        start_ticks = attempt.processStartTicks
        counters = attempt.counters.isEmpty ? nil : try PostgresStateStore.json(attempt.counters)
        lost = attempt.outcome == .lost
        release = false
        switch completion.next {
        case .succeed: (status, task_finished_at) = (TaskStatus.success.rawValue, t)
        case .fail: (status, task_finished_at) = (TaskStatus.failed.rawValue, t)
        case .cancel: (status, task_finished_at) = (TaskStatus.cancelled.rawValue, t)
        case .retry(let at): (status, not_before) = (TaskStatus.pending.rawValue, at.timeIntervalSince1970)
        case .release: (status, release) = (TaskStatus.pending.rawValue, true)
        }
        result = completion.next == .succeed ? completion.result?.base64EncodedString() : nil
    }
}
