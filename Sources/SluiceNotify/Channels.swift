import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import SluiceCore
import SluiceMail
import SluiceStore

/// A delivery that did not happen, saying why and whether trying again later may help. Never holds a secret.
public struct DeliveryError: Error, HintedError, Sendable {
    public var message: String
    public var hint: String?
    /// Worth trying again later (the channel is down or overloaded); false when it will fail the same way.
    public var isTransient: Bool

    public init(_ message: String, hint: String? = nil, transient: Bool) {
        self.message = message
        self.hint = hint
        self.isTransient = transient
    }
}

/// What a channel sends: the rendered message and the report it came from (JSON, for webhooks and files).
public struct Delivery: Sendable {
    public var notification: NotificationRecord
    public var message: RenderedMessage
    public var reportJSON: Data
    /// A stable name for files and message ids (`<kind>-<run or session>-<notification id>`).
    public var name: String
}

extension SecretSource {
    /// Reads the secret from the environment or its file (first line); nil when no source is given.
    func read(root: String, environment: [String: String], what: String) throws(DeliveryError) -> String? {
        if let env {
            guard let value = environment[env], !value.isEmpty else {
                throw DeliveryError("\(what): environment variable \(env) is not set", hint: "export \(env) in the environment of the process that delivers notifications (sluice run, serve or worker)", transient: true)
            }
            return value
        }
        if let file {
            let path = file.hasPrefix("/") ? file : (root as NSString).appendingPathComponent(file)
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw DeliveryError("\(what): cannot read the secret file \(path)", hint: "check that it exists and is readable by this user", transient: true)
            }
            return text.split(separator: "\n", omittingEmptySubsequences: false).first.map(String.init)?
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
        return nil
    }
}

