import CSQLiteTuning
import Foundation
import GRDB
import SluiceCore
import SluiceStore

/// The embedded store: one SQLite file in WAL mode, shared safely by every process on the machine.
public final class SQLiteStateStore: StateStore {
    let pool: DatabasePool
    public let path: String
    let checkpointer: Checkpointer

    /// Opens (creating if needed) the store at `path` and applies pending migrations.
    public static func open(path: String) throws(StoreError) -> SQLiteStateStore {
        try SQLiteStateStore(path: path)
    }

    /// SQLite's process-wide settings (`sluice_sqlite_tune`), once, before the first connection opens:
    /// about a tenth of a large fan-out's time went to mutexes no two threads ever contend for.
    static let tuned: Bool = sluice_sqlite_tune() == 1

    init(path: String) throws(StoreError) {
        _ = Self.tuned
        self.path = path
        let folder = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: folder.isEmpty ? "." : folder, withIntermediateDirectories: true)
        } catch {
            throw StoreError(.cannotOpen, "cannot create the state folder '\(folder)': \(error.localizedDescription)",
                             hint: "check that this user may write there, or choose another place with --state-dir")
        }
        if FileManager.default.fileExists(atPath: folder), !FileManager.default.isWritableFile(atPath: folder.isEmpty ? "." : folder) {
            throw StoreError(.cannotOpen, "the state folder '\(folder)' is not writable",
                             hint: "fix its permissions (chmod u+w '\(folder)') or choose another place with --state-dir")
        }
        let checkpointer = Checkpointer(path: path)
        self.checkpointer = checkpointer
        var config = Configuration()
        config.busyMode = .timeout(30)
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            guard !db.configuration.readonly else { return }
            // The writer keeps up to 32 MiB of pages (SQLite's default is 2 MiB): a large fan-out's task
            // and item indexes are read back from the file at every claim and completion otherwise.
            try db.execute(sql: "PRAGMA cache_size = -32768")
            checkpointer.install(on: db)
        }
        do {
            pool = try Self.openPool(path: path, configuration: config)
        } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED {
            throw StoreError(.cannotOpen, "cannot open the state store '\(path)': another process kept it locked for several seconds",
                             hint: "try again; if it stays locked, look for a process holding it (`fuser '\(path)'`)")
        } catch {
            throw StoreError(.cannotOpen, "cannot open the state store '\(path)': \(Self.describe(error))",
                             hint: "check that the file is a Sluice state store and that this user may read and write it")
        }
        let migrator = Self.migrator
        do {
            // Newer when it has a migration this version does not know (those `schema-v13` merged are known).
            let known = Set(migrator.migrations).union(Self.mergedMigrations)
            let superseded = try pool.read { db in try migrator.appliedIdentifiers(db).contains { !known.contains($0) } }
            if superseded {
                throw StoreError(.newerSchema, "the state store '\(path)' was written by a newer version of Sluice",
                                 hint: "upgrade sluice, or point this version at another state folder with --state-dir; the store was not changed")
            }
            try Self.migrate(pool, with: migrator)
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(.cannotOpen, "cannot prepare the state store '\(path)': \(Self.describe(error))",
                             hint: "check that the file is a Sluice state store (SQLite) and that the disk is not full")
        }
    }

    deinit {
        // The writer's WAL hook points at the checkpointer: the connections close first.
        try? pool.close()
        checkpointer.close()
    }

    /// Opens the pool, waiting for another process that creates the same new store at the same moment:
    /// switching a new file to WAL needs an exclusive lock, and SQLite answers "database is locked"
    /// at once (without its busy timeout) to the second of two connections upgrading their locks
    /// together. Once one switched, the file stays in WAL mode and the others open it.
    static func openPool(path: String, configuration: Configuration) throws -> DatabasePool {
        var attempt = 0
        while true {
            attempt += 1
            do {
                return try DatabasePool(path: path, configuration: configuration)
            } catch let error as DatabaseError where (error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED) && attempt < 100 {
                usleep(useconds_t(20_000 + Int.random(in: 0..<20_000)))
            }
        }
    }

    /// Applies pending migrations. Several processes may open a new store at the same moment (a run and
    /// its workers): each migration is one transaction, so one that lost the race to another process
    /// failed without a trace and is simply looked at again.
    static func migrate(_ pool: DatabasePool, with migrator: DatabaseMigrator) throws {
        for attempt in 1... {
            do {
                try migrator.migrate(pool)
                return
            } catch {
                if try pool.read({ try migrator.hasCompletedMigrations($0) }) { return }
                if attempt >= 20 { throw error }
                usleep(50_000)
            }
        }
    }

    static func describe(_ error: any Error) -> String {
        if let db = error as? DatabaseError {
            // Never the SQL arguments: they can hold secrets.
            return db.message ?? "SQLite error \(db.resultCode.rawValue)"
        }
        return "\(error)"
    }

    /// Tables unchanged since the step that made them (`v1`, `v9-artifact-versions`, `v10-sessions-outbox`):
    /// that step and the final schema run the same text.
    static let runsTable = """
        CREATE TABLE runs (
          id TEXT PRIMARY KEY, pipeline TEXT NOT NULL, spec TEXT NOT NULL, params TEXT NOT NULL,
          trigger TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL, started_at REAL,
          finished_at REAL, cancel_requested_at REAL, lease_owner TEXT, lease_host TEXT, lease_pid INTEGER,
          lease_expires_at REAL, idempotency_key TEXT UNIQUE, run_dir TEXT NOT NULL);
        CREATE INDEX runs_pipeline_status ON runs(pipeline, status);
        """

    static let eventsTable = """
        CREATE TABLE events (
          id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, pipeline TEXT NOT NULL,
          stage TEXT, task_id INTEGER, attempt INTEGER, event TEXT NOT NULL, ts REAL NOT NULL,
          msg TEXT NOT NULL, attrs TEXT);
        CREATE INDEX events_run ON events(run_id, id);
        """

    static let artifactVersionTables = """
        CREATE TABLE artifact_versions (
          pipeline TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL,
          size INTEGER NOT NULL, created_at REAL NOT NULL, run_id TEXT, stage TEXT, root TEXT NOT NULL,
          file TEXT NOT NULL, annotations TEXT NOT NULL, PRIMARY KEY (pipeline, name, version));
        CREATE INDEX artifact_versions_run ON artifact_versions (run_id);
        """

    static let sessionAndOutboxTables = """
        CREATE TABLE sessions (
          id TEXT PRIMARY KEY, name TEXT NOT NULL, group_key TEXT, status TEXT NOT NULL, spec TEXT NOT NULL,
          opened_at REAL NOT NULL, deadline REAL NOT NULL, closed_at REAL);
        CREATE INDEX sessions_name ON sessions (name, opened_at);
        CREATE INDEX sessions_open ON sessions (status, deadline);
        CREATE TABLE session_members (
          session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE, pipeline TEXT NOT NULL,
          run_id TEXT NOT NULL, joined_at REAL NOT NULL, late INTEGER NOT NULL DEFAULT 0,
          PRIMARY KEY (session_id, pipeline));
        CREATE UNIQUE INDEX session_members_run ON session_members (run_id);
        CREATE TABLE notifications (
          id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, run_id TEXT, session_id TEXT,
          origin TEXT NOT NULL, action TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
          created_at REAL NOT NULL, next_attempt_at REAL NOT NULL, delivered_at REAL, last_error TEXT,
          lease_owner TEXT, lease_expires_at REAL);
        CREATE INDEX notifications_due ON notifications (status, next_attempt_at);
        CREATE INDEX notifications_run ON notifications (run_id);
        CREATE INDEX notifications_session ON notifications (session_id);
        """

    /// The schema of a new store: what `schemaSteps`, `localTasksStep`, `doneItemsStep` and
    /// `itemRangesStep` make, in one script (columns in the order those steps add them: a store brought
    /// up to date and a new one are alike, which a test checks).
    static let schema = """
        \(runsTable)
        CREATE TABLE stages (
          run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, name TEXT NOT NULL,
          position INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT, started_at REAL, finished_at REAL,
          producer TEXT, tolerance TEXT, queue TEXT NOT NULL DEFAULT 'default', max_running INTEGER,
          local_owner TEXT, local_left INTEGER NOT NULL DEFAULT 0,
          local_done INTEGER NOT NULL DEFAULT 0, local_by TEXT, local_host TEXT, local_pid INTEGER,
          emitted INTEGER NOT NULL DEFAULT 0, first_item INTEGER, last_item INTEGER,
          PRIMARY KEY (run_id, name));
        CREATE TABLE tasks (
          id INTEGER PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
          stage TEXT NOT NULL, key TEXT NOT NULL, status TEXT NOT NULL,
          attempts INTEGER NOT NULL DEFAULT 0, retry_base INTEGER NOT NULL DEFAULT 0,
          lost_attempts INTEGER NOT NULL DEFAULT 0, not_before REAL, lease_owner TEXT,
          lease_expires_at REAL, created_at REAL NOT NULL, finished_at REAL, result BLOB, item BLOB,
          UNIQUE (run_id, stage, key));
        CREATE INDEX tasks_stage_status ON tasks(run_id, stage, status);
        CREATE INDEX tasks_pending ON tasks(run_id, id) WHERE status = 'pending';
        CREATE INDEX tasks_running ON tasks(run_id, lease_owner) WHERE status = 'running';
        CREATE TABLE attempts (
          task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE, number INTEGER NOT NULL,
          run_id TEXT NOT NULL, stage TEXT NOT NULL, outcome TEXT NOT NULL, started_at REAL NOT NULL,
          finished_at REAL, exit_code INTEGER, signal INTEGER, cpu_ms INTEGER, peak_rss INTEGER,
          stdout_bytes INTEGER NOT NULL DEFAULT 0, stderr_bytes INTEGER NOT NULL DEFAULT 0,
          stderr_tail TEXT, message TEXT, host TEXT, pid INTEGER, start_ticks INTEGER, owner TEXT, counters TEXT,
          PRIMARY KEY (task_id, number));
        \(eventsTable)
        CREATE TABLE items (
          run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, stage TEXT NOT NULL, key TEXT NOT NULL,
          seq INTEGER NOT NULL, value BLOB NOT NULL, created_at REAL NOT NULL, task_id INTEGER,
          done_stage TEXT, done_result BLOB, done_started REAL, done_finished REAL, done_cpu_ms INTEGER,
          done_peak_rss INTEGER, done_message TEXT, done_counters TEXT,
          PRIMARY KEY (run_id, stage, key));
        CREATE TABLE task_ids (next INTEGER NOT NULL, items_from INTEGER NOT NULL DEFAULT 0);
        INSERT INTO task_ids (next, items_from) VALUES (1, 1);
        CREATE VIEW done_tasks AS \(doneTasksView);
        CREATE VIEW done_attempts AS \(doneAttemptsView);
        CREATE TABLE api_tokens (
          name TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, created_at REAL NOT NULL, revoked_at REAL);
        CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL);
        \(artifactVersionTables)
        \(sessionAndOutboxTables)
        """

    /// The tasks written into their items' rows (`v13-done-items`), as task rows: every column a task row
    /// has (a test checks that both views have their table's columns).
    static let doneTasksView = """
        SELECT rowid AS id, run_id, done_stage AS stage, key, 'success' AS status, 1 AS attempts, 0 AS retry_base, 0 AS lost_attempts,
          NULL AS not_before, NULL AS lease_owner, NULL AS lease_expires_at, created_at, done_finished AS finished_at,
          value AS item, done_result AS result
        FROM items WHERE done_stage IS NOT NULL
        """

    /// Their attempts, as attempt rows (the owner, host and pid of the process that ran them are their
    /// stage's: one process runs a stage's local tasks, and a stage is never local again once it was not).
    static let doneAttemptsView = """
        SELECT i.rowid AS task_id, i.run_id, i.done_stage AS stage, 1 AS number, 'success' AS outcome,
          i.done_started AS started_at, i.done_finished AS finished_at, NULL AS exit_code, NULL AS signal,
          i.done_cpu_ms AS cpu_ms, i.done_peak_rss AS peak_rss, 0 AS stdout_bytes, 0 AS stderr_bytes,
          NULL AS stderr_tail, i.done_message AS message, s.local_host AS host, s.local_pid AS pid,
          NULL AS start_ticks, i.done_counters AS counters, s.local_by AS owner
        FROM items i JOIN stages s ON s.run_id = i.run_id AND s.name = i.done_stage WHERE i.done_stage IS NOT NULL
        """

    /// The schema's steps, oldest first, as versions before `schema-v11` applied them, one migration each
    /// (`schema-v11` then applied them in one transaction; `schema-v13` applies those a store lacks).
    static let schemaSteps: [(id: String, apply: @Sendable (Database) throws -> Void)] = [
        ("v1", { db in
            try db.execute(sql: """
                \(SQLiteStateStore.runsTable)
                CREATE TABLE stages (
                  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, name TEXT NOT NULL,
                  position INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT, started_at REAL, finished_at REAL,
                  PRIMARY KEY (run_id, name));
                CREATE TABLE tasks (
                  id INTEGER PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                  stage TEXT NOT NULL, key TEXT NOT NULL, status TEXT NOT NULL,
                  attempts INTEGER NOT NULL DEFAULT 0, retry_base INTEGER NOT NULL DEFAULT 0,
                  lost_attempts INTEGER NOT NULL DEFAULT 0, not_before REAL, lease_owner TEXT,
                  lease_expires_at REAL, created_at REAL NOT NULL, finished_at REAL,
                  UNIQUE (run_id, stage, key));
                CREATE INDEX tasks_claim ON tasks(run_id, status, not_before);
                CREATE TABLE attempts (
                  task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE, number INTEGER NOT NULL,
                  run_id TEXT NOT NULL, stage TEXT NOT NULL, outcome TEXT NOT NULL, started_at REAL NOT NULL,
                  finished_at REAL, exit_code INTEGER, signal INTEGER, cpu_ms INTEGER, peak_rss INTEGER,
                  stdout_bytes INTEGER NOT NULL DEFAULT 0, stderr_bytes INTEGER NOT NULL DEFAULT 0,
                  stderr_tail TEXT, message TEXT, host TEXT, pid INTEGER, start_ticks INTEGER, owner TEXT,
                  PRIMARY KEY (task_id, number));
                CREATE INDEX attempts_run ON attempts(run_id);
                \(SQLiteStateStore.eventsTable)
                """)
        }),
        ("v2-task-results", { db in
            // The encoded result of a task (Swift stages), read by downstream stages, also after a resume.
            try db.execute(sql: "ALTER TABLE tasks ADD COLUMN result BLOB")
        }),
        ("v3-items", { db in
            try db.execute(sql: """
                CREATE TABLE items (
                  run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE, stage TEXT NOT NULL, key TEXT NOT NULL,
                  seq INTEGER NOT NULL, value BLOB NOT NULL, created_at REAL NOT NULL,
                  PRIMARY KEY (run_id, stage, key));
                ALTER TABLE tasks ADD COLUMN item BLOB;
                ALTER TABLE stages ADD COLUMN producer TEXT;
                ALTER TABLE stages ADD COLUMN tolerance TEXT;
                CREATE INDEX tasks_stage_status ON tasks(run_id, stage, status);
                """)
        }),
        ("v4-attempt-counters", { db in
            // Business counters and failed records an attempt reported (JSON).
            try db.execute(sql: "ALTER TABLE attempts ADD COLUMN counters TEXT")
        }),
        ("v5-claim-order", { db in
            // Claims take the oldest pending tasks: with this index that is a range scan, not a sort of
            // every pending task (which made each claim O(n) and a fan-out O(n²)).
            try db.execute(sql: """
                DROP INDEX tasks_claim;
                CREATE INDEX tasks_claim ON tasks(run_id, status, id);
                CREATE INDEX items_seq ON items(run_id, stage, seq);
                """)
        }),
        ("v6-queues", { db in
            // Workers claim the tasks of the queues they serve; a stage's concurrency holds across processes.
            try db.execute(sql: """
                ALTER TABLE stages ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
                ALTER TABLE stages ADD COLUMN max_running INTEGER;
                """)
        }),
        ("v7-api-tokens", { db in
            try db.execute(sql: """
                CREATE TABLE api_tokens (
                  name TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, created_at REAL NOT NULL, revoked_at REAL);
                """)
        }),
        ("v8-leases", { db in
            try db.execute(sql: "CREATE TABLE leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_at REAL NOT NULL)")
        }),
        ("v9-artifact-versions", { db in
            // Versioned outputs (C13): which run published which version with which hash.
            try db.execute(sql: SQLiteStateStore.artifactVersionTables)
        }),
        ("v10-sessions-outbox", { db in
            // Coordination sessions (C10) and the notification outbox (C11).
            try db.execute(sql: SQLiteStateStore.sessionAndOutboxTables)
        }),
        ("v11-partial-task-indexes", { db in
            // Fewer index entries to move per task (a large fan-out's store work is mostly index updates):
            // claims look among pending tasks only and lease renewals among running ones, so each has a
            // partial index, and a task that ends leaves both; the attempts of a run are found through
            // its tasks (attempts are keyed by task), so the attempts' own run index goes.
            try db.execute(sql: """
                DROP INDEX tasks_claim;
                CREATE INDEX tasks_pending ON tasks(run_id, id) WHERE status = 'pending';
                CREATE INDEX tasks_running ON tasks(run_id, lease_owner) WHERE status = 'running';
                DROP INDEX attempts_run;
                """)
        }),
    ]

    /// The migrations merged into `schema-v13`: the schema steps, then the two that followed them.
    static let mergedMigrations = Set(schemaSteps.map(\.id)).union(["schema-v11", "v12-local-tasks", "v13-done-items"])

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        // A new store is created with `schema` at once (a third of the time applying the steps took, a
        // few milliseconds of every new state folder); a store an earlier version wrote applies the steps
        // it lacks, in the same transaction. Named anew, so that an earlier version opening a store
        // created by this one sees an unknown migration and says the store is newer. Closed: a new schema
        // change is a migration of its own, registered after it (`v14-item-ranges`); `schema` has its
        // columns too, so that a new store is created at once, and the migration leaves a store that has
        // them as it is.
        m.registerMigration("schema-v13", merging: mergedMigrations) { db, applied in
            if applied.isEmpty {
                try db.execute(sql: schema)
                return
            }
            if !applied.contains("schema-v11") {
                for step in schemaSteps where !applied.contains(step.id) { try step.apply(db) }
            }
            if !applied.contains("v12-local-tasks") { try localTasksStep(db) }
            if !applied.contains("v13-done-items") { try doneItemsStep(db) }
        }
        m.registerMigration("v14-item-ranges", migrate: itemRangesStep)
        return m
    }

    /// The rowids of a producer's first and last items, in its stage (`v14-item-ranges`).
    static func itemRangesStep(_ db: Database) throws {
        // A new store has them already (`schema`).
        guard try !db.columns(in: "stages").contains(where: { $0.name == "first_item" }) else { return }
        // A stage's items are read in rowid order between the two (the join's result pages, the report's
        // stage summaries) instead of through the (run, stage, key) index, which gave the first one only by
        // reading all of the stage's entries, and each item's row only by a lookup of its own.
        try db.execute(sql: """
            ALTER TABLE stages ADD COLUMN first_item INTEGER;
            ALTER TABLE stages ADD COLUMN last_item INTEGER;
            UPDATE stages SET
              first_item = (SELECT min(rowid) FROM items WHERE items.run_id = stages.run_id AND items.stage = stages.name),
              last_item = (SELECT max(rowid) FROM items WHERE items.run_id = stages.run_id AND items.stage = stages.name)
            WHERE emitted > 0;
            """)
    }

    /// The migration `v12-local-tasks` of an earlier version.
    static func localTasksStep(_ db: Database) throws {
        // Local tasks (`keepsLocalTasks`): a stage whose first attempts its run process records when they
        // end, the items it has not recorded a task for yet, and the task id reserved for each item.
        // Task ids come from `task_ids` from now on, not from SQLite's rowid allocation, which would
        // hand out a reserved id again (it is not a row until its task ends).
        try db.execute(sql: """
            ALTER TABLE stages ADD COLUMN local_owner TEXT;
            ALTER TABLE stages ADD COLUMN local_left INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE items ADD COLUMN task_id INTEGER;
            CREATE TABLE task_ids (next INTEGER NOT NULL);
            INSERT INTO task_ids SELECT COALESCE(MAX(id), 0) + 1 FROM tasks;
            """)
    }

    /// Local tasks that succeed written into their items (`v13-done-items`).
    static func doneItemsStep(_ db: Database) throws {
        // A local task that succeeds at its first attempt is written into its item's row (`done_*`)
        // instead of a task row and an attempt row: one update in place instead of two inserts and
        // five index entries. Such a task's id is its item's rowid, so from now on every item takes
        // its rowid from `task_ids` (items written earlier, below `items_from`, keep theirs: their
        // local tasks get ids of their own, and task rows). `done_tasks` and `done_attempts` show
        // these rows as the task and attempt rows they stand for; a stage counts them in
        // `local_done`, and `local_by`, `local_host` and `local_pid` keep the process that ran them.
        // A stage's items are read in rowid order (their order), so the (run, stage, seq) index goes: the
        // number of items a stage emitted (the last `seq`) is kept in `stages.emitted`.
        try db.execute(sql: """
            ALTER TABLE items ADD COLUMN done_stage TEXT;
            ALTER TABLE items ADD COLUMN done_result BLOB;
            ALTER TABLE items ADD COLUMN done_started REAL;
            ALTER TABLE items ADD COLUMN done_finished REAL;
            ALTER TABLE items ADD COLUMN done_cpu_ms INTEGER;
            ALTER TABLE items ADD COLUMN done_peak_rss INTEGER;
            ALTER TABLE items ADD COLUMN done_message TEXT;
            ALTER TABLE items ADD COLUMN done_counters TEXT;
            ALTER TABLE stages ADD COLUMN local_done INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE stages ADD COLUMN local_by TEXT;
            ALTER TABLE stages ADD COLUMN local_host TEXT;
            ALTER TABLE stages ADD COLUMN local_pid INTEGER;
            ALTER TABLE stages ADD COLUMN emitted INTEGER NOT NULL DEFAULT 0;
            UPDATE stages SET emitted = (SELECT COALESCE(MAX(seq), 0) FROM items WHERE items.run_id = stages.run_id AND items.stage = stages.name);
            DROP INDEX items_seq;
            ALTER TABLE task_ids ADD COLUMN items_from INTEGER NOT NULL DEFAULT 0;
            UPDATE task_ids SET next = MAX(next, COALESCE((SELECT MAX(rowid) FROM items), 0) + 1);
            UPDATE task_ids SET items_from = next;
            CREATE VIEW done_tasks AS \(doneTasksView);
            CREATE VIEW done_attempts AS \(doneAttemptsView);
            """)
    }

    /// One IMMEDIATE transaction, so concurrent writers from other processes queue instead of failing mid-way.
    func write<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await pool.writeWithoutTransaction { db in
                var result: T?
                try db.inTransaction(.immediate) {
                    result = try body(db)
                    return .commit
                }
                return result!
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw StoreError(.io, "the state store '\(path)' could not record a change: \(Self.describe(error))",
                             hint: "check free disk space and permissions; nothing was half-written (the change was rolled back)")
        }
    }

    /// A read whose size grows with a run (all its results, its report, a page of thousands of events):
    /// on a reader connection's own queue, leaving the caller's thread to other tasks meanwhile.
    func read<T: Sendable>(_ body: @escaping @Sendable (Database) throws -> T) async throws -> T {
        do {
            return try await pool.read(body)
        } catch {
            throw readError(error)
        }
    }

    /// A read bounded by a page (a run, a run's stages, a page of tasks or results: at most a few
    /// thousand rows), done on the calling thread. Handing a read to a reader connection's queue and
    /// back is three thread switches, ~0.25 ms on the machines we measure, more than most such reads
    /// take (10–100 µs), and a run makes dozens of them: done here, a run with no items takes 1.5–3 ms
    /// less of its ~25. A read that grows with a run goes through `read`: here it would hold one of the
    /// few threads that all tasks share.
    func readNow<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try pool.read(body)
        } catch {
            throw readError(error)
        }
    }

    private func readError(_ error: any Error) -> StoreError {
        StoreError(.io, "the state store '\(path)' could not be read: \(Self.describe(error))",
                   hint: "check that the file exists and is readable")
    }
}
