import Foundation
import SluiceCore
import SluiceStore

/// The audit report of a run (`report.json`), also what `sluice show --json` prints.
public struct RunReport: Codable, Sendable {
    public struct Attempt: Codable, Sendable {
        public var number: Int
        public var outcome: String
        public var startedAt: Date
        public var finishedAt: Date?
        public var durationMs: Int64?
        public var exitCode: Int32?
        public var signal: Int32?
        public var cpuMs: Int64?
        public var peakRssBytes: Int64?
        public var stdoutBytes: Int64
        public var stderrBytes: Int64
        public var message: String?
        /// The last lines of stderr, for attempts that did not succeed.
        public var stderrTail: [String]?
        /// The machine and process that ran it (a worker's, or the run's own).
        public var host: String?
        public var pid: Int32?
    }

    public struct Task: Codable, Sendable {
        public var id: Int64
        public var key: String
        public var status: String
        public var attempts: [Attempt]
    }

    public struct Stage: Codable, Sendable {
        public var name: String
        public var status: String
        public var reason: String?
        public var startedAt: Date?
        public var finishedAt: Date?
        public var durationMs: Int64?
        /// Business counters reported by the stage's tasks (`context.count`), summed.
        public var counters: [String: Int]?
        /// Failed business records (`context.reject`): how many, and the first ones with their reasons.
        public var rejected: Int?
        public var rejectedRecords: [String]?
        /// Summary metrics over the stage's tasks (fan-out stages especially).
        public var metrics: Metrics?
        /// Done / failed / running / expected, percent, rate (average since the stage started) and ETA.
        public var progress: StageProgress?
        /// Every task; for a fan-out stage only those that did not succeed.
        public var tasks: [Task]
        /// Why tasks wait with none running, when only some processes can run them (a queue, Swift code).
        public var waiting: String?
    }

    public struct Metrics: Codable, Sendable {
        public var tasks: Int
        public var succeeded: Int
        public var failed: Int
        /// Succeeded tasks / finished tasks.
        public var successRate: Double
        /// Finished tasks per second of the stage's wall time.
        public var tasksPerSecond: Double?
        public var meanTaskMs: Double?
        public var p95TaskMs: Int64?
        /// The largest resident memory of any of the stage's processes.
        public var peakRssBytes: Int64?
    }

    public struct Totals: Codable, Sendable {
        public var stages: [String: Int]
        public var attempts: Int
        public var bytesWritten: Int64
        public var peakRssBytes: Int64?
        public var cpuMs: Int64
        /// The stages' business counters, summed over the run.
        public var counters: [String: Int]? = nil
        /// The stages' rejected records, counted over the run.
        public var rejected: Int? = nil
    }

    public var pipeline: String
    public var runId: String
    public var pipelineFile: String?
    public var params: [String: String]
    public var trigger: String
    public var status: String
    /// Set once the run ended.
    public var outcome: String?
    public var exitCode: Int32?
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    public var durationMs: Int64?
    public var stages: [Stage]
    public var totals: Totals
    /// Peak resident memory of the Sluice process that finished the run (set in report.json).
    public var enginePeakRssBytes: Int64?
    /// What happened to artifacts and files: `artifact.*`, `healing.*` and `lifecycle.*` events.
    public var artifacts: [Action]?
    /// Notices for people, such as `manual_review` after a rollback.
    public var notices: [Action]?

    /// One recorded action on artifacts or files, or a notice.
    public struct Action: Codable, Sendable {
        public var event: String
        public var stage: String?
        public var time: Date
        public var message: String
        public var attrs: [String: String]
    }

