import CProcessUsage
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// What the stream readers and the watcher of one process share.
final class WatchState: Sendable {
    struct Values {
        var lastOutput = ContinuousClock.now
        var completedLine: String?
        var stopReason: ProcessEnding?
        var stderrTail: [String] = []
        var cpuMs: Int64?
        var peakRSS: Int64 = 0
        var streamsEnded = 0
        /// The command writes into files (`outputIsFiles`), not pipes.
        var toFiles = false
    }

    private let values = Mutex(Values())
    /// Wakes the watcher before its next tick (output ended, a completion line was seen).
    let wake = Nudge()

    /// Sleeps one tick, or less when woken.
    func pause(_ tick: Duration) async { await wake.wait(upTo: tick) }

    private let files = Mutex<[CapturedFile]>([])

    /// The command writes into these files, not into pipes: nothing holds its output open for a reader.
    func outputIsFiles(_ captured: [CapturedFile]) {
        files.withLock { $0 = captured }
        values.withLock { $0.toFiles = true }
    }

    /// Looks at the files the command writes into: true when one grew.
    func checkFiles() -> Bool {
        files.withLock { $0 }.reduce(false) { grew, file in file.check() || grew }
    }

    /// A reader reached the end of its stream (stdout or stderr).
    func streamEnded() {
        values.withLock { $0.streamsEnded += 1 }
        wake.nudge()
    }

    /// Nothing holds the task's output open: it goes to files, or both pipes reached their end.
    var outputClosed: Bool { values.withLock { $0.toFiles || $0.streamsEnded >= 2 } }

    func touch() { values.withLock { $0.lastOutput = ContinuousClock.now } }
    var lastOutput: ContinuousClock.Instant { values.withLock { $0.lastOutput } }
    var completedLine: String? { values.withLock { $0.completedLine } }
    var stopReason: ProcessEnding? { values.withLock { $0.stopReason } }

    func complete(_ line: String) {
        values.withLock { if $0.completedLine == nil { $0.completedLine = line } }
        wake.nudge()
    }

    func setStopReason(_ reason: ProcessEnding) {
        values.withLock { if $0.stopReason == nil { $0.stopReason = reason } }
    }

    func stderrLine(_ line: String) {
        let clipped = line.count > 500 ? String(line.prefix(500)) + "…" : line
        values.withLock {
            $0.stderrTail.append(clipped)
            if $0.stderrTail.count > 20 { $0.stderrTail.removeFirst($0.stderrTail.count - 20) }
        }
    }

    /// Samples CPU time and memory of the main process and, when `group` is set, the resident memory of its whole group.
    func sample(pid: Int32, group: Bool, stat: ProcFS.Stat? = nil) {
        let cpu = (stat ?? ProcFS.stat(pid))?.cpuMilliseconds
        var peak = ProcFS.memory(pid)?.peak ?? 0
        if group {
            let members = ProcFS.members(ofGroup: pid)
            if members.count > 1 {
                peak = max(peak, members.reduce(0) { $0 + (ProcFS.memory($1)?.current ?? 0) })
            }
        }
        values.withLock {
            if let cpu { $0.cpuMs = max($0.cpuMs ?? 0, cpu) }
            $0.peakRSS = max($0.peakRSS, peak)
        }
    }

    /// The exited (not yet reaped) main process's peak resident memory, from the kernel's accounting.
    func exited(pid: Int32, pidfd: Int32) {
        let kilobytes = sluice_exited_child_maxrss_kb(pidfd, pid)
        guard kilobytes > 0 else { return }
        values.withLock { $0.peakRSS = max($0.peakRSS, Int64(kilobytes) * 1024) }
    }

    func report(wallMs: Int64, stdoutBytes: Int64, stderrBytes: Int64, pid: Int32) -> ProcessReport {
        values.withLock {
            ProcessReport(ending: .exited(0), exitCode: nil, signal: nil, wallMs: wallMs, cpuMs: $0.cpuMs,
                          peakRSSBytes: $0.peakRSS > 0 ? $0.peakRSS : nil, stdoutBytes: stdoutBytes,
                          stderrBytes: stderrBytes, stderrTail: $0.stderrTail, pid: pid)
        }
    }
}

