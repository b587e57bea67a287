import Foundation
import Testing
import Sluice
import SluiceArtifacts
import SluiceCore
import SluiceDefinition
import SluiceEngine
import SluiceStore
import SluiceTesting

/// The files of one artifact folder: newest/, historical/ (hidden files left out) and the index.
struct ArtifactFolder {
    let dir: String

    init(_ root: TemporaryDirectory, _ name: String) { dir = root.file("artifacts/\(name)") }

    func files(_ folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir + "/" + folder)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    func all(_ folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir + "/" + folder)) ?? []).sorted()
    }

    func index() throws -> ArtifactIndex {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(ArtifactIndex.self, from: Data(contentsOf: URL(fileURLWithPath: dir + "/index.json")))
    }

    func content(_ relative: String) throws -> String {
        try String(contentsOfFile: dir + "/" + relative, encoding: .utf8)
    }

    /// The index names exactly the files present, one newest, and each file has the recorded size.
    func isConsistent() throws -> Bool {
        guard FileManager.default.fileExists(atPath: dir + "/index.json") else {
            return files("newest").isEmpty && files("historical").isEmpty
        }
        let index = try index()
        let named = Set(index.versions.map(\.file))
        let present = Set(files("newest").map { "newest/" + $0 } + files("historical").map { "historical/" + $0 })
        guard named == present, files("newest").count <= 1 else { return false }
        for v in index.versions {
            let size = (try FileManager.default.attributesOfItem(atPath: dir + "/" + v.file)[.size] as? NSNumber)?.int64Value
            if size != v.size { return false }
        }
        return true
    }
}

@Suite("Artifacts: publishing, restoring, retention, crash safety")
struct ArtifactShelfTests {
    let publisher = ArtifactShelf.Publisher(pipeline: "p", stage: "build", runID: "r1")

    @Test func unchangedWritesNothingAndAChangeMovesTheOldVersionToHistorical() throws {
        let root = try TemporaryDirectory(prefix: "artifacts")
        let shelf = ArtifactShelf(root: root.path)
        let output = OutputSpec(path: "db/sales.csv", versioned: true)
        try root.write("db/sales.csv", "a,b\n1,2\n")
        guard case .published(let v1, nil, []) = try shelf.publish(output, by: publisher, now: Date()) else {
            Issue.record("the first publish must write version 1"); return
        }
        #expect(v1.version == 1)
        let folder = ArtifactFolder(root, "sales.csv")
        let indexBefore = try Data(contentsOf: URL(fileURLWithPath: folder.dir + "/index.json"))
        let newestBefore = folder.all("newest")

        // Same content: recorded as unchanged, nothing written.
        guard case .unchanged(let same) = try shelf.publish(output, by: publisher, now: Date()) else {
            Issue.record("the same content must be unchanged"); return
        }
        #expect(same.version == 1)
        #expect(try Data(contentsOf: URL(fileURLWithPath: folder.dir + "/index.json")) == indexBefore)
        #expect(folder.all("newest") == newestBefore)
        #expect(folder.files("historical").isEmpty)

        try root.write("db/sales.csv", "a,b\n1,3\n")
        guard case .published(let v2, let previous?, _) = try shelf.publish(output, by: publisher, now: Date()) else {
            Issue.record("a change must publish version 2"); return
        }
        #expect(v2.version == 2 && previous.version == 1)
        #expect(folder.files("newest") == [v2.fileName])
        #expect(folder.files("historical") == [v1.fileName])
        #expect(try folder.content("newest/" + v2.fileName) == "a,b\n1,3\n")
        #expect(try folder.content("historical/" + v1.fileName) == "a,b\n1,2\n")
        let index = try folder.index()
        #expect(index.versions.map(\.version) == [1, 2])
        #expect(index.newest?.version == 2)
        #expect(index.versions.first?.file == "historical/" + v1.fileName)
        #expect(index.newest?.runID == "r1")
        #expect(try folder.isConsistent())
    }

