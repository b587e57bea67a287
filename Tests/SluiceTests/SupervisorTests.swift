import Foundation
import Testing
import Synchronization
@testable import SluiceSupervisor
import SluiceTesting

@Suite("Supervisor: real processes", .serialized)
struct SupervisorTests {
    @Test func procStatIsReadAsTheKernelWritesIt() {
        let me = getpid()
        let read = ProcFS.stat(me)
        #expect(read?.group == getpgrp())
        #expect(read?.group == getpgid(me), "the byte parser agrees with the kernel")
        #expect(read.map { Character(UnicodeScalar($0.state)) } == ProcFS.state(me))
        #expect(ProcFS.hasLiveMember(group: getpgrp()), "this process is a live member of its group")
        #expect(ProcFS.members(ofGroup: getpgrp()).contains(me))
        #expect(ProcFS.stat(Int32.max) == nil, "no such process")
    }

    let dir: TemporaryDirectory
    init() throws { dir = try TemporaryDirectory(prefix: "supervisor") }

    func invocation(_ argv: [String], timeout: Duration? = nil, hang: Duration? = nil, doneWhen: String? = nil,
                    grace: Duration = .seconds(2), logLimit: Int64 = 1 << 20, live: Bool = false) -> CommandInvocation {
        CommandInvocation(arguments: argv, environment: ProcessInfo.processInfo.environment,
                          workingDirectory: dir.path, stdoutPath: dir.file("out.log"), stderrPath: dir.file("err.log"),
                          logLimit: logLimit, timeout: timeout, hangAfter: hang, doneWhen: doneWhen, grace: grace,
                          liveOutput: live)
    }

    /// The two ways output is captured: straight into the log files, or through pipes read as it comes.
    static let modes = [false, true]

    /// Reads the pids that a script wrote (one per line) and tells which are still alive.
    func alive(_ pidFile: String) throws -> [Int32] {
        let text = try String(contentsOfFile: dir.file(pidFile), encoding: .utf8)
        let pids = text.split(separator: "\n").compactMap { Int32($0.trimmingCharacters(in: .whitespaces)) }
        #expect(!pids.isEmpty, "the script should have written its pids")
        return pids.filter { ProcFS.isAlive($0, startTicks: nil) }
    }

    @Test(arguments: modes) func exitCodeAndStreamsAreCaptured(live: Bool) async throws {
        let report = await Supervisor().run(invocation(["sh", "-c", "echo hello; echo oops >&2; exit 3"], live: live), stop: StopSignal())
        #expect(report.ending == .exited(3))
        #expect(report.exitCode == 3)
        #expect(try String(contentsOfFile: dir.file("out.log"), encoding: .utf8) == "hello\n")
        #expect(try String(contentsOfFile: dir.file("err.log"), encoding: .utf8) == "oops\n")
        #expect(report.stderrTail == ["oops"])
        #expect(report.stdoutBytes == 6)
    }

    @Test func argumentsAreNeverInterpretedByAShell() async throws {
        let tricky = "a b; echo injected $(id) `x` 'q' \"d\""
        let report = await Supervisor().run(invocation(["printf", "%s", tricky]), stop: StopSignal())
        #expect(report.ending == .exited(0))
        #expect(try String(contentsOfFile: dir.file("out.log"), encoding: .utf8) == tricky)
    }

    @Test func commandsAreFoundOnTheTaskPathAsExecvpFindsThem() async throws {
        // a/ has a folder and a non-executable file named `tool`; b/ the executable one; c/ another.
        for folder in ["a/tool", "b", "c"] { try FileManager.default.createDirectory(atPath: dir.file(folder), withIntermediateDirectories: true) }
        try "#!/bin/sh\necho from-a\n".write(toFile: dir.file("a/tool2"), atomically: true, encoding: .utf8)
        for (file, body) in [("b/tool", "echo from-b $1"), ("c/tool", "echo from-c"), ("b/tool2", "echo from-b2")] {
            try "#!/bin/sh\n\(body)\n".write(toFile: dir.file(file), atomically: true, encoding: .utf8)
            chmod(dir.file(file), 0o755)
        }
        let path = "relative:\(dir.file("a")):\(dir.file("b")):\(dir.file("c"))"
        #expect(Supervisor.lookUp("tool", path: path) == dir.file("b/tool"), "a folder of that name is skipped")
        #expect(Supervisor.lookUp("tool2", path: path) == dir.file("b/tool2"), "a file without x permission is skipped")
        #expect(Supervisor.lookUp("tool", path: "") == nil)
        #expect(Supervisor.lookUp("sh", path: nil) != nil, "no PATH: the standard folders")

        var task = invocation(["tool", "x y"])
        task.environment["PATH"] = path
        let report = await Supervisor().run(task, stop: StopSignal())
        #expect(report.ending == .exited(0))
        #expect(try String(contentsOfFile: dir.file("out.log"), encoding: .utf8) == "from-b x y\n")
    }

