import Foundation
import Logging
import SluiceCore
import SluiceStore
import SluiceSupervisor
import Synchronization

/// Executes one run: plans stages from the recorded state, claims tasks up to the run's concurrency,
/// supervises them, records every transition, and finishes the run with its outcome.
///
/// Nothing here is the source of truth: after a crash, a new executor derives everything from the store.
struct RunExecutor: Sendable {
    let engine: Engine
    let runID: RunID
    let files: RunFiles
    let log: EventLog
    let progress: ProgressReporter?
    /// Told the report this process wrote when it finished the run.
    var reported: (@Sendable (RunReport) -> Void)? = nil

    var store: any StateStore { engine.store }
    var time: any TimeSource { engine.time }
    var owner: LeaseOwner { engine.owner }

    private enum Wake: Sendable {
        /// A task ended, or a row of `count` in-process tasks that ran in one child task (`performInline`).
        case taskEnded(TaskID, count: Int = 1, took: Duration? = nil)
        case recorded
        case nudged
        case cancelRequested
        case leaseLost
        case timer
        case idleWake
        /// A claim made while the loop went on, launched when `changes` was at `epoch`.
        case claimed(Claim, epoch: Int)
        /// Tasks of a local stage read while the loop went on (up to `asked`; see `LocalStage`).
        case localRead(StageName, [LocalTask], epoch: Int, asked: Int)
        /// The summary of a fan-out stage that ended (empty when its read failed: the report reads it then).
        case summarized([StageName: StageSummary])
    }

    /// Records events in the store, then mirrors them to the run's files.
    func emit(_ events: [EventRecord]) async throws {
        try await store.appendEvents(events)
        log.published(events)
    }

    func execute(resume: Bool, retryFailed: Bool = false) async throws -> RunOutcome {
        guard var run = try await store.run(runID) else {
            throw EngineError(.runNotFound, "run \(runID) does not exist")
        }
        let unregistered = run.spec.stages.filter { $0.command == .swift && engine.inProcess.body(pipeline: run.pipeline, stage: $0.name) == nil }
        if !unregistered.isEmpty {
            throw EngineError(.invalidInput, "run \(runID) of pipeline '\(run.pipeline)' has Swift stages (\(unregistered.map(\.name).joined(separator: ", "))) that this executable does not define",
                              hint: "run it with the executable that defines pipeline '\(run.pipeline)' (its own `resume`/`cancel` commands)")
        }
        try Engine.makeDirectory(files.directory)
        let previous = run.leaseOwner
        let replacing = previous.flatMap { Engine.isDead($0) ? $0 : nil }
        let takingOver = previous.map { $0.id != owner.id } ?? (run.status == .running)
        let acquireEvent: EventRecord
        if resume {
            acquireEvent = log.make("run.resume", "resuming run of pipeline '\(run.pipeline)' (pid \(owner.pid) on \(owner.host))",
                                    attrs: ["pid": String(owner.pid), "host": owner.host])
        } else if takingOver {
            acquireEvent = log.make("run.takeover", "pid \(owner.pid) on \(owner.host) takes the run over to finish its record",
                                    attrs: ["pid": String(owner.pid), "host": owner.host])
        } else {
            acquireEvent = log.make("run.start", "run started (pid \(owner.pid) on \(owner.host))",
                                    attrs: ["pid": String(owner.pid), "host": owner.host])
        }
        switch try await store.acquireRun(runID, owner: owner, until: leaseExpiry(), replacing: replacing,
                                          now: time.now(), events: [acquireEvent]) {
        case .notFound:
            throw EngineError(.runNotFound, "run \(runID) does not exist")
        case .heldBy(let holder, let until):
            throw EngineError(.runBusy, "run \(runID) is being executed by pid \(holder.pid) on \(holder.host) (lease until \(EventLog.timestamp(until)))",
                              hint: "wait for it, or `sluice cancel \(runID)`; if that process is gone, its lease expires by itself")
        case .acquired(let acquired):
            run = acquired
        }
        log.published([acquireEvent])

        if let previous, previous.id != owner.id {
            let event = log.make("run.abandoned", "pid \(previous.pid) on \(previous.host) no longer holds the run (it is gone or its lease expired); its running attempts are recorded as lost")
            let lost = try await store.abandonRunningAttempts(runID, heldBy: previous.id, maxLostAttempts: engine.configuration.maxLostAttempts,
                                                               now: time.now(), events: [event])
            log.published([event])
            var lostEvents: [EventRecord] = []
            for attempt in lost {
                lostEvents.append(await lostEvent(attempt, in: run, "the process running it ended before recording a result"))
                if attempt.host == owner.host, let pid = attempt.pid, ProcFS.isAlive(pid, startTicks: attempt.processStartTicks) {
                    await Supervisor.terminateGroup(pid, grace: run.spec.stage(attempt.stage)?.grace ?? .seconds(10))
                }
            }
            try await emit(lostEvents)
        }
        if resume {
            let event = log.make("run.reset", "stages that did not succeed are planned again")
            try await store.prepareResume(runID, retryFailed: retryFailed, now: time.now(), events: [event])
            log.published([event])
        }

        let (outcome, summaries) = try await loop(run)
        try await applyLifecycle(run, outcome: outcome)
        if try await finish(outcome, as: owner, known: summaries) { return outcome }
        // Another process finished the record first (its lease lets it): report what it recorded.
        return try await store.run(runID).flatMap { RunOutcome($0.status) } ?? outcome
    }