    @Test func restoreIsByteIdenticalAndRetentionKeepsTheLastN() throws {
        let root = try TemporaryDirectory(prefix: "artifacts")
        let shelf = ArtifactShelf(root: root.path)
        let output = OutputSpec(path: "out.bin", versioned: true, keep: 2)
        var contents: [Data] = []
        for i in 0..<4 {
            let bytes = Data((0..<(3000 + i)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) })
            contents.append(bytes)
            try bytes.write(to: URL(fileURLWithPath: root.file("out.bin")))
            _ = try shelf.publish(output, by: publisher, now: Date())
        }
        let index = try shelf.index(of: "out.bin")
        #expect(index.versions.map(\.version) == [3, 4])
        #expect(index.lastVersion == 4)
        #expect(try ArtifactFolder(root, "out.bin").isConsistent())

        try Data("corrupted by a failed rebuild".utf8).write(to: URL(fileURLWithPath: root.file("out.bin")))
        let restored = try shelf.restore("out.bin")
        #expect(restored.version == 4)
        #expect(try Data(contentsOf: URL(fileURLWithPath: root.file("out.bin"))) == contents[3])
        try shelf.restore("out.bin", version: 3)
        #expect(try Data(contentsOf: URL(fileURLWithPath: root.file("out.bin"))) == contents[2])
        #expect(throws: ArtifactError.self) { try shelf.restore("out.bin", version: 1) }
    }

    @Test func badInputIsRefusedAndThePreviousVersionIsUntouched() throws {
        let root = try TemporaryDirectory(prefix: "artifacts")
        let outside = try TemporaryDirectory(prefix: "outside")
        let shelf = ArtifactShelf(root: root.path)
        // A declared output that was not produced.
        do {
            _ = try shelf.publish(OutputSpec(path: "missing.db", versioned: true), by: publisher, now: Date())
            Issue.record("a missing output must fail")
        } catch {
            #expect(error.code == .missingOutput)
            #expect(error.message.contains("missing.db"))
        }
        // Escapes: '..', a symlinked file, a symlinked folder pointing outside.
        #expect(throws: ArtifactError.self) { try shelf.publish(OutputSpec(path: "../x", versioned: true, name: "x"), by: publisher, now: Date()) }
        try outside.write("secret.txt", "s")
        try FileManager.default.createSymbolicLink(atPath: root.file("link.txt"), withDestinationPath: outside.file("secret.txt"))
        do {
            _ = try shelf.publish(OutputSpec(path: "link.txt", versioned: true), by: publisher, now: Date())
            Issue.record("a symlink must be refused")
        } catch { #expect(error.code == .pathEscape) }
        try FileManager.default.createSymbolicLink(atPath: root.file("linked"), withDestinationPath: outside.path)
        do {
            _ = try shelf.publish(OutputSpec(path: "linked/secret.txt", versioned: true), by: publisher, now: Date())
            Issue.record("a folder linking outside must be refused")
        } catch { #expect(error.code == .pathEscape) }

        // An index from a newer version: refused, nothing rewritten.
        try root.write("data.csv", "1")
        let output = OutputSpec(path: "data.csv", versioned: true)
        _ = try shelf.publish(output, by: publisher, now: Date())
        let indexPath = root.file("artifacts/data.csv/index.json")
        var text = try String(contentsOfFile: indexPath, encoding: .utf8)
        text = text.replacingOccurrences(of: "\"format\" : 1", with: "\"format\" : 99")
        try text.write(toFile: indexPath, atomically: true, encoding: .utf8)
        try root.write("data.csv", "2")
        do {
            _ = try shelf.publish(output, by: publisher, now: Date())
            Issue.record("a newer index must be refused")
        } catch {
            #expect(error.code == .newerIndex)
            #expect(error.message.contains("data.csv"))
        }
        #expect(try String(contentsOfFile: indexPath, encoding: .utf8) == text)
        #expect(ArtifactFolder(root, "data.csv").files("newest").count == 1)
        #expect(ArtifactFolder(root, "data.csv").files("historical").isEmpty)
    }

    @Test func anUnreadableHistoricalFolderLeavesThePreviousVersion() throws {
        let root = try TemporaryDirectory(prefix: "artifacts")
        let shelf = ArtifactShelf(root: root.path)
        let output = OutputSpec(path: "data.csv", versioned: true)
        try root.write("data.csv", "1")
        _ = try shelf.publish(output, by: publisher, now: Date())
        let folder = ArtifactFolder(root, "data.csv")
        let before = try folder.index()
        // Not a folder any more (root ignores permissions, so a file stands in for an unreadable folder).
        try FileManager.default.removeItem(atPath: folder.dir + "/historical")
        try Data("x".utf8).write(to: URL(fileURLWithPath: folder.dir + "/historical"))
        try root.write("data.csv", "2")
        do {
            _ = try shelf.publish(output, by: publisher, now: Date())
            Issue.record("publishing must fail")
        } catch {
            #expect(error.message.contains("artifact 'data.csv'"), "\(error)")
        }
        #expect(try folder.index() == before)
        #expect(try folder.content(before.newest!.file) == "1")
        #expect(folder.all("newest") == [before.newest!.fileName])
    }

    /// A full disk (ENOSPC, injected) while copying, moving or writing the index: the publish fails naming
    /// the artifact, and the previous version, its folder and its index are as they were.
    @Test(arguments: CrashPoint.failurePoints) func aFullDiskWhilePublishingLeavesThePreviousVersion(point: String) throws {
        let root = try TemporaryDirectory(prefix: "full")
        try Data(repeating: 1, count: 1_500_000).write(to: URL(fileURLWithPath: root.file("db.bin")))
        _ = try ArtifactShelf(root: root.path).publish(OutputSpec(path: "db.bin", versioned: true), by: publisher, now: Date())
        let folder = ArtifactFolder(root, "db.bin")
        let index = try Data(contentsOf: URL(fileURLWithPath: folder.dir + "/index.json"))
        let newest = folder.all("newest")
        try Data(repeating: 2, count: 1_500_000).write(to: URL(fileURLWithPath: root.file("db.bin")))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CLI.executable)
        process.arguments = ["artifacts", "publish", "db.bin", "--root", root.path]
        var env = ProcessInfo.processInfo.environment
        env[CrashPoint.failVariable] = point
        process.environment = env
        let err = root.file(".err")
        _ = FileManager.default.createFile(atPath: err, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        process.standardError = FileHandle(forWritingAtPath: err)
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 2)
        let stderr = try String(contentsOfFile: err, encoding: .utf8)
        #expect(stderr.contains("artifact 'db.bin'") && stderr.contains("No space left on device"), "\(stderr)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: folder.dir + "/index.json")) == index)
        #expect(folder.all("newest") == newest)
        #expect(folder.all("historical").isEmpty)
        #expect(try folder.isConsistent())
    }

    /// A child `sluice artifacts publish` kills itself (SIGKILL) at each step of publishing; afterwards the
    /// folder, once reconciled, holds exactly the old or the new state, and never a partial newest file.
    @Test(arguments: CrashPoint.all) func sigkillDuringPublishLeavesTheOldOrTheNewState(point: String) throws {
        let root = try TemporaryDirectory(prefix: "crash")
        let old = Data(repeating: 0x61, count: 2_500_000) // several copy chunks
        var new = Data(repeating: 0x62, count: 2_600_000)
        new[0] = 0x7a
        // keep 1 so the "retention" point has a version to drop.
        func publish(_ crashAt: String?) throws -> Int32 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: CLI.executable)
            process.arguments = ["artifacts", "publish", "db.bin", "--root", root.path, "--keep", "1"]
            var env = ProcessInfo.processInfo.environment
            env[CrashPoint.variable] = crashAt
            process.environment = env
            process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            process.standardError = FileHandle(forWritingAtPath: "/dev/null")
            try process.run()
            process.waitUntilExit()
            return process.terminationReason == .uncaughtSignal ? -process.terminationStatus : process.terminationStatus
        }
        try old.write(to: URL(fileURLWithPath: root.file("db.bin")))
        #expect(try publish(nil) == 0)
        try new.write(to: URL(fileURLWithPath: root.file("db.bin")))
        #expect(try publish(point) == -SIGKILL)

        let folder = ArtifactFolder(root, "db.bin")
        // Before any repair: whatever sits in newest/ under a version name is complete.
        for file in folder.files("newest") {
            let data = try Data(contentsOf: URL(fileURLWithPath: folder.dir + "/newest/" + file))
            #expect(data == old || data == new, "newest/\(file) is partial")
        }
        let index = try ArtifactShelf(root: root.path).index(of: "db.bin") // reconciles
        #expect(try folder.isConsistent())
        let newest = try Data(contentsOf: URL(fileURLWithPath: folder.dir + "/" + index.newest!.file))
        #expect(newest == old || newest == new)
        #expect(folder.all("newest").filter { $0.hasPrefix(".tmp") }.isEmpty)
        // Publishing again completes the change.
        #expect(try publish(nil) == 0)
        let after = try ArtifactShelf(root: root.path).index(of: "db.bin")
        #expect(try Data(contentsOf: URL(fileURLWithPath: folder.dir + "/" + after.newest!.file)) == new)
        #expect(try folder.isConsistent())
    }
}

