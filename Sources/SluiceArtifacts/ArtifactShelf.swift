import Foundation
import SluiceCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The artifacts of one pipeline root: `<root>/artifacts/<name>/{newest,historical}/` and `index.json`.
///
/// Publishing is ordered so that a SIGKILL at any point leaves the old or the new state:
/// 1. the output is hashed (streaming); the same hash as the newest version means `unchanged`, nothing written;
/// 2. it is copied to a temporary file in `newest/`, fsynced, renamed to its timestamped name, `newest/` fsynced;
/// 3. the previous newest file is renamed into `historical/`, both folders fsynced;
/// 4. the index is written atomically (temporary file, fsync, rename, fsync) — the commit point;
/// 5. versions that retention drops were left out of that index; their files are removed last.
/// Every operation first reconciles the folder with its index: files the index does not name (temporary
/// files, a version whose index was never written) are removed, and an indexed file found in the other
/// folder (moved before the crash) is moved back. Operations on one artifact hold an exclusive lock.
public struct ArtifactShelf: Sendable {
    static let newest = "newest"
    static let historical = "historical"
    public static let indexFile = "index.json"

    /// The pipeline root, absolute.
    public let root: String

    public init(root: String) {
        self.root = URL(fileURLWithPath: root).standardizedFileURL.path
    }

    public var folder: String { root + "/artifacts" }
    public func folder(of name: String) -> String { folder + "/" + name }

    /// Who publishes, recorded with the version.
    public struct Publisher: Sendable, Hashable {
        public var pipeline: String
        public var stage: String?
        public var runID: String?
        public var annotations: [String: String]

        public init(pipeline: String, stage: String? = nil, runID: String? = nil, annotations: [String: String] = [:]) {
            self.pipeline = pipeline
            self.stage = stage
            self.runID = runID
            self.annotations = annotations
        }
    }

    public enum PublishResult: Sendable, Hashable {
        /// The content equals the newest version: nothing was written.
        case unchanged(ArtifactVersion)
        /// A new newest version; `previous` moved to historical; `removed` were dropped by retention.
        case published(ArtifactVersion, previous: ArtifactVersion?, removed: [ArtifactVersion])
    }

    // MARK: - paths

    /// `relative` resolved under the root, refused when it leaves it (lexically, or through a symlink).
    public func resolve(_ relative: String, artifact: String?, mustExist: Bool) throws(ArtifactError) -> String {
        if let problem = RelativePath.problem(relative) {
            throw ArtifactError(.pathEscape, artifact: artifact, "path '\(relative)' must stay inside \(root), but \(problem)",
                                hint: "write it relative to the pipeline's folder, without '..'")
        }
        let path = root + "/" + relative
        guard let realRoot = FileIO.realPath(root) else {
            throw ArtifactError(.io, artifact: artifact, "the pipeline folder \(root) does not exist")
        }
        if FileIO.isSymlink(path) {
            throw ArtifactError(.pathEscape, artifact: artifact, "'\(relative)' is a symbolic link; outputs and restored files must be real files",
                                hint: "write the file itself at \(relative), not a link to it")
        }
        // Every existing folder on the way must resolve inside the root.
        var parent = (path as NSString).deletingLastPathComponent
        while !FileIO.exists(parent), parent.count > root.count { parent = (parent as NSString).deletingLastPathComponent }
        guard let realParent = FileIO.realPath(parent), realParent == realRoot || realParent.hasPrefix(realRoot + "/") else {
            throw ArtifactError(.pathEscape, artifact: artifact, "'\(relative)' leads outside \(root) through a symbolic link",
                                hint: "replace the linked folder with a real folder inside the pipeline's folder")
        }
        if mustExist, !FileIO.isRegularFile(path) {
            throw ArtifactError(.missingOutput, artifact: artifact, "output '\(relative)' does not exist (or is not a regular file)",
                                hint: "the stage must write it before it ends, or leave it out of outputs:")
        }
        return path
    }

    /// Creates `artifacts/<name>/{newest,historical}` and checks they are inside the root.
    func prepare(_ name: String) throws(ArtifactError) -> String {
        guard OutputSpec.isArtifactName(name) else {
            throw ArtifactError(.pathEscape, artifact: name, "'\(name)' is not an artifact name (letters, digits, '-', '_', '.')")
        }
        let dir = folder(of: name)
        do {
            try FileIO.makeDirectory(folder)
            try FileIO.makeDirectory(dir)
            try FileIO.makeDirectory(dir + "/" + Self.newest)
            try FileIO.makeDirectory(dir + "/" + Self.historical)
        } catch {
            throw ArtifactError(.io, artifact: name, "cannot create the folders of artifact '\(name)': \(error)")
        }
        guard let realRoot = FileIO.realPath(root), let real = FileIO.realPath(dir), real == realRoot + "/artifacts/" + name else {
            throw ArtifactError(.pathEscape, artifact: name, "\(dir) leads outside \(root) through a symbolic link",
                                hint: "artifacts/ and its folders must be real folders inside the pipeline's folder")
        }
        return dir
    }

