import Foundation
import SluiceCore
import Yams

/// Reads pipeline files: YAML → `PipelineSpec`, collecting every diagnostic with its file:line:column.
public enum PipelineLoader {
    /// The outcome of loading: a spec when there were no errors, and every diagnostic found.
    public struct Loaded: Sendable {
        public var spec: PipelineSpec?
        public var diagnostics: [Diagnostic]
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
        var loaded = parse(yaml: text, file: path, root: url.deletingLastPathComponent().path)
        loaded.spec?.sourceFile = url.path
        return loaded
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
        let spec = reader.read(node)
        let diagnostics = reader.diagnostics.sorted { ($0.location?.line ?? 0, $0.location?.column ?? 0) < ($1.location?.line ?? 0, $1.location?.column ?? 0) }
        return Loaded(spec: diagnostics.hasErrors ? nil : spec, diagnostics: diagnostics)
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
