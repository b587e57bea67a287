import Foundation
import SluiceCore
import SluiceStore
import Synchronization

/// Samples the progress of a run's stages from the store once a second: hands it to an observer (the
/// terminal's progress bars) and records a `progress` event per active fan-out stage every few seconds.
final class ProgressReporter: Sendable {
    let observer: (@Sendable ([StageProgress]) -> Void)?
    let sampleEvery: Duration
    let eventEvery: Duration
    private let latest = Mutex<[StageProgress]>([])
    /// Local tasks this process is running, by stage: the store counts them as pending until they end.
    private let localRunning = Mutex<[StageName: Int]>([:])

    init(observer: (@Sendable ([StageProgress]) -> Void)?, sampleEvery: Duration = .seconds(1), eventEvery: Duration = .seconds(5)) {
        self.observer = observer
        self.sampleEvery = sampleEvery
        self.eventEvery = eventEvery
    }

    var snapshot: [StageProgress] { latest.withLock { $0 } }

    /// A local task of `stage` started (`delta` 1) or ended (-1) here.
    func localRunning(_ stage: StageName, _ delta: Int) {
        localRunning.withLock { $0[stage, default: 0] += delta }
    }

    /// Runs until cancelled. Store errors skip a sample; they never end the run.
    func run(store: any StateStore, log: EventLog, runID: RunID, spec: PipelineSpec) async throws -> Never {
        var rates: [StageName: RateEstimator] = [:]
        var lastEvent = ContinuousClock.now
        var lastWritten: [StageName: StageProgress] = [:]
        let fanOut = Set(spec.stages.filter { $0.forEach != nil }.map(\.name))
        while true {
            try await Task.sleep(for: sampleEvery)
            guard let counts = try? await store.taskCounts(run: runID),
                  let stages = try? await store.stages(of: runID) else { continue }
            let status = Dictionary(stages.map { ($0.name, $0.status) }, uniquingKeysWith: { a, _ in a })
            let now = Date()
            var progress: [StageProgress] = []
            let local = localRunning.withLock { $0 }
            for stage in spec.stages where status[stage.name] == .running {
                var c = counts[stage.name] ?? TaskCounts()
                if let n = local[stage.name], n > 0 {
                    let moved = min(n, c.pending)
                    c.pending -= moved
                    c.running += moved
                }
                rates[stage.name, default: RateEstimator()].sample(finished: c.finished, at: now)
                let growing = stage.forEach.map { status[$0] == .running || status[$0] == .pending } ?? false
                progress.append(StageProgress(stage: stage.name, counts: c, ratePerSecond: rates[stage.name]?.rate ?? 0, growing: growing))
            }
            latest.withLock { $0 = progress }
            observer?(progress)
            guard ContinuousClock.now - lastEvent >= eventEvery else { continue }
            lastEvent = ContinuousClock.now
            var events: [EventRecord] = []
            for p in progress where fanOut.contains(p.stage) && lastWritten[p.stage] != p {
                lastWritten[p.stage] = p
                events.append(log.make("progress", stage: p.stage, p.summary, attrs: Self.attributes(p)))
            }
            if !events.isEmpty, (try? await store.appendEvents(events)) != nil { log.published(events) }
        }
    }

    static func attributes(_ p: StageProgress) -> [String: String] {
        var attrs = ["done": String(p.done), "failed": String(p.failed), "running": String(p.running),
                     "pending": String(p.pending), "expected": String(p.expected), "percent": String(p.percent),
                     "rate_per_s": String(p.ratePerSecond), "growing": String(p.growing)]
        if let eta = p.etaSeconds { attrs["eta_s"] = String(eta) }
        return attrs
    }
}
