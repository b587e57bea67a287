import Foundation
import SluiceCore

/// The durable record of runs, stages, tasks, attempts and events: the single source of truth.
///
/// Every method is one transaction. Transitions that must happen once (a run created under an
/// overlap policy, a task claimed, an attempt completed, a stage rolled up, a run finished) are
/// decided inside that transaction, and a lost race is reported as a result, not an error, so the
/// same engine runs on one SQLite file or against a PostgreSQL server shared by many machines.
public protocol StateStore: Sendable {
    // MARK: runs
    /// Records a new run with its stages (all `pending`), applying `overlap` against the runs of the same
    /// pipeline that are still active (status pending or running with an unexpired lease).
    func createRun(_ run: RunRecord, overlap: OverlapPolicy, now: Date, events: [EventRecord]) async throws -> CreateRunResult
    func run(_ id: RunID) async throws -> RunRecord?
    /// Runs whose id starts with `prefix`, newest first.
    func runs(idPrefix prefix: String, limit: Int) async throws -> [RunRecord]
    /// Newest first.
    func recentRuns(pipeline: String?, limit: Int) async throws -> [RunRecord]
    /// Runs of `pipeline` that are pending or running, whatever their lease.
    func unfinishedRuns(pipeline: String) async throws -> [RunRecord]
    /// Every pending or running run, oldest first (what workers look at for work).
    func openRuns(limit: Int) async throws -> [RunRecord]
    /// Runs matching the query, newest first (creation time, then id): the HTTP API's runs list.
    func runs(matching query: RunQuery) async throws -> [RunRecord]
    /// Counts over every run, task and attempt (for `/metrics`); durations counted into `durationBounds` (seconds).
    func statistics(durationBounds: [Double]) async throws -> StoreStatistics

    /// Takes the run's lease when it is free, expired, or still held by `replacing` (an owner the caller
    /// proved dead). A pending or terminal run becomes `running`.
    func acquireRun(_ id: RunID, owner: LeaseOwner, until: Date, replacing: LeaseOwner?, now: Date,
                    events: [EventRecord]) async throws -> LeaseResult
    /// Extends the leases `owner` holds on the run and its tasks. False when the run's lease was lost.
    func renewLeases(run: RunID, owner: LeaseOwner, until: Date) async throws -> Bool
    /// Marks the run's lease as expired now when `owner` still holds it (the caller proved it dead).
    func expireLease(run: RunID, owner: LeaseOwner, now: Date) async throws
    /// Records a cancel request; the process executing the run notices it and stops.
    func requestCancel(_ id: RunID, now: Date, events: [EventRecord]) async throws -> CancelRequestResult
    func cancelRequested(_ id: RunID) async throws -> Bool
    /// Sets the outcome and releases the lease, once: applied only while the run is unfinished and its
    /// lease is held by `owner`, by nobody, or expired. False when another process finished it first.
    func finishRun(_ id: RunID, outcome: RunOutcome, owner: LeaseOwner, now: Date, events: [EventRecord]) async throws -> Bool

    /// Running attempts whose process is gone are recorded as `lost` and their tasks go back to pending
    /// without using their retry budget — or fail, once a task has lost `maxLostAttempts` attempts.
    /// Those are the attempts of tasks leased to `heldBy` (an owner the caller proved gone, e.g. after a
    /// takeover) and of tasks whose lease expired before `now` (a worker that died or lost its network).
    /// Stages that end because of it are rolled up in the same transaction. `events` are recorded with
    /// them — after a takeover (`heldBy` set) even when no attempt was lost. Returns the attempts (their
    /// processes may need stopping).
    func abandonRunningAttempts(_ id: RunID, heldBy: String?, maxLostAttempts: Int, now: Date,
                                events: [EventRecord]) async throws -> [AttemptRecord]

    /// For `resume`: cancelled and unfinished tasks go back to pending — failed ones too when
    /// `retryFailed` — with a fresh retry budget; their stages go back to running (or pending when they
    /// never started); a cancel request is cleared. Succeeded tasks and stages are kept.
    func prepareResume(_ id: RunID, retryFailed: Bool, now: Date, events: [EventRecord]) async throws

