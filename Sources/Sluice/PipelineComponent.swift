import Foundation
import SluiceCore
import SluiceEngine

/// Anything that can stand in a `Pipeline { ... }` block: a `Stage`, a `Command`.
public protocol PipelineComponent: Sendable {
    /// The stage's definition, as the engine runs it.
    var definition: StageDefinition { get set }
}

/// Something another stage can depend on.
public protocol StageReference: Sendable {
    var name: StageName { get }
}

/// A stage's specification with, for a Swift stage, its body.
public struct StageDefinition: Sendable {
    public var spec: StageSpec
    public var body: StageBody?
    /// A `Discover`: its items are for a `ForEach`, which the pipeline must have.
    public var discovers: Bool

    public init(spec: StageSpec, body: StageBody?, discovers: Bool = false) {
        self.spec = spec
        self.body = body
        self.discovers = discovers
    }
}

/// The result of a stage that returns nothing.
public struct NoResult: Codable, Sendable, Hashable {
    public init() {}
}

// MARK: - modifiers (the same options as the YAML format)

extension PipelineComponent {
    func with(_ change: (inout StageSpec) -> Void) -> Self {
        var copy = self
        change(&copy.definition.spec)
        return copy
    }

    /// Tries again after a failure: `attempts` in total, the first included.
    public func retries(_ attempts: Int, backoff: RetryPolicy.Backoff = .exponential, initial: Duration = .seconds(1),
                        max: Duration = .seconds(300), jitter: Double = 0.25, exitCodes: Set<Int32> = []) -> Self {
        with { $0.retry = RetryPolicy(attempts: attempts, backoff: backoff, initial: initial, max: max, jitter: jitter, exitCodes: exitCodes) }
    }

    /// Stops the stage after `duration` (a command: SIGTERM, grace, SIGKILL; a Swift stage: task cancellation).
    public func timeout(_ duration: Duration) -> Self { with { $0.timeout = duration } }

    /// Runs the stage only when every glob (relative to the pipeline root) matches at least one file.
    public func when(files patterns: String...) -> Self { with { $0.when.files += patterns } }

    /// Runs the stage only when no file matches any of these globs.
    public func when(noFiles patterns: String...) -> Self { with { $0.when.noFiles += patterns } }

    /// Runs the stage only when `upstream` (which must be in `needs`) ended with one of `outcomes`.
    public func when(_ upstream: some StageReference, is outcomes: UpstreamOutcome...) -> Self {
        with { $0.when.upstream[upstream.name] = Set(outcomes) }
    }

    /// Which upstream outcomes let this stage run (default: `.success`).
    public func proceed(if outcomes: UpstreamOutcome...) -> Self { with { $0.proceedIf = Set(outcomes) } }

    /// Environment variables for the stage (commands; Swift stages read `ProcessInfo`).
    public func environment(_ values: [String: String]) -> Self { with { $0.env.merge(values) { _, b in b } } }

    /// The stage's working directory, relative to the pipeline root.
    public func workdir(_ path: String) -> Self { with { $0.workdir = path } }

    public func description(_ text: String) -> Self { with { $0.description = text } }

    /// Files the stage produces (relative to the pipeline root); each must exist after it succeeded, and
    /// `versioned` ones are published as artifacts (`outputs:` in YAML).
    public func outputs(_ outputs: OutputSpec...) -> Self { with { $0.outputs += outputs } }

    /// What happens when the stage fails for good: `.rollback` restores its versioned outputs' last
    /// good versions and ends it `rolled_back` (`on_failure:` in YAML).
    public func onFailure(_ action: FailureAction) -> Self { with { $0.onFailure = action } }

    /// Runs the stage only when a versioned output of an upstream stage changed in this run (`when: changed`).
    public func whenChanged() -> Self { with { $0.when.changed = true } }

    /// The queue the stage's tasks are claimed from (`sluice worker --queues NAME`); default `default`.
    public func queue(_ name: String) -> Self { with { $0.queue = name } }
}

func specNeeds(_ needs: [any StageReference]) -> [StageName] {
    var names: [StageName] = []
    for need in needs where !names.contains(need.name) { names.append(need.name) }
    return names
}
