import Foundation
import Logging
import PostgresNIO
import Testing
import SluiceCore
import SluiceStore
@testable import SluiceStorePostgres
import SluiceTesting
import Subprocess
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// The test server named by `SLUICE_TEST_POSTGRES` (see scripts/test-postgres.sh); tests skip without it.
enum TestPostgres {
    static func adminURL() throws -> String {
        guard let url = ProcessInfo.processInfo.environment["SLUICE_TEST_POSTGRES"], !url.isEmpty else {
            try Test.cancel("PostgreSQL tests skipped: SLUICE_TEST_POSTGRES is not set (CI sets it; see .ci/run)")
        }
        return url
    }

    /// The URL of a new, empty database on the test server.
    static func freshDatabase() async throws -> String {
        let admin = try adminURL()
        let name = "sluice_t_" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        try await execute(admin, "CREATE DATABASE \(name)")
        return try url(admin, database: name)
    }

    static func url(_ url: String, database: String? = nil, user: String? = nil, password: String? = nil, port: Int? = nil) throws -> String {
        var parts = try #require(URLComponents(string: url))
        if let database { parts.path = "/" + database }
        if let user { parts.user = user }
        if let password { parts.password = password }
        if let port { parts.port = port }
        return try #require(parts.string)
    }

    /// A PostgreSQL server of its own, for a test that restarts or stops it (the shared test server serves
    /// every other test at the same time). Uses the binaries of scripts/test-postgres.sh.
    struct PrivateServer {
        let url: String
        let data: String
        let bin: String

        static func start(_ name: String) async throws -> PrivateServer {
            let environment = ProcessInfo.processInfo.environment
            _ = try adminURL()
            guard let bin = environment["SLUICE_TEST_POSTGRES_BIN"] else {
                try Test.cancel("needs the PostgreSQL binaries scripts/test-postgres.sh names (SLUICE_TEST_POSTGRES_BIN)")
            }
            let data = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(name)-\(UUID().uuidString.prefix(8))").path
            try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o777])
            let port = try freePort()
            let server = PrivateServer(url: "postgres://postgres@127.0.0.1:\(port)/postgres", data: data, bin: bin)
            try await server.ctl("initdb", ["-D", "\(data)/db", "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"])
            try await server.ctl("pg_ctl", ["-D", "\(data)/db", "-l", "\(data)/server.log", "-w", "-t", "60", "start", "-o",
                                            "-c listen_addresses=127.0.0.1 -p \(port) -k \(data) -c fsync=off -c synchronous_commit=off"])
            return server
        }

        /// Runs one of the server's programs (as the `postgres` user when the tests run as root).
        /// With swift-subprocess, which closes every other descriptor in the child: the server started by
        /// `pg_ctl` must not inherit the pipes Foundation's `Process` keeps open to see other tests'
        /// processes end (their `waitUntilExit` would never return while the server runs).
        func ctl(_ program: String, _ arguments: [String]) async throws {
            let root = getuid() == 0
            let executable = root ? "/usr/sbin/runuser" : "\(bin)/\(program)"
            let result = try await Subprocess.run(.path(FilePath(executable)),
                                                  arguments: Arguments((root ? ["-u", "postgres", "--", "\(bin)/\(program)"] : []) + arguments),
                                                  output: .discarded, error: .discarded)
            try #require(result.terminationStatus.isSuccess, "\(program) \(arguments.joined(separator: " ")) failed (see \(data))")
        }

        func restart() async throws { try await ctl("pg_ctl", ["-D", "\(data)/db", "-m", "fast", "-w", "restart"]) }

        func stop() async {
            try? await ctl("pg_ctl", ["-D", "\(data)/db", "-m", "immediate", "-w", "stop"])
            try? FileManager.default.removeItem(atPath: data)
        }

        /// A TCP port nobody listens on now (the kernel's pick for a socket bound to port 0).
        static func freePort() throws -> Int {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = 0
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                    bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
                }
            }
            try #require(bound, "no free port")
            return Int(UInt16(bigEndian: address.sin_port))
        }
    }

    /// Runs `sql` on its own connection; returns the first column of each row as text.
    @discardableResult
    static func execute(_ url: String, _ sql: String) async throws -> [String?] {
        let target = try PostgresStateStore.Target(url: url, environment: ProcessInfo.processInfo.environment)
        let connection = try await PostgresConnection.connect(configuration: target.connection, id: 1, logger: Logger(label: "test"))
        do {
            let rows = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: Logger(label: "test")).collect()
            try await connection.close()
            return try rows.map { row in try row.first.flatMap { $0.bytes == nil ? nil : try $0.decode(String.self) } }
        } catch {
            try? await connection.close()
            throw error
        }
    }
}

