import Foundation
import SluiceCore
import Yams

/// Reads pipeline files: YAML → `PipelineSpec`, collecting every diagnostic with its file:line:column.
public enum PipelineLoader {
    /// The outcome of loading: a spec when there were no errors, and every diagnostic found.
    public struct Loaded: Sendable {
        public var spec: PipelineSpec?
        public var diagnostics: [Diagnostic]
        /// Set when the file is a session file (top-level `session: NAME`) that validated.
        public var session: SessionSpec?
        /// Whether the file is a session file (valid or not).
        public var isSessionFile = false
        var sessionReference: (name: String, location: SourceLocation?)?

        init(spec: PipelineSpec?, diagnostics: [Diagnostic], session: SessionSpec? = nil, isSessionFile: Bool = false,
             sessionReference: (name: String, location: SourceLocation?)? = nil) {
            self.spec = spec
            self.diagnostics = diagnostics
            self.session = session
            self.isSessionFile = isSessionFile
            self.sessionReference = sessionReference
        }
    }

    /// Warms the YAML parser up on another thread (Yams compiles its resolver's regular expressions at
    /// first use, ~2–3 ms), so a command that loads a pipeline file right after parsing its arguments
    /// finds it ready.
    public static func prepare() {
        Task.detached(priority: .userInitiated) { _ = try? Yams.compose(yaml: "warm: [up, 1, 1.5, true, null, 2026-01-01]") }
    }

