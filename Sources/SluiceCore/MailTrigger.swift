import Foundation

/// An IMAP mailbox: `imaps://user@host:993/INBOX` (TLS), `imap://user@host:143/INBOX` (STARTTLS,
/// required). The address never holds a password.
public struct MailboxAddress: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Security: String, Sendable, Hashable, Codable {
        case tls
        case startTLS = "starttls"
    }

    public var security: Security
    public var user: String
    public var host: String
    public var port: Int
    /// The folder, e.g. `INBOX`.
    public var folder: String

    public init(security: Security, user: String, host: String, port: Int, folder: String) {
        self.security = security
        self.user = user
        self.host = host
        self.port = port
        self.folder = folder
    }

    public enum ParseError: Error, Sendable, Equatable {
        case notAURL, scheme(String), noUser, password, noHost, port(String)

        public var message: String {
            switch self {
            case .notAURL: "is not an address such as imaps://user@mail.example.com:993/INBOX"
            case .scheme(let s): "has scheme '\(s)'; use imaps:// (TLS, port 993) or imap:// (STARTTLS, port 143)"
            case .noUser: "names no user; write imaps://USER@host/INBOX"
            case .password: "holds a password; a password never goes in a pipeline file: use password_env: or password_file:"
            case .noHost: "names no host"
            case .port(let p): "has port '\(p)', which is not a port number (1–65535)"
            }
        }
    }

    /// Parses `imaps://user@host[:port][/folder]`; the user may be percent-encoded (`me%40example.com`).
    public init(parsing text: String) throws(ParseError) {
        guard let schemeEnd = text.range(of: "://") else { throw .notAURL }
        switch text[..<schemeEnd.lowerBound].lowercased() {
        case "imaps": security = .tls; port = 993
        case "imap": security = .startTLS; port = 143
        default: throw .scheme(String(text[..<schemeEnd.lowerBound]))
        }
        var rest = text[schemeEnd.upperBound...]
        var folder = "INBOX"
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            if !path.isEmpty { folder = path.removingPercentEncoding ?? String(path) }
            rest = rest[..<slash]
        }
        guard let at = rest.lastIndex(of: "@") else { throw .noUser }
        let userInfo = rest[..<at]
        if userInfo.contains(":") { throw .password }
        guard !userInfo.isEmpty else { throw .noUser }
        user = userInfo.removingPercentEncoding ?? String(userInfo)
        var hostPort = rest[rest.index(after: at)...]
        if let colon = hostPort.lastIndex(of: ":"), !hostPort.hasSuffix("]") {
            let p = hostPort[hostPort.index(after: colon)...]
            guard let n = Int(p), (1...65535).contains(n) else { throw .port(String(p)) }
            port = n
            hostPort = hostPort[..<colon]
        }
        host = hostPort.hasPrefix("[") && hostPort.hasSuffix("]") ? String(hostPort.dropFirst().dropLast()) : String(hostPort)
        guard !host.isEmpty else { throw .noHost }
        self.folder = folder
    }

    /// The address as written (no password is ever part of it).
    public var description: String {
        let user = self.user.addingPercentEncoding(withAllowedCharacters: .urlUserAllowed.subtracting(CharacterSet(charactersIn: "@:"))) ?? self.user
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        return "\(security == .tls ? "imaps" : "imap")://\(user)@\(host):\(port)/\(folder)"
    }
}

/// Starts a run for each unseen message in a mailbox that passes the filters (all that are given),
/// under `sluice serve`. Several pipelines may watch one mailbox; each message starts every pipeline
/// whose filters it passes, once (its Message-ID is part of the run's idempotency key), and is marked
/// seen once those runs are recorded. A message no pipeline takes stays unseen.
public struct MailTrigger: Sendable, Hashable, Codable {
    public var mailbox: MailboxAddress
    /// The environment variable holding the password.
    public var passwordEnv: String?
    /// A file holding the password (its first line), relative to the pipeline's folder or absolute.
    public var passwordFile: String?
    /// A PEM file of certificates to trust instead of the system's (a private or self-signed server).
    public var caFile: String?
    /// `plain` (AUTHENTICATE PLAIN), `login` (LOGIN) or `auto` (PLAIN when offered).
    public var auth: String
    /// The subject holds this text (case-insensitive).
    public var subjectContains: String?
    /// The subject matches this regular expression.
    public var subjectRegex: String?
    /// The From header (name or address) holds this text (case-insensitive).
    public var from: String?
    /// The folder (relative to the pipeline's folder) attachments are saved in, one subfolder per message.
    public var attachments: String
    /// How often the mailbox is looked at when the server does not offer IDLE (and the longest IDLE).
    public var poll: Duration
    /// Messages larger than this are not fetched (left unseen, logged once).
    public var maxSize: Int
    public var location: SourceLocation?