@Suite("PostgreSQL store")
struct PostgresStoreTests {
    @Test func twoProcessesOpeningAFreshDatabaseAtOnceApplyTheMigrationsOnce() async throws {
        for _ in 1...3 {
            let url = try await TestPostgres.freshDatabase()
            async let a = PostgresStateStore.open(url: url)
            async let b = PostgresStateStore.open(url: url)
            let (first, second) = try await (a, b)
            #expect(try await TestPostgres.execute(url, "SELECT version::text FROM sluice_schema_migrations ORDER BY version") == PostgresStateStore.migrations.map { String($0.version) }, "each migration applied once")
            #expect(try await first.openRuns(limit: 1).isEmpty)
            #expect(try await second.openRuns(limit: 1).isEmpty)
            await first.close()
            await second.close()
        }
    }

    @Test func theHotStatementsArePreparedOncePerConnectionAndAnswerAsQueriesDo() async throws {
        let url = try await TestPostgres.freshDatabase()
        let store = try await PostgresStateStore.open(url: url)
        func read() async throws -> ([Bool], [Bool], [String]) { try await store.read { tx in
            let first = try await tx.rows(Statements.StageUnfinished.self) { $0.append("no-run"); $0.append("s") }
            let second = try await tx.rows(Statements.StageUnfinished.self) { $0.append("no-run"); $0.append("s") }
            let prepared = try await tx.rows("SELECT name FROM pg_prepared_statements ORDER BY name").map { try $0["name"] as String }
            return (try first.map { try $0["unfinished"] as Bool }, try second.map { try $0["unfinished"] as Bool }, prepared)
        } }
        let outcome: ([Bool], [Bool], [String])
        do { outcome = try await read() } catch { await store.close(); throw error }
        await store.close()
        let (first, second, prepared) = outcome
        #expect(first == [false] && second == [false])
        #expect(prepared == [Statements.StageUnfinished.name], "prepared once on this connection, by its name")
    }

