import Foundation
import SluiceCore

/// Where a coordination session is.
///
/// - `open`: moved in by the first member run's `createRun`; out by the `finishRun` of the last member
///   (to `complete`) or by `expireSessions` once the deadline passed (to `timedOut`).
/// - `complete` and `timedOut` are terminal; the move into either writes the session's notifications
///   into the outbox in the same transaction, so each fires once.
public enum SessionStatus: String, Sendable, Codable, CaseIterable {
    case open
    case complete
    case timedOut = "timed_out"

    public var isTerminal: Bool { self != .open }
}

/// One coordination session: the member runs that were grouped together.
public struct SessionRecord: Sendable, Codable, Hashable {
    public struct Member: Sendable, Codable, Hashable {
        public var pipeline: String
        public var runID: RunID
        public var joinedAt: Date
        /// The run's status now (read with the session).
        public var runStatus: RunStatus
        /// The run ended after the session timed out (it was reported on its own).
        public var late: Bool

        public init(pipeline: String, runID: RunID, joinedAt: Date, runStatus: RunStatus, late: Bool) {
            self.pipeline = pipeline
            self.runID = runID
            self.joinedAt = joinedAt
            self.runStatus = runStatus
            self.late = late
        }
    }

    /// `<name>-<YYYYMMDD-HHMMSS>-<xxxx>`.
    public var id: String
    public var name: String
    /// The grouping key, for `group_by: {key: …}` sessions.
    public var key: String?
    public var status: SessionStatus
    public var spec: SessionSpec
    public var openedAt: Date
    public var deadline: Date
    public var closedAt: Date?
    /// Member runs, in the order they joined (a member restarted under a key replaces its earlier run).
    public var members: [Member]

    public init(id: String, name: String, key: String?, status: SessionStatus, spec: SessionSpec, openedAt: Date,
                deadline: Date, closedAt: Date? = nil, members: [Member] = []) {
        self.id = id
        self.name = name
        self.key = key
        self.status = status
        self.spec = spec
        self.openedAt = openedAt
        self.deadline = deadline
        self.closedAt = closedAt
        self.members = members
    }

    /// Member pipelines with no run yet, or whose run has not ended.
    public var missing: [String] {
        spec.members.map(\.pipeline).filter { name in
            !members.contains { $0.pipeline == name && $0.runStatus.isTerminal }
        }
    }

    public static func generateID(name: String, at date: Date) -> String {
        let run = RunID.generate(at: date).rawValue  // YYYYMMDD-HHMMSS-xxxxxx
        return "\(name)-\(run)"
    }
}

/// Where a notification in the outbox is.
///
/// - `pending`: written by the transaction that decided it (a run or session ended); claimed by a
///   delivery service, which moves it to `delivered`, back to `pending` with a later `nextAttemptAt`
///   (the channel failed), or to `failed` once its attempts ran out.
public enum NotificationStatus: String, Sendable, Codable, CaseIterable {
    case pending
    case delivered
    case failed
}

/// One notification in the durable outbox.
public struct NotificationRecord: Sendable, Codable, Hashable {
    public var id: Int64
    public var kind: ReportKind
    /// The run it reports on (run reports, manual-review notices, late members).
    public var runID: RunID?
    /// The session it reports on (combined and partial reports).
    public var sessionID: String?
    /// The pipeline or session that declared it (for messages).
    public var origin: String
    public var action: NotifyAction
    public var status: NotificationStatus
    public var attempts: Int
    public var createdAt: Date
    public var nextAttemptAt: Date
    public var deliveredAt: Date?
    /// The last delivery failure (never holds a secret).
    public var lastError: String?

    public init(id: Int64 = 0, kind: ReportKind, runID: RunID? = nil, sessionID: String? = nil, origin: String,
                action: NotifyAction, status: NotificationStatus = .pending, attempts: Int = 0, createdAt: Date,
                nextAttemptAt: Date, deliveredAt: Date? = nil, lastError: String? = nil) {
        self.id = id
        self.kind = kind
        self.runID = runID
        self.sessionID = sessionID
        self.origin = origin
        self.action = action
        self.status = status
        self.attempts = attempts
        self.createdAt = createdAt
        self.nextAttemptAt = nextAttemptAt
        self.deliveredAt = deliveredAt
        self.lastError = lastError
    }
}

/// How a delivery attempt of a claimed notification ended.
public enum DeliveryOutcome: Sendable, Hashable {
    case delivered
    /// Try again at `retryAt` (the channel is down, or answered with an error).
    case retry(at: Date, error: String)
    /// Give up: its attempts ran out.
    case failed(error: String)
}

/// A session as `sluice sessions --json`, `sluice show SESSION --json` and the HTTP API give it: its
/// members in declared order (with their runs, or `missing`), what is missing, and optionally its
/// notifications.
public struct SessionSummary: Encodable, Sendable {
    public struct Member: Encodable, Sendable {
        public var pipeline: String
        public var title: String
        public var runId: String?
        public var status: String
        public var late: Bool
    }
    public struct Notification: Encodable, Sendable {
        public var id: Int64
        public var kind: String
        public var channel: String
        public var status: String
        public var attempts: Int
        public var lastError: String?
        public var deliveredAt: Date?
    }
    public var sessionId: String
    public var name: String
    public var title: String
    public var key: String?
    public var status: String
    public var openedAt: Date
    public var deadline: Date
    public var closedAt: Date?
    public var members: [Member]
    public var missing: [String]
    public var notifications: [Notification]?

    public init(_ s: SessionRecord, notifications: [NotificationRecord]? = nil) {
        sessionId = s.id
        name = s.name
        title = s.spec.title ?? s.name
        key = s.key
        status = s.status.rawValue
        openedAt = s.openedAt
        deadline = s.deadline
        closedAt = s.closedAt
        members = s.spec.members.map { m in
            let run = s.members.first { $0.pipeline == m.pipeline }
            return Member(pipeline: m.pipeline, title: m.displayName, runId: run?.runID.rawValue,
                          status: run?.runStatus.rawValue ?? "missing", late: run?.late ?? false)
        }
        missing = s.missing
        self.notifications = notifications?.map {
            Notification(id: $0.id, kind: $0.kind.rawValue, channel: $0.action.channel.summary, status: $0.status.rawValue,
                         attempts: $0.attempts, lastError: $0.lastError, deliveredAt: $0.deliveredAt)
        }
    }
}
