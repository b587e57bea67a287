import ArgumentParser
import Foundation
import Logging
import SluiceCore
import SluiceEngine
import SluiceNotify
import SluiceSupervisor

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Execute the tasks of recorded runs: start one or more on each machine that shares the state.",
        discussion: """
            A worker claims ready tasks of every open run (of the queues it serves), runs them, plans the next
            stages and finishes runs nobody else coordinates. Point every worker at one PostgreSQL store with
            --state postgres://… (or SLUICE_STATE); on one machine they may share the SQLite store too.
            SIGTERM or Ctrl-C drains: no new tasks, running ones may finish within --grace, the rest go back to
            the queue for another worker (their retry budget untouched). Exit code 0 after a drain.
            """)

    @Option(help: ArgumentHelp("Serve only these queues (comma-separated; a stage's `queue:`, default 'default').", valueName: "a,b"))
    var queues: String?
    @Option(help: "Run at most N tasks at once.") var concurrency: Int = max(2, ProcessInfo.processInfo.activeProcessorCount)
    @Option(help: "On shutdown, how long running tasks may take to finish before they are released.") var grace: String = "30s"
    @Option(help: "How often to look for work when the store cannot notify (PostgreSQL notifies at once).") var poll: String?
    @Option(help: "How long a task's lease lasts without a heartbeat: after it, other workers take the task back.") var lease: String = "30s"
    @Flag(name: .customLong("exit-when-idle"), help: "Exit once no run is open (batch jobs, tests).") var exitWhenIdle = false
    @Flag(name: .shortAndLong, help: "Say which runs start and end.") var verbose = false
    @OptionGroup var state: StateOptions

    func run() async throws {
        try await guarded {
            guard concurrency > 0 else {
                throw CLIError(message: "--concurrency must be at least 1, got \(concurrency)", exitCode: ExitStatus.failure)
            }
            var options = Worker.Options(concurrency: concurrency)
            if let queues {
                let names = Set(queues.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty })
                if let bad = names.first(where: { !StageSpec.isQueueName($0) }) {
                    throw CLIError(message: "--queues: '\(bad)' is not a queue name", hint: "use letters, digits, '-', '_' or '.', e.g. --queues default,gpu",
                                   exitCode: ExitStatus.failure)
                }
                guard !names.isEmpty else {
                    throw CLIError(message: "--queues names no queue", hint: "e.g. --queues default,gpu", exitCode: ExitStatus.failure)
                }
                options.queues = names
            }
            options.drainGrace = try Self.duration(grace, "--grace")
            options.poll = try poll.map { try Self.duration($0, "--poll") } ?? (state.isPostgres ? .seconds(5) : .milliseconds(500))
            options.exitWhenIdle = exitWhenIdle
            var engine = try await state.engine()
            let leaseDuration = try Self.duration(lease, "--lease")
            engine.configuration.leaseDuration = leaseDuration
            engine.configuration.heartbeat = min(.seconds(5), leaseDuration / 3)
            let shutdown = StopSignal()
            let verbose = self.verbose
            let signals = InterruptHandler {
                Terminal.note("worker: shutdown requested")
                shutdown.request()
            }
            defer { signals.stop() }
            let worker = Worker(engine: engine, options: options)
            let deliverer = engine.deliverer(level: .notice)
            // The worker also delivers the outbox and times sessions out, until it stops.
            let summary = try await withThrowingTaskGroup(of: Worker.Summary?.self) { group in
                group.addTask { await deliverer.run(); return nil }
                group.addTask {
                    try await worker.run(shutdown: shutdown) { line in
                        if verbose { Terminal.note("worker: \(line)") }
                    }
                }
                var result: Worker.Summary?
                while let next = try await group.next() {
                    if let next { result = next; group.cancelAll() }
                }
                return result!
            }
            _ = try? await deliverer.deliverDue()
            Terminal.note("worker: done: \(summary.attempts) task attempt\(summary.attempts == 1 ? "" : "s") started, \(summary.released) released, \(summary.runsFinished) run\(summary.runsFinished == 1 ? "" : "s") finished here")
            return 0
        }
    }

    static func duration(_ text: String, _ option: String) throws -> Duration {
        guard let d = DurationText.parse(text), d > .zero else {
            throw CLIError(message: "\(option) '\(text)' is not a duration", hint: "write e.g. 30s, 2m or 500ms", exitCode: ExitStatus.failure)
        }
        return d
    }
}