    /// Loads and validates the pipeline file at `path`.
    public static func load(file path: String) -> Loaded {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            return Loaded(spec: nil, diagnostics: [.error(
                "pipeline file '\(path)' does not exist", at: nil,
                hint: "check the path; `sluice init` writes an example pipeline into the current folder")])
        }
        if isDirectory.boolValue {
            return Loaded(spec: nil, diagnostics: [.error(
                "'\(path)' is a folder, not a pipeline file", at: nil,
                hint: "name the .yml file inside it")])
        }
        let text: String
        do {
            let data = try Data(contentsOf: url)
            guard let decoded = String(data: data, encoding: .utf8) else {
                return Loaded(spec: nil, diagnostics: [.error(
                    "pipeline file '\(path)' is not UTF-8 text", at: SourceLocation(file: path, line: 1, column: 1),
                    hint: "save the file as UTF-8")])
            }
            text = decoded
        } catch {
            return Loaded(spec: nil, diagnostics: [.error(
                "cannot read pipeline file '\(path)': \(error.localizedDescription)", at: nil,
                hint: "check that the file is readable by this user")])
        }
        let folder = url.deletingLastPathComponent().path
        var loaded = parse(yaml: text, file: path, root: folder)
        loaded.spec?.sourceFile = url.path
        if !loaded.isSessionFile, loaded.sessionReference == nil, let session = loaded.spec?.session {
            // An inline session: members without a pipeline file beside this one are worth a warning (they
            // may be defined in Swift or elsewhere), not an error.
            loaded.diagnostics += memberProblems(session, folder: folder, file: path, ownName: loaded.spec?.name)
                .map { Diagnostic(.warning, $0.message, at: $0.location, hint: $0.hint) }
        }
        if loaded.isSessionFile {
            loaded.session?.sourceFile = url.path
            if let session = loaded.session {
                let problems = memberProblems(session, folder: folder, file: path)
                loaded.diagnostics += problems
                if problems.hasErrors { loaded.session = nil }
            }
        } else if let reference = loaded.sessionReference {
            switch findSession(named: reference.name, in: folder, excluding: url.path) {
            case .found(let session, let diagnostics):
                loaded.diagnostics += diagnostics
                if let name = loaded.spec?.name, session.member(name) == nil {
                    loaded.diagnostics.append(.error(
                        "pipeline '\(name)' joins session '\(reference.name)', which does not list it among its members",
                        at: reference.location, hint: "add '\(name)' to the members in \(session.sourceFile ?? "the session file")"))
                }
                if loaded.diagnostics.hasErrors { loaded.spec = nil } else { loaded.spec?.session = session }
            case .broken(let file, let diagnostics):
                loaded.diagnostics.append(.error("session '\(reference.name)' is declared in \(file), which has errors (below)",
                                                 at: reference.location, hint: "fix the session file"))
                loaded.diagnostics += diagnostics
                loaded.spec = nil
            case .notFound(let names):
                let hint = Suggest.hint(for: reference.name, in: names)
                    ?? (names.isEmpty ? "declare it in a file beside this one with `session: \(reference.name)`, `members:` and actions"
                        : "sessions declared beside this file: \(names.joined(separator: ", "))")
                loaded.diagnostics.append(.error("no session file in \(folder) declares session '\(reference.name)'",
                                                 at: reference.location, hint: hint))
                loaded.spec = nil
            }
        }
        return loaded
    }

    enum SessionLookup {
        case found(SessionSpec, [Diagnostic])
        case broken(String, [Diagnostic])
        case notFound([String])
    }

    /// The YAML files of a folder, sorted.
    static func yamlFiles(in folder: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
            .filter { $0.hasSuffix(".yml") || $0.hasSuffix(".yaml") }.sorted()
            .map { (folder as NSString).appendingPathComponent($0) }
    }

    /// The top-level `session:` (a session file) or `name:` (a pipeline file) of a YAML file, without
    /// validating it; `inlineSession`: the `name` of a pipeline file's inline `session: { name: … }`.
    static func topLevelName(_ path: String) -> (session: String?, pipeline: String?, inlineSession: String?) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              let node = try? Yams.compose(yaml: text), case .mapping(let m) = node else { return (nil, nil, nil) }
        var session: String?, pipeline: String?, inline: String?
        for (k, v) in m {
            guard case .scalar(let key) = k else { continue }
            if case .scalar(let value) = v {
                if key.string == "session" { session = value.string }
                if key.string == "name" { pipeline = value.string }
            } else if key.string == "session", case .mapping(let body) = v, case .scalar(let name)? = body["name"] {
                inline = name.string
            }
        }
        return m.keys.contains { $0.string == "stages" } ? (nil, pipeline, inline) : (session, nil, nil)
    }

    /// Finds the session named `name` in `folder`: a session file declaring it, or a pipeline file
    /// declaring it inline.
    static func findSession(named name: String, in folder: String, excluding: String) -> SessionLookup {
        var names: [String] = []
        for file in yamlFiles(in: folder) where URL(fileURLWithPath: file).standardizedFileURL.path != excluding {
            let top = topLevelName(file)
            if let inline = top.inlineSession {
                guard inline == name else { names.append(inline); continue }
                let loaded = load(file: file)
                guard let session = loaded.spec?.session else { return .broken(file, loaded.diagnostics.filter { $0.severity == .error }) }
                return .found(session, [])
            }
            guard let declared = top.session else { continue }
            guard declared == name else { names.append(declared); continue }
            let loaded = load(file: file)
            guard let session = loaded.session else { return .broken(file, loaded.diagnostics) }
            return .found(session, loaded.diagnostics)
        }
        return .notFound(names)
    }

    /// Members that no pipeline file beside the session file defines (`ownName`: the pipeline declaring
    /// the session inline, which is one even before its file is saved under the folder).
    static func memberProblems(_ session: SessionSpec, folder: String, file: String, ownName: String? = nil) -> [Diagnostic] {
        var pipelines = Set(yamlFiles(in: folder).compactMap { topLevelName($0).pipeline })
        if let ownName { pipelines.insert(ownName) }
        return session.members.filter { !pipelines.contains($0.pipeline) }.map { member in
            .error("session '\(session.name)' names unknown pipeline '\(member.pipeline)'", at: member.location ?? session.location,
                   hint: Suggest.hint(for: member.pipeline, in: pipelines)
                       ?? (pipelines.isEmpty ? "no pipeline file is beside \(file)" : "pipelines beside it: \(pipelines.sorted().joined(separator: ", "))"))
        }
    }

    /// Parses and validates pipeline YAML. `file` is used in locations; `root` is the folder paths are relative to.
    public static func parse(yaml: String, file: String, root: String) -> Loaded {
        let node: Node?
        do {
            node = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            return Loaded(spec: nil, diagnostics: [syntaxDiagnostic(error, file: file)])
        } catch {
            return Loaded(spec: nil, diagnostics: [.error("cannot parse YAML: \(error)", at: SourceLocation(file: file, line: 1, column: 1))])
        }
        var reader = SpecReader(file: file, root: root)
        if let node, case .mapping(let m) = node, m.keys.contains(where: { $0.string == "session" }),
           !m.keys.contains(where: { $0.string == "stages" }) {
            let session = reader.readSession(node, inline: false)
            let diagnostics = sorted(reader.diagnostics)
            return Loaded(spec: nil, diagnostics: diagnostics, session: diagnostics.hasErrors ? nil : session, isSessionFile: true)
        }
        let spec = reader.read(node)
        let diagnostics = sorted(reader.diagnostics)
        return Loaded(spec: diagnostics.hasErrors ? nil : spec, diagnostics: diagnostics, sessionReference: reader.sessionReference)
    }

    static func sorted(_ diagnostics: [Diagnostic]) -> [Diagnostic] {
        diagnostics.sorted { ($0.location?.line ?? 0, $0.location?.column ?? 0) < ($1.location?.line ?? 0, $1.location?.column ?? 0) }
    }

    static func syntaxDiagnostic(_ error: YamlError, file: String) -> Diagnostic {
        func at(_ mark: Mark) -> SourceLocation { SourceLocation(file: file, line: mark.line, column: mark.column) }
        switch error {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            let what = [context?.text, problem].compactMap { $0 }.filter { !$0.isEmpty }.joined(separator: " ")
            // libyaml notices some mistakes (an unclosed quote) only at the end of the file; the context
            // mark says where the construct it was reading began, which is where the mistake is.
            if let context, context.mark.line < mark.line, problem.contains("end of stream") {
                return .error("YAML syntax error: \(what) (noticed at line \(mark.line))", at: at(context.mark),
                              hint: "check the quotes, brackets and indentation from this point on")
            }
            return .error("YAML syntax error: \(what)", at: at(mark),
                          hint: "check indentation (spaces, not tabs), quotes and colons near this line")
        case let .duplicatedKeysInMapping(duplicates, context):
            return .error("key '\(duplicates.joined(separator: "', '"))' appears twice in the same mapping", at: at(context.mark),
                          hint: "remove one of them")
        case let .reader(problem, _, _, _):
            return .error("YAML cannot be read: \(problem)", at: SourceLocation(file: file, line: 1, column: 1),
                          hint: "save the file as UTF-8 text")
        default:
            return .error("YAML error: \(error)", at: SourceLocation(file: file, line: 1, column: 1))
        }
    }
}
