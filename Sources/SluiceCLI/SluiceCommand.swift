import ArgumentParser
import Foundation
import Logging
import Sluice
import SluiceCore
import SluiceDefinition
import SluiceEngine
import SluiceNotify
import SluiceStore
import SluiceStorePostgres
import SluiceStoreSQLite

/// The `sluice` command tree. A library, so users' own executables can embed it.
public struct SluiceCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: Terminal.tool,
        abstract: "Run data pipelines: every run recorded, failures retried, progress visible.",
        discussion: """
            State lives in .sluice/ in the current folder (override with --state-dir or SLUICE_HOME); with
            --state postgres://… (or SLUICE_STATE) runs are recorded in PostgreSQL and `sluice worker`
            processes on many machines execute them.
            Exit codes: 0 success, 1 partial success, 2 failure (or bad input), 3 internal error, 130 cancelled.
            """,
        subcommands: [Init.self, Validate.self, Run.self, Resume.self, Cancel.self, Runs.self, Show.self, Logs.self,
                      WorkerCommand.self, Serve.self, Schedules.self, TokenCommand.self, Pipelines.self, ArtifactsCommand.self, UICommand.self,
                      Sessions.self, Outbox.self])

    public init() {}
}

/// Options every command that touches the state shares.
struct StateOptions: ParsableArguments {
    @Option(name: .customLong("state-dir"), help: "Folder holding state.sqlite and run records (default: $SLUICE_HOME or ./.sluice).")
    var stateDir: String?
    @Option(name: .customLong("state"), help: ArgumentHelp(
        "The state store: postgres://user@host:port/db for many machines (password from the URL, PGPASSWORD or $SLUICE_STATE_PASSWORD_FILE), or a SQLite file (default: $SLUICE_STATE, else state.sqlite in the state folder).",
        valueName: "url"))
    var state: String?

    var layout: StateLayout {
        StateLayout(directory: stateDir ?? ProcessInfo.processInfo.environment["SLUICE_HOME"] ?? ".sluice")
    }