    // MARK: stages and tasks
    func stages(of run: RunID) async throws -> [StageRecord]
    func tasks(of run: RunID) async throws -> [TaskRecord]
    func attempts(of run: RunID) async throws -> [AttemptRecord]
    /// One task by id.
    func task(_ id: TaskID) async throws -> TaskRecord?

    /// Applies planner decisions: `.start` moves a pending stage to running and creates its tasks;
    /// `.startLocal` starts a fan-out stage whose tasks `owner` runs itself (see `keepsLocalTasks`);
    /// `.finish` ends a pending stage without running it. Stages no longer pending are left alone.
    func applyStageTransitions(run: RunID, _ transitions: [StageTransition], now: Date, events: [EventRecord]) async throws
    /// `applyStageTransitions`, then `claimTasks` with `claim`, in one transaction where the store can: a
    /// run process that starts a stage takes its task in the same write (a chain of stages was a write to
    /// start each stage and another to claim its task).
    func applyStageTransitions(run: RunID, _ transitions: [StageTransition], now: Date, events: [EventRecord],
                               thenClaim claim: ClaimRequest) async throws -> Claim

    /// Claims up to `limit` pending tasks of the run whose `notBefore` has passed, oldest first, of the
    /// stages `filter` lets through, and starts one attempt for each under `owner`'s lease. A stage's
    /// `concurrency` holds across every process: its running tasks, whoever holds them, count against it.
    /// Claims nothing from a run whose cancel was requested. Claimers of one run never block each other
    /// on the same rows (PostgreSQL: `FOR UPDATE SKIP LOCKED`). Also tells whether more tasks were
    /// claimable when it got all it asked for (`Claim.more`).
    func claimTasks(run: RunID, _ request: ClaimRequest, now: Date) async throws -> Claim
    /// Extends the lease of every task `owner` holds (in any run), and the worker-pool lease of their runs.
    /// Returns the tasks it still holds (a task missing was taken back after its lease expired).
    @discardableResult
    func renewTaskLeases(owner: LeaseOwner, until: Date) async throws -> Set<TaskID>
    /// Ends attempts and moves their tasks on, in one transaction (a batch of completions is one commit).
    /// A stage whose last unfinished task ends here is rolled up in the same transaction, its
    /// `stageEvent` recorded with it. A completion whose task `owner` no longer holds is `.leaseLost`
    /// and changes nothing. `processes` records, first and in the same transaction, the processes that
    /// attempts started, so they can be found again after a crash (see `recordProcess`); `started`, the
    /// events of attempts that started (`task.start`), before the completions' own.
    func completeAttempts(_ completions: [AttemptCompletion], processes: [ProcessStart], started: [EventRecord],
                          owner: LeaseOwner, now: Date) async throws -> [CompletionResult]

    /// Records items a producer stage emitted (deduplicated by key) and, in the same transaction, creates
    /// a task per new item for every fan-out stage that is already taking that producer's items (for a
    /// local stage: reserves the id of the task it will record, see `keepsLocalTasks`).
    /// Returns how many items were new.
    func emitItems(run: RunID, stage: StageName, items: [ItemRecord], now: Date) async throws -> Int

    /// Whether this store keeps *local tasks*: a fan-out stage started with `.startLocal` has no task
    /// rows for its items until their first attempt ends; the process that started it reads them with
    /// `localTasks`, runs them, and the completion (`AttemptCompletion.newTask`) writes the task and its
    /// attempt at once, instead of a pending task, a claim and two updates: a success at the first
    /// attempt into its item's row (SQLite: `items.done_*`), anything else as a task and an attempt row.
    /// Until then an item counts as a pending task of the stage. When the stage's process no longer holds the
    /// run (it died, or another took the run over: `abandonRunningAttempts`), the run is cancelled
    /// (`cancelUnfinished`), or its producer fails, the items left become ordinary task rows.
    var keepsLocalTasks: Bool { get }
    /// Up to `limit` items of a local stage `owner` runs, after the one at `position` (0: from the first),
    /// in the order they were emitted, as the tasks to run (with their reserved ids), leaving out those
    /// recorded already. Empty when the stage is not local to `owner` (any more).
    func localTasks(run: RunID, stage: StageName, owner: LeaseOwner, after position: Int64, limit: Int) async throws -> [LocalTask]
    /// A producer's items, in the order they were emitted.
    func items(run: RunID, stage: StageName) async throws -> [ItemRecord]
    /// The earliest time a pending task waits for (retry backoff), if any does.
    func nextRetryTime(run: RunID) async throws -> Date?
    /// How many tasks of each stage are in each state.
    func taskCounts(run: RunID) async throws -> [StageName: TaskCounts]