    /// A small report — one stage, one task with a failed and a successful attempt — for warming up a
    /// renderer before the real report exists (see `HTMLReportWriter.prepare`).
    public static var sample: RunReport {
        let start = Date(timeIntervalSince1970: 0)
        let attempt = { (number: Int, outcome: String) in
            Attempt(number: number, outcome: outcome, startedAt: start, finishedAt: start, durationMs: 1, exitCode: 0, signal: nil,
                    cpuMs: 1, peakRssBytes: 1, stdoutBytes: 1, stderrBytes: 1, message: outcome, stderrTail: ["warm-up stderr"], host: "host", pid: 1)
        }
        let task = Task(id: 1, key: "main", status: "success", attempts: [attempt(1, "failed"), attempt(2, "success")])
        let stage = Stage(name: "warm-up-stage", status: "success", reason: nil, startedAt: start, finishedAt: start, durationMs: 1,
                          counters: ["warm_up_count": 1], rejected: 1, rejectedRecords: ["warm-up record"],
                          metrics: Metrics(tasks: 1, succeeded: 1, failed: 0, successRate: 1, tasksPerSecond: 1, meanTaskMs: 1,
                                           p95TaskMs: 1, peakRssBytes: 1),
                          progress: nil, tasks: [task], waiting: nil)
        return RunReport(pipeline: "sample", runId: "sample", pipelineFile: nil, params: ["p": "v"], trigger: "manual",
                         status: "success", outcome: "success", exitCode: 0, createdAt: start, startedAt: start, finishedAt: start,
                         durationMs: 1, stages: [stage], totals: Totals(stages: ["success": 1], attempts: 2, bytesWritten: 1,
                                                                         peakRssBytes: 1, cpuMs: 1),
                         enginePeakRssBytes: 1, artifacts: nil, notices: nil)
    }

    static func ms(_ a: Date?, _ b: Date?) -> Int64? {
        guard let a, let b else { return nil }
        return Int64((b.timeIntervalSince(a) * 1000).rounded())
    }

    /// Builds the report from the store: aggregates are computed there, and only the tasks listed
    /// (for a fan-out stage, those that did not succeed) are loaded.
    /// - Parameter allTasks: list a fan-out stage's successful tasks too.
    /// - Parameter known: summaries of stages that ended, computed meanwhile (the rest are read here).
    public static func build(store: any StateStore, runID: RunID, allTasks: Bool = false,
                             known: [StageName: StageSummary] = [:]) async throws -> RunReport {
        guard let run = try await store.run(runID) else {
            throw EngineError(.runNotFound, "run \(runID) does not exist")
        }
        let stages = try await store.stages(of: runID)
        var summaries = known
        let rest = Set(stages.map(\.name)).subtracting(known.keys)
        if !rest.isEmpty { summaries.merge(try await store.stageSummaries(run: runID, of: rest)) { _, read in read } }
        // A fan-out stage's successful tasks are counted, not listed (unless `allTasks`).
        let fanOut = stages.map(\.name).filter { run.spec.stage($0)?.forEach != nil && !allTasks }
        let listed = Dictionary(grouping: try await store.tasks(of: runID, all: stages.map(\.name).filter { !fanOut.contains($0) },
                                                                unsuccessful: fanOut),
                                by: \.stage)
        let attempts = try await store.attempts(ofTasks: listed.values.flatMap { $0.map(\.id) })
        let attemptsByTask = Dictionary(grouping: attempts, by: \.taskID)
        let statusByName = Dictionary(stages.map { ($0.name, $0.status) }, uniquingKeysWith: { a, _ in a })
        var counts: [String: Int] = [:]
        let stageReports = stages.map { stage -> Stage in
            counts[stage.status.rawValue, default: 0] += 1
            let summary = summaries[stage.name] ?? StageSummary()
            let taskReports = (listed[stage.name] ?? []).map { task in
                Task(id: task.id, key: task.key, status: task.status.rawValue,
                     attempts: (attemptsByTask[task.id] ?? []).map { a in
                         Attempt(number: a.number, outcome: a.outcome.rawValue, startedAt: a.startedAt, finishedAt: a.finishedAt,
                                 durationMs: a.wallMs, exitCode: a.exitCode, signal: a.signal, cpuMs: a.cpuMs,
                                 peakRssBytes: a.peakRSSBytes, stdoutBytes: a.stdoutBytes, stderrBytes: a.stderrBytes,
                                 message: a.message,
                                 stderrTail: a.outcome == .success ? nil : a.stderrTail.map { $0.components(separatedBy: "\n") },
                                 host: a.host, pid: a.pid)
                     })
            }
            let c = summary.counts
            let wall = ms(stage.startedAt, stage.finishedAt)
            let metrics = c.total == 0 ? nil : Metrics(
                tasks: c.total, succeeded: c.success, failed: c.failed,
                successRate: c.finished == 0 ? 0 : (Double(c.success) / Double(c.finished) * 1000).rounded() / 1000,
                tasksPerSecond: wall.flatMap { $0 > 0 ? (Double(c.finished) * 1000 / Double($0) * 10).rounded() / 10 : nil },
                meanTaskMs: summary.meanTaskMs, p95TaskMs: summary.p95TaskMs, peakRssBytes: summary.peakRSSBytes)
            return Stage(name: stage.name, status: stage.status.rawValue, reason: stage.reason, startedAt: stage.startedAt,
                         finishedAt: stage.finishedAt, durationMs: wall,
                         counters: summary.counters.isEmpty ? nil : summary.counters,
                         rejected: summary.rejected == 0 ? nil : summary.rejected,
                         rejectedRecords: summary.rejectedRecords.isEmpty ? nil : summary.rejectedRecords, metrics: metrics,
                         progress: progress(stage, c, run: run, statuses: statusByName), tasks: taskReports,
                         waiting: stage.status == .running && c.pending > 0 && c.running == 0 ? waiting(for: run.spec.stage(stage.name), run: run) : nil)
        }
        let outcome = RunOutcome(run.status)
        let all = summaries.values
        var counters: [String: Int] = [:]
        for summary in all { counters.merge(summary.counters, uniquingKeysWith: +) }
        let rejected = all.reduce(0) { $0 + $1.rejected }
        var actions: [Action] = [], notices: [Action] = []
        if run.spec.stages.contains(where: { !$0.outputs.isEmpty }) || !run.spec.lifecycle.isEmpty {
            var after: Int64 = 0
            while true {
                let page = try await store.events(run: runID, afterID: after, limit: 10_000)
                for e in page {
                    let action = Action(event: e.event, stage: e.stage, time: e.time, message: e.message, attrs: e.attrs)
                    if e.event.hasPrefix("notice.") { notices.append(action) }
                    else if e.event.hasPrefix("artifact.") || e.event.hasPrefix("healing.") || e.event.hasPrefix("lifecycle.") {
                        actions.append(action)
                    }
                }
                guard page.count == 10_000, let last = page.last else { break }
                after = last.id
            }
        }
        return RunReport(
            pipeline: run.pipeline, runId: run.id.rawValue, pipelineFile: run.spec.sourceFile, params: run.params,
            trigger: run.trigger, status: run.status.rawValue, outcome: outcome?.rawValue, exitCode: outcome?.exitCode,
            createdAt: run.createdAt, startedAt: run.startedAt, finishedAt: run.finishedAt,
            durationMs: ms(run.startedAt, run.finishedAt), stages: stageReports,
            totals: Totals(stages: counts, attempts: all.reduce(0) { $0 + $1.attempts },
                           bytesWritten: all.reduce(0) { $0 + $1.bytesWritten },
                           peakRssBytes: all.compactMap(\.peakRSSBytes).max(),
                           cpuMs: all.reduce(0) { $0 + $1.cpuMs },
                           counters: counters.isEmpty ? nil : counters, rejected: rejected == 0 ? nil : rejected),
            enginePeakRssBytes: nil, artifacts: actions.isEmpty ? nil : actions, notices: notices.isEmpty ? nil : notices)
    }

