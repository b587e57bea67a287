import Foundation
import Logging
import SluiceCore
import SluiceStore
import SluiceSupervisor
import Synchronization

/// A process that works on every open run of the store: it claims ready tasks of the queues it serves,
/// executes them, plans the next stages and finishes runs nobody else is coordinating. Any number of
/// workers, on any number of machines sharing one PostgreSQL store (or processes sharing one SQLite
/// file), cooperate on the same runs; every transition that must happen once is decided by the store.
///
/// A worker holds leases on the tasks it runs and renews them every heartbeat; if it dies or loses
/// its network, the leases expire and another process takes the tasks back (their attempts are
/// recorded as lost). On shutdown it stops claiming, lets its tasks finish within a grace period, and
/// gives back (releases) those still running, without using their retry budget.
public struct Worker: Sendable {
    public struct Options: Sendable {
        /// The queues served; every queue when nil.
        public var queues: Set<String>?
        /// Tasks at once in this worker, across runs.
        public var concurrency = 4
        /// How long running tasks may take to finish after a shutdown request before they are released.
        public var drainGrace: Duration = .seconds(30)
        /// The safety-net poll; a store that notifies (PostgreSQL) wakes the worker sooner.
        public var poll: Duration = .seconds(1)
        /// Exit once no run is open (for batch jobs and tests).
        public var exitWhenIdle = false

        public init(queues: Set<String>? = nil, concurrency: Int = 4) {
            self.queues = queues
            self.concurrency = concurrency
        }
    }

    public struct Summary: Sendable, Hashable {
        public var attempts = 0
        public var released = 0
        public var runsFinished = 0
    }

    public let engine: Engine
    public let options: Options

    public init(engine: Engine, options: Options) {
        self.engine = engine
        self.options = options
    }

    var store: any StateStore { engine.store }
    var time: any TimeSource { engine.time }
    var owner: LeaseOwner { engine.owner }

    private enum Wake: Sendable {
        /// A task ended, or a row of `count` in-process tasks run in one child task, keyed by its last task.
        case taskEnded(TaskID, count: Int = 1, took: Duration? = nil)
        case recorded
        case work
        case heartbeat
        case shutdown
        case drainTimeout
        /// The back-off after a store failure is over.
        case retry
    }

    private struct Running {
        var stop: StopSignal
        var run: RunID
        var stage: ClaimAhead.Key
        var started = ContinuousClock.now
    }

    /// A task claimed ahead, waiting for a free slot.
    private struct Ready {
        var task: ClaimedTask
        var run: RunRecord
        var executor: RunExecutor
    }

    /// What the worker knows of a run it has looked at.
    private struct Participation {
        var record: RunRecord
        var executor: RunExecutor
        var planner: Planner
        var lastReclaim: ContinuousClock.Instant?
    }

