import Foundation
import Logging
import PostgresNIO
import SluiceCore
import SluiceStore
import Synchronization

/// The shared store: one PostgreSQL database used by every process on every machine.
///
/// Every protocol method is one transaction (READ COMMITTED). Decisions that must happen once are
/// serialized by row locks: a stage's row is locked (`FOR UPDATE`, several in name order) before the
/// status of its tasks changes or it is rolled up; claimers skip each other's task rows
/// (`FOR UPDATE SKIP LOCKED`); runs of one pipeline are created under an advisory lock. Transactions that
/// may create work send `NOTIFY sluice_work`, which wakes `waitForWork` in every process.
public final class PostgresStateStore: StateStore, CustomStringConvertible {
    /// The URL with its password replaced by `***`: what messages show.
    public let displayURL: String
    let client: PostgresClient
    let logger: Logger
    private let password: String?
    private let runTask: Task<Void, Never>
    private let listenerTask: Task<Void, Never>
    private let signal: WorkSignal
    private let closed = Mutex(false)

    static let channel = "sluice_work"
    /// The advisory lock key that serializes migrations ("sluice" in ASCII).
    static let migrationLock: Int64 = 0x736c_7569_6365
    /// The first key of the advisory locks that serialize run creation per pipeline.
    static let createRunLock: Int32 = 0x736c_7563

    public var description: String { "PostgreSQL state store \(displayURL)" }

    /// Opens the store at `url` (`postgres://user[:password]@host[:port]/database`, or `postgresql://`,
    /// optionally `?sslmode=disable|prefer|require|verify-ca|verify-full`) and applies pending migrations.
    /// Without a password in the URL, `PGPASSWORD` is used, else the first line of the file named by
    /// `SLUICE_STATE_PASSWORD_FILE`. The password never appears in errors or logs.
    public static func open(url: String, environment: [String: String] = ProcessInfo.processInfo.environment,
                            logger: Logger = Logger(label: "sluice.store.postgres")) async throws(StoreError) -> PostgresStateStore {
        let target = try Target(url: url, environment: environment)
        let first = try await connect(target, logger: logger)
        do {
            try await migrate(first, target: target, logger: logger)
        } catch {
            try? await first.close()
            throw error
        }
        try? await first.close()
        let client = PostgresClient(configuration: target.client, backgroundLogger: logger)
        let runTask = Task { await client.run() }
        let signal = WorkSignal()
        let (ready, readyContinuation) = AsyncStream.makeStream(of: Void.self)
        let listenerTask = Task {
            await listen(target.connection, signal: signal, ready: readyContinuation, logger: logger)
        }
        // Returns once LISTEN is active (or failed: then waiters just wait their timeout).
        for await _ in ready { break }
        return PostgresStateStore(target: target, client: client, runTask: runTask, signal: signal, listenerTask: listenerTask,
                                  logger: logger)
    }

    private init(target: Target, client: PostgresClient, runTask: Task<Void, Never>, signal: WorkSignal,
                 listenerTask: Task<Void, Never>, logger: Logger) {
        displayURL = target.display
        password = target.password
        self.client = client
        self.runTask = runTask
        self.signal = signal
        self.listenerTask = listenerTask
        self.logger = logger
    }

    deinit {
        listenerTask.cancel()
        runTask.cancel()
    }

    /// Stops listening and shuts the connection pool down. The store cannot be used afterwards.
    public func close() async {
        guard closed.withLock({ (c: inout Bool) -> Bool in defer { c = true }; return !c }) else { return }
        listenerTask.cancel()
        await listenerTask.value
        runTask.cancel()
        await runTask.value
    }

    // MARK: waiting for work

    public func waitForWork(timeout: Duration) async {
        await signal.wait(timeout: timeout)
    }