@Suite("Artifacts: pipeline format")
struct ArtifactDefinitionTests {
    func load(_ yaml: String) -> (PipelineSpec?, [String]) {
        let loaded = PipelineLoader.parse(yaml: yaml, file: "/p/pipeline.yml", root: "/p")
        return (loaded.spec, loaded.diagnostics.map(\.description))
    }

    @Test func outputsRollbackChangedAndLifecycleAreRead() throws {
        let (spec, diagnostics) = load("""
            name: collector
            lifecycle:
              - { delete: "data/raw/*.csv", after_success_of: [build, load] }
              - { archive: data/archive, files: "inbox/*.xlsx", after_success_of: [build] }
            stages:
              build:
                run: [python3, build.py]
                outputs:
                  - { path: db/sales.sqlite, versioned: true, keep: 10, keep_for: 30d }
                  - logs/build.txt
                on_failure: rollback
              load:
                needs: [build]
                proceed_if: [success, rolled_back]
                when: changed
                run: [python3, load.py]
            """)
        #expect(diagnostics.isEmpty, "\(diagnostics)")
        let s = try #require(spec)
        let build = try #require(s.stage("build"))
        #expect(build.outputs == [OutputSpec(path: "db/sales.sqlite", versioned: true, keep: 10, keepFor: .seconds(30 * 86400)),
                                  OutputSpec(path: "logs/build.txt")])
        #expect(build.outputs[0].name == "sales.sqlite")
        #expect(build.onFailure == .rollback)
        #expect(s.stage("load")?.when.changed == true)
        #expect(s.stage("load")?.proceedIf == [.success, .rolledBack])
        #expect(s.lifecycle == [
            LifecyclePolicy(files: "data/raw/*.csv", action: .delete, afterSuccessOf: ["build", "load"], location: s.lifecycle.first?.location),
            LifecyclePolicy(files: "inbox/*.xlsx", action: .archive(folder: "data/archive"), afterSuccessOf: ["build"],
                            location: s.lifecycle.last?.location),
        ])
        // Stored with runs as JSON: the new fields survive, and a spec recorded before them still decodes.
        let data = try JSONEncoder().encode(s)
        #expect(try JSONDecoder().decode(PipelineSpec.self, from: data) == s)
        var old = s
        old.lifecycle = []
        for i in old.stages.indices { old.stages[i].outputs = []; old.stages[i].onFailure = .fail; old.stages[i].when.changed = false }
        let oldJSON = String(decoding: try JSONEncoder().encode(old), as: UTF8.self)
        #expect(!oldJSON.contains("outputs") && !oldJSON.contains("lifecycle"))
        #expect(try JSONDecoder().decode(PipelineSpec.self, from: Data(oldJSON.utf8)) == old)
    }

    @Test func mistakesAreReportedWithTheirLine() {
        let (spec, diagnostics) = load("""
            name: bad
            lifecycle: { delete: "../raw/*.csv", after_success_of: [biuld] }
            stages:
              build:
                run: [python3, build.py]
                outputs: [{ path: /etc/passwd, versioned: true }]
              other:
                run: ["true"]
                on_failure: rollback
              load:
                needs: [other]
                when: changed
                run: ["true"]
            """)
        #expect(spec == nil)
        let text = diagnostics.joined(separator: "\n")
        #expect(text.contains("/p/pipeline.yml:2:"), "\(text)")
        #expect(text.contains("lifecycle.delete '../raw/*.csv' must stay inside the pipeline's folder"))
        #expect(text.contains("unknown stage 'biuld'") && text.contains("did you mean 'build'"))
        #expect(text.contains("/p/pipeline.yml:6:") && text.contains("output '/etc/passwd' must be a path inside the pipeline's folder"))
        #expect(text.contains("stage 'other' has on_failure: rollback but no versioned output"))
        #expect(text.contains("stage 'load' has when: changed, but none of its needs has a versioned output"))
    }

    @Test func theSwiftAPIDeclaresOutputsRollbackChangedAndLifecycle() throws {
        let build = Command("build", ["true"]).outputs(OutputSpec(path: "db/x.db", versioned: true, keep: 3)).onFailure(.rollback)
        let load = Command("load", ["true"], needs: build).proceed(if: .success, .rolledBack).whenChanged()
        let pipeline = try Pipeline("p", root: "/tmp", lifecycle: [LifecyclePolicy(files: "raw/*.csv", action: .delete, afterSuccessOf: ["load"])]) {
            build
            load
        }
        #expect(pipeline.spec.stage("build")?.onFailure == .rollback)
        #expect(pipeline.spec.stage("build")?.versionedOutputs.map(\.name) == ["x.db"])
        #expect(pipeline.spec.stage("load")?.when.changed == true)
        #expect(pipeline.spec.lifecycle.first?.afterSuccessOf == ["load"])
        #expect(throws: PipelineDefinitionError.self) {
            try Pipeline("q", root: "/tmp") { Command("b", ["true"]).onFailure(.rollback) }
        }
    }

    @Test func theSwiftAPISaysTheSame() throws {
        let spec = PipelineSpec(name: "p", root: "/p", stages: [
            StageSpec(name: "build", command: .argv(["true"]), outputs: [OutputSpec(path: "../out.db", versioned: true)], onFailure: .rollback),
        ], lifecycle: [LifecyclePolicy(files: "raw/*.csv", action: .delete, afterSuccessOf: ["nope"])])
        let problems = SpecValidation.problems(in: spec)
        #expect(problems.contains { $0.contains("output '../out.db' must be a path inside the pipeline's folder") })
        #expect(problems.contains { $0.contains("waits for 'nope'") })
    }
}

