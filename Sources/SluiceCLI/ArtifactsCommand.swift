import ArgumentParser
import Foundation
import SluiceArtifacts
import SluiceCore
import SluiceEngine
import SluiceStore

/// `sluice artifacts`: the versions of versioned outputs, and restoring one by hand.
struct ArtifactsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "artifacts",
        abstract: "List artifacts and their versions, or restore one.",
        discussion: """
            Versioned outputs (outputs: with versioned: true) are kept under artifacts/NAME/ in the pipeline's
            folder: newest/ holds the current version, historical/ the older ones, index.json their hashes,
            sizes, times, runs and annotations.
            """,
        subcommands: [ListArtifacts.self, RestoreArtifact.self, PublishArtifact.self],
        defaultSubcommand: ListArtifacts.self)
}

struct ListArtifacts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List artifacts and their versions (of one pipeline, or every one recorded).")

    @Argument(help: "A pipeline file (lists the versions kept in its folder) or a pipeline name (versions recorded in the state).")
    var pipeline: String?
    @Flag(help: "Print JSON.") var json = false
    @OptionGroup var state: StateOptions

    func run() async throws {
        try await guarded {
            var isFolder: ObjCBool = false
            if let pipeline, FileManager.default.fileExists(atPath: pipeline, isDirectory: &isFolder), !isFolder.boolValue {
                let spec = try loadPipeline(pipeline)
                return try listFolder(spec)
            }
            let engine = try await state.engine()
            let versions = try await engine.store.artifactVersions(pipeline: pipeline, name: nil, run: nil)
            if json {
                let rows = versions.map { v -> [String: String] in
                    ["pipeline": v.pipeline, "artifact": v.name, "version": String(v.version), "sha256": v.sha256,
                     "size": String(v.size), "created_at": EventLog.timestamp(v.createdAt), "run_id": v.runID?.rawValue ?? "",
                     "stage": v.stage ?? "", "root": v.root]
                }
                let data = try JSONSerialization.data(withJSONObject: rows, options: [.prettyPrinted, .sortedKeys])
                print(String(decoding: data, as: UTF8.self))
                return 0
            }
            if versions.isEmpty {
                print(pipeline.map { "no artifact versions recorded for pipeline '\($0)'" }
                      ?? "no artifact versions recorded yet; declare outputs with versioned: true on a stage")
                return 0
            }
            let rows = versions.map { v in
                [v.pipeline, v.name, "v\(v.version)", String(v.sha256.prefix(12)), Self.size(v.size), Terminal.time(v.createdAt),
                 v.runID?.rawValue ?? "-"]
            }
            print(Terminal.table(["PIPELINE", "ARTIFACT", "VERSION", "SHA256", "SIZE", "CREATED", "RUN"], rows))
            return 0
        }
    }

    func listFolder(_ spec: PipelineSpec) throws -> Int32 {
        let shelf = ArtifactShelf(root: spec.root)
        let declared = spec.stages.flatMap(\.versionedOutputs).map(\.name)
        let names = Array(Set(declared + shelf.names())).sorted()
        var indexes: [ArtifactIndex] = []
        var problems = 0
        for name in names {
            do { indexes.append(try shelf.index(of: name)) } catch {
                if error.code == .versionNotFound { indexes.append(ArtifactIndex(artifact: name)); continue }
                Terminal.error(error.message, hint: error.hint)
                problems += 1
            }
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.dateEncodingStrategy = .iso8601
            FileHandle.standardOutput.write(try encoder.encode(indexes))
            print()
        } else if names.isEmpty {
            print("pipeline '\(spec.name)' declares no versioned output")
        } else {
            var rows: [[String]] = []
            for index in indexes {
                if index.versions.isEmpty { rows.append([index.artifact, "-", "", "", "", "", "no version yet"]) }
                for v in index.versions.reversed() {
                    rows.append([index.artifact, "v\(v.version)", v.isNewest ? "newest" : "historical", String(v.sha256.prefix(12)),
                                 Self.size(v.size), Terminal.time(v.createdAt), v.runID ?? "-"])
                }
            }
            print(Terminal.table(["ARTIFACT", "VERSION", "WHERE", "SHA256", "SIZE", "CREATED", "RUN"], rows))
        }
        return problems == 0 ? 0 : ExitStatus.failure
    }

    static func size(_ bytes: Int64) -> String {
        ByteCountFormatter.string(fromByteCount: bytes, countStyle: .file)
    }
}