    /// The recorded results of a stage's successful tasks, by task key.
    func results(run: RunID, stage: StageName) async throws -> [String: Data]
    /// A page of those results in task order, after task `afterTaskID` (0 for the first page): a join
    /// over a million items reads them a page at a time instead of all at once.
    func resultPage(run: RunID, stage: StageName, afterTaskID: TaskID, limit: Int) async throws -> [TaskResult]

    /// Per-stage aggregates of tasks and attempts, computed in the store (a fan-out stage may have a
    /// million tasks: nothing is loaded per task).
    func stageSummaries(run: RunID) async throws -> [StageName: StageSummary]
    /// The same for these stages only: an ended fan-out stage's summary is read while the stages after
    /// it run, and the report then reads the others'.
    func stageSummaries(run: RunID, of stages: Set<StageName>) async throws -> [StageName: StageSummary]
    /// Every task of the stages in `all`, and the tasks that did not succeed of those in `unsuccessful`,
    /// in id order, in one read: what a run's report lists (a read per stage made the report of a long
    /// chain of stages a hundred reads).
    func tasks(of run: RunID, all: [StageName], unsuccessful: [StageName]) async throws -> [TaskRecord]
    /// The attempts of these tasks.
    func attempts(ofTasks ids: [TaskID]) async throws -> [AttemptRecord]

    /// After a cancel: pending tasks become cancelled, pending and running stages cancelled.
    func cancelUnfinished(run: RunID, now: Date, events: [EventRecord]) async throws

    // MARK: API tokens
    /// Records a token (only its SHA-256 is stored). False when a token of that name exists.
    func createToken(_ token: APIToken) async throws -> Bool
    /// The token whose secret hashes to `hash`, if it exists and is not revoked.
    func token(hash: String) async throws -> APIToken?
    /// Every token, by name (revoked ones too).
    func tokens() async throws -> [APIToken]
    /// Revokes the token named `name`. False when there is none (or it was revoked already).
    func revokeToken(name: String, now: Date) async throws -> Bool

    // MARK: named leases (leader election)
    /// Takes the lease `name` for `holder` until `until` when nobody holds it, its holder's time ran
    /// out (`now` is past it), or `holder` holds it already (a renewal); returns whether `holder` holds
    /// it now. One decision in one transaction, so among processes on any number of machines at most
    /// one holds a lease at a time. `sluice serve` replicas elect the one that fires schedules this way.
    func acquireLease(_ name: String, holder: String, until: Date, now: Date) async throws -> Bool
    /// Gives the lease up when `holder` holds it, so another process may take it at once.
    func releaseLease(_ name: String, holder: String) async throws

    // MARK: artifacts
    /// Indexes a published artifact version, with `events` (e.g. `artifact.published`) in the same
    /// transaction. A version already recorded (same pipeline, name and version) is left as it is.
    func recordArtifactVersion(_ version: ArtifactVersionRecord, events: [EventRecord]) async throws
    /// Recorded versions, newest first, filtered by any of pipeline, artifact name and run.
    func artifactVersions(pipeline: String?, name: String?, run: RunID?) async throws -> [ArtifactVersionRecord]

    // MARK: coordination sessions and the notification outbox
    // A run whose spec names a session joins it in `createRun`'s transaction (opening it when no session
    // fits); `finishRun` records the member's end in its transaction and, when it was the last member,
    // completes the session; `expireSessions` times out sessions whose deadline passed. Each move writes
    // the notifications it causes into the outbox in the same transaction, so each fires exactly once
    // across any number of processes. `finishRun` also writes the pipeline's own `notify:` reports.

