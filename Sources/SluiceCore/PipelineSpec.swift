import Foundation

/// The name of a stage, unique within its pipeline.
public typealias StageName = String

/// A validated pipeline: what to run, in which order, under which rules.
///
/// Built by `SluiceDefinition` from YAML (or in code); stored with each run as JSON, so a
/// resumed run executes exactly the definition it started with.
public struct PipelineSpec: Sendable, Codable, Hashable {
    public var name: String
    public var description: String?
    /// When `sluice serve` starts it on its own.
    public var schedule: Schedule?
    /// Files whose arrival starts a run under `sluice serve`.
    public var onFiles: FileTrigger?
    /// Messages in a mailbox that start a run under `sluice serve`.
    public var onMail: MailTrigger?
    public var overlap: OverlapPolicy
    /// Maximum number of tasks running at once in one run.
    public var concurrency: Int
    /// Parameter defaults, overridable per run.
    public var params: [String: String]
    public var env: [String: String]
    /// The folder everything is relative to (the pipeline file's folder), absolute.
    public var root: String
    /// The pipeline file, when there is one.
    public var sourceFile: String?
    /// Stages in file order.
    public var stages: [StageSpec]
    /// Files deleted or archived once named stages succeeded (`lifecycle:`).
    public var lifecycle: [LifecyclePolicy] {
        get { lifecycleStorage ?? [] }
        set { lifecycleStorage = newValue.isEmpty ? nil : newValue }
    }
    // Optional so runs recorded before lifecycle policies existed still decode.
    var lifecycleStorage: [LifecyclePolicy]?
    /// What its runs send when they end (`notify:`).
    public var notify: PipelineNotify {
        get { notifyStorage ?? PipelineNotify() }
        set { notifyStorage = newValue.isEmpty ? nil : newValue }
    }
    var notifyStorage: PipelineNotify?
    /// The coordination session its runs join (`session:`), resolved when the file was loaded and
    /// recorded with each run, so whichever process finishes the run decides the session.
    public var session: SessionSpec?

    enum CodingKeys: String, CodingKey {
        case name, description, schedule, onFiles, overlap, concurrency, params, env, root, sourceFile, stages
        case lifecycleStorage = "lifecycle"
        case notifyStorage = "notify"
        case session
    }

    public init(name: String, description: String? = nil, schedule: Schedule? = nil, onFiles: FileTrigger? = nil,
                onMail: MailTrigger? = nil, overlap: OverlapPolicy = .skip, concurrency: Int = 4,
                params: [String: String] = [:], env: [String: String] = [:],
                root: String, sourceFile: String? = nil, stages: [StageSpec], lifecycle: [LifecyclePolicy] = [],
                notify: PipelineNotify = PipelineNotify(), session: SessionSpec? = nil) {
        self.lifecycleStorage = lifecycle.isEmpty ? nil : lifecycle
        self.notifyStorage = notify.isEmpty ? nil : notify
        self.session = session
        self.name = name
        self.description = description
        self.schedule = schedule
        self.onFiles = onFiles
        self.onMail = onMail
        self.overlap = overlap
        self.concurrency = concurrency
        self.params = params
        self.env = env
        self.root = root
        self.sourceFile = sourceFile
        self.stages = stages
    }

    public func stage(_ name: StageName) -> StageSpec? { stages.first { $0.name == name } }
}

/// Starts a run when new files matching `glob` (relative to the pipeline root) have stopped growing
/// for `settle`. Each file starts one run, once; the run gets the paths as params `trigger_files`
/// (one per line) and `trigger_file` (the first).
public struct FileTrigger: Sendable, Hashable, Codable {
    public var glob: String
    public var settle: Duration

    public init(glob: String, settle: Duration = .seconds(10)) {
        self.glob = glob
        self.settle = settle
    }

    /// The params a file-triggered run receives: declared (empty by default) so stages may use them.
    public static let fileParam = "trigger_file"
    public static let filesParam = "trigger_files"

    public static func declareParams(in params: inout [String: String]) {
        if params[fileParam] == nil { params[fileParam] = "" }
        if params[filesParam] == nil { params[filesParam] = "" }
    }
}

/// What happens when a pipeline is started while another run of it is still active.
public enum OverlapPolicy: String, Sendable, Codable, CaseIterable {
    /// Do not start the new run.
    case skip
    /// Wait until the active run finished, then start.
    case queue
    /// Run both at once.
    case allow
}

