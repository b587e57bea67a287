import Foundation
import Mustache
import SluiceCore
import SluiceEngine

/// A report rendered for sending: the subject line, a plain-text body and an HTML body.
public struct RenderedMessage: Sendable, Codable, Equatable {
    public var subject: String
    public var text: String
    public var html: String

    public init(subject: String, text: String, html: String) {
        self.subject = subject
        self.text = text
        self.html = html
    }
}

/// The templates reports are rendered with: the built-in ones, each replaceable by a file in a user's folder.
///
/// A folder may hold, for any report kind (`run_report`, `manual_review`, `session_complete`,
/// `session_timeout`, `session_late`), `<kind>.html.mustache`, `<kind>.txt.mustache` and
/// `<kind>.subject.mustache`; any other `<name>.mustache` is a partial, included as `{{> name}}`.
/// Everything is parsed by ``load(overrides:subject:)``, so `sluice validate` finds every mistake.
/// HTML templates escape every `{{value}}`; text and subject templates do not.
/// docs/notifications.md#reports-and-templates lists what templates see.
public struct ReportTemplates: Sendable {
    /// The parts of one report.
    public enum Part: String, Sendable, CaseIterable {
        case html
        case txt
        case subject
    }

    struct Parts: Sendable {
        var html: MustacheTemplate
        var txt: MustacheTemplate
        var subject: MustacheTemplate
    }

    var parts: [ReportKind: Parts]
    var htmlPartials: MustacheLibrary
    var textPartials: MustacheLibrary
    var subjectOverride: MustacheTemplate?
    /// The folder the overrides came from.
    public private(set) var directory: String?
    /// The files of that folder that replace built-in templates (`session_complete.html.mustache`), sorted.
    public private(set) var overridden: [String]
    /// The partials the folder defines, sorted.
    public private(set) var partials: [String]

    /// The built-in templates alone.
    public static let builtIn: ReportTemplates = {
        do {
            return try load(overrides: nil)
        } catch {
            preconditionFailure("the built-in report templates do not parse: \(error)")
        }
    }()

    /// The built-in `run_report` templates alone: what every run's `report.html` needs, parsed without
    /// the other kinds' (parsing every built-in template was a fifth of a one-stage run's CPU).
    static let builtInRunReport: ReportTemplates = {
        do {
            return try load(overrides: nil, kinds: [.runReport])
        } catch {
            preconditionFailure("the built-in report templates do not parse: \(error)")
        }
    }()

    /// Loads and parses the built-in templates, replaced by those in `directory` (when given), and a
    /// subject template given in the pipeline file (`subject:`), which overrides every kind's subject.
    /// `kinds`: the report kinds to prepare (every kind unless told).
    public static func load(overrides directory: String?, subject: String? = nil,
                            kinds: [ReportKind] = ReportKind.allCases) throws(TemplateError) -> ReportTemplates {
        var overrides: [ReportKind: [Part: MustacheTemplate]] = [:]
        var htmlPartials = MustacheLibrary()
        var textPartials = MustacheLibrary()
        var overridden: [String] = []
        var partialNames: [String] = []
        var sources: [(file: String, text: String)] = []
        if let directory {
            let files = try Self.files(in: directory)
            var partialFiles: [(name: String, file: String, text: String)] = []
            for name in files {
                let path = (directory as NSString).appendingPathComponent(name)
                guard let role = try Self.role(of: name, path: path) else { continue }
                let text = try Self.read(path)
                sources.append((path, text))
                switch role {
                case .template(let kind, let part):
                    overrides[kind, default: [:]][part] = try parse(text, part: part, file: path)
                    overridden.append(name)
                case .partial(let partial):
                    partialFiles.append((partial, path, text))
                }
            }
            for p in partialFiles {
                htmlPartials.register(try parse(p.text, part: .html, file: p.file), named: p.name)
                textPartials.register(try parse(p.text, part: .txt, file: p.file), named: p.name)
                partialNames.append(p.name)
            }
            for s in sources { try checkPartials(in: s.text, file: s.file, known: partialNames) }
        }
        var parts: [ReportKind: Parts] = [:]
        for kind in kinds {
            let own = overrides[kind] ?? [:]
            func template(_ part: Part, _ builtIn: String) throws(TemplateError) -> MustacheTemplate {
                if let mine = own[part] { return mine }
                return try parse(builtIn, part: part, file: "built-in \(kind.rawValue).\(part.rawValue)")
            }
            parts[kind] = Parts(html: try template(.html, BuiltInTemplates.html(kind)),
                                txt: try template(.txt, BuiltInTemplates.text(kind)),
                                subject: try template(.subject, BuiltInTemplates.subject(kind)))
        }
        var templates = ReportTemplates(parts: parts, htmlPartials: htmlPartials, textPartials: textPartials,
                                        subjectOverride: nil, directory: directory,
                                        overridden: overridden.sorted(), partials: partialNames.sorted())
        if let subject {
            templates.subjectOverride = try parse(subject, part: .subject, file: "subject")
            try checkPartials(in: subject, file: "subject", known: partialNames)
        }
        return templates
    }

