import Foundation

/// One kept version of an artifact.
public struct ArtifactVersion: Sendable, Codable, Hashable {
    /// 1, 2, 3, ... per artifact; never reused, also after retention removed older ones.
    public var version: Int
    /// Relative to the artifact's folder: `newest/NAME` or `historical/NAME`.
    public var file: String
    public var sha256: String
    public var size: Int64
    public var createdAt: Date
    public var pipeline: String
    public var stage: String?
    public var runID: String?
    /// The output path it was published from (and is restored to), relative to the pipeline root.
    public var source: String
    public var annotations: [String: String]

    public init(version: Int, file: String, sha256: String, size: Int64, createdAt: Date, pipeline: String,
                stage: String?, runID: String?, source: String, annotations: [String: String] = [:]) {
        self.version = version
        self.file = file
        self.sha256 = sha256
        self.size = size
        self.createdAt = createdAt
        self.pipeline = pipeline
        self.stage = stage
        self.runID = runID
        self.source = source
        self.annotations = annotations
    }

    enum CodingKeys: String, CodingKey {
        case version, file, sha256, size, pipeline, stage, source, annotations
        case createdAt = "created_at"
        case runID = "run_id"
    }

    public var isNewest: Bool { file.hasPrefix(ArtifactShelf.newest + "/") }
    public var fileName: String { (file as NSString).lastPathComponent }
}

/// `artifacts/<name>/index.json`: every kept version with its hash, size, time, run and annotations.
/// The index is the commit point of a publish: it is written (atomically) after the files are in place,
/// and files it does not name are leftovers of an interrupted publish, removed on the next open.
public struct ArtifactIndex: Sendable, Codable, Hashable {
    /// The format this build reads and writes; an index with a higher one is refused, not rewritten.
    public static let currentFormat = 1

    public var format: Int
    public var artifact: String
    /// The highest version number ever given.
    public var lastVersion: Int
    /// Oldest first.
    public var versions: [ArtifactVersion]

    public init(artifact: String) {
        format = Self.currentFormat
        self.artifact = artifact
        lastVersion = 0
        versions = []
    }

    enum CodingKeys: String, CodingKey {
        case format, artifact, versions
        case lastVersion = "last_version"
    }

    public var newest: ArtifactVersion? { versions.last { $0.isNewest } }

    public func version(_ number: Int) -> ArtifactVersion? { versions.first { $0.version == number } }

    static func encoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }

    static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
