import Foundation
import SluiceEngine

/// What a combined (or partial) session report shows: every member pipeline with its run's report.
/// Built from the store by `SessionReport.build(store:session:)`; rendered by `ReportTemplates`.
public struct SessionReport: Codable, Sendable {
    public struct Member: Codable, Sendable {
        public var pipeline: String
        /// How reports name it (the member's `title:`, else the pipeline name).
        public var title: String
        /// Its badge colour (CSS), when the session gives one.
        public var color: String?
        /// The member's run; nil when it never started.
        public var runId: String?
        /// The run's status (`running`, `success`, `partial_success`, `failed`, `cancelled`, …), or `missing`.
        public var status: String
        /// It ended after the session timed out.
        public var late: Bool
        /// The run's report, when it started.
        public var report: RunReport?

        public init(pipeline: String, title: String, color: String?, runId: String?, status: String, late: Bool, report: RunReport?) {
            self.pipeline = pipeline
            self.title = title
            self.color = color
            self.runId = runId
            self.status = status
            self.late = late
            self.report = report
        }
    }

    public var sessionId: String
    public var name: String
    /// Heading and subject prefix (the session's `title:`, else its name).
    public var title: String
    public var description: String?
    /// The counter the subject and summary lead with (the session's `headline:`).
    public var headline: String?
    /// The grouping key, for sessions grouped by key.
    public var key: String?
    /// `open`, `complete` or `timed_out`.
    public var status: String
    public var openedAt: Date
    public var deadline: Date
    public var closedAt: Date?
    /// One per member pipeline the session declares, in its order (a member that never started too).
    public var members: [Member]

    public init(sessionId: String, name: String, title: String, description: String?, key: String?, status: String,
                openedAt: Date, deadline: Date, closedAt: Date?, members: [Member]) {
        self.sessionId = sessionId
        self.name = name
        self.title = title
        self.description = description
        self.key = key
        self.status = status
        self.openedAt = openedAt
        self.deadline = deadline
        self.closedAt = closedAt
        self.members = members
    }

    /// Members that did not finish (never started, or still running when the session closed).
    public var missing: [Member] {
        members.filter { $0.status == "missing" || $0.status == "pending" || $0.status == "running" }
    }
}
