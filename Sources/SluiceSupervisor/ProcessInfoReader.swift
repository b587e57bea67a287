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

    /// Fields of /proc/<pid>/stat after the command name, so field 3 (state) is index 0.
    static func statFields(_ pid: Int32) -> [Substring]? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        return text[text.index(after: close)...].split(separator: " ")
    }

    /// Process state letter (R, S, D, Z, ...).
    public static func state(_ pid: Int32) -> Character? {
        statFields(pid)?.first?.first
    }

    /// The process start time in clock ticks since boot: with the pid, it names one process for good.
    public static func startTicks(_ pid: Int32) -> Int64? {
        guard let f = statFields(pid), f.count > 19 else { return nil }
        return Int64(f[19])
    }

    /// User + system CPU time of the process and its waited-for children, in milliseconds.
    public static func cpuMilliseconds(_ pid: Int32) -> Int64? {
        guard let f = statFields(pid), f.count > 14,
              let u = Int64(f[11]), let s = Int64(f[12]), let cu = Int64(f[13]), let cs = Int64(f[14]) else { return nil }
        return (u + s + cu + cs) * 1000 / ticksPerSecond
    }

    /// Peak resident memory (VmHWM) and current resident memory (VmRSS), in bytes.
    public static func memory(_ pid: Int32) -> (peak: Int64, current: Int64)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        var peak: Int64 = 0, current: Int64 = 0
        for line in text.split(separator: "\n") {
            if line.hasPrefix("VmHWM:") { peak = kilobytes(line) }
            else if line.hasPrefix("VmRSS:") { current = kilobytes(line) }
        }
        return (peak, current)
    }

    private static func kilobytes(_ line: Substring) -> Int64 {
        (line.split(separator: " ").dropFirst().first.flatMap { Int64($0) } ?? 0) * 1024
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
            if getpgid(pid) == pgid, let s = stateAndGroup(pid), s.group == pgid, s.state != UInt8(ascii: "Z") { live = true }
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

    /// The state letter and process group of `pid` from /proc/<pid>/stat, parsed as bytes.
    static func stateAndGroup(_ pid: Int32) -> (state: UInt8, group: Int32)? {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1024) { buffer -> (state: UInt8, group: Int32)? in
            let n = read(fd, buffer.baseAddress, buffer.count)
            guard n > 0 else { return nil }
            let bytes = UnsafeBufferPointer(rebasing: buffer[0..<n])
            // "pid (comm) S ppid pgrp …": the command name may hold spaces and ')', so fields start after the last ')'.
            guard let paren = bytes.lastIndex(of: UInt8(ascii: ")")), paren + 2 < n else { return nil }
            let state = bytes[paren + 2]
            var i = paren + 4  // the first digit of ppid
            var field = 0  // 0: ppid, 1: pgrp
            var value: Int32 = 0
            var negative = false
            while i < n {
                let b = bytes[i]
                if b == UInt8(ascii: " ") {
                    if field == 1 { return (state, negative ? -value : value) }
                    field += 1
                    value = 0
                    negative = false
                } else if b == UInt8(ascii: "-") {
                    negative = true
                } else if b >= 0x30 && b <= 0x39 {
                    value = value &* 10 &+ Int32(b - 0x30)
                }
                i += 1
            }
            return nil
        }
    }

    /// True while any process of the group exists (zombies included).
    public static func groupExists(_ pgid: Int32) -> Bool {
        kill(-pgid, 0) == 0 || errno == EPERM
    }

    /// Whether `pid` is the same live process that started at `startTicks`.
    public static func isAlive(_ pid: Int32, startTicks: Int64?) -> Bool {
        guard let state = state(pid), state != "Z" else { return false }
        guard let startTicks else { return true }
        return self.startTicks(pid) == startTicks
    }
}