struct RestoreArtifact: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a version of an artifact to the path it was published from, atomically.",
        discussion: "The copy is checked to be byte-identical (SHA-256) before it replaces the file; the index is not changed.")

    @Argument(help: "The artifact's name.") var name: String
    @Argument(help: "The version (3 or v3); the newest when left out.") var version: String?
    @Option(help: "The pipeline file whose folder holds the artifact (default: found in the recorded versions).")
    var pipeline: String?
    @OptionGroup var state: StateOptions

    func run() async throws {
        try await guarded {
            var number: Int?
            if let version {
                guard let n = Int(version.hasPrefix("v") ? String(version.dropFirst()) : version), n > 0 else {
                    throw CLIError(message: "version '\(version)' is not a version number", hint: "write 3 or v3; `sluice artifacts` lists them",
                                   exitCode: ExitStatus.failure)
                }
                number = n
            }
            let root: String
            if let pipeline {
                root = try loadPipeline(pipeline).root
            } else {
                let engine = try await state.engine()
                let roots = Set(try await engine.store.artifactVersions(pipeline: nil, name: name, run: nil).map(\.root))
                guard let only = roots.first else {
                    throw CLIError(message: "no version of artifact '\(name)' is recorded in the state",
                                   hint: "name the pipeline file: `sluice artifacts restore \(name) \(version ?? "") --pipeline PIPELINE.yml`",
                                   exitCode: ExitStatus.failure)
                }
                guard roots.count == 1 else {
                    throw CLIError(message: "artifact '\(name)' exists in \(roots.count) pipeline folders: \(roots.sorted().joined(separator: ", "))",
                                   hint: "choose one with --pipeline PIPELINE.yml", exitCode: ExitStatus.failure)
                }
                root = only
            }
            do {
                let restored = try ArtifactShelf(root: root).restore(name, version: number)
                print("restored artifact '\(name)' version \(restored.version) to \(restored.source) (sha256 \(restored.sha256))")
                return 0
            } catch let error as ArtifactError {
                throw CLIError(message: error.message, hint: error.hint, exitCode: ExitStatus.failure)
            }
        }
    }
}

/// Publishes a file by hand (outside a run). Also what the crash tests drive.
struct PublishArtifact: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Publish a file as a new version of an artifact (unchanged content writes nothing).",
        shouldDisplay: false)

    @Argument(help: "The file, relative to --root.") var path: String
    @Option(help: "The pipeline folder.") var root: String = "."
    @Option(help: "The artifact's name (default: the file name).") var name: String?
    @Option(help: "Keep at most this many versions.") var keep: Int?
    @Option(help: "Recorded as the publishing pipeline.") var pipeline: String = "manual"

    func run() async throws {
        try await guarded {
            let shelf = ArtifactShelf(root: URL(fileURLWithPath: root, isDirectory: true).standardizedFileURL.path)
            let output = OutputSpec(path: path, versioned: true, name: name, keep: keep)
            do {
                switch try shelf.publish(output, by: .init(pipeline: pipeline), now: Date()) {
                case .unchanged(let v): print("unchanged v\(v.version) \(v.sha256)")
                case .published(let v, _, _): print("published v\(v.version) \(v.sha256)")
                }
                return 0
            } catch let error as ArtifactError {
                throw CLIError(message: error.message, hint: error.hint, exitCode: ExitStatus.failure)
            }
        }
    }
}
