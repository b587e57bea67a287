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

    /// Replaces a derived file (events, log, report) whole: written beside it, then renamed over it, so a
    /// reader sees the old file or the new one, never half of one. Not fsynced (Foundation's `.atomic`
    /// is, ~0.5 ms per file at every run's end): these files are rewritten from the store, which is
    /// what is durable.
    public static func replace(_ path: String, with data: Data) throws(EngineError) {
        func failed(_ what: String, _ code: Int32) -> EngineError {
            EngineError(.io, "cannot \(what) '\(path)': \(String(cString: strerror(code)))",
                        hint: "check that the run folder is writable and the disk is not full; `sluice show` reads the run from the store")
        }
        let temporary = path + ".writing-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failed("create a file beside", errno) }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        do {
            try handle.write(contentsOf: data)
            try handle.close()
        } catch {
            unlink(temporary)
            throw EngineError(.io, "cannot write '\(path)': \(error.localizedDescription)",
                              hint: "check that the disk is not full; `sluice show` reads the run from the store")
        }
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw failed("replace", code)
        }
    }
}