    public init(mailbox: MailboxAddress, passwordEnv: String? = nil, passwordFile: String? = nil, caFile: String? = nil,
                auth: String = "auto", subjectContains: String? = nil, subjectRegex: String? = nil, from: String? = nil,
                attachments: String = "mail", poll: Duration = .seconds(60), maxSize: Int = 64 << 20,
                location: SourceLocation? = nil) {
        self.mailbox = mailbox
        self.passwordEnv = passwordEnv
        self.passwordFile = passwordFile
        self.caFile = caFile
        self.auth = auth
        self.subjectContains = subjectContains
        self.subjectRegex = subjectRegex
        self.from = from
        self.attachments = attachments
        self.poll = poll
        self.maxSize = maxSize
        self.location = location
    }

    /// Whether a message with this subject and sender passes every filter given.
    public func matches(subject: String, from sender: String) -> Bool {
        if let text = subjectContains, !subject.localizedCaseInsensitiveContains(text) { return false }
        if let pattern = subjectRegex {
            guard let regex = try? Regex(pattern), (try? regex.firstMatch(in: subject)) != nil else { return false }
        }
        if let text = from, !sender.localizedCaseInsensitiveContains(text) { return false }
        return true
    }

    /// What a log line calls the filters.
    public var summary: String {
        var filters: [String] = []
        if let s = subjectContains { filters.append("subject contains '\(s)'") }
        if let s = subjectRegex { filters.append("subject matches /\(s)/") }
        if let s = from { filters.append("from '\(s)'") }
        return "mail \(mailbox)" + (filters.isEmpty ? " (every message)" : " (\(filters.joined(separator: ", ")))")
    }

    /// Params a mail-triggered run receives, declared (empty by default) so stages may use them.
    public static let subjectParam = "mail_subject"
    public static let fromParam = "mail_from"
    public static let dateParam = "mail_date"
    /// The `Date` header's calendar day as the sender wrote it, `YYYY-MM-DD`: a session key for e-mails
    /// that arrive together on one day (`group_by: { key: "{{params.mail_day}}" }`).
    public static let dayParam = "mail_day"
    public static let messageIDParam = "mail_message_id"
    /// The saved attachments' paths relative to the pipeline's folder, one per line.
    public static let attachmentsParam = "mail_attachments"
    /// The folder (relative to the pipeline's folder) holding this message's attachments.
    public static let folderParam = "mail_folder"

    public static let params = [subjectParam, fromParam, dateParam, dayParam, messageIDParam, attachmentsParam, folderParam]

    /// The day of an RFC 5322 `Date` header (`Mon, 2 Mar 2026 08:00:00 +0100` → `2026-03-02`), in the
    /// header's own offset; nil when it does not read as one.
    public static func day(ofDateHeader header: String) -> String? {
        let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        var words = header.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," }).map { String($0).lowercased() }
        if let first = words.first, first.first?.isLetter == true { words.removeFirst() }   // the weekday
        guard words.count >= 3, let day = Int(words[0]), (1...31).contains(day),
              let month = months.firstIndex(of: String(words[1].prefix(3))), words[1].count >= 3,
              let year = Int(words[2]), words[2].count == 4 else { return nil }
        return String(format: "%04d-%02d-%02d", year, month + 1, day)
    }

    public static func declareParams(in params: inout [String: String]) {
        for name in Self.params where params[name] == nil { params[name] = "" }
    }

    /// Problems with the trigger's fields (the YAML reader reports them at their line).
    public static func problems(subjectRegex: String?, attachments: String, auth: String) -> [String] {
        var problems: [String] = []
        if let pattern = subjectRegex {
            do { _ = try Regex(pattern) } catch { problems.append("on_mail.subject_regex '\(pattern)' is not a regular expression: \(error)") }
        }
        if attachments.isEmpty || attachments.hasPrefix("/") || attachments.hasPrefix("~") || attachments.split(separator: "/").contains("..") {
            problems.append("on_mail.attachments '\(attachments)' leaves the pipeline's folder; write a folder relative to it, without '..'")
        }
        if !["auto", "plain", "login"].contains(auth) { problems.append("on_mail.auth must be auto, plain or login; got '\(auth)'") }
        return problems
    }
}
