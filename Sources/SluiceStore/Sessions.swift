import Foundation
import SluiceCore

/// Which sessions `sessions(matching:)` returns.
public struct SessionQuery: Sendable, Hashable {
    public var name: String?
    public var status: SessionStatus?
    /// Sessions whose id starts with this.
    public var idPrefix: String?
    public var limit: Int

    public init(name: String? = nil, status: SessionStatus? = nil, idPrefix: String? = nil, limit: Int = 50) {
        self.name = name
        self.status = status
        self.idPrefix = idPrefix
        self.limit = limit
    }
}

/// Which notifications `notifications(matching:)` returns.
public struct NotificationQuery: Sendable, Hashable {
    public var status: NotificationStatus?
    public var runID: RunID?
    public var sessionID: String?
    public var limit: Int

    public init(status: NotificationStatus? = nil, runID: RunID? = nil, sessionID: String? = nil, limit: Int = 50) {
        self.status = status
        self.runID = runID
        self.sessionID = sessionID
        self.limit = limit
    }
}

/// The decisions both stores make inside their transactions, as values: the store reads the rows,
/// asks these rules, and writes what they return.
public enum SessionRules {
    /// What a new member run does.
    public enum Join: Sendable, Hashable {
        /// No session fits: open a new one.
        case open
        /// Join this session; `late` when it already timed out; `replacing` the member's earlier run (key grouping).
        case join(sessionID: String, late: Bool, replacing: RunID?)
    }

    /// Picks the session a run of `pipeline` joins among `candidates` (the sessions of the spec's name
    /// that `candidateFilter` selected, with their members).
    /// - window: the newest open or timed-out session opened within the window without a run of this
    ///   pipeline (a timed-out one makes the run late); otherwise a new session.
    /// - key: the session with this key: an open one is joined (an earlier run of the pipeline replaced),
    ///   a closed one makes the run late; otherwise a new session.
    public static func join(spec: SessionSpec, pipeline: String, key: String?, now: Date,
                            candidates: [SessionRecord]) -> Join {
        switch spec.grouping {
        case .window(let window):
            let since = now.addingTimeInterval(-window.seconds)
            let fitting = candidates
                .filter { $0.status != .complete && $0.openedAt >= since && !$0.members.contains { $0.pipeline == pipeline } }
                .sorted { $0.openedAt > $1.openedAt }
            guard let session = fitting.first(where: { $0.status == .open }) ?? fitting.first else { return .open }
            return .join(sessionID: session.id, late: session.status != .open, replacing: nil)
        case .key:
            guard let session = candidates.first(where: { $0.key == key }) else { return .open }
            let earlier = session.members.first { $0.pipeline == pipeline }
            if session.status == .open {
                return .join(sessionID: session.id, late: false, replacing: earlier?.runID)
            }
            return .join(sessionID: session.id, late: true, replacing: earlier?.runID)
        }
    }

    /// Whether every member pipeline of the spec has a run that ended.
    public static func isComplete(spec: SessionSpec, members: [SessionRecord.Member]) -> Bool {
        spec.members.allSatisfy { m in members.contains { $0.pipeline == m.pipeline && $0.runStatus.isTerminal } }
    }

    /// The outbox rows for `actions`.
    public static func notifications(_ actions: [NotifyAction], kind: ReportKind, runID: RunID?, sessionID: String?,
                                     origin: String, now: Date) -> [NotificationRecord] {
        actions.map {
            NotificationRecord(kind: kind, runID: runID, sessionID: sessionID, origin: origin, action: $0,
                               createdAt: now, nextAttemptAt: now)
        }
    }

    /// The pipeline's own notifications for a run that ended `outcome` (`rolledBack`: a stage was rolled back).
    public static func runNotifications(spec: PipelineSpec, runID: RunID, outcome: RunOutcome, rolledBack: Bool,
                                        now: Date) -> [NotificationRecord] {
        var rows = notifications(spec.notify.actions(for: outcome), kind: .runReport, runID: runID, sessionID: nil,
                                 origin: spec.name, now: now)
        if rolledBack {
            rows += notifications(spec.notify.onManualReview, kind: .manualReview, runID: runID, sessionID: nil,
                                  origin: spec.name, now: now)
        }
        return rows
    }

    /// What happens to `session` when its member `runID` ended (the member's end already recorded in
    /// `session.members`): the session's new status (when it changes), the member's late flag and the
    /// notifications to write.
    public struct MemberEnd: Sendable {
        public var completes: Bool
        public var late: Bool
        public var notifications: [NotificationRecord]
        public var events: [EventRecord]
    }