    /// Parses a subject template alone (a pipeline file's `subject:`), for validation.
    public static func validate(subject: String) throws(TemplateError) {
        _ = try parse(subject, part: .subject, file: "subject")
    }

    // MARK: Rendering

    /// Renders one run's report: `run_report`, `manual_review`, or `session_late` (a member that ended
    /// after its session timed out; pass the session to name it).
    /// - Parameter subjectOverride: a subject template, overriding the loaded ones.
    public func render(run report: RunReport, kind: ReportKind, session: SessionReport? = nil,
                       subjectOverride: String? = nil) throws(TemplateError) -> RenderedMessage {
        let run: RunView
        var context: RunContext
        switch kind {
        case .runReport, .manualReview:
            run = RunView(report)
            context = RunContext(kind: kind.rawValue, title: report.pipeline, run: run, generator: "Sluice")
            if kind == .manualReview { context.review = ReviewView(report) }
        case .sessionLate:
            let sessionView = session.map(SessionView.init)
            let index = session?.members.firstIndex { $0.pipeline == report.pipeline }
            let member = index.flatMap { i in session.map { MemberView($0.members[i], index: i) } }
            run = RunView(report, member: member?.style)
            let memberTitle = member?.title ?? report.pipeline
            let sessionName = sessionView.map { "session \($0.sessionId) (\($0.title))" } ?? "its session"
            let note = "\(memberTitle) finished after \(sessionName) timed out"
                + (sessionView.map { " (timeout \($0.timeout), deadline \($0.deadline))" } ?? "")
                + "; it was not in the session's report, so here is its own."
            context = RunContext(kind: kind.rawValue, title: sessionView?.title ?? report.pipeline, run: run,
                                 session: sessionView, member: member,
                                 late: LateView(sessionId: sessionView?.sessionId, sessionTitle: sessionView?.title,
                                                memberTitle: memberTitle, timeout: sessionView?.timeout,
                                                deadline: sessionView?.deadline, note: note),
                                 generator: "Sluice")
        case .sessionComplete, .sessionTimeout:
            throw TemplateError(.wrongKind, "a \(kind.rawValue) report is rendered from a session report",
                                hint: "use render(session:)")
        }
        return try render(kind, context, subjectOverride: subjectOverride)
    }

    /// Renders a session's report: `session_complete` when every member ended, else `session_timeout`
    /// (the partial report naming what is missing).
    public func render(session report: SessionReport, subjectOverride: String? = nil) throws(TemplateError) -> RenderedMessage {
        let kind: ReportKind = report.status == "complete" ? .sessionComplete : .sessionTimeout
        let context = SessionContext(kind: kind.rawValue, title: report.title, session: SessionView(report), generator: "Sluice")
        return try render(kind, context, subjectOverride: subjectOverride)
    }

