import PostgresNIO

/// The statements of the hot paths (claims and completions), prepared once per connection.
/// Parameters are cast in the SQL, so each one's type is fixed when the statement is prepared.
enum Statements {
    /// A run's running stages, with their queue and limit; no row when the run is cancelled or over,
    /// one row with a NULL name when it has no running stage. $1 run.
    enum ClaimStages: StatementText {
        static let name = "sluice_claim_stages_v1"
        static let sql = """
            SELECT s.name, s.queue, s.max_running FROM runs r LEFT JOIN stages s ON s.run_id = r.id AND s.status = 'running'
            WHERE r.id = $1::text AND r.cancel_requested_at IS NULL AND r.status IN ('pending', 'running')
            ORDER BY s.name
            """
    }

    /// Claims the oldest claimable tasks: locks and moves them to running, inserts their attempts, and
    /// stretches a worker-pool run's lease. $1 run, $2 now, $3 excluded stages, $4 limit, $5 owner id,
    /// $6 lease end, $7 owner host, $8 the worker pool's owner id, $9 only these task ids (or NULL).
    enum ClaimTasks: StatementText {
        static let name = "sluice_claim_tasks_v2"
        static let sql = """
            WITH picked AS (
              SELECT id FROM tasks WHERE run_id = $1::text AND status = 'pending'
                AND (not_before IS NULL OR not_before <= $2::float8) AND NOT (stage = ANY($3::text[]))
                AND ($9::bigint[] IS NULL OR id = ANY($9::bigint[]))
              ORDER BY id LIMIT $4::bigint FOR UPDATE SKIP LOCKED),
            claimed AS (
              UPDATE tasks SET status = 'running', attempts = tasks.attempts + 1, lease_owner = $5::text,
                lease_expires_at = $6::float8, not_before = NULL
              FROM picked WHERE tasks.id = picked.id RETURNING tasks.*),
            attempt_rows AS (
              INSERT INTO attempts (task_id, number, run_id, stage, outcome, started_at, host, owner)
              SELECT id, attempts, run_id, stage, 'running', $2::float8, $7::text, $5::text FROM claimed),
            run_lease AS (
              UPDATE runs SET lease_expires_at = GREATEST(lease_expires_at, $6::float8)
              WHERE id = $1::text AND lease_owner = $8::text AND EXISTS (SELECT 1 FROM claimed))
            SELECT * FROM claimed ORDER BY id
            """
    }

    /// Locks the rows of these stages and of the fan-out stages that take their items (transitively),
    /// in (run, name) order. $1 runs, $2 stage names (pairwise).
    enum LockStages: StatementText {
        static let name = "sluice_lock_stages_v1"
        static let sql = """
            WITH RECURSIVE s (run_id, name) AS (
              SELECT r COLLATE "C", n COLLATE "C" FROM unnest($1::text[], $2::text[]) AS u (r, n)
              UNION SELECT st.run_id, st.name FROM stages st JOIN s ON st.run_id = s.run_id AND st.producer = s.name)
            SELECT name FROM stages WHERE (run_id, name) IN (SELECT run_id, name FROM s) ORDER BY run_id, name FOR UPDATE
            """
    }

    /// Which of these running tasks are held by whom, at which attempt; the rows locked. $1 task ids.
    enum HeldTasks: StatementText {
        static let name = "sluice_held_tasks_v1"
        static let sql = """
            SELECT id, attempts, lease_owner FROM tasks WHERE id = ANY($1::bigint[]) AND status = 'running'
            ORDER BY id FOR UPDATE
            """
    }

    /// Records a batch of completions, attempts and tasks, from a JSON array of `CompletionRow`. $1 JSON.
    enum CompleteBatch: StatementText {
        static let name = "sluice_complete_batch_v1"
        static let sql = """
            WITH c AS (
              SELECT * FROM jsonb_to_recordset($1::text::jsonb) AS c (task_id BIGINT, number BIGINT, outcome TEXT,
                started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION, exit_code BIGINT, signal BIGINT, cpu_ms BIGINT,
                peak_rss BIGINT, stdout_bytes BIGINT, stderr_bytes BIGINT, stderr_tail TEXT, message TEXT, pid BIGINT,
                start_ticks BIGINT, counters TEXT, status TEXT, task_finished_at DOUBLE PRECISION,
                not_before DOUBLE PRECISION, release BOOLEAN, lost BOOLEAN, result TEXT)),
            finished_attempts AS (
              UPDATE attempts SET outcome = c.outcome, started_at = c.started_at, finished_at = c.finished_at,
                exit_code = c.exit_code, signal = c.signal, cpu_ms = c.cpu_ms, peak_rss = c.peak_rss,
                stdout_bytes = c.stdout_bytes, stderr_bytes = c.stderr_bytes, stderr_tail = c.stderr_tail,
                message = c.message, pid = COALESCE(c.pid, attempts.pid),
                start_ticks = COALESCE(c.start_ticks, attempts.start_ticks), counters = c.counters
              FROM c WHERE attempts.task_id = c.task_id AND attempts.number = c.number)
            UPDATE tasks SET status = c.status, finished_at = c.task_finished_at, lease_owner = NULL, lease_expires_at = NULL,
              not_before = c.not_before,
              lost_attempts = CASE WHEN c.release THEN tasks.lost_attempts WHEN c.lost THEN tasks.lost_attempts + 1 ELSE 0 END,
              retry_base = tasks.retry_base + CASE WHEN c.release THEN 1 ELSE 0 END, result = decode(c.result, 'base64')
            FROM c WHERE tasks.id = c.task_id
            """
    }

    /// A running stage, its tolerance, and its producer's status. $1 run, $2 stage.
    enum RollUpStage: StatementText {
        static let name = "sluice_rollup_stage_v1"
        static let sql = """
            SELECT s.producer, s.tolerance, p.status AS producer_status FROM stages s
              LEFT JOIN stages p ON p.run_id = s.run_id AND p.name = s.producer
            WHERE s.run_id = $1::text AND s.name = $2::text AND s.status = 'running'
            """
    }

    /// Whether a stage has a task that has not ended. $1 run, $2 stage.
    enum StageUnfinished: StatementText {
        static let name = "sluice_stage_unfinished_v1"
        static let sql = """
            SELECT EXISTS (SELECT 1 FROM tasks WHERE run_id = $1::text AND stage = $2::text AND status IN ('pending', 'running')) AS unfinished
            """
    }
}