@Suite("Artifacts: engine (publish, when: changed, rollback, lifecycle)")
struct ArtifactEngineTests {
    static let collector = """
        name: collector
        params:
          fail: "no"
        stages:
          build:
            shell: |
              mkdir -p db
              if [ "$SLUICE_PARAM_FAIL" = yes ]; then echo broken > db/sales.db; exit 1; fi
              cat src/sales.csv > db/sales.db
            outputs: [{ path: db/sales.db, versioned: true }]
            on_failure: rollback
          load:
            needs: [build]
            proceed_if: [success, rolled_back]
            shell: cat db/sales.db >> loaded.txt
          report:
            needs: [build]
            proceed_if: [success, rolled_back]
            when: changed
            shell: echo changed >> changes.txt
        """

    @Test func changedPublishesUnchangedSkipsAndAFailureRollsBackToPartialSuccess() async throws {
        let f = try EngineFixture()
        try f.dir.write("src/sales.csv", "day,amount\n1,10\n")
        let (first, run1) = try await f.run(Self.collector)
        #expect(first == .success)
        let folder = ArtifactFolder(f.dir, "sales.db")
        #expect(folder.files("newest").count == 1)
        #expect(try await f.events(run1).contains { $0.event == "artifact.published" && $0.attrs["version"] == "1" })
        let recorded = try await f.engine.store.artifactVersions(pipeline: "collector", name: nil, run: run1.id)
        #expect(recorded.map(\.version) == [1])
        #expect(recorded.first?.stage == "build")

        // Same sources: unchanged, nothing written, `when: changed` skips.
        let indexBefore = try Data(contentsOf: URL(fileURLWithPath: folder.dir + "/index.json"))
        let (second, run2) = try await f.run(Self.collector)
        #expect(second == .success)
        #expect(try await f.events(run2).contains { $0.event == "artifact.unchanged" })
        #expect(try await f.stageStatuses(run2)["report"] == .skipped)
        #expect(try Data(contentsOf: URL(fileURLWithPath: folder.dir + "/index.json")) == indexBefore)
        #expect(try String(contentsOfFile: f.dir.file("changes.txt"), encoding: .utf8) == "changed\n")

        // The rebuild fails: the last good version is restored byte for byte, load proceeds, partial success.
        let good = try Data(contentsOf: URL(fileURLWithPath: f.dir.file("db/sales.db")))
        let (third, run3) = try await f.run(Self.collector, params: ["fail": "yes"])
        #expect(third == .partialSuccess)
        #expect(third.exitCode == 1)
        let statuses = try await f.stageStatuses(run3)
        #expect(statuses["build"] == .rolledBack)
        #expect(statuses["load"] == .success)
        #expect(try Data(contentsOf: URL(fileURLWithPath: f.dir.file("db/sales.db"))) == good)
        #expect(try String(contentsOfFile: f.dir.file("loaded.txt"), encoding: .utf8) == "day,amount\n1,10\n".repeated(3))
        let events = try await f.events(run3)
        #expect(events.contains { $0.event == "healing.rollback" && $0.attrs["restored"] == "sales.db v1" })
        #expect(events.contains { $0.event == "notice.manual_review" })
        let built = try await RunReport.build(store: f.engine.store, runID: run3.id)
        #expect(built.notices?.first?.attrs["kind"] == "manual_review")
        #expect(built.stages.first { $0.name == "build" }?.reason?.contains("rolled back to sales.db v1") == true)
    }

