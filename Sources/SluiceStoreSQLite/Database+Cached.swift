import GRDB
import GRDBSQLite
import Foundation
import SluiceCore
import SluiceStore

/// Statements of the store's operations come from the connection's statement cache: each SQL text is
/// compiled (and authorized) once per connection, not once per call.
extension Database {
    func exec(sql: String, arguments: StatementArguments = StatementArguments()) throws {
        try cachedStatement(sql: sql).execute(arguments: arguments)
    }

    func rows(sql: String, arguments: StatementArguments = StatementArguments()) throws -> [Row] {
        try Row.fetchAll(cachedStatement(sql: sql), arguments: arguments)
    }

    func row(sql: String, arguments: StatementArguments = StatementArguments()) throws -> Row? {
        try Row.fetchOne(cachedStatement(sql: sql), arguments: arguments)
    }

    func one<T: DatabaseValueConvertible & StatementColumnConvertible>(_ type: T.Type, sql: String,
                                                                       arguments: StatementArguments = StatementArguments()) throws -> T? {
        try T.fetchOne(cachedStatement(sql: sql), arguments: arguments)
    }

    func all<T: DatabaseValueConvertible & StatementColumnConvertible>(_ type: T.Type, sql: String,
                                                                       arguments: StatementArguments = StatementArguments()) throws -> [T] {
        try T.fetchAll(cachedStatement(sql: sql), arguments: arguments)
    }
}

/// Values bound to a statement through SQLite's C API (`Statement.execute(binding:)`), for the
/// statements that run once per task: GRDB's `StatementArguments` box every value, which was a
/// large share of the writer's time in a fan-out of microsecond tasks.
struct RawBindings {
    let statement: OpaquePointer
    private var index: Int32 = 0
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    init(_ statement: OpaquePointer) { self.statement = statement }

    mutating func add(_ value: Int64?) {
        index += 1
        if let value { sqlite3_bind_int64(statement, index, value) } else { sqlite3_bind_null(statement, index) }
    }

    mutating func add(_ value: Int?) { add(value.map { Int64($0) }) }

    mutating func add(_ value: Double?) {
        index += 1
        if let value { sqlite3_bind_double(statement, index, value) } else { sqlite3_bind_null(statement, index) }
    }

    mutating func add(_ value: String?) {
        index += 1
        guard var value else { sqlite3_bind_null(statement, index); return }
        value.withUTF8 { text in
            if let base = text.baseAddress, !text.isEmpty {
                _ = base.withMemoryRebound(to: CChar.self, capacity: text.count) {
                    sqlite3_bind_text(statement, index, $0, Int32(text.count), Self.transient)
                }
            } else {
                _ = sqlite3_bind_text(statement, index, "", 0, Self.transient)
            }
        }
    }

    /// How an attempt ended, in the order both statements that record it list the columns: outcome,
    /// started_at, finished_at, exit_code, signal, cpu_ms, peak_rss, stdout_bytes, stderr_bytes,
    /// stderr_tail, message, pid, start_ticks, counters.
    mutating func addEnding(of attempt: AttemptRecord, finishedAt: Date, counters: String?) {
        add(attempt.outcome.rawValue)
        add(attempt.startedAt.timeIntervalSince1970)
        add(finishedAt.timeIntervalSince1970)
        add(attempt.exitCode.map { Int64($0) })
        add(attempt.signal.map { Int64($0) })
        add(attempt.cpuMs)
        add(attempt.peakRSSBytes)
        add(attempt.stdoutBytes)
        add(attempt.stderrBytes)
        add(attempt.stderrTail)
        add(attempt.message)
        add(attempt.pid.map { Int64($0) })
        add(attempt.processStartTicks)
        add(counters)
    }

    mutating func add(_ value: Data?) {
        index += 1
        guard let value else { sqlite3_bind_null(statement, index); return }
        value.withUnsafeBytes { bytes in
            if let base = bytes.baseAddress, !bytes.isEmpty {
                _ = sqlite3_bind_blob(statement, index, base, Int32(bytes.count), Self.transient)
            } else {
                _ = sqlite3_bind_zeroblob(statement, index, 0)
            }
        }
    }

    var count: Int32 { index }
}

/// Columns of the row a statement is at (`Statement.forEachRow`), read through SQLite's C API.
enum RawColumns {
    static func text(_ row: OpaquePointer, _ column: Int32) -> String {
        guard let bytes = sqlite3_column_text(row, column) else { return "" }
        return String(decoding: UnsafeBufferPointer(start: bytes, count: Int(sqlite3_column_bytes(row, column))), as: UTF8.self)
    }

    static func optionalText(_ row: OpaquePointer, _ column: Int32) -> String? {
        sqlite3_column_type(row, column) == SQLITE_NULL ? nil : text(row, column)
    }

    static func date(_ row: OpaquePointer, _ column: Int32) -> Date? {
        sqlite3_column_type(row, column) == SQLITE_NULL ? nil : Date(timeIntervalSince1970: sqlite3_column_double(row, column))
    }

    static func blob(_ row: OpaquePointer, _ column: Int32) -> Data {
        guard let bytes = sqlite3_column_blob(row, column) else { return Data() }
        return Data(bytes: bytes, count: Int(sqlite3_column_bytes(row, column)))
    }
}

extension Statement {
    /// This statement reset, with every parameter bound by `bind` (all of them, checked: nothing is left
    /// from the last call, so the bindings need no clearing first).
    private func rebound(_ bind: (inout RawBindings) -> Void) -> OpaquePointer {
        let handle = sqliteStatement
        sqlite3_reset(handle)
        var bindings = RawBindings(handle)
        bind(&bindings)
        precondition(bindings.count == sqlite3_bind_parameter_count(handle), "\(bindings.count) values bound for \(sql)")
        return handle
    }

    /// Runs this query with values bound by `bind` and calls `body` with the statement at each row, to
    /// read its columns through SQLite's C API: for the queries that read a million rows, where a GRDB
    /// `Row` per row would cost more than SQLite's work for it.
    func forEachRow(binding bind: (inout RawBindings) -> Void, _ body: (OpaquePointer) throws -> Void) throws {
        let handle = rebound(bind)
        defer { sqlite3_reset(handle) }
        while true {
            let code = sqlite3_step(handle)
            if code == SQLITE_DONE { return }
            guard code == SQLITE_ROW else {
                throw DatabaseError(resultCode: ResultCode(rawValue: code),
                                    message: String(cString: sqlite3_errmsg(sqlite3_db_handle(handle))), sql: sql)
            }
            try body(handle)
        }
    }

    /// Runs this statement (one that returns no rows) with values bound by `bind`, as `execute(arguments:)`
    /// does, without building `StatementArguments`.
    func execute(binding bind: (inout RawBindings) -> Void) throws {
        let handle = rebound(bind)
        let code = sqlite3_step(handle)
        sqlite3_reset(handle)
        guard code == SQLITE_DONE || code == SQLITE_ROW else {
            throw DatabaseError(resultCode: ResultCode(rawValue: code),
                                message: String(cString: sqlite3_errmsg(sqlite3_db_handle(handle))), sql: sql)
        }
    }
}
