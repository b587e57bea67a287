import Foundation

/// A file a stage declares it produces (`outputs:`). After the stage succeeded each one must exist;
/// a `versioned` one is published as an artifact: kept in `artifacts/<name>/newest/` when its content
/// changed, the previous version moved to `historical/`.
public struct OutputSpec: Sendable, Codable, Hashable {
    /// Relative to the pipeline root, inside it.
    public var path: String
    public var versioned: Bool
    /// The artifact's name (default: the file name); unique within the pipeline.
    public var name: String
    /// Retention: keep at most this many versions (newest included).
    public var keep: Int?
    /// Retention: drop historical versions older than this.
    public var keepFor: Duration?

    public init(path: String, versioned: Bool = false, name: String? = nil, keep: Int? = nil, keepFor: Duration? = nil) {
        self.path = path
        self.versioned = versioned
        self.name = name ?? (path as NSString).lastPathComponent
        self.keep = keep
        self.keepFor = keepFor
    }

    /// Letters, digits, '-', '_' and '.', not starting with '.', at most 100 characters.
    public static func isArtifactName(_ text: String) -> Bool {
        guard let first = text.unicodeScalars.first, first != "." else { return false }
        return text.count <= 100 && text.unicodeScalars.allSatisfy {
            $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-_.".unicodeScalars.contains($0))
        }
    }
}

/// What happens when a stage fails for good (after its retries).
public enum FailureAction: String, Sendable, Codable, CaseIterable {
    /// The stage is failed (the default).
    case fail
    /// The stage's versioned outputs are restored to their last good version; the stage ends `rolled_back`.
    case rollback
}

/// Deletes or archives files once every stage it names succeeded in the same run (C15): never after a
/// failure, a cancel, a rollback or a skipped stage. Only files last modified before the run started are
/// acted on, so a file that arrived while the run went is left for the next run.
public struct LifecyclePolicy: Sendable, Codable, Hashable {
    public enum Action: Sendable, Codable, Hashable {
        case delete
        /// Moved into this folder (relative to the root), keeping its name.
        case archive(folder: String)
    }

    /// Relative to the pipeline root.
    public var files: String
    public var action: Action
    public var afterSuccessOf: [StageName]
    public var location: SourceLocation?

    public init(files: String, action: Action, afterSuccessOf: [StageName], location: SourceLocation? = nil) {
        self.files = files
        self.action = action
        self.afterSuccessOf = afterSuccessOf
        self.location = location
    }

    public var summary: String {
        switch action {
        case .delete: "delete \(files) after success of \(afterSuccessOf.joined(separator: ", "))"
        case .archive(let folder): "archive \(files) into \(folder) after success of \(afterSuccessOf.joined(separator: ", "))"
        }
    }

    /// Whether the policy acts, given the run's stage statuses: every named stage succeeded
    /// (not partially, not rolled back, not skipped) and the run was not cancelled.
    public func applies(statuses: [StageName: StageStatus], cancelled: Bool) -> Bool {
        !cancelled && !afterSuccessOf.isEmpty && afterSuccessOf.allSatisfy { statuses[$0] == .success }
    }
}

/// Lexical rules for paths written in a pipeline: relative, no `..`, not empty. (Symlinks are checked
/// when the files are touched.)
public enum RelativePath {
    /// Why `path` may not be used as a path inside the pipeline root, or nil when it may.
    public static func problem(_ path: String) -> String? {
        if path.isEmpty { return "it is empty" }
        if path.hasPrefix("/") { return "it is absolute" }
        if path.hasPrefix("~") { return "it starts with '~'" }
        if path.split(separator: "/").contains("..") { return "it leaves the pipeline's folder with '..'" }
        if path.contains("\0") { return "it holds a NUL character" }
        return nil
    }
}