    /// The kind `render(session:)` uses for this report.
    public static func kind(of session: SessionReport) -> ReportKind {
        session.status == "complete" ? .sessionComplete : .sessionTimeout
    }

    func render(_ kind: ReportKind, _ context: some TemplateView, subjectOverride: String?) throws(TemplateError) -> RenderedMessage {
        guard let parts = parts[kind] else {
            throw TemplateError(.wrongKind, "no templates for report kind '\(kind.rawValue)'")
        }
        var subjectTemplate = self.subjectOverride ?? parts.subject
        if let subjectOverride { subjectTemplate = try Self.parse(subjectOverride, part: .subject, file: "subject") }
        let subject = subjectTemplate.render(context, library: textPartials)
            .split(whereSeparator: \.isWhitespace).joined(separator: " ")
        return RenderedMessage(subject: subject,
                               text: parts.txt.render(context, library: textPartials),
                               html: parts.html.render(context, library: htmlPartials))
    }

    // MARK: Parsing

    /// A content-type pragma, on a line of its own (which mustache drops), comes before every template:
    /// text and subject templates render without HTML escaping. Error lines are counted without it (and
    /// with it every line of the template is counted alike: mustache's column is 1-based after a newline).
    static func pragma(_ part: Part) -> String {
        part == .html ? "{{% CONTENT_TYPE: HTML}}\n" : "{{% CONTENT_TYPE: TEXT}}\n"
    }

    static func parse(_ source: String, part: Part, file: String) throws(TemplateError) -> MustacheTemplate {
        do {
            return try MustacheTemplate(string: pragma(part) + source)
        } catch let error as MustacheTemplate.ParserError {
            let column = max(1, error.context.columnNumber)
            let (message, hint) = describe(error.error, line: error.context.line, column: column)
            throw TemplateError(.syntax, message, hint: hint, file: file, line: max(1, error.context.lineNumber - 1), column: column)
        } catch {
            throw TemplateError(.syntax, "the template does not parse: \(error)", file: file)
        }
    }

    static func describe(_ error: any Error, line: String, column: Int) -> (String, String?) {
        guard let error = error as? MustacheTemplate.Error else { return ("the template does not parse: \(error)", nil) }
        switch error {
        case .sectionCloseNameIncorrect:
            let rest = line.dropFirst(column - 1)
            let name = rest.prefix { $0 != "}" && !$0.isWhitespace }
            return ("the closing tag {{/\(name)}} does not match the section it closes",
                    "close each {{#name}} or {{^name}} with {{/name}} of the same name, innermost first")
        case .unfinishedName:
            return ("a tag is not closed, or its name is not valid",
                    "write tags as {{name}}, {{#name}}…{{/name}}, {{^name}}…{{/name}} or {{> partial}}; names are letters, digits, '_', '-' and '.'")
        case .expectedSectionEnd:
            return ("a section is still open at the end of the template", "close each {{#name}} or {{^name}} with {{/name}}")
        case .invalidSetDelimiter:
            return ("the set-delimiter tag is not valid", "write it as {{=<% %>=}}")
        case .transformAppliedToInheritanceSection:
            return ("a block ({{$name}}) cannot apply a transform", "remove the transform from the block's name")
        case .illegalTokenInsideInheritSection, .textInsideInheritSection:
            return ("a {{<parent}} section may hold only {{$block}} definitions", "move other tags and text into a block")
        case .invalidConfigVariableSyntax, .unrecognisedConfigVariable:
            return ("the pragma is not valid", "the only pragma is {{% CONTENT_TYPE: HTML}} or {{% CONTENT_TYPE: TEXT}}")
        }
    }

