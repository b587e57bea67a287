import Foundation
import SluiceCore
import SluiceDefinition
import Testing

/// Property test of the pipeline-file loader: thousands of files made by mutating the corpus (valid and
/// malformed) at random, from a fixed seed. Each one must load to a pipeline or to errors that all say
/// where (line and column inside the file). A crash or a hang fails the suite.
///
/// `SLUICE_FUZZ_ITERATIONS` sets the count (default 3000, a couple of seconds); `SLUICE_FUZZ_SEED` the seed.
@Suite("Loader fuzzing")
struct LoaderFuzzTests {
    /// SplitMix64: small, fast, and the same sequence everywhere for a seed.
    struct Random: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// Characters that mean something to YAML or to our formats, and some that mean nothing.
    static let alphabet: [String] = [":", "-", " ", "  ", "\n", "\t", "[", "]", "{", "}", "\"", "'", "#", "&", "*", "!", "|", ">",
                                     "%", "@", "`", ",", "?", "{{", "}}", "{{item.", "{{params.", "0", "-1", "999999999999999999999",
                                     "é", "🚀", "\u{0}", "\u{FEFF}", "\r\n", "~", "null", "yes", ".inf", "/", "..", "*/15 * * * *"]

    static func mutate(_ text: String, _ rng: inout Random) -> String {
        var lines = text.components(separatedBy: "\n")
        var chars = Array(text)
        switch Int.random(in: 0..<7, using: &rng) {
        case 0 where !chars.isEmpty: // delete a span
            let at = Int.random(in: 0..<chars.count, using: &rng)
            chars.removeSubrange(at..<min(chars.count, at + Int.random(in: 1...8, using: &rng)))
            return String(chars)
        case 1: // insert a token
            let at = Int.random(in: 0...chars.count, using: &rng)
            chars.insert(contentsOf: alphabet.randomElement(using: &rng)!, at: at)
            return String(chars)
        case 2 where !chars.isEmpty: // replace a character
            chars[Int.random(in: 0..<chars.count, using: &rng)] = Character(alphabet.randomElement(using: &rng)!.first.map(String.init) ?? "x")
            return String(chars)
        case 3 where lines.count > 1: // duplicate a line
            let at = Int.random(in: 0..<lines.count, using: &rng)
            lines.insert(lines[at], at: at)
            return lines.joined(separator: "\n")
        case 4 where lines.count > 1: // swap two lines
            lines.swapAt(Int.random(in: 0..<lines.count, using: &rng), Int.random(in: 0..<lines.count, using: &rng))
            return lines.joined(separator: "\n")
        case 5: // truncate
            return String(chars.prefix(Int.random(in: 0...chars.count, using: &rng)))
        default: // re-indent a line
            guard !lines.isEmpty else { return text }
            let at = Int.random(in: 0..<lines.count, using: &rng)
            lines[at] = String(repeating: " ", count: Int.random(in: 0...9, using: &rng)) + lines[at].drop { $0 == " " }
            return lines.joined(separator: "\n")
        }
    }

    @Test func everyMutatedFileLoadsOrSaysWhereItIsWrong() throws {
        let environment = ProcessInfo.processInfo.environment
        let iterations = environment["SLUICE_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 3000
        var rng = Random(state: environment["SLUICE_FUZZ_SEED"].flatMap(UInt64.init) ?? 20261125)
        var corpus: [String] = []
        for folder in ["valid", "invalid"] {
            let dir = DefinitionTests.fixtures.appendingPathComponent(folder)
            for name in try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() where name.hasSuffix(".yml") {
                corpus.append(try String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8))
            }
        }
        try #require(!corpus.isEmpty)
        var loaded = 0, rejected = 0
        for i in 0..<iterations {
            var text = corpus.randomElement(using: &rng)!
            for _ in 0..<Int.random(in: 1...4, using: &rng) { text = Self.mutate(text, &rng) }
            let result = PipelineLoader.parse(yaml: text, file: "fuzz.yml", root: "/tmp")
            let lineCount = text.components(separatedBy: .newlines).count
            if result.spec != nil {
                loaded += 1
                #expect(result.diagnostics.allSatisfy { $0.severity != .error }, "case \(i): a pipeline with errors")
                continue
            }
            rejected += 1
            let errors = result.diagnostics.filter { $0.severity == .error }
            #expect(!errors.isEmpty, "case \(i): rejected without an error:\n\(text)")
            for error in errors {
                guard let location = error.location else {
                    Issue.record("case \(i): an error without file:line: \(error.message)\n\(text)")
                    continue
                }
                #expect(location.file == "fuzz.yml")
                #expect(location.line >= 1 && location.line <= lineCount + 1, "case \(i): line \(location.line) of \(lineCount): \(error.message)")
                #expect(location.column >= 1, "case \(i): column \(location.column)")
            }
        }
        #expect(loaded + rejected == iterations)
        #expect(rejected > iterations / 10, "the mutations produce broken files")
    }
}