    /// Sessions matching the query, newest first, with their members.
    func sessions(matching query: SessionQuery) async throws -> [SessionRecord]
    /// The session `run` is a member of.
    func session(ofRun run: RunID) async throws -> SessionRecord?
    /// Open sessions whose deadline is not after `now` become `timed_out` (each once), their `on_timeout`
    /// notifications written with them. Returns the sessions timed out by this call.
    func expireSessions(now: Date) async throws -> [SessionRecord]
    /// The earliest deadline of an open session, if any.
    func nextSessionDeadline() async throws -> Date?

    /// Takes up to `limit` pending notifications that are due, for `owner` until `leaseUntil`, counting an
    /// attempt on each. Two deliverers never hold the same notification (PostgreSQL: `SKIP LOCKED`); one
    /// whose deliverer died is taken again after its lease.
    func claimNotifications(owner: String, limit: Int, now: Date, leaseUntil: Date) async throws -> [NotificationRecord]
    /// Records how a delivery ended, when `owner` still holds the notification. False otherwise.
    @discardableResult
    func finishDelivery(_ id: Int64, owner: String, outcome: DeliveryOutcome, now: Date) async throws -> Bool
    /// Notifications matching the query, newest first.
    func notifications(matching query: NotificationQuery) async throws -> [NotificationRecord]
    /// A failed notification goes back to pending with a fresh count of attempts. False when it is not failed.
    func retryNotification(_ id: Int64, now: Date) async throws -> Bool
    /// When the next pending notification is due, if any is pending.
    func nextNotificationTime() async throws -> Date?

    // MARK: events
    /// Returns when work may have appeared (tasks created, retried or released, stages or runs ended,
    /// runs created or cancelled), or after `timeout`. PostgreSQL wakes on LISTEN/NOTIFY; a store
    /// that cannot be notified just waits the timeout, so callers must look for work either way.
    func waitForWork(timeout: Duration) async

    func appendEvents(_ events: [EventRecord]) async throws
    /// Events of the run with id greater than `afterID`, oldest first.
    func events(run: RunID, afterID: Int64, limit: Int) async throws -> [EventRecord]
}

public enum CreateRunResult: Sendable {
    case created(RunRecord)
    /// The overlap policy is `skip` (or `queue`) and these runs are active.
    case overlapping([RunRecord])
    /// A run with the same idempotency key exists.
    case duplicate(RunRecord)
}

public enum LeaseResult: Sendable {
    case acquired(RunRecord)
    case heldBy(LeaseOwner, until: Date)
    case notFound
}

public enum CancelRequestResult: Sendable {
    case requested(RunRecord)
    case alreadyFinished(RunRecord)
    case notFound
}

public enum StageTransition: Sendable, Hashable {
    case start(StageName, taskKeys: [String])
    /// Starts a fan-out stage whose first attempts `owner` runs itself, recording each task when it
    /// ends (a store that does not keep local tasks starts it as `.start`).
    case startLocal(StageName, owner: LeaseOwner)
    case finish(StageName, StageStatus, reason: String)
}

extension StageTransition {
    /// `.startLocal` as `.start`, for a store that does not keep local tasks.
    public var withoutLocal: StageTransition {
        if case .startLocal(let stage, _) = self { return .start(stage, taskKeys: []) }
        return self
    }
}

/// Which of a run's stages a claimer takes tasks from.
public struct ClaimFilter: Sendable, Hashable {
    /// Stages of these queues only; every queue when nil.
    public var queues: Set<String>?
    /// Stages this process cannot execute (Swift stages it has no code for).
    public var excludedStages: Set<StageName>

    public init(queues: Set<String>? = nil, excludedStages: Set<StageName> = []) {
        self.queues = queues
        self.excludedStages = excludedStages
    }

    public static let everything = ClaimFilter()
}

/// What a claim took, and whether more tasks were claimable when it got all it asked for: a run loop
/// that got the only task of a stage then knows not to claim again until something changes (in a chain
/// of stages, every second claim found nothing). A store that cannot tell says `true` then.
public struct Claim: Sendable {
    public var tasks: [ClaimedTask]
    public var more: Bool

    public init(tasks: [ClaimedTask], more: Bool) {
        self.tasks = tasks
        self.more = more
    }

    public static let none = Claim(tasks: [], more: false)
}