    /// Every `{{> name}}` must name a partial of the folder.
    static func checkPartials(in text: String, file: String, known: [String]) throws(TemplateError) {
        guard text.contains("{{>") || text.contains("{{ >") else { return }
        let lines = text.components(separatedBy: "\n")
        for (i, line) in lines.enumerated() {
            var rest = Substring(line)
            while let open = rest.range(of: "{{") {
                let tag = rest[open.upperBound...]
                guard let close = tag.range(of: "}}") else { break }
                let body = tag[..<close.lowerBound].trimmingCharacters(in: .whitespaces)
                if body.hasPrefix(">") {
                    let name = body.dropFirst().trimmingCharacters(in: .whitespaces)
                    if !name.hasPrefix("*"), !known.contains(name) {
                        let column = line.distance(from: line.startIndex, to: open.lowerBound) + 1
                        throw TemplateError(
                            .unknownPartial, "the partial '\(name)' is not defined",
                            hint: Suggest.hint(for: name, in: known) ?? "add \(name).mustache to the templates folder",
                            file: file, line: i + 1, column: column)
                    }
                }
                rest = tag[close.upperBound...]
            }
        }
    }

    // MARK: The folder

    enum Role {
        case template(ReportKind, Part)
        case partial(String)
    }

    static func files(in directory: String) throws(TemplateError) -> [String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else {
            throw TemplateError(.unreadable, "the templates folder '\(directory)' does not exist",
                                hint: "create it, or fix the path in `templates:` (relative to the pipeline file's folder)")
        }
        guard isDirectory.boolValue else {
            throw TemplateError(.unreadable, "'\(directory)' is a file; `templates:` names a folder of .mustache files")
        }
        do {
            return try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
        } catch {
            throw TemplateError(.unreadable, "the templates folder '\(directory)' cannot be read: \(error.localizedDescription)")
        }
    }

    static func read(_ path: String) throws(TemplateError) -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TemplateError(.unreadable, "cannot read \(path)", file: path)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TemplateError(.unreadable, "the template is not UTF-8 text", file: path)
        }
        return text
    }

    /// What a file of the folder is: a template, a partial, or (nil) not ours. A name that looks like a
    /// misspelt template is an error with a did-you-mean.
    static func role(of name: String, path: String) throws(TemplateError) -> Role? {
        let kinds = ReportKind.allCases.map(\.rawValue)
        let partNames = Part.allCases.map(\.rawValue)
        let valid = kinds.flatMap { k in partNames.map { "\(k).\($0).mustache" } }
        guard name.hasSuffix(".mustache") else {
            // `session_complete.html`: a template missing its extension.
            if valid.contains(name + ".mustache") {
                throw TemplateError(.unknownFile, "'\(name)' is not read: templates end in .mustache",
                                    hint: "did you mean '\(name).mustache'?", file: path)
            }
            return nil
        }
        let stem = String(name.dropLast(".mustache".count))
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue { return nil }
        let pieces = stem.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if pieces.count == 1, ReportKind(rawValue: stem) != nil {
            throw TemplateError(.unknownFile, "'\(name)' names a report kind but not which part it is",
                                hint: "name it \(stem).html.mustache, \(stem).txt.mustache or \(stem).subject.mustache", file: path)
        }
        guard pieces.count == 2 else { return .partial(stem) }
        let (kindName, partName) = (pieces[0], pieces[1])
        if let kind = ReportKind(rawValue: kindName) {
            if let part = Part(rawValue: partName) { return .template(kind, part) }
            let suggestion = partName == "text" || partName == "htm" ? (partName == "text" ? "txt" : "html")
                : Suggest.closest(to: partName, in: partNames)
            throw TemplateError(.unknownFile, "'\(name)' is no template part: a report's parts are html, txt and subject",
                                hint: suggestion.map { "did you mean '\(kindName).\($0).mustache'?" }, file: path)
        }
        if let kind = Suggest.closest(to: kindName, in: kinds) {
            let part = Part(rawValue: partName)?.rawValue ?? Suggest.closest(to: partName, in: partNames) ?? partName
            throw TemplateError(.unknownFile, "'\(name)' is named for no report kind (\(kinds.joined(separator: ", ")))",
                                hint: "did you mean '\(kind).\(part).mustache'?", file: path)
        }
        return .partial(stem)
    }
}
