import ArgumentParser
import Dispatch
import Foundation
import Sluice
import SluiceCore
import SluiceDefinition
import SluiceEngine
import SluiceNotify
import SluiceStore
import Synchronization

struct Validate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "validate", 
        abstract: "Check pipeline files and report every mistake with file:line:column.")

    @Argument(help: "Pipeline files (or names of pipelines built into this executable).") var files: [String]

    func run() async throws {
        try await guarded {
            var failed = false
            for file in files {
                if let pipeline = builtInPipeline(file) {
                    print("ok: pipeline '\(pipeline.name)' (defined in Swift), \(pipeline.spec.stages.count) stages")
                    continue
                }
                var loaded = PipelineLoader.load(file: file)
                loaded.diagnostics += templateDiagnostics(loaded)
                for d in loaded.diagnostics { FileHandle.standardError.write(Data((d.description + "\n").utf8)) }
                if loaded.diagnostics.hasErrors {
                    let n = loaded.diagnostics.filter { $0.severity == .error }.count
                    FileHandle.standardError.write(Data("\(file): \(n) error\(n == 1 ? "" : "s")\n".utf8))
                    failed = true
                } else if let session = loaded.session {
                    print("ok: \(file): session '\(session.name)', members \(session.members.map(\.pipeline).joined(separator: ", "))")
                } else if let spec = loaded.spec {
                    print("ok: \(file): pipeline '\(spec.name)', \(spec.stages.count) stage\(spec.stages.count == 1 ? "" : "s")")
                } else {
                    let n = loaded.diagnostics.filter { $0.severity == .error }.count
                    FileHandle.standardError.write(Data("\(file): \(n) error\(n == 1 ? "" : "s")\n".utf8))
                    failed = true
                }
            }
            return failed ? ExitStatus.failure : 0
        }
    }
}

/// The pipeline built into this executable that `argument` names, unless a file of that name exists.
func builtInPipeline(_ argument: String) -> Pipeline? {
    guard !FileManager.default.fileExists(atPath: argument) else { return nil }
    return CLIContext.pipelines.first { $0.name == argument }
}

/// Loads a pipeline file — or finds a pipeline built into this executable by name — or exits with
/// its diagnostics (exit code 2).
func loadPipeline(_ file: String) throws -> PipelineSpec {
    if let pipeline = builtInPipeline(file) { return pipeline.spec }
    var loaded = PipelineLoader.load(file: file)
    loaded.diagnostics += templateDiagnostics(loaded, severity: .warning)
    for d in loaded.diagnostics { FileHandle.standardError.write(Data((d.description + "\n").utf8)) }
    if loaded.isSessionFile {
        throw CLIError(message: "\(file) is a session file, not a pipeline", hint: "run one of its members; their runs join the session",
                       exitCode: ExitStatus.failure)
    }
    guard let spec = loaded.spec, !loaded.diagnostics.hasErrors else {
        let n = loaded.diagnostics.filter { $0.severity == .error }.count
        throw CLIError(message: "\(file): \(n) error\(n == 1 ? "" : "s") in the pipeline; nothing was run",
                       hint: loaded.diagnostics.count == 1 ? nil : "fix them and check with `sluice validate \(file)`",
                       exitCode: ExitStatus.failure)
    }
    return spec
}