/// Sends deliveries through their channels.
public struct ChannelSenders: Sendable {
    public var environment: [String: String]
    public var smtpTimeout: Duration

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, smtpTimeout: Duration = .seconds(30)) {
        self.environment = environment
        self.smtpTimeout = smtpTimeout
    }

    public func send(_ delivery: Delivery) async throws(DeliveryError) {
        let action = delivery.notification.action
        switch action.channel {
        case .email(let email): try await sendEmail(email, delivery, action)
        case .webhook(let hook): try await sendWebhook(hook, delivery, action)
        case .file(let file): try writeFile(file, delivery, action)
        }
    }

    // MARK: e-mail

    func sendEmail(_ email: EmailChannel, _ delivery: Delivery, _ action: NotifyAction) async throws(DeliveryError) {
        let password = try email.password.read(root: action.root, environment: environment, what: "e-mail via \(email.server)")
        let mail: OutgoingMail
        do {
            var attachments: [MailAttachment] = []
            if email.attachReport {
                attachments.append(MailAttachment(filename: "\(delivery.name).html", contentType: "text/html",
                                                  data: Array(delivery.message.html.utf8)))
            }
            mail = OutgoingMail(from: try MailAddress(parsing: email.from), to: try email.to.map { a throws(MailAddressError) in try MailAddress(parsing: a) },
                                cc: try email.cc.map { a throws(MailAddressError) in try MailAddress(parsing: a) },
                                subject: delivery.message.subject, text: delivery.message.text, html: delivery.message.html,
                                attachments: attachments)
        } catch {
            throw DeliveryError("e-mail via \(email.server): \(error.message)", hint: error.hint, transient: false)
        }
        var configuration = SMTPClient.Configuration(
            host: email.server.host, port: email.server.port, security: email.server.security == .tls ? .tls : .startTLS,
            user: email.server.user, password: password,
            trustedCertificates: email.caFile.map { action.resolve($0) })
        configuration.connectTimeout = smtpTimeout
        configuration.replyTimeout = smtpTimeout
        do {
            try await SMTPClient(configuration).send(mail, messageID: "\(delivery.name)@sluice")
        } catch {
            throw DeliveryError(error.message, hint: error.hint, transient: error.isTransient)
        }
    }

    // MARK: webhook

    func sendWebhook(_ hook: WebhookChannel, _ delivery: Delivery, _ action: NotifyAction) async throws(DeliveryError) {
        let where_ = action.channel.summary
        var url = hook.url
        if let name = hook.urlEnv {
            guard let value = environment[name], !value.isEmpty else {
                throw DeliveryError("\(where_): environment variable \(name) is not set", hint: "export \(name) with the webhook's URL", transient: true)
            }
            url = value
        }
        let body: Data
        do {
            body = try Self.webhookBody(hook.format, delivery)
        } catch {
            throw DeliveryError("\(where_): cannot encode the payload: \(error)", transient: false)
        }
        var request = HTTPClientRequest(url: url)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(name: "User-Agent", value: "sluice")
        request.headers.add(name: "X-Sluice-Kind", value: delivery.notification.kind.rawValue)
        request.headers.add(name: "X-Sluice-Delivery", value: delivery.name)
        if let key = try hook.secret.read(root: action.root, environment: environment, what: where_) {
            request.headers.add(name: "X-Sluice-Signature", value: "sha256=" + Self.signature(body, key: key))
        }
        request.body = .bytes(ByteBuffer(bytes: body))
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(Int64(max(1, hook.timeout.seconds.rounded(.up)))))
        } catch {
            throw DeliveryError("\(where_) could not be reached: \(Self.redactedDescription(error, url: url))",
                                hint: "check the URL and that the receiver is up; the notification is tried again with back-off", transient: true)
        }
        let status = Int(response.status.code)
        guard (200..<300).contains(status) else {
            // 408, 429 and 5xx may pass; other 4xx will be refused again.
            let transient = status == 408 || status == 429 || status >= 500
            throw DeliveryError("\(where_) answered HTTP \(status)", hint: transient ? "the receiver failed; it is tried again with back-off" : "the receiver refuses the request: check its URL and secret", transient: transient)
        }
    }

    static func webhookBody(_ format: WebhookChannel.Format, _ delivery: Delivery) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        switch format {
        case .slack:
            return try encoder.encode(["text": "*\(delivery.message.subject)*\n```\n\(delivery.message.text)\n```"])
        case .json:
            let report = (try? JSONSerialization.jsonObject(with: delivery.reportJSON)) ?? [:]
            var object: [String: Any] = [
                "kind": delivery.notification.kind.rawValue, "id": delivery.name, "subject": delivery.message.subject,
                "text": delivery.message.text, "report": report,
            ]
            if let run = delivery.notification.runID { object["run_id"] = run.rawValue }
            if let session = delivery.notification.sessionID { object["session_id"] = session }
            return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        }
    }

    /// HMAC-SHA256 of the body, hex.
    public static func signature(_ body: Data, key: String) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(key.utf8)))
        return mac.map { String(format: "%02x", $0) }.joined()
    }

    static func redactedDescription(_ error: any Error, url: String) -> String {
        var text = "\(error)"
        if !url.isEmpty { text = text.replacingOccurrences(of: url, with: WebhookChannel.redacted(url)) }
        return text
    }

    // MARK: file

    func writeFile(_ file: FileChannel, _ delivery: Delivery, _ action: NotifyAction) throws(DeliveryError) {
        let dir = action.resolve(file.directory)
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let base = (dir as NSString).appendingPathComponent(delivery.name)
            try Data(delivery.message.html.utf8).write(to: URL(fileURLWithPath: base + ".html"), options: .atomic)
            try Data((delivery.message.subject + "\n\n" + delivery.message.text).utf8).write(to: URL(fileURLWithPath: base + ".txt"), options: .atomic)
            try delivery.reportJSON.write(to: URL(fileURLWithPath: base + ".json"), options: .atomic)
        } catch {
            throw DeliveryError("cannot write the report into \(dir): \(error.localizedDescription)",
                                hint: "check that the folder is writable and the disk is not full", transient: true)
        }
    }
}
