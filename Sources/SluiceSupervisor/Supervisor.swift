import Foundation
import SluiceCore
import Subprocess
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// What to run and how to watch it.
public struct CommandInvocation: Sendable {
    /// argv; `arguments[0]` is the program (a name looked up on PATH, or a path relative to `workingDirectory`).
    public var arguments: [String]
    /// The complete environment of the child.
    public var environment: [String: String]
    public var workingDirectory: String
    public var stdoutPath: String
    public var stderrPath: String
    /// Bytes kept per stream; the rest is counted but not written.
    public var logLimit: Int64
    public var timeout: Duration?
    public var hangAfter: Duration?
    public var doneWhen: String?
    /// Time between SIGTERM and SIGKILL.
    public var grace: Duration
    /// Whether stdout's lines are needed while the command runs (a producer's items are scheduled as
    /// they come): its output then passes through pipes. Otherwise (and without `doneWhen`) the command
    /// writes straight into its log files, and its stdout lines are read from the file once it ended.
    public var liveOutput: Bool

    public init(arguments: [String], environment: [String: String], workingDirectory: String,
                stdoutPath: String, stderrPath: String, logLimit: Int64 = 64 << 20,
                timeout: Duration? = nil, hangAfter: Duration? = nil, doneWhen: String? = nil,
                grace: Duration = .seconds(10), liveOutput: Bool = false) {
        self.liveOutput = liveOutput
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
        self.logLimit = logLimit
        self.timeout = timeout
        self.hangAfter = hangAfter
        self.doneWhen = doneWhen
        self.grace = grace
    }
}

/// How a supervised process ended.
public enum ProcessEnding: Sendable, Hashable {
    case exited(Int32)
    case signalled(Int32)
    case timedOut
    case hung
    /// `done_when` matched this line.
    case completed(line: String)
    case stopped
    case spawnFailed(String)
}

/// Everything measured about one supervised process.
public struct ProcessReport: Sendable {
    public var ending: ProcessEnding
    public var exitCode: Int32?
    public var signal: Int32?
    public var wallMs: Int64
    public var cpuMs: Int64?
    public var peakRSSBytes: Int64?
    public var stdoutBytes: Int64
    public var stderrBytes: Int64
    /// The last lines of stderr (at most 20).
    public var stderrTail: [String]
    public var pid: Int32?

    public init(ending: ProcessEnding, exitCode: Int32?, signal: Int32?, wallMs: Int64, cpuMs: Int64?,
                peakRSSBytes: Int64?, stdoutBytes: Int64, stderrBytes: Int64, stderrTail: [String], pid: Int32?) {
        self.ending = ending
        self.exitCode = exitCode
        self.signal = signal
        self.wallMs = wallMs
        self.cpuMs = cpuMs
        self.peakRSSBytes = peakRSSBytes
        self.stdoutBytes = stdoutBytes
        self.stderrBytes = stderrBytes
        self.stderrTail = stderrTail
        self.pid = pid
    }
}