    /// Works until `shutdown` is requested (or, with `exitWhenIdle`, until no run is open), then drains.
    public func run(shutdown: StopSignal, say: @escaping @Sendable (String) -> Void = { _ in }) async throws -> Summary {
        let batcher = CompletionBatcher()
        let logs = RunLogs()
        let released = TaskIDs()
        var summary = Summary()
        var runs: [RunID: Participation] = [:]
        var running: [TaskID: Running] = [:]
        var ready: [Ready] = []
        var taskTimes = ClaimAhead()
        var unrecorded = 0
        var draining = false
        var look = true
        var claimMore = false         // completions were recorded, no stage ended: claim for free slots, skip the look
        var waiting = false
        var storeFailures = 0
        var backoffUntil = ContinuousClock.now
        let nudge = Nudge()
        say("worker \(owner.id) (pid \(owner.pid) on \(owner.host)) serves \(options.queues.map { $0.sorted().joined(separator: ", ") } ?? "every queue"), \(options.concurrency) at once")

        return try await withThrowingTaskGroup(of: Wake.self) { group in
            let store = self.store, owner = self.owner, time = self.time, logger = engine.logger
            group.addTask {
                await batcher.run(store: store, owner: owner, time: time, publish: logs.publish, logger: logger, retrying: true)
                return .recorded
            }
            group.addTask { await batcher.committed.wait(); return .recorded }
            group.addTask { await shutdown.wait(); return .shutdown }
            let heartbeat = engine.configuration.heartbeat
            group.addTask { try await Task.sleep(for: heartbeat); return .heartbeat }
            defer { group.cancelAll() }

            while true {
                if draining && running.isEmpty && unrecorded == 0 { return summary }
                if !draining && !ready.isEmpty {
                    summary.attempts += start(&ready, running: &running, batcher: batcher, released: released, nudge: nudge,
                                              group: &group, say: say)
                }
                if look && !draining && ContinuousClock.now >= backoffUntil {
                    look = false
                    do {
                        let open = try await store.openRuns(limit: 500)
                        if open.isEmpty && running.isEmpty && ready.isEmpty && unrecorded == 0 && options.exitWhenIdle {
                            say("no open runs: exiting")
                            return summary
                        }
                        for record in open {
                            var participation = runs[record.id] ?? participate(record, logs: logs)
                            participation.record = record
                            if record.cancelRequestedAt != nil {
                                unrecorded += release(&ready, of: record.id, batcher: batcher, why: "the run was cancelled")
                            }
                            let (finished, started) = try await work(on: &participation, running: &running, ready: &ready,
                                                                     taskTimes: taskTimes,
                                                                     batcher: batcher,
                                                                     released: released, nudge: nudge, group: &group, say: say)
                            summary.attempts += started
                            if finished { summary.runsFinished += 1 }
                            runs[record.id] = participation
                            if running.count >= options.concurrency { break }
                        }
                        let openIDs = Set(open.map(\.id))
                        for id in runs.keys where !openIDs.contains(id) && !running.values.contains(where: { $0.run == id })
                            && !ready.contains(where: { $0.run.id == id }) {
                            runs[id] = nil
                            logs.forget(id)
                        }
                        storeFailures = 0
                    } catch let error where !(error is CancellationError) {
                        // The store restarted or the network dropped: running tasks go on, new work waits.
                        storeFailures += 1
                        let pause = Duration.milliseconds(min(10_000, 250 << min(storeFailures, 6)))
                        backoffUntil = ContinuousClock.now + pause
                        look = true
                        say("the store failed (\(error)); looking again in \(DurationText.format(pause))")
                        group.addTask { try? await Task.sleep(for: pause); return .retry }
                    }
                }
                if claimMore && !look && !draining && ContinuousClock.now >= backoffUntil {
                    // A recorded batch that ended no stage changes nothing to plan: the runs this worker
                    // knows just get their free slots filled (a full look reads the open runs and their
                    // stages, several statements per batch). Cancels and new runs wake a full look.
                    claimMore = false
                    do {
                        for participation in runs.values.sorted(by: { $0.record.createdAt < $1.record.createdAt })
                        where participation.record.cancelRequestedAt == nil {
                            summary.attempts += try await claim(for: participation, running: &running, ready: &ready,
                                                                taskTimes: taskTimes,
                                                                batcher: batcher,
                                                                released: released, nudge: nudge, group: &group, say: say)
                        }
                    } catch let error where !(error is CancellationError) {
                        look = true
                        say("the store failed (\(error)); looking again")
                    }
                }
                if !waiting && !draining {
                    waiting = true
                    let poll = options.poll
                    group.addTask {
                        await withTaskGroup(of: Void.self) { race in
                            race.addTask { await store.waitForWork(timeout: poll) }
                            race.addTask { await nudge.wait() }
                            await race.next()
                            race.cancelAll()
                        }
                        return .work
                    }
                }
                guard let wake = try await group.next() else { continue }
                switch wake {
                case .taskEnded(let id, let count, let took):
                    if let ended = running.removeValue(forKey: id) {
                        taskTimes.add((took ?? ContinuousClock.now - ended.started) / max(count, 1), for: ended.stage)
                    }
                    unrecorded += count
                case .recorded:
                    let recorded = batcher.takeRecorded()
                    if let failure = recorded.failure {
                        throw EngineError(.io, "recording task results failed: \(failure)",
                                          hint: "the tasks' leases expire and other workers take them back; restart this worker once the store works")
                    }
                    unrecorded -= recorded.count
                    summary.released = released.count
                    if recorded.stageEnded { look = true } else { claimMore = true }
                    group.addTask { await batcher.committed.wait(); return .recorded }
                case .work:
                    waiting = false
                    look = true
                case .retry:
                    look = true
                case .heartbeat:
                    group.addTask { try await Task.sleep(for: heartbeat); return .heartbeat }
                    guard let held = try? await store.renewTaskLeases(owner: owner, until: time.now().addingTimeInterval(engine.configuration.leaseDuration.seconds)) else {
                        say("the store failed while renewing leases; trying again at the next heartbeat")
                        continue
                    }
                    // A task taken back by another process (this worker was stopped or cut off past its
                    // lease) is stopped here: its result would be refused, and it may run elsewhere now.
                    for (id, task) in running where !held.contains(id) && !task.stop.isRequested {
                        say("task \(id) of run \(task.run) was taken back by another process (its lease expired): stopping it here")
                        task.stop.request()
                    }
                    // Tasks claimed ahead that were taken back are not ours to start (nor to record).
                    ready.removeAll { !held.contains($0.task.task.id) }
                    look = true
                case .shutdown:
                    draining = true
                    unrecorded += release(&ready, of: nil, batcher: batcher, why: "the worker shuts down")
                    say("shutting down: no new tasks; \(running.count) running may finish within \(DurationText.format(options.drainGrace))")
                    let grace = options.drainGrace
                    group.addTask { try? await Task.sleep(for: grace); return .drainTimeout }
                case .drainTimeout:
                    if !running.isEmpty { say("grace period over: releasing \(running.count) task(s) back to the queue") }
                    for (id, task) in running {
                        released.insert(id)
                        task.stop.request()
                    }
                }
            }
        }
    }

