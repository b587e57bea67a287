import Foundation
import Logging
import SluiceCore
import SluiceStore
import SluiceSupervisor

/// Writes a file of its own from a run's report when the run ended (e.g. `report.html`). A failure is
/// logged and never changes the run's outcome.
public protocol RunReportWriter: Sendable {
    func write(_ report: RunReport, runDirectory: String) throws
}

/// Starts, executes, resumes and cancels runs. Talks to the store only through `StateStore`.
public struct Engine: Sendable {
    public struct Configuration: Sendable {
        /// How long a lease lasts without renewal.
        public var leaseDuration: Duration = .seconds(30)
        /// How often leases are renewed.
        public var heartbeat: Duration = .seconds(5)
        /// How often a cancel request from another process is looked for.
        public var cancelPoll: Duration = .milliseconds(200)
        /// How long `overlap: queue` waits between looks at the active run.
        public var queuePoll: Duration = .seconds(1)
        /// How long an idle process waits for other processes' tasks before looking again (when the store
        /// cannot notify it).
        public var othersPoll: Duration = .seconds(1)
        /// Lost attempts in a row after which a task fails instead of being tried again.
        public var maxLostAttempts: Int = 3
        public init() {}
    }

    public let store: any StateStore
    public let layout: StateLayout
    public let time: any TimeSource
    public var configuration: Configuration
    public var supervisor: Supervisor
    public var logger: Logger
    /// Bodies of in-process (Swift) stages, for pipelines defined in code.
    public var inProcess: InProcessStages
    /// Write more files beside `report.json` when a run ended (the HTML report, from SluiceNotify).
    public var reportWriters: [any RunReportWriter] = []
    let owner: LeaseOwner

    public init(store: any StateStore, layout: StateLayout, time: any TimeSource = SystemTimeSource(),
                configuration: Configuration = Configuration(), supervisor: Supervisor = Supervisor(),
                logger: Logger = Logger(label: "sluice.engine"), inProcess: InProcessStages = InProcessStages()) {
        self.store = store
        self.layout = layout
        self.time = time
        self.configuration = configuration
        self.supervisor = supervisor
        self.logger = logger
        self.inProcess = inProcess
        self.owner = .currentProcess()
    }

    public enum StartResult: Sendable {
        case started(RunRecord)
        /// `overlap: skip` and these runs are active.
        case skipped(active: [RunRecord])
        case duplicate(RunRecord)
    }

    /// Records a new run of `spec` (applying its overlap policy), leased to this process — or, when
    /// `detached`, to the worker pool: `sluice worker` processes execute it.
    /// With `overlap: queue` it waits until the active run finished; `onWait` is told once.
    public func start(_ spec: PipelineSpec, params overrides: [String: String] = [:], trigger: String = "manual",
                      idempotencyKey: String? = nil, detached: Bool = false,
                      onWait: @Sendable ([RunRecord]) -> Void = { _ in }) async throws -> StartResult {
        var params = spec.params
        for (k, v) in overrides {
            guard params[k] != nil else {
                let hint = Suggest.hint(for: k, in: params.keys)
                    ?? (params.isEmpty ? "the pipeline declares no params" : "declared params: \(params.keys.sorted().joined(separator: ", "))")
                throw EngineError(.invalidInput, "pipeline '\(spec.name)' has no param '\(k)'", hint: hint)
            }
            params[k] = v
        }
        var told = false
        while true {
            try await expireDeadOwners(pipeline: spec.name)
            let now = time.now()
            let id = RunID.generate(at: now)
            let runDir = layout.runDirectory(id)
            let record = RunRecord(id: id, pipeline: spec.name, spec: spec, params: params, trigger: trigger,
                                   status: .pending, createdAt: now, leaseOwner: detached ? .workerPool : owner,
                                   leaseExpiresAt: now.addingTimeInterval(configuration.leaseDuration.seconds),
                                   idempotencyKey: idempotencyKey, runDir: runDir)
            let created = EventRecord(runID: id, pipeline: spec.name, event: "run.created", time: now,
                                      message: "run created (trigger: \(trigger))",
                                      attrs: ["trigger": trigger, "params": Self.describe(params)])
            switch try await store.createRun(record, overlap: spec.overlap, now: now, events: [created]) {
            case .created(let run):
                try Self.makeDirectory(run.runDir)
                return .started(run)
            case .duplicate(let run):
                return .duplicate(run)
            case .overlapping(let active):
                if spec.overlap == .skip { return .skipped(active: active) }
                if !told { onWait(active); told = true }
                try await time.sleep(until: time.now().addingTimeInterval(configuration.queuePoll.seconds))
            }
        }
    }