/// Asks running work to stop (Ctrl-C, `sluice cancel`): a supervised process, or an in-process
/// stage through `wait()`.
public final class StopSignal: Sendable {
    private let state = Mutex<(requested: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    public init() {}

    public func request() {
        let waiters = state.withLock { s in
            s.requested = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    public var isRequested: Bool { state.withLock { $0.requested } }

    /// Returns once a stop is requested, or when the calling task is cancelled.
    public func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if s.requested || Task.isCancelled { return true }
                    s.waiters.append(continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiters = state.withLock { s in
                defer { s.waiters = [] }
                return s.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
    }
}

/// Wakes its waiters when something happened (new items to claim); a nudge with nobody waiting is kept
/// for the next one. Any number of tasks may wait at once; a cancelled waiter returns at once.
public final class Nudge: Sendable {
    private struct State {
        var pending = false
        var next: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    public init() {}

    public func nudge() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            if s.waiters.isEmpty { s.pending = true; return [] }
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns at the next nudge (at once if one is pending), after `timeout`, or when the calling task
    /// is cancelled.
    public func wait(upTo timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.wait() }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }

    /// Returns at the next nudge (at once if one is pending), or when the calling task is cancelled.
    public func wait() async {
        let id = state.withLock { s -> UInt64 in
            s.next += 1
            return s.next
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { s -> Bool in
                    if s.pending || Task.isCancelled { s.pending = false; return true }
                    s.waiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: id) }?.resume()
        }
    }
}

/// Runs commands in their own process group, streams their output to log files, and stops the whole
/// group (SIGTERM, grace period, SIGKILL) on timeout, hang, completion pattern or request.
public struct Supervisor: Sendable {
    /// How often timeouts, hangs and stop requests are checked, and resources sampled.
    public var tick: Duration

    public init(tick: Duration = .milliseconds(50)) { self.tick = tick }

    /// - Parameter onStdoutLine: called with each line of stdout (without its newline), for line protocols.
    public func run(_ invocation: CommandInvocation, stop: StopSignal,
                    onStdoutLine: (@Sendable (String) -> Void)? = nil,
                    onStart: @escaping @Sendable (_ pid: Int32, _ startTicks: Int64?) async -> Void = { _, _ in }) async -> ProcessReport {
        let started = ContinuousClock.now
        func elapsedMs() -> Int64 { (ContinuousClock.now - started).milliseconds }
        guard let program = invocation.arguments.first else {
            return Self.failure("the command is empty", started: started)
        }
        let executable: Executable
        if program.contains("/") {
            let path = program.hasPrefix("/") ? program : (invocation.workingDirectory as NSString).appendingPathComponent(program)
            guard FileManager.default.isExecutableFile(atPath: path) else {
                let exists = FileManager.default.fileExists(atPath: path)
                return Self.failure(exists ? "'\(program)' is not executable (chmod +x it, or run it through its interpreter)"
                                           : "'\(program)' does not exist (looked in \(invocation.workingDirectory))", started: started)
            }
            executable = .path(FilePath(path))
        } else {
            // Found here, once: swift-subprocess would try to spawn the name in every PATH folder in turn
            // (a vfork and a failed exec per folder before the right one).
            let searched = invocation.environment["PATH"] ?? ProcessInfo.processInfo.environment["PATH"]
            guard let path = Self.lookUp(program, path: searched) else {
                return Self.failure(Self.notFound(program, path: searched), started: started)
            }
            executable = .path(FilePath(path))
        }
        var env: [Environment.Key: String] = [:]
        for (k, v) in invocation.environment {
            if let key = Environment.Key(rawValue: k) { env[key] = v }
        }
        var options = PlatformOptions()
        options.processGroupID = 0 // its own group, so the whole tree can be signalled

        let state = WatchState()
        let tick = self.tick
        let ended: Ended
        do {
            if invocation.liveOutput || invocation.doneWhen != nil {
                ended = try await Self.runPiped(executable, env: env, options: options, invocation: invocation, state: state,
                                                stop: stop, tick: tick, started: started, onStdoutLine: onStdoutLine, onStart: onStart)
            } else {
                ended = try await Self.runToFiles(executable, env: env, options: options, invocation: invocation, state: state,
                                                  stop: stop, tick: tick, started: started, onStdoutLine: onStdoutLine, onStart: onStart)
            }
        } catch let error as LogFileError {
            return Self.failure("cannot write the task's log files: \(error.underlying)", started: started)
        } catch let error as SubprocessError {
            return Self.failure(Self.describe(error, program: program, invocation: invocation), started: started)
        } catch {
            return Self.failure("the command could not be started: \(error)", started: started)
        }
        let pid = ended.pid
        // The main process is reaped: any process still in its group (a background job that let go of
        // the output) is a leftover, stopped with the task. One `kill(-pgid, 0)` when there is none.
        if ProcFS.groupExists(pid) { await Self.terminateGroup(pid, grace: invocation.grace, tick: tick) }
        var report = state.report(wallMs: elapsedMs(), stdoutBytes: ended.stdoutBytes, stderrBytes: ended.stderrBytes, pid: pid)
        let exitCode: Int32?, signal: Int32?
        switch ended.status {
        case .exited(let code): exitCode = code; signal = nil
        case .signaled(let sig): exitCode = nil; signal = sig
        }
        report.exitCode = exitCode
        report.signal = signal
        if let reason = state.stopReason {
            report.ending = reason
        } else if let line = state.completedLine {
            // The pattern matched, and the process ended before the watcher stopped it.
            report.ending = .completed(line: line)
        } else if let exitCode {
            report.ending = .exited(exitCode)
        } else {
            report.ending = .signalled(signal ?? 0)
        }
        return report
    }

    struct LogFileError: Error { var underlying: any Error }

    /// How a command ended, whichever way its output was captured.
    struct Ended {
        var pid: Int32
        var status: TerminationStatus
        var stdoutBytes: Int64
        var stderrBytes: Int64
    }

    /// Right after the spawn: the process's start time (with its pid, it names it for good), a first
    /// sample (a process that ends before the watcher's first tick is measured too), then `onStart`.
    static func spawned(_ pid: Int32, state: WatchState,
                        onStart: @Sendable (_ pid: Int32, _ startTicks: Int64?) async -> Void) async {
        let stat = ProcFS.stat(pid)
        state.sample(pid: pid, group: false, stat: stat)
        await onStart(pid, stat?.startTicks)
    }

    /// The command writes into its log files itself; its stdout lines (the line protocol) and the tail
    /// of stderr are read from the files once it ended.
    static func runToFiles(_ executable: Executable, env: [Environment.Key: String], options: PlatformOptions,
                           invocation: CommandInvocation, state: WatchState, stop: StopSignal, tick: Duration,
                           started: ContinuousClock.Instant, onStdoutLine: (@Sendable (String) -> Void)?,
                           onStart: @escaping @Sendable (_ pid: Int32, _ startTicks: Int64?) async -> Void)
    async throws -> Ended {
        let stdoutFile: CapturedFile, stderrFile: CapturedFile
        do {
            stdoutFile = try CapturedFile(path: invocation.stdoutPath, limit: invocation.logLimit)
            do { stderrFile = try CapturedFile(path: invocation.stderrPath, limit: invocation.logLimit) } catch {
                stdoutFile.close()
                throw error
            }
        } catch { throw LogFileError(underlying: error) }
        defer { stdoutFile.close(); stderrFile.close() }
        state.outputIsFiles([stdoutFile, stderrFile])
        let result = try await Subprocess.run(
            executable, arguments: Arguments(Array(invocation.arguments.dropFirst())),
            environment: .custom(env), workingDirectory: FilePath(invocation.workingDirectory),
            platformOptions: options, input: .none,
            output: .fileDescriptor(FileDescriptor(rawValue: stdoutFile.fd), closeAfterSpawningProcess: false),
            error: .fileDescriptor(FileDescriptor(rawValue: stderrFile.fd), closeAfterSpawningProcess: false)
        ) { execution in
            let pid = execution.processIdentifier.value
            let exit = ExitWatch(pidfd: execution.processIdentifier.processDescriptor, wake: state.wake)
            defer { exit.stop() }
            await Self.spawned(pid, state: state, onStart: onStart)
            await Self.watch(pid: pid, invocation: invocation, state: state, stop: stop, tick: tick, started: started, exit: exit)
        }
        stdoutFile.check()
        stderrFile.check()
        if let onStdoutLine {
            // The line protocol, read back in pieces (the kept part: at most the log limit).
            var lines = LineSplitter()
            var offset: Int64 = 0
            while true {
                let chunk = stdoutFile.read(from: offset, maxBytes: 1 << 16)
                if chunk.isEmpty { break }
                offset += Int64(chunk.count)
                chunk.withUnsafeBytes { lines.feed($0, onStdoutLine) }
            }
            lines.finish(onStdoutLine)
        }
        // The tail of stderr: its last lines, from the last 16 KiB kept.
        let kept = stderrFile.keptSize
        if kept > 0 {
            var lines = LineSplitter()
            var tail = stderrFile.read(from: max(0, kept - (16 << 10)))
            if kept > 16 << 10, let newline = tail.firstIndex(of: UInt8(ascii: "\n")) { tail.removeFirst(newline + 1) }
            tail.withUnsafeBytes { lines.feed($0, state.stderrLine) }
            lines.finish(state.stderrLine)
        }
        return Ended(pid: result.processIdentifier.value, status: result.terminationStatus,
                     stdoutBytes: stdoutFile.total, stderrBytes: stderrFile.total)
    }

    /// The command's output passes through pipes, read as it comes: for `doneWhen` and for stdout lines
    /// needed while it runs.
    static func runPiped(_ executable: Executable, env: [Environment.Key: String], options: PlatformOptions,
                         invocation: CommandInvocation, state: WatchState, stop: StopSignal, tick: Duration,
                         started: ContinuousClock.Instant, onStdoutLine: (@Sendable (String) -> Void)?,
                         onStart: @escaping @Sendable (_ pid: Int32, _ startTicks: Int64?) async -> Void)
    async throws -> Ended {
        let donePattern = invocation.doneWhen
        let stdoutLog: LogFile
        let stderrLog: LogFile
        do {
            stdoutLog = try LogFile(path: invocation.stdoutPath, limit: invocation.logLimit)
            stderrLog = try LogFile(path: invocation.stderrPath, limit: invocation.logLimit)
        } catch { throw LogFileError(underlying: error) }
        defer { stdoutLog.close(); stderrLog.close() }
        let result = try await Subprocess.run(
            executable, arguments: Arguments(Array(invocation.arguments.dropFirst())),
            environment: .custom(env), workingDirectory: FilePath(invocation.workingDirectory),
            platformOptions: options, input: .none, output: .sequence, error: .sequence
        ) { execution in
            let pid = execution.processIdentifier.value
            await Self.spawned(pid, state: state, onStart: onStart)
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    var lines = LineSplitter()
                    let doneRegex = donePattern.flatMap { try? Regex($0) }
                    func handle(_ line: String) {
                        onStdoutLine?(line)
                        if let doneRegex, (try? doneRegex.firstMatch(in: line)) != nil { state.complete(line) }
                    }
                    do {
                        for try await chunk in execution.standardOutput {
                            chunk.withUnsafeBytes { stdoutLog.write($0) }
                            state.touch()
                            if doneRegex != nil || onStdoutLine != nil { chunk.withUnsafeBytes { lines.feed($0, handle) } }
                        }
                        lines.finish(handle)
                    } catch {}
                    state.streamEnded() // end of output: the process has most likely exited
                }
                group.addTask {
                    var lines = LineSplitter()
                    let doneRegex = donePattern.flatMap { try? Regex($0) }
                    func handle(_ line: String) {
                        state.stderrLine(line)
                        if let doneRegex, (try? doneRegex.firstMatch(in: line)) != nil { state.complete(line) }
                    }
                    do {
                        for try await chunk in execution.standardError {
                            chunk.withUnsafeBytes { stderrLog.write($0); lines.feed($0, handle) }
                            state.touch()
                        }
                        lines.finish(handle)
                    } catch {}
                    state.streamEnded()
                }
                group.addTask {
                    await Self.watch(pid: pid, invocation: invocation, state: state, stop: stop, tick: tick, started: started)
                }
                await group.waitForAll()
            }
        }
        return Ended(pid: result.processIdentifier.value, status: result.terminationStatus,
                     stdoutBytes: stdoutLog.total, stderrBytes: stderrLog.total)
    }

    static func notFound(_ program: String, path: String?) -> String {
        "command '\(program)' was not found on PATH (\(path ?? "PATH is not set: /usr/bin:/bin were searched")); "
            + "install it, or give its path in the stage's `run` (for example ./\(program) or /usr/local/bin/\(program))"
    }

    /// The first file named `program` that may be executed in a folder of `path` (a `PATH` value):
    /// relative and empty entries are ignored (a command never resolves against a working folder),
    /// folders and files without execute permission are skipped. Nil when there is none.
    public static func lookUp(_ program: String, path: String?) -> String? {
        for folder in (path ?? "/usr/bin:/bin").split(separator: ":") where folder.hasPrefix("/") {
            let candidate = "\(folder)/\(program)"
            var info = stat()
            guard stat(candidate, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG, access(candidate, X_OK) == 0 else { continue }
            return candidate
        }
        return nil
    }

    static func describe(_ error: SubprocessError, program: String, invocation: CommandInvocation) -> String {
        switch error.code {
        case .executableNotFound:
            return notFound(program, path: invocation.environment["PATH"])
        case .failedToChangeWorkingDirectory:
            return "the working directory '\(invocation.workingDirectory)' does not exist or cannot be entered"
        default:
            return "the command '\(program)' could not be started: \(error)"
        }
    }

    static func failure(_ message: String, started: ContinuousClock.Instant) -> ProcessReport {
        ProcessReport(ending: .spawnFailed(message), exitCode: nil, signal: nil,
                      wallMs: (ContinuousClock.now - started).milliseconds, cpuMs: nil, peakRSSBytes: nil,
                      stdoutBytes: 0, stderrBytes: 0, stderrTail: [message], pid: nil)
    }

    /// Watches the process: stop requests, timeout, hang, completion; samples CPU and memory; once the
    /// main process is gone, stops what is left of its group so no grandchild outlives the task.
    static func watch(pid: Int32, invocation: CommandInvocation, state: WatchState, stop: StopSignal,
                      tick: Duration, started: ContinuousClock.Instant, exit: ExitWatch? = nil) async {
        // Resources are sampled at spawn and then every 200 ms (the group's members once a second):
        // reading /proc every tick was a large share of a short command's cost.
        var lastSample = ContinuousClock.now
        var lastGroupSample = ContinuousClock.now
        // Without a pidfd nothing wakes the watcher when a command that writes to files exits: it looks
        // 1 ms after the start, then twice as long each time, up to a tick.
        var pause = exit.map { $0.available } == false ? min(.milliseconds(1), tick) : tick
        while true {
            let now = ContinuousClock.now
            // Output written straight to files counts as output when they grew (hang detection); the
            // cap is kept here too.
            if state.checkFiles() { state.touch() }
            let mainGone: Bool
            if exit?.exited == true {
                mainGone = true
            } else {
                let procState = ProcFS.state(pid)
                mainGone = procState == nil || procState == "Z"
            }
            if !mainGone && now - lastSample >= .milliseconds(200) {
                let group = now - lastGroupSample >= .seconds(1)
                state.sample(pid: pid, group: group)
                lastSample = now
                if group { lastGroupSample = now }
            }
            if mainGone {
                // Its peak memory as the kernel counted it: a command shorter than the sampling interval,
                // or one that grew after the last sample, was reported below its peak. It is not reaped
                // yet (Subprocess reaps it once the watch is over).
                state.exited(pid: pid, pidfd: exit?.pidfd ?? -1)
                // Leftover members of the group (daemons, background jobs) are stopped with the task: here
                // when they hold its output open (the readers would wait for them forever), otherwise once
                // the main process is reaped (`run`). Looking for them here, next to the unreaped main
                // process, meant reading /proc after every command.
                if !state.outputClosed, ProcFS.groupExists(pid) { await terminateGroup(pid, grace: invocation.grace, tick: tick) }
                return
            }
            var reason: ProcessEnding?
            if stop.isRequested { reason = .stopped }
            else if let line = state.completedLine { reason = .completed(line: line) }
            else if let timeout = invocation.timeout, now - started >= timeout { reason = .timedOut }
            else if let hang = invocation.hangAfter, now - state.lastOutput >= hang { reason = .hung }
            if let reason {
                state.setStopReason(reason)
                await terminateGroup(pid, grace: invocation.grace, tick: tick)
                return
            }
            await state.pause(pause)
            pause = min(pause * 2, tick)
        }
    }

    /// SIGTERM to the group, wait up to `grace` for it to empty, then SIGKILL.
    public static func terminateGroup(_ pgid: Int32, grace: Duration, tick: Duration = .milliseconds(50)) async {
        guard pgid > 1 else { return }
        kill(-pgid, SIGTERM)
        kill(-pgid, SIGCONT) // a stopped process cannot act on SIGTERM
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline {
            if !groupHasLiveMembers(pgid) { return }
            try? await Task.sleep(for: tick)
        }
        kill(-pgid, SIGKILL)
    }

    static func groupHasLiveMembers(_ pgid: Int32) -> Bool {
        guard ProcFS.groupExists(pgid) else { return false }
        return ProcFS.hasLiveMember(group: pgid)
    }
}

