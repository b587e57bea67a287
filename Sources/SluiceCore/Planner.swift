/// What the planner decides for a stage, given the recorded state of its upstream stages.
public enum StageDecision: Sendable, Hashable {
    /// Some upstream stage is not terminal yet.
    case wait
    /// Every upstream outcome is allowed and every condition holds: start it.
    case run
    /// A condition is false (or an upstream was skipped and that is not allowed).
    case skip(reason: String)
    /// An upstream outcome is not allowed by `proceed_if`.
    case upstreamFailed(reason: String)
}

/// Decides which stages can start. Pure: file conditions are answered by the caller's `fileProbe`.
public struct Planner: Sendable {
    public let spec: PipelineSpec

    public init(spec: PipelineSpec) { self.spec = spec }

    /// Decisions for every `pending` stage in `statuses`.
    /// `changed` answers `when: changed`: the stages that published a new version of an artifact in this run.
    public func decide(statuses: [StageName: StageStatus], changed: Set<StageName> = [],
                       fileProbe: (_ pattern: String) -> Bool) -> [(StageName, StageDecision)] {
        var decisions: [(StageName, StageDecision)] = []
        for stage in spec.stages where statuses[stage.name] == .pending {
            decisions.append((stage.name, decide(stage, statuses: statuses, changed: changed, fileProbe: fileProbe)))
        }
        return decisions
    }

    public func decide(_ stage: StageSpec, statuses: [StageName: StageStatus], changed: Set<StageName> = [],
                       fileProbe: (_ pattern: String) -> Bool) -> StageDecision {
        var upstream: [(StageName, UpstreamOutcome)] = []
        if let producer = stage.forEach {
            // A fan-out stage starts once its producer runs, and takes its items while they arrive.
            switch statuses[producer] {
            case nil, .pending?: return .wait
            case .running?, .success?, .partialSuccess?: break
            case .skipped?: return .skip(reason: "for_each stage '\(producer)' was skipped: there are no items")
            case let other?:
                return .upstreamFailed(reason: "for_each stage '\(producer)' ended \(other.rawValue): its items are incomplete")
            }
        }
        for need in stage.needs {
            guard let outcome = statuses[need]?.asUpstream else { return .wait }
            upstream.append((need, outcome))
        }
        let allowed = stage.proceedIf
        if !allowed.contains(.always) {
            let refused = upstream.filter { !allowed.contains($0.1) }
            if let (name, outcome) = refused.first(where: { $0.1 != .skipped }) {
                return .upstreamFailed(reason: "upstream stage '\(name)' ended \(outcome.rawValue); proceed_if allows \(Self.list(allowed))")
            }
            if let (name, _) = refused.first {
                return .skip(reason: "upstream stage '\(name)' was skipped; proceed_if allows \(Self.list(allowed))")
            }
        }
        for (name, wanted) in stage.when.upstream.sorted(by: { $0.key < $1.key }) {
            guard let outcome = statuses[name]?.asUpstream else { return .wait }
            if !wanted.contains(.always) && !wanted.contains(outcome) {
                return .skip(reason: "when.upstream: '\(name)' ended \(outcome.rawValue), not \(Self.list(wanted))")
            }
        }
        if stage.when.changed {
            let producers = stage.dependencies.filter { name in spec.stage(name).map { !$0.versionedOutputs.isEmpty } ?? false }
            if !producers.contains(where: changed.contains) {
                return .skip(reason: "when: changed: no versioned output of \(producers.map { "'\($0)'" }.joined(separator: ", ")) changed in this run")
            }
        }
        for pattern in stage.when.files where !fileProbe(pattern) {
            return .skip(reason: "when.files: no file matches '\(pattern)'")
        }
        for pattern in stage.when.noFiles where fileProbe(pattern) {
            return .skip(reason: "when.no_files: a file matches '\(pattern)'")
        }
        return .run
    }

    static func list(_ outcomes: Set<UpstreamOutcome>) -> String {
        outcomes.map(\.rawValue).sorted().joined(separator: ", ")
    }
}
