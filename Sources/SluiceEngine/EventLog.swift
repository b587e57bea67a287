import Foundation
import Synchronization
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
    /// The two files stay open while the run executes (an event batch is two appends, not two opens).
    private let handles = Mutex<(events: FileHandle?, log: FileHandle?)>((nil, nil))

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
        handles.withLock { h in
            if h.events == nil { h.events = Self.openForAppend(files.events) }
            if h.log == nil { h.log = Self.openForAppend(files.log) }
            try? h.events?.write(contentsOf: Data(jsonl.utf8))
            try? h.log?.write(contentsOf: Data(log.utf8))
        }
    }

    /// Opened with O_APPEND: another process (`sluice cancel`) may append to the same file while this
    /// one holds it open, and every write must land at the end rather than at a remembered offset.
    static func openForAppend(_ path: String) -> FileHandle? {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        return fd < 0 ? nil : FileHandle(fileDescriptor: fd, closeOnDealloc: true)
    }

    /// Rewrites both files from the store's complete record.
    func rewrite(from events: [EventRecord]) {
        handles.withLock { h in
            try? h.events?.close()
            try? h.log?.close()
            h = (nil, nil)
        }
        let jsonl = events.map { Self.jsonLine($0) + "\n" }.joined()
        let log = events.map { Self.logLine($0) + "\n" }.joined()
        try? RunFiles.replace(files.events, with: Data(jsonl.utf8))
        try? RunFiles.replace(files.log, with: Data(log.utf8))
    }

    static func append(_ text: String, to path: String) {
        guard let handle = openForAppend(path) else { return }
        defer { try? handle.close() }
        try? handle.write(contentsOf: Data(text.utf8))
    }

    /// RFC 3339 with the local offset, millisecond precision (`2026-11-25T13:54:27.572+01:00`, `Z` in UTC).
    /// Written by hand: a date formatter per call was a quarter of the engine's CPU time.
    public static func timestamp(_ date: Date) -> String {
        let interval = date.timeIntervalSince1970
        var seconds = time_t(interval.rounded(.down))
        let millis = Int((interval - Double(seconds)) * 1000)
        var parts = tm()
        localtime_r(&seconds, &parts)
        let offset = Int(parts.tm_gmtoff)
        var text = ""
        text.reserveCapacity(29)
        func pad(_ n: Int, _ width: Int) {
            let digits = String(n)
            if digits.count < width { text += String(repeating: "0", count: width - digits.count) }
            text += digits
        }
        pad(Int(parts.tm_year) + 1900, 4); text += "-"; pad(Int(parts.tm_mon) + 1, 2); text += "-"; pad(Int(parts.tm_mday), 2)
        text += "T"; pad(Int(parts.tm_hour), 2); text += ":"; pad(Int(parts.tm_min), 2); text += ":"; pad(Int(parts.tm_sec), 2)
        text += "."; pad(min(max(millis, 0), 999), 3)
        if offset == 0 {
            text += "Z"
        } else {
            text += offset < 0 ? "-" : "+"
            pad(abs(offset) / 3600, 2); text += ":"; pad(abs(offset) % 3600 / 60, 2)
        }
        return text
    }

    /// One event as a JSON object on one line, keys sorted.
    public static func jsonLine(_ e: EventRecord) -> String {
        var text = "{\"attempt\":" + (e.attempt.map(String.init) ?? "null")
        text += ",\"attrs\":{"
        text += e.attrs.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }.joined(separator: ",")
        text += "},\"event\":" + jsonString(e.event)
        text += ",\"msg\":" + jsonString(e.message)
        text += ",\"pipeline\":" + jsonString(e.pipeline)
        text += ",\"run_id\":" + jsonString(e.runID.rawValue)
        text += ",\"stage\":" + (e.stage.map(jsonString) ?? "null")
        text += ",\"task\":" + (e.taskID.map { String($0) } ?? "null")
        text += ",\"ts\":" + jsonString(timestamp(e.time)) + "}"
        return text
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20:
                out += "\\u" + String(repeating: "0", count: 4 - String(c.value, radix: 16).count) + String(c.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    public static func logLine(_ e: EventRecord) -> String {
        var where_ = e.stage.map { "[\($0)]" } ?? "[run]"
        if let attempt = e.attempt { where_ += " attempt \(attempt)" }
        return "\(timestamp(e.time)) \(where_) \(e.event): \(e.message)"
    }
}
