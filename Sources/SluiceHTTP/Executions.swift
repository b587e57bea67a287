import Foundation
import Logging
import SluiceCore
import ServiceLifecycle
import SluiceEngine
import SluiceStore
import Synchronization

/// Runs resumed or retried through the API, executed by this process. On shutdown no more are taken;
/// those still executing are asked to cancel (their record ends `cancelled` and can be resumed again).
final class Executions: Service, Sendable {
    struct Job: Sendable {
        var run: RunRecord
        var retryFailed: Bool
    }

    let engine: Engine
    private let stream: AsyncStream<Job>
    private let continuation: AsyncStream<Job>.Continuation
    private let active = Mutex<[RunID: RunRecord]>([:])
    private let closed = Mutex(false)

    init(engine: Engine) {
        self.engine = engine
        (stream, continuation) = AsyncStream.makeStream(of: Job.self)
    }

    /// False once the server shuts down.
    func submit(_ run: RunRecord, retryFailed: Bool) -> Bool {
        guard !closed.withLock({ $0 }) else { return false }
        if case .enqueued = continuation.yield(Job(run: run, retryFailed: retryFailed)) { return true }
        return false
    }

    func run() async throws {
        let engine = self.engine
        await withDiscardingTaskGroup { group in
            for await job in stream.cancelOnGracefulShutdown() {
                group.addTask {
                    self.active.withLock { $0[job.run.id] = job.run }
                    defer { _ = self.active.withLock { $0.removeValue(forKey: job.run.id) } }
                    do {
                        _ = try await engine.execute(job.run, resume: true, retryFailed: job.retryFailed)
                    } catch {
                        engine.logger.error("resuming run \(job.run.id) failed: \(error)")
                    }
                }
            }
            closed.withLock { $0 = true }
            continuation.finish()
            for run in active.withLock({ Array($0.values) }) {
                _ = try? await engine.store.requestCancel(run.id, now: engine.time.now(), events: [
                    EventRecord(runID: run.id, pipeline: run.pipeline, event: "run.cancel_requested", time: engine.time.now(),
                                message: "cancel requested: the HTTP server that resumed it shut down")])
            }
        }
    }
}