    static func describe(_ params: [String: String]) -> String {
        params.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    }

    static func makeDirectory(_ path: String) throws(EngineError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw EngineError(.io, "cannot create the run folder '\(path)': \(error.localizedDescription)",
                              hint: "check that the state folder is writable and the disk is not full")
        }
    }

    /// Runs of `pipeline` still marked active whose owner was on this host and is gone: their lease is expired at once.
    func expireDeadOwners(pipeline: String) async throws {
        for run in try await store.unfinishedRuns(pipeline: pipeline) {
            if let holder = run.leaseOwner, Self.isDead(holder) {
                try await store.expireLease(run: run.id, owner: holder, now: time.now())
            }
        }
    }

    /// Whether an unfinished run has nobody executing it: its lease expired, or its owner on this host is gone.
    public func isInterrupted(_ run: RunRecord) -> Bool {
        guard !run.status.isTerminal else { return false }
        guard let holder = run.leaseOwner, let expires = run.leaseExpiresAt else { return run.status == .running }
        return expires < time.now() || Self.isDead(holder)
    }

    static func isDead(_ holder: LeaseOwner) -> Bool {
        // A zombie (killed, not yet reaped by its parent) is as dead as a process that is gone.
        holder.host == ProcessInfo.processInfo.hostName && holder.pid != ProcessInfo.processInfo.processIdentifier
            && !ProcFS.isAlive(holder.pid, startTicks: nil)
    }

    /// Finds a run by id, unique id prefix, or `latest`.
    public func findRun(_ text: String) async throws -> RunRecord {
        if text == "latest" || text == "last" {
            guard let run = try await store.recentRuns(pipeline: nil, limit: 1).first else {
                throw EngineError(.runNotFound, "there are no runs in \(layout.directory)",
                                  hint: "start one with `sluice run PIPELINE.yml`")
            }
            return run
        }
        let matches = try await store.runs(idPrefix: text, limit: 5)
        if let exact = matches.first(where: { $0.id.rawValue == text }) { return exact }
        switch matches.count {
        case 0:
            throw EngineError(.runNotFound, "no run '\(text)' in \(layout.directory)",
                              hint: "`sluice runs` lists recent runs; use --state-dir if the run was recorded elsewhere")
        case 1:
            return matches[0]
        default:
            throw EngineError(.ambiguousRun, "'\(text)' matches several runs: \(matches.map(\.id.rawValue).joined(separator: ", "))",
                              hint: "type more of the run id")
        }
    }

    /// Executes a run this process has started (or takes over a resumable one) until it ends.
    /// - Parameters:
    ///   - observer: told every event as it is recorded.
    ///   - progress: told the progress of the active stages about once a second.
    /// - Parameter reported: told the report (`report.json`) when this process finished the run's record
    ///   (not when another process did).
    public func execute(_ run: RunRecord, resume: Bool = false, retryFailed: Bool = false,
                        observer: (@Sendable (EventRecord) -> Void)? = nil,
                        progress: (@Sendable ([StageProgress]) -> Void)? = nil,
                        reported: (@Sendable (RunReport) -> Void)? = nil) async throws -> RunOutcome {
        let executor = RunExecutor(engine: self, runID: run.id, files: RunFiles(directory: run.runDir),
                                   log: EventLog(runID: run.id, pipeline: run.pipeline, files: RunFiles(directory: run.runDir),
                                                 time: time, observer: observer),
                                   progress: ProgressReporter(observer: progress), reported: reported)
        return try await executor.execute(resume: resume, retryFailed: retryFailed)
    }

    /// Asks the process executing `run` to stop it. When that process is gone, records the cancellation here.
    public func cancel(_ run: RunRecord) async throws -> CancelRequestResult {
        let now = time.now()
        let event = EventRecord(runID: run.id, pipeline: run.pipeline, event: "run.cancel_requested", time: now,
                                message: "cancel requested by pid \(ProcessInfo.processInfo.processIdentifier)")
        let result = try await store.requestCancel(run.id, now: now, events: [event])
        if case .requested(let current) = result {
            let holder = current.leaseOwner
            let orphaned = holder == nil || Self.isDead(holder!)
                || (current.leaseExpiresAt.map { $0 < now } ?? true)
            if orphaned {
                // Nobody is executing it: finish the record ourselves (stops leftover processes too).
                _ = try await execute(current, resume: false)
            } else {
                EventLog(runID: run.id, pipeline: run.pipeline, files: RunFiles(directory: run.runDir), time: time,
                         observer: nil).published([event])
            }
        }
        return result
    }
}