/// How a stage's command is given.
public enum CommandSpec: Sendable, Codable, Hashable {
    /// An argv list, executed directly (no shell). Elements may hold `{{...}}` placeholders.
    case argv([String])
    /// A script run with `/bin/sh -c`, only when the user wrote `shell:`. Placeholders are not
    /// substituted into it; params reach it as `SLUICE_PARAM_<NAME>` environment variables.
    case shell(String)
    /// A Swift closure registered in-process under the stage's name (Swift API). A run of such a
    /// pipeline can be executed or resumed only by a process that registered the same pipeline.
    case swift
}

/// One stage of a pipeline.
public struct StageSpec: Sendable, Codable, Hashable {
    public var name: StageName
    public var description: String?
    public var needs: [StageName]
    public var command: CommandSpec
    public var env: [String: String]
    /// Relative to the pipeline root.
    public var workdir: String?
    public var timeout: Duration?
    public var hangAfter: Duration?
    /// A regular expression matched against each output line; a match means the stage is done.
    public var doneWhen: String?
    /// Time between SIGTERM and SIGKILL when the stage's processes are stopped.
    public var grace: Duration
    public var retry: RetryPolicy
    public var when: Conditions
    public var proceedIf: Set<UpstreamOutcome>
    /// Fan-out: one task per item that this stage emits. The stage starts as soon as the producer
    /// runs, and takes items while they arrive.
    public var forEach: StageName?
    /// At most this many tasks of this stage at once, across every process working on the run
    /// (and within each process's own concurrency).
    public var concurrency: Int?
    /// How many failed items the stage tolerates: within it, the stage ends `partial_success`.
    public var maxFailedItems: FailureTolerance
    /// The queue its tasks are claimed from: a `sluice worker --queues` serves only the queues it names.
    /// `nil` is the `default` queue.
    public var queue: String?
    /// Where each field was written, for messages at run time.
    public var location: SourceLocation?
    /// Files the stage produces (`outputs:`); versioned ones are published as artifacts.
    public var outputs: [OutputSpec] {
        get { outputsStorage ?? [] }
        set { outputsStorage = newValue.isEmpty ? nil : newValue }
    }
    /// What happens when the stage fails for good (`on_failure:`).
    public var onFailure: FailureAction {
        get { onFailureStorage ?? .fail }
        set { onFailureStorage = newValue == .fail ? nil : newValue }
    }
    // Optional so runs recorded before artifacts existed still decode.
    var outputsStorage: [OutputSpec]?
    var onFailureStorage: FailureAction?

    enum CodingKeys: String, CodingKey {
        case name, description, needs, command, env, workdir, timeout, hangAfter, doneWhen, grace, retry, when, proceedIf
        case forEach, concurrency, maxFailedItems, queue, location
        case outputsStorage = "outputs"
        case onFailureStorage = "onFailure"
    }

    /// The outputs kept as artifacts.
    public var versionedOutputs: [OutputSpec] { outputs.filter(\.versioned) }

    /// The queue its tasks are claimed from.
    public var queueName: String { queue ?? StageSpec.defaultQueue }
    public static let defaultQueue = "default"

    /// Letters, digits, '-', '_' and '.' (ASCII), not empty.
    public static func isQueueName(_ text: String) -> Bool {
        !text.isEmpty && text.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-_.".unicodeScalars.contains($0)) }
    }

    /// Every stage this one depends on: `needs` and, for a fan-out stage, its producer.
    public var dependencies: [StageName] {
        guard let forEach, !needs.contains(forEach) else { return needs }
        return needs + [forEach]
    }

    public init(name: StageName, description: String? = nil, needs: [StageName] = [],
                command: CommandSpec, env: [String: String] = [:], workdir: String? = nil,
                timeout: Duration? = nil, hangAfter: Duration? = nil, doneWhen: String? = nil,
                grace: Duration = .seconds(10), retry: RetryPolicy = .none,
                when: Conditions = Conditions(), proceedIf: Set<UpstreamOutcome> = [.success],
                forEach: StageName? = nil, concurrency: Int? = nil, maxFailedItems: FailureTolerance = .count(0),
                queue: String? = nil, location: SourceLocation? = nil,
                outputs: [OutputSpec] = [], onFailure: FailureAction = .fail) {
        self.outputsStorage = outputs.isEmpty ? nil : outputs
        self.onFailureStorage = onFailure == .fail ? nil : onFailure
        self.name = name
        self.description = description
        self.needs = needs
        self.command = command
        self.env = env
        self.workdir = workdir
        self.timeout = timeout
        self.hangAfter = hangAfter
        self.doneWhen = doneWhen
        self.grace = grace
        self.retry = retry
        self.when = when
        self.proceedIf = proceedIf
        self.forEach = forEach
        self.concurrency = concurrency
        self.maxFailedItems = maxFailedItems
        self.queue = queue
        self.location = location
    }
}

