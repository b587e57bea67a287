import Foundation
import SluiceCore
import SluiceStore

/// Builds a run's events and mirrors those the store recorded into `events.jsonl` and `run.log`.
///
/// The store is the source of truth: an event is written to the files only after the transaction
/// that recorded it committed, and the files are rewritten from the store when the run ends, so
/// they are complete even after a crash.
public final class EventLog: Sendable {
    public let runID: RunID
    public let pipeline: String
    let files: RunFiles
    let observer: (@Sendable (EventRecord) -> Void)?
    let time: any TimeSource

    init(runID: RunID, pipeline: String, files: RunFiles, time: any TimeSource,
         observer: (@Sendable (EventRecord) -> Void)?) {
        self.runID = runID
        self.pipeline = pipeline
        self.files = files
        self.time = time
        self.observer = observer
    }

    public func make(_ event: String, stage: StageName? = nil, task: TaskID? = nil, attempt: Int? = nil,
                     _ message: String, attrs: [String: String] = [:]) -> EventRecord {
        EventRecord(runID: runID, pipeline: pipeline, stage: stage, taskID: task, attempt: attempt, event: event,
                    time: time.now(), message: message, attrs: attrs)
    }

    /// Call after the store committed `events`.
    func published(_ events: [EventRecord]) {
        guard !events.isEmpty else { return }
        var jsonl = ""
        var log = ""
        for e in events {
            jsonl += Self.jsonLine(e) + "\n"
            log += Self.logLine(e) + "\n"
            observer?(e)
        }
        Self.append(jsonl, to: files.events)
        Self.append(log, to: files.log)
    }

    /// Rewrites both files from the store's complete record.
    func rewrite(from events: [EventRecord]) {
        let jsonl = events.map { Self.jsonLine($0) + "\n" }.joined()
        let log = events.map { Self.logLine($0) + "\n" }.joined()
        try? Data(jsonl.utf8).write(to: URL(fileURLWithPath: files.events), options: .atomic)
        try? Data(log.utf8).write(to: URL(fileURLWithPath: files.log), options: .atomic)
    }

    static func append(_ text: String, to path: String) {
        guard let handle = FileHandle(forWritingAtPath: path) ?? {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            return FileHandle(forWritingAtPath: path)
        }() else { return }
        defer { try? handle.close() }
        _ = try? handle.seekToEnd()
        try? handle.write(contentsOf: Data(text.utf8))
    }

    /// RFC 3339 with the local offset, millisecond precision.
    public static func timestamp(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        f.timeZone = .current
        return f.string(from: date)
    }

    public static func jsonLine(_ e: EventRecord) -> String {
        var object: [String: Any] = [
            "run_id": e.runID.rawValue, "pipeline": e.pipeline, "event": e.event,
            "ts": timestamp(e.time), "msg": e.message, "attrs": e.attrs,
            "stage": e.stage ?? NSNull(), "task": e.taskID.map { NSNumber(value: $0) } ?? NSNull(),
        ]
        if let attempt = e.attempt { object["attempt"] = attempt }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else {
            return "{}"
        }
        return String(decoding: data, as: UTF8.self)
    }

    public static func logLine(_ e: EventRecord) -> String {
        var where_ = e.stage.map { "[\($0)]" } ?? "[run]"
        if let attempt = e.attempt { where_ += " attempt \(attempt)" }
        return "\(timestamp(e.time)) \(where_) \(e.event): \(e.message)"
    }
}