    /// Keeps one connection listening on `sluice_work`, reconnecting with a backoff when it drops;
    /// every notification wakes every waiter. Yields `ready` after the first attempt, whatever its outcome.
    static func listen(_ configuration: PostgresConnection.Configuration, signal: WorkSignal,
                       ready: AsyncStream<Void>.Continuation, logger: Logger) async {
        var delay = Duration.seconds(1)
        var connected = false
        while !Task.isCancelled {
            do {
                let connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
                do {
                    try await connection.listen(on: channel) { notifications in
                        ready.yield()
                        ready.finish()
                        delay = .seconds(1)
                        if connected { signal.wake() } // work may have appeared while we were not listening
                        connected = true
                        for try await _ in notifications { signal.wake() }
                    }
                } catch {
                    if !Task.isCancelled {
                        logger.warning("lost the LISTEN connection to the state store: \(describe(error)); retrying in \(delay)")
                    }
                }
                try? await connection.close()
            } catch {
                logger.warning("cannot LISTEN for work on the state store: \(describe(error)); waiting for timeouts, retrying in \(delay)")
            }
            ready.yield()
            ready.finish()
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(30))
        }
        ready.finish()
    }

    // MARK: transactions

    /// Runs `body` in one transaction, retried when PostgreSQL reports a deadlock or a serialization
    /// failure. With `notify`, `NOTIFY sluice_work` is sent in it (delivered at commit).
    func transaction<T: Sendable>(notify: Bool = false, _ body: (Tx) async throws -> T) async throws(StoreError) -> T {
        try await transaction(notifyWhen: { _ in notify }, body)
    }

    /// As `transaction(notify:_:)`, with `NOTIFY sluice_work` sent when `notifyWhen` says so of what the
    /// body returned (idle workers wake only when there may be work for them).
    func transaction<T: Sendable>(notifyWhen: (T) -> Bool, _ body: (Tx) async throws -> T) async throws(StoreError) -> T {
        var attempt = 0
        while true {
            attempt += 1
            do {
                // Not `PostgresClient.withTransaction`: its BEGIN/COMMIT can be lost on a closing
                // connection (see `Tx.result`); ours go through the same guarded path as every query.
                return try await client.withConnection { connection in
                    let tx = Tx(connection: connection, logger: logger)
                    try await tx.exec("BEGIN")
                    do {
                        let value = try await body(tx)
                        if notifyWhen(value) { try await tx.exec("NOTIFY sluice_work") }
                        try await tx.exec("COMMIT")
                        return value
                    } catch {
                        if !connection.isClosed { try? await tx.exec("ROLLBACK") }
                        throw error
                    }
                }
            } catch {
                if let store = Self.storeError(in: error) { throw store }
                if attempt < 5, let state = Self.sqlState(of: error), state == "40P01" || state == "40001" { continue }
                throw fail(.io, "the PostgreSQL state store \(displayURL) could not record a change: \(Self.describe(error))",
                           hint: "check that the server is reachable and accepts writes; nothing was half-written (the change was rolled back)")
            }
        }
    }

    func read<T: Sendable>(_ body: (Tx) async throws -> T) async throws(StoreError) -> T {
        do {
            return try await client.withConnection { connection in try await body(Tx(connection: connection, logger: logger)) }
        } catch {
            if let store = Self.storeError(in: error) { throw store }
            throw fail(.io, "the PostgreSQL state store \(displayURL) could not be read: \(Self.describe(error))",
                       hint: "is the server running? check host and port, and that the store was not closed")
        }
    }

    func fail(_ code: StoreError.Code, _ message: String, hint: String) -> StoreError {
        StoreError(code, Self.redact(message, password), hint: Self.redact(hint, password))
    }

    // MARK: opening

    /// Where to connect, parsed from the URL, with what messages may show.
    struct Target {
        var connection: PostgresConnection.Configuration
        var client: PostgresClient.Configuration
        var display: String
        var database: String
        var user: String
        var password: String?
        var passwordSource: String

        init(url: String, environment: [String: String]) throws(StoreError) {
            let format = "write postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (the password may also come from PGPASSWORD or SLUICE_STATE_PASSWORD_FILE)"
            guard let parts = URLComponents(string: url), let scheme = parts.scheme?.lowercased(),
                  scheme == "postgres" || scheme == "postgresql" else {
                throw StoreError(.cannotOpen, "the state URL '\(Self.redactURL(url))' is not a PostgreSQL URL", hint: format)
            }
            guard let host = parts.host, !host.isEmpty else {
                throw StoreError(.cannotOpen, "the state URL '\(Self.redactURL(url))' names no host", hint: format)
            }
            guard let user = parts.user, !user.isEmpty else {
                throw StoreError(.cannotOpen, "the state URL '\(Self.redactURL(url))' names no user", hint: format)
            }
            let database = String(parts.path.drop { $0 == "/" })
            guard !database.isEmpty, !database.contains("/") else {
                throw StoreError(.cannotOpen, "the state URL '\(Self.redactURL(url))' names no database", hint: format)
            }
            let port = parts.port ?? 5432
            if let password = parts.password {
                self.password = password
                passwordSource = "the password in the URL"
            } else if let password = environment["PGPASSWORD"] {
                self.password = password
                passwordSource = "the password from PGPASSWORD"
            } else if let file = environment["SLUICE_STATE_PASSWORD_FILE"], !file.isEmpty {
                guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                    throw StoreError(.cannotOpen, "cannot read the password file '\(file)' (SLUICE_STATE_PASSWORD_FILE)",
                                     hint: "check that the file exists and that this user may read it")
                }
                password = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first
                    .map { String($0).trimmingCharacters(in: CharacterSet(charactersIn: "\r")) } ?? ""
                passwordSource = "the password from '\(file)'"
            } else {
                password = nil
                passwordSource = "no password"
            }
            self.user = user
            self.database = database
            let hostText = host.contains(":") ? "[\(host)]" : host
            display = "\(scheme)://\(user)\(password == nil ? "" : ":***")@\(hostText):\(port)/\(database)"

            let mode = parts.queryItems?.first { $0.name == "sslmode" }?.value ?? "disable"
            var tls = TLSConfiguration.makeClientConfiguration()
            let connectionTLS: PostgresConnection.Configuration.TLS
            let clientTLS: PostgresClient.Configuration.TLS
            do {
                switch mode {
                case "disable", "allow":
                    connectionTLS = .disable
                    clientTLS = .disable
                case "prefer", "require", "verify-ca", "verify-full":
                    // libpq's meaning: prefer and require encrypt without checking the certificate.
                    if mode == "prefer" || mode == "require" { tls.certificateVerification = .none }
                    if mode == "verify-ca" { tls.certificateVerification = .noHostnameVerification }
                    let context = try NIOSSLContext(configuration: tls)
                    connectionTLS = mode == "prefer" ? .prefer(context) : .require(context)
                    clientTLS = mode == "prefer" ? .prefer(tls) : .require(tls)
                default:
                    throw StoreError(.cannotOpen, "the state URL '\(display)' has an unknown sslmode '\(mode)'",
                                     hint: "use sslmode=disable, prefer, require, verify-ca or verify-full")
                }
            } catch let error as StoreError {
                throw error
            } catch {
                throw StoreError(.cannotOpen, "cannot set up TLS for \(display): \(error)", hint: "use sslmode=disable on a trusted network")
            }
            connection = PostgresConnection.Configuration(host: host, port: port, username: user, password: password,
                                                         database: database, tls: connectionTLS)
            connection.options.connectTimeout = .seconds(10)
            connection.options.additionalStartupParameters = Self.sessionSettings
            client = PostgresClient.Configuration(host: host, port: port, username: user, password: password,
                                                  database: database, tls: clientTLS)
            client.options.connectTimeout = .seconds(10)
            client.options.additionalStartupParameters = Self.sessionSettings
        }

        /// Settings of every session. A process stopped in the middle of a transaction (SIGSTOP, a frozen
        /// VM, a network cut) would hold its row locks until TCP gave up, hours later, and every other
        /// process would wait on them: the server ends a session idle inside a transaction for 15 s
        /// instead (its transaction is rolled back; the process, if it comes back, retries). None of
        /// Sluice's transactions waits on anything but the database.
        static let sessionSettings = [("idle_in_transaction_session_timeout", "15s"), ("application_name", "sluice")]

        /// A URL as it may be shown: any password replaced by `***`.
        static func redactURL(_ url: String) -> String {
            guard var parts = URLComponents(string: url), parts.password != nil else { return url.contains("@") ? "(unparseable URL)" : url }
            parts.password = "***"
            return parts.string?.replacingOccurrences(of: "%2A%2A%2A", with: "***") ?? "(unparseable URL)"
        }
    }

    static func connect(_ target: Target, logger: Logger) async throws(StoreError) -> PostgresConnection {
        do {
            return try await PostgresConnection.connect(configuration: target.connection, id: 0, logger: logger)
        } catch {
            let reason = describe(error)
            let state = sqlState(of: error)
            let message: String, hint: String
            switch state {
            case "28P01", "28000":
                message = "PostgreSQL at \(target.display) refused user '\(target.user)' (\(target.passwordSource)): \(reason)"
                hint = "check the user and password (in the URL, PGPASSWORD or SLUICE_STATE_PASSWORD_FILE)"
            case "3D000":
                message = "the database '\(target.database)' does not exist on PostgreSQL at \(target.display)"
                hint = "create the database with createdb \(target.database) (or CREATE DATABASE \(target.database)), or fix the URL"
            case "53300":
                message = "PostgreSQL at \(target.display) has no connection left: \(reason)"
                hint = "raise max_connections or run fewer processes against it"
            case .some:
                message = "PostgreSQL at \(target.display) refused the connection: \(reason)"
                hint = "check the URL and the server's log"
            case nil:
                if let psql = error as? PSQLError, psql.code == .authMechanismRequiresPassword {
                    message = "PostgreSQL at \(target.display) asks user '\(target.user)' for a password and none was given"
                    hint = "put it in the URL, in PGPASSWORD or in a file named by SLUICE_STATE_PASSWORD_FILE"
                } else if let psql = error as? PSQLError, psql.code == .sslUnsupported {
                    message = "PostgreSQL at \(target.display) does not accept TLS connections"
                    hint = "enable TLS on the server, or use sslmode=disable on a trusted network"
                } else {
                    message = "cannot connect to PostgreSQL at \(target.display): \(reason)"
                    hint = "is the server running? check host and port"
                }
            }
            throw StoreError(.cannotOpen, redact(message, target.password), hint: redact(hint, target.password))
        }
    }

    /// Applies the migrations this version knows, in one transaction under an advisory lock, so processes
    /// opening a fresh database at the same moment apply them once. A newer schema changes nothing.
    static func migrate(_ connection: PostgresConnection, target: Target, logger: Logger) async throws(StoreError) {
        do {
            try await connection.withTransaction(logger: logger) { connection in
                let tx = Tx(connection: connection, logger: logger)
                try await tx.exec("SELECT pg_advisory_xact_lock(\(migrationLock))")
                try await tx.exec("""
                    CREATE TABLE IF NOT EXISTS sluice_schema_migrations (
                      version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)
                    """)
                let current = try await tx.value("SELECT COALESCE(MAX(version), 0) FROM sluice_schema_migrations", as: Int.self) ?? 0
                let known = migrations.map(\.version).max() ?? 0
                if current > known {
                    throw StoreError(.newerSchema, "the PostgreSQL state store \(target.display) was written by a newer version of Sluice (schema \(current), this version knows \(known))",
                                     hint: "upgrade sluice, or point this version at another database; the store was not changed")
                }
                for migration in migrations where migration.version > current {
                    for statement in migration.statements { try await tx.exec(PostgresQuery(unsafeSQL: statement)) }
                    try await tx.exec("""
                        INSERT INTO sluice_schema_migrations (version, name, applied_at)
                        VALUES (\(migration.version), \(migration.name), \(Date().timeIntervalSince1970))
                        """)
                }
            }
        } catch {
            if let store = storeError(in: error) { throw StoreError(store.code, redact(store.message, target.password), hint: store.hint) }
            throw StoreError(.cannotOpen, redact("cannot prepare the PostgreSQL state store \(target.display): \(describe(error))", target.password),
                             hint: "check that user '\(target.user)' may create tables in database '\(target.database)'")
        }
    }

    static let migrations: [(version: Int, name: String, statements: [String])] = [
        (1, "schema", [
            """
            CREATE TABLE runs (
              id TEXT COLLATE "C" PRIMARY KEY, pipeline TEXT COLLATE "C" NOT NULL, spec TEXT NOT NULL, params TEXT NOT NULL,
              trigger TEXT NOT NULL, status TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, started_at DOUBLE PRECISION,
              finished_at DOUBLE PRECISION, cancel_requested_at DOUBLE PRECISION, lease_owner TEXT, lease_host TEXT,
              lease_pid BIGINT, lease_expires_at DOUBLE PRECISION, idempotency_key TEXT UNIQUE, run_dir TEXT NOT NULL)
            """,
            "CREATE INDEX runs_pipeline_status ON runs (pipeline, status)",
            """
            CREATE TABLE stages (
              run_id TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE, name TEXT COLLATE "C" NOT NULL,
              position BIGINT NOT NULL, status TEXT NOT NULL, reason TEXT, started_at DOUBLE PRECISION,
              finished_at DOUBLE PRECISION, producer TEXT COLLATE "C", tolerance TEXT,
              queue TEXT NOT NULL DEFAULT 'default', max_running BIGINT, PRIMARY KEY (run_id, name))
            """,
            """
            CREATE TABLE tasks (
              id BIGSERIAL PRIMARY KEY, run_id TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
              stage TEXT COLLATE "C" NOT NULL, key TEXT COLLATE "C" NOT NULL, status TEXT NOT NULL,
              attempts BIGINT NOT NULL DEFAULT 0, retry_base BIGINT NOT NULL DEFAULT 0,
              lost_attempts BIGINT NOT NULL DEFAULT 0, not_before DOUBLE PRECISION, lease_owner TEXT,
              lease_expires_at DOUBLE PRECISION, created_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION,
              result BYTEA, item BYTEA, UNIQUE (run_id, stage, key))
            """,
            "CREATE INDEX tasks_claim ON tasks (run_id, status, id)",
            "CREATE INDEX tasks_stage_status ON tasks (run_id, stage, status)",
            // Renewing an owner's leases across runs must not scan every task.
            "CREATE INDEX tasks_running_owner ON tasks (lease_owner) WHERE status = 'running'",
            """
            CREATE TABLE attempts (
              task_id BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE, number BIGINT NOT NULL,
              run_id TEXT COLLATE "C" NOT NULL, stage TEXT COLLATE "C" NOT NULL, outcome TEXT NOT NULL,
              started_at DOUBLE PRECISION NOT NULL, finished_at DOUBLE PRECISION, exit_code BIGINT, signal BIGINT,
              cpu_ms BIGINT, peak_rss BIGINT, stdout_bytes BIGINT NOT NULL DEFAULT 0, stderr_bytes BIGINT NOT NULL DEFAULT 0,
              stderr_tail TEXT, message TEXT, host TEXT, pid BIGINT, start_ticks BIGINT, owner TEXT, counters TEXT,
              PRIMARY KEY (task_id, number))
            """,
            "CREATE INDEX attempts_run ON attempts (run_id)",
            """
            CREATE TABLE items (
              run_id TEXT COLLATE "C" NOT NULL REFERENCES runs (id) ON DELETE CASCADE, stage TEXT COLLATE "C" NOT NULL,
              key TEXT COLLATE "C" NOT NULL, seq BIGINT NOT NULL, value BYTEA NOT NULL, created_at DOUBLE PRECISION NOT NULL,
              PRIMARY KEY (run_id, stage, key))
            """,
            "CREATE INDEX items_seq ON items (run_id, stage, seq)",
            """
            CREATE TABLE events (
              id BIGSERIAL PRIMARY KEY, run_id TEXT COLLATE "C" NOT NULL, pipeline TEXT NOT NULL, stage TEXT, task_id BIGINT,
              attempt BIGINT, event TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, msg TEXT NOT NULL, attrs TEXT)
            """,
            "CREATE INDEX events_run ON events (run_id, id)",
        ]),
        (2, "api-tokens", [
            """
            CREATE TABLE api_tokens (
              name TEXT COLLATE "C" PRIMARY KEY, hash TEXT NOT NULL UNIQUE, created_at DOUBLE PRECISION NOT NULL,
              revoked_at DOUBLE PRECISION)
            """,
        ]),
        (3, "leases", [
            "CREATE TABLE leases (name TEXT COLLATE \"C\" PRIMARY KEY, holder TEXT NOT NULL, expires_at DOUBLE PRECISION NOT NULL)",
        ]),
        (4, "artifact-versions", [
            """
            CREATE TABLE artifact_versions (
              pipeline TEXT COLLATE "C" NOT NULL, name TEXT COLLATE "C" NOT NULL, version BIGINT NOT NULL,
              sha256 TEXT NOT NULL, size BIGINT NOT NULL, created_at DOUBLE PRECISION NOT NULL, run_id TEXT COLLATE "C",
              stage TEXT, root TEXT NOT NULL, file TEXT NOT NULL, annotations TEXT NOT NULL,
              PRIMARY KEY (pipeline, name, version))
            """,
            "CREATE INDEX artifact_versions_run ON artifact_versions (run_id)",
        ]),
        (5, "sessions-outbox", [
            // Coordination sessions (C10) and the notification outbox (C11).
            """
            CREATE TABLE sessions (
              id TEXT COLLATE "C" PRIMARY KEY, name TEXT COLLATE "C" NOT NULL, group_key TEXT, status TEXT NOT NULL,
              spec TEXT NOT NULL, opened_at DOUBLE PRECISION NOT NULL, deadline DOUBLE PRECISION NOT NULL,
              closed_at DOUBLE PRECISION)
            """,
            "CREATE INDEX sessions_name ON sessions (name, opened_at)",
            "CREATE INDEX sessions_open ON sessions (status, deadline)",
            """
            CREATE TABLE session_members (
              session_id TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
              pipeline TEXT COLLATE "C" NOT NULL, run_id TEXT COLLATE "C" NOT NULL, joined_at DOUBLE PRECISION NOT NULL,
              late BOOLEAN NOT NULL DEFAULT false, PRIMARY KEY (session_id, pipeline))
            """,
            "CREATE UNIQUE INDEX session_members_run ON session_members (run_id)",
            """
            CREATE TABLE notifications (
              id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, run_id TEXT COLLATE "C", session_id TEXT COLLATE "C",
              origin TEXT NOT NULL, action TEXT NOT NULL, status TEXT NOT NULL, attempts BIGINT NOT NULL DEFAULT 0,
              created_at DOUBLE PRECISION NOT NULL, next_attempt_at DOUBLE PRECISION NOT NULL,
              delivered_at DOUBLE PRECISION, last_error TEXT, lease_owner TEXT, lease_expires_at DOUBLE PRECISION)
            """,
            "CREATE INDEX notifications_due ON notifications (status, next_attempt_at)",
            "CREATE INDEX notifications_run ON notifications (run_id)",
            "CREATE INDEX notifications_session ON notifications (session_id)",
        ]),
    ]

    // MARK: errors

    static func storeError(in error: any Error) -> StoreError? {
        if let store = error as? StoreError { return store }
        if let tx = error as? PostgresTransactionError, let inner = tx.closureError { return storeError(in: inner) }
        return nil
    }

    static func psqlError(in error: any Error) -> PSQLError? {
        if let psql = error as? PSQLError { return psql }
        if let tx = error as? PostgresTransactionError {
            for inner in [tx.closureError, tx.commitError, tx.beginError] { if let inner, let psql = psqlError(in: inner) { return psql } }
        }
        return nil
    }

    static func sqlState(of error: any Error) -> String? {
        psqlError(in: error)?.serverInfo?[.sqlState]
    }

    /// What went wrong, never with the query's values (PSQLError's debug text holds them).
    static func describe(_ error: any Error) -> String {
        if let psql = psqlError(in: error) {
            if let message = psql.serverInfo?[.message] {
                return message + (psql.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? "")
            }
            return psql.underlying.map { "\(psql.code): \($0)" } ?? "\(psql.code)"
        }
        if let decoding = error as? PostgresDecodingError {
            return "unexpected data in column '\(decoding.columnName)' (\(decoding.code))"
        }
        if error is CancellationError { return "cancelled" }
        if error is ConnectionClosed { return "the connection to the server closed" }
        if String(describing: type(of: error)) == "ConnectionPoolError" {
            return "no connection to the server (\(error))"
        }
        if let tx = error as? PostgresTransactionError {
            return (tx.closureError ?? tx.commitError ?? tx.beginError).map(describe) ?? "the transaction failed"
        }
        return "\(error)"
    }

    /// A last guard (messages are built without the password): any occurrence of it becomes `***`.
    /// Not for passwords of under 4 characters, which would mangle every message.
    static func redact(_ text: String, _ password: String?) -> String {
        guard let password, password.count >= 4 else { return text }
        return text.replacingOccurrences(of: password, with: "***")
    }
}

