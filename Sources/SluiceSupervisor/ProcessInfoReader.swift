import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Reads facts about live processes from /proc (Linux). Every reader returns nil when the process is gone.
public enum ProcFS {
    static let ticksPerSecond: Int64 = {
        let t = Int64(sysconf(Int32(_SC_CLK_TCK)))
        return t > 0 ? t : 100
    }()

    /// The fields of /proc/<pid>/stat a supervisor uses. Read with one `read(2)` and parsed as bytes:
    /// they are read several times per command (Foundation's file reading was a tenth of the run
    /// process's CPU for short commands).
    public struct Stat: Equatable, Sendable {
        /// Process state letter (R, S, D, Z, ...), as a byte.
        public var state: UInt8
        public var group: Int32
        /// User, system, and waited-for children's user and system CPU time, in clock ticks.
        public var cpuTicks: Int64
        /// Start time in clock ticks since boot.
        public var startTicks: Int64

        /// `cpuTicks` in milliseconds.
        public var cpuMilliseconds: Int64 { cpuTicks * 1000 / ProcFS.ticksPerSecond }
    }

    public static func stat(_ pid: Int32) -> Stat? {
        withFile("/proc/\(pid)/stat", capacity: 1024) { bytes -> Stat? in
            // "pid (comm) S ppid pgrp …": the command name may hold spaces and ')', so fields start after
            // the last ')'. Field 3 (the state) is index 0 below.
            guard let paren = bytes.lastIndex(of: UInt8(ascii: ")")), paren + 2 < bytes.count else { return nil }
            let state = bytes[paren + 2]
            var group: Int64 = 0, cpu: Int64 = 0, start: Int64 = 0
            var field = 1, value: Int64 = 0, negative = false
            var i = paren + 4 // the first byte of ppid (index 1)
            while i <= bytes.count {
                let b = i < bytes.count ? bytes[i] : UInt8(ascii: " ")
                if b == UInt8(ascii: " ") || b == UInt8(ascii: "\n") {
                    let v = negative ? -value : value
                    switch field {
                    case 2: group = v
                    case 11...14: cpu += v
                    case 19: start = v
                    default: break
                    }
                    if field == 19 { return Stat(state: state, group: Int32(truncatingIfNeeded: group), cpuTicks: cpu, startTicks: start) }
                    field += 1
                    value = 0
                    negative = false
                } else if b == UInt8(ascii: "-") {
                    negative = true
                } else if b >= 0x30 && b <= 0x39 {
                    value = value &* 10 &+ Int64(b - 0x30)
                }
                i += 1
            }
            return nil
        } ?? nil
    }

    /// Calls `body` with the bytes of a (small, /proc) file, or returns nil when it cannot be read.
    static func withFile<T>(_ path: String, capacity: Int, _ body: (UnsafeBufferPointer<UInt8>) -> T) -> T? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: capacity) { buffer -> T? in
            var n = 0
            while n < buffer.count {
                let got = read(fd, buffer.baseAddress! + n, buffer.count - n)
                if got < 0 && errno == EINTR { continue }
                guard got > 0 else { break }
                n += got
            }
            guard n > 0 else { return nil }
            return body(UnsafeBufferPointer(rebasing: buffer[0..<n]))
        }
    }

    /// Process state letter (R, S, D, Z, ...).
    public static func state(_ pid: Int32) -> Character? {
        stat(pid).map { Character(UnicodeScalar($0.state)) }
    }

    /// Peak resident memory (VmHWM) and current resident memory (VmRSS), in bytes.
    public static func memory(_ pid: Int32) -> (peak: Int64, current: Int64)? {
        withFile("/proc/\(pid)/status", capacity: 4096) { bytes -> (peak: Int64, current: Int64) in
            (kilobytes(after: "VmHWM:", in: bytes) * 1024, kilobytes(after: "VmRSS:", in: bytes) * 1024)
        }
    }

    /// The number after `label` at the start of a line ("VmHWM:\t  1234 kB"), or 0.
    private static func kilobytes(after label: StaticString, in bytes: UnsafeBufferPointer<UInt8>) -> Int64 {
        let tag = UnsafeBufferPointer(start: label.utf8Start, count: label.utf8CodeUnitCount)
        var lineStart = 0
        while lineStart + tag.count <= bytes.count {
            if bytes[lineStart] == tag[0] && zip(tag.indices, tag).allSatisfy({ bytes[lineStart + $0] == $1 }) {
                var value: Int64 = 0
                var i = lineStart + tag.count
                while i < bytes.count, bytes[i] != UInt8(ascii: "\n") {
                    if bytes[i] >= 0x30 && bytes[i] <= 0x39 { value = value &* 10 &+ Int64(bytes[i] - 0x30) }
                    i += 1
                }
                return value
            }
            guard let next = bytes[lineStart...].firstIndex(of: UInt8(ascii: "\n")) else { break }
            lineStart = next + 1
        }
        return 0
    }

    /// Pids of every process in group `pgid`.
    public static func members(ofGroup pgid: Int32) -> [Int32] {
        var found: [Int32] = []
        forEachProcess { pid in
            if getpgid(pid) == pgid { found.append(pid) }
            return true
        }
        return found
    }

    /// Whether a process of group `pgid` is alive (zombies do not count). Runs after every command, so
    /// it asks the kernel for each process's group (`getpgid`, no file opened), reads the state of the
    /// members only, and stops at the first live one.
    public static func hasLiveMember(group pgid: Int32) -> Bool {
        var live = false
        forEachProcess { pid in
            if getpgid(pid) == pgid, let s = stat(pid), s.group == pgid, s.state != UInt8(ascii: "Z") { live = true }
            return !live
        }
        return live
    }

    /// Calls `body` with each pid in /proc until it returns false.
    static func forEachProcess(_ body: (Int32) -> Bool) {
        guard let dir = opendir("/proc") else { return }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let pid: Int32? = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                var value: Int32 = 0
                for byte in raw {
                    if byte == 0 { break }
                    guard byte >= 0x30 && byte <= 0x39, value < 100_000_000 else { return nil }
                    value = value * 10 + Int32(byte - 0x30)
                }
                return value > 0 ? value : nil
            }
            if let pid, !body(pid) { return }
        }
    }

    /// True while any process of the group exists (zombies included).
    public static func groupExists(_ pgid: Int32) -> Bool {
        kill(-pgid, 0) == 0 || errno == EPERM
    }

    /// Whether `pid` is the same live process that started at `startTicks`.
    public static func isAlive(_ pid: Int32, startTicks: Int64?) -> Bool {
        guard let stat = stat(pid), stat.state != UInt8(ascii: "Z") else { return false }
        return startTicks.map { $0 == stat.startTicks } ?? true
    }
}