    @Test func aDeclaredOutputTheStageDidNotWriteFailsItByName() async throws {
        let f = try EngineFixture()
        let (outcome, run) = try await f.run("""
            name: missing
            stages:
              build:
                run: ["true"]
                outputs: [{ path: out/never.db, versioned: true }]
            """)
        #expect(outcome == .failed)
        let attempts = try await f.engine.store.attempts(of: run.id)
        #expect(attempts.first?.message?.contains("artifact 'never.db'") == true)
        #expect(attempts.first?.message?.contains("out/never.db") == true)
    }

    @Test func lifecycleActsOnlyAfterTheNamedStagesSucceeded() async throws {
        let f = try EngineFixture()
        try f.dir.write("data/raw/a.csv", "1")
        try f.dir.write("data/raw/b.csv", "2")
        let outside = try TemporaryDirectory(prefix: "outside")
        try outside.write("precious.csv", "keep me")
        try FileManager.default.createSymbolicLink(atPath: f.dir.file("data/raw/link.csv"), withDestinationPath: outside.file("precious.csv"))
        let yaml = """
            name: market
            params:
              fail: "no"
            lifecycle:
              - { delete: "data/raw/*.csv", after_success_of: [translate, analyze] }
            stages:
              translate: { shell: "true" }
              analyze: { needs: [translate], shell: "test \\"$SLUICE_PARAM_FAIL\\" != yes" }
            """
        // Sleep so the files are older than the run's start.
        try await Task.sleep(for: .milliseconds(20))
        let (failed, run1) = try await f.run(yaml, params: ["fail": "yes"])
        #expect(failed == .partialSuccess)
        #expect(FileManager.default.fileExists(atPath: f.dir.file("data/raw/a.csv")))
        #expect(FileManager.default.fileExists(atPath: f.dir.file("data/raw/b.csv")))
        #expect(try await f.events(run1).contains { $0.event == "lifecycle.skipped" })
        #expect(try await !f.events(run1).contains { $0.event == "lifecycle.deleted" })

        let (ok, run2) = try await f.run(yaml)
        #expect(ok == .success)
        #expect(!FileManager.default.fileExists(atPath: f.dir.file("data/raw/a.csv")))
        #expect(!FileManager.default.fileExists(atPath: f.dir.file("data/raw/b.csv")))
        let deleted = try await f.events(run2).filter { $0.event == "lifecycle.deleted" }.compactMap { $0.attrs["file"] }
        #expect(deleted == ["data/raw/a.csv", "data/raw/b.csv"])
        // A match that is a symbolic link (here to a file outside the root) is refused, and says so.
        #expect(FileManager.default.fileExists(atPath: outside.file("precious.csv")))
        #expect(FileManager.default.fileExists(atPath: f.dir.file("data/raw/link.csv")))
        let refused = try await f.events(run2).first { $0.event == "lifecycle.error" }
        #expect(refused?.message.contains("lifecycle refused 'data/raw/link.csv'") == true, "\(String(describing: refused))")
        #expect(refused?.message.contains("symbolic link") == true)
    }
}