    @Test func missingCommandIsASpawnFailureWithAClearMessage() async throws {
        let report = await Supervisor().run(invocation(["no-such-command-xyz", "arg"]), stop: StopSignal())
        guard case .spawnFailed(let message) = report.ending else {
            Issue.record("expected spawnFailed, got \(report.ending)")
            return
        }
        #expect(message.contains("'no-such-command-xyz' was not found on PATH"))
    }

    @Test(arguments: modes) func timeoutStopsTheWholeProcessGroup(live: Bool) async throws {
        // The shell starts a grandchild that would outlive it; both must be gone afterwards.
        let script = "echo $$ > pids; sleep 60 & echo $! >> pids; wait"
        let report = await Supervisor().run(invocation(["sh", "-c", script], timeout: .seconds(2), live: live), stop: StopSignal())
        #expect(report.ending == .timedOut)
        #expect(report.wallMs < 10_000)
        #expect(try alive("pids").isEmpty)
    }

    @Test func termIgnoredMeansKillAfterGrace() async throws {
        let script = "trap '' TERM; echo $$ > pids; while true; do sleep 0.1; done"
        let report = await Supervisor().run(invocation(["sh", "-c", script], timeout: .seconds(2),
                                                       grace: .milliseconds(500)), stop: StopSignal())
        #expect(report.ending == .timedOut)
        #expect(report.signal == SIGKILL)
        #expect(try alive("pids").isEmpty)
    }

    @Test(arguments: modes) func hangIsDetectedWhenOutputStops(live: Bool) async throws {
        let script = "echo $$ > pids; echo started; sleep 30 & echo $! >> pids; wait"
        let report = await Supervisor().run(invocation(["sh", "-c", script], hang: .seconds(2), live: live), stop: StopSignal())
        #expect(report.ending == .hung)
        #expect(try alive("pids").isEmpty)
    }

    @Test(arguments: modes) func steadyOutputIsNotAHang(live: Bool) async throws {
        let script = "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.2; done"
        let report = await Supervisor().run(invocation(["sh", "-c", script], hang: .seconds(3), live: live), stop: StopSignal())
        #expect(report.ending == .exited(0))
    }

    @Test func completionPatternStopsALingeringProcess() async throws {
        let script = "echo $$ > pids; echo working; echo 'All instruments processed'; sleep 30 & echo $! >> pids; wait"
        let report = await Supervisor().run(invocation(["sh", "-c", script], doneWhen: "^All instruments processed$"),
                                            stop: StopSignal())
        #expect(report.ending == .completed(line: "All instruments processed"))
        #expect(try alive("pids").isEmpty)
    }

    @Test func completionPatternMatchesALastLineWithoutNewlineAndAQuickExit() async throws {
        let report = await Supervisor().run(invocation(["sh", "-c", "printf 'step 1\\nAll done'; exit 7"], doneWhen: "All done"),
                                            stop: StopSignal())
        #expect(report.ending == .completed(line: "All done"))
    }

    @Test(arguments: modes) func stopRequestEndsTheGroup(live: Bool) async throws {
        let stop = StopSignal()
        let script = "echo $$ > pids; sleep 30 & echo $! >> pids; wait"
        async let report = Supervisor().run(invocation(["sh", "-c", script], live: live), stop: stop)
        // Stop once both processes exist (the shell wrote both pids).
        func written() -> Int {
            ((try? String(contentsOfFile: dir.file("pids"), encoding: .utf8)) ?? "").split(separator: "\n").count
        }
        for _ in 0..<400 where written() < 2 { try await Task.sleep(for: .milliseconds(25)) }
        stop.request()
        let result = await report
        #expect(result.ending == .stopped)
        #expect(try alive("pids").isEmpty)
    }

    @Test(arguments: modes) func backgroundChildrenDoNotOutliveTheirTask(live: Bool) async throws {
        // The main process exits at once, leaving a background job holding stdout open.
        let script = "sleep 30 & echo $! > pids; echo done"
        let report = await Supervisor().run(invocation(["sh", "-c", script], grace: .milliseconds(500), live: live), stop: StopSignal())
        #expect(report.ending == .exited(0))
        #expect(try alive("pids").isEmpty)
    }

    @Test(arguments: modes) func backgroundChildrenWithoutTheOutputDoNotOutliveTheirTask(live: Bool) async throws {
        // The background job lets go of stdout and stderr, so the output ends with the main process;
        // the job is still a leftover of the task's group.
        let script = "sleep 30 >/dev/null 2>&1 & echo $! > pids; echo done"
        let report = await Supervisor().run(invocation(["sh", "-c", script], grace: .milliseconds(500), live: live), stop: StopSignal())
        #expect(report.ending == .exited(0))
        #expect(report.wallMs < 10_000)
        #expect(try alive("pids").isEmpty)
    }

