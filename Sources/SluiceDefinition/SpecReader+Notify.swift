import Foundation
import SluiceCore
import Yams

/// `notify:` in pipeline files, session files (top-level `session:`), and the notification actions both use.
extension SpecReader {
    static let notifyKeys = ["on_success", "on_partial", "on_failure", "on_finish", "on_manual_review"]
    static let actionKeys = ["email", "webhook", "file", "templates", "subject"]
    static let emailKeys = ["smtp", "password_env", "password_file", "ca_file", "from", "to", "cc", "attach_report"]
    static let webhookKeys = ["url", "url_env", "format", "secret_env", "secret_file", "timeout"]
    static let fileChannelKeys = ["dir"]
    static let sessionKeys = ["session", "description", "title", "headline", "members", "group_by", "timeout", "on_complete", "on_timeout", "on_late"]
    static let inlineSessionKeys = ["name", "description", "title", "headline", "members", "group_by", "timeout", "on_complete", "on_timeout", "on_late"]
    static let memberKeys = ["pipeline", "title", "color"]
    static let groupByKeys = ["window", "key"]

    mutating func readNotify(_ node: Node) -> PipelineNotify {
        var notify = PipelineNotify()
        guard let entries = mapping(node, "notify") else { return notify }
        checkKeys(entries, allowed: Self.notifyKeys, in: "notify")
        for (key, _, value) in entries {
            let actions = readActions(value, what: "notify.\(key)")
            switch key {
            case "on_success": notify.onSuccess = actions
            case "on_partial": notify.onPartial = actions
            case "on_failure": notify.onFailure = actions
            case "on_finish": notify.onFinish = actions
            case "on_manual_review": notify.onManualReview = actions
            default: break
            }
        }
        return notify
    }

    /// A list of actions (a single mapping is taken as a list of one).
    mutating func readActions(_ node: Node, what: String) -> [NotifyAction] {
        let items: [Node]
        switch node {
        case .sequence(let seq): items = Array(seq)
        case .mapping: items = [node]
        default:
            error("\(what) must be a list of notifications (each `- email: …`, `- webhook: …` or `- file: …`), got \(Self.kind(node))", node)
            return []
        }
        return items.enumerated().compactMap { i, item in readAction(item, what: "\(what)[\(i + 1)]") }
    }

    mutating func readAction(_ node: Node, what: String) -> NotifyAction? {
        guard let entries = mapping(node, what) else { return nil }
        checkKeys(entries, allowed: Self.actionKeys, in: what)
        let byKey = Dictionary(entries.map { ($0.0, ($0.1, $0.2)) }, uniquingKeysWith: { a, _ in a })
        let channels = entries.filter { ["email", "webhook", "file"].contains($0.0) }
        guard channels.count == 1, let (kind, _, value) = channels.first else {
            error(channels.isEmpty ? "\(what) names no channel" : "\(what) names \(channels.count) channels; give one per entry", node,
                  hint: "write one of `email:`, `webhook:` or `file:` per list entry")
            return nil
        }
        let channel: NotifyAction.Channel?
        switch kind {
        case "email": channel = readEmail(value, what: "\(what).email").map { .email($0) }
        case "webhook": channel = readWebhook(value, what: "\(what).webhook").map { .webhook($0) }
        default: channel = readFileChannel(value, what: "\(what).file").map { .file($0) }
        }
        guard let channel else { return nil }
        var action = NotifyAction(channel: channel, root: root, location: location(node))
        if let (_, v) = byKey["templates"], let path = string(v, "\(what).templates") {
            action.templates = path
        }
        if let (_, v) = byKey["subject"], let s = string(v, "\(what).subject") {
            if s.contains("\n") || s.contains("\r") {
                error("\(what).subject must be one line", v)
            } else {
                action.subject = s
            }
        }
        return action
    }