@Suite("Artifacts: store contract")
struct ArtifactStoreTests {
    @Test(arguments: StoreKind.allCases) func versionsAreIndexedAndARollbackEndsTheStageRolledBack(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let store = h.store, now = h.now, me = h.me
        let id = RunID("r1")
        _ = try await store.createRun(h.newRun("r1"), overlap: .skip, now: now, events: [])
        _ = try await store.acquireRun(id, owner: me, until: now.addingTimeInterval(30), replacing: nil, now: now, events: [])

        let v1 = ArtifactVersionRecord(pipeline: "p", name: "sales.db", version: 1, sha256: "aa", size: 10, createdAt: now,
                                       runID: id, stage: "a", root: h.dir.path, file: "newest/sales.v1.db", annotations: ["host": "h"])
        var v2 = v1
        v2.version = 2
        v2.sha256 = "bb"
        v2.createdAt = now.addingTimeInterval(60)
        v2.runID = nil
        try await store.recordArtifactVersion(v1, events: [h.event("r1", "artifact.published")])
        try await store.recordArtifactVersion(v2, events: [])
        try await store.recordArtifactVersion(v1, events: []) // recorded once
        #expect(try await store.artifactVersions(pipeline: "p", name: nil, run: nil) == [v2, v1])
        #expect(try await store.artifactVersions(pipeline: nil, name: "sales.db", run: id) == [v1])
        #expect(try await store.artifactVersions(pipeline: "other", name: nil, run: nil).isEmpty)
        #expect(try await store.events(run: id, afterID: 0, limit: 10).map(\.event) == ["artifact.published"])

        try await store.applyStageTransitions(run: id, [.start("a", taskKeys: ["main"])], now: now, events: [])
        let claimed = try #require(try await store.claimTasks(run: id, owner: me, limit: 1, filter: .everything, now: now,
                                                              leaseUntil: now.addingTimeInterval(30)).first)
        let attempt = AttemptRecord(taskID: claimed.task.id, runID: id, stage: "a", number: 1, outcome: .failed, startedAt: now,
                                    finishedAt: now, exitCode: 1)
        let results = try await store.completeAttempts([AttemptCompletion(attempt: attempt, result: nil, next: .fail, events: [],
                                                                          stageEvent: { s in h.event("r1", "stage.\(s.status.rawValue)") },
                                                                          rolledBack: "rolled back to sales.db v1")],
                                                       owner: me, now: now)
        guard case .applied(let stage?, _) = results.first else { Issue.record("the stage must roll up"); return }
        #expect(stage.status == .rolledBack)
        let recorded = try await store.stages(of: id).first { $0.name == "a" }
        #expect(recorded?.status == .rolledBack)
        #expect(recorded?.reason == "rolled back to sales.db v1")
        #expect(try await store.events(run: id, afterID: 0, limit: 10).map(\.event).last == "stage.rolled_back")
    }
}

