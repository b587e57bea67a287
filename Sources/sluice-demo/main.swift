// A small executable with pipelines defined in Swift, embedding the complete `sluice` CLI.
// The tests use it to check that runs of Swift pipelines survive a crash and resume in a new process.
//
//     swift run sluice-demo pipelines
//     swift run sluice-demo run inventory -p folder=Sources
import Foundation
import Sluice
import SluiceCLI

struct Inventory: Codable, Sendable, Hashable {
    var files: Int
    var bytes: Int
}

func pipelines() throws -> [Pipeline] {
    // inventory: count the files of a folder in Swift, then report with a command.
    let scan = Stage("scan") { context -> Inventory in
        let path = context.param("folder") ?? "."
        let folder = path.hasPrefix("/") ? URL(fileURLWithPath: path) : context.workDirectory.appendingPathComponent(path)
        var inventory = Inventory(files: 0, bytes: 0)
        let enumerator = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: [.fileSizeKey, .isRegularFileKey])
        while let url = enumerator?.nextObject() as? URL {
            try Task.checkCancellation()
            let values = try url.resourceValues(forKeys: [.fileSizeKey, .isRegularFileKey])
            guard values.isRegularFile == true else { continue }
            inventory.files += 1
            inventory.bytes += values.fileSize ?? 0
            context.count("files")
        }
        context.logger.info("scanned \(folder.path): \(inventory.files) files")
        return inventory
    }
    let summary = Stage("summary", needs: scan) { context -> String in
        let inventory = try await context.result(of: scan)
        return "\(inventory.files) files, \(inventory.bytes) bytes"
    }
    let inventory = try Pipeline("inventory", description: "Count the files of a folder", params: ["folder": "."]) {
        scan
        summary
        Command("report", ["sh", "-c", "echo inventory done for $SLUICE_PARAM_FOLDER"], needs: summary)
    }

    // resumable: its middle stage waits the first time, so a test can kill the process there.
    let first = Stage("first") { context -> Inventory in
        try append("first.count")
        return Inventory(files: 3, bytes: 42)
    }
    let middle = Stage("middle", needs: first) { context -> String in
        try append("middle.count")
        if FileManager.default.fileExists(atPath: "resumed") { return "fast" }
        _ = FileManager.default.createFile(atPath: "waiting", contents: nil)
        try await Task.sleep(for: .seconds(60))
        return "slow"
    }
    let last = Stage("last", needs: first, middle) { context in
        let totals = try await context.result(of: first)
        let speed = try await context.result(of: middle)
        try "\(totals.files) \(totals.bytes) \(speed)\n".write(toFile: "last.txt", atomically: true, encoding: .utf8)
    }
    let resumable = try Pipeline("resumable") {
        first
        middle
        last
    }
    // fan-out: N integers, one in-process task each (x * 2), and a join that checks the sum (W1 of BENCHMARKS.md).
    let numbers = Discover<Int>("numbers") { context, items in
        let n = Int(context.param("n") ?? "1000") ?? 1000
        for i in 0..<n { try await items.send(i) }
    }
    // `sleep_ms`: each task sleeps that long first (R1 of BENCHMARKS.md: a run long enough to be killed mid-way).
    let double = ForEach("double", over: numbers) { context, x in
        let pause = Int(context.param("sleep_ms") ?? "0") ?? 0
        if pause > 0 { try await Task.sleep(for: .milliseconds(pause)) }
        return x * 2
    }
    let sum = Stage("sum", needs: double) { context -> Int in
        var total = 0
        for try await (_, value) in context.streamedResults(of: double) { total += value }
        let n = Int(context.param("n") ?? "1000") ?? 1000
        guard total == n * (n - 1) else { throw DemoError(message: "sum is \(total), expected \(n * (n - 1))") }
        return total
    }
    let fanOut = try Pipeline("fan-out", description: "N in-process tasks and a join (benchmark W1)", concurrency: 2,
                              params: ["n": "1000", "sleep_ms": "0"]) {
        numbers
        double
        sum
    }
    return [inventory, resumable, fanOut]
}

struct DemoError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

func append(_ file: String) throws {
    let handle = FileHandle(forWritingAtPath: file) ?? {
        _ = FileManager.default.createFile(atPath: file, contents: nil)
        return FileHandle(forWritingAtPath: file)!
    }()
    defer { try? handle.close() }
    try handle.seekToEnd()
    try handle.write(contentsOf: Data("ran\n".utf8))
}

do {
    await SluiceCommand.main(pipelines: try pipelines())
} catch {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    exit(2)
}
