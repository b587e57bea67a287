import ArgumentParser
import Foundation
import SluiceCore

struct Init: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "init", 
        abstract: "Write a working example pipeline and its scripts into the current folder.")

    @Option(help: "Folder to write into.") var directory = "."
    @Flag(help: "Overwrite files that exist.") var force = false

    static let files: [(String, String, Bool)] = [
        ("pipeline.yml", """
        # A Sluice pipeline: stages form a graph through `needs`; each runs a command (argv, no shell).
        # Check it with `sluice validate pipeline.yml`, run it with `sluice run pipeline.yml`.
        name: hello
        description: Fetch some numbers, square them, and report the total.
        overlap: skip            # do not start while a run of this pipeline is active
        concurrency: 2
        params:
          count: "5"
        stages:
          fetch:
            run: [sh, scripts/fetch.sh, "{{params.count}}"]
            timeout: 1m
            retries: { attempts: 3, backoff: exponential, initial: 1s, max: 10s }
          square:
            needs: [fetch]
            when: { files: "work/numbers.txt" }
            run: [sh, scripts/square.sh]
            hang_after: 30s      # no output for 30 s counts as hung
          report:
            needs: [square]
            run: [sh, scripts/report.sh]
            done_when: "^total: "   # the stage is done as soon as this line appears

        """, false),
        ("scripts/fetch.sh", """
        #!/bin/sh
        # Writes the numbers 1..N to work/numbers.txt.
        set -eu
        mkdir -p work
        seq 1 "$1" > work/numbers.txt
        echo "fetched $1 numbers"

        """, true),
        ("scripts/square.sh", """
        #!/bin/sh
        set -eu
        while read -r n; do
          echo $((n * n))
        done < work/numbers.txt > work/squares.txt
        echo "squared $(wc -l < work/squares.txt) numbers"

        """, true),
        ("scripts/report.sh", """
        #!/bin/sh
        set -eu
        total=0
        while read -r n; do total=$((total + n)); done < work/squares.txt
        echo "total: $total"

        """, true),
    ]

    func run() async throws {
        try await guarded {
            let root = URL(fileURLWithPath: directory)
            let existing = Self.files.map(\.0).filter { FileManager.default.fileExists(atPath: root.appendingPathComponent($0).path) }
            if !existing.isEmpty && !force {
                throw CLIError(message: "\(existing.joined(separator: ", ")) already exist\(existing.count == 1 ? "s" : "") in \(root.path)",
                               hint: "run it in an empty folder, or add --force to overwrite", exitCode: ExitStatus.failure)
            }
            for (path, text, executable) in Self.files {
                let url = root.appendingPathComponent(path)
                do {
                    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
                    try Data(text.utf8).write(to: url)
                    if executable { try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: url.path) }
                } catch {
                    throw CLIError(message: "cannot write \(url.path): \(error.localizedDescription)",
                                   hint: "check that the folder is writable", exitCode: ExitStatus.failure)
                }
                print("wrote \(path)")
            }
            print("\nnext: sluice validate pipeline.yml && sluice run pipeline.yml")
            return 0
        }
    }
}
