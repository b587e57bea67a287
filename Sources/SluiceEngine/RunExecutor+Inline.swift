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

    /// How many of `adjacent` ready tasks of one stage the next row takes: a share per free slot (this
    /// one included), at most 64 (a stop or a retry waits for at most that many). The run process and
    /// workers both use it.
    static func rowSize(adjacent: Int, freeSlots: Int) -> Int {
        min(64, max(1, adjacent / max(1, freeSlots)))
    }

    /// Runs claimed tasks of one stage one after another, each recorded as `perform` records it, and
    /// returns how long the row took. A stop cancels the task running (it is recorded as cancelled, or
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
                let scope = StageScope(run: run, stage: stage, store: store, files: files)
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
                    let sink = OutputSink(producer: false)
                    let end: SwiftEnd
                    do { end = .returned(try await body(context(for: claimed, scope: scope, sink: sink))) } catch {
                        // A stop cancels the body: whatever it throws then, the task was cancelled.
                        end = stop.isRequested ? .stopRequested : .threw(error is CancellationError ? "cancelled" : "\(error)")
                    }
                    let result = settle(&attempt, end: end, timeout: nil)
                    var finished = FinishedAttempt(attempt: attempt, event: Self.eventName(attempt.outcome), attrs: [:], result: result)
                    if attempt.outcome != .success { finished.attrs["wall_ms"] = String((ContinuousClock.now - clock).milliseconds) }
                    if let problem = sink.problem { finished.failIfSucceeded(problem) }
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
    func attemptRecord(claimed: ClaimedTask, stage: StageSpec, run: RunRecord) -> AttemptRecord {
        AttemptRecord(taskID: claimed.task.id, runID: run.id, stage: stage.name, number: claimed.attempt,
                      outcome: .running, startedAt: time.now(), host: owner.host, pid: owner.pid)
    }

    /// What an in-process task's body sees.
    func context(for claimed: ClaimedTask, scope: StageScope, sink: OutputSink) -> StageContext {
        StageContext(scope: scope, taskID: claimed.task.id, taskKey: claimed.task.key, attempt: claimed.attempt,
                     item: claimed.task.item, sink: sink)
    }

    /// Ends an in-process attempt as its body ended; returns the result to record (a success's).
    func settle(_ attempt: inout AttemptRecord, end: SwiftEnd, timeout: Duration?) -> Data? {
        attempt.finishedAt = time.now()
        switch end {
        case .returned(let data):
            attempt.outcome = .success
            attempt.message = "returned"
            return data
        case .threw(let message):
            attempt.outcome = .failed
            attempt.message = "threw: \(message)"
            attempt.stderrTail = message
        case .stopRequested:
            attempt.outcome = .cancelled
            attempt.message = "cancelled because the run was cancelled"
        case .timedOut:
            attempt.outcome = .timedOut
            attempt.message = "timed out after \(DurationText.format(timeout ?? .zero)); cancelled"
        }
        return nil
    }
}

extension RunExecutor.FinishedAttempt {
    /// A task that did its work but broke a rule on the way (its output protocol, its outputs) failed.
    mutating func failIfSucceeded(_ problem: String, prefix: String = "") {
        guard attempt.outcome == .success else { return }
        attempt.outcome = .failed
        attempt.message = prefix + problem
        attempt.stderrTail = problem
        event = "task.failure"
    }
}
