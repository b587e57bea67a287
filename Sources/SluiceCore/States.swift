/// The life of a run. A run is created `pending`, moved to `running` by the process that holds its
/// lease, and ends in one of the four outcomes of C6. Only the engine moves it, through the store.
public enum RunStatus: String, Sendable, Codable, CaseIterable {
    case pending
    case running
    case success
    case partialSuccess = "partial_success"
    case failed
    case cancelled

    public var isTerminal: Bool { self != .pending && self != .running }
}

/// The life of one stage in one run.
///
/// - `pending`: created with the run; left by the planner once every upstream stage is terminal.
/// - `running`: its task(s) are pending or running.
/// - `success` / `failed`: its task ended so.
/// - `skipped`: a `when` condition was false, or an upstream was skipped and `proceed_if` does not allow that.
/// - `upstream_failed`: an upstream outcome is not allowed by `proceed_if`; counts as a failure.
/// - `cancelled`: the run was cancelled before the stage finished.
/// - `rolled_back`: failed for good, and `on_failure: rollback` restored its versioned outputs; decided by the
///   store in the transaction that recorded the failure. Downstream `proceed_if: [rolled_back]` lets stages run.
/// - `partial_success`: a fan-out stage whose failed items stayed within `max_failed_items`; downstream
///   stages see it as a success, the run ends `partial_success`.
public enum StageStatus: String, Sendable, Codable, CaseIterable {
    case pending
    case running
    case success
    case failed
    case skipped
    case upstreamFailed = "upstream_failed"
    case cancelled
    case rolledBack = "rolled_back"
    /// A fan-out stage whose failed items stayed within `max_failed_items`.
    case partialSuccess = "partial_success"

    public var isTerminal: Bool { self != .pending && self != .running }

    /// How downstream `proceed_if` and `when.upstream` see this status.
    public var asUpstream: UpstreamOutcome? {
        switch self {
        case .pending, .running: nil
        case .success, .partialSuccess: .success
        case .failed, .upstreamFailed: .failed
        case .skipped: .skipped
        case .cancelled: .cancelled
        case .rolledBack: .rolledBack
        }
    }

    public var countsAsFailure: Bool { self == .failed || self == .upstreamFailed }
}

/// The life of one task (one unit of work of a stage).
///
/// `pending` (claimable once `not_before` has passed) → `running` (leased by one process) →
/// `success` | `failed` | `cancelled`, or back to `pending` for a retry or when its lease was lost.
public enum TaskStatus: String, Sendable, Codable, CaseIterable {
    case pending
    case running
    case success
    case failed
    case cancelled

    public var isTerminal: Bool { self == .success || self == .failed || self == .cancelled }
}

/// How one attempt at a task ended.
public enum AttemptOutcome: String, Sendable, Codable, CaseIterable {
    case running
    /// Exit code 0, or `done_when` matched.
    case success
    /// Non-zero exit code or killed by a signal it did not ask for.
    case failed
    case timedOut = "timed_out"
    case hung
    case cancelled
    /// The command could not be started (not found, not executable, bad working directory).
    case spawnFailed = "spawn_failed"
    /// The process that ran it disappeared (crash, SIGKILL, lost lease) before recording an end.
    case lost
}

/// What the core tells the engine to do after an attempt failed.
public enum RetryDecision: Sendable, Hashable {
    case retry(after: Duration)
    case giveUp(reason: String)
}

extension RetryPolicy {
    /// The delay before attempt `attempt + 1`, given that `attempt` (1-based) just failed.
    /// `random` is a number in 0..<1 (injected so tests are exact).
    public func delay(afterAttempt attempt: Int, random: Double) -> Duration {
        let initialMs = Double(initial.milliseconds)
        var ms: Double
        switch backoff {
        case .fixed: ms = initialMs
        case .exponential: ms = initialMs * pow2(attempt - 1)
        }
        ms = Swift.min(ms, Double(max.milliseconds))
        let j = Swift.min(Swift.max(jitter, 0), 1)
        ms *= 1 - j * Swift.min(Swift.max(random, 0), 1)
        return .milliseconds(Int64(ms.rounded()))
    }

    private func pow2(_ n: Int) -> Double {
        var value = 1.0
        for _ in 0..<Swift.max(0, Swift.min(n, 62)) { value *= 2 }
        return value
    }

    /// Whether attempt number `attempt` (1-based), which ended with `outcome`, is tried again.
    public func decide(afterAttempt attempt: Int, outcome: AttemptOutcome, exitCode: Int32?, random: Double) -> RetryDecision {
        switch outcome {
        case .success, .running:
            return .giveUp(reason: "attempt did not fail")
        case .cancelled:
            return .giveUp(reason: "cancelled")
        case .spawnFailed:
            return .giveUp(reason: "the command could not be started; retrying would not help")
        case .failed, .timedOut, .hung, .lost:
            break
        }
        guard attempt < attempts else {
            return .giveUp(reason: attempts == 1 ? "no retries configured" : "all \(attempts) attempts used")
        }
        if outcome == .failed, !exitCodes.isEmpty {
            guard let code = exitCode, exitCodes.contains(code) else {
                let codeText = exitCode.map { "exit code \($0)" } ?? "a signal"
                return .giveUp(reason: "\(codeText) is not in retries.exit_codes \(exitCodes.sorted())")
            }
        }
        return .retry(after: delay(afterAttempt: attempt, random: random))
    }
}

