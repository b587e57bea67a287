import SluiceCore
import SluiceStore

/// A failure of the engine, with what went wrong and what to do.
public struct EngineError: HintedError, Sendable {
    public enum Code: String, Sendable {
        case runNotFound
        case ambiguousRun
        case runBusy
        case overlap
        case invalidInput
        case io
    }

    public var code: Code
    public var message: String
    public var hint: String?

    public init(_ code: Code, _ message: String, hint: String? = nil) {
        self.code = code
        self.message = message
        self.hint = hint
    }
}
