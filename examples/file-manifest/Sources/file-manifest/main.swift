// file-manifest: a pipeline defined in Swift, with the whole `sluice` CLI built into this executable.
//
//     list ──▶ hash ──▶ write-manifest ──▶ verify
//
// `list` finds the regular files of a folder, `hash` streams each through SHA-256, `write-manifest`
// writes manifest.json atomically, and `verify` (a supervised command) checks it is there.
// Each Swift stage's return value is recorded in Sluice's store, so the next stage reads it with its
// type — also after `resume` in a new process.
//
//     swift run --package-path examples/file-manifest file-manifest run file-manifest
//     swift run --package-path examples/file-manifest file-manifest run file-manifest -p folder=/some/where
import Crypto
import Foundation
import Sluice
import SluiceCLI

/// One file of the manifest.
struct Entry: Codable, Sendable, Hashable {
    /// Relative to the hashed folder, `/`-separated.
    var path: String
    var bytes: Int
    /// Lowercase hex.
    var sha256: String
}

/// What `manifest.json` holds.
struct Manifest: Codable, Sendable {
    var folder: String
    var files: [Entry]
    var totalBytes: Int
}

/// A stage's failure, in words (shown by `show` and `logs`).
struct ManifestError: Error, CustomStringConvertible {
    var description: String
}

/// This package's folder, found from this source file's path at build time. The pipeline's root is
/// set to it so `sample/` and `manifest.json` are found here whichever folder `swift run` starts in.
/// (Run records, `.sluice/`, stay in the current folder, as for every sluice command.)
func packageFolder(of file: String = #filePath) -> String {
    URL(fileURLWithPath: file)        // …/Sources/file-manifest/main.swift
        .deletingLastPathComponent()  // …/Sources/file-manifest
        .deletingLastPathComponent()  // …/Sources
        .deletingLastPathComponent()  // the package
        .path
}

/// The folder to hash: the `folder` param, absolute or relative to the stage's work directory.
func folderURL(_ context: StageContext) -> URL {
    let path = context.param("folder") ?? "sample"
    return path.hasPrefix("/") ? URL(fileURLWithPath: path) : context.workDirectory.appendingPathComponent(path)
}

/// SHA-256 of a file, read 64 KiB at a time so memory stays constant however big the file is.
func sha256(of url: URL) throws -> (bytes: Int, digest: String) {
    let handle = try FileHandle(forReadingFrom: url)
    defer { try? handle.close() }
    var hasher = SHA256()
    var bytes = 0
    while let chunk = try handle.read(upToCount: 64 * 1024), !chunk.isEmpty {
        // Also between chunks, so a timeout or Ctrl-C stops a multi-gigabyte file promptly.
        try Task.checkCancellation()
        hasher.update(data: chunk)
        bytes += chunk.count
    }
    let digest = hasher.finalize().map { String(format: "%02x", $0) }.joined()
    return (bytes, digest)
}

/// Writes `data` to `url` atomically: a temporary file in the same folder (so the rename stays on one
/// file system), flushed to disk, then renamed over the destination. Readers see the old file or the
/// new one, never half of one.
func writeAtomically(_ data: Data, to url: URL) throws {
    let temporary = url.deletingLastPathComponent()
        .appendingPathComponent("\(url.lastPathComponent).\(UUID().uuidString).tmp")
    guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
        throw ManifestError(description: "cannot create \(temporary.path)")
    }
    do {
        let handle = try FileHandle(forWritingTo: temporary)
        defer { try? handle.close() }
        try handle.write(contentsOf: data)
        try handle.synchronize()
    } catch {
        try? FileManager.default.removeItem(at: temporary)
        throw error
    }
    // rename(2) replaces an existing destination in one step (FileManager.moveItem refuses to).
    guard rename(temporary.path, url.path) == 0 else {
        let reason = String(cString: strerror(errno))
        try? FileManager.default.removeItem(at: temporary)
        throw ManifestError(description: "cannot rename \(temporary.lastPathComponent) to \(url.path): \(reason)")
    }
}

func makePipeline() throws(PipelineDefinitionError) -> Pipeline {
    // list: the regular files under the folder, as sorted relative paths (symbolic links are not followed).
    let list = Stage("list") { context -> [String] in
        let folder = folderURL(context)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ManifestError(description: "\(folder.path) is not a folder (set it with -p folder=PATH)")
        }
        guard let enumerator = FileManager.default.enumerator(atPath: folder.path) else {
            throw ManifestError(description: "cannot list \(folder.path)")
        }
        var paths: [String] = []
        while let relative = enumerator.nextObject() as? String {
            try Task.checkCancellation()
            let attributes = try FileManager.default.attributesOfItem(atPath: folder.appendingPathComponent(relative).path)
            if attributes[.type] as? FileAttributeType == .typeRegular { paths.append(relative) }
        }
        paths.sort()
        context.count("files", paths.count)
        context.logger.info("found \(paths.count) files in \(folder.path)")
        return paths
    }

    // hash: size and SHA-256 of every listed file. Reading files can fail transiently (a network
    // mount, a file being replaced), so the stage is retried; a timeout bounds a stuck read.
    let hash = Stage("hash", needs: list) { context -> [Entry] in
        let folder = folderURL(context)
        let paths = try await context.result(of: list)  // [String], read from the store
        var entries: [Entry] = []
        entries.reserveCapacity(paths.count)
        for path in paths {
            try Task.checkCancellation()
            let (bytes, digest) = try sha256(of: folder.appendingPathComponent(path))
            entries.append(Entry(path: path, bytes: bytes, sha256: digest))
            context.count("bytes", bytes)
            context.logger.info("hashed \(path) (\(bytes) bytes) \(digest)")
        }
        return entries
    }
    .retries(3, backoff: .exponential, initial: .seconds(1), max: .seconds(10))
    .timeout(.seconds(600))

    // write-manifest: manifest.json in the work directory (the pipeline root), pretty and with sorted keys.
    let writeManifest = Stage("write-manifest", needs: hash) { context in
        let entries = try await context.result(of: hash)  // [Entry]
        let manifest = Manifest(folder: context.param("folder") ?? "sample", files: entries,
                                totalBytes: entries.reduce(0) { $0 + $1.bytes })
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(manifest)
        data.append(0x0A)  // end with a newline, like a hand-written file
        let destination = context.workDirectory.appendingPathComponent("manifest.json")
        try writeAtomically(data, to: destination)
        context.logger.info("wrote \(destination.path) (\(entries.count) files)")
    }

    return try Pipeline("file-manifest", description: "Hash every file of a folder into manifest.json",
                        params: ["folder": "sample"], root: packageFolder()) {
        list
        hash
        writeManifest
        Command("verify", ["sh", "-c", "test -s manifest.json && echo manifest ok"], needs: writeManifest)
            .timeout(.seconds(30))
    }
}

do {
    await SluiceCommand.main(pipelines: [try makePipeline()])
} catch {
    // A mistake in the definition above (a duplicate name, a missing dependency, a cycle, ...).
    FileHandle.standardError.write(Data("error: \(error.message)\n".utf8))
    exit(2)
}
