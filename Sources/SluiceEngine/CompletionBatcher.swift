import Foundation
import SluiceCore
import SluiceStore
import SluiceSupervisor
import Synchronization

/// Group commit for attempt completions: tasks hand in their completion and wait; one writer records
/// everything handed in since its last write in one transaction. Under load a commit carries many
/// completions; alone, a completion is written at once.
final class CompletionBatcher: Sendable {
    typealias Waiter = CheckedContinuation<CompletionResult, any Error>
    private let pending = Mutex<[(AttemptCompletion, Waiter)]>([])
    private let signal = Nudge()
    let maxBatch: Int

    init(maxBatch: Int = 512) { self.maxBatch = maxBatch }

    /// Returns once the completion is recorded (or the writer failed).
    func submit(_ completion: AttemptCompletion) async throws -> CompletionResult {
        try await withCheckedThrowingContinuation { (waiter: Waiter) in
            pending.withLock { $0.append((completion, waiter)) }
            signal.nudge()
        }
    }

    /// The writer; runs until its task is cancelled, then fails whatever is still waiting.
    func run(store: any StateStore, owner: LeaseOwner, time: any TimeSource) async {
        while !Task.isCancelled {
            await signal.wait()
            while true {
                let batch = pending.withLock { p -> [(AttemptCompletion, Waiter)] in
                    let n = min(p.count, maxBatch)
                    defer { p.removeFirst(n) }
                    return Array(p.prefix(n))
                }
                if batch.isEmpty { break }
                do {
                    let results = try await store.completeAttempts(batch.map(\.0), owner: owner, now: time.now())
                    for (entry, result) in zip(batch, results) { entry.1.resume(returning: result) }
                } catch {
                    for entry in batch { entry.1.resume(throwing: error) }
                }
            }
        }
        let left = pending.withLock { p in defer { p.removeAll() }; return p }
        for entry in left { entry.1.resume(throwing: CancellationError()) }
    }
}