/// The outcome of a whole run (C6) and its CLI exit code. Applied in one place: here.
public enum RunOutcome: String, Sendable, Codable, CaseIterable {
    case success
    case partialSuccess = "partial_success"
    case failed
    case cancelled

    /// The rules:
    /// - `cancelled` when the run was cancelled;
    /// - `success` when no stage failed, none was rolled back and none tolerated failed items (skipped stages are fine);
    /// - `partial_success` when some stage failed, was rolled back or tolerated failed items, and at least
    ///   one stage succeeded;
    /// - `failed` when some stage failed and none succeeded.
    public static func decide(stages: [StageStatus], cancelled: Bool) -> RunOutcome {
        if cancelled { return .cancelled }
        let failures = stages.filter(\.countsAsFailure).count
        let rolledBack = stages.contains(.rolledBack) || stages.contains(.partialSuccess)
        let successes = stages.filter { $0 == .success || $0 == .partialSuccess }.count
        if failures == 0 { return rolledBack ? .partialSuccess : .success }
        return successes > 0 || rolledBack ? .partialSuccess : .failed
    }

    /// 0 success, 1 partial success, 2 failure, 130 cancelled (as a shell reports Ctrl-C).
    /// Exit code 3 is an internal error and never an outcome.
    public var exitCode: Int32 {
        switch self {
        case .success: 0
        case .partialSuccess: 1
        case .failed: 2
        case .cancelled: 130
        }
    }

    public var runStatus: RunStatus {
        switch self {
        case .success: .success
        case .partialSuccess: .partialSuccess
        case .failed: .failed
        case .cancelled: .cancelled
        }
    }

    public init?(_ status: RunStatus) {
        switch status {
        case .success: self = .success
        case .partialSuccess: self = .partialSuccess
        case .failed: self = .failed
        case .cancelled: self = .cancelled
        case .pending, .running: return nil
        }
    }
}

/// Process exit codes of the CLI.
public enum ExitStatus {
    public static let success: Int32 = 0
    public static let partial: Int32 = 1
    public static let failure: Int32 = 2
    public static let internalError: Int32 = 3
    public static let cancelled: Int32 = 130
}

/// How many of a stage's tasks are in each state.
public struct TaskCounts: Sendable, Hashable, Codable {
    public var pending = 0
    public var running = 0
    public var success = 0
    public var failed = 0
    public var cancelled = 0

    public init(pending: Int = 0, running: Int = 0, success: Int = 0, failed: Int = 0, cancelled: Int = 0) {
        self.pending = pending
        self.running = running
        self.success = success
        self.failed = failed
        self.cancelled = cancelled
    }

    public init(_ statuses: some Sequence<TaskStatus>) {
        for s in statuses { self[s] += 1 }
    }

    public subscript(_ status: TaskStatus) -> Int {
        get {
            switch status {
            case .pending: pending
            case .running: running
            case .success: success
            case .failed: failed
            case .cancelled: cancelled
            }
        }
        set {
            switch status {
            case .pending: pending = newValue
            case .running: running = newValue
            case .success: success = newValue
            case .failed: failed = newValue
            case .cancelled: cancelled = newValue
            }
        }
    }

    public var total: Int { pending + running + success + failed + cancelled }

    /// Adds another set of counts to these.
    public mutating func add(_ other: TaskCounts) {
        pending += other.pending
        running += other.running
        success += other.success
        failed += other.failed
        cancelled += other.cancelled
    }
    public var finished: Int { success + failed + cancelled }
}

/// How a stage's status follows from its tasks once all of them ended (decided by the store, in the
/// transaction that ended the last one, so it happens once).
public enum StageRollup {
    /// Where a fan-out stage's producer is.
    public enum Producer: Sendable, Hashable {
        /// Not a fan-out stage.
        case none
        /// Still emitting items.
        case running
        case succeeded
        /// Failed, was cancelled or skipped: no more items will come.
        case stopped
    }

    public static func status(of counts: TaskCounts, producer: Producer = .none,
                              tolerance: FailureTolerance = .count(0)) -> StageStatus? {
        if producer == .running { return nil }
        guard counts.pending == 0, counts.running == 0 else { return nil }
        if producer == .stopped { return .upstreamFailed }
        if counts.cancelled > 0 { return .cancelled }
        if counts.failed == 0 { return .success }
        if producer != .none, counts.success > 0 || counts.failed > 0,
           tolerance.tolerates(failed: counts.failed, of: counts.total) {
            return .partialSuccess
        }
        return .failed
    }

    /// Why a stage ended with `status`, for its record and its `stage.*` event; `nil` when its task's
    /// attempt says it (a stage of one task).
    public static func reason(_ status: StageStatus, of counts: TaskCounts, producer: Producer, producerName: String?,
                              tolerance: FailureTolerance = .count(0)) -> String? {
        switch status {
        case .upstreamFailed where producer == .stopped:
            return "for_each stage '\(producerName ?? "")' did not succeed: its items are incomplete"
        case .partialSuccess:
            return "\(counts.failed) of \(counts.total) items failed (tolerated)"
        case .failed where producer != .none:
            return "\(counts.failed) of \(counts.total) items failed: more than max_failed_items (\(tolerance)) allows"
        default:
            return nil
        }
    }

    public static func status(of tasks: [TaskStatus]) -> StageStatus? {
        status(of: TaskCounts(tasks))
    }
}
