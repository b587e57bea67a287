import GRDB

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