    mutating func secretName(_ node: Node, _ what: String) -> String? {
        guard let name = string(node, what) else { return nil }
        guard !name.isEmpty, name.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "_") }) else {
            error("\(what) '\(name)' is not an environment variable name", node, hint: "e.g. SLUICE_SMTP_PASSWORD")
            return nil
        }
        return name
    }

    mutating func path(_ node: Node, _ what: String) -> String? {
        string(node, what).map { $0.hasPrefix("/") ? $0 : (root as NSString).appendingPathComponent($0) }
    }

    mutating func refusePassword(_ entries: [(String, Node, Node)], _ what: String, keys: [String]) -> Bool {
        for (key, keyNode, _) in entries where keys.contains(key) {
            error("\(what).\(key): a secret never goes in a pipeline file", keyNode,
                  hint: "put it in an environment variable (\(key)_env: NAME) or a file readable only by you (\(key)_file: /etc/sluice/\(key))")
            return true
        }
        return false
    }

    mutating func readEmail(_ node: Node, what: String) -> EmailChannel? {
        guard let entries = mapping(node, what) else { return nil }
        if refusePassword(entries, what, keys: ["password"]) { return nil }
        checkKeys(entries, allowed: Self.emailKeys, in: what)
        let byKey = Dictionary(entries.map { ($0.0, ($0.1, $0.2)) }, uniquingKeysWith: { a, _ in a })
        guard let (_, s) = byKey["smtp"] else {
            error("\(what) needs smtp:", node, hint: "e.g. `smtp: smtp://reports@mail.example.com:587` (STARTTLS) or smtps://…:465 (TLS)")
            return nil
        }
        guard let text = string(s, "\(what).smtp") else { return nil }
        let server: SMTPAddress
        do throws(SMTPAddress.ParseError) { server = try SMTPAddress(parsing: text) } catch {
            self.error("\(what).smtp '\(error == .password ? "(hidden)" : text)' \(error.message)", s,
                       hint: "e.g. smtp://reports@mail.example.com:587 (STARTTLS) or smtps://reports@mail.example.com:465 (TLS)")
            return nil
        }
        var ok = true
        var password = SecretSource()
        if let (_, v) = byKey["password_env"] { password.env = secretName(v, "\(what).password_env"); ok = ok && password.env != nil }
        if let (_, v) = byKey["password_file"] { password.file = path(v, "\(what).password_file") }
        if password.env != nil && password.file != nil {
            error("\(what) has both password_env and password_file; give one", byKey["password_file"]?.1)
            ok = false
        }
        if server.user != nil && password.isEmpty && ok {
            error("\(what).smtp names user '\(server.user!)' but no password source", s,
                  hint: "add password_env: NAME (an environment variable) or password_file: PATH")
            ok = false
        }
        guard let (_, f) = byKey["from"], let from = string(f, "\(what).from") else {
            if byKey["from"] == nil { error("\(what) needs from:", node, hint: "e.g. `from: \"Sluice reports <reports@example.com>\"`") }
            return nil
        }
        if !Self.isMailAddress(from) {
            error("\(what).from '\(from)' is not an e-mail address", f, hint: "write `name@example.com` or `Name <name@example.com>`")
            ok = false
        }
        func addresses(_ key: String) -> [String] {
            guard let (_, v) = byKey[key], let list = stringList(v, "\(what).\(key)") else { return [] }
            var out: [String] = []
            for (a, n) in list {
                if Self.isMailAddress(a) { out.append(a) } else {
                    error("\(what).\(key) '\(a)' is not an e-mail address", n, hint: "write `name@example.com` or `Name <name@example.com>`")
                    ok = false
                }
            }
            return out
        }
        let to = addresses("to"), cc = addresses("cc")
        if to.isEmpty && cc.isEmpty && ok {
            error("\(what) needs to: (one address or a list)", node)
            ok = false
        }
        var channel = EmailChannel(server: server, password: password, from: from, to: to, cc: cc)
        if let (_, v) = byKey["ca_file"] { channel.caFile = path(v, "\(what).ca_file") }
        if let (_, v) = byKey["attach_report"] {
            if let b = v.bool { channel.attachReport = b } else { error("\(what).attach_report must be true or false", v); ok = false }
        }
        return ok ? channel : nil
    }

    /// `a@b.c` or `Name <a@b.c>`, without line breaks.
    static func isMailAddress(_ text: String) -> Bool {
        guard !text.contains("\n"), !text.contains("\r") else { return false }
        var address = text.trimmingCharacters(in: .whitespaces)
        if let open = address.lastIndex(of: "<"), address.hasSuffix(">") {
            address = String(address[address.index(after: open)..<address.index(before: address.endIndex)])
        }
        let parts = address.split(separator: "@", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && !parts[1].isEmpty && !address.contains(" ")
    }

    mutating func readWebhook(_ node: Node, what: String) -> WebhookChannel? {
        guard let entries = mapping(node, what) else { return nil }
        if refusePassword(entries, what, keys: ["secret"]) { return nil }
        checkKeys(entries, allowed: Self.webhookKeys, in: what)
        let byKey = Dictionary(entries.map { ($0.0, ($0.1, $0.2)) }, uniquingKeysWith: { a, _ in a })
        var ok = true
        var hook = WebhookChannel(url: "")
        switch (byKey["url"], byKey["url_env"]) {
        case (let u?, nil):
            guard let url = string(u.1, "\(what).url") else { return nil }
            guard let c = URLComponents(string: url), ["http", "https"].contains(c.scheme?.lowercased() ?? ""), c.host?.isEmpty == false else {
                error("\(what).url '\(WebhookChannel.redacted(url))' is not an http(s) URL", u.1, hint: "e.g. https://hooks.example.com/sluice")
                return nil
            }
            hook.url = url
        case (nil, let e?):
            hook.urlEnv = secretName(e.1, "\(what).url_env")
            ok = hook.urlEnv != nil
        case (_?, _?):
            error("\(what) has both url and url_env; give one", byKey["url_env"]?.1)
            return nil
        case (nil, nil):
            error("\(what) needs url: (or url_env: naming an environment variable that holds it)", node)
            return nil
        }
        if let (_, v) = byKey["format"], let f = string(v, "\(what).format") {
            if let format = WebhookChannel.Format(rawValue: f) { hook.format = format } else {
                error("\(what).format must be json or slack; got '\(f)'", v, hint: Suggest.hint(for: f, in: WebhookChannel.Format.allCases.map(\.rawValue)))
                ok = false
            }
        }
        if let (_, v) = byKey["secret_env"] { hook.secret.env = secretName(v, "\(what).secret_env"); ok = ok && hook.secret.env != nil }
        if let (_, v) = byKey["secret_file"] { hook.secret.file = path(v, "\(what).secret_file") }
        if hook.secret.env != nil && hook.secret.file != nil {
            error("\(what) has both secret_env and secret_file; give one", byKey["secret_file"]?.1)
            ok = false
        }
        if let (_, v) = byKey["timeout"], let d = positiveDuration(v, "\(what).timeout") { hook.timeout = d }
        return ok ? hook : nil
    }

    mutating func readFileChannel(_ node: Node, what: String) -> FileChannel? {
        let dirNode: Node
        switch node {
        case .scalar: dirNode = node
        default:
            guard let entries = mapping(node, what) else { return nil }
            checkKeys(entries, allowed: Self.fileChannelKeys, in: what)
            guard let d = entries.first(where: { $0.0 == "dir" })?.2 else {
                error("\(what) needs dir: (the folder reports are written into)", node)
                return nil
            }
            dirNode = d
        }
        guard let dir = string(dirNode, "\(what).dir"), !dir.isEmpty else { return nil }
        return FileChannel(directory: dir)
    }

    // MARK: sessions

    /// A session file (`session: NAME` at the top) or an inline `session:` mapping of a pipeline file.
    mutating func readSession(_ node: Node, inline: Bool) -> SessionSpec? {
        let what = inline ? "session" : "the session file"
        guard let entries = mapping(node, what) else { return nil }
        checkKeys(entries, allowed: inline ? Self.inlineSessionKeys : Self.sessionKeys, in: what)
        let byKey = Dictionary(entries.map { ($0.0, ($0.1, $0.2)) }, uniquingKeysWith: { a, _ in a })
        let nameKey = inline ? "name" : "session"
        var ok = true
        guard let (_, nameNode) = byKey[nameKey], let name = string(nameNode, inline ? "session.name" : "session") else {
            if byKey[nameKey] == nil { error("\(what) has no `\(nameKey):`", node, hint: "name the session, e.g. `\(nameKey): daily-report`") }
            return nil
        }
        if !Self.isValidName(name) {
            error("session name '\(name)' is not allowed: it must start with a letter, digit or '_', hold only letters, digits, '_', '-' and '.', and be at most 100 characters", nameNode)
            ok = false
        }
        var members: [SessionSpec.Member] = []
        if let (_, m) = byKey["members"] {
            if case .sequence(let seq) = m {
                for item in seq {
                    switch item {
                    case .scalar:
                        if let p = string(item, "each member") { members.append(.init(pipeline: p, location: location(item))) }
                    default:
                        guard let e = mapping(item, "a member") else { continue }
                        checkKeys(e, allowed: Self.memberKeys, in: "a member")
                        let b = Dictionary(e.map { ($0.0, $0.2) }, uniquingKeysWith: { a, _ in a })
                        guard let pn = b["pipeline"], let p = string(pn, "member pipeline") else {
                            error("a member mapping needs pipeline:", item, hint: "e.g. `- { pipeline: si, title: Salud Internacional, color: \"#f2c200\" }`")
                            continue
                        }
                        var member = SessionSpec.Member(pipeline: p, location: location(pn))
                        member.title = b["title"].flatMap { string($0, "member title") }
                        if let cn = b["color"], let c = string(cn, "member color") {
                            if Self.isCSSColor(c) { member.color = c } else {
                                error("member color '\(c)' is not a colour", cn, hint: "write #rrggbb (e.g. #f2c200) or a CSS colour name")
                            }
                        }
                        members.append(member)
                    }
                }
            } else {
                error("members must be a list of pipeline names, got \(Self.kind(m))", m)
            }
            let names = members.map(\.pipeline)
            if let dup = names.first(where: { n in names.filter { $0 == n }.count > 1 }) {
                error("member '\(dup)' is listed twice", m)
                ok = false
            }
            if members.isEmpty { error("members is empty", m, hint: "list the pipelines whose runs belong together"); ok = false }
        } else {
            error("\(what) has no `members:`", node, hint: "list the pipelines whose runs belong together, e.g. `members: [si, viajeros]`")
            ok = false
        }
        var grouping = SessionSpec.Grouping.window(.seconds(600))
        if let (_, g) = byKey["group_by"], let e = mapping(g, "group_by") {
            checkKeys(e, allowed: Self.groupByKeys, in: "group_by")
            let known = e.filter { Self.groupByKeys.contains($0.0) }
            if known.count != 1 {
                error("group_by needs one of window: (e.g. 10m) or key: (e.g. \"{{params.mail_date}}\")", g)
                ok = false
            } else if known[0].0 == "window" {
                if let d = positiveDuration(known[0].2, "group_by.window") { grouping = .window(d) } else { ok = false }
            } else if let k = string(known[0].2, "group_by.key") {
                switch Template.placeholders(in: k) {
                case .failure: error("group_by.key '\(k)' has an unclosed or empty placeholder", known[0].2, hint: "e.g. \"{{params.mail_date}}\""); ok = false
                case .success(let found):
                    for p in found where p.name != "pipeline" && !p.name.hasPrefix("params.") {
                        error("group_by.key uses unknown placeholder '{{\(p.name)}}'", known[0].2, hint: "a key may use {{params.NAME}} and {{pipeline}}")
                        ok = false
                    }
                    if found.isEmpty {
                        error("group_by.key '\(k)' has no placeholder, so every run would share one session", known[0].2,
                              hint: "e.g. \"{{params.mail_date}}\"; use window: to group by time")
                        ok = false
                    }
                }
                grouping = .key(k)
            }
        }
        var timeout = Duration.seconds(300)
        if let (_, t) = byKey["timeout"] {
            if let d = positiveDuration(t, "session timeout") { timeout = d } else { ok = false }
        }
        let before = diagnostics.count
        let onComplete = byKey["on_complete"].map { readActions($0.1, what: "on_complete") } ?? []
        let onTimeout = byKey["on_timeout"].map { readActions($0.1, what: "on_timeout") } ?? []
        let onLate = byKey["on_late"].map { readActions($0.1, what: "on_late") }
        if diagnostics.count != before { ok = false }
        let title = byKey["title"].flatMap { string($0.1, "title") }
        let description = byKey["description"].flatMap { string($0.1, "description") }
        let headline = byKey["headline"].flatMap { string($0.1, "headline") }
        guard ok else { return nil }
        return SessionSpec(name: name, description: description, title: title, headline: headline, members: members, grouping: grouping,
                           timeout: timeout, onComplete: onComplete, onTimeout: onTimeout, onLate: onLate,
                           sourceFile: file, root: root, location: location(node))
    }

    static func isCSSColor(_ text: String) -> Bool {
        if text.hasPrefix("#") {
            let hex = text.dropFirst()
            return [3, 6, 8].contains(hex.count) && hex.allSatisfy(\.isHexDigit)
        }
        return !text.isEmpty && text.count <= 30 && text.allSatisfy { $0.isASCII && $0.isLetter }
    }
}