    private func participate(_ record: RunRecord, logs: RunLogs) -> Participation {
        let files = RunFiles(directory: record.runDir)
        let log = logs.log(for: record, files: files, time: time)
        let executor = RunExecutor(engine: engine, runID: record.id, files: files, log: log, progress: nil)
        return Participation(record: record, executor: executor, planner: Planner(spec: RunExecutor.renderConditions(of: record)))
    }

    /// One look at a run: stop our tasks of a cancelled run, take back expired leases, plan, finish it
    /// when nobody else coordinates it, and claim what fits. Returns whether this worker finished the
    /// run, and how many tasks it started.
    private func work(on p: inout Participation, running: inout [TaskID: Running], ready: inout [Ready], taskTimes: ClaimAhead, batcher: CompletionBatcher,
                      released: TaskIDs, nudge: Nudge, group: inout ThrowingTaskGroup<Wake, any Error>,
                      say: @escaping @Sendable (String) -> Void) async throws -> (Bool, Int) {
        let run = p.record
        let executor = p.executor
        let now = time.now()
        // The run's holder, when it is alive, plans and finishes it; workers only help with its tasks.
        let holder = run.leaseOwner
        let coordinated = holder != nil && holder != .workerPool && (run.leaseExpiresAt.map { $0 > now } ?? false)
            && !Engine.isDead(holder!)
        let finisher = holder == .workerPool ? LeaseOwner.workerPool : owner
        if p.lastReclaim.map({ ContinuousClock.now - $0 >= engine.configuration.heartbeat }) ?? true {
            p.lastReclaim = ContinuousClock.now
            try await executor.reclaimExpired(run)
        }
        if run.cancelRequestedAt != nil {
            for task in running.values where task.run == run.id { task.stop.request() }
            guard !coordinated, !running.values.contains(where: { $0.run == run.id }) else { return (false, 0) }
            let counts = try await store.taskCounts(run: run.id).values.reduce(into: TaskCounts()) { $0.add($1) }
            guard counts.running == 0 else { return (false, 0) }
            let event = executor.log.make("run.cancelling", "cancelled: stages that had not finished are recorded as cancelled")
            try await store.cancelUnfinished(run: run.id, now: time.now(), events: [event])
            executor.log.published([event])
            let finished = try await executor.finish(.cancelled, as: finisher)
            if finished { say("run \(run.id) (\(run.pipeline)) cancelled") }
            return (finished, 0)
        }
        if !coordinated {
            if run.status == .pending {
                try await executor.emit([executor.log.make("run.start", "run started by workers (first: pid \(owner.pid) on \(owner.host))",
                                                           attrs: ["pid": String(owner.pid), "host": owner.host])])
            }
            let stages = try await executor.planned(p.planner, run: run).stages
            if stages.allSatisfy(\.status.isTerminal) {
                let outcome = RunOutcome.decide(stages: stages.map(\.status), cancelled: false)
                // Two workers may both get here: acting twice finds the files gone the second time.
                try await executor.applyLifecycle(run, outcome: outcome)
                let finished = try await executor.finish(outcome, as: finisher)
                if finished { say("run \(run.id) (\(run.pipeline)) ended: \(outcome.rawValue)") }
                return (finished, 0)
            }
        }
        return (false, try await claim(for: p, running: &running, ready: &ready, taskTimes: taskTimes, batcher: batcher, released: released, nudge: nudge,
                                       group: &group, say: say))
    }

