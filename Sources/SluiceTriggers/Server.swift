import Foundation
import ServiceLifecycle
import SluiceCore
import SluiceEngine
import SluiceStore
import SluiceSupervisor
import Synchronization

/// `sluice serve`: fires every trigger the served pipelines declare (schedules, file arrivals, mailboxes) and
/// executes the runs they start with the same engine as `sluice run`.
///
/// Every firing carries an idempotency key — the pipeline and the scheduled time, or the pipeline and
/// the file — so a restart, or a second `serve` on the same store, never starts the same run twice.
/// On graceful shutdown (SIGTERM, SIGINT) it stops firing, lets running runs finish within the grace
/// period, then cancels the rest and waits until their cancellation is recorded.
public struct Server: Service {
    public struct Options: Sendable {
        /// How long running runs may take to finish after a shutdown request.
        public var grace: Duration = .seconds(60)
        /// How often triggers are looked at (file sizes, due schedules).
        public var tick: Duration = .seconds(1)
        /// How often pipeline files are looked at for changes.
        public var reload: Duration = .seconds(2)
        /// The schedule leader's lease: replicas sharing a store elect one to fire schedules; when it
        /// dies, another takes over within this time. Renewed every third of it.
        public var leaderLease: Duration = .seconds(15)
        public init() {}
    }

    public let engine: Engine
    public let options: Options
    let say: @Sendable (String) -> Void
    let catalog: SharedCatalog

    public init(engine: Engine, catalog: Catalog, options: Options = Options(), say: @escaping @Sendable (String) -> Void) {
        self.engine = engine
        self.catalog = SharedCatalog(catalog)
        self.options = options
        self.say = say
    }

    var time: any TimeSource { engine.time }
    let manual = ManualStarts()
    /// This replica's name in the schedule leader's lease.
    let identity = "serve \(ProcessInfo.processInfo.hostName) pid \(getpid()) \(UUID().uuidString.prefix(8))"
    static let leaderLeaseName = "serve.schedules"

    /// A pipeline this server serves.
    public func pipeline(named name: String) -> PipelineSpec? { catalog.withLock { $0.entries[name]?.spec } }
    /// Every pipeline this server serves now, by name.
    public var pipelines: [PipelineSpec] { catalog.withLock { $0.pipelines } }

    public enum TriggerResult: Sendable {
        case started(RunRecord)
        /// `overlap: queue` and these runs are active: the run starts when they ended.
        case queued(active: [RunRecord])
        /// `overlap: skip` and these runs are active: nothing started.
        case skipped(active: [RunRecord])
        /// A run with this idempotency key exists.
        case duplicate(RunRecord)
    }

    /// Starts a run of a served pipeline now (an HTTP trigger); this server executes it.
    public func trigger(_ spec: PipelineSpec, params: [String: String], idempotencyKey: String?, trigger: String) async throws -> TriggerResult {
        var probe = spec
        if spec.overlap == .queue { probe.overlap = .skip }
        switch try await engine.start(probe, params: params, trigger: trigger, idempotencyKey: idempotencyKey) {
        case .started(let run):
            manual.push(.execute(run))
            return .started(run)
        case .duplicate(let run):
            return .duplicate(run)
        case .skipped(let active):
            guard spec.overlap == .queue else { return .skipped(active: active) }
            manual.push(.start(spec, params: params, key: idempotencyKey, trigger: trigger))
            return .queued(active: active)
        }
    }