    /// Who can run a stage's tasks, when not every process can.
    static func waiting(for stage: StageSpec?, run: RunRecord) -> String? {
        guard let stage else { return nil }
        if stage.command == .swift {
            return "waiting for a process with pipeline '\(run.pipeline)''s Swift code (its executable's `worker` or `resume`)"
        }
        if stage.queueName != StageSpec.defaultQueue {
            return "waiting for a worker serving queue '\(stage.queueName)' (`sluice worker --queues \(stage.queueName)`)"
        }
        return nil
    }

    static func progress(_ stage: StageRecord, _ counts: TaskCounts, run: RunRecord, statuses: [StageName: StageStatus]) -> StageProgress? {
        guard counts.total > 0 else { return nil }
        let end = stage.finishedAt ?? Date()
        let seconds = stage.startedAt.map { end.timeIntervalSince($0) } ?? 0
        let rate = seconds > 0 ? Double(counts.finished) / seconds : 0
        let producer = run.spec.stage(stage.name)?.forEach
        let growing = producer.map { statuses[$0] == .running || statuses[$0] == .pending } ?? false
        return StageProgress(stage: stage.name, counts: counts, ratePerSecond: rate, growing: growing)
    }

    public static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, enc in
            var c = enc.singleValueContainer()
            try c.encode(EventLog.timestamp(date))
        }
        return encoder
    }

    public func json() throws -> Data { try Self.encoder.encode(self) }

    public func write(to path: String) throws {
        try RunFiles.replace(path, with: json())
    }
}
