import Foundation

/// An SMTP server: `smtp://user@host:587` (STARTTLS, required), `smtps://user@host:465` (TLS from the
/// first byte), or `smtp://host:25` without a user (no login; STARTTLS still used when offered). The
/// address never holds a password.
public struct SMTPAddress: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Security: String, Sendable, Hashable, Codable {
        /// TLS from the first byte (`smtps://`, port 465).
        case tls
        /// Plain connection upgraded with STARTTLS (`smtp://`, port 587). Required when a user logs in;
        /// used when offered otherwise.
        case startTLS = "starttls"
    }

    public var security: Security
    /// The login, when the server wants one.
    public var user: String?
    public var host: String
    public var port: Int

    public init(security: Security, user: String?, host: String, port: Int) {
        self.security = security
        self.user = user
        self.host = host
        self.port = port
    }

    public enum ParseError: Error, Sendable, Equatable {
        case notAURL, scheme(String), password, noHost, port(String)

        public var message: String {
            switch self {
            case .notAURL: "is not an address such as smtp://reports@mail.example.com:587"
            case .scheme(let s): "has scheme '\(s)'; use smtp:// (STARTTLS, port 587) or smtps:// (TLS, port 465)"
            case .password: "holds a password; a password never goes in a pipeline file: use password_env: or password_file:"
            case .noHost: "names no host"
            case .port(let p): "has port '\(p)', which is not a port number (1–65535)"
            }
        }
    }

    /// Parses `smtp[s]://[user@]host[:port]`; the user may be percent-encoded (`me%40example.com`).
    public init(parsing text: String) throws(ParseError) {
        guard let schemeEnd = text.range(of: "://") else { throw .notAURL }
        switch text[..<schemeEnd.lowerBound].lowercased() {
        case "smtps": security = .tls; port = 465
        case "smtp": security = .startTLS; port = 587
        default: throw .scheme(String(text[..<schemeEnd.lowerBound]))
        }
        var rest = text[schemeEnd.upperBound...]
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            if userInfo.contains(":") { throw .password }
            user = userInfo.isEmpty ? nil : (userInfo.removingPercentEncoding ?? String(userInfo))
            rest = rest[rest.index(after: at)...]
        } else {
            user = nil
        }
        if rest.contains("/") { throw .notAURL }
        var hostPort = rest
        if let colon = hostPort.lastIndex(of: ":"), !hostPort.hasSuffix("]") {
            let p = hostPort[hostPort.index(after: colon)...]
            guard let n = Int(p), (1...65535).contains(n) else { throw .port(String(p)) }
            port = n
            hostPort = hostPort[..<colon]
        }
        host = hostPort.hasPrefix("[") && hostPort.hasSuffix("]") ? String(hostPort.dropFirst().dropLast()) : String(hostPort)
        guard !host.isEmpty else { throw .noHost }
    }

    public var description: String {
        let user = self.user.map {
            ($0.addingPercentEncoding(withAllowedCharacters: .urlUserAllowed.subtracting(CharacterSet(charactersIn: "@:"))) ?? $0) + "@"
        } ?? ""
        let host = self.host.contains(":") ? "[\(self.host)]" : self.host
        return "\(security == .tls ? "smtps" : "smtp")://\(user)\(host):\(port)"
    }
}

/// Where a secret comes from: never the pipeline file itself.
public struct SecretSource: Sendable, Hashable, Codable {
    /// The environment variable holding it.
    public var env: String?
    /// A file holding it (its first line), relative to the pipeline's folder or absolute.
    public var file: String?

    public init(env: String? = nil, file: String? = nil) {
        self.env = env
        self.file = file
    }

    public var isEmpty: Bool { env == nil && file == nil }
}

/// E-mail through an SMTP server.
public struct EmailChannel: Sendable, Hashable, Codable {
    public var server: SMTPAddress
    public var password: SecretSource
    /// A PEM file of certificates to trust instead of the system's (a private or self-signed server).
    public var caFile: String?
    /// `Name <address>` or an address.
    public var from: String
    public var to: [String]
    public var cc: [String]
    /// Attach the rendered HTML report (besides the HTML body).
    public var attachReport: Bool

    public init(server: SMTPAddress, password: SecretSource = SecretSource(), caFile: String? = nil, from: String,
                to: [String], cc: [String] = [], attachReport: Bool = false) {
        self.server = server
        self.password = password
        self.caFile = caFile
        self.from = from
        self.to = to
        self.cc = cc
        self.attachReport = attachReport
    }
}

/// A JSON POST to a URL.
public struct WebhookChannel: Sendable, Hashable, Codable {
    public enum Format: String, Sendable, Hashable, Codable, CaseIterable {
        /// The report as JSON (`kind`, `subject`, `text`, and the report itself).
        case json
        /// `{"text": …}` with the subject and the text body, as Slack's incoming webhooks take it.
        case slack
    }