    public func run() async throws {
        let active = ActiveRuns()
        let files = FileLedger()
        let mailboxes = MailWatchers()
        var next: [String: Date] = [:]        // next scheduled firing, by pipeline
        var lastReload = ContinuousClock.now - options.reload
        var firstLook = true
        var leader = false
        var leaseDue = ContinuousClock.now
        var leaseHeldUntil = Date.distantPast
        try await withThrowingDiscardingTaskGroup { runs in
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                for job in manual.drain() {
                    switch job {
                    case .execute(let run):
                        runs.addTask { await execute(run, trigger: run.trigger, active: active) }
                    case .start(let spec, let params, let key, let trigger):
                        runs.addTask { await start(spec, trigger: trigger, key: key, params: params, active: active) { _ in } }
                    }
                }
                if ContinuousClock.now - lastReload >= options.reload {
                    lastReload = ContinuousClock.now
                    let changes = catalog.withLock { $0.refresh() }
                    report(changes)
                    if firstLook && catalog.withLock({ $0.entries.isEmpty }) {
                        say("warning: no pipeline to serve in \(catalog.withLock { $0.sources }.joined(separator: ", ")); waiting for pipeline files to appear")
                    }
                    firstLook = false
                    for name in changes.removed { next[name] = nil }
                    for spec in changes.loaded {
                        next[spec.name] = nil
                        if leader { try await arm(spec, next: &next, runs: &runs, active: active) }
                    }
                    // One watcher per mailbox, however many pipelines route from it.
                    for mailbox in Set(catalog.withLock { $0.pipelines }.compactMap(\.onMail?.mailbox)) where mailboxes.claim(mailbox) {
                        runs.addTask {
                            await watchMailbox(mailbox)
                            mailboxes.release(mailbox)
                        }
                    }
                }
                // One replica fires schedules: the holder of the leader's lease in the store.
                if ContinuousClock.now >= leaseDue {
                    leaseDue = ContinuousClock.now + options.leaderLease / 3
                    let now = time.now()
                    let until = now.addingTimeInterval(options.leaderLease.seconds)
                    let held: Bool
                    var answered = true
                    do {
                        held = try await engine.store.acquireLease(Self.leaderLeaseName, holder: identity, until: until, now: now)
                        if held { leaseHeldUntil = until }
                    } catch {
                        // The store did not answer: a leader keeps firing while its lease still runs (nobody
                        // else may take it before then), and stops when it ran out.
                        held = leader && now < leaseHeldUntil
                        answered = false
                        if scheduled { say("cannot renew the schedule leader's lease (\(error)); \(held ? "still the leader until \(Self.stamp(leaseHeldUntil))" : "not firing schedules until the store answers")") }
                    }
                    if held != leader {
                        leader = held
                        next = [:]
                        if leader {
                            if scheduled { say("this replica fires the schedules now (it holds the leader's lease)") }
                            // Taking over: what the previous leader missed follows each pipeline's missed-run policy.
                            for spec in catalog.withLock({ $0.pipelines }) { try await arm(spec, next: &next, runs: &runs, active: active) }
                        } else if scheduled && answered {
                            say("another replica fires the schedules (it holds the leader's lease); this one serves the other triggers")
                        }
                    }
                }
                let now = time.now()
                for spec in catalog.withLock({ $0.pipelines }) {
                    if leader, let schedule = spec.schedule, var due = next[spec.name], due <= now {
                        // Normally one firing is due; more only after a pause (a suspended machine): the
                        // latest fires, the older ones follow the missed-run policy.
                        var overdue: [Date] = []
                        while let following = schedule.nextFire(after: due), following <= now { overdue.append(due); due = following }
                        let missed = schedule.missedFires(last: overdue.first?.addingTimeInterval(-0.001), now: overdue.last ?? due)
                            .filter { overdue.contains($0) }
                        if !missed.isEmpty { runs.addTask { await catchUp(spec, missed, active: active) } }
                        let scheduled = due
                        runs.addTask { await fire(spec, scheduled: scheduled, catchUp: false, active: active) }
                        next[spec.name] = schedule.nextFire(after: due)
                    }
                    if let trigger = spec.onFiles {
                        for file in files.ready(spec: spec, trigger: trigger, now: now) {
                            runs.addTask { await fire(spec, file: file, files: files, active: active) }
                        }
                    }
                }
                let wake = next.values.min().map { min($0, time.now().addingTimeInterval(options.tick.seconds)) }
                    ?? time.now().addingTimeInterval(options.tick.seconds)
                let manual = self.manual
                await cancelWhenGracefulShutdown {
                    await withTaskGroup(of: Void.self) { race in
                        race.addTask { try? await time.sleep(until: wake) }
                        race.addTask { await manual.nudge.wait() }
                        await race.next()
                        race.cancelAll()
                    }
                }
            }
            if leader { try? await engine.store.releaseLease(Self.leaderLeaseName, holder: identity) }
            say("shutting down: no more triggers; \(active.count) running run(s) may finish within \(DurationText.format(options.grace))")
            let deadline = ContinuousClock.now + options.grace
            while active.count > 0 && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(100)) }
            for run in active.all {
                say("grace period over: cancelling run \(run.id) of '\(run.pipeline)'")
                _ = try? await engine.store.requestCancel(run.id, now: time.now(), events: [
                    EventRecord(runID: run.id, pipeline: run.pipeline, event: "run.cancel_requested", time: time.now(),
                                message: "cancel requested: sluice serve shut down and the grace period ended")])
            }
        }
        say("stopped")
    }

    func report(_ changes: Catalog.Changes) {
        for source in changes.missing { say("warning: \(source) is neither a pipeline file nor a folder") }
        for spec in changes.loaded {
            var triggers: [String] = []
            if let schedule = spec.schedule { triggers.append(schedule.summary) }
            if let files = spec.onFiles { triggers.append("files \(files.glob) (settle \(DurationText.format(files.settle)))") }
            if let mail = spec.onMail { triggers.append(mail.summary) }
            say("serving '\(spec.name)'\(spec.sourceFile.map { " from \($0)" } ?? ""): \(triggers.isEmpty ? "no triggers" : triggers.joined(separator: "; "))")
        }
        for name in changes.removed { say("no longer serving '\(name)' (its file is gone or renamed)") }
        for (file, diagnostics) in changes.rejected {
            say("error: \(file) does not validate; the version loaded before (if any) stays in service:")
            for d in diagnostics { say("  \(d.description)") }
        }
    }

    /// Whether any served pipeline has a schedule (leadership is only worth mentioning then).
    var scheduled: Bool { catalog.withLock { $0.pipelines.contains { $0.schedule != nil } } }

    /// Sets the next firing of `spec`'s schedule, after starting the firings missed since the last one
    /// recorded (by any replica), by its missed-run policy.
    func arm(_ spec: PipelineSpec, next: inout [String: Date], runs: inout ThrowingDiscardingTaskGroup<any Error>, active: ActiveRuns) async throws {
        guard let schedule = spec.schedule else { return }
        let now = time.now()
        let missed = schedule.missedFires(last: try await lastScheduled(spec.name), now: now)
        if !missed.isEmpty {
            // In time order: each catch-up is started before the next one is tried.
            runs.addTask { await catchUp(spec, missed, active: active) }
        }
        next[spec.name] = schedule.nextFire(after: now)
    }

    /// The time of the last scheduled firing recorded for `pipeline` (by this server or any other).
    func lastScheduled(_ pipeline: String) async throws -> Date? {
        let prefix = Self.scheduleKeyPrefix(pipeline)
        return try await engine.store.recentRuns(pipeline: pipeline, limit: 200)
            .compactMap { $0.idempotencyKey.flatMap { $0.hasPrefix(prefix) ? Self.date(String($0.dropFirst(prefix.count))) : nil } }
            .max()
    }

    static func scheduleKeyPrefix(_ pipeline: String) -> String { "schedule:\(pipeline):" }

    static func stamp(_ date: Date) -> String { date.formatted(.iso8601) }
    static func date(_ stamp: String) -> Date? { try? Date(stamp, strategy: .iso8601) }

    /// Catch-up firings, oldest first; each run executes in its own task once started.
    func catchUp(_ spec: PipelineSpec, _ times: [Date], active: ActiveRuns) async {
        await withDiscardingTaskGroup { group in
            for time in times {
                guard let run = await startOnly(spec, trigger: "schedule \(Self.stamp(time)) (catch-up)",
                                                key: Self.scheduleKeyPrefix(spec.name) + Self.stamp(time), params: [:]) else { continue }
                group.addTask { await execute(run, trigger: run.trigger, active: active) }
            }
        }
    }

    /// Starts a run and returns it when started (nil when skipped, a duplicate, or refused).
    func startOnly(_ spec: PipelineSpec, trigger: String, key: String?, params: [String: String]) async -> RunRecord? {
        do {
            let started = try await cancelWhenGracefulShutdown {
                try await engine.start(spec, params: params, trigger: trigger, idempotencyKey: key) { running in
                    say("'\(spec.name)' (\(trigger)) waits: run \(running.map(\.id.rawValue).joined(separator: ", ")) is active (overlap: queue)")
                }
            }
            switch started {
            case .started(let run): return run
            case .skipped(let running):
                say("'\(spec.name)' (\(trigger)) not started: run \(running.map(\.id.rawValue).joined(separator: ", ")) is active (overlap: skip)")
            case .duplicate: break
            }
        } catch is CancellationError {
            say("'\(spec.name)' (\(trigger)) not started: shutting down")
        } catch {
            say("error: '\(spec.name)' (\(trigger)): \(error)")
        }
        return nil
    }

    func fire(_ spec: PipelineSpec, scheduled: Date, catchUp: Bool, active: ActiveRuns) async {
        let stamp = Self.stamp(scheduled)
        await start(spec, trigger: "schedule \(stamp)\(catchUp ? " (catch-up)" : "")", key: Self.scheduleKeyPrefix(spec.name) + stamp,
                    params: [:], active: active) { _ in }
    }

    func fire(_ spec: PipelineSpec, file: FileLedger.File, files: FileLedger, active: ActiveRuns) async {
        // A file waiting for an active run (overlap: skip) is tried every tick: said once.
        await start(spec, trigger: "file \(file.relativePath)", key: file.key(pipeline: spec.name),
                    params: [FileTrigger.fileParam: file.relativePath, FileTrigger.filesParam: file.relativePath],
                    active: active, quietSkip: files.hasWaited(file)) { started in files.finished(file, started: started) }
    }

    /// Starts a run (applying the pipeline's overlap policy) and executes it. `done` is told whether the
    /// firing is settled (a run was recorded, now or before) or should be tried again (overlap skip).
    func start(_ spec: PipelineSpec, trigger: String, key: String?, params: [String: String], active: ActiveRuns,
               quietSkip: Bool = false, done: @Sendable (Bool) -> Void) async {
        do {
            // A run waiting for its turn (overlap: queue) gives up when serve shuts down.
            let started = try await cancelWhenGracefulShutdown {
                try await engine.start(spec, params: params, trigger: trigger, idempotencyKey: key) { running in
                    say("'\(spec.name)' (\(trigger)) waits: run \(running.map(\.id.rawValue).joined(separator: ", ")) is active (overlap: queue)")
                }
            }
            switch started {
            case .skipped(let running):
                if !quietSkip {
                    say("'\(spec.name)' (\(trigger)) not started: run \(running.map(\.id.rawValue).joined(separator: ", ")) is active (overlap: skip)")
                }
                done(false)
            case .duplicate(let run):
                done(true)
                _ = run
            case .started(let run):
                done(true)
                await execute(run, trigger: trigger, active: active)
            }
        } catch is CancellationError {
            done(false)
            say("'\(spec.name)' (\(trigger)) not started: shutting down")
        } catch {
            done(false)
            say("error: '\(spec.name)' (\(trigger)): \(error)")
        }
    }

    func execute(_ run: RunRecord, trigger: String, active: ActiveRuns) async {
        say("run \(run.id) of '\(run.pipeline)' started (\(trigger))")
        active.insert(run)
        defer { active.remove(run.id) }
        do {
            let outcome = try await engine.execute(run)
            say("run \(run.id) of '\(run.pipeline)' ended: \(outcome.rawValue)")
        } catch {
            say("error: run \(run.id) of '\(run.pipeline)': \(error)")
        }
    }
}