    /// `--state`, else `$SLUICE_STATE`, else nil (the SQLite file in the state folder).
    var location: String? {
        state ?? ProcessInfo.processInfo.environment["SLUICE_STATE"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Whether the store is a PostgreSQL server (shared by many machines).
    var isPostgres: Bool { location.map(StoreLocation.isPostgres) ?? false }

    func engine() async throws -> Engine {
        let layout = self.layout
        do {
            let store = try await StoreLocation.open(location, layout: layout)
            var logger = Logger(label: "sluice")
            logger.logLevel = .warning
            var inProcess = InProcessStages()
            for pipeline in CLIContext.pipelines { pipeline.register(in: &inProcess) }
            var engine = Engine(store: store, layout: layout, logger: logger, inProcess: inProcess)
            engine.reportWriters = [HTMLReportWriter()]
            return engine
        } catch {
            throw CLIError(message: error.message, hint: error.hint,
                           exitCode: error.code == .newerSchema || error.code == .cannotOpen ? ExitStatus.failure : ExitStatus.internalError)
        }
    }
}

/// Where the state is: a PostgreSQL URL or a SQLite file.
enum StoreLocation {
    static func isPostgres(_ location: String) -> Bool {
        location.hasPrefix("postgres://") || location.hasPrefix("postgresql://")
    }

    static func open(_ location: String?, layout: StateLayout) async throws(StoreError) -> any StateStore {
        guard let location else { return try SQLiteStateStore.open(path: layout.databasePath) }
        if isPostgres(location) {
            // The driver's own log (connections, pool) goes to stderr at the level SLUICE_STORE_LOG names
            // (trace, debug, info, …); warnings only by default. It never contains the password.
            var logger = Logger(label: "sluice.store.postgres")
            logger.logLevel = ProcessInfo.processInfo.environment["SLUICE_STORE_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .warning
            return try await PostgresStateStore.open(url: location, logger: logger)
        }
        if let scheme = location.range(of: "://"), !location.hasPrefix("sqlite://") {
            throw StoreError(.cannotOpen, "--state '\(location[..<scheme.lowerBound])://…' is not a store Sluice knows",
                             hint: "use postgres://user@host:port/database, or the path of a SQLite file")
        }
        let path = location.hasPrefix("sqlite://") ? String(location.dropFirst("sqlite://".count)) : location
        return try SQLiteStateStore.open(path: path)
    }
}

/// An error the CLI prints as `error: …` (and `hint: …`), exiting with `exitCode`.
struct CLIError: Error {
    var message: String
    var hint: String?
    var exitCode: Int32
}

extension AsyncParsableCommand {
    /// Runs `body`, turning every error into one clear message and an exit code (never a stack trace).
    func guarded(_ body: () async throws -> Int32) async throws {
        let code: Int32
        do {
            code = try await body()
        } catch let error as CLIError {
            Terminal.error(error.message, hint: error.hint)
            code = error.exitCode
        } catch let error as EngineError {
            Terminal.error(error.message, hint: error.hint)
            switch error.code {
            case .io: code = ExitStatus.internalError
            default: code = ExitStatus.failure
            }
        } catch let error as StoreError {
            Terminal.error(error.message, hint: error.hint)
            code = ExitStatus.internalError
        } catch is CancellationError {
            code = ExitStatus.cancelled
        } catch {
            Terminal.error("internal error: \(error)", hint: "please report this with the command you ran")
            code = ExitStatus.internalError
        }
        if code != 0 { throw ArgumentParser.ExitCode(code) }
    }
}

enum Terminal {
    static func error(_ message: String, hint: String? = nil) {
        var text = "error: \(message)\n"
        if let hint { text += "    hint: \(hint)\n" }
        FileHandle.standardError.write(Data(text.utf8))
    }

    /// A line for people on stderr (stdout stays for what scripts read).
    static func note(_ message: String) {
        FileHandle.standardError.write(Data("\(message)\n".utf8))
    }

    static func warn(_ message: String) {
        FileHandle.standardError.write(Data("warning: \(message)\n".utf8))
    }

    static var isTTY: Bool { isatty(STDOUT_FILENO) == 1 }

    static func duration(_ ms: Int64?) -> String {
        guard let ms else { return "-" }
        return DurationText.format(.milliseconds(ms))
    }

    static func time(_ date: Date?) -> String {
        guard let date else { return "-" }
        let f = DateFormatter()
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return f.string(from: date)
    }

    /// The executable's name, as people typed it: `sluice`, or a user's own executable embedding the
    /// CLI (`my-pipelines`), for the commands that messages suggest.
    static let tool: String = {
        let name = URL(fileURLWithPath: CommandLine.arguments.first ?? "sluice").lastPathComponent
        return name.isEmpty ? "sluice" : name
    }()

    /// `text`, cut to `limit` characters with an ellipsis when longer (a table cell, a listed record).
    static func clip(_ text: String, to limit: Int) -> String {
        text.count > limit ? String(text.prefix(limit - 1)) + "…" : text
    }

    /// Business counters and rejected records in one line: `docs 10 · rows 250 · 3 rejected`.
    static func counters(_ counters: [String: Int]?, rejected: Int?) -> String? {
        var parts = (counters ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
        if let rejected, rejected > 0 { parts.append("\(rejected) rejected") }
        return parts.isEmpty ? nil : parts.joined(separator: " · ")
    }

    /// A plain text table, columns padded to their widest cell.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { i in all.map { $0.indices.contains(i) ? $0[i].count : 0 }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

/// What the executable that embeds the CLI brought with it.
enum CLIContext {
    /// Pipelines defined in Swift and built into this executable.
    @TaskLocal static var pipelines: [Pipeline] = []
}

extension SluiceCommand {
    /// The entry point of a user's own executable: the complete CLI, with `pipelines` (defined in Swift)
    /// runnable by name — `run NAME`, `resume`, `runs`, `show`, `logs`, `validate`, `cancel` — and YAML
    /// files runnable from the same executable.
    ///
    ///     @main struct Tool {
    ///         static func main() async throws {
    ///             await SluiceCommand.main(pipelines: [try makeHashPipeline()])
    ///         }
    ///     }
    public static func main(pipelines: [Pipeline], arguments: [String]? = nil) async {
        var seen: Set<String> = []
        for pipeline in pipelines where !seen.insert(pipeline.name).inserted {
            Terminal.error("two pipelines are named '\(pipeline.name)'", hint: "give each pipeline passed to SluiceCommand.main a unique name")
            Foundation.exit(ExitStatus.failure)
        }
        await CLIContext.$pipelines.withValue(pipelines) {
            await runMain(arguments)
        }
    }

    /// The entry point of `sluice` and of users' own executables that embed the CLI.
    /// Usage mistakes exit with 2 (bad input), like every other bad input; `--help` exits 0.
    public static func runMain(_ arguments: [String]? = nil) async {
        // While the arguments are parsed (~3 ms: ArgumentParser reflects over the command tree).
        PipelineLoader.prepare()
        do {
            var command = try parseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            if code == .success || error is ArgumentParser.ExitCode {
                exit(withError: error)
            }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(ExitStatus.failure)
        }
    }
}
