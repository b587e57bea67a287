import Foundation
import Testing
import SluiceCore
import SluiceDefinition

@Suite("Pipeline files")
struct DefinitionTests {
    static let fixtures = Bundle.module.resourceURL!.appendingPathComponent("Fixtures")

    static var invalidCases: [String] {
        let dir = fixtures.appendingPathComponent("invalid")
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? [])
            .filter { $0.hasSuffix(".yml") }.sorted()
    }

    static var validCases: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: fixtures.appendingPathComponent("valid").path)) ?? [])
            .filter { $0.hasSuffix(".yml") }.sorted()
    }

    @Test func theCorpusIsLargeEnough() {
        #expect(Self.invalidCases.count >= 20)
        #expect(Self.validCases.count >= 3)
    }

    /// Golden test: each `NN-name.yml` gives exactly the errors its `NN-name.expected` lists, at `line:column`.
    @Test(arguments: invalidCases)
    func malformedFileGivesTheExpectedMessages(_ name: String) throws {
        let path = Self.fixtures.appendingPathComponent("invalid/\(name)").path
        let expectedText = try String(contentsOfFile: path.replacingOccurrences(of: ".yml", with: ".expected"), encoding: .utf8)
        let loaded = PipelineLoader.load(file: path)
        #expect(loaded.spec == nil, "an invalid file must not produce a pipeline")
        var errors = loaded.diagnostics.filter { $0.severity == .error }
        for line in expectedText.split(separator: "\n") where !line.isEmpty {
            let parts = line.split(separator: ":", maxSplits: 2).map(String.init)
            try #require(parts.count == 3, "bad expectation line '\(line)'")
            let wantLine = Int(parts[0]), wantColumn = Int(parts[1])
            let substring = parts[2].trimmingCharacters(in: .whitespaces)
            let index = errors.firstIndex { d in
                d.location?.line == wantLine && (parts[1] == "*" || d.location?.column == wantColumn)
                    && d.message.contains(substring) && d.location?.file == path
            }
            #expect(index != nil, "\(name): no error at \(parts[0]):\(parts[1]) containing '\(substring)'; got:\n\(errors.map(\.description).joined(separator: "\n"))")
            if let index { errors.remove(at: index) }
        }
        #expect(errors.isEmpty, "\(name): unexpected errors:\n\(errors.map(\.description).joined(separator: "\n"))")
    }

    @Test(arguments: validCases)
    func validFileHasNoDiagnostics(_ name: String) {
        let loaded = PipelineLoader.load(file: Self.fixtures.appendingPathComponent("valid/\(name)").path)
        #expect(loaded.diagnostics.isEmpty, "\(loaded.diagnostics.map(\.description))")
        #expect(loaded.spec != nil)
    }

    @Test func everyFieldIsRead() throws {
        let yaml = """
            name: full
            description: all fields
            schedule: "*/15 * * * *"
            overlap: queue
            concurrency: 3
            params: { input: data/raw, n: 5 }
            env: { GLOBAL: "{{params.input}}" }
            stages:
              a:
                run: [python3, a.py, "--in={{params.input}}"]
                env: { X: "1" }
                workdir: sub
                timeout: 20m
                hang_after: 5m
                done_when: "All instruments processed"
                grace: 3s
                retries: { attempts: 3, backoff: fixed, initial: 5s, max: 2m, jitter: false, exit_codes: [1, 75] }
                when: { files: "data/raw/*.csv", no_files: ["stop.flag"] }
              b:
                needs: a
                shell: "echo $SLUICE_PARAM_INPUT | wc -c"
                proceed_if: [success, skipped]
                when: { upstream: { a: success } }
            """
        let loaded = PipelineLoader.parse(yaml: yaml, file: "full.yml", root: "/srv/p")
        let spec = try #require(loaded.spec, "\(loaded.diagnostics)")
        #expect(spec.overlap == .queue)
        #expect(spec.concurrency == 3)
        #expect(spec.params == ["input": "data/raw", "n": "5"])
        #expect(spec.schedule == Schedule(.cron("*/15 * * * *")))
        let a = try #require(spec.stage("a"))
        #expect(a.command == .argv(["python3", "a.py", "--in={{params.input}}"]))
        #expect(a.timeout == .seconds(1200))
        #expect(a.hangAfter == .seconds(300))
        #expect(a.grace == .seconds(3))
        #expect(a.doneWhen == "All instruments processed")
        #expect(a.retry == RetryPolicy(attempts: 3, backoff: .fixed, initial: .seconds(5), max: .seconds(120), jitter: 0, exitCodes: [1, 75]))
        #expect(a.when.files == ["data/raw/*.csv"])
        #expect(a.when.noFiles == ["stop.flag"])
        #expect(a.workdir == "sub")
        #expect(a.location == SourceLocation(file: "full.yml", line: 9, column: 3))
        let b = try #require(spec.stage("b"))
        #expect(b.needs == ["a"])
        #expect(b.command == .shell("echo $SLUICE_PARAM_INPUT | wc -c"))
        #expect(b.proceedIf == [.success, .skipped])
        #expect(b.when.upstream == ["a": [.success]])
    }

    @Test func diagnosticsPrintLikeACompiler() {
        let loaded = PipelineLoader.parse(yaml: "name: x\nstages:\n  analyze:\n    needs: [translat]\n    run: [a]\n  translate:\n    run: [b]\n",
                                          file: "pipelines/x.yml", root: "/")
        #expect(loaded.diagnostics.map(\.description) == [
            "pipelines/x.yml:4:13: error: stage 'analyze' needs unknown stage 'translat'\n    hint: did you mean 'translate'?",
        ])
    }

    @Test func missingFileAndFolderAreClear() throws {
        let missing = PipelineLoader.load(file: "/nonexistent/p.yml")
        #expect(missing.diagnostics.first?.message == "pipeline file '/nonexistent/p.yml' does not exist")
        let folder = PipelineLoader.load(file: NSTemporaryDirectory())
        #expect(folder.diagnostics.first?.message.contains("is a folder") == true)
    }

    @Test func theShippedExampleIsValid() throws {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        let loaded = PipelineLoader.load(file: root.appendingPathComponent("examples/market-data/pipeline.yml").path)
        #expect(loaded.diagnostics.isEmpty, "\(loaded.diagnostics)")
        #expect(loaded.spec?.stages.map(\.name) == ["translate", "analyze", "merge"])
        #expect(loaded.spec?.lifecycle.map(\.afterSuccessOf) == [["translate", "analyze"]])
    }
}