    /// Claims tasks of the run (for the free slots; in-process fan-out tasks a batch ahead) and starts
    /// what fits. Returns how many it started.
    private func claim(for p: Participation, running: inout [TaskID: Running], ready: inout [Ready], taskTimes: ClaimAhead, batcher: CompletionBatcher,
                       released: TaskIDs, nudge: Nudge, group: inout ThrowingTaskGroup<Wake, any Error>,
                       say: @escaping @Sendable (String) -> Void) async throws -> Int {
        let run = p.record
        let executor = p.executor
        let registered = { (stage: StageSpec) in stage.command != .swift || engine.inProcess.body(pipeline: run.pipeline, stage: stage.name) != nil }
        let want = taskTimes.want(run.pipeline, fanOut: run.spec.stages.filter { $0.forEach != nil && $0.command == .swift && registered($0) },
                                  concurrency: options.concurrency, running: running.count, ready: ready.count)
        guard want > 0 else { return 0 }
        let cannotRun = Set(run.spec.stages.filter { !registered($0) }.map(\.name))
        let claimed = try await store.claimTasks(run: run.id, owner: owner, limit: want,
                                                 filter: ClaimFilter(queues: options.queues, excludedStages: cannotRun),
                                                 now: time.now(), leaseUntil: time.now().addingTimeInterval(engine.configuration.leaseDuration.seconds))
        ready += claimed.map { Ready(task: $0, run: run, executor: executor) }
        return start(&ready, running: &running, batcher: batcher, released: released, nudge: nudge, group: &group, say: say)
    }