/// The catalog, shared between the trigger loop and `sluice schedules`-style readers.
final class SharedCatalog: Sendable {
    private let catalog: Mutex<Catalog>
    init(_ catalog: Catalog) { self.catalog = Mutex(catalog) }
    func withLock<T>(_ body: (inout Catalog) -> T) -> T { catalog.withLock { body(&$0) } }
}

/// Runs started by hand (the HTTP trigger), handed to the server's loop to execute.
final class ManualStarts: Sendable {
    enum Job: Sendable {
        case execute(RunRecord)
        case start(PipelineSpec, params: [String: String], key: String?, trigger: String)
    }

    private let jobs = Mutex<[Job]>([])
    let nudge = Nudge()

    func push(_ job: Job) {
        jobs.withLock { $0.append(job) }
        nudge.nudge()
    }

    func drain() -> [Job] { jobs.withLock { jobs in defer { jobs = [] }; return jobs } }
}

/// The runs this server is executing.
final class ActiveRuns: Sendable {
    private let runs = Mutex<[RunID: RunRecord]>([:])
    func insert(_ run: RunRecord) { runs.withLock { $0[run.id] = run } }
    func remove(_ id: RunID) { _ = runs.withLock { $0.removeValue(forKey: id) } }
    var count: Int { runs.withLock { $0.count } }
    var all: [RunRecord] { runs.withLock { Array($0.values) } }
}

