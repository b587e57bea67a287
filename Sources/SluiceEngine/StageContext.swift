import Foundation
import Logging
import SluiceCore
import SluiceStore
import Synchronization

/// The body of an in-process stage: gets its context, returns its encoded result (or nil).
public typealias StageBody = @Sendable (StageContext) async throws -> Data?

/// In-process stage bodies, by pipeline and stage name. A run of a pipeline with Swift stages is
/// executed (or resumed) by a process that registered the same bodies.
public struct InProcessStages: Sendable {
    var bodies: [String: [StageName: StageBody]] = [:]

    public init() {}

    public mutating func register(pipeline: String, stage: StageName, body: @escaping StageBody) {
        bodies[pipeline, default: [:]][stage] = body
    }

    public func body(pipeline: String, stage: StageName) -> StageBody? { bodies[pipeline]?[stage] }
}

/// What an in-process stage can see and do while it runs.
///
/// Cancellation is ordinary Swift task cancellation: when the run is cancelled (or the stage's
/// `timeout` passes) the stage's task is cancelled; check `Task.isCancelled` or call
/// `try Task.checkCancellation()` in long loops.
public struct StageContext: Sendable {
    /// What the stage's tasks share (made once for a row of tasks, not for each).
    let scope: StageScope
    public var runID: RunID { scope.runID }
    public var pipeline: String { scope.pipeline }
    public var stage: StageName { scope.stage }
    /// The task's key within its stage (`main` for a single-task stage).
    public let taskKey: String
    /// 1-based, counting every attempt at this task.
    public let attempt: Int
    public var params: [String: String] { scope.params }
    /// The stage's working directory (the pipeline root, or the stage's `workdir` inside it).
    public var workDirectory: URL { scope.workDirectory }
    /// The run's folder (`.sluice/runs/<id>`), for files that belong to this run.
    public var runDirectory: URL { scope.runDirectory }
    /// Carries `sluice.run_id`, `sluice.stage`, `sluice.task_id` and `sluice.attempt`; lines also go to the task's log file.
    /// Made at the first use (most fan-out tasks never log).
    public var logger: Logger {
        sink.logger { [scope, taskID, taskKey, attempt] in
            // Lines go to the task's log file (`sluice logs RUN --stage S`), not to the terminal the live view draws on.
            let path = scope.files.stdout(stage: scope.stage, task: Items.fileName(key: taskKey, taskID: taskID), attempt: attempt)
            var logger = Logger(label: "sluice.stage") { _ in TaskLogHandler(path: path) }
            logger.logLevel = .info
            logger[metadataKey: "sluice.run_id"] = "\(scope.runID)"
            logger[metadataKey: "sluice.stage"] = "\(scope.stage)"
            logger[metadataKey: "sluice.task_id"] = "\(taskID)"
            logger[metadataKey: "sluice.attempt"] = "\(attempt)"
            return logger
        }
    }
    let taskID: TaskID
    /// The item this task processes (JSON), for a fan-out stage.
    public let item: Data?
    var store: any StateStore { scope.store }
    /// The task's own: what it reports (items, counters) and its logger once made.
    let sink: OutputSink
    var counters: CounterBox { sink.counters }

    init(scope: StageScope, taskID: TaskID, taskKey: String, attempt: Int, item: Data?, sink: OutputSink) {
        self.scope = scope
        self.taskID = taskID
        self.taskKey = taskKey
        self.attempt = attempt
        self.item = item
        self.sink = sink
    }

    /// The encoded results of an upstream stage's successful tasks, by task key, from the store
    /// (so they are there after a resume in another process too).
    public func encodedResults(of stage: StageName) async throws -> [String: Data] {
        if let refusal = notUpstream(stage) { throw refusal }
        return try await store.results(run: runID, stage: stage)
    }

    /// A stage's results are complete only once it ended, which this stage's `needs` (directly or through
    /// other stages) guarantee: reading those of any other stage would give whatever is recorded so far.
    func notUpstream(_ stage: StageName) -> EngineError? {
        scope.upstream.contains(stage) ? nil
            : EngineError(.invalidInput, "stage '\(self.stage)' reads the results of '\(stage)', which is not upstream of it: they may be incomplete or not there yet",
                          hint: "add '\(stage)' to the needs of '\(self.stage)'")
    }

    /// Emits an item (its JSON) for the fan-out stages that take this stage's items. It is recorded within
    /// 100 ms, and its task can start while this stage still runs. Items are deduplicated by key.
    public func emit(itemJSON data: Data) throws {
        guard sink.producer else {
            throw EngineError(.invalidInput, "stage '\(stage)' emitted an item, but no stage takes its items (for_each)")
        }
        sink.add(try Items.record(json: data))
    }

    /// How many emitted items may wait to be recorded before `send(itemJSON:)` waits.
    public static let unrecordedItemLimit = 20_000

