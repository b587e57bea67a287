import Foundation
import SluiceCore

/// A report template that cannot be loaded or used, printed like a compiler diagnostic:
///
///     templates/session_complete.html.mustache:12:5: error: section 'members' is closed by {{/member}}
///         hint: close it with {{/members}}
public struct TemplateError: Error, HintedError, Sendable, Equatable {
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A template's text is not valid mustache.
        public static let syntax = Code(rawValue: "syntax")
        /// A file in the templates folder is named for no report kind or part (a misspelling).
        public static let unknownFile = Code(rawValue: "unknown_file")
        /// A template includes a partial (`{{> name}}`) that no file defines.
        public static let unknownPartial = Code(rawValue: "unknown_partial")
        /// The templates folder, or a file in it, cannot be read.
        public static let unreadable = Code(rawValue: "unreadable")
        /// A report rendered with the wrong method for its kind.
        public static let wrongKind = Code(rawValue: "wrong_kind")
        /// The rendered report could not be written.
        public static let write = Code(rawValue: "write")
    }

    public var code: Code
    /// What is wrong, with where (`file:line:column: error: …`) when it is in a template.
    public var message: String
    public var hint: String?
    /// The template file (or `subject` for a subject given in the pipeline file), when it is about one.
    public var file: String?
    public var line: Int?
    public var column: Int?

    public init(_ code: Code, _ message: String, hint: String? = nil, file: String? = nil, line: Int? = nil, column: Int? = nil) {
        self.code = code
        self.hint = hint
        self.file = file
        self.line = line
        self.column = column
        var place = ""
        if let file {
            place = file
            if let line { place += ":\(line)" + (column.map { ":\($0)" } ?? "") }
            place += ": "
        }
        self.message = "\(place)error: \(message)"
    }

    /// The location as a pipeline-file diagnostic would carry it.
    public var location: SourceLocation? {
        guard let file, let line else { return nil }
        return SourceLocation(file: file, line: line, column: column ?? 1)
    }
}