    public static func memberEnded(_ session: SessionRecord, runID: RunID, pipeline: String, now: Date) -> MemberEnd {
        let spec = session.spec
        if session.status == .open {
            guard isComplete(spec: spec, members: session.members) else {
                let waiting = session.missing
                return MemberEnd(completes: false, late: false, notifications: [], events: [
                    EventRecord(runID: runID, pipeline: pipeline, event: "session.member_ended", time: now,
                                message: "session \(session.id): waiting for \(waiting.joined(separator: ", ")) (until \(ISO8601DateFormatter().string(from: session.deadline)))",
                                attrs: ["session": session.id, "waiting": waiting.joined(separator: ",")])])
            }
            return MemberEnd(completes: true, late: false,
                             notifications: notifications(spec.onComplete, kind: .sessionComplete, runID: nil,
                                                          sessionID: session.id, origin: "session \(spec.name)", now: now),
                             events: [EventRecord(runID: runID, pipeline: pipeline, event: "session.complete", time: now,
                                                  message: "session \(session.id) complete: every member ended; \(spec.onComplete.count) notification(s) queued",
                                                  attrs: ["session": session.id])])
        }
        return MemberEnd(completes: false, late: true,
                         notifications: notifications(spec.lateActions, kind: .sessionLate, runID: runID,
                                                      sessionID: session.id, origin: "session \(spec.name)", now: now),
                         events: [EventRecord(runID: runID, pipeline: pipeline, event: "session.late", time: now,
                                              message: "session \(session.id) had already \(session.status == .timedOut ? "timed out" : "completed"): this run is reported on its own",
                                              attrs: ["session": session.id])])
    }

    /// The notifications and member events of a session that timed out.
    public static func timedOut(_ session: SessionRecord, now: Date) -> (notifications: [NotificationRecord], events: [EventRecord]) {
        let missing = session.missing
        let rows = notifications(session.spec.onTimeout, kind: .sessionTimeout, runID: nil, sessionID: session.id,
                                 origin: "session \(session.spec.name)", now: now)
        let events = session.members.map {
            EventRecord(runID: $0.runID, pipeline: $0.pipeline, event: "session.timed_out", time: now,
                        message: "session \(session.id) timed out waiting for \(missing.joined(separator: ", ")); partial report queued",
                        attrs: ["session": session.id, "missing": missing.joined(separator: ",")])
        }
        return (rows, events)
    }

    /// The event a member's run records when it joins.
    /// The event of a run left out of a closed session whose report already included a run of its pipeline
    /// (key grouping: a re-delivered e-mail after the report went out). The report stays true to what it said.
    public static func leftOutEvent(runID: RunID, pipeline: String, sessionID: String, now: Date) -> EventRecord {
        EventRecord(runID: runID, pipeline: pipeline, event: "session.left_out", time: now,
                    message: "session \(sessionID) already closed with a run of \(pipeline) in its report: this run is not added to it (the pipeline's own notify: still reports it)",
                    attrs: ["session": sessionID])
    }

    /// The event of a run whose session key rendered empty: it joins no session.
    public static func noKeyEvent(runID: RunID, pipeline: String, spec: SessionSpec, now: Date) -> EventRecord {
        var template = ""
        if case .key(let t) = spec.grouping { template = t }
        return EventRecord(runID: runID, pipeline: pipeline, event: "session.no_key", time: now,
                           message: "session \(spec.name): the group_by key '\(template)' is empty for this run (a param it names is missing or empty), so the run joins no session; start it with that param",
                           attrs: ["session": spec.name])
    }

    public static func joinEvent(runID: RunID, pipeline: String, sessionID: String, opened: Bool, late: Bool, now: Date) -> EventRecord {
        let message = opened ? "opened session \(sessionID)"
            : late ? "joined session \(sessionID) after it closed: this run will be reported on its own"
            : "joined session \(sessionID)"
        return EventRecord(runID: runID, pipeline: pipeline, event: opened ? "session.opened" : "session.joined", time: now,
                           message: message, attrs: ["session": sessionID, "late": late ? "true" : "false"])
    }

    /// Delivery back-off: 5 s doubling per attempt, at most an hour.
    public static func retryDelay(attempt: Int) -> Double {
        min(3600, 5 * pow(2, Double(max(0, attempt - 1))))
    }
}