/// What the file triggers have seen: each file's size and time while it grows, and whether it started
/// its run. A file is ready once it stopped changing for the trigger's settle time; it starts one run
/// (its idempotency key — pipeline, path, size and modification time — makes that hold across restarts).
final class FileLedger: Sendable {
    struct File: Sendable, Hashable {
        var relativePath: String
        var size: Int64
        var modified: Double

        func key(pipeline: String) -> String { "file:\(pipeline):\(relativePath):\(size):\(Int64(modified * 1000))" }
    }

    private struct Watch {
        var file: File
        var stableSince: Date
        var state: State
        var waited = false
    }

    /// Whether the file was already turned away once (overlap: skip).
    func hasWaited(_ file: File) -> Bool { watched.withLock { $0.values.contains { $0.file == file && $0.waited } } }

    private enum State { case growing, starting, done }

    private let watched = Mutex<[String: Watch]>([:]) // by pipeline + path

    func ready(spec: PipelineSpec, trigger: FileTrigger, now: Date) -> [File] {
        let root = URL(fileURLWithPath: spec.root).resolvingSymlinksInPath().path
        var ready: [File] = []
        let found: [File] = FileProbe.paths(trigger.glob, root: spec.root).compactMap { path in
            // Paths stay inside the pipeline's folder, symbolic links included.
            let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
            guard resolved.hasPrefix(root + "/"),
                  let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                  let size = (attributes[.size] as? NSNumber)?.int64Value,
                  let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 else { return nil }
            let relative = String(path.dropFirst((spec.root.hasSuffix("/") ? spec.root : spec.root + "/").count))
            return File(relativePath: relative, size: size, modified: modified)
        }
        watched.withLock { watched in
            for file in found {
                let id = spec.name + "\u{0}" + file.relativePath
                if var watch = watched[id], watch.file == file {
                    if watch.state == .growing && now.timeIntervalSince(watch.stableSince) >= trigger.settle.seconds {
                        watch.state = .starting
                        ready.append(file)
                    }
                    watched[id] = watch
                } else {
                    watched[id] = Watch(file: file, stableSince: now, state: .growing)
                }
            }
        }
        return ready
    }

    /// After a firing: settled files are done; others (overlap skip) are tried again later.
    func finished(_ file: File, started: Bool) {
        watched.withLock { watched in
            for (id, watch) in watched where watch.file == file {
                watched[id]?.state = started ? .done : .growing
                if !started { watched[id]?.waited = true }
            }
        }
    }
}