    /// Records the run's outcome and writes its files, when this process is the one that may: true
    /// when it did (once per run, whoever gets there first).
    /// `known`: summaries of stages read meanwhile, for the report.
    func finish(_ outcome: RunOutcome, as finisher: LeaseOwner, known: [StageName: StageSummary] = [:]) async throws -> Bool {
        let finishEvent = log.make("run.\(outcome.rawValue)", "run ended: \(outcome.rawValue)", attrs: ["outcome": outcome.rawValue])
        guard try await store.finishRun(runID, outcome: outcome, owner: finisher, now: time.now(), events: [finishEvent]) else {
            return false
        }
        log.published([finishEvent])
        try await writeRecords(known: known)
        return true
    }

    /// This process's peak resident memory.
    static func peakRSS() -> Int64? {
        var usage = rusage()
        guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return nil }
        return Int64(usage.ru_maxrss) * 1024
    }

    func leaseExpiry() -> Date { time.now().addingTimeInterval(engine.configuration.leaseDuration.seconds) }

    /// The event files rewritten from the store, and the audit report.
    func writeRecords(known: [StageName: StageSummary] = [:]) async throws {
        var all: [EventRecord] = []
        while true {
            let page = try await store.events(run: runID, afterID: all.last?.id ?? 0, limit: 10_000)
            all += page
            if page.count < 10_000 { break }
        }
        log.rewrite(from: all)
        var report = try await RunReport.build(store: store, runID: runID, known: known)
        report.enginePeakRssBytes = Self.peakRSS()
        try report.write(to: files.report)
        reported?(report)
        for writer in engine.reportWriters {
            do { try writer.write(report, runDirectory: files.directory) } catch {
                engine.logger.warning("run \(runID): \(error)", metadata: ["sluice.run_id": "\(runID)"])
            }
        }
    }

    /// The run's outcome, and the summaries of fan-out stages that ended meanwhile (read as they ended).
    private func loop(_ run: RunRecord) async throws -> (RunOutcome, [StageName: StageSummary]) {
        let spec = run.spec
        let planner = Planner(spec: Self.renderConditions(of: run))
        let engine = self.engine
        let nudge = Nudge()
        let producers = Set(spec.stages.compactMap(\.forEach))
        // In-process fan-out tasks that take microseconds are claimed a batch ahead of free slots, so a
        // claim is one transaction per batch (see `ClaimAhead`).
        let fanOutStages = spec.stages.filter { $0.forEach != nil && $0.command == .swift }
        var taskTimes = ClaimAhead()
        // Fan-out stages this process runs as local tasks (recorded when they end), and where their reads are.
        var local = Dictionary(uniqueKeysWithValues: localStages(of: run).map { ($0, LocalStage()) })
        // Whether a producer's new items are task rows to claim (a fan-out stage that is not local).
        let itemsMakeTasks = spec.stages.contains { $0.forEach != nil && local[$0.name] == nil }
        let batcher = CompletionBatcher()
        return try await withThrowingTaskGroup(of: Wake.self) { group -> (RunOutcome, [StageName: StageSummary]) in
            group.addTask { try await watch(engine: engine, lookForCancel: true) }
            group.addTask { await nudge.wait(); return .nudged }
            let store = self.store, owner = self.owner, time = self.time
            let log = self.log, logger = engine.logger
            group.addTask {
                await batcher.run(store: store, owner: owner, time: time, publish: log.published, logger: logger)
                return .timer
            }
            group.addTask { await batcher.committed.wait(); return .recorded }
            if let progress {
                let runID = self.runID
                group.addTask { try await progress.run(store: store, log: log, runID: runID, spec: spec) }
            }
            // Running tasks (a row of in-process tasks by its first); `local`: a row of local tasks, which the
            // store counts as pending until they end (progress counts them as running).
            var running: [TaskID: (stop: StopSignal, stage: StageName, started: ContinuousClock.Instant, local: Bool)] = [:]
            var ready: [ClaimedTask] = [] // claimed, waiting for a free slot
            var unrecorded = 0            // completions handed to the batcher, not yet committed
            var mayClaim = true           // false after a claim found nothing, until something changes
            var changes = 0               // counts what may give work, for claims and local reads in flight
            // Set when the loop found no task anywhere and planned once more before calling the run stuck:
            // another process (a worker) may have ended a stage since this loop last planned.
            var plannedForNoTask = false
            /// Something happened that may give local stages items to read: read again (and tell a read in
            /// flight, which may have looked before it happened).
            func mayGiveLocalWork() {
                changes += 1
                plannedForNoTask = false
                for name in local.keys { local[name]?.dry = false }
            }
            /// Something happened that may give work: claim again too (and tell a claim in flight).
            func mayGiveWork() {
                mayClaim = true
                mayGiveLocalWork()
            }
            var claiming = false          // a claim is in flight (a child task: the loop starts tasks meanwhile)
            var needsPlan = true
            var waiting = false           // an idle wait is in the group
            var lastReclaim = ContinuousClock.now
            var cancelling = try await store.cancelRequested(runID)
            defer { group.cancelAll() }
            // A fan-out stage's summary for the report (its task durations, counters: a pass over all of its
            // tasks) is read as soon as it ended, while the stages after it (a join) run.
            var summarizing = 0, summaries: [StageName: StageSummary] = [:]
            func summarize(_ ended: [StageName]) {
                for name in ended where spec.stage(name)?.forEach != nil {
                    summarizing += 1
                    let runID = self.runID
                    group.addTask { .summarized((try? await store.stageSummaries(run: runID, of: [name])) ?? [:]) }
                }
            }
            func summarized(_ summary: [StageName: StageSummary]) {
                summarizing -= 1
                summaries.merge(summary) { _, new in new }
            }
            /// Waits for the summaries being read, before the loop returns (which cancels its child tasks).
            func awaitSummaries() async throws {
                while summarizing > 0, let wake = try await group.next() {
                    if case .summarized(let summary) = wake { summarized(summary) }
                }
            }

            while true {
                if cancelling {
                    for task in running.values { task.stop.request() }
                    // Claimed but never started: recorded as cancelled, without running.
                    for task in ready {
                        guard let stage = spec.stage(task.task.stage) else { continue }
                        let attempt = AttemptRecord(taskID: task.task.id, runID: run.id, stage: stage.name, number: task.attempt,
                                                    outcome: .cancelled, startedAt: task.startedAt, finishedAt: time.now(),
                                                    message: "cancelled before it started", host: owner.host)
                        record(FinishedAttempt(attempt: attempt, event: "task.cancel", attrs: [:], result: nil),
                               claimed: task, stage: stage, batcher: batcher)
                        unrecorded += 1
                    }
                    ready.removeAll()
                } else {
                    if needsPlan {
                        needsPlan = false
                        // Stages that start take their tasks for the free slots in the same write.
                        let free = claiming ? 0 : spec.concurrency - running.count - ready.count
                        let claim = free > 0 ? ClaimRequest(owner: owner, limit: free, leaseUntil: leaseExpiry()) : nil
                        let planned = try await planned(planner, run: run, claim: claim, local: Set(local.keys))
                        if planned.started { mayGiveWork() }
                        for stage in planned.stages where stage.status.isTerminal { local[stage.name] = nil }
                        if let claimed = planned.claimed {
                            ready += claimed.tasks
                            // It saw every change so far: nothing more to claim until something changes.
                            if !claimed.more { mayClaim = false }
                        }
                    }
                    // Local tasks are read (not claimed: nothing is written until they end) as many at a time
                    // as a claim would take (free slots, or a batch ahead once they are known to be quick),
                    // while the store keeps up: their completions wait in memory until recorded.
                    let readSize = taskTimes.want(run.pipeline, fanOut: fanOutStages, concurrency: spec.concurrency,
                                                  running: running.count, ready: ready.count)
                    for (name, source) in local where !source.reading && !source.dry && readSize > 0 && unrecorded < LocalStage.maxUnrecorded {
                        local[name]?.reading = true
                        let after = source.after, epoch = changes, runID = self.runID, owner = self.owner
                        group.addTask {
                            let tasks = try await store.localTasks(run: runID, stage: name, owner: owner, after: after, limit: readSize)
                            return .localRead(name, tasks, epoch: epoch, asked: readSize)
                        }
                    }
                    // Start what is claimed, then claim more: commands only for free slots; in-process
                    // fan-out tasks a batch at a time, when fewer than a quarter of a batch is left (a claim
                    // is a write transaction: claiming after every task would be one per task).
                    for pass in 0..<2 {
                        var index = 0
                        while running.count < spec.concurrency, index < ready.count {
                            let task = ready[index]
                            guard let stage = spec.stage(task.task.stage) else { ready.remove(at: index); continue }
                            if let limit = stage.concurrency, running.values.count(where: { $0.stage == stage.name }) >= limit {
                                index += 1
                                continue
                            }
                            let stop = StopSignal()
                            running[task.task.id] = (stop, stage.name, .now, task.local)
                            if task.local { progress?.localRunning(stage.name, 1) } // a row runs one task at a time
                            let producer = producers.contains(stage.name)
                            if let body = runsInline(stage, pipeline: run.pipeline, producer: producer) {
                                // This task and the next ready ones of its stage, in a row (`rowSize`).
                                // Claims come in task order, so a stage's ready tasks are mostly side by side:
                                // the row is those that follow this one.
                                let adjacent = ready[index...].prefix { $0.task.stage == stage.name }.count
                                let size = Self.rowSize(adjacent: adjacent, freeSlots: spec.concurrency - running.count + 1)
                                let chunk = Array(ready[index..<(index + size)])
                                ready.removeSubrange(index..<(index + size))
                                let id = task.task.id
                                group.addTask {
                                    let took = await performInline(chunk, stage: stage, run: run, body: body, stop: stop, batcher: batcher)
                                    return .taskEnded(id, count: chunk.count, took: took)
                                }
                                continue
                            }
                            ready.remove(at: index)
                            group.addTask {
                                try await perform(task, stage: stage, run: run, stop: stop, producer: producer,
                                                  nudge: nudge, batcher: batcher)
                                return .taskEnded(task.task.id)
                            }
                        }
                        let slotsFree = running.count < spec.concurrency
                        let want = taskTimes.want(run.pipeline, fanOut: fanOutStages, concurrency: spec.concurrency,
                                                  running: running.count, ready: ready.count,
                                                  readyBlocked: slotsFree && index >= ready.count)
                        guard pass == 0, mayClaim, want > 0, !claiming else { break }
                        // Claimed in a child task: tasks already claimed keep starting while it is written.
                        claiming = true
                        let now = time.now(), lease = leaseExpiry(), epoch = changes, runID = self.runID
                        group.addTask {
                            let claim = try await store.claimTasks(run: runID, ClaimRequest(owner: owner, limit: want, leaseUntil: lease),
                                                                   now: now)
                            return .claimed(claim, epoch: epoch)
                        }
                    }
                }
                if running.isEmpty && ready.isEmpty && unrecorded == 0 && !waiting && !claiming
                    && !local.values.contains(where: { $0.reading || !$0.dry && !cancelling }) {
                    // Nothing of ours in flight. Other processes (workers) may still hold tasks of the run.
                    let counts = try await store.taskCounts(run: runID).values.reduce(into: TaskCounts()) { $0.add($1) }
                    if cancelling {
                        if counts.running == 0 {
                            let event = log.make("run.cancelling", "cancelled: stages that had not finished are recorded as cancelled")
                            try await store.cancelUnfinished(run: runID, now: time.now(), events: [event])
                            log.published([event])
                            return (.cancelled, [:])
                        }
                    } else {
                        let stages = try await store.stages(of: runID)
                        if stages.allSatisfy(\.status.isTerminal) {
                            try await awaitSummaries()
                            return (RunOutcome.decide(stages: stages.map(\.status), cancelled: false), summaries)
                        }
                        if mayClaim || needsPlan { continue }
                        if counts.pending == 0 && counts.running == 0 {
                            if !plannedForNoTask {
                                plannedForNoTask = true
                                needsPlan = true
                                continue
                            }
                            throw EngineError(.io, "run \(runID) cannot make progress: stages \(stages.filter { !$0.status.isTerminal }.map(\.name)) are unfinished but have no task to run",
                                              hint: "this is a bug in Sluice; `sluice resume \(runID)` plans the run again")
                        }
                    }
                    // Waiting for a retry's backoff, or for tasks other processes hold: woken when work
                    // appears (or at the retry time, or after a short poll).
                    let retryAt = cancelling ? nil : try await store.nextRetryTime(run: runID)
                    waiting = true
                    let poll = engine.configuration.othersPoll
                    let othersBusy = counts.running > 0
                    group.addTask {
                        if let retryAt, !othersBusy || retryAt.timeIntervalSince(time.now()) < poll.seconds {
                            try await time.sleep(until: retryAt)
                        } else {
                            await store.waitForWork(timeout: poll)
                        }
                        return .idleWake
                    }
                }
                guard let wake = try await group.next() else { continue }
                switch wake {
                case .taskEnded(let id, let count, let took):
                    if let ended = running.removeValue(forKey: id) {
                        if ended.local { progress?.localRunning(ended.stage, -1) }
                        taskTimes.add((took ?? ContinuousClock.now - ended.started) / max(count, 1),
                                      for: ClaimAhead.Key(pipeline: run.pipeline, stage: ended.stage))
                    }
                    unrecorded += count
                case .recorded:
                    let recorded = batcher.takeRecorded()
                    if let failure = recorded.failure {
                        throw EngineError(.io, "recording task results failed: \(failure)",
                                          hint: "the run is unfinished; `sluice resume \(runID)` continues it once the store works")
                    }
                    unrecorded -= recorded.count
                    // A retry puts a task back, a claimed task that ended frees its stage's running count
                    // (claim again); a stage that ended lets others start (planned next). Local tasks that
                    // ended give no work: no claim (a write) after each of their batches.
                    if recorded.freedWork { mayGiveWork() } else { plannedForNoTask = false }
                    if recorded.stageEnded { needsPlan = true }
                    summarize(recorded.endedStages)
                    group.addTask { await batcher.committed.wait(); return .recorded }
                case .nudged:
                    // New items: a local stage reads them; a fan-out stage of task rows has new tasks to claim.
                    if itemsMakeTasks { mayGiveWork() } else { mayGiveLocalWork() }
                    group.addTask { await nudge.wait(); return .nudged }
                case .cancelRequested:
                    cancelling = true
                    group.addTask { try await watch(engine: engine, lookForCancel: false) }
                case .leaseLost:
                    for task in running.values { task.stop.request() }
                    throw EngineError(.runBusy, "this process lost its lease on run \(runID) (another process took it over)",
                                      hint: "`sluice show \(runID)` tells who runs it now")
                case .timer:
                    mayGiveWork()
                case .claimed(let claim, let epoch):
                    claiming = false
                    ready += claim.tasks
                    // Nothing more was claimable: none until something changes (unless it already did).
                    if !claim.more && epoch == changes { mayClaim = false }
                case .localRead(let name, let tasks, let epoch, let asked):
                    guard var source = local[name] else { break }
                    source.reading = false
                    if let last = tasks.last { source.after = last.position }
                    // All there was: none until something changes (unless it already did).
                    if tasks.count < asked && epoch == changes { source.dry = true }
                    local[name] = source
                    let now = time.now()
                    ready += tasks.map { ClaimedTask(task: $0.task, attempt: 1, attemptInBudget: 1, startedAt: now, local: true) }
                case .summarized(let summary):
                    summarized(summary)
                case .idleWake:
                    waiting = false
                    mayGiveWork()
                    needsPlan = true
                    if ContinuousClock.now - lastReclaim >= engine.configuration.heartbeat {
                        lastReclaim = ContinuousClock.now
                        try await reclaimExpired(run)
                    }
                }
            }
        }
    }

    /// The fan-out stages this run process runs as local tasks (`StateStore.keepsLocalTasks`): stages
    /// whose tasks run in rows here (`runsInline`) and are the only ones taking their producer's items.
    /// Workers never start them so: their tasks are for any worker to claim.
    func localStages(of run: RunRecord) -> [StageName] {
        guard store.keepsLocalTasks else { return [] }
        let producers = Set(run.spec.stages.compactMap(\.forEach))
        return run.spec.stages.filter { stage in
            guard let producer = stage.forEach else { return false }
            return runsInline(stage, pipeline: run.pipeline, producer: producers.contains(stage.name)) != nil
                && run.spec.stages.count(where: { $0.forEach == producer }) == 1
        }.map(\.name)
    }

    /// Where the run process is in reading a local stage's tasks (a read, not a write: nothing is
    /// recorded until each ends): after the last item read.
    struct LocalStage {
        /// No read while this many completions wait to be recorded: tasks that take microseconds would
        /// run ahead of the store, and their completions would pile up in memory.
        static let maxUnrecorded = 4096
        var after: Int64 = 0
        var reading = false
        /// The last read found all there was: none again until something changes.
        var dry = false
    }

    /// Tasks of the run whose holder's lease expired (a worker that died or lost its network) go back to
    /// the queue; their attempts are recorded as lost.
    func reclaimExpired(_ run: RunRecord) async throws {
        let event = log.make("run.reclaim", "tasks whose lease expired are taken back (their process is gone or unreachable)")
        let lost = try await store.abandonRunningAttempts(runID, heldBy: nil, maxLostAttempts: engine.configuration.maxLostAttempts,
                                                           now: time.now(), events: [event])
        guard !lost.isEmpty else { return }
        log.published([event])
        // A process of a lost attempt still running on this machine (its worker was killed or stopped)
        // is stopped, so the task never runs twice at once.
        for attempt in lost where attempt.host == owner.host {
            if let pid = attempt.pid, ProcFS.isAlive(pid, startTicks: attempt.processStartTicks) {
                await Supervisor.terminateGroup(pid, grace: run.spec.stage(attempt.stage)?.grace ?? .seconds(10))
            }
        }
        var events: [EventRecord] = []
        for attempt in lost {
            events.append(await lostEvent(attempt, in: run, "the lease of the process running it (on \(attempt.host ?? "an unknown host")) expired before it recorded a result"))
        }
        try await emit(events)
    }

    /// `task.lost` for a lost attempt; of a fan-out stage, it names the item (as failures do).
    func lostEvent(_ attempt: AttemptRecord, in run: RunRecord, _ why: String) async -> EventRecord {
        let key = run.spec.stage(attempt.stage)?.forEach == nil ? nil : try? await store.task(attempt.taskID)?.key
        return log.make("task.lost", stage: attempt.stage, task: attempt.taskID, attempt: attempt.number,
                        "attempt \(attempt.number)\(key.map { " of item \($0)" } ?? "") was lost: \(why)",
                        attrs: key.map { ["item": $0] } ?? [:])
    }

    /// The spec with `{{...}}` in file conditions replaced by this run's values, so decisions and
    /// their reasons name the real paths.
    static func renderConditions(of run: RunRecord) -> PipelineSpec {
        var spec = run.spec
        for i in spec.stages.indices {
            let values = CommandTask.templateValues(run: run, stage: spec.stages[i].name)
            spec.stages[i].when.files = spec.stages[i].when.files.map { Template.render($0, values: values) }
            spec.stages[i].when.noFiles = spec.stages[i].when.noFiles.map { Template.render($0, values: values) }
        }
        return spec
    }

    /// Plans until nothing changes: skips and failures cascade down the graph in one go. Returns whether
    /// a stage started, the stages as they are after planning (read once, not again) and, with `claim`,
    /// what the transaction that started stages also claimed (nil when nothing started).
    func planned(_ planner: Planner, run: RunRecord, claim: ClaimRequest? = nil, local: Set<StageName> = [])
        async throws -> (started: Bool, stages: [StageRecord], claimed: Claim?) {
        var started = false
        var claimed: Claim?
        while true {
            let stages = try await store.stages(of: runID)
            let statuses = Dictionary(stages.map { ($0.name, $0.status) }, uniquingKeysWith: { a, _ in a })
            let changed = try await changedStages(run.spec)
            let decisions = planner.decide(statuses: statuses, changed: changed) { pattern in
                FileProbe.matches(pattern, root: run.spec.root)
            }
            var transitions: [StageTransition] = []
            var events: [EventRecord] = []
            for (name, decision) in decisions {
                switch decision {
                case .wait: continue
                case .run:
                    started = true
                    // A fan-out stage's tasks come from its producer's items (for a local stage, as this process reads them).
                    transitions.append(local.contains(name) ? .startLocal(name, owner: owner)
                                       : .start(name, taskKeys: run.spec.stage(name)?.forEach == nil ? ["main"] : []))
                    events.append(log.make("stage.start", stage: name, "stage started"))
                case .skip(let reason):
                    transitions.append(.finish(name, .skipped, reason: reason))
                    events.append(log.make("stage.skipped", stage: name, "skipped: \(reason)", attrs: ["reason": reason]))
                case .upstreamFailed(let reason):
                    transitions.append(.finish(name, .upstreamFailed, reason: reason))
                    events.append(log.make("stage.upstream_failed", stage: name, "not run: \(reason)", attrs: ["reason": reason]))
                }
            }
            if transitions.isEmpty { return (started, stages, claimed) }
            let starts = transitions.contains { if case .start = $0 { true } else { false } }
            if let claim, starts, claimed == nil {
                claimed = try await store.applyStageTransitions(run: runID, transitions, now: time.now(), events: events, thenClaim: claim)
            } else {
                try await store.applyStageTransitions(run: runID, transitions, now: time.now(), events: events)
                // Stages started after the claim have tasks it did not see.
                if starts, claimed != nil { claimed?.more = true }
            }
            log.published(events)
            // Starting a stage decides nothing else until it ends, unless other stages take its items
            // (a for_each stage starts once its producer runs): then no second read of every stage.
            let mayDecideMore = decisions.contains { name, decision in
                switch decision {
                case .wait: false
                case .run: run.spec.stages.contains { $0.forEach == name }
                case .skip, .upstreamFailed: true
                }
            }
            if !mayDecideMore {
                let startedNow = Set(transitions.compactMap { transition -> StageName? in
                    switch transition {
                    case .start(let name, _), .startLocal(let name, _): name
                    case .finish: nil
                    }
                })
                return (started, stages.map { stage in
                    var stage = stage
                    if startedNow.contains(stage.name) && stage.status == .pending { stage.status = .running }
                    return stage
                }, claimed)
            }
        }
    }

    /// Heartbeat: renews leases and looks for a cancel request.
    private func watch(engine: Engine, lookForCancel: Bool) async throws -> Wake {
        var lastRenew = ContinuousClock.now
        while true {
            try await Task.sleep(for: engine.configuration.cancelPoll)
            if lookForCancel, try await store.cancelRequested(runID) { return .cancelRequested }
            if ContinuousClock.now - lastRenew >= engine.configuration.heartbeat {
                lastRenew = ContinuousClock.now
                if try await !store.renewLeases(run: runID, owner: owner, until: leaseExpiry()) { return .leaseLost }
            }
        }
    }

    /// How an attempt ended, ready to be recorded.
    struct FinishedAttempt: Sendable {
        var attempt: AttemptRecord
        var event: String
        var attrs: [String: String]
        var result: Data?
    }

    /// Runs one task's attempt and records how it ended, with the retry decision of the core. A producer's
    /// items are recorded while it runs (every 100 ms), and all of them before its attempt is recorded.
    /// `released` tells, once the attempt ended, whether its stop gave the task back (a draining worker)
    /// rather than cancelled it.
    func perform(_ claimed: ClaimedTask, stage: StageSpec, run: RunRecord, stop: StopSignal,
                 producer: Bool, nudge: Nudge, batcher: CompletionBatcher,
                 released: @escaping @Sendable () -> Bool = { false }) async throws {
        let sink = OutputSink(producer: producer)
        // Items leave the sink only once the store recorded them, so an interrupted write loses none. A
        // store that keeps local tasks (SQLite: one writer, in this process) records them a batch at a
        // time: a discovery that found thousands at once has its first ones processed after one batch's
        // write, not after all of them, and the writer takes the tasks' completions between two batches.
        // Over a network (PostgreSQL) each write is round trips: all that wait go in one.
        let limit = store.keepsLocalTasks ? OutputSink.batch : .max
        let flush: @Sendable () async throws -> Void = {
            while true {
                let items = sink.pendingItems(limit: limit)
                guard !items.isEmpty else { return }
                let fresh = try await store.emitItems(run: runID, stage: stage.name, items: items, now: time.now())
                sink.recorded(items.count)
                if fresh > 0 { nudge.nudge() }
            }
        }
        var finished: FinishedAttempt = try await withThrowingTaskGroup(of: FinishedAttempt?.self) { group in
            group.addTask {
                switch stage.command {
                case .argv, .shell:
                    return try await runCommand(CommandTask(run: run, stage: stage, claimed: claimed, files: files), stop: stop, sink: sink,
                                                batcher: batcher)
                case .swift:
                    return try await runSwift(claimed, stage: stage, run: run, stop: stop, sink: sink, batcher: batcher)
                }
            }
            if producer {
                group.addTask {
                    // Every 100 ms, or as soon as a batch of items waits: a fast discovery's first items
                    // are processed while it goes on, not a tenth of a second later.
                    while !Task.isCancelled {
                        await sink.waitForBatch(OutputSink.batch, timeout: .milliseconds(100))
                        if Task.isCancelled { return nil }
                        try? await flush()
                    }
                    return nil
                }
            }
            var result: FinishedAttempt?
            while let next = try await group.next() {
                if let next { result = next; group.cancelAll() }
            }
            return result!
        }
        try await flush()
        if let problem = sink.problem { finished.failIfSucceeded(problem) }
        if finished.attempt.outcome == .success, !stage.outputs.isEmpty,
           let problem = try await publishOutputs(of: stage, run: run, claimed: claimed) {
            finished.failIfSucceeded(problem, prefix: "outputs: ")
        }
        finished.attempt.counters = sink.counters.attributes
        if producer { finished.attrs["items"] = String(sink.itemCount) }
        record(finished, claimed: claimed, stage: stage, batcher: batcher, released: released(), root: run.spec.root)
    }

    private func runCommand(_ command: CommandTask, stop: StopSignal, sink: OutputSink, batcher: CompletionBatcher) async throws -> FinishedAttempt {
        let claimed = command.claimed
        let stage = command.stage
        let task = claimed.task
        let report: ProcessReport
        var startTicks: Int64?
        let startedAt = time.now()
        switch Result(catching: { () throws(EngineError) -> CommandInvocation in try command.invocation() }) {
        case .failure(let error):
            report = ProcessReport(ending: .spawnFailed(error.description), exitCode: nil, signal: nil, wallMs: 0,
                                   cpuMs: nil, peakRSSBytes: nil, stdoutBytes: 0, stderrBytes: 0,
                                   stderrTail: [error.description], pid: nil)
        case .success(var invocation):
            if stage.forEach == nil {
                // Fan-out tasks are many: their starts are in the attempt records and the progress events.
                batcher.started(log.make("task.start", stage: stage.name, task: task.id, attempt: claimed.attempt,
                                         "attempt \(claimed.attempt): \(Self.display(invocation.arguments))",
                                         attrs: ["argv": Self.display(invocation.arguments), "workdir": invocation.workingDirectory]))
            }
            // A producer's stdout lines are items, scheduled as they come: read while it runs.
            invocation.liveOutput = sink.producer
            let itemsFile = sink.producer ? files.itemsFile(stage: stage.name, task: command.fileKey, attempt: claimed.attempt) : nil
            if let itemsFile {
                try? FileManager.default.createDirectory(atPath: (itemsFile as NSString).deletingLastPathComponent,
                                                         withIntermediateDirectories: true)
                invocation.environment["SLUICE_ITEMS"] = itemsFile
            }
            let ticks = StartTicks()
            report = await engine.supervisor.run(invocation, stop: stop, onStdoutLine: { line in sink.line(line) },
                                                 onStart: { pid, startTicks in
                ticks.set(startTicks)
                batcher.started(ProcessStart(task: task.id, attempt: claimed.attempt, pid: pid, startTicks: startTicks))
            })
            startTicks = ticks.value
            if let itemsFile { sink.readItemsFile(itemsFile) }
        }
        let (attempt, outcome, _) = command.attempt(from: report, startedAt: startedAt, finishedAt: time.now(), host: owner.host,
                                                    startTicks: startTicks)
        var attrs: [String: String] = ["wall_ms": String(report.wallMs)]
        if let code = report.exitCode { attrs["exit_code"] = String(code) }
        if let sig = report.signal { attrs["signal"] = String(sig) }
        if let rss = report.peakRSSBytes { attrs["peak_rss_bytes"] = String(rss) }
        if let cpu = report.cpuMs { attrs["cpu_ms"] = String(cpu) }
        let event = outcome == .success && report.ending != .exited(0) ? "task.done_when" : Self.eventName(outcome)
        return FinishedAttempt(attempt: attempt, event: event, attrs: attrs, result: nil)
    }

    static func eventName(_ outcome: AttemptOutcome) -> String {
        switch outcome {
        case .success: "task.success"
        case .timedOut: "task.timeout"
        case .hung: "task.hang"
        case .cancelled: "task.cancel"
        case .spawnFailed: "task.spawn_failed"
        case .lost: "task.lost"
        case .failed, .running: "task.failure"
        }
    }

    /// How an in-process task's body ended.
    enum SwiftEnd: Sendable {
        case returned(Data?)
        case threw(String)
        case stopRequested
        case timedOut
    }

    /// Runs an in-process stage: cancellation (run cancelled, timeout) is Swift task cancellation.
    private func runSwift(_ claimed: ClaimedTask, stage: StageSpec, run: RunRecord, stop: StopSignal, sink: OutputSink,
                          batcher: CompletionBatcher) async throws -> FinishedAttempt {
        let task = claimed.task
        let clock = ContinuousClock.now
        var attempt = attemptRecord(claimed: claimed, stage: stage, run: run)
        guard let body = engine.inProcess.body(pipeline: run.pipeline, stage: stage.name) else {
            attempt.outcome = .spawnFailed
            attempt.finishedAt = time.now()
            attempt.message = "stage '\(stage.name)' is a Swift stage, and this process has no code registered for it"
            return FinishedAttempt(attempt: attempt, event: "task.spawn_failed", attrs: [:], result: nil)
        }
        if stage.forEach == nil {
            batcher.started(log.make("task.start", stage: stage.name, task: task.id, attempt: claimed.attempt,
                                     "attempt \(claimed.attempt): in-process Swift stage"))
        }
        let context = context(for: claimed, scope: StageScope(run: run, stage: stage, store: store, files: files), sink: sink)
        let timeout = stage.timeout
        let end: SwiftEnd = await withTaskGroup(of: SwiftEnd.self) { group in
            group.addTask {
                do { return .returned(try await body(context)) } catch is CancellationError {
                    return .threw("cancelled")
                } catch { return .threw("\(error)") }
            }
            group.addTask {
                await stop.wait()
                return .stopRequested
            }
            if let timeout {
                group.addTask {
                    try? await Task.sleep(for: timeout)
                    return .timedOut
                }
            }
            var first = await group.next() ?? .stopRequested
            if case .stopRequested = first, !stop.isRequested { first = await group.next() ?? first }
            group.cancelAll()
            switch first {
            case .stopRequested, .timedOut:
                // Wait for the body to notice its cancellation; its own ending does not change the verdict.
                while let next = await group.next() { if case .returned = next { break }; if case .threw = next { break } }
            default: break
            }
            return first
        }
        let result = settle(&attempt, end: end, timeout: timeout)
        let attrs = ["wall_ms": String((ContinuousClock.now - clock).milliseconds)]
        return FinishedAttempt(attempt: attempt, event: Self.eventName(attempt.outcome), attrs: attrs, result: result)
    }

    /// A task claimed ahead that this process will not start after all (it shuts down, the run was
    /// cancelled, or its lease was taken back): handed back to the queue, its retry budget untouched.
    func releaseUnstarted(_ claimed: ClaimedTask, stage: StageSpec, batcher: CompletionBatcher, why: String) {
        let attempt = AttemptRecord(taskID: claimed.task.id, runID: runID, stage: stage.name, number: claimed.attempt,
                                    outcome: .cancelled, startedAt: claimed.startedAt, finishedAt: time.now(),
                                    message: "released before it started (\(why)); the task goes back to the queue", host: owner.host)
        record(FinishedAttempt(attempt: attempt, event: "task.released", attrs: [:], result: nil),
               claimed: claimed, stage: stage, batcher: batcher, released: true)
    }

    /// Decides where the task goes (the core's retry rules) and hands the completion to the batcher.
    func record(_ finished: FinishedAttempt, claimed: ClaimedTask, stage: StageSpec, batcher: CompletionBatcher,
                        released: Bool = false, root: String? = nil) {
        var finished = finished
        if released && finished.attempt.outcome == .cancelled && finished.event != "task.released" {
            finished.attempt.message = "released: the worker shut down before it finished; the task goes back to the queue"
            finished.event = "task.released"
        }
        let attempt = finished.attempt
        let outcome = attempt.outcome
        let next: TaskNext
        var events: [EventRecord] = []
        var rolledBack: String?
        // A fan-out task's success is counted in the progress events and kept in its attempt record; an
        // event is written when it has something to say (failures, counters).
        if stage.forEach == nil || outcome != .success {
            var attrs = finished.attrs
            if stage.forEach != nil { attrs["item"] = claimed.task.key }
            events.append(log.make(finished.event, stage: stage.name, task: claimed.task.id, attempt: claimed.attempt,
                                   "attempt \(claimed.attempt)\(stage.forEach != nil ? " of item \(claimed.task.key)" : "") \(attempt.message ?? outcome.rawValue)",
                                   attrs: attrs))
        }
        switch outcome {
        case .success:
            next = .succeed
        case .cancelled:
            next = released ? .release : .cancel
        default:
            switch stage.retry.decide(afterAttempt: claimed.attemptInBudget, outcome: outcome, exitCode: attempt.exitCode,
                                      random: Double.random(in: 0..<1)) {
            case .retry(let delay):
                next = .retry(notBefore: time.now().addingTimeInterval(delay.seconds))
                events.append(log.make("task.retry", stage: stage.name, task: claimed.task.id, attempt: claimed.attempt,
                                       "will try again in \(DurationText.format(delay)) (attempt \(claimed.attemptInBudget + 1) of \(stage.retry.attempts))",
                                       attrs: ["delay_ms": String(delay.milliseconds)]))
            case .giveUp(let reason):
                next = .fail
                if stage.retry.attempts > 1 || outcome == .spawnFailed {
                    events.append(log.make("task.gave_up", stage: stage.name, task: claimed.task.id, attempt: claimed.attempt,
                                           "not retried: \(reason)"))
                }
                if stage.onFailure == .rollback, stage.forEach == nil, let root {
                    let healing = rollBack(stage, root: root, claimed: claimed)
                    events += healing.events
                    rolledBack = healing.reason
                }
            }
        }
        let log = self.log
        let stageEvent: @Sendable (StageRecord) -> EventRecord = { stageRecord in
            log.make("stage.\(stageRecord.status.rawValue)", stage: stageRecord.name,
                     "stage ended: \(stageRecord.status.rawValue)\(stageRecord.reason.map { " (\($0))" } ?? "")")
        }
        batcher.submit(AttemptCompletion(attempt: attempt, result: finished.result, next: next, events: events,
                                         stageEvent: stageEvent, rolledBack: rolledBack, newTask: claimed.local ? claimed.task : nil))
    }

    static func display(_ argv: [String]) -> String {
        argv.map { arg in
            arg.isEmpty || arg.contains(where: { " \t\"'$\\".contains($0) }) ? "'" + arg.replacingOccurrences(of: "'", with: "'\\''") + "'" : arg
        }.joined(separator: " ")
    }
}

/// The start time of a child process, set from the supervisor's start callback.
final class StartTicks: Sendable {
    private let storage = Mutex<Int64?>(nil)
    func set(_ value: Int64?) { storage.withLock { $0 = value } }
    var value: Int64? { storage.withLock { $0 } }
}