/// Conditions checked when a stage becomes ready; if one is false the stage is `skipped`.
public struct Conditions: Sendable, Codable, Hashable {
    /// Glob patterns (relative to the root) that must each match at least one file.
    public var files: [String]
    /// Glob patterns that must each match no file.
    public var noFiles: [String]
    /// Upstream stages and the outcomes they must have had.
    public var upstream: [StageName: Set<UpstreamOutcome>]
    /// `when: changed`: run only when a versioned output of an upstream stage changed in this run.
    public var changed: Bool {
        get { changedStorage ?? false }
        set { changedStorage = newValue ? true : nil }
    }
    var changedStorage: Bool?

    enum CodingKeys: String, CodingKey {
        case files, noFiles, upstream
        case changedStorage = "changed"
    }

    public init(files: [String] = [], noFiles: [String] = [], upstream: [StageName: Set<UpstreamOutcome>] = [:],
                changed: Bool = false) {
        self.changedStorage = changed ? true : nil
        self.files = files
        self.noFiles = noFiles
        self.upstream = upstream
    }
}

/// The outcome of an upstream stage as `proceed_if` and `when.upstream` name it.
public enum UpstreamOutcome: String, Sendable, Codable, CaseIterable, Comparable {
    case success
    case failed
    case skipped
    case rolledBack = "rolled_back"
    case cancelled
    /// Any terminal outcome.
    case always

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// When and how a failed task is tried again.
public struct RetryPolicy: Sendable, Codable, Hashable {
    public enum Backoff: String, Sendable, Codable, CaseIterable { case fixed, exponential }

    /// Total attempts, the first included (1 = no retry).
    public var attempts: Int
    public var backoff: Backoff
    public var initial: Duration
    public var max: Duration
    /// Fraction of each delay that is randomised away (0 = exact delays, 0.25 = up to 25% shorter).
    public var jitter: Double
    /// Exit codes that are retried; empty means every non-zero exit code. Timeouts and hangs are
    /// always retried while attempts remain.
    public var exitCodes: Set<Int32>

    public init(attempts: Int = 1, backoff: Backoff = .exponential, initial: Duration = .seconds(1),
                max: Duration = .seconds(300), jitter: Double = 0.25, exitCodes: Set<Int32> = []) {
        self.attempts = attempts
        self.backoff = backoff
        self.initial = initial
        self.max = max
        self.jitter = jitter
        self.exitCodes = exitCodes
    }

    public static let none = RetryPolicy()
}

/// How many failed items a fan-out stage tolerates.
public enum FailureTolerance: Sendable, Codable, Hashable, CustomStringConvertible {
    case count(Int)
    case percent(Double)

    public func tolerates(failed: Int, of total: Int) -> Bool {
        switch self {
        case .count(let n): return failed <= n
        case .percent(let p): return total > 0 && Double(failed) * 100 <= p * Double(total)
        }
    }

    public var description: String {
        switch self {
        case .count(let n): "\(n)"
        case .percent(let p): "\(p.formatted())%"
        }
    }

    /// `10` or `2.5%` (whether it is in range is `problem`'s answer).
    public init?(_ text: String) {
        let t = text.trimmingCharacters(in: .whitespaces)
        if t.hasSuffix("%") {
            guard let p = Double(t.dropLast().trimmingCharacters(in: .whitespaces)) else { return nil }
            self = .percent(p)
        } else {
            guard let n = Int(t) else { return nil }
            self = .count(n)
        }
    }

    /// What is out of range (`is 150%: a percentage must be between 0% and 100%`), or nil: the rule
    /// YAML files and Swift pipelines are both checked against.
    public var problem: String? {
        switch self {
        case .count(let n) where n < 0: "is \(n): a count must be at least 0"
        case .percent(let p) where !(p >= 0 && p <= 100): "is \(description): a percentage must be between 0% and 100%"
        default: nil
        }
    }

    /// What to write instead, for a message about `problem`.
    public static let hint = "write a count such as 10, or a percentage from 0% to 100% (100% never fails the stage for its items)"
}