    /// The URL, or empty when it comes from `urlEnv` (a URL holding a token is a secret).
    public var url: String
    /// The environment variable holding the URL.
    public var urlEnv: String?
    public var format: Format
    /// The key of an HMAC-SHA256 signature of the body, sent as `X-Sluice-Signature: sha256=<hex>`.
    public var secret: SecretSource
    /// How long one POST may take.
    public var timeout: Duration

    public init(url: String, urlEnv: String? = nil, format: Format = .json, secret: SecretSource = SecretSource(),
                timeout: Duration = .seconds(10)) {
        self.url = url
        self.urlEnv = urlEnv
        self.format = format
        self.secret = secret
        self.timeout = timeout
    }
}

/// The rendered report written into a folder.
public struct FileChannel: Sendable, Hashable, Codable {
    /// The folder, relative to the pipeline's (or session's) folder, or absolute.
    public var directory: String

    public init(directory: String) { self.directory = directory }
}

/// One notification to send: a channel, and optionally templates of the user's own.
public struct NotifyAction: Sendable, Hashable, Codable {
    public enum Channel: Sendable, Hashable, Codable {
        case email(EmailChannel)
        case webhook(WebhookChannel)
        case file(FileChannel)

        /// What log lines and errors call it (never a secret).
        public var summary: String {
            switch self {
            case .email(let e): "e-mail to \(e.to.joined(separator: ", ")) via \(e.server)"
            case .webhook(let w): w.urlEnv.map { "webhook at $\($0)" } ?? "webhook \(WebhookChannel.redacted(w.url))"
            case .file(let f): "file in \(f.directory)"
            }
        }

        public var kind: String {
            switch self {
            case .email: "email"
            case .webhook: "webhook"
            case .file: "file"
            }
        }
    }

    public var channel: Channel
    /// A folder of templates overriding the built-in ones (`<report>.html.mustache`, `<report>.txt.mustache`,
    /// `<report>.subject.mustache`), relative to the declaring file's folder or absolute.
    public var templates: String?
    /// A mustache template for the subject line, overriding the template folder's and the built-in one.
    public var subject: String?
    /// The folder relative paths are resolved against (the declaring file's folder), absolute.
    public var root: String
    public var location: SourceLocation?

    public init(channel: Channel, templates: String? = nil, subject: String? = nil, root: String, location: SourceLocation? = nil) {
        self.channel = channel
        self.templates = templates
        self.subject = subject
        self.root = root
        self.location = location
    }

    /// A relative path resolved against `root`.
    public func resolve(_ path: String) -> String {
        path.hasPrefix("/") ? path : URL(fileURLWithPath: root).appendingPathComponent(path).standardized.path
    }
}

extension WebhookChannel {
    /// The URL with only its scheme, host and port, for messages: tokens live in user info, queries and
    /// paths (Slack's `/services/T…/B…/SECRET`, `https://host/TOKEN`), so none of those is shown.
    public static func redacted(_ url: String) -> String {
        guard let c = URLComponents(string: url), let scheme = c.scheme, let host = c.host else { return "(an unparsable URL)" }
        var shown = URLComponents()
        shown.scheme = scheme
        shown.host = host
        shown.port = c.port
        let hidden = !c.path.split(separator: "/").isEmpty || c.query != nil || c.fragment != nil
        return (shown.string ?? "(a URL)") + (hidden ? "/…" : "")
    }
}

/// What a pipeline's runs send when they end (`notify:`). Every notification goes through the store's
/// outbox, decided in the same transaction that finishes the run.
public struct PipelineNotify: Sendable, Hashable, Codable {
    /// When the run succeeded.
    public var onSuccess: [NotifyAction]
    /// When it ended partial_success (some items failed within tolerance, or a stage was rolled back).
    public var onPartial: [NotifyAction]
    /// When it failed or was cancelled.
    public var onFailure: [NotifyAction]
    /// Whatever the outcome.
    public var onFinish: [NotifyAction]
    /// When a stage failed and was rolled back to its last good artifacts (`on_failure: rollback`):
    /// the manual-review notice.
    public var onManualReview: [NotifyAction]

    public init(onSuccess: [NotifyAction] = [], onPartial: [NotifyAction] = [], onFailure: [NotifyAction] = [],
                onFinish: [NotifyAction] = [], onManualReview: [NotifyAction] = []) {
        self.onSuccess = onSuccess
        self.onPartial = onPartial
        self.onFailure = onFailure
        self.onFinish = onFinish
        self.onManualReview = onManualReview
    }