struct DisplayOptions: ParsableArguments {
    @Flag(help: "Print the audit report as JSON when the run ends (progress goes to stderr).") var json = false
    @Flag(name: .customLong("no-tty"), help: "Plain line-by-line output even on a terminal.") var noTTY = false
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", 
        abstract: "Run a pipeline now and watch it.",
        discussion: "Exit code: 0 success, 1 partial success, 2 failure, 130 cancelled, 3 internal error.")

    @Argument(help: "The pipeline file, or the name of a pipeline built into this executable.") var file: String
    @Option(name: .short, help: ArgumentHelp("Set a param for this run (repeatable).", valueName: "key=value"))
    var p: [String] = []
    @Option(help: "Run at most N tasks at once (overrides the pipeline's concurrency).") var concurrency: Int?
    @Option(name: .customLong("idempotency-key"), help: "Start nothing if a run with this key exists.") var idempotencyKey: String?
    @Flag(help: "Record the run and print its id; `sluice worker` processes execute it.") var detach = false
    @OptionGroup var display: DisplayOptions
    @OptionGroup var state: StateOptions

    func run() async throws {
        if !detach { HTMLReportWriter.prepare() }
        try await guarded {
            var spec = try loadPipeline(file)
            if let concurrency {
                guard concurrency > 0 else {
                    throw CLIError(message: "--concurrency must be at least 1, got \(concurrency)", exitCode: ExitStatus.failure)
                }
                spec.concurrency = concurrency
            }
            var params: [String: String] = [:]
            for pair in p {
                guard let eq = pair.firstIndex(of: "="), eq != pair.startIndex else {
                    throw CLIError(message: "-p '\(pair)' is not key=value", hint: "write -p name=value", exitCode: ExitStatus.failure)
                }
                params[String(pair[..<eq])] = String(pair[pair.index(after: eq)...])
            }
            let engine = try await state.engine()
            // With --detach, stdout carries only the run id (scripts capture it).
            let view = LiveView(plain: display.noTTY || !Terminal.isTTY, toStderr: display.json || detach)
            let name = spec.name
            let started = try await engine.start(spec, params: params, idempotencyKey: idempotencyKey, detached: detach) { active in
                view.note("waiting: run \(active.map(\.id.rawValue).joined(separator: ", ")) of '\(name)' is active (overlap: queue)")
            }
            switch started {
            case .skipped(let active):
                view.note("not started: '\(spec.name)' already has an active run (\(active.map(\.id.rawValue).joined(separator: ", "))) and its overlap policy is skip")
                return 0
            case .duplicate(let run):
                view.note("not started: run \(run.id) already has idempotency key '\(idempotencyKey ?? "")' (status \(run.status.rawValue))")
                return 0
            case .started(let run) where detach:
                print(run.id.rawValue)
                Terminal.note("run \(run.id) of '\(run.pipeline)' recorded for workers: `sluice worker\(state.location.map { _ in " --state …" } ?? "")` executes it; `sluice show \(run.id)` follows it")
                return 0
            case .started(let run):
                return try await execute(run, engine: engine, resume: false, view: view, json: display.json)
            }
        }
    }
}

/// Executes a run with the live view, Ctrl-C wired to cancellation, and prints the summary.
func execute(_ run: RunRecord, engine: Engine, resume: Bool, retryFailed: Bool = false, view: LiveView, json: Bool) async throws -> Int32 {
    view.begin(run)
    let interrupts = InterruptHandler {
        view.note("cancelling run \(run.id): stopping its processes (SIGTERM, then SIGKILL after the grace period)…")
        Task { _ = try? await engine.store.requestCancel(run.id, now: Date(), events: [
            EventRecord(runID: run.id, pipeline: run.pipeline, event: "run.cancel_requested", time: Date(),
                        message: "cancel requested by an interrupt signal")]) }
    }
    defer { interrupts.stop() }
    let written = Mutex<RunReport?>(nil)
    let outcome = try await engine.execute(run, resume: resume, retryFailed: retryFailed,
                                           observer: { event in view.handle(event) },
                                           progress: { progress in view.progress(progress) },
                                           reported: { report in written.withLock { $0 = report } })
    view.end()
    // The report this process wrote; built again only when another process finished the record.
    let report: RunReport
    if let written = written.withLock({ $0 }) {
        report = written
    } else {
        report = try await RunReport.build(store: engine.store, runID: run.id)
    }
    if json {
        FileHandle.standardOutput.write(try report.json())
        print()
    }
    view.summary(report, outcome: outcome)
    await deliverAfterRun(run.id, engine: engine, note: { view.note($0) })
    return outcome.exitCode
}

/// Turns SIGINT and SIGTERM into a cancel request (children are in their own process groups and are
/// stopped by the engine, gracefully).
final class InterruptHandler: @unchecked Sendable {
    private var sources: [any DispatchSourceSignal] = []

    init(_ handler: @escaping @Sendable () -> Void) {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler(handler: handler)
            source.resume()
            sources.append(source)
        }
    }

    func stop() {
        for s in sources { s.cancel() }
        sources.removeAll()
    }
}

