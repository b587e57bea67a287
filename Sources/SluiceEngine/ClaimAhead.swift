import SluiceCore

/// How many in-process fan-out tasks a process claims ahead of its free slots.
///
/// A claim is a write transaction; claiming for each freed slot would be one per few tasks when tasks
/// take microseconds. So such tasks are claimed up to `limit` ahead, and again when fewer than a quarter
/// are left. How many follows how long the stage's tasks take in this process (about `aheadTime` of
/// work; a moving mean that halves the weight of older tasks at each new one), so slow tasks are never
/// held back from idle workers: none are claimed ahead until every in-process fan-out stage of the run
/// has a measured task time. Commands are always claimed for free slots only.
struct ClaimAhead {
    static let limit = 512
    static let aheadTime = 0.02

    struct Key: Hashable { var pipeline: String; var stage: StageName }
    private var means: [Key: Double] = [:]

    mutating func add(_ took: Duration, for key: Key) {
        let seconds = took.seconds
        means[key] = means[key].map { ($0 + seconds) / 2 } ?? seconds
    }

    /// How many tasks to claim now: the free slots; when claiming ahead, a refill to `ahead` once fewer
    /// than a quarter are left, or when every task waiting (`ready`) is held back by a stage limit.
    func want(_ pipeline: String, fanOut: [StageSpec], concurrency: Int, running: Int, ready: Int,
              readyBlocked: Bool = false) -> Int {
        let free = concurrency - running - ready
        let ahead = ahead(pipeline, fanOut: fanOut, concurrency: concurrency)
        guard ahead > 0 else { return free }
        // `max(1, …)`: with fewer than four ahead, an empty queue must still be refilled.
        return ready < max(1, ahead / 4) || readyBlocked ? max(free, ahead - ready) : max(0, free)
    }

    /// How many tasks of a run of `pipeline` to hold ahead of free slots.
    func ahead(_ pipeline: String, fanOut: [StageSpec], concurrency: Int) -> Int {
        guard !fanOut.isEmpty else { return 0 }
        var slowest = 0.0
        for stage in fanOut {
            guard let mean = means[Key(pipeline: pipeline, stage: stage.name)] else { return 0 }
            slowest = max(slowest, mean)
        }
        return min(Self.limit, Int(Double(concurrency) * Self.aheadTime / max(slowest, 1e-7)))
    }
}
