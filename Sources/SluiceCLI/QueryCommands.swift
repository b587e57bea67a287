import ArgumentParser
import Foundation
import SluiceCore
import SluiceEngine
import SluiceStore

struct Runs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "runs", abstract: "List recent runs.")

    @Option(help: "Only runs of this pipeline.") var pipeline: String?
    @Option(help: "How many runs to list.") var limit = 20
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var state: StateOptions

    func run() async throws {
        try await guarded {
            let engine = try await state.engine()
            let runs = try await engine.store.recentRuns(pipeline: pipeline, limit: limit)
            if json {
                let rows = runs.map { r -> [String: String] in
                    ["run_id": r.id.rawValue, "pipeline": r.pipeline, "status": r.status.rawValue, "trigger": r.trigger,
                     "created_at": EventLog.timestamp(r.createdAt),
                     "finished_at": r.finishedAt.map(EventLog.timestamp) ?? ""]
                }
                let data = try JSONSerialization.data(withJSONObject: rows, options: [.prettyPrinted, .sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return 0
            }
            if runs.isEmpty {
                print("no runs yet in \(engine.layout.directory); start one with `sluice run PIPELINE.yml`")
                return 0
            }
            let rows = runs.map { r -> [String] in
                let duration = r.startedAt.map { start in
                    Terminal.duration(Int64(((r.finishedAt ?? Date()).timeIntervalSince(start)) * 1000))
                } ?? "-"
                let status = engine.isInterrupted(r) ? "\(r.status.rawValue) (interrupted)" : r.status.rawValue
                return [r.id.rawValue, r.pipeline, status, Terminal.time(r.startedAt ?? r.createdAt), duration, r.trigger]
            }
            print(Terminal.table(["RUN", "PIPELINE", "STATUS", "STARTED", "DURATION", "TRIGGER"], rows))
            return 0
        }
    }
}

struct Show: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a run (stages, statuses, durations, attempts, outcome) or a coordination session.")

    @Argument(help: "Run id (or a unique prefix, or 'latest'), or a session id.") var runID: String
    @Flag(help: "Print the audit report as JSON.") var json = false
    @Flag(name: .customLong("all-tasks"), help: "With --json, list every task of fan-out stages, successful ones too.")
    var allTasks = false
    @OptionGroup var state: StateOptions

    static let shownRejections = 5

    func run() async throws {
        try await guarded {
            let engine = try await state.engine()
            let run: RunRecord
            do {
                run = try await engine.findRun(runID)
            } catch let error as EngineError where error.code == .runNotFound {
                // Not a run: perhaps a coordination session.
                let sessions = try await engine.store.sessions(matching: SessionQuery(idPrefix: runID, limit: 5))
                if let session = sessions.first(where: { $0.id == runID }) ?? (sessions.count == 1 ? sessions.first : nil) {
                    return try await showSession(session, engine: engine, json: json)
                }
                if sessions.count > 1 {
                    throw CLIError(message: "'\(runID)' matches several sessions: \(sessions.map(\.id).joined(separator: ", "))",
                                   hint: "type more of the session id", exitCode: ExitStatus.failure)
                }
                throw error
            }
            let report = try await RunReport.build(store: engine.store, runID: run.id, allTasks: allTasks)
            if json {
                FileHandle.standardOutput.write(try report.json())
                print()
                return 0
            }
            print("run       \(report.runId)")
            print("pipeline  \(report.pipeline)\(report.pipelineFile.map { " (\($0))" } ?? "")")
            print("status    \(report.status)\(run.cancelRequestedAt != nil && !run.status.isTerminal ? " (cancel requested)" : "")")
            print("trigger   \(report.trigger)")
            if !report.params.isEmpty {
                print("params    \(report.params.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))")
            }
            print("started   \(Terminal.time(report.startedAt))   duration \(Terminal.duration(report.durationMs))")
            if run.leaseOwner == .workerPool && !run.status.isTerminal {
                print(engine.isInterrupted(run) ? "          waiting for workers: none is working on it (start `\(Terminal.tool) worker`)"
                                                : "executing by workers")
            } else if engine.isInterrupted(run) {
                print("          interrupted: the process that ran it is gone; `\(Terminal.tool) resume \(run.id)` finishes it")
            } else if let owner = run.leaseOwner, !run.status.isTerminal {
                print("executing pid \(owner.pid) on \(owner.host)")
            }
            print()
            var rows: [[String]] = []
            for stage in report.stages {
                let attempts = stage.tasks.flatMap(\.attempts)
                let last = attempts.last
                var note = stage.waiting ?? stage.reason ?? last?.message ?? ""
                // A fan-out stage lists only the tasks that did not succeed: its attempts are counted as
                // items, in its progress (done/expected, failed, running, rate, ETA).
                let fanOut = run.spec.stage(stage.name)?.forEach != nil
                if fanOut, let p = stage.progress {
                    let counts = stage.status == "running" || stage.status == "pending" ? "items \(p.summary)"
                        : "\(p.expected) items: \(p.done) done, \(p.failed) failed"
                    note = counts + ((stage.waiting ?? stage.reason).map { "; \($0)" } ?? "")
                }
                note = Terminal.clip(note, to: 110)
                rows.append([stage.name, stage.status, Terminal.duration(stage.durationMs),
                             fanOut || attempts.isEmpty ? "-" : String(attempts.count),
                             fanOut ? "-" : last?.exitCode.map(String.init) ?? (last?.signal.map { "sig \($0)" } ?? "-"), note])
            }
            print(Terminal.table(["STAGE", "STATUS", "DURATION", "ATTEMPTS", "EXIT", "NOTE"], rows))
            // Business counters and rejected records, per stage and for the run (all records: --json).
            var counted = report.stages.compactMap { stage in Terminal.counters(stage.counters, rejected: stage.rejected).map { (stage.name, $0) } }
            if counted.count > 1, let total = Terminal.counters(report.totals.counters, rejected: report.totals.rejected) {
                counted.append(("run", total))
            }
            if !counted.isEmpty {
                print("\ncounters")
                let width = counted.map(\.0.count).max() ?? 0
                for (name, text) in counted { print("  \(name.padding(toLength: width, withPad: " ", startingAt: 0))  \(text)") }
            }
            let rejections = report.stages.filter { !($0.rejectedRecords ?? []).isEmpty }
            if !rejections.isEmpty {
                print("\nrejected records (the first \(Self.shownRejections) of each stage; more: `\(Terminal.tool) show \(report.runId) --json`)")
                for stage in rejections {
                    for record in (stage.rejectedRecords ?? []).prefix(Self.shownRejections) {
                        print("  \(stage.name): \(Terminal.clip(record, to: 150))")
                    }
                }
            }
            for stage in report.stages where stage.status == "failed" {
                guard let tail = stage.tasks.last?.attempts.last?.stderrTail, !tail.isEmpty else { continue }
                print("\n\(stage.name): last lines of stderr")
                for line in tail.suffix(10) { print("  | \(line)") }
            }
            let shown = (report.artifacts ?? []).filter { $0.event != "artifact.unchanged" }
            if !shown.isEmpty {
                print("\nartifacts and files")
                for action in shown { print("  \(action.message)") }
            }
            for notice in report.notices ?? [] { print("\nnotice: \(notice.message)") }
            return 0
        }
    }
}

struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", 
        abstract: "Print a run's event log, or with --stage the output of a stage's task.")

    @Argument(help: "Run id (or a unique prefix, or 'latest').") var runID: String
    @Option(help: "Print this stage's task output instead of events.") var stage: String?
    @Option(help: "The task of the stage (default: its only task).") var task: String?
    @Option(help: "Which attempt (default: the latest).") var attempt: Int?
    @Flag(help: "Only stderr (with --stage).") var stderr = false
    @Flag(name: .shortAndLong, help: "Keep printing new events until the run ends.") var follow = false
    @OptionGroup var state: StateOptions

    func run() async throws {
        try await guarded {
            let engine = try await state.engine()
            let run = try await engine.findRun(runID)
            if let stage {
                return try await printOutput(run: run, stage: stage, engine: engine)
            }
            var last: Int64 = 0
            while true {
                let events = try await engine.store.events(run: run.id, afterID: last, limit: 1000)
                for e in events { print(EventLog.logLine(e)) }
                last = events.last?.id ?? last
                if events.count == 1000 { continue }
                guard follow else { return 0 }
                guard let current = try await engine.store.run(run.id), !current.status.isTerminal else {
                    // One more read: events recorded with the finish.
                    for e in try await engine.store.events(run: run.id, afterID: last, limit: 1000) { print(EventLog.logLine(e)) }
                    return 0
                }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    func printOutput(run: RunRecord, stage: String, engine: Engine) async throws -> Int32 {
        guard run.spec.stage(stage) != nil else {
            throw CLIError(message: "run \(run.id) has no stage '\(stage)'",
                           hint: Suggest.hint(for: stage, in: run.spec.stages.map(\.name))
                            ?? "stages: \(run.spec.stages.map(\.name).joined(separator: ", "))", exitCode: ExitStatus.failure)
        }
        let tasks = try await engine.store.tasks(of: run.id, all: [stage], unsuccessful: [])
        guard let chosen = task.map({ key in tasks.first { $0.key == key || String($0.id) == key } }) ?? tasks.last else {
            throw CLIError(message: task.map { "stage '\(stage)' has no task '\($0)'" } ?? "stage '\(stage)' has not run in run \(run.id)",
                           exitCode: ExitStatus.failure)
        }
        let number = attempt ?? chosen.attempts
        guard number >= 1 else {
            throw CLIError(message: "stage '\(stage)' has not started an attempt yet", exitCode: ExitStatus.failure)
        }
        let files = RunFiles(directory: run.runDir)
        let fileKey = Items.fileName(key: chosen.key, taskID: chosen.id)
        if follow {
            let path = stderr ? files.stderr(stage: stage, task: fileKey, attempt: number)
                              : files.stdout(stage: stage, task: fileKey, attempt: number)
            return try await tail(path, until: {
                try await engine.store.tasks(of: run.id, all: [stage], unsuccessful: []).first { $0.id == chosen.id }?.status.isTerminal ?? true
            })
        }
        let paths = stderr ? [files.stderr(stage: stage, task: fileKey, attempt: number)]
                           : [files.stdout(stage: stage, task: fileKey, attempt: number), files.stderr(stage: stage, task: fileKey, attempt: number)]
        let existing = paths.filter { FileManager.default.fileExists(atPath: $0) }
        if existing.isEmpty {
            throw CLIError(message: "no log files for stage '\(stage)' attempt \(number) in \(files.directory)/logs",
                           hint: "the run's folder may have been removed; events are still in the store: `sluice logs \(run.id)`",
                           exitCode: ExitStatus.failure)
        }
        for path in existing {
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            if existing.count > 1 { FileHandle.standardOutput.write(Data("==> \(path) <==\n".utf8)) }
            FileHandle.standardOutput.write(data)
        }
        return 0
    }

    /// Prints a log file as it grows, until `done` says the task ended (then prints what is left).
    func tail(_ path: String, until done: () async throws -> Bool) async throws -> Int32 {
        var offset: UInt64 = 0
        while true {
            let finished = try await done()
            if let handle = FileHandle(forReadingAtPath: path) {
                try handle.seek(toOffset: offset)
                if let data = try handle.readToEnd(), !data.isEmpty {
                    FileHandle.standardOutput.write(data)
                    offset += UInt64(data.count)
                }
                try? handle.close()
            }
            if finished { return 0 }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}