    /// Emits an item as `emit(itemJSON:)` does, first waiting while more than `unrecordedItemLimit`
    /// emitted items are not recorded yet: a discovery of millions of items keeps its memory bounded.
    public func send(itemJSON data: Data) async throws {
        await sink.waitForRoom(limit: Self.unrecordedItemLimit)
        try emit(itemJSON: data)
    }

    /// The encoded results of an upstream stage's successful tasks in task order, read from the store a
    /// page at a time (a join over a million items never holds them all).
    public func encodedResultPages(of stage: StageName, pageSize: Int = 5_000) -> EncodedResults {
        EncodedResults(store: store, run: runID, stage: stage, pageSize: max(1, pageSize), refusal: notUpstream(stage))
    }

    /// Adds `value` to a business counter of this task (e.g. `count("policies", 120)`). Recorded with
    /// the attempt and summed per stage in the report.
    public func count(_ name: String, _ value: Int = 1) {
        counters.add(name, value)
    }

    /// Records a failed business record (e.g. a rejected row) with its reason; counted and listed in the report.
    public func reject(_ record: String, reason: String) {
        counters.reject(record, reason: reason)
    }
}

/// Counters and rejected records gathered during one attempt.
final class CounterBox: Sendable {
    struct Values {
        var counts: [String: Int] = [:]
        var rejected: [(String, String)] = []
        var rejectedTotal = 0
    }

    private let values = Mutex(Values())
    static let keptRejections = 100

    func add(_ name: String, _ value: Int) { values.withLock { $0.counts[name, default: 0] += value } }

    func reject(_ record: String, reason: String) {
        values.withLock { v in
            v.rejectedTotal += 1
            if v.rejected.count < Self.keptRejections { v.rejected.append((record, reason)) }
        }
    }

    /// Event attributes: `count.<name>` for each counter, `rejected` (total) and `rejected.<n>` = "record: reason".
    var attributes: [String: String] {
        values.withLock { v in
            var attrs: [String: String] = [:]
            for (k, n) in v.counts { attrs["count.\(k)"] = String(n) }
            if v.rejectedTotal > 0 {
                attrs["rejected"] = String(v.rejectedTotal)
                for (i, r) in v.rejected.enumerated() { attrs["rejected.\(i + 1)"] = "\(r.0): \(r.1)" }
            }
            return attrs
        }
    }
}

/// Writes a stage's log lines into its task's log file.
struct TaskLogHandler: LogHandler {
    let path: String
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    /// The file is created with the first line logged: most in-process tasks log nothing.
    init(path: String) {
        self.path = path
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { _, b in b }.filter { !$0.key.hasPrefix("sluice.") }
        let extra = merged.isEmpty ? "" : " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let line = "\(EventLog.timestamp(Date())) \(event.level) \(event.message)\(extra)\n"
        if !FileManager.default.fileExists(atPath: path) {
            try? FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        }
        EventLog.append(line, to: path)
    }
}

/// A stage's recorded results, a page at a time (`StageContext.encodedResultPages(of:)`).
public struct EncodedResults: AsyncSequence, Sendable {
    public typealias Element = TaskResult
    let store: any StateStore
    let run: RunID
    let stage: StageName
    let pageSize: Int
    /// Why these results may not be read (thrown by the first `next()`).
    var refusal: EngineError? = nil

    public struct AsyncIterator: AsyncIteratorProtocol {
        let source: EncodedResults
        var page: [TaskResult] = []
        var index = 0
        var after: TaskID = 0
        var finished = false

        public mutating func next() async throws -> TaskResult? {
            if let refusal = source.refusal { throw refusal }
            if index == page.count {
                guard !finished else { return nil }
                page = try await source.store.resultPage(run: source.run, stage: source.stage, afterTaskID: after, limit: source.pageSize)
                index = 0
                finished = page.count < source.pageSize
                guard let last = page.last else { return nil }
                after = last.taskID
            }
            defer { index += 1 }
            return page[index]
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(source: self) }
}

/// What the tasks of one stage of a run share, made once for a row of in-process tasks: a task's
/// context holds it instead of a copy of each (a context is made and dropped for every task).
final class StageScope: Sendable {
    let runID: RunID
    let pipeline: String
    let stage: StageName
    let params: [String: String]
    let workDirectory: URL
    let runDirectory: URL
    let store: any StateStore
    let files: RunFiles
    /// The stages this one depends on, directly or through others: those whose results it may read.
    let upstream: Set<StageName>

    /// The folders are worked out here, once per stage (no `stat` of the folder per task).
    init(run record: RunRecord, stage: StageSpec, store: any StateStore, files: RunFiles) {
        upstream = DAG.upstream(of: stage.name, in: record.spec)
        runID = record.id
        pipeline = record.pipeline
        self.stage = stage.name
        params = record.params
        let root = URL(fileURLWithPath: record.spec.root, isDirectory: true)
        workDirectory = stage.workdir.map { root.appendingPathComponent($0) } ?? root
        runDirectory = URL(fileURLWithPath: record.runDir, isDirectory: true)
        self.store = store
        self.files = files
    }
}