    @Test func procStatFieldsAgreeWithTheKernel() throws {
        let me = getpid()
        let stat = try #require(ProcFS.stat(me))
        #expect(stat.group == getpgrp())
        // Its own CPU time and its waited-for children's, as getrusage counts them (stat counts in ticks).
        func used(_ who: __rusage_who) -> Int64 {
            var usage = rusage()
            getrusage(who.rawValue, &usage)
            return Int64(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1000 + Int64(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1000
        }
        let before = used(RUSAGE_SELF) + used(RUSAGE_CHILDREN)
        let statMs = stat.cpuMilliseconds
        #expect(statMs <= before + 30 && statMs + 1000 >= before, "stat says \(statMs) ms of CPU, getrusage \(before) ms")
        #expect(stat.startTicks > 0)
        let memory = try #require(ProcFS.memory(me))
        #expect(memory.peak >= memory.current && memory.current > 1_000_000, "VmHWM \(memory.peak), VmRSS \(memory.current)")
    }

    @Test(arguments: modes) func logsAreCappedButCounted(live: Bool) async throws {
        let report = await Supervisor().run(invocation(["sh", "-c", "head -c 10000 /dev/zero"], logLimit: 1000, live: live), stop: StopSignal())
        #expect(report.stdoutBytes == 10000)
        let text = try Data(contentsOf: URL(fileURLWithPath: dir.file("out.log")))
        #expect(text.count < 1200)
        #expect(String(decoding: text, as: UTF8.self).contains("log truncated at 1000 bytes"))
    }

    @Test(arguments: modes) func stdoutLinesAndTheStderrTailReachTheCaller(live: Bool) async throws {
        let lines = LinesSeen()
        let script = "echo '::count:: rows 3'; printf 'a\\nb\\nlast-without-newline'; for i in $(seq 50); do echo err$i >&2; done"
        let report = await Supervisor().run(invocation(["sh", "-c", script], live: live), stop: StopSignal(),
                                            onStdoutLine: { lines.add($0) })
        #expect(report.ending == .exited(0))
        #expect(lines.all == ["::count:: rows 3", "a", "b", "last-without-newline"])
        #expect(report.stderrTail == (31...50).map { "err\($0)" }, "the last 20 lines of stderr")
        #expect(report.stdoutBytes == 41)
    }

    @Test(arguments: modes) func outputOverTheCapWhileTheCommandRunsIsCountedNotKept(live: Bool) async throws {
        // Written over half a second: the cap holds while the command runs, not only at its end.
        let script = "for i in 1 2 3 4 5; do head -c 3000 /dev/zero; sleep 0.1; done; echo tail-line >&2"
        let report = await Supervisor().run(invocation(["sh", "-c", script], logLimit: 1000, live: live), stop: StopSignal())
        #expect(report.ending == .exited(0))
        #expect(report.stdoutBytes == 15_000)
        let kept = try Data(contentsOf: URL(fileURLWithPath: dir.file("out.log")))
        #expect(kept.count < 1200)
        #expect(kept.prefix(1000).allSatisfy { $0 == 0 })
        #expect(String(decoding: kept.dropFirst(1000), as: UTF8.self).contains("log truncated at 1000 bytes"))
        #expect(report.stderrTail == ["tail-line"])
    }

    @Test(arguments: modes) func peakMemoryIsSampled(live: Bool) async throws {
        let report = await Supervisor().run(invocation(["sh", "-c", "sleep 0.4"], live: live), stop: StopSignal())
        #expect((report.peakRSSBytes ?? 0) > 100_000)
    }

    /// A command that fills 64 MiB and exits long before the first 200 ms sample: its peak comes from
    /// the kernel's accounting at its exit (it was reported as a few hundred kilobytes before).
    @Test(arguments: modes) func peakMemoryOfAShortCommandIsItsTruePeak(live: Bool) async throws {
        let report = await Supervisor().run(invocation(["python3", "-c", "b = b'x' * (64 << 20)"], live: live), stop: StopSignal())
        #expect(report.ending == .exited(0))
        #expect((report.peakRSSBytes ?? 0) >= 64 << 20, "\(report.peakRSSBytes ?? 0) bytes")
    }
}

@Suite("Supervisor: line splitting")
struct LineSplitterTests {
    @Test func linesAcrossChunksCarriageReturnsAndARest() {
        var splitter = LineSplitter()
        var lines: [String] = []
        for chunk in ["one\ntw", "o\r\nthree\n\nfo", "ur"] {
            Array(chunk.utf8).withUnsafeBytes { splitter.append($0) }
            while let line = splitter.next() { lines.append(line) }
        }
        #expect(lines == ["one", "two", "three", ""])
        #expect(splitter.rest() == "four")
        #expect(splitter.rest() == nil)
    }
}

/// Lines a supervised command's stdout delivered, in order.
final class LinesSeen: Sendable {
    private let lines = Mutex<[String]>([])
    func add(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}
