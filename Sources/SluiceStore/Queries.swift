import Foundation
import SluiceCore

/// Which runs `StateStore.runs(matching:)` returns: newest first (by creation time, then id).
public struct RunQuery: Sendable, Hashable {
    public var pipeline: String?
    /// Any status when empty.
    public var statuses: [RunStatus]
    /// Created at or after this time.
    public var createdAfter: Date?
    /// Created before this time.
    public var createdBefore: Date?
    /// A cursor: only runs that come after this one in that order (the last run of the previous page).
    public var beforeID: RunID?
    public var limit: Int

    public init(pipeline: String? = nil, statuses: [RunStatus] = [], createdAfter: Date? = nil, createdBefore: Date? = nil,
                beforeID: RunID? = nil, limit: Int) {
        self.pipeline = pipeline
        self.statuses = statuses
        self.createdAfter = createdAfter
        self.createdBefore = createdBefore
        self.beforeID = beforeID
        self.limit = limit
    }
}

/// Counts over the whole store, for `/metrics`: computed with aggregate queries, nothing loaded per row.
public struct StoreStatistics: Sendable, Hashable {
    /// A pipeline and a state (run status, task status, attempt outcome, or trigger kind).
    public struct Key: Sendable, Hashable, Comparable {
        public var pipeline: String
        public var state: String
        public init(_ pipeline: String, _ state: String) {
            self.pipeline = pipeline
            self.state = state
        }
        public static func < (a: Key, b: Key) -> Bool { (a.pipeline, a.state) < (b.pipeline, b.state) }
    }

    /// Wall time of finished attempts: how many took at most each bound (cumulative), their count and sum.
    public struct Durations: Sendable, Hashable {
        public var bounds: [Double]
        public var cumulative: [Int]
        public var count: Int
        public var sumSeconds: Double

        public init(bounds: [Double], cumulative: [Int], count: Int, sumSeconds: Double) {
            self.bounds = bounds
            self.cumulative = cumulative
            self.count = count
            self.sumSeconds = sumSeconds
        }
    }

    /// Runs by pipeline and status.
    public var runs: [Key: Int] = [:]
    /// Tasks by pipeline and status (pending ones are the queue).
    public var tasks: [Key: Int] = [:]
    /// Attempts by pipeline and outcome (`lost`: the lease of the process running it expired or it died).
    public var attempts: [Key: Int] = [:]
    /// Attempts beyond a task's first, by pipeline.
    public var retries: [String: Int] = [:]
    /// Runs by pipeline and trigger kind (`schedule`, `file`, `http`, `manual`, …).
    public var triggers: [Key: Int] = [:]
    /// Finished attempts' wall time, by pipeline.
    public var durations: [String: Durations] = [:]
    /// Outbox notifications by report kind (`Key.pipeline`) and status (`pending` ones are the backlog).
    public var notifications: [Key: Int] = [:]
    /// Coordination sessions by name (`Key.pipeline`) and status (`open`, `complete`, `timed_out`).
    public var sessions: [Key: Int] = [:]

    public init() {}

    /// The kind of a run's trigger text (`schedule 2026-… (catch-up)` → `schedule`).
    public static func triggerKind(_ trigger: String) -> String {
        String(trigger.prefix { $0 != " " })
    }
}

/// One successful task's recorded result (`resultPage`).
public struct TaskResult: Sendable, Hashable {
    public var taskID: TaskID
    public var key: String
    public var result: Data

    public init(taskID: TaskID, key: String, result: Data) {
        self.taskID = taskID
        self.key = key
        self.result = result
    }
}
