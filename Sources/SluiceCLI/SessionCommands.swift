import ArgumentParser
import Foundation
import Logging
import SluiceCore
import SluiceEngine
import SluiceNotify
import SluiceStore

extension Engine {
    /// The outbox's deliverer over this engine's store, logging to stderr at `level`.
    func deliverer(level: Logger.Level = .warning) -> NotificationDeliverer {
        var logger = Logger(label: "sluice.notify")
        logger.logLevel = level
        return NotificationDeliverer(store: store, layout: layout, time: time, logger: logger)
    }
}

/// One delivery pass after a run ended, at most `limit` long: notifications the run (or its session)
/// queued go out now; what cannot be delivered stays in the outbox for `serve`, `worker`, the next run
/// or `sluice outbox deliver`.
func deliverAfterRun(_ run: RunID, engine: Engine, note: (String) -> Void, limit: Duration = .seconds(90)) async {
    let deliverer = engine.deliverer(level: .critical)
    let finished = await withTaskGroup(of: Bool.self) { group in
        group.addTask { (try? await deliverer.deliverDue()) != nil }
        group.addTask { try? await Task.sleep(for: limit); return false }
        let first = await group.next() ?? false
        group.cancelAll()
        return first
    }
    if !finished { note("notifications: still delivering after \(DurationText.format(limit)); the rest stay queued") }
    guard let queued = try? await engine.store.notifications(matching: NotificationQuery(runID: run, limit: 50)) else { return }
    var session: [NotificationRecord] = []
    if let s = try? await engine.store.session(ofRun: run) {
        session = (try? await engine.store.notifications(matching: NotificationQuery(sessionID: s.id, limit: 50))) ?? []
        if s.status == .open {
            note("session \(s.id): waiting for \(s.missing.joined(separator: ", ")) until \(Terminal.time(s.deadline))")
        }
    }
    for n in queued + session.filter({ $0.runID == nil }) {
        let what = "\(n.kind.rawValue) by \(n.action.channel.summary)"
        switch n.status {
        case .delivered: note("notification: \(what) delivered")
        case .pending: note("notification: \(what) not delivered yet (\(n.lastError?.split(separator: "\n").first ?? "queued")); it stays queued")
        case .failed: note("notification: \(what) failed: \(n.lastError ?? "?")")
        }
    }
}

struct Sessions: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sessions", 
        abstract: "List coordination sessions: pipelines whose runs are reported together.",
        discussion: "`sluice show SESSION` shows one (members, runs, what is missing, its notifications).")

    @Option(help: "Only sessions of this name.") var name: String?
    @Option(help: "Only sessions with this status (open, complete, timed_out).") var status: String?
    @Option(help: "How many sessions to list.") var limit = 20
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var state: StateOptions

    func run() async throws {
        try await guarded {
            var query = SessionQuery(name: name, limit: limit)
            if let status {
                guard let s = SessionStatus(rawValue: status) else {
                    throw CLIError(message: "--status '\(status)' is not a session status",
                                   hint: "one of \(SessionStatus.allCases.map(\.rawValue).joined(separator: ", "))", exitCode: ExitStatus.failure)
                }
                query.status = s
            }
            let engine = try await state.engine()
            let sessions = try await engine.store.sessions(matching: query)
            if json {
                let encoder = RunReport.encoder
                FileHandle.standardOutput.write(try encoder.encode(sessions.map { SessionSummary($0) }))
                print()
                return 0
            }
            if sessions.isEmpty {
                print("no sessions yet in \(engine.layout.directory); a run of a pipeline with `session:` opens one")
                return 0
            }
            let rows = sessions.map { s -> [String] in
                let members = s.spec.members.map { m in
                    "\(m.pipeline)=\(s.members.first { $0.pipeline == m.pipeline }?.runStatus.rawValue ?? "missing")"
                }.joined(separator: " ")
                return [s.id, s.status.rawValue, Terminal.time(s.openedAt), members]
            }
            print(Terminal.table(["SESSION", "STATUS", "OPENED", "MEMBERS"], rows))
            return 0
        }
    }
}

