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

    static func ms(_ a: Date?, _ b: Date?) -> Int64? {
        guard let a, let b else { return nil }
        return Int64((b.timeIntervalSince(a) * 1000).rounded())
    }

    /// - Parameter allTasks: list a fan-out stage's successful tasks too.
    public static func build(store: any StateStore, runID: RunID, allTasks: Bool = false) async throws -> RunReport {
        guard let run = try await store.run(runID) else {
            throw EngineError(.runNotFound, "run \(runID) does not exist")
        }
        let stages = try await store.stages(of: runID)
        let tasks = try await store.tasks(of: runID)
        let attempts = try await store.attempts(of: runID)
        return build(run: run, stages: stages, tasks: tasks, attempts: attempts, allTasks: allTasks)
    }

    public static func build(run: RunRecord, stages: [StageRecord], tasks: [TaskRecord], attempts: [AttemptRecord],
                             allTasks: Bool = false) -> RunReport {
        // Counters of successful attempts only: a retried attempt's counts would be counted twice.
        var counters: [StageName: [String: Int]] = [:]
        var rejected: [StageName: (Int, [String])] = [:]
        for a in attempts where a.outcome == .success && !a.counters.isEmpty {
            let stage = a.stage
            for (k, v) in a.counters where k.hasPrefix("count.") {
                counters[stage, default: [:]][String(k.dropFirst("count.".count)), default: 0] += Int(v) ?? 0
            }
            if let n = a.counters["rejected"].flatMap(Int.init) {
                var entry = rejected[stage] ?? (0, [])
                entry.0 += n
                entry.1 += a.counters.filter { $0.key.hasPrefix("rejected.") }
                    .sorted { (Int($0.key.dropFirst(9)) ?? 0) < (Int($1.key.dropFirst(9)) ?? 0) }.map(\.value)
                rejected[stage] = entry
            }
        }
        let attemptsByTask = Dictionary(grouping: attempts, by: \.taskID)
        let statusByName = Dictionary(stages.map { ($0.name, $0.status) }, uniquingKeysWith: { a, _ in a })
        let tasksByStage = Dictionary(grouping: tasks, by: \.stage)
        var counts: [String: Int] = [:]
        let stageReports = stages.map { stage -> Stage in
            counts[stage.status.rawValue, default: 0] += 1
            // A fan-out stage can have a million items: its successful ones are summed up in `metrics`
            // and `progress`; the report lists the others, with their attempts.
            let fanOut = run.spec.stage(stage.name)?.forEach != nil
            let listed = (tasksByStage[stage.name] ?? []).filter { allTasks || !fanOut || $0.status != .success }
            let taskReports = listed.map { task in
                Task(id: task.id, key: task.key, status: task.status.rawValue,
                     attempts: (attemptsByTask[task.id] ?? []).map { a in
                         Attempt(number: a.number, outcome: a.outcome.rawValue, startedAt: a.startedAt, finishedAt: a.finishedAt,
                                 durationMs: a.wallMs, exitCode: a.exitCode, signal: a.signal, cpuMs: a.cpuMs,
                                 peakRssBytes: a.peakRSSBytes, stdoutBytes: a.stdoutBytes, stderrBytes: a.stderrBytes,
                                 message: a.message,
                                 stderrTail: a.outcome == .success ? nil : a.stderrTail.map { $0.components(separatedBy: "\n") })
                     })
            }
            let stageTasks = tasksByStage[stage.name] ?? []
            let durations = stageTasks.compactMap { attemptsByTask[$0.id]?.last?.wallMs }.sorted()
            let finished = stageTasks.filter { $0.status.isTerminal }.count
            let succeeded = stageTasks.filter { $0.status == .success }.count
            let wall = ms(stage.startedAt, stage.finishedAt)
            let metrics = stageTasks.isEmpty ? nil : Metrics(
                tasks: stageTasks.count, succeeded: succeeded, failed: stageTasks.filter { $0.status == .failed }.count,
                successRate: finished == 0 ? 0 : (Double(succeeded) / Double(finished) * 1000).rounded() / 1000,
                tasksPerSecond: wall.flatMap { $0 > 0 ? (Double(finished) * 1000 / Double($0) * 10).rounded() / 10 : nil },
                meanTaskMs: durations.isEmpty ? nil : (Double(durations.reduce(0, +)) / Double(durations.count) * 10).rounded() / 10,
                p95TaskMs: durations.isEmpty ? nil : durations[min(durations.count - 1, Int((Double(durations.count) * 0.95).rounded(.up)) - 1)],
                peakRssBytes: stageTasks.flatMap { attemptsByTask[$0.id] ?? [] }.compactMap(\.peakRSSBytes).max())
            return Stage(name: stage.name, status: stage.status.rawValue, reason: stage.reason, startedAt: stage.startedAt,
                         finishedAt: stage.finishedAt, durationMs: ms(stage.startedAt, stage.finishedAt),
                         counters: counters[stage.name], rejected: rejected[stage.name]?.0,
                         rejectedRecords: rejected[stage.name].map { Array($0.1.prefix(100)) }, metrics: metrics,
                         progress: progress(stage, stageTasks, run: run, statuses: statusByName), tasks: taskReports)
        }
        let outcome = RunOutcome(run.status)
        return RunReport(
            pipeline: run.pipeline, runId: run.id.rawValue, pipelineFile: run.spec.sourceFile, params: run.params,
            trigger: run.trigger, status: run.status.rawValue, outcome: outcome?.rawValue, exitCode: outcome?.exitCode,
            createdAt: run.createdAt, startedAt: run.startedAt, finishedAt: run.finishedAt,
            durationMs: ms(run.startedAt, run.finishedAt), stages: stageReports,
            totals: Totals(stages: counts, attempts: attempts.count,
                           bytesWritten: attempts.reduce(0) { $0 + $1.stdoutBytes + $1.stderrBytes },
                           peakRssBytes: attempts.compactMap(\.peakRSSBytes).max(),
                           cpuMs: attempts.reduce(0) { $0 + ($1.cpuMs ?? 0) }),
            enginePeakRssBytes: nil)
    }

    static func progress(_ stage: StageRecord, _ tasks: [TaskRecord], run: RunRecord, statuses: [StageName: StageStatus]) -> StageProgress? {
        guard !tasks.isEmpty else { return nil }
        let counts = TaskCounts(tasks.map(\.status))
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
        try json().write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
