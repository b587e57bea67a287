import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import SluiceNotify
import Sluice
import SluiceCore
import SluiceEngine
import SluiceHTTP
import SluiceStore
import SluiceTriggers
import UnixSignals

/// The pipelines to serve: the files and folders named, plus the pipelines built into this executable.
struct ServedPipelines: ParsableArguments {
    @Argument(help: "Pipeline files, or folders of them (*.yml, *.yaml). Default: the current folder.")
    var sources: [String] = []

    func catalog() -> Catalog {
        Catalog(sources: sources.isEmpty && CLIContext.pipelines.isEmpty ? ["."] : sources,
                builtIn: CLIContext.pipelines.map(\.spec))
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "serve", 
        abstract: "Run pipelines on their own: schedules (cron, every), file arrivals and mailboxes.",
        discussion: """
            Serves every pipeline file given (or every *.yml in the folders given): each `schedule:`, `on_files:` and `on_mail:`
            trigger fires runs, executed here with the same engine as `sluice run`. A changed file is loaded again;
            a file that no longer validates keeps its previous version in service. Every firing has an idempotency
            key, so a restart or a second `serve` on the same store never starts the same run twice.
            SIGTERM or Ctrl-C: no more firings, running runs may finish within --grace, the rest are cancelled.
            """)

    @OptionGroup var served: ServedPipelines
    @Option(help: "On shutdown, how long running runs may take to finish before they are cancelled.") var grace: String = "60s"
    @Option(help: ArgumentHelp("Serve the dashboard, the HTTP API and /metrics here (see docs/api.md).",
                               valueName: "host:port")) var http: String?
    @Option(help: ArgumentHelp("Replicas sharing a store elect one to fire schedules; when it dies another takes over within this time.",
                               valueName: "duration")) var leaderLease: String = "15s"
    @OptionGroup var httpOptions: HTTPOptions
    @OptionGroup var state: StateOptions

    func run() async throws {
        try await guarded {
            var options = Server.Options()
            options.grace = try WorkerCommand.duration(grace, "--grace")
            options.leaderLease = try WorkerCommand.duration(leaderLease, "--leader-lease")
            let engine = try await state.engine()
            let server = Server(engine: engine, catalog: served.catalog(), options: options) { line in
                Terminal.note("\(Date().formatted(.iso8601)) \(line)")
            }
            var logger = Logger(label: "sluice.serve")
            logger.logLevel = .warning
            var services: [any Service] = [server, NotificationService(engine.deliverer(level: .notice))]
            if let http {
                let configuration = try httpOptions.configuration(http)
                services.append(APIServer.application(engine: engine, server: server, configuration: configuration, logger: logger) { port in
                    HTTPOptions.announce(configuration, port: port)
                })
            }
            let group = ServiceGroup(configuration: ServiceGroupConfiguration(
                services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
            return 0
        }
    }
}

struct Schedules: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "schedules", abstract: "List every trigger of the pipelines `sluice serve` would serve, with the next fire time.")

    @OptionGroup var served: ServedPipelines

    func run() async throws {
        try await guarded {
            var catalog = served.catalog()
            let changes = catalog.refresh()
            for source in changes.missing { Terminal.warn("\(source) is neither a pipeline file nor a folder") }
            for (_, diagnostics) in changes.rejected {
                for d in diagnostics { FileHandle.standardError.write(Data((d.description + "\n").utf8)) }
            }
            let now = Date()
            var rows: [[String]] = []
            for spec in catalog.pipelines {
                if let schedule = spec.schedule {
                    let zone = schedule.timeZone.flatMap(TimeZone.init(identifier:)) ?? TimeZone(identifier: "UTC")!
                    let next = schedule.nextFire(after: now).map { Self.local($0, zone) } ?? "never"
                    rows.append([spec.name, schedule.summary, next, Self.missed(schedule.missed), spec.overlap.rawValue])
                }
                if let files = spec.onFiles {
                    rows.append([spec.name, "files \(files.glob) (settle \(DurationText.format(files.settle)))", "on arrival", "-", spec.overlap.rawValue])
                }
                if let mail = spec.onMail {
                    rows.append([spec.name, mail.summary, "on arrival", "-", spec.overlap.rawValue])
                }
            }
            if rows.isEmpty {
                if changes.rejected.isEmpty { print("no triggers: add `schedule:`, `on_files:` or `on_mail:` to a pipeline (see docs/serve.md)") }
            } else {
                print(Terminal.table(["PIPELINE", "TRIGGER", "NEXT", "MISSED", "OVERLAP"], rows))
            }
            return changes.rejected.isEmpty ? 0 : ExitStatus.failure
        }
    }

    static func local(_ date: Date, _ zone: TimeZone) -> String {
        let f = DateFormatter()
        f.timeZone = zone
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        return f.string(from: date) + " " + zone.identifier
    }

    static func missed(_ policy: MissedRuns) -> String {
        switch policy {
        case .skip: "skip"
        case .once: "once"
        case .all(let max): "all (max \(max))"
        }
    }
}

struct TokenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token", abstract: "Create, list and revoke tokens for the HTTP API.",
        subcommands: [Create.self, List.self, Revoke.self])

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a token; it is printed once (the store keeps only its hash).")
        @Argument(help: "A name for the token (who or what uses it).") var name: String
        @OptionGroup var state: StateOptions

        func run() async throws {
            try await guarded {
                guard !name.isEmpty, name.count <= 100, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.@".contains($0) }) else {
                    throw CLIError(message: "token name '\(name)' is not allowed", hint: "use letters, digits, '-', '_', '.', '@' (at most 100)",
                                   exitCode: ExitStatus.failure)
                }
                let engine = try await state.engine()
                let (secret, hash) = APITokens.generate()
                guard try await engine.store.createToken(APIToken(name: name, hash: hash, createdAt: Date())) else {
                    throw CLIError(message: "a token named '\(name)' exists", hint: "choose another name, or `sluice token revoke \(name)` first",
                                   exitCode: ExitStatus.failure)
                }
                print(secret)
                Terminal.note("token '\(name)' created; it is shown only now. Send it as: Authorization: Bearer <token>")
                return 0
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List tokens (names and dates, never secrets).")
        @OptionGroup var state: StateOptions

        func run() async throws {
            try await guarded {
                let tokens = try await state.engine().store.tokens()
                if tokens.isEmpty { print("no tokens; create one with `sluice token create NAME`"); return 0 }
                print(Terminal.table(["NAME", "CREATED", "REVOKED"], tokens.map { [$0.name, Terminal.time($0.createdAt), $0.revokedAt.map(Terminal.time) ?? "-"] }))
                return 0
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "revoke", abstract: "Revoke a token: requests with it are refused from now on.")
        @Argument(help: "The token's name.") var name: String
        @OptionGroup var state: StateOptions

        func run() async throws {
            try await guarded {
                guard try await state.engine().store.revokeToken(name: name, now: Date()) else {
                    throw CLIError(message: "no active token named '\(name)'", hint: "`sluice token list` shows them", exitCode: ExitStatus.failure)
                }
                print("token '\(name)' revoked")
                return 0
            }
        }
    }
}
