import Foundation
import SluiceCore
import SluiceStore
import SluiceSupervisor

/// Turns a claimed task of a command stage into a supervised process, and its ending into an attempt record.
struct CommandTask: Sendable {
    let run: RunRecord
    let stage: StageSpec
    let claimed: ClaimedTask
    let files: RunFiles

    /// The values `{{...}}` placeholders take.
    static func templateValues(run: RunRecord, stage: StageName) -> [String: String] {
        var values: [String: String] = [
            "run.id": run.id.rawValue, "run.dir": run.runDir, "stage": stage,
            "pipeline": run.pipeline, "root": run.spec.root,
        ]
        for (k, v) in run.params { values["params.\(k)"] = v }
        return values
    }

    static func paramEnvironmentName(_ name: String) -> String {
        "SLUICE_PARAM_" + name.uppercased().map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined()
    }

    /// This process's environment, which every command inherits: read once (reading it builds a
    /// dictionary of every variable, per command before).
    static let inheritedEnvironment = ProcessInfo.processInfo.environment

    /// The task's name in file paths.
    var fileKey: String { Items.fileName(key: claimed.task.key, taskID: claimed.task.id) }

    func invocation() throws(EngineError) -> CommandInvocation {
        let values = Self.templateValues(run: run, stage: stage.name)
        let item = stage.forEach != nil ? Items.ItemValues(claimed.task.item) : nil
        func render(_ text: String) -> String {
            Template.render(text) { name in (Template.isItemName(name) ? item?[name] : nil) ?? values[name] }
        }
        let arguments: [String]
        switch stage.command {
        case .argv(let argv): arguments = argv.map(render)
        case .shell(let script): arguments = ["/bin/sh", "-c", script]
        case .swift:
            throw EngineError(.invalidInput, "stage '\(stage.name)' is a Swift stage, not a command")
        }
        var env = Self.inheritedEnvironment
        for (k, v) in run.spec.env { env[k] = render(v) }
        for (k, v) in stage.env { env[k] = render(v) }
        for (k, v) in run.params { env[Self.paramEnvironmentName(k)] = v }
        env["SLUICE_RUN_ID"] = run.id.rawValue
        env["SLUICE_PIPELINE"] = run.pipeline
        env["SLUICE_STAGE"] = stage.name
        env["SLUICE_TASK"] = claimed.task.key
        env["SLUICE_TASK_ID"] = String(claimed.task.id)
        env["SLUICE_ATTEMPT"] = String(claimed.attempt)
        env["SLUICE_RUN_DIR"] = run.runDir
        if stage.forEach != nil, let item = claimed.task.item {
            env["SLUICE_ITEM"] = String(decoding: item, as: UTF8.self)
            env["SLUICE_ITEM_KEY"] = claimed.task.key
        }

        let root = URL(fileURLWithPath: run.spec.root, isDirectory: true).standardizedFileURL
        var workdir = root
        if let relative = stage.workdir {
            workdir = root.appendingPathComponent(render(relative)).standardizedFileURL
            guard workdir.path == root.path || workdir.path.hasPrefix(root.path + "/") else {
                throw EngineError(.invalidInput, "stage '\(stage.name)': workdir '\(relative)' resolves to '\(workdir.path)', outside the pipeline folder '\(root.path)'",
                                  hint: "use a folder inside the pipeline's folder")
            }
        }
        return CommandInvocation(
            arguments: arguments, environment: env, workingDirectory: workdir.path,
            stdoutPath: files.stdout(stage: stage.name, task: fileKey, attempt: claimed.attempt),
            stderrPath: files.stderr(stage: stage.name, task: fileKey, attempt: claimed.attempt),
            timeout: stage.timeout, hangAfter: stage.hangAfter, doneWhen: stage.doneWhen, grace: stage.grace)
    }

    /// The attempt's record and the event that tells how it ended.
    func attempt(from report: ProcessReport, startedAt: Date, finishedAt: Date, host: String, startTicks: Int64?) -> (AttemptRecord, outcome: AttemptOutcome, message: String) {
        let outcome: AttemptOutcome
        let message: String
        switch report.ending {
        case .exited(0):
            outcome = .success; message = "exited 0"
        case .exited(let code):
            outcome = .failed; message = "exited with code \(code)"
        case .signalled(let sig):
            outcome = .failed; message = "killed by signal \(sig) (\(Self.signalName(sig)))"
        case .timedOut:
            // How it stopped: it ended on SIGTERM (or exited on it), or it was still there after the grace period.
            let how = report.signal == SIGKILL ? "SIGTERM, then SIGKILL after \(DurationText.format(stage.grace))" : "SIGTERM"
            outcome = .timedOut; message = "timed out after \(DurationText.format(stage.timeout ?? .zero)); stopped (\(how))"
        case .hung:
            outcome = .hung; message = "no output for \(DurationText.format(stage.hangAfter ?? .zero)): hung; stopped"
        case .completed(let line):
            outcome = .success; message = "done_when matched \"\(line.prefix(200))\"; stopped gracefully"
        case .stopped:
            outcome = .cancelled; message = "stopped because the run was cancelled"
        case .spawnFailed(let why):
            outcome = .spawnFailed; message = why
        }
        let record = AttemptRecord(
            taskID: claimed.task.id, runID: run.id, stage: stage.name, number: claimed.attempt, outcome: outcome,
            startedAt: startedAt, finishedAt: finishedAt, exitCode: report.exitCode, signal: report.signal,
            cpuMs: report.cpuMs, peakRSSBytes: report.peakRSSBytes, stdoutBytes: report.stdoutBytes,
            stderrBytes: report.stderrBytes,
            stderrTail: report.stderrTail.isEmpty ? nil : report.stderrTail.joined(separator: "\n"),
            message: message, host: host, pid: report.pid, processStartTicks: startTicks)
        return (record, outcome, message)
    }

    static func signalName(_ sig: Int32) -> String {
        switch sig {
        case SIGTERM: "SIGTERM"
        case SIGKILL: "SIGKILL"
        case SIGINT: "SIGINT"
        case SIGSEGV: "SIGSEGV"
        case SIGABRT: "SIGABRT"
        case SIGHUP: "SIGHUP"
        case SIGPIPE: "SIGPIPE"
        default: "signal \(sig)"
        }
    }
}
