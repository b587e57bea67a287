import SluiceCore

/// A failure to publish, restore or list an artifact: names the artifact, what went wrong and what to do.
/// Whatever the failure, the previous good version is left as it was.
public struct ArtifactError: HintedError, Sendable {
    public enum Code: String, Sendable {
        /// A declared output does not exist after its stage succeeded.
        case missingOutput
        /// A path leaves the pipeline root (`..`, absolute, or a symlink pointing outside).
        case pathEscape
        /// The index was written by a newer Sluice.
        case newerIndex
        /// The index cannot be read.
        case corruptIndex
        case versionNotFound
        /// Reading or writing files failed (full disk, permissions, ...).
        case io
    }

    public var code: Code
    public var artifact: String?
    public var message: String
    public var hint: String?

    public init(_ code: Code, artifact: String?, _ message: String, hint: String? = nil) {
        self.code = code
        self.artifact = artifact
        self.message = message
        self.hint = hint
    }
}
