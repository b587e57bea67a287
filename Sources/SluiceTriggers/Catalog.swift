import Foundation
import SluiceCore
import SluiceDefinition

/// The pipelines `sluice serve` serves: pipeline files (given one by one, or every `*.yml`/`*.yaml`
/// in a folder) and pipelines built into the executable. A file that changed is loaded again; when it
/// no longer validates, the version loaded before stays in service.
public struct Catalog: Sendable {
    public struct Entry: Sendable {
        public var spec: PipelineSpec
        /// The file it was loaded from (nil for a pipeline built in Swift).
        public var file: String?
        var modified: Date?
    }

    public let sources: [String]
    public private(set) var entries: [String: Entry] = [:]
    /// Files that did not validate, at the modification time they had: reported once per change.
    var rejected: [String: Date?] = [:]

    public init(sources: [String], builtIn: [PipelineSpec] = []) {
        self.sources = sources
        for spec in builtIn { entries[spec.name] = Entry(spec: spec, file: nil, modified: nil) }
    }

    /// What changed in one look at the sources.
    public struct Changes: Sendable {
        /// Pipelines loaded for the first time or loaded again.
        public var loaded: [PipelineSpec] = []
        /// Pipelines whose file is gone.
        public var removed: [String] = []
        /// Files that do not validate, with their diagnostics (file:line:column).
        public var rejected: [(file: String, diagnostics: [Diagnostic])] = []
        /// Sources that are neither a file nor a folder.
        public var missing: [String] = []
    }

    /// The pipeline files the sources name now.
    func files() -> (files: [String], missing: [String]) {
        var files: [String] = [], missing: [String] = []
        for source in sources {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: source, isDirectory: &isDirectory) else { missing.append(source); continue }
            if isDirectory.boolValue {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: source)) ?? []
                files += names.filter { $0.hasSuffix(".yml") || $0.hasSuffix(".yaml") }.sorted()
                    .map { (source as NSString).appendingPathComponent($0) }
            } else {
                files.append(source)
            }
        }
        return (files, missing)
    }

    /// Loads new and changed files; keeps the previous version of a file that no longer validates.
    public mutating func refresh() -> Changes {
        var changes = Changes()
        let (files, missing) = self.files()
        changes.missing = missing
        var seen: Set<String> = []
        for file in files {
            let path = URL(fileURLWithPath: file).standardizedFileURL.path
            seen.insert(path)
            let modified = (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate]) as? Date
            if let current = entries.values.first(where: { $0.file == path }), current.modified == modified { continue }
            // A broken file is reported once per change, not at every look.
            if let seen = rejected[path], seen == modified { continue }
            let result = PipelineLoader.load(file: path)
            guard let spec = result.spec else {
                changes.rejected.append((path, result.diagnostics))
                rejected[path] = modified
                continue
            }
            if let clash = entries[spec.name], clash.file != path {
                changes.rejected.append((path, [.error("pipeline '\(spec.name)' is also defined in \(clash.file ?? "this executable"); names must be unique",
                                                       at: SourceLocation(file: path, line: 1, column: 1))]))
                rejected[path] = modified
                continue
            }
            rejected[path] = nil
            for (name, entry) in entries where entry.file == path && name != spec.name { entries[name] = nil; changes.removed.append(name) }
            entries[spec.name] = Entry(spec: spec, file: path, modified: modified)
            changes.loaded.append(spec)
        }
        for (name, entry) in entries where entry.file != nil && !seen.contains(entry.file!) {
            entries[name] = nil
            changes.removed.append(name)
        }
        return changes
    }

    /// Every pipeline, by name.
    public var pipelines: [PipelineSpec] { entries.values.map(\.spec).sorted { $0.name < $1.name } }
}
