import Foundation
import Logging
import SluiceCore
import SluiceStore
import SluiceSupervisor
import Synchronization

/// Group commit for attempt completions. A finished task hands in its completion and frees its slot at
/// once; one writer records everything handed in since its last write in one transaction, publishes
/// the events, and tells the run loop what was recorded (how many, whether a stage ended). Under load
/// a commit carries many completions; alone, a completion is written at once.
///
/// A completion not yet recorded when the process dies is simply not done: its task is found running
/// on takeover, recorded as lost, and runs again (at-least-once).
final class CompletionBatcher: Sendable {
    struct Recorded: Sendable {
        var count = 0
        var stageEnded = false
        var failure: String?
    }

    private let pending = Mutex<(completions: [AttemptCompletion], processes: [ProcessStart])>(([], []))
    private let work = Nudge()
    /// Nudged after every commit; the loop then takes `takeRecorded()`.
    let committed = Nudge()
    private let recorded = Mutex(Recorded())
    let maxBatch: Int

    init(maxBatch: Int = 1024) { self.maxBatch = maxBatch }

    func submit(_ completion: AttemptCompletion) {
        pending.withLock { $0.completions.append(completion) }
        work.nudge()
    }

    /// A process an attempt started, recorded (so it can be stopped after a crash) in the next commit,
    /// with the completions of that moment: not a transaction of its own per command.
    func started(_ process: ProcessStart) {
        pending.withLock { $0.processes.append(process) }
        work.nudge()
    }

    static func complete(_ batch: [AttemptCompletion], processes: [ProcessStart] = [], store: any StateStore, owner: LeaseOwner,
                         time: any TimeSource, logger: Logger, retrying: Bool) async throws -> [CompletionResult] {
        var pause: Duration = .milliseconds(500)
        while true {
            do {
                return try await store.completeAttempts(batch, processes: processes, owner: owner, now: time.now())
            } catch {
                guard retrying, !Task.isCancelled else { throw error }
                logger.warning("recording \(batch.count) task result(s) failed; trying again in \(DurationText.format(pause)): \(error)")
                try await Task.sleep(for: pause)
                pause = min(pause * 2, .seconds(10))
            }
        }
    }

    func takeRecorded() -> Recorded {
        recorded.withLock { r in
            defer { r = Recorded(failure: r.failure) }
            return r
        }
    }

    /// The writer; runs until its task is cancelled or a write fails (the failure is reported to the loop).
    /// With `retrying`, a failed write is tried again with a growing pause instead (the store restarts
    /// or the network drops): a completion that was in fact recorded is refused the second time, so
    /// nothing is applied twice.
    func run(store: any StateStore, owner: LeaseOwner, time: any TimeSource,
             publish: @escaping @Sendable ([EventRecord]) -> Void, logger: Logger, retrying: Bool = false) async {
        while !Task.isCancelled {
            await work.wait()
            while true {
                let (batch, processes) = pending.withLock { p -> ([AttemptCompletion], [ProcessStart]) in
                    let n = min(p.completions.count, maxBatch)
                    defer {
                        p.completions.removeFirst(n)
                        p.processes.removeAll()
                    }
                    return (Array(p.completions.prefix(n)), p.processes)
                }
                if batch.isEmpty && processes.isEmpty { break }
                do {
                    let results = try await Self.complete(batch, processes: processes, store: store, owner: owner, time: time,
                                                          logger: logger, retrying: retrying)
                    guard !batch.isEmpty else { continue }
                    var stageEnded = false
                    var events: [EventRecord] = []
                    for (completion, result) in zip(batch, results) {
                        switch result {
                        case .applied(let stage):
                            events += completion.events
                            if let stage {
                                stageEnded = true
                                events.append(completion.stageEvent(stage))
                            }
                        case .leaseLost:
                            logger.warning("result of a task was not recorded: another process holds its lease",
                                           metadata: ["sluice.run_id": "\(completion.attempt.runID)", "sluice.stage": "\(completion.attempt.stage)",
                                                      "sluice.task_id": "\(completion.attempt.taskID)", "sluice.attempt": "\(completion.attempt.number)"])
                        }
                    }
                    publish(events)
                    recorded.withLock { r in
                        r.count += batch.count
                        r.stageEnded = r.stageEnded || stageEnded
                    }
                } catch {
                    recorded.withLock { $0.failure = "\(error)" }
                    committed.nudge()
                    return
                }
                committed.nudge()
            }
        }
    }
}
