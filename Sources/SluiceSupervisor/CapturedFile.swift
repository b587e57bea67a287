import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A log file a child process writes to directly (its stdout or stderr is the file, no pipe): nothing
/// passes through this process while the command runs. Opened for appending, so the cap can be kept
/// by cutting the file back while the child writes: at most `limit` bytes stay, followed by a note,
/// and the bytes cut are counted. The watcher looks at it every tick (`check`), and once at the end.
final class CapturedFile: Sendable {
    let fd: Int32
    let limit: Int64
    private struct State {
        var size: Int64 = 0
        var discarded: Int64 = 0
        /// Where the kept part ends once the cap was reached (the limit plus the note).
        var keptEnd: Int64?
    }
    private let state = Mutex(State())

    init(path: String, limit: Int64) throws {
        fd = try openLog(path, flags: O_RDWR | O_APPEND) // read back once the command ended
        self.limit = limit
    }

    /// Looks at the file's size: true when it grew since the last look. Cuts it back to the cap.
    @discardableResult
    func check() -> Bool {
        var info = stat()
        guard fstat(fd, &info) == 0 else { return false }
        let size = Int64(info.st_size)
        return state.withLock { s in
            let grew = size != s.size
            if let end = s.keptEnd {
                if size > end {
                    s.discarded += size - end
                    _ = ftruncate(fd, off_t(end))
                }
                s.size = end
            } else if size > limit {
                s.discarded += size - limit
                _ = ftruncate(fd, off_t(limit))
                let written = truncationNote(limit: limit).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
                s.keptEnd = limit + Int64(max(0, written))
                s.size = s.keptEnd!
            } else {
                s.size = size
            }
            return grew
        }
    }

    /// Bytes the child wrote, kept or not (as of the last `check`).
    var total: Int64 { state.withLock { s in Self.kept(s, limit: limit) + s.discarded } }

    /// The kept bytes' size (without the note).
    var keptSize: Int64 { state.withLock { Self.kept($0, limit: limit) } }

    private static func kept(_ s: State, limit: Int64) -> Int64 { s.keptEnd == nil ? s.size : limit }

    /// The bytes kept, from `offset` to the end of the kept part (not the note).
    func read(from offset: Int64 = 0, maxBytes: Int = .max) -> [UInt8] {
        let end = keptSize
        let start = max(0, min(offset, end))
        let count = Int(min(Int64(maxBytes), end - start))
        guard count > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(start) + off_t(done)) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            done += n
        }
        return Array(bytes.prefix(done))
    }

    func close() { _ = Glibc.close(fd) }
}

/// Tells when a process exited, through its pidfd (readable once the process ends): the watcher wakes
/// at once instead of at its next tick. Without a pidfd (kernels before 5.4), `available` is false and
/// the watcher looks for the exit in /proc, soon after the start and then less and less often.
final class ExitWatch: Sendable {
    private final class Shared: @unchecked Sendable {
        let exited = Atomic<Bool>(false)
        private let lock = NSLock()
        private var source: (any DispatchSourceRead)?

        func hold(_ source: any DispatchSourceRead) { lock.withLock { self.source = source } }

        /// Cancels the source and lets it go (its handlers hold this object: the cycle ends here). Called
        /// by its own handler at the first event (the pidfd stays readable), or when the watch ends.
        func cancel() {
            let source = lock.withLock { () -> (any DispatchSourceRead)? in
                defer { self.source = nil }
                return self.source
            }
            source?.cancel()
        }
    }
    private let shared = Shared()
    let available: Bool
    /// The process's own pidfd (Subprocess's, open while the watch runs), or -1.
    let pidfd: Int32

    init(pidfd: Int32, wake: Nudge) {
        self.pidfd = pidfd
        let fd = pidfd >= 0 ? fcntl(pidfd, F_DUPFD_CLOEXEC, 0) : -1
        available = fd >= 0
        guard fd >= 0 else { return }
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: .global())
        let shared = self.shared
        shared.hold(source)
        source.setEventHandler {
            shared.exited.store(true, ordering: .releasing)
            wake.nudge()
            shared.cancel()
        }
        source.setCancelHandler { _ = Glibc.close(fd) }
        source.resume()
    }

    var exited: Bool { shared.exited.load(ordering: .acquiring) }

    func stop() { shared.cancel() }
}
