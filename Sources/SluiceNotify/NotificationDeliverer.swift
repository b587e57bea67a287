import Foundation
import Logging
import ServiceLifecycle
import SluiceCore
import SluiceEngine
import SluiceStore

/// Delivers the store's outbox: claims due notifications, renders them, sends them through their channel
/// and records the outcome; times out sessions whose deadline passed. A channel outage never touches a
/// run: the notification stays pending and is tried again with exponential back-off (5 s doubling, at
/// most an hour) for up to three days (`giveUpAfter`).
///
/// At least once, made rare: a delivery is marked right after the channel accepted it, so only a crash
/// between the two sends it again.
public struct NotificationDeliverer: Sendable {
    public struct Configuration: Sendable {
        /// Notifications claimed per look.
        public var batch = 10
        /// How long a claimed notification is held before another deliverer may take it.
        public var lease: Duration = .seconds(120)
        /// How long a notification whose channel keeps failing transiently is retried, from when it was
        /// queued, before it is marked failed: an outage of a day or two still ends in a delivery.
        public var giveUpAfter: Duration = .seconds(3 * 24 * 3600)
        /// The longest wait between looks when nothing is due: a notification queued by a run is sent
        /// at most this long after its decision (one indexed query per look).
        public var idlePoll: Duration = .seconds(1)
        public var senders = ChannelSenders()
        public init() {}
    }

    public let store: any StateStore
    public let layout: StateLayout
    public let time: any TimeSource
    public var configuration: Configuration
    public var logger: Logger
    let owner = "deliverer-\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8).lowercased())"

    public init(store: any StateStore, layout: StateLayout, time: any TimeSource = SystemTimeSource(),
                configuration: Configuration = Configuration(), logger: Logger = Logger(label: "sluice.notify")) {
        self.store = store
        self.layout = layout
        self.time = time
        self.configuration = configuration
        self.logger = logger
    }

    /// What one pass did.
    public struct Pass: Sendable, Hashable {
        public var timedOutSessions = 0
        public var delivered = 0
        public var retried = 0
        public var failed = 0
    }

    /// Times out due sessions, then delivers every notification due now (batch after batch).
    @discardableResult
    public func deliverDue() async throws -> Pass {
        var pass = Pass()
        for session in try await store.expireSessions(now: time.now()) {
            pass.timedOutSessions += 1
            logger.notice("session \(session.id) timed out waiting for \(session.missing.joined(separator: ", ")); partial report queued")
        }
        try await writeClosedSessionReports()
        while !Task.isCancelled {
            let now = time.now()
            let claimed = try await store.claimNotifications(owner: owner, limit: configuration.batch, now: now,
                                                             leaseUntil: now.addingTimeInterval(configuration.lease.seconds))
            if claimed.isEmpty { break }
            for notification in claimed {
                switch try await deliver(notification) {
                case .delivered: pass.delivered += 1
                case .retry: pass.retried += 1
                case .failed: pass.failed += 1
                }
            }
        }
        return pass
    }

    /// Renders and sends one claimed notification, and records the outcome.
    func deliver(_ notification: NotificationRecord) async throws -> DeliveryOutcome {
        let channel = notification.action.channel.summary
        let outcome: DeliveryOutcome
        do {
            let delivery = try await prepare(notification)
            try await configuration.senders.send(delivery)
            outcome = .delivered
            logger.info("delivered \(notification.kind.rawValue) of \(notification.origin) by \(channel)")
        } catch let error as DeliveryError {
            outcome = failure(notification, "\(error)", transient: error.isTransient)
        } catch let error as TemplateError where error.code == .unreadable || error.code == .write {
            // A folder not mounted yet, a full disk: may pass by itself.
            outcome = failure(notification, "template: \(error.message)", transient: true)
        } catch let error as TemplateError {
            // A template that does not parse fails the same way every time: fix it, then `sluice outbox retry`.
            outcome = failure(notification, "template: \(error.message)" + (error.hint.map { " (\($0))" } ?? "")
                              + "; fix it, then `sluice outbox retry \(notification.id)`", transient: false)
        } catch {
            outcome = failure(notification, "\(error)", transient: true)
        }
        // Marked at once, and not cancelled with the pass that sent it (`sluice run` gives its delivery pass a
        // time limit): a send whose mark was lost would go out again.
        let store = self.store, owner = self.owner, now = time.now(), id = notification.id
        let held = try await Task { try await store.finishDelivery(id, owner: owner, outcome: outcome, now: now) }.value
        if !held {
            logger.warning("\(notification.kind.rawValue) of \(notification.origin): its claim expired while it was being sent; another deliverer may send it again")
        }
        return outcome
    }

    func failure(_ n: NotificationRecord, _ error: String, transient: Bool) -> DeliveryOutcome {
        let what = "\(n.kind.rawValue) of \(n.origin) by \(n.action.channel.summary)"
        if !transient || time.now().timeIntervalSince(n.createdAt) >= configuration.giveUpAfter.seconds {
            logger.error("giving up on \(what) after \(n.attempts) attempt(s): \(error)")
            return .failed(error: error)
        }
        let delay = SessionRules.retryDelay(attempt: n.attempts)
        logger.warning("could not deliver \(what) (attempt \(n.attempts)); trying again in \(DurationText.format(.seconds(delay))): \(error)")
        return .retry(at: time.now().addingTimeInterval(delay), error: error)
    }