struct Resume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", 
        abstract: "Finish a run that crashed or was cancelled: what succeeded is not run again.",
        discussion: "Failed stages and items are run again only with --retry-failed.")

    @Argument(help: "Run id (or a unique prefix, or 'latest').") var runID: String
    @Flag(name: .customLong("retry-failed"), help: "Also run failed stages and items again, with a fresh retry budget.")
    var retryFailed = false
    @OptionGroup var display: DisplayOptions
    @OptionGroup var state: StateOptions

    func run() async throws {
        HTMLReportWriter.prepare()
        try await guarded {
            let engine = try await state.engine()
            let run = try await engine.findRun(runID)
            if run.status == .success {
                print("run \(run.id) already succeeded; nothing to resume")
                return 0
            }
            if run.status.isTerminal && !retryFailed {
                let stages = try await engine.store.stages(of: run.id)
                let unfinished = stages.filter { $0.status == .cancelled || !$0.status.isTerminal }
                if unfinished.isEmpty {
                    let failed = stages.filter { $0.status == .failed || $0.status == .partialSuccess }.map(\.name)
                    print("run \(run.id) ended \(run.status.rawValue) and has nothing unfinished to resume"
                          + (failed.isEmpty ? "" : "; `sluice resume \(run.id) --retry-failed` runs \(failed.joined(separator: ", ")) again"))
                    return 0
                }
            }
            let view = LiveView(plain: display.noTTY || !Terminal.isTTY, toStderr: display.json)
            return try await execute(run, engine: engine, resume: true, retryFailed: retryFailed, view: view, json: display.json)
        }
    }
}

struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cancel", abstract: "Cancel a run that is executing (from any terminal).")

    @Argument(help: "Run id (or a unique prefix, or 'latest').") var runID: String
    @OptionGroup var state: StateOptions

    func run() async throws {
        try await guarded {
            let engine = try await state.engine()
            let run = try await engine.findRun(runID)
            switch try await engine.cancel(run) {
            case .notFound:
                throw CLIError(message: "run \(runID) does not exist", exitCode: ExitStatus.failure)
            case .alreadyFinished(let r):
                print("run \(r.id) already ended (\(r.status.rawValue)); nothing to cancel")
            case .requested(let r):
                if let now = try await engine.store.run(r.id), now.status == .cancelled {
                    print("run \(r.id) cancelled (its process was gone; the record is now complete)")
                } else {
                    print("cancel requested for run \(r.id); its process stops the running tasks and records the cancellation")
                }
            }
            return 0
        }
    }
}

struct Pipelines: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pipelines", abstract: "List the pipelines built into this executable (defined in Swift).")

    func run() async throws {
        try await guarded {
            let pipelines = CLIContext.pipelines
            if pipelines.isEmpty {
                print("no pipelines are built into this executable; run a YAML file with `sluice run FILE`")
                return 0
            }
            print(Terminal.table(["PIPELINE", "STAGES", "DESCRIPTION"], pipelines.map {
                [$0.name, $0.spec.stages.map(\.name).joined(separator: ", "), $0.spec.description ?? ""]
            }))
            return 0
        }
    }
}

/// Template folders and subject templates of every notification the file declares, parsed now, so a
/// mistake is reported by `validate` (an error) and `run` (a warning: the run goes ahead, and the
/// notification fails with the same message when it is due) instead of only when a report is due.
func templateDiagnostics(_ loaded: PipelineLoader.Loaded, severity: Diagnostic.Severity = .error) -> [Diagnostic] {
    var actions: [NotifyAction] = []
    if let spec = loaded.spec {
        let n = spec.notify
        actions += n.onSuccess + n.onPartial + n.onFailure + n.onFinish + n.onManualReview
        if let s = spec.session { actions += s.onComplete + s.onTimeout + (s.onLate ?? []) }
    }
    if let s = loaded.session { actions += s.onComplete + s.onTimeout + (s.onLate ?? []) }
    var out: [Diagnostic] = []
    for action in actions where action.templates != nil || action.subject != nil {
        do {
            _ = try ReportTemplates.load(overrides: action.templates.map { action.resolve($0) }, subject: action.subject)
        } catch {
            let hint = severity == .error ? error.hint
                : [error.hint, "the run goes ahead; this notification fails until the template is fixed (then `sluice outbox retry ID`)"].compactMap { $0 }.joined(separator: "; ")
            out.append(Diagnostic(severity, "\(action.channel.summary): \(error.message)", at: action.location, hint: hint))
        }
    }
    return out
}
