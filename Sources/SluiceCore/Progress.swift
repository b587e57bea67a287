import Foundation

/// Where a stage is: counts of its tasks, a smoothed rate and an estimated time to completion.
public struct StageProgress: Sendable, Codable, Hashable {
    public var stage: StageName
    public var done: Int
    public var failed: Int
    public var running: Int
    public var pending: Int
    /// Tasks known so far; grows while the producer of a fan-out stage still emits items.
    public var expected: Int
    public var percent: Double
    /// Finished tasks per second, smoothed.
    public var ratePerSecond: Double
    /// Seconds until every known task is finished at the current rate; nil before there is a rate.
    public var etaSeconds: Double?
    /// True while the producer still emits items: `expected` may grow and the ETA is a lower bound.
    public var growing: Bool

    public init(stage: StageName, counts: TaskCounts, ratePerSecond: Double, growing: Bool) {
        self.stage = stage
        done = counts.success
        failed = counts.failed + counts.cancelled
        running = counts.running
        pending = counts.pending
        expected = counts.total
        let finished = counts.finished
        percent = expected == 0 ? 0 : (Double(finished) * 1000 / Double(expected)).rounded() / 10
        self.ratePerSecond = (ratePerSecond * 10).rounded() / 10
        let remaining = expected - finished
        etaSeconds = ratePerSecond > 0 ? (Double(remaining) / ratePerSecond).rounded() : (remaining == 0 ? 0 : nil)
        self.growing = growing
    }
}

extension StageProgress {
    /// One line: `184/400 (46%), 2 failed, 4 running, 37.8/s, ETA 6s` (`+` and `≥` while items still arrive).
    public var summary: String {
        var text = "\(done + failed)/\(expected)\(growing ? "+" : "") (\(percent.formatted())%), \(failed) failed, \(running) running"
        if ratePerSecond > 0 { text += ", \(ratePerSecond.formatted())/s" }
        if let eta = etaSeconds { text += ", ETA \(growing ? "≥ " : "")\(DurationText.format(.seconds(eta)))" }
        return text
    }
}

/// A smoothed rate of finished tasks (exponentially weighted, so a pause or a burst moves it gradually).
public struct RateEstimator: Sendable {
    private var last: (finished: Int, at: Date)?
    public private(set) var rate: Double = 0
    /// Weight of the newest sample.
    public var smoothing: Double

    public init(smoothing: Double = 0.3) { self.smoothing = smoothing }

    public mutating func sample(finished: Int, at time: Date) {
        defer { last = (finished, time) }
        guard let last else { return }
        let seconds = time.timeIntervalSince(last.at)
        guard seconds > 0 else { return }
        let instant = Double(max(0, finished - last.finished)) / seconds
        rate = rate == 0 ? instant : smoothing * instant + (1 - smoothing) * rate
    }
}
