import Foundation
import SluiceCore
import SluiceEngine

/// An in-process stage: an async throwing closure whose `Codable` result is recorded in the store,
/// where downstream stages read it with its type (also after the run is resumed in another process).
///
///     let list = Stage("list") { context in
///         try FileManager.default.contentsOfDirectory(atPath: context.workDirectory.path)
///     }
///     let count = Stage("count", needs: list) { context in
///         try await context.result(of: list).count
///     }
public struct Stage<Output: Codable & Sendable>: PipelineComponent, StageReference {
    public var definition: StageDefinition
    public var name: StageName { definition.spec.name }

    public init(_ name: StageName, needs: any StageReference..., body: @escaping @Sendable (StageContext) async throws -> Output) {
        self.init(name, needs: needs, body: body)
    }

    public init(_ name: StageName, needs: [any StageReference], body: @escaping @Sendable (StageContext) async throws -> Output) {
        let encode: StageBody = { context in
            let value = try await body(context)
            return try ValueCoding.encode(value)
        }
        definition = StageDefinition(spec: StageSpec(name: name, needs: specNeeds(needs), command: .swift), body: encode)
    }
}

extension Stage where Output == NoResult {
    /// A stage that returns nothing.
    public init(_ name: StageName, needs: any StageReference..., body: @escaping @Sendable (StageContext) async throws -> Void) {
        self.init(name, needs: needs) { context in
            try await body(context)
            return NoResult()
        }
    }
}

/// A supervised command: the same supervisor as YAML stages (argv, never a shell; process group;
/// timeout, hang and completion detection; streamed logs).
public struct Command: PipelineComponent, StageReference {
    public var definition: StageDefinition
    public var name: StageName { definition.spec.name }

    public init(_ name: StageName, _ arguments: [String], needs: any StageReference...) {
        definition = StageDefinition(spec: StageSpec(name: name, needs: specNeeds(needs), command: .argv(arguments)), body: nil)
    }

    /// A script for `/bin/sh -c`, when a shell is really wanted. Params arrive as `$SLUICE_PARAM_<NAME>`.
    public static func shell(_ name: StageName, _ script: String, needs: any StageReference...) -> Command {
        var command = Command(name, ["/bin/sh"])
        command.definition.spec.command = .shell(script)
        command.definition.spec.needs = specNeeds(needs)
        return command
    }

    /// No output for `duration` means the command hangs: it is stopped.
    public func hangAfter(_ duration: Duration) -> Command { with { $0.hangAfter = duration } }

    /// A regular expression matched against each output line: a match means done; the command is stopped gracefully.
    public func doneWhen(_ pattern: String) -> Command { with { $0.doneWhen = pattern } }

    /// Time between SIGTERM and SIGKILL.
    public func grace(_ duration: Duration) -> Command { with { $0.grace = duration } }
}

/// A stage referred to by name only (for example one defined in another file).
public struct StageNamed: StageReference {
    public let name: StageName
    public init(_ name: StageName) { self.name = name }
}

extension StageContext {
    /// The result an upstream stage returned, with its type.
    public func result<Output>(of stage: Stage<Output>) async throws -> Output {
        let results = try await encodedResults(of: stage.name)
        guard let data = results["main"] ?? results.values.first else {
            throw StageResultError(message: "stage '\(self.stage)' asked for the result of '\(stage.name)', which has none recorded in run \(runID)",
                                   hint: "add '\(stage.name)' to this stage's needs (it must have succeeded)")
        }
        do {
            return try ValueCoding.decode(Output.self, from: data)
        } catch {
            throw StageResultError(message: "the recorded result of stage '\(stage.name)' cannot be read as \(Output.self): \(error)",
                                   hint: "a result recorded by an earlier build must still decode; keep the type compatible or resume with that build")
        }
    }

    /// A param of this run (its default, or the value given with `-p`).
    public func param(_ name: String) -> String? { params[name] }

    /// A param of this run, or `fallback` when the pipeline declares no such param.
    public func param(_ name: String, default fallback: String) -> String { params[name] ?? fallback }
}

/// A stage could not read an upstream result at run time.
public struct StageResultError: HintedError, Sendable {
    public var message: String
    public var hint: String?
}