/// What a claim asks for (see `claimTasks`).
public struct ClaimRequest: Sendable, Hashable {
    public var owner: LeaseOwner
    public var limit: Int
    public var filter: ClaimFilter
    public var leaseUntil: Date

    public init(owner: LeaseOwner, limit: Int, filter: ClaimFilter = .everything, leaseUntil: Date) {
        self.owner = owner
        self.limit = limit
        self.filter = filter
        self.leaseUntil = leaseUntil
    }
}

public struct ClaimedTask: Sendable, Hashable {
    public var task: TaskRecord
    /// The attempt number just started (1-based, counting every attempt ever made).
    public var attempt: Int
    /// Attempts started since the retry budget was last reset (by resume).
    public var attemptInBudget: Int
    public var startedAt: Date
    /// A local task: its row is written when this attempt ends (see `StateStore.keepsLocalTasks`).
    public var local: Bool

    public init(task: TaskRecord, attempt: Int, attemptInBudget: Int, startedAt: Date, local: Bool = false) {
        self.task = task
        self.attempt = attempt
        self.attemptInBudget = attemptInBudget
        self.startedAt = startedAt
        self.local = local
    }
}

/// An item of a local stage, as the task that will process it (`StateStore.localTasks`).
public struct LocalTask: Sendable, Hashable {
    /// Where the item is among its producer's items, for the store: where the next read goes on from.
    public var position: Int64
    public var task: TaskRecord

    public init(position: Int64, task: TaskRecord) {
        self.position = position
        self.task = task
    }
}

/// Where a task goes after an attempt.
public enum TaskNext: Sendable, Hashable {
    case succeed
    case retry(notBefore: Date)
    case fail
    case cancel
    /// Back to pending at once without using the retry budget: the process gave the task back
    /// (a worker draining on SIGTERM).
    case release
}

/// What the report says of a stage's tasks as a whole.
public struct StageSummary: Sendable, Hashable {
    public var counts = TaskCounts()
    public var attempts = 0
    /// Mean and 95th percentile of each task's last attempt's wall time.
    public var meanTaskMs: Double?
    public var p95TaskMs: Int64?
    public var peakRSSBytes: Int64?
    public var bytesWritten: Int64 = 0
    public var cpuMs: Int64 = 0
    /// Business counters of successful attempts, summed.
    public var counters: [String: Int] = [:]
    public var rejected = 0
    /// The first failed records with their reasons (at most 100).
    public var rejectedRecords: [String] = []

    public init() {}

    /// Adds the business counters and failed records one successful attempt reported (its `counters`,
    /// as stored: `count.NAME`, `rejected`, `rejected.N`).
    public mutating func add(attemptCounters counters: [String: String]) {
        for (k, v) in counters where k.hasPrefix("count.") {
            self.counters[String(k.dropFirst("count.".count)), default: 0] += Int(v) ?? 0
        }
        guard let n = counters["rejected"].flatMap({ Int($0) }) else { return }
        rejected += n
        if rejectedRecords.count < 100 {
            rejectedRecords += counters.filter { $0.key.hasPrefix("rejected.") }
                .sorted { (Int($0.key.dropFirst(9)) ?? 0) < (Int($1.key.dropFirst(9)) ?? 0) }.map(\.value)
            rejectedRecords = Array(rejectedRecords.prefix(100))
        }
    }
}

/// The process an attempt started: with its start time, it names that process for good (pids are reused).
public struct ProcessStart: Sendable, Hashable {
    public var task: TaskID
    public var attempt: Int
    public var pid: Int32
    public var startTicks: Int64?

    public init(task: TaskID, attempt: Int, pid: Int32, startTicks: Int64?) {
        self.task = task
        self.attempt = attempt
        self.pid = pid
        self.startTicks = startTicks
    }
}