/// Splits a byte stream into lines (for the line protocol, completion patterns and the stderr tail).
/// Lines are read from a moving start index and the consumed bytes dropped once per chunk, so a chunk
/// of many lines costs linear time.
struct LineSplitter {
    private var buffer: [UInt8] = []
    private var start = 0

    mutating func append(_ bytes: UnsafeRawBufferPointer) {
        if start > 0 {
            buffer.removeFirst(start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
        // A line longer than 1 MiB is cut: only its last 4 KiB are kept.
        if buffer.count > 1 << 20 && !buffer.contains(10) { buffer.removeFirst(buffer.count - 4096) }
    }

    mutating func next() -> String? {
        guard let newline = buffer[start...].firstIndex(of: 10) else { return nil }
        var end = newline
        if end > start && buffer[end - 1] == 13 { end -= 1 }
        let line = String(decoding: buffer[start..<end], as: UTF8.self)
        start = newline + 1
        return line
    }

    mutating func rest() -> String? {
        defer { buffer.removeAll(); start = 0 }
        return start >= buffer.count ? nil : String(decoding: buffer[start...], as: UTF8.self)
    }

    /// Appends `bytes` and hands every complete line to `body`.
    mutating func feed(_ bytes: UnsafeRawBufferPointer, _ body: (String) -> Void) {
        append(bytes)
        while let line = next() { body(line) }
    }

    /// Hands the unfinished last line, if any, to `body` (at the end of the stream).
    mutating func finish(_ body: (String) -> Void) {
        if let line = rest() { body(line) }
    }
}

/// Opens a task's log file (truncated), creating its folder when it is the first log there (not looked
/// for per task: two logs per command).
func openLog(_ path: String, flags: Int32) throws -> Int32 {
    let flags = flags | O_CREAT | O_TRUNC | O_CLOEXEC
    var fd = open(path, flags, 0o644)
    if fd < 0 && errno == ENOENT {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        fd = open(path, flags, 0o644)
    }
    if fd < 0 { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    return fd
}

/// The line that ends a log cut at `limit` bytes.
func truncationNote(limit: Int64) -> [UInt8] {
    Array("\n[sluice: log truncated at \(limit) bytes; the rest of the output was counted but not kept]\n".utf8)
}

/// An append-only log file that keeps at most `limit` bytes and counts the rest.
final class LogFile: @unchecked Sendable {
    private let fd: Int32
    private let limit: Int64
    private let counters = Mutex((total: Int64(0), truncated: false))

    init(path: String, limit: Int64) throws {
        fd = try openLog(path, flags: O_WRONLY)
        self.limit = limit
    }

    var total: Int64 { counters.withLock { $0.total } }

    func write(_ bytes: UnsafeRawBufferPointer) {
        let (allowed, markTruncated): (Int, Bool) = counters.withLock { c in
            let room = max(0, limit - c.total)
            c.total += Int64(bytes.count)
            let allowed = Int(min(Int64(bytes.count), room))
            let mark = allowed < bytes.count && !c.truncated
            if mark { c.truncated = true }
            return (allowed, mark)
        }
        if allowed > 0, let base = bytes.baseAddress { writeAll(base, allowed) }
        if markTruncated {
            truncationNote(limit: limit).withUnsafeBytes { p in
                p.baseAddress.map { writeAll($0, p.count) }
            }
        }
    }

    private func writeAll(_ base: UnsafeRawPointer, _ count: Int) {
        var offset = 0
        while offset < count {
            let n = Glibc.write(fd, base + offset, count - offset)
            if n <= 0 { if errno == EINTR { continue }; return }
            offset += n
        }
    }

    func close() { _ = Glibc.close(fd) }
}
