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
        /// The stages these completions ended.
        var endedStages: [StageName] = []
        var stageEnded: Bool { !endedStages.isEmpty }
        /// A recorded completion may let a claim take more: it put its task back to pending (a retry, a
        /// task given back), or it ended a claimed task, which the store counted as running (a stage's
        /// `concurrency` caps that count). Only local tasks' successes and failures give no such work.
        var freedWork = false
        var failure: String?
    }

    private let pending = Mutex<(completions: [AttemptCompletion], processes: [ProcessStart], started: [EventRecord])>(([], [], []))
    private let work = Nudge()
    /// Nudged after every commit; the loop then takes `takeRecorded()`.
    let committed = Nudge()
    private let recorded = Mutex(Recorded())
    let maxBatch: Int

    init(maxBatch: Int = 1024) { self.maxBatch = maxBatch }

    /// How long recording an attempt's start may wait for its end, to write both in one commit.
    static let startsWait: Duration = .milliseconds(10)

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

    /// An attempt's start (`task.start`), recorded in the next commit (before the completions of that
    /// moment, its own included): a task that takes microseconds is not a transaction for its start
    /// and another for its end, and a long one has its start recorded at once all the same.
    func started(_ event: EventRecord) {
        pending.withLock { $0.started.append(event) }
        work.nudge()
    }

    static func complete(_ batch: [AttemptCompletion], processes: [ProcessStart], started: [EventRecord], store: any StateStore,
                         owner: LeaseOwner, time: any TimeSource, logger: Logger, retrying: Bool) async throws -> [CompletionResult] {
        var pause: Duration = .milliseconds(500)
        while true {
            do {
                return try await store.completeAttempts(batch, processes: processes, started: started, owner: owner, now: time.now())
            } catch {
                guard retrying, !Task.isCancelled else { throw error }
                logger.warning("recording \(batch.count) task result(s) failed; trying again in \(DurationText.format(pause)): \(error)")
                try await Task.sleep(for: pause)
                pause = min(pause * 2, .seconds(10))
            }
        }
    }

    /// Whether recording `completion` may let a claim take more (`Recorded.freedWork`).
    private static func freesWork(_ completion: AttemptCompletion) -> Bool {
        guard completion.newTask != nil else { return true } // a claimed task: the store counted it running
        switch completion.next {
        case .retry, .release: return true
        case .succeed, .fail, .cancel: return false
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
            // Only starts to record: their attempts may end at once (an in-process stage, a quick
            // command), and then starts and ends are one commit. A start waits `startsWait` at most.
            if pending.withLock({ $0.completions.isEmpty && !($0.started.isEmpty && $0.processes.isEmpty) }) {
                await work.wait(upTo: Self.startsWait)
            }
            while true {
                let (batch, processes, started) = pending.withLock { p -> ([AttemptCompletion], [ProcessStart], [EventRecord]) in
                    var batch: [AttemptCompletion] = [], processes: [ProcessStart] = [], started: [EventRecord] = []
                    swap(&processes, &p.processes)
                    swap(&started, &p.started)
                    if p.completions.count <= maxBatch {
                        swap(&batch, &p.completions) // all of them, without a copy
                    } else {
                        batch = Array(p.completions[..<maxBatch])
                        p.completions.removeFirst(maxBatch)
                    }
                    return (batch, processes, started)
                }
                if batch.isEmpty && processes.isEmpty && started.isEmpty { break }
                do {
                    let results = try await Self.complete(batch, processes: processes, started: started, store: store, owner: owner,
                                                          time: time, logger: logger, retrying: retrying)
                    guard !batch.isEmpty else {
                        publish(started)
                        continue
                    }
                    var freedWork = false, endedStages: [StageName] = []
                    var events = started
                    for index in batch.indices where index < results.count { // by index: each completion read in place, not copied
                        switch results[index] {
                        case .applied(let stage, let consumers):
                            if !batch[index].events.isEmpty { events += batch[index].events }
                            if !freedWork { freedWork = Self.freesWork(batch[index]) }
                            if let stage {
                                endedStages.append(stage.name)
                                events.append(batch[index].stageEvent(stage))
                                // The fan-out stages that ended with it: the store recorded their events too.
                                for consumer in consumers {
                                    endedStages.append(consumer.name)
                                    events.append(batch[index].stageEvent(consumer))
                                }
                            }
                        case .leaseLost:
                            let attempt = batch[index].attempt
                            logger.warning("result of a task was not recorded: another process holds its lease",
                                           metadata: ["sluice.run_id": "\(attempt.runID)", "sluice.stage": "\(attempt.stage)",
                                                      "sluice.task_id": "\(attempt.taskID)", "sluice.attempt": "\(attempt.number)"])
                        }
                    }
                    publish(events)
                    recorded.withLock { r in
                        r.count += batch.count
                        r.endedStages += endedStages
                        r.freedWork = r.freedWork || freedWork
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