/// Wakes every task waiting for work at once; a waiter that is not woken returns after its timeout.
/// A wake with nobody waiting is kept for the next waiter (work appeared while its caller was busy).
final class WorkSignal: Sendable {
    private enum Waiter {
        case waiting(CheckedContinuation<Void, Never>)
        case cancelled
    }

    private let state = Mutex<(next: UInt64, pending: Bool, waiters: [UInt64: Waiter])>((0, false, [:]))

    func wake() {
        let woken = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            var woken: [CheckedContinuation<Void, Never>] = []
            for (id, waiter) in state.waiters {
                if case .waiting(let continuation) = waiter {
                    woken.append(continuation)
                    state.waiters[id] = nil
                }
            }
            state.pending = woken.isEmpty
            return woken
        }
        for continuation in woken { continuation.resume() }
    }

    func wait(timeout: Duration) async {
        let id = state.withLock { state -> UInt64? in
            if state.pending {
                state.pending = false
                return nil
            }
            state.next += 1
            return state.next
        }
        guard let id else { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: timeout) }
            group.addTask { await self.waitForWake(id) }
            await group.next()
            group.cancelAll()
        }
        state.withLock { _ = $0.waiters.removeValue(forKey: id) }
    }

    private func waitForWake(_ id: UInt64) async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if case .cancelled? = state.waiters[id] {
                        state.waiters[id] = nil
                        return true
                    }
                    state.waiters[id] = .waiting(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
                if case .waiting(let continuation)? = state.waiters[id] {
                    state.waiters[id] = nil
                    return continuation
                }
                state.waiters[id] = .cancelled
                return nil
            }
            continuation?.resume()
        }
    }
}