    /// The rendered message and report of a notification.
    public func prepare(_ n: NotificationRecord) async throws -> Delivery {
        let templates = try ReportTemplates.load(overrides: n.action.templates.map { n.action.resolve($0) }, subject: n.action.subject)
        switch n.kind {
        case .sessionComplete, .sessionTimeout:
            guard let id = n.sessionID, let session = try await store.sessions(matching: SessionQuery(idPrefix: id, limit: 1)).first else {
                throw DeliveryError("session \(n.sessionID ?? "?") of notification \(n.id) is not in the store", transient: false)
            }
            let report = try await SessionReport.build(store: store, session: session, asTimedOut: n.kind == .sessionTimeout)
            let message = try templates.render(session: report)
            let json = try RunReport.encoder.encode(report)
            try? writeSessionFiles(report, message: message, json: json)
            return Delivery(notification: n, message: message, reportJSON: json, name: "\(n.kind.rawValue)-\(session.id)-\(n.id)")
        case .runReport, .manualReview, .sessionLate:
            guard let runID = n.runID else { throw DeliveryError("notification \(n.id) names no run", transient: false) }
            let report = try await RunReport.build(store: store, runID: runID)
            var session: SessionReport?
            if n.kind == .sessionLate, let record = try await store.session(ofRun: runID) {
                session = try await SessionReport.build(store: store, session: record)
            }
            let message = try templates.render(run: report, kind: n.kind, session: session)
            return Delivery(notification: n, message: message, reportJSON: try report.json(), name: "\(n.kind.rawValue)-\(runID)-\(n.id)")
        }
    }

    /// Every closed session gets its combined (or partial) report in its folder, whether or not it has
    /// actions: a session whose notices went out has it already (written with their templates); the
    /// newest closed sessions without one get it here, with the built-in templates.
    func writeClosedSessionReports() async throws {
        for session in try await store.sessions(matching: SessionQuery(limit: 20)) where session.status.isTerminal {
            guard !FileManager.default.fileExists(atPath: layout.sessionDirectory(session.id) + "/report.html") else { continue }
            let report = try await SessionReport.build(store: store, session: session, asTimedOut: session.status == .timedOut)
            do {
                try writeSessionFiles(report, message: try ReportTemplates.builtIn.render(session: report),
                                      json: try RunReport.encoder.encode(report))
            } catch {
                logger.warning("session \(session.id): its report could not be written to its folder: \(error)")
            }
        }
    }

    /// `report.html`, `report.txt` and `report.json` in the session's folder.
    public func writeSessionFiles(_ report: SessionReport, message: RenderedMessage, json: Data) throws {
        let dir = layout.sessionDirectory(report.sessionId)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Data(message.html.utf8).write(to: URL(fileURLWithPath: dir + "/report.html"), options: .atomic)
        try Data((message.subject + "\n\n" + message.text).utf8).write(to: URL(fileURLWithPath: dir + "/report.txt"), options: .atomic)
        try json.write(to: URL(fileURLWithPath: dir + "/report.json"), options: .atomic)
    }

    /// Passes until cancelled: after each, waits until the next notification or session deadline is due,
    /// or the store says work may have appeared.
    public func run() async {
        while !Task.isCancelled {
            do {
                try await deliverDue()
            } catch {
                logger.warning("the notification outbox could not be read: \(error); trying again")
            }
            var wait = configuration.idlePoll.seconds
            let due = [try? await store.nextNotificationTime(), try? await store.nextSessionDeadline()].compactMap { $0 }.compactMap { $0 }
            if let next = due.min() { wait = max(0.05, min(wait, next.timeIntervalSince(time.now()))) }
            await store.waitForWork(timeout: .milliseconds(Int64(wait * 1000)))
        }
    }
}

/// The deliverer as a service of `sluice serve` and `sluice worker`.
public struct NotificationService: Service {
    let deliverer: NotificationDeliverer

    public init(_ deliverer: NotificationDeliverer) { self.deliverer = deliverer }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await deliverer.run() }
    }
}

/// Writes `report.html` beside `report.json` when a run ended.
public struct HTMLReportWriter: RunReportWriter {
    public init() {}

    /// Parses the built-in template and renders a sample report once, on another thread, while the
    /// run executes: a process's first parse and render (Mustache's parser, the Swift runtime's first
    /// look-ups of the report's view types) take ~5 ms that would otherwise come after the run ended.
    public static func prepare() {
        Task.detached(priority: .utility) {
            _ = try? ReportTemplates.builtInRunReport.render(run: .sample, kind: .runReport)
        }
    }

    public func write(_ report: RunReport, runDirectory: String) throws {
        try writeHTMLReport(report, to: runDirectory + "/report.html")
    }
}
