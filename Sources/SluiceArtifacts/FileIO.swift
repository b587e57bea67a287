import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A system call failed: which, on which path, and `errno`'s text.
struct IOFailure: Error, CustomStringConvertible {
    var operation: String
    var path: String
    var code: Int32

    init(_ operation: String, _ path: String, _ code: Int32 = errno) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    var description: String { "\(operation) \(path): \(String(cString: strerror(code)))" }
}

/// Points in publishing where a test can make the process kill itself (`SLUICE_ARTIFACTS_CRASH_AT=<point>`),
/// to prove that a SIGKILL anywhere leaves the old or the new state. Not meant for users.
public enum CrashPoint {
    public static let variable = "SLUICE_ARTIFACTS_CRASH_AT"
    public static let all = ["copy-half", "temp-synced", "renamed", "moved-old", "index-temp-written", "index-renamed", "retention"]
    static let armed = ProcessInfo.processInfo.environment[variable]
    /// `SLUICE_ARTIFACTS_FAIL_AT=<point>`: the write at that point fails as on a full disk (ENOSPC).
    public static let failVariable = "SLUICE_ARTIFACTS_FAIL_AT"
    public static let failurePoints = ["copy-half", "moved-old", "index-temp-written"]
    static let failArmed = ProcessInfo.processInfo.environment[failVariable]

    static func here(_ point: String) {
        if armed == point { kill(getpid(), SIGKILL) }
    }

    static func failure(_ point: String, _ path: String) throws(IOFailure) {
        if failArmed == point { throw IOFailure("write", path, ENOSPC) }
    }
}

enum FileIO {
    static let chunk = 1 << 20

    /// The SHA-256 (lowercase hex) and size of a file, read a chunk at a time: constant memory for any size.
    static func sha256(path: String) throws(IOFailure) -> (hash: String, size: Int64) {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw IOFailure("open", path) }
        defer { close(fd) }
        var hasher = SHA256()
        var size: Int64 = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = read(fd, buffer.baseAddress, chunk)
            if n < 0 {
                if errno == EINTR { continue }
                throw IOFailure("read", path)
            }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            size += Int64(n)
        }
        return (hex(hasher.finalize()), size)
    }

    static func hex(_ digest: SHA256.Digest) -> String {
        digest.map { String(format: "%02x", $0) }.joined()
    }

    /// Copies `source` into a new file `temp` (which must not exist), fsyncs it, and returns the hash of
    /// what was written. On failure the temporary file is removed.
    static func copy(from source: String, to temp: String, crashPoints: Bool = false) throws(IOFailure) -> (hash: String, size: Int64) {
        let input = open(source, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        guard input >= 0 else { throw IOFailure("open", source) }
        defer { close(input) }
        let output = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw IOFailure("create", temp) }
        var closed = false
        var done = false
        defer {
            if !closed { close(output) }
            if !done { unlink(temp) }
        }
        var hasher = SHA256()
        var size: Int64 = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = read(input, buffer.baseAddress, chunk)
            if n < 0 {
                if errno == EINTR { continue }
                throw IOFailure("read", source)
            }
            if n == 0 { break }
            var offset = 0
            while offset < n {
                let w = write(output, buffer.baseAddress! + offset, n - offset)
                if w < 0 {
                    if errno == EINTR { continue }
                    throw IOFailure("write", temp)
                }
                offset += w
            }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            size += Int64(n)
            if crashPoints {
                CrashPoint.here("copy-half")
                try CrashPoint.failure("copy-half", temp)
            }
        }
        guard fsync(output) == 0 else { throw IOFailure("fsync", temp) }
        closed = true
        guard close(output) == 0 else { throw IOFailure("close", temp) }
        done = true
        return (hex(hasher.finalize()), size)
    }

    /// Makes a rename or unlink in `directory` durable.
    static func syncDirectory(_ directory: String) throws(IOFailure) {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw IOFailure("open", directory) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw IOFailure("fsync", directory) }
    }

    static func rename(_ from: String, _ to: String) throws(IOFailure) {
        guard Glibc.rename(from, to) == 0 else { throw IOFailure("rename \(from) to", to) }
    }

    /// Writes `data` to `path` atomically: a temporary file in the same folder, fsync, rename, fsync of the folder.
    static func writeAtomically(_ data: Data, to path: String, crashPoint: String? = nil) throws(IOFailure) {
        let directory = (path as NSString).deletingLastPathComponent
        let temp = directory + "/.tmp-" + UUID().uuidString + "-" + (path as NSString).lastPathComponent
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw IOFailure("create", temp) }
        var ok = false
        defer { if !ok { unlink(temp) } }
        let written: Int = data.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let w = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
                if w < 0 { if errno == EINTR { continue }; return -1 }
                offset += w
            }
            return offset
        }
        if written < 0 { let code = errno; close(fd); throw IOFailure("write", temp, code) }
        if fsync(fd) != 0 { let code = errno; close(fd); throw IOFailure("fsync", temp, code) }
        guard close(fd) == 0 else { throw IOFailure("close", temp) }
        if let crashPoint {
            CrashPoint.here(crashPoint)
            try CrashPoint.failure(crashPoint, temp)
        }
        try rename(temp, path)
        ok = true
        try syncDirectory(directory)
    }

    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }

    static func isSymlink(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK
    }

    static func isRegularFile(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    /// The real path (symlinks resolved) of an existing path.
    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Names in a directory (not `.`/`..`); an unreadable directory throws.
    static func list(_ directory: String) throws(IOFailure) -> [String] {
        guard let dir = opendir(directory) else { throw IOFailure("read folder", directory) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    static func makeDirectory(_ path: String) throws(IOFailure) {
        if mkdir(path, 0o755) != 0 && errno != EEXIST { throw IOFailure("create folder", path) }
    }
}

/// An exclusive `flock` on a file, held until `release()` (or the process ends).
final class FileLock {
    private let fd: Int32

    init(_ path: String) throws(IOFailure) {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw IOFailure("open lock", path) }
        while flock(fd, LOCK_EX) != 0 {
            if errno == EINTR { continue }
            let code = errno
            close(fd)
            throw IOFailure("lock", path, code)
        }
    }

    func release() { close(fd) }
}
