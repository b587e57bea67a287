import Foundation
import SluiceCore
import SluiceStore
import SluiceSupervisor

extension RunExecutor {
    /// Whether tasks of `stage` run in a row in one child task (`performInline`): in-process fan-out
    /// tasks without a timeout, whose stage registered its body here. Such tasks often take
    /// microseconds, less than a child task, a task group and a wake-up of the run loop each would cost.
    func runsInline(_ stage: StageSpec, pipeline: String, producer: Bool) -> StageBody? {
        guard stage.command == .swift, stage.forEach != nil, stage.timeout == nil, !producer, stage.outputs.isEmpty else { return nil }
        return engine.inProcess.body(pipeline: pipeline, stage: stage.name)
    }

    /// Runs claimed tasks of one stage one after another, each recorded as `perform` records it, and
    /// returns how long each took. A stop cancels the task running (it is recorded as cancelled, or
    /// released: `released`) and those not started yet are recorded the same way without running.
    func performInline(_ tasks: [ClaimedTask], stage: StageSpec, run: RunRecord, body: @escaping StageBody, stop: StopSignal,
                       batcher: CompletionBatcher, released: @escaping @Sendable () -> Bool = { false }) async -> Duration {
        await withTaskGroup(of: Duration?.self) { group in
            group.addTask {
                await stop.wait()
                return nil
            }
            group.addTask {
                let started = ContinuousClock.now
                let root = URL(fileURLWithPath: run.spec.root, isDirectory: true)
                let workDirectory = stage.workdir.map { root.appendingPathComponent($0) } ?? root
                let runDirectory = URL(fileURLWithPath: run.runDir, isDirectory: true)
                for (index, claimed) in tasks.enumerated() {
                    if stop.isRequested || Task.isCancelled {
                        for rest in tasks[index...] {
                            var attempt = attemptRecord(claimed: rest, stage: stage, run: run)
                            attempt.outcome = .cancelled
                            attempt.finishedAt = time.now()
                            attempt.message = "cancelled before it started"
                            record(FinishedAttempt(attempt: attempt, event: "task.cancel", attrs: [:], result: nil),
                                   claimed: rest, stage: stage, batcher: batcher, released: released(), root: run.spec.root)
                        }
                        break
                    }
                    let clock = ContinuousClock.now
                    var attempt = attemptRecord(claimed: claimed, stage: stage, run: run)
                    let task = claimed.task
                    let sink = OutputSink(producer: false)
                    let context = StageContext(
                        runID: run.id, pipeline: run.pipeline, stage: stage.name, taskID: task.id, taskKey: task.key,
                        attempt: claimed.attempt, params: run.params, workDirectory: workDirectory, runDirectory: runDirectory,
                        logFile: files.stdout(stage: stage.name, task: Items.fileName(key: task.key, taskID: task.id), attempt: claimed.attempt),
                        store: store, item: task.item, sink: sink)
                    var result: Data?
                    do {
                        result = try await body(context)
                        attempt.outcome = .success
                        attempt.message = "returned"
                    } catch {
                        if stop.isRequested {
                            attempt.outcome = .cancelled
                            attempt.message = "cancelled because the run was cancelled"
                        } else {
                            attempt.outcome = .failed
                            attempt.message = "threw: \(error is CancellationError ? "cancelled" : "\(error)")"
                            attempt.stderrTail = error is CancellationError ? "cancelled" : "\(error)"
                        }
                    }
                    attempt.finishedAt = time.now()
                    var finished = FinishedAttempt(attempt: attempt, event: Self.eventName(attempt.outcome), attrs: [:], result: result)
                    if attempt.outcome != .success { finished.attrs["wall_ms"] = String((ContinuousClock.now - clock).milliseconds) }
                    if let problem = sink.problem, finished.attempt.outcome == .success {
                        finished.attempt.outcome = .failed
                        finished.attempt.message = problem
                        finished.attempt.stderrTail = problem
                        finished.event = "task.failure"
                    }
                    finished.attempt.counters = sink.counters.attributes
                    record(finished, claimed: claimed, stage: stage, batcher: batcher, released: released(), root: run.spec.root)
                }
                return ContinuousClock.now - started
            }
            var took: Duration = .zero
            while let next = await group.next() {
                if let next { took = next }
                group.cancelAll()
            }
            return took
        }
    }

    /// A new attempt of an in-process task, as it starts.
    private func attemptRecord(claimed: ClaimedTask, stage: StageSpec, run: RunRecord) -> AttemptRecord {
        AttemptRecord(taskID: claimed.task.id, runID: run.id, stage: stage.name, number: claimed.attempt,
                      outcome: .running, startedAt: time.now(), host: owner.host, pid: owner.pid)
    }
}