    public var isEmpty: Bool {
        onSuccess.isEmpty && onPartial.isEmpty && onFailure.isEmpty && onFinish.isEmpty && onManualReview.isEmpty
    }

    /// The run reports due for a run that ended `outcome` (the manual-review notice is separate).
    public func actions(for outcome: RunOutcome) -> [NotifyAction] {
        let specific: [NotifyAction] = switch outcome {
        case .success: onSuccess
        case .partialSuccess: onPartial
        case .failed, .cancelled: onFailure
        }
        return specific + onFinish
    }
}

/// What a notification reports: each has its own template.
public enum ReportKind: String, Sendable, Hashable, Codable, CaseIterable {
    /// One run's report (`notify:` of a pipeline).
    case runReport = "run_report"
    /// A stage failed and was rolled back: somebody should look (seed 001).
    case manualReview = "manual_review"
    /// Every member of a session finished: the combined report.
    case sessionComplete = "session_complete"
    /// The session's timeout passed first: the partial report naming what is missing.
    case sessionTimeout = "session_timeout"
    /// A member that finished after its session timed out, reported on its own.
    case sessionLate = "session_late"
}

/// Pipelines whose runs belong together (seed 000): the first member run opens a session, the others join
/// it; when every member ended, `on_complete` fires once; when `timeout` passes first, `on_timeout` fires
/// once with a partial report. Declared in a session file (top-level `session:`) or inline in a pipeline file.
public struct SessionSpec: Sendable, Hashable, Codable {
    public struct Member: Sendable, Hashable, Codable {
        public var pipeline: String
        /// How reports name it (e.g. `Salud Internacional (SI)`); the pipeline's name when nil.
        public var title: String?
        /// The colour of its badge in reports (CSS colour, e.g. `#f2c200`).
        public var color: String?
        /// Where the member is named in its file.
        public var location: SourceLocation?

        public init(pipeline: String, title: String? = nil, color: String? = nil, location: SourceLocation? = nil) {
            self.pipeline = pipeline
            self.title = title
            self.color = color
            self.location = location
        }

        public var displayName: String { title ?? pipeline }
    }

    /// How member runs are grouped into one session.
    public enum Grouping: Sendable, Hashable, Codable {
        /// A run joins the newest open session opened at most this long ago that has no run of its
        /// pipeline yet; otherwise it opens a new one.
        case window(Duration)
        /// Runs whose rendered key is equal share a session (e.g. `{{params.mail_date}}`). A member
        /// started again while its session is open replaces its earlier run.
        case key(String)
    }

    public var name: String
    public var description: String?
    /// Report heading and subject prefix (e.g. `Humano Insurance`); the name when nil.
    public var title: String?
    /// The counter that reports lead with (`27 policies, 4 failed`); `processed`, else the largest, when nil.
    public var headline: String?
    public var members: [Member]
    public var grouping: Grouping
    /// From the session's opening: when it passes before every member ended, `on_timeout` fires.
    public var timeout: Duration
    public var onComplete: [NotifyAction]
    public var onTimeout: [NotifyAction]
    /// For a member that ends after the timeout; `on_timeout`'s actions when not given.
    public var onLate: [NotifyAction]?
    /// The file that declares it, and its folder (absolute).
    public var sourceFile: String?
    public var root: String
    public var location: SourceLocation?

    public init(name: String, description: String? = nil, title: String? = nil, headline: String? = nil, members: [Member],
                grouping: Grouping = .window(.seconds(600)), timeout: Duration = .seconds(300),
                onComplete: [NotifyAction] = [], onTimeout: [NotifyAction] = [], onLate: [NotifyAction]? = nil,
                sourceFile: String? = nil, root: String, location: SourceLocation? = nil) {
        self.name = name
        self.description = description
        self.title = title
        self.headline = headline
        self.members = members
        self.grouping = grouping
        self.timeout = timeout
        self.onComplete = onComplete
        self.onTimeout = onTimeout
        self.onLate = onLate
        self.sourceFile = sourceFile
        self.root = root
        self.location = location
    }

    public func member(_ pipeline: String) -> Member? { members.first { $0.pipeline == pipeline } }

    /// The actions for a member that ended after the timeout.
    public var lateActions: [NotifyAction] { onLate ?? onTimeout }

    /// The grouping key of a run with these params: the rendered `key` template, or nil for a window.
    /// A key template sees `params.NAME` and `pipeline`.
    public func groupKey(params: [String: String], pipeline: String) -> String? {
        guard case .key(let template) = grouping else { return nil }
        var values: [String: String] = ["pipeline": pipeline]
        for (k, v) in params { values["params.\(k)"] = v }
        return Template.render(template, values: values)
    }
}