extension String {
    func repeated(_ n: Int) -> String { String(repeating: self, count: n) }
}

@Suite("Artifacts: the seed 001 example through the CLI")
struct CollectorExampleTests {
    @Test func theCollectorRollsBackAndTheLoaderProceeds() throws {
        let cli = CLI(dir: try TemporaryDirectory(prefix: "collector"))
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        let copy = cli.dir.file("collector")
        try FileManager.default.copyItem(atPath: root.appendingPathComponent("examples/collector").path, toPath: copy)
        for leftover in ["db", "artifacts", "warehouse", ".sluice"] { try? FileManager.default.removeItem(atPath: copy + "/" + leftover) }

        let first = try cli.run(["run", "collector/pipeline.yml", "--no-tty"])
        #expect(first.status == 0, "\(first.output)")
        let stockV1 = try Data(contentsOf: URL(fileURLWithPath: copy + "/db/stock.sqlite"))
        let second = try cli.run(["run", "collector/pipeline.yml", "--no-tty"])
        #expect(second.status == 0)
        let id2 = try #require(cli.runID(second))
        #expect(try cli.run(["logs", id2]).stdout.components(separatedBy: "artifact.unchanged").count == 4, "three unchanged artifacts")

        let failed = try cli.run(["run", "collector/pipeline.yml", "--no-tty", "-p", "fail=stock"])
        #expect(failed.status == 1, "\(failed.output)")
        let id3 = try #require(cli.runID(failed))
        #expect(try cli.stageStatuses(id3) == ["sales": "success", "stock": "rolled_back", "customers": "success", "load": "success"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: copy + "/db/stock.sqlite")) == stockV1)
        let report = try cli.show(id3)
        #expect(report["outcome"] as? String == "partial_success")
        let notices = try #require(report["notices"] as? [[String: Any]])
        #expect((notices.first?["message"] as? String)?.contains("manual review") == true)
        #expect(try cli.run(["show", id3]).stdout.contains("notice: manual review needed: stage 'stock'"))

        // A changed source publishes v2; the listing shows both, and v1 restores by hand.
        let sales = copy + "/sources/sales.csv"
        try (try String(contentsOfFile: sales, encoding: .utf8) + "2026-11-05,madrid,1700.00\n").write(toFile: sales, atomically: true, encoding: .utf8)
        #expect(try cli.run(["run", "collector/pipeline.yml", "--no-tty"]).status == 0)
        let listing = try cli.run(["artifacts", "collector/pipeline.yml"])
        #expect(listing.status == 0)
        #expect(listing.stdout.contains("sales.sqlite") && listing.stdout.contains("v2") && listing.stdout.contains("historical"))
        let recorded = try cli.run(["artifacts", "collector"])
        #expect(recorded.stdout.contains("sales.sqlite") && recorded.stdout.contains("v2"), "\(recorded.output)")
        let restore = try cli.run(["artifacts", "restore", "sales.sqlite", "1"])
        #expect(restore.status == 0, "\(restore.output)")
        #expect(restore.stdout.contains("restored artifact 'sales.sqlite' version 1"))
        let missing = try cli.run(["artifacts", "restore", "sales.sqlite", "9"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("artifact 'sales.sqlite' has no version 9"))
    }
}