/// `sluice show SESSION`.
func showSession(_ session: SessionRecord, engine: Engine, json: Bool) async throws -> Int32 {
    let notifications = try await engine.store.notifications(matching: NotificationQuery(sessionID: session.id, limit: 100))
    if json {
        let summary = SessionSummary(session, notifications: notifications)
        FileHandle.standardOutput.write(try RunReport.encoder.encode(summary))
        print()
        return 0
    }
    print("session   \(session.id)")
    print("name      \(session.name)\(session.spec.sourceFile.map { " (\($0))" } ?? "")")
    if let key = session.key { print("key       \(key)") }
    print("status    \(session.status.rawValue)")
    print("opened    \(Terminal.time(session.openedAt))   deadline \(Terminal.time(session.deadline))\(session.closedAt.map { "   closed \(Terminal.time($0))" } ?? "")")
    print()
    let rows = session.spec.members.map { m -> [String] in
        let run = session.members.first { $0.pipeline == m.pipeline }
        return [m.displayName, run?.runID.rawValue ?? "-", (run?.runStatus.rawValue ?? "missing") + (run?.late == true ? " (late)" : "")]
    }
    print(Terminal.table(["MEMBER", "RUN", "STATUS"], rows))
    if !session.missing.isEmpty && session.status != .complete { print("\nmissing: \(session.missing.joined(separator: ", "))") }
    if !notifications.isEmpty {
        print()
        print(Terminal.table(["NOTICE", "KIND", "CHANNEL", "STATUS", "ATTEMPTS"], notifications.map {
            ["\($0.id)", $0.kind.rawValue, $0.action.channel.summary, $0.status.rawValue + ($0.lastError.map { ": \($0.split(separator: "\n").first ?? "")" } ?? ""), "\($0.attempts)"]
        }))
    }
    let html = engine.layout.sessionDirectory(session.id) + "/report.html"
    if FileManager.default.fileExists(atPath: html) { print("\nreport    \(html)") }
    return 0
}

struct Outbox: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outbox",
        abstract: "Notifications waiting, delivered or failed; deliver the due ones now, or retry a failed one.",
        discussion: """
            Every notification (run reports, session reports, manual-review notices) is written into the store's
            outbox by the same transaction that decided it, and delivered by `sluice run` when its run ends, by
            `sluice serve` and `sluice worker` all the time, or by `sluice outbox deliver`. A channel that is down
            is tried again with back-off (5 s doubling, at most an hour).
            """,
        subcommands: [List.self, Deliver.self, Retry.self], defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List notifications, newest first.")
        @Option(help: "Only these: pending, delivered or failed.") var status: String?
        @Option(help: "How many to list.") var limit = 20
        @OptionGroup var state: StateOptions

        func run() async throws {
            try await guarded {
                var query = NotificationQuery(limit: limit)
                if let status {
                    guard let s = NotificationStatus(rawValue: status) else {
                        throw CLIError(message: "--status '\(status)' is not pending, delivered or failed", exitCode: ExitStatus.failure)
                    }
                    query.status = s
                }
                let engine = try await state.engine()
                let rows = try await engine.store.notifications(matching: query).map { n -> [String] in
                    ["\(n.id)", n.kind.rawValue, n.runID?.rawValue ?? n.sessionID ?? "-", n.action.channel.summary,
                     n.status.rawValue, "\(n.attempts)", n.lastError.map { String($0.split(separator: "\n").first ?? "") } ?? ""]
                }
                if rows.isEmpty { print("the outbox is empty"); return 0 }
                print(Terminal.table(["ID", "KIND", "OF", "CHANNEL", "STATUS", "ATTEMPTS", "LAST ERROR"], rows))
                return 0
            }
        }
    }

    struct Deliver: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "deliver", abstract: "Time out due sessions and deliver every notification due now.")
        @OptionGroup var state: StateOptions

        func run() async throws {
            try await guarded {
                let engine = try await state.engine()
                let pass = try await engine.deliverer(level: .warning).deliverDue()
                print("delivered \(pass.delivered), to retry \(pass.retried), failed \(pass.failed), sessions timed out \(pass.timedOutSessions)")
                return pass.retried + pass.failed > 0 ? ExitStatus.partial : 0
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "retry", abstract: "Put a failed notification back in the queue (after fixing its channel).")
        @Argument(help: "The notification's id (`sluice outbox list`).") var id: Int64
        @OptionGroup var state: StateOptions

        func run() async throws {
            try await guarded {
                let engine = try await state.engine()
                guard try await engine.store.retryNotification(id, now: Date()) else {
                    throw CLIError(message: "notification \(id) is not a failed notification", hint: "`sluice outbox list --status failed` lists them",
                                   exitCode: ExitStatus.failure)
                }
                print("notification \(id) queued again")
                return 0
            }
        }
    }
}
