import Foundation
import SluiceCore
import SluiceEngine

/// Collects the stages of a `Pipeline { ... }` block.
@resultBuilder
public enum PipelineBuilder {
    public static func buildExpression(_ component: some PipelineComponent) -> [any PipelineComponent] { [component] }
    public static func buildExpression(_ components: [any PipelineComponent]) -> [any PipelineComponent] { components }
    public static func buildBlock(_ parts: [any PipelineComponent]...) -> [any PipelineComponent] { parts.flatMap { $0 } }
    public static func buildOptional(_ part: [any PipelineComponent]?) -> [any PipelineComponent] { part ?? [] }
    public static func buildEither(first: [any PipelineComponent]) -> [any PipelineComponent] { first }
    public static func buildEither(second: [any PipelineComponent]) -> [any PipelineComponent] { second }
    public static func buildArray(_ parts: [[any PipelineComponent]]) -> [any PipelineComponent] { parts.flatMap { $0 } }
}

/// A pipeline's definition was rejected: every problem, naming the stage.
public struct PipelineDefinitionError: HintedError, Sendable {
    public var pipeline: String
    public var problems: [String]
    public var message: String {
        problems.count == 1 ? "pipeline '\(pipeline)': \(problems[0])"
            : "pipeline '\(pipeline)' has \(problems.count) problems:\n" + problems.map { "  - \($0)" }.joined(separator: "\n")
    }
    public var hint: String? { nil }
}

/// A pipeline defined in Swift. Runs on the same engine, store and CLI as YAML pipelines.
///
///     let pipeline = try Pipeline("hash-files") {
///         list
///         hash
///         Command("report", ["sh", "-c", "echo done"], needs: hash)
///     }
public struct Pipeline: Sendable {
    public let spec: PipelineSpec
    let bodies: [StageName: StageBody]

    public var name: String { spec.name }

    /// Builds and checks a pipeline; every problem found is thrown at once.
    ///
    /// - Parameters:
    ///   - name: Unique among the pipelines of an executable; runs are listed under it.
    ///   - description: One line shown by `pipelines` and in reports.
    ///   - concurrency: How many tasks of one run may execute at once.
    ///   - overlap: What happens when the pipeline is started while a run of it is active.
    ///   - params: Parameter defaults, overridable per run with `-p key=value`.
    ///   - environment: Environment variables for every command stage.
    ///   - schedule: When `sluice serve` starts it: a cron expression (`"*/15 * * * *"`) or a `Schedule`.
    ///   - onFiles: Files whose arrival starts it under `sluice serve`.
    ///   - root: The folder commands run in and paths are relative to (default: the current folder).
    ///   - lifecycle: Files deleted or archived once named stages succeeded in the same run.
    ///   - stages: The stages, in a result-builder block.
    public init(_ name: String, description: String? = nil, concurrency: Int = 4, overlap: OverlapPolicy = .skip,
                params: [String: String] = [:], environment: [String: String] = [:], schedule: Schedule? = nil, onFiles: FileTrigger? = nil,
                root: String = FileManager.default.currentDirectoryPath, lifecycle: [LifecyclePolicy] = [],
                @PipelineBuilder stages: () -> [any PipelineComponent]) throws(PipelineDefinitionError) {
        let components = stages()
        var params = params
        if onFiles != nil { FileTrigger.declareParams(in: &params) }
        let spec = PipelineSpec(name: name, description: description, schedule: schedule, onFiles: onFiles, overlap: overlap,
                                concurrency: concurrency, params: params, env: environment,
                                root: URL(fileURLWithPath: root).standardizedFileURL.path, sourceFile: nil,
                                stages: components.map(\.definition.spec), lifecycle: lifecycle)
        var problems = SpecValidation.problems(in: spec)
        let consumed = Set(spec.stages.compactMap(\.forEach))
        for component in components where component.definition.discovers && !consumed.contains(component.definition.spec.name) {
            let stage = component.definition.spec.name
            problems.append("stage '\(stage)' is a Discover, but no ForEach takes its items: add ForEach(\"…\", over: \(stage)), or make it a Stage")
        }
        guard problems.isEmpty else { throw PipelineDefinitionError(pipeline: name, problems: problems) }
        self.spec = spec
        var bodies: [StageName: StageBody] = [:]
        for component in components { bodies[component.definition.spec.name] = component.definition.body }
        self.bodies = bodies
    }

    /// Adds this pipeline's Swift stage bodies to `stages`.
    public func register(in stages: inout InProcessStages) {
        for (name, body) in bodies { stages.register(pipeline: spec.name, stage: name, body: body) }
    }
}