    // MARK: - index

    func loadIndex(_ name: String, dir: String) throws(ArtifactError) -> ArtifactIndex {
        let path = dir + "/" + Self.indexFile
        guard FileIO.exists(path) else { return ArtifactIndex(artifact: name) }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ArtifactError(.io, artifact: name, "cannot read the index of artifact '\(name)' (\(path)): \(error.localizedDescription)")
        }
        struct Header: Decodable { var format: Int }
        guard let header = try? JSONDecoder().decode(Header.self, from: data) else {
            throw ArtifactError(.corruptIndex, artifact: name, "the index of artifact '\(name)' (\(path)) is not an artifact index",
                                hint: "restore it from a backup; Sluice does not overwrite it")
        }
        guard header.format <= ArtifactIndex.currentFormat else {
            throw ArtifactError(.newerIndex, artifact: name,
                                "the index of artifact '\(name)' has format \(header.format), written by a newer Sluice (this one reads up to \(ArtifactIndex.currentFormat))",
                                hint: "use the newer Sluice for this pipeline; nothing was changed")
        }
        do { return try ArtifactIndex.decoder().decode(ArtifactIndex.self, from: data) } catch {
            throw ArtifactError(.corruptIndex, artifact: name, "the index of artifact '\(name)' (\(path)) cannot be read: \(error)",
                                hint: "restore it from a backup; Sluice does not overwrite it")
        }
    }

    func writeIndex(_ index: ArtifactIndex, dir: String, crashPoints: Bool) throws(IOFailure) {
        let data: Data
        do { data = try ArtifactIndex.encoder().encode(index) } catch { throw IOFailure("encode", dir, EINVAL) }
        try FileIO.writeAtomically(data, to: dir + "/" + Self.indexFile, crashPoint: crashPoints ? "index-temp-written" : nil)
        if crashPoints { CrashPoint.here("index-renamed") }
    }

    /// Makes the files agree with the index (see the type's documentation). Returns the index.
    func reconcile(_ name: String, dir: String) throws(ArtifactError) -> ArtifactIndex {
        var index = try loadIndex(name, dir: dir)
        let newestDir = dir + "/" + Self.newest, historicalDir = dir + "/" + Self.historical
        var newestFiles: [String] = [], historicalFiles: [String] = []
        do {
            newestFiles = try FileIO.list(newestDir)
            historicalFiles = try FileIO.list(historicalDir)
        } catch {
            throw ArtifactError(.io, artifact: name, "cannot read the folders of artifact '\(name)': \(error)",
                                hint: "make \(dir) and its newest/ and historical/ folders readable and writable by this user")
        }
        var changedIndex = false
        var touched = false
        do {
            for (i, version) in index.versions.enumerated() {
                let expectedFolder = version.isNewest ? Self.newest : Self.historical
                let otherFolder = version.isNewest ? Self.historical : Self.newest
                let present = version.isNewest ? newestFiles : historicalFiles
                let other = version.isNewest ? historicalFiles : newestFiles
                if present.contains(version.fileName) { continue }
                if other.contains(version.fileName) {
                    // Moved before the index recording the move was written: put it back.
                    try FileIO.rename(dir + "/" + otherFolder + "/" + version.fileName, dir + "/" + expectedFolder + "/" + version.fileName)
                    if version.isNewest {
                        newestFiles.append(version.fileName); historicalFiles.removeAll { $0 == version.fileName }
                    } else {
                        historicalFiles.append(version.fileName); newestFiles.removeAll { $0 == version.fileName }
                    }
                    touched = true
                } else {
                    // Deleted by someone else: the index stops naming it.
                    index.versions[i].file = ""
                    changedIndex = true
                }
            }
            if changedIndex {
                index.versions.removeAll { $0.file.isEmpty }
                try writeIndex(index, dir: dir, crashPoints: false)
            }
            let named = Set(index.versions.map(\.file))
            for file in newestFiles where !named.contains(Self.newest + "/" + file) {
                unlink(newestDir + "/" + file)
                touched = true
            }
            for file in historicalFiles where !named.contains(Self.historical + "/" + file) {
                unlink(historicalDir + "/" + file)
                touched = true
            }
            if touched {
                try FileIO.syncDirectory(newestDir)
                try FileIO.syncDirectory(historicalDir)
            }
        } catch {
            throw ArtifactError(.io, artifact: name, "cannot repair artifact '\(name)' after an interrupted publish: \(error)",
                                hint: "make \(dir) writable by this user")
        }
        return index
    }

    func locked<T>(_ name: String, _ body: (String) throws(ArtifactError) -> T) throws(ArtifactError) -> T {
        let dir = try prepare(name)
        let lock: FileLock
        do { lock = try FileLock(dir + "/.lock") } catch {
            throw ArtifactError(.io, artifact: name, "cannot lock artifact '\(name)': \(error)")
        }
        defer { lock.release() }
        return try body(dir)
    }

    // MARK: - operations

    /// The index of one artifact (reconciled first).
    public func index(of name: String) throws(ArtifactError) -> ArtifactIndex {
        guard FileIO.exists(folder(of: name)) else {
            throw ArtifactError(.versionNotFound, artifact: name, "there is no artifact '\(name)' in \(folder)")
        }
        return try locked(name) { dir throws(ArtifactError) in try reconcile(name, dir: dir) }
    }

    /// The artifacts kept under this root.
    public func names() -> [String] {
        ((try? FileIO.list(folder)) ?? []).filter { OutputSpec.isArtifactName($0) && FileIO.exists(folder(of: $0) + "/" + Self.indexFile) }
    }

    /// Publishes `output` (which the stage just wrote): unchanged content writes nothing; a change becomes
    /// the new newest version, the previous one moves to historical, retention drops old versions.
    public func publish(_ output: OutputSpec, by publisher: Publisher, now: Date) throws(ArtifactError) -> PublishResult {
        let name = output.name
        let source = try resolve(output.path, artifact: name, mustExist: true)
        return try locked(name) { dir throws(ArtifactError) in
            var index = try reconcile(name, dir: dir)
            let hashed: (hash: String, size: Int64)
            do { hashed = try FileIO.sha256(path: source) } catch {
                throw ArtifactError(.io, artifact: name, "cannot read output '\(output.path)' of artifact '\(name)': \(error)")
            }
            let previous = index.newest
            if let previous, previous.sha256 == hashed.hash { return .unchanged(previous) }

            let number = index.lastVersion + 1
            let fileName = Self.fileName(for: output.path, version: number, at: now)
            let newestDir = dir + "/" + Self.newest, historicalDir = dir + "/" + Self.historical
            let temp = newestDir + "/.tmp-" + UUID().uuidString
            let target = newestDir + "/" + fileName
            let copied: (hash: String, size: Int64)
            do { copied = try FileIO.copy(from: source, to: temp, crashPoints: true) } catch {
                throw ArtifactError(.io, artifact: name, "cannot write the new version of artifact '\(name)': \(error)",
                                    hint: "free disk space (or fix permissions) and run again; the previous version is untouched")
            }
            guard copied.hash == hashed.hash else {
                unlink(temp)
                throw ArtifactError(.io, artifact: name, "output '\(output.path)' of artifact '\(name)' changed while it was published",
                                    hint: "a process still writes it; make the stage finish writing before it ends")
            }
            CrashPoint.here("temp-synced")
            do {
                try FileIO.rename(temp, target)
                try FileIO.syncDirectory(newestDir)
            } catch {
                unlink(temp)
                throw ArtifactError(.io, artifact: name, "cannot place the new version of artifact '\(name)': \(error)")
            }
            CrashPoint.here("renamed")
            var moved = false
            do {
                if let previous {
                    try FileIO.rename(dir + "/" + previous.file, historicalDir + "/" + previous.fileName)
                    moved = true
                    try FileIO.syncDirectory(historicalDir)
                    try FileIO.syncDirectory(newestDir)
                }
                CrashPoint.here("moved-old")
                try CrashPoint.failure("moved-old", historicalDir)
                let version = ArtifactVersion(version: number, file: Self.newest + "/" + fileName, sha256: copied.hash, size: copied.size,
                                              createdAt: now, pipeline: publisher.pipeline, stage: publisher.stage, runID: publisher.runID,
                                              source: output.path, annotations: publisher.annotations)
                var next = index
                if let previous, let i = next.versions.firstIndex(where: { $0.version == previous.version }) {
                    next.versions[i].file = Self.historical + "/" + previous.fileName
                }
                next.versions.append(version)
                next.lastVersion = number
                let removed = Self.retention(of: next.versions, keep: output.keep, keepFor: output.keepFor, now: now)
                next.versions.removeAll { v in removed.contains { $0.version == v.version } }
                try writeIndex(next, dir: dir, crashPoints: true)
                index = next
                for old in removed {
                    CrashPoint.here("retention")
                    unlink(dir + "/" + old.file)
                }
                if !removed.isEmpty { try? FileIO.syncDirectory(historicalDir) }
                return .published(version, previous: previous.map { p in index.version(p.version) ?? p }, removed: removed)
            } catch {
                // Back to the previous state: the old newest returns, the new file goes.
                if moved, let previous { try? FileIO.rename(historicalDir + "/" + previous.fileName, dir + "/" + previous.file) }
                unlink(target)
                try? FileIO.syncDirectory(newestDir)
                try? FileIO.syncDirectory(historicalDir)
                throw ArtifactError(.io, artifact: name, "cannot record the new version of artifact '\(name)': \(error)",
                                    hint: "the previous version is untouched; fix the cause (disk space, permissions of \(dir)) and run again")
            }
        }
    }

    /// Copies a version (the newest when `version` is nil) back to the path it was published from (or to
    /// `relativeTarget`), atomically, checking that the copy is byte-identical (same SHA-256).
    @discardableResult
    public func restore(_ name: String, version number: Int? = nil, to relativeTarget: String? = nil) throws(ArtifactError) -> ArtifactVersion {
        guard FileIO.exists(folder(of: name)) else {
            throw ArtifactError(.versionNotFound, artifact: name, "there is no artifact '\(name)' in \(folder)",
                                hint: "`sluice artifacts` lists the artifacts and their versions")
        }
        return try locked(name) { dir throws(ArtifactError) in
            let index = try reconcile(name, dir: dir)
            guard let version = number.map({ index.version($0) }) ?? index.newest else {
                let known = index.versions.map { String($0.version) }.joined(separator: ", ")
                throw ArtifactError(.versionNotFound, artifact: name,
                                    number.map { "artifact '\(name)' has no version \($0)" } ?? "artifact '\(name)' has no version yet",
                                    hint: known.isEmpty ? nil : "kept versions: \(known)")
            }
            let target = try resolve(relativeTarget ?? version.source, artifact: name, mustExist: false)
            let targetDir = (target as NSString).deletingLastPathComponent
            do {
                try FileManager.default.createDirectory(atPath: targetDir, withIntermediateDirectories: true)
            } catch {
                throw ArtifactError(.io, artifact: name, "cannot create \(targetDir) to restore artifact '\(name)': \(error.localizedDescription)")
            }
            let temp = targetDir + "/.tmp-" + UUID().uuidString + "-" + (target as NSString).lastPathComponent
            do {
                let copied = try FileIO.copy(from: dir + "/" + version.file, to: temp)
                guard copied.hash == version.sha256 else {
                    unlink(temp)
                    throw ArtifactError(.corruptIndex, artifact: name,
                                        "version \(version.version) of artifact '\(name)' (\(version.file)) no longer has the content the index recorded (SHA-256 differs)",
                                        hint: "restore another version; the file at \(relativeTarget ?? version.source) was not changed")
                }
                try FileIO.rename(temp, target)
                try FileIO.syncDirectory(targetDir)
            } catch let error as ArtifactError {
                throw error
            } catch {
                unlink(temp)
                throw ArtifactError(.io, artifact: name, "cannot restore version \(version.version) of artifact '\(name)': \(error)",
                                    hint: "the file at \(relativeTarget ?? version.source) was not changed")
            }
            return version
        }
    }

    /// Versions to drop: never the newest; beyond the `keep` most recent, or older than `keepFor`.
    static func retention(of versions: [ArtifactVersion], keep: Int?, keepFor: Duration?, now: Date) -> [ArtifactVersion] {
        let ordered = versions.sorted { $0.version > $1.version }
        var removed: [ArtifactVersion] = []
        for (i, version) in ordered.enumerated() where !version.isNewest {
            if let keep, i >= keep { removed.append(version); continue }
            if let keepFor, now.timeIntervalSince(version.createdAt) > keepFor.seconds { removed.append(version) }
        }
        return removed
    }

    /// `sales.v3.20261125T180000Z.sqlite` for `db/sales.sqlite`, version 3.
    static func fileName(for path: String, version: Int, at date: Date) -> String {
        let base = (path as NSString).lastPathComponent
        let ext = (base as NSString).pathExtension
        let stem = ext.isEmpty ? base : (base as NSString).deletingPathExtension
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return "\(stem).v\(version).\(formatter.string(from: date))" + (ext.isEmpty ? "" : "." + ext)
    }
}