    @Test func aStoreFromANewerVersionIsRefusedAndLeftUnchanged() async throws {
        let url = try await TestPostgres.freshDatabase()
        try await PostgresStateStore.open(url: url).close()
        try await TestPostgres.execute(url, "INSERT INTO sluice_schema_migrations VALUES (999, 'v999-future', 0)")
        let schema = """
            SELECT string_agg(table_name || '.' || column_name || ':' || data_type, ',' ORDER BY table_name, column_name)
            FROM information_schema.columns WHERE table_schema = 'public'
            """
        let before = try await TestPostgres.execute(url, schema) + TestPostgres.execute(url, "SELECT string_agg(version::text, ',') FROM sluice_schema_migrations")
        await #expect {
            _ = try await PostgresStateStore.open(url: url)
        } throws: { error in
            (error as? StoreError)?.code == .newerSchema && "\(error)".contains("newer version of Sluice")
        }
        let after = try await TestPostgres.execute(url, schema) + TestPostgres.execute(url, "SELECT string_agg(version::text, ',') FROM sluice_schema_migrations")
        #expect(before == after)
    }

    @Test func thePasswordNeverAppearsInErrors() async throws {
        let admin = try TestPostgres.adminURL()
        let secret = "Pw-\(UInt32.random(in: 0...UInt32.max))-s3cret"
        _ = try? await TestPostgres.execute(admin, "CREATE ROLE sluice_pw_test LOGIN PASSWORD 'the-right-one'")
        let host = try #require(URLComponents(string: admin)?.host), port = try #require(URLComponents(string: admin)?.port)

        func failure(_ url: String, environment: [String: String] = [:]) async -> String? {
            do throws(StoreError) {
                try await PostgresStateStore.open(url: url, environment: environment).close()
                return nil
            } catch {
                #expect(error.code == .cannotOpen)
                return "\(error)"
            }
        }
        // A wrong password in the URL, from PGPASSWORD, from a password file.
        let wrong = try TestPostgres.url(admin, user: "sluice_pw_test", password: secret)
        let text = try #require(await failure(wrong), "the test server must ask sluice_pw_test for its password (scripts/test-postgres.sh sets that up)")
        #expect(!text.contains(secret))
        #expect(text.contains("postgres://sluice_pw_test:***@\(host):\(port)/postgres"))
        #expect(text.contains("check the user and password"))
        let noPassword = try TestPostgres.url(admin, user: "sluice_pw_test")
        let fromEnvironment = try #require(await failure(noPassword, environment: ["PGPASSWORD": secret]))
        #expect(!fromEnvironment.contains(secret) && fromEnvironment.contains("PGPASSWORD"))
        let dir = try TemporaryDirectory(prefix: "pw")
        try dir.write("password", "\(secret)\nsecond line\n")
        let fromFile = try #require(await failure(noPassword, environment: ["SLUICE_STATE_PASSWORD_FILE": dir.file("password")]))
        #expect(!fromFile.contains(secret) && fromFile.contains(dir.file("password")))
        // Nobody listens on port 1.
        let unreachable = try #require(await failure(try TestPostgres.url(admin, password: secret, port: 1)))
        #expect(!unreachable.contains(secret))
        #expect(unreachable.contains("postgres://postgres:***@\(host):1/postgres"))
        #expect(unreachable.contains("is the server running?"))
        // A database that does not exist, and a URL that is not one.
        let missing = try #require(await failure(try TestPostgres.url(admin, database: "sluice_no_such_db", password: secret)))
        #expect(!missing.contains(secret) && missing.contains("createdb sluice_no_such_db"))
        let garbage = try #require(await failure("postgres://u:\(secret)@/db"))
        #expect(!garbage.contains(secret))
        // The store's own description.
        let store = try await PostgresStateStore.open(url: try TestPostgres.url(try await TestPostgres.freshDatabase(), password: secret))
        #expect(!store.description.contains(secret) && store.description.contains(":***@"))
        await store.close()
        dir.remove()
    }

    @Test func waitForWorkWakesOnAnotherStoresNotification() async throws {
        let url = try await TestPostgres.freshDatabase()
        let waiter = try await PostgresStateStore.open(url: url), writer = try await PostgresStateStore.open(url: url)
        let h = try await StoreHarness(.sqlite)
        // Nothing happens: it waits its timeout.
        let clock = ContinuousClock()
        let idle = await clock.measure { await waiter.waitForWork(timeout: .milliseconds(300)) }
        #expect(idle >= .milliseconds(250) && idle < .seconds(5))
        _ = try await writer.createRun(h.newRun("r1"), overlap: .allow, now: h.now, events: [])
        // createRun's notification, received while nobody waited, is kept for the next waiter.
        try await Task.sleep(for: .milliseconds(500))
        // (Timeouts of a minute against thresholds of 30 s: on a loaded CI machine a wake-up can take seconds.)
        #expect(await clock.measure { await waiter.waitForWork(timeout: .seconds(60)) } < .seconds(30))

        let woken = Task { await clock.measure { await waiter.waitForWork(timeout: .seconds(60)) } }
        try await Task.sleep(for: .milliseconds(300))
        try await writer.applyStageTransitions(run: RunID("r1"), [.start("a", taskKeys: ["main"])], now: h.now, events: [])
        #expect(await woken.value < .seconds(30), "woken by NOTIFY, not by the 60 s timeout")
        await waiter.close()
        await writer.close()
        // A closed store's listener is gone: waiting still returns, after the timeout.
        let closed = await clock.measure { await waiter.waitForWork(timeout: .milliseconds(100)) }
        #expect(closed < .seconds(5))
    }

    @Test func concurrentCompletionsOfAStagesLastTasksRollItUpOnceInAHundredRounds() async throws {
        let h = try await StoreHarness(.postgres)
        var stores = [h.store]
        for _ in 1..<8 { stores.append(try await h.another()) }
        try await raceCompletions(h, stores: stores, rounds: 100)
        for store in stores { await (store as? PostgresStateStore)?.close() }
    }
}