    /// Starts tasks claimed ahead while slots are free. Returns how many it started. In-process fan-out
    /// tasks run in rows, as in the run process (`RunExecutor.performInline`): a row is keyed by its last
    /// task, which is still held while any of the row is left to run (for the heartbeat's taken-back check).
    private func start(_ ready: inout [Ready], running: inout [TaskID: Running], batcher: CompletionBatcher,
                       released: TaskIDs, nudge: Nudge, group: inout ThrowingTaskGroup<Wake, any Error>,
                       say: @escaping @Sendable (String) -> Void) -> Int {
        var started = 0
        var slots = options.concurrency - running.count
        while slots > 0, let next = ready.first {
            let task = next.task, run = next.run, executor = next.executor
            guard let stage = run.spec.stage(task.task.stage) else {
                ready.removeFirst()
                continue
            }
            let stop = StopSignal()
            let key = ClaimAhead.Key(pipeline: run.pipeline, stage: stage.name)
            let producer = run.spec.stages.contains { $0.forEach == stage.name }
            slots -= 1
            if let body = executor.runsInline(stage, pipeline: run.pipeline, producer: producer) {
                let adjacent = ready.prefix { $0.run.id == run.id && $0.task.task.stage == stage.name }.count
                let row = ready.prefix(RunExecutor.rowSize(adjacent: adjacent, freeSlots: slots + 1)).map(\.task)
                ready.removeFirst(row.count)
                let id = row[row.count - 1].task.id
                running[id] = Running(stop: stop, run: run.id, stage: key)
                group.addTask {
                    let took = await executor.performInline(row, stage: stage, run: run, body: body, stop: stop, batcher: batcher,
                                                            released: { released.contains(id) })
                    return .taskEnded(id, count: row.count, took: took)
                }
                started += row.count
                continue
            }
            ready.removeFirst()
            started += 1
            running[task.task.id] = Running(stop: stop, run: run.id, stage: key)
            let id = task.task.id
            let host = owner.host
            group.addTask {
                do {
                    try await executor.perform(task, stage: stage, run: run, stop: stop, producer: producer,
                                               nudge: nudge, batcher: batcher, released: { released.contains(id) })
                } catch {
                    // Not run, or not recorded (the store failed mid-way): the task goes back to the queue,
                    // its retry budget untouched; the batcher records that once the store answers.
                    say("task \(id) of run \(run.id) goes back to the queue: \(error)")
                    let attempt = AttemptRecord(taskID: id, runID: run.id, stage: stage.name, number: task.attempt, outcome: .lost,
                                                startedAt: task.startedAt, finishedAt: Date(),
                                                message: "the worker could not run or record it: \(error)", host: host)
                    let log = executor.log
                    batcher.submit(AttemptCompletion(attempt: attempt, result: nil, next: .release, events: [], stageEvent: { s in
                        log.make("stage.\(s.status.rawValue)", stage: s.name, "stage ended: \(s.status.rawValue)\(s.reason.map { " (\($0))" } ?? "")")
                    }))
                }
                return .taskEnded(id)
            }
        }
        return started
    }

    /// Hands tasks claimed ahead back to the queue (of one run, or all). Returns how many.
    private func release(_ ready: inout [Ready], of run: RunID?, batcher: CompletionBatcher, why: String) -> Int {
        var count = 0
        ready.removeAll { next in
            guard run == nil || next.run.id == run, let stage = next.run.spec.stage(next.task.task.stage) else { return false }
            next.executor.releaseUnstarted(next.task, stage: stage, batcher: batcher, why: why)
            count += 1
            return true
        }
        return count
    }
}

/// The event logs of the runs a worker works on, so a batch of completions from several runs is
/// mirrored into each run's own files.
final class RunLogs: Sendable {
    private let logs = Mutex<[RunID: EventLog]>([:])

    func log(for run: RunRecord, files: RunFiles, time: any TimeSource) -> EventLog {
        logs.withLock { logs in
            if let log = logs[run.id] { return log }
            try? FileManager.default.createDirectory(atPath: files.directory, withIntermediateDirectories: true)
            let log = EventLog(runID: run.id, pipeline: run.pipeline, files: files, time: time, observer: nil)
            logs[run.id] = log
            return log
        }
    }

    func forget(_ id: RunID) {
        _ = logs.withLock { $0.removeValue(forKey: id) }
    }

    func publish(_ events: [EventRecord]) {
        let byRun = Dictionary(grouping: events, by: \.runID)
        let logs = self.logs.withLock { $0 }
        for (id, events) in byRun { logs[id]?.published(events) }
    }
}

/// Ids of tasks, shared between a worker's loop and its tasks.
final class TaskIDs: Sendable {
    private let ids = Mutex<Set<TaskID>>([])
    func insert(_ id: TaskID) { _ = ids.withLock { $0.insert(id) } }
    func contains(_ id: TaskID) -> Bool { ids.withLock { $0.contains(id) } }
    var count: Int { ids.withLock { $0.count } }
}
