import Foundation
import SluiceStore

/// Where Sluice keeps its files: `<state-dir>/state.sqlite` and `<state-dir>/runs/<run-id>/`.
public struct StateLayout: Sendable, Hashable {
    public var directory: String

    public init(directory: String) {
        self.directory = URL(fileURLWithPath: directory).standardizedFileURL.path
    }

    public var databasePath: String { directory + "/state.sqlite" }
    public func runDirectory(_ id: RunID) -> String { directory + "/runs/\(id.rawValue)" }
    /// Where a coordination session's combined report is written.
    public func sessionDirectory(_ id: String) -> String { directory + "/sessions/\(id)" }
}

/// The files of one run.
public struct RunFiles: Sendable, Hashable {
    public var directory: String

    public init(directory: String) { self.directory = directory }

    public var events: String { directory + "/events.jsonl" }
    public var report: String { directory + "/report.json" }
    public var log: String { directory + "/run.log" }

    public func stdout(stage: String, task: String, attempt: Int) -> String {
        directory + "/logs/\(stage)/\(task)\(attempt > 1 ? ".attempt-\(attempt)" : "").stdout"
    }

    /// The file a producer command may write its items to (`$SLUICE_ITEMS`), one JSON value per line.
    public func itemsFile(stage: String, task: String, attempt: Int) -> String {
        directory + "/items/\(stage)/\(task)\(attempt > 1 ? ".attempt-\(attempt)" : "").jsonl"
    }

    public func stderr(stage: String, task: String, attempt: Int) -> String {
        directory + "/logs/\(stage)/\(task)\(attempt > 1 ? ".attempt-\(attempt)" : "").stderr"
    }
}