/// How one attempt ended and where its task goes next.
///
/// A class, not a struct: a completion is handed from the task that ran it to the batcher and the
/// store, and read there field by field, thousands a second; a copy of a struct of a dozen references
/// retained and released each of them every time.
public final class AttemptCompletion: Sendable {
    public let attempt: AttemptRecord
    /// The task's encoded result (recorded when `next` is `.succeed`).
    public let result: Data?
    public let next: TaskNext
    public let events: [EventRecord]
    public let stageEvent: @Sendable (StageRecord) -> EventRecord
    /// Healing (`on_failure: rollback`): when set and the stage rolls up `failed` in this transaction, it
    /// ends `rolled_back` with this reason instead (its outputs were restored to their last good versions).
    public let rolledBack: String?
    /// A local task's record, written with its first attempt (nothing was written when it started). The
    /// completion is `.leaseLost` when its stage is no longer local to the owner, or the task was
    /// recorded meanwhile (the run was cancelled, or taken over).
    public let newTask: TaskRecord?

    public init(attempt: AttemptRecord, result: Data?, next: TaskNext, events: [EventRecord],
                stageEvent: @escaping @Sendable (StageRecord) -> EventRecord, rolledBack: String? = nil,
                newTask: TaskRecord? = nil) {
        self.rolledBack = rolledBack
        self.newTask = newTask
        self.attempt = attempt
        self.result = result
        self.next = next
        self.events = events
        self.stageEvent = stageEvent
    }
}

extension StateStore {
    public func applyStageTransitions(run: RunID, _ transitions: [StageTransition], now: Date, events: [EventRecord],
                                      thenClaim claim: ClaimRequest) async throws -> Claim {
        try await applyStageTransitions(run: run, transitions, now: now, events: events)
        return try await claimTasks(run: run, claim, now: now)
    }

    /// The tasks `claimTasks(run:_:now:)` claims.
    public func claimTasks(run: RunID, owner: LeaseOwner, limit: Int, filter: ClaimFilter, now: Date,
                           leaseUntil: Date) async throws -> [ClaimedTask] {
        try await claimTasks(run: run, ClaimRequest(owner: owner, limit: limit, filter: filter, leaseUntil: leaseUntil), now: now).tasks
    }

    public func waitForWork(timeout: Duration) async {
        try? await Task.sleep(for: timeout)
    }

    public var keepsLocalTasks: Bool { false }

    public func localTasks(run: RunID, stage: StageName, owner: LeaseOwner, after position: Int64, limit: Int) async throws -> [LocalTask] { [] }

    /// Records the process that an attempt started, so it can be found again after a crash.
    public func recordProcess(task: TaskID, attempt: Int, pid: Int32, startTicks: Int64?) async throws {
        _ = try await completeAttempts([], processes: [ProcessStart(task: task, attempt: attempt, pid: pid, startTicks: startTicks)], started: [],
                                       owner: .workerPool, now: Date())
    }

    /// Ends attempts (see `completeAttempts(_:processes:started:owner:now:)`).
    public func completeAttempts(_ completions: [AttemptCompletion], owner: LeaseOwner, now: Date) async throws -> [CompletionResult] {
        try await completeAttempts(completions, processes: [], started: [], owner: owner, now: now)
    }

    /// One completion (see `completeAttempts`).
    public func completeAttempt(_ attempt: AttemptRecord, result: Data?, next: TaskNext, owner: LeaseOwner, now: Date,
                                events: [EventRecord],
                                stageEvent: @escaping @Sendable (StageRecord) -> EventRecord) async throws -> CompletionResult {
        try await completeAttempts([AttemptCompletion(attempt: attempt, result: result, next: next, events: events,
                                                      stageEvent: stageEvent)], owner: owner, now: now)[0]
    }
}

public enum CompletionResult: Sendable, Hashable {
    /// Applied; `stage` is set when the stage ended in this transaction, and `consumers` are the fan-out
    /// stages that ended with it (they take its items, and it emits no more).
    case applied(stage: StageRecord?, consumers: [StageRecord] = [])
    /// Another owner holds the task now; this result was not recorded.
    case leaseLost
}

/// A store failure, with what went wrong, where, and what to do.
public struct StoreError: HintedError, Sendable {
    public enum Code: String, Sendable {
        case cannotOpen
        case newerSchema
        case corrupt
        case io
    }

    public var code: Code
    public var message: String
    public var hint: String?

    public init(_ code: Code, _ message: String, hint: String? = nil) {
        self.code = code
        self.message = message
        self.hint = hint
    }
}
