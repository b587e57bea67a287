import Foundation

/// `{{name}}` placeholders inside argv elements and env values.
///
/// Substitution is plain text replacement inside one argument: a value never becomes two
/// arguments and never passes through a shell, whatever characters it holds.
public enum Template {
    public struct Placeholder: Hashable, Sendable {
        public var name: String
        /// Offset of `{{` in the text, in characters.
        public var offset: Int
    }

    public enum Problem: Error, Hashable, Sendable {
        case unclosed(offset: Int)
        case empty(offset: Int)
    }

    /// Every placeholder in `text`, or the first syntax problem.
    public static func placeholders(in text: String) -> Result<[Placeholder], Problem> {
        var found: [Placeholder] = []
        let chars = Array(text)
        var i = 0
        while i < chars.count - 1 {
            if chars[i] == "{" && chars[i + 1] == "{" {
                var j = i + 2
                var name = ""
                var closed = false
                while j < chars.count - 1 {
                    if chars[j] == "}" && chars[j + 1] == "}" { closed = true; break }
                    name.append(chars[j])
                    j += 1
                }
                guard closed else { return .failure(.unclosed(offset: i)) }
                let trimmed = name.trimmingCharacters(in: .whitespaces)
                guard !trimmed.isEmpty else { return .failure(.empty(offset: i)) }
                found.append(Placeholder(name: trimmed, offset: i))
                i = j + 2
            } else {
                i += 1
            }
        }
        return .success(found)
    }

    /// Replaces every placeholder with its value. Validation has rejected unknown names before a run;
    /// one that is still unknown renders as an empty string.
    public static func render(_ text: String, values: [String: String]) -> String {
        render(text) { values[$0] }
    }

    /// Replaces every placeholder with the value `lookup` gives for its name (empty when nil).
    public static func render(_ text: String, lookup: (String) -> String?) -> String {
        guard text.contains("{{") else { return text }
        var out = ""
        var rest = text[...]
        while let open = rest.range(of: "{{"), let close = rest[open.upperBound...].range(of: "}}") {
            out += rest[..<open.lowerBound]
            out += lookup(rest[open.upperBound..<close.lowerBound].trimmingCharacters(in: .whitespaces)) ?? ""
            rest = rest[close.upperBound...]
        }
        out += rest
        return out
    }

    /// The names a pipeline may use: `params.<name>` for each param, `run.id`, `run.dir`, `stage`, `pipeline`, `root`.
    /// Whether `name` refers to the current item (`item`, `item.field`, `item.a.b`): allowed in fan-out stages.
    public static func isItemName(_ name: String) -> Bool {
        name == "item" || (name.hasPrefix("item.") && name.count > 5)
    }

    public static func knownNames(params: some Sequence<String>) -> Set<String> {
        var names: Set<String> = ["run.id", "run.dir", "stage", "pipeline", "root"]
        for p in params { names.insert("params.\(p)") }
        return names
    }
}
