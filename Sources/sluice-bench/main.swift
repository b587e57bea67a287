// sluice-bench: the workloads of BENCHMARKS.md, each next to a baseline measured in the same run.
//
//     swift run -c release sluice-bench            all workloads, full size, 3 repetitions
//     swift run -c release sluice-bench W1 W4      some of them
//     swift run sluice-bench --quick --json        every workload at small N (the test suite runs this)
//
// Each measurement runs in a child process of its own (`sluice-bench --measure ...`), so peak RSS is
// that of the workload alone.
import Foundation

let arguments = Array(CommandLine.arguments.dropFirst())
do {
    if arguments.first == "--measure" {
        try await Measure.main(Array(arguments.dropFirst()))
    } else {
        try await Bench.main(arguments)
    }
} catch {
    FileHandle.standardError.write(Data("sluice-bench: \(error)\n".utf8))
    exit(2)
}
