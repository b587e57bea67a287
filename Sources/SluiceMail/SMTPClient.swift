import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// What went wrong sending a message. The message names the server (`smtp://user@host:port`) and what
/// failed; the hint says what to do. Neither ever holds a password.
public struct SMTPError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure; extensible, compare with `==`.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// No TCP connection (refused, unreachable, unknown host, timed out), or the server dropped it mid-session.
        public static let connect = Code(rawValue: "connect")
        /// TLS failed: handshake, certificate, STARTTLS not offered or refused.
        public static let tls = Code(rawValue: "tls")
        /// The server did not answer in time (the greeting or a reply).
        public static let timeout = Code(rawValue: "timeout")
        /// The server refused the login, or offers no way to log in that we speak.
        public static let authRejected = Code(rawValue: "auth_rejected")
        /// Every recipient was refused (or there was none).
        public static let recipientRejected = Code(rawValue: "recipient_rejected")
        /// The sender or the message was refused (MAIL FROM, DATA, or too large).
        public static let messageRejected = Code(rawValue: "message_rejected")
        /// The server said something we did not expect, or broke the protocol.
        public static let protocolError = Code(rawValue: "protocol_error")

        public var description: String { rawValue }
    }

    public var code: Code
    /// The server, as `smtp://user@host:port` (`smtps://` for TLS from the first byte).
    public var server: String
    /// What went wrong, naming the server.
    public var message: String
    /// What to do about it.
    public var hint: String?
    /// The server's reply code, when a reply caused this.
    public var replyCode: Int?

    public init(_ code: Code, server: String, _ message: String, hint: String? = nil, replyCode: Int? = nil) {
        self.code = code
        self.server = server
        self.message = message
        self.hint = hint
        self.replyCode = replyCode
    }

    /// Worth trying again later: no connection, no answer in time, or a 4xx reply; a 5xx reply
    /// (wrong password, unknown recipient) will fail the same way again.
    public var isTransient: Bool {
        if let replyCode { return (400..<500).contains(replyCode) }
        return code == .connect || code == .timeout
    }

    /// The message, then `hint: …` (the format of SluiceCore's `HintedError`).
    public var description: String { hint.map { "\(message)\n    hint: \($0)" } ?? message }
}

/// What the server accepted.
public struct SMTPDelivery: Sendable, Hashable {
    /// The recipients the server accepted.
    public var accepted: [String]
    /// The recipients it refused, with its reply (`550 5.1.1 …`); the message went to the others.
    public var rejected: [Rejection]
    /// The Message-ID written into the message (without angle brackets).
    public var messageID: String

    public struct Rejection: Sendable, Hashable {
        public var address: String
        public var reply: String
    }
}

/// An SMTP client (RFC 5321) on SwiftNIO: TLS from the first byte or STARTTLS, AUTH PLAIN or LOGIN
/// (RFC 4954), one message per connection. Everything it sends is 7-bit (no 8BITMIME or SMTPUTF8).
public struct SMTPClient: Sendable {
    public enum Security: String, Sendable, Hashable, Codable {
        /// TLS from the first byte (`smtps://`, port 465).
        case tls
        /// Plain connection upgraded with STARTTLS (`smtp://`, port 587): required when logging in, used when offered otherwise.
        case startTLS = "starttls"
    }

    public struct Configuration: Sendable, CustomStringConvertible, CustomReflectable {
        public var host: String
        public var port: Int
        public var security: Security
        /// The login; nil to send without logging in (STARTTLS is still used when offered).
        public var user: String?
        /// Never shown in `description`, `dump` or any error.
        public var password: String?
        /// A PEM file of certificates to trust instead of the system's (a private CA, a self-signed server).
        public var trustedCertificates: String?
        /// How long the TCP connection may take.
        public var connectTimeout: Duration = .seconds(15)
        /// How long each reply may take, the greeting included (a server that accepts the connection
        /// but never greets fails with `.timeout` after this), and each write.
        public var replyTimeout: Duration = .seconds(60)
        /// How long the reply to the end of the message may take (the server may check it first).
        public var dataTimeout: Duration = .seconds(300)
        /// The name we give in EHLO; the machine's host name when it is a valid one, `localhost` otherwise.
        public var clientName: String = Configuration.defaultClientName

        public init(host: String, port: Int, security: Security, user: String? = nil, password: String? = nil,
                    trustedCertificates: String? = nil) {
            self.host = host
            self.port = port
            self.security = security
            self.user = user
            self.password = password
            self.trustedCertificates = trustedCertificates
        }

        /// `smtp://user@host:port`, as messages name the server.
        public var server: String {
            let user = self.user.map {
                ($0.addingPercentEncoding(withAllowedCharacters: .urlUserAllowed.subtracting(CharacterSet(charactersIn: "@:"))) ?? $0) + "@"
            } ?? ""
            let host = self.host.contains(":") ? "[\(self.host)]" : self.host
            return "\(security == .tls ? "smtps" : "smtp")://\(user)\(host):\(port)"
        }

        public var description: String { server }

        public var customMirror: Mirror {
            Mirror(self, children: ["server": server, "password": password == nil ? "nil" : "(hidden)",
                                    "trustedCertificates": trustedCertificates as Any], displayStyle: .struct)
        }

        static let defaultClientName: String = {
            let name = ProcessInfo.processInfo.hostName
            let valid = !name.isEmpty && name.utf8.count <= 253 && name.contains(".")
                && name.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == ".") }
            return valid ? name : "localhost"
        }()
    }

    public var configuration: Configuration

    public init(_ configuration: Configuration) { self.configuration = configuration }

    /// Sends one message on a connection of its own: EHLO (HELO when refused), STARTTLS and EHLO again,
    /// AUTH PLAIN (or LOGIN), MAIL FROM, RCPT TO each recipient, DATA, QUIT. Refused recipients are
    /// reported in the result while the others get the message; when all are refused it throws
    /// `.recipientRejected`. `date` and `messageID` go into the message (a new id by default).
    @discardableResult
    public func send(_ mail: OutgoingMail, date: Date = Date(), messageID: String? = nil) async throws(SMTPError) -> SMTPDelivery {
        let server = configuration.server
        let recipients = mail.recipients
        guard !recipients.isEmpty else {
            throw SMTPError(.recipientRejected, server: server, "the message '\(mail.subject)' has no recipient, so it was not sent to \(server)",
                            hint: "give at least one address in to: or cc:")
        }
        let id = messageID ?? "\(UUID().uuidString.lowercased())@\(mail.from.address.split(separator: "@").last.map(String.init) ?? "sluice")"
        let message = mail.rendered(date: date, messageID: id)
        let connection = try await SMTPConnection.open(configuration)
        do {
            let delivery = try await transaction(connection, from: mail.from.address, recipients: recipients, message: message, id: id)
            await connection.quit()
            return delivery
        } catch {
            await connection.close()
            throw error
        }
    }

    private func transaction(_ connection: SMTPConnection, from: String, recipients: [String], message: [UInt8], id: String) async throws(SMTPError) -> SMTPDelivery {
        let server = configuration.server
        let greeting = try await connection.reply(for: "the greeting")
        guard greeting.code == 220 else {
            throw connection.failure(greeting.code >= 500 ? .connect : .protocolError, greeting, "refused the connection in its greeting",
                                     hint: greeting.code < 500 ? "try again later" : "check that this is the server's SMTP port and that it accepts mail from this machine")
        }
        var capabilities = try await connection.hello(configuration.clientName)

        if configuration.security == .startTLS {
            if capabilities.keywords["STARTTLS"] != nil {
                let reply = try await connection.command("STARTTLS", startingTLS: true)
                guard reply.code == 220 else {
                    throw connection.failure(.tls, reply, "refused STARTTLS", hint: "use smtps:// (port 465) or ask the server's administrator to enable TLS")
                }
                capabilities = try await connection.hello(configuration.clientName)
            } else if configuration.user != nil {
                throw SMTPError(.tls, server: server, "the SMTP server \(server) does not offer STARTTLS, so the password cannot be sent safely",
                                hint: "use smtps:// (port 465) if the server has it, or ask its administrator to enable STARTTLS; Sluice never logs in without TLS")
            }
        }

        if let user = configuration.user {
            try await connection.authenticate(user: user, password: configuration.password ?? "", capabilities: capabilities)
        }

        var sizeParameter = ""
        if let size = capabilities.keywords["SIZE"] {
            if let limit = Int(size), limit > 0, message.count > limit {
                throw SMTPError(.messageRejected, server: server, "the message is \(message.count) bytes, more than the \(limit) bytes the SMTP server \(server) accepts",
                                hint: "send smaller attachments (a link to the file instead)")
            }
            sizeParameter = " SIZE=\(message.count)"
        }
        let mailFrom = try await connection.command("MAIL FROM:<\(from)>\(sizeParameter)")
        guard mailFrom.code == 250 else {
            throw connection.failure(.messageRejected, mailFrom, "refused the sender <\(from)>",
                                     hint: "check that \(configuration.user.map { "'\($0)'" } ?? "this client") may send as <\(from)> (the from: address)")
        }
        var accepted: [String] = []
        var rejected: [SMTPDelivery.Rejection] = []
        var lastRefusal: SMTPReply?
        for recipient in recipients {
            let reply = try await connection.command("RCPT TO:<\(recipient)>")
            if reply.code == 250 || reply.code == 251 {
                accepted.append(recipient)
            } else if (400..<600).contains(reply.code) {
                rejected.append(SMTPDelivery.Rejection(address: recipient, reply: connection.redacted("\(reply.code) \(reply.text)")))
                lastRefusal = reply
            } else {
                throw connection.failure(.protocolError, reply, "answered RCPT TO:<\(recipient)> unexpectedly")
            }
        }
        if accepted.isEmpty, let lastRefusal {
            // Transient only when every refusal was temporary: a 5xx one, if any, decides.
            let code = rejected.first(where: { $0.reply.hasPrefix("5") }).flatMap { Int($0.reply.prefix(3)) } ?? lastRefusal.code
            var error = connection.failure(.recipientRejected, lastRefusal,
                                           "refused every recipient (\(rejected.map { "<\($0.address)>: \($0.reply)" }.joined(separator: "; ")))",
                                           hint: "check the to: and cc: addresses")
            error.replyCode = code
            throw error
        }
        let data = try await connection.command("DATA")
        guard data.code == 354 else {
            throw connection.failure(.messageRejected, data, "refused DATA")
        }
        let end = try await connection.sendMessage(SMTPConnection.dotStuffed(message))
        guard end.code == 250 else {
            throw connection.failure(.messageRejected, end, "refused the message", hint: "the server's reply says why (content, size or policy)")
        }
        return SMTPDelivery(accepted: accepted, rejected: rejected, messageID: id)
    }
}

/// What EHLO told us: keywords (uppercased) and their parameters.
struct SMTPCapabilities {
    var keywords: [String: String] = [:]

    init(_ reply: SMTPReply?) {
        guard let reply else { return }
        for line in reply.lines.dropFirst() {
            let words = line.split(separator: " ", maxSplits: 1)
            guard let first = words.first else { continue }
            var keyword = first.uppercased()
            var rest = words.count > 1 ? String(words[1]) : ""
            // Old servers write AUTH=PLAIN LOGIN.
            if keyword.hasPrefix("AUTH=") {
                rest = String(keyword.dropFirst(5)) + (rest.isEmpty ? "" : " " + rest)
                keyword = "AUTH"
            }
            if keyword == "AUTH", let earlier = keywords["AUTH"] { rest = earlier + " " + rest }
            keywords[keyword] = rest
        }
    }

    var authMechanisms: Set<String> {
        Set((keywords["AUTH"] ?? "").uppercased().split(separator: " ").map(String.init))
    }
}

/// One reply: its code and the text of each line (after `250-` or `250 `).
struct SMTPReply: Sendable {
    var code: Int
    var lines: [String]
    /// The reply to STARTTLS that switched the connection to TLS.
    var startedTLS = false

    var text: String { lines.joined(separator: " / ") }
}

/// Cuts the server's bytes into replies (multiline ones joined). After STARTTLS, the 220 reply must be
/// the last plain-text byte: anything after it was sent before TLS (an injection) and is refused.
struct SMTPReplyDecoder: ByteToMessageDecoder {
    typealias InboundOut = SMTPReply

    struct Malformed: Error, CustomStringConvertible {
        var description: String
    }

    let expectingTLS: NIOLockedValueBox<Bool>
    var maxLine = 1 << 16
    var maxLines = 1000
    private var lines: [String] = []
    private var code: Int?
    private var searched = 0

    init(expectingTLS: NIOLockedValueBox<Bool>) { self.expectingTLS = expectingTLS }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let view = buffer.readableBytesView
        guard let lf = view[(view.startIndex + searched)...].firstIndex(of: 0x0A) else {
            searched = view.count
            if searched > maxLine { throw Malformed(description: "sent a line longer than \(maxLine) bytes") }
            return .needMoreData
        }
        searched = 0
        guard var line = buffer.readBytes(length: lf - view.startIndex + 1) else { return .needMoreData }
        line.removeLast()
        if line.last == 0x0D { line.removeLast() }
        let digits = line.prefix(3)
        guard digits.count == 3, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), line.count == 3 || line[3] == 0x20 || line[3] == 0x2D,
              let value = Int(String(decoding: digits, as: UTF8.self)) else {
            throw Malformed(description: "sent '\(String(decoding: line.prefix(80), as: UTF8.self))', which is not an SMTP reply")
        }
        if let code, code != value { throw Malformed(description: "changed its reply code from \(code) to \(value) within one reply") }
        lines.append(line.count > 4 ? String(decoding: line[4...], as: UTF8.self) : "")
        if line.count > 3 && line[3] == 0x2D {
            code = value
            if lines.count > maxLines { throw Malformed(description: "sent a reply of more than \(maxLines) lines") }
            return .continue
        }
        var reply = SMTPReply(code: value, lines: lines)
        lines = []
        code = nil
        let upgrading = expectingTLS.withLockedValue { expecting in
            defer { expecting = false }
            return expecting
        }
        if upgrading && value == 220 {
            guard buffer.readableBytes == 0 else {
                throw Malformed(description: "sent more after agreeing to STARTTLS, before TLS began (an attempt to inject replies?)")
            }
            reply.startedTLS = true
        }
        context.fireChannelRead(wrapInboundOut(reply))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }
}

enum SMTPEvent: Sendable {
    case reply(SMTPReply)
    case timer(Int)
}

/// Passes each reply to the client's stream; on the reply that accepts STARTTLS it puts TLS in front
/// of the pipeline at once, on the event loop, before another byte is read.
final class SMTPForwarder: ChannelInboundHandler, Sendable {
    typealias InboundIn = SMTPReply

    let continuation: AsyncThrowingStream<SMTPEvent, any Error>.Continuation
    let sslContext: NIOSSLContext?
    let hostname: String?
    /// The error that ended the connection (a TLS failure), for a write that failed after it.
    let failure = NIOLockedValueBox<(any Error)?>(nil)

    init(_ continuation: AsyncThrowingStream<SMTPEvent, any Error>.Continuation, sslContext: NIOSSLContext?, hostname: String?) {
        self.continuation = continuation
        self.sslContext = sslContext
        self.hostname = hostname
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let reply = unwrapInboundIn(data)
        if reply.startedTLS {
            do {
                guard let sslContext else { throw SMTPReplyDecoder.Malformed(description: "no TLS context") }
                try context.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: hostname), position: .first)
            } catch {
                errorCaught(context: context, error: error)
                return
            }
        }
        continuation.yield(.reply(reply))
    }

    func channelInactive(context: ChannelHandlerContext) {
        continuation.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failure.withLockedValue { if $0 == nil { $0 = error } }
        continuation.finish(throwing: error)
        context.close(promise: nil)
    }
}

/// One connection to the server, used by one task.
final class SMTPConnection {
    let configuration: SMTPClient.Configuration
    let server: String
    let channel: any Channel
    private var events: AsyncThrowingStream<SMTPEvent, any Error>.AsyncIterator
    private let continuation: AsyncThrowingStream<SMTPEvent, any Error>.Continuation
    private let forwarder: SMTPForwarder
    private let expectingTLS: NIOLockedValueBox<Bool>
    private var timerID = 0
    /// Text that must never appear in a message: the password and what we sent carrying it.
    private var secrets: [String] = []

    private init(configuration: SMTPClient.Configuration, channel: any Channel, forwarder: SMTPForwarder, expectingTLS: NIOLockedValueBox<Bool>,
                 events: AsyncThrowingStream<SMTPEvent, any Error>, continuation: AsyncThrowingStream<SMTPEvent, any Error>.Continuation) {
        self.configuration = configuration
        self.server = configuration.server
        self.channel = channel
        self.forwarder = forwarder
        self.expectingTLS = expectingTLS
        self.events = events.makeAsyncIterator()
        self.continuation = continuation
        if let password = configuration.password, !password.isEmpty {
            secrets = [password, Data(password.utf8).base64EncodedString()]
        }
    }

    static func open(_ configuration: SMTPClient.Configuration) async throws(SMTPError) -> SMTPConnection {
        let server = configuration.server
        let sslContext = try makeSSLContext(configuration)
        let hostname = IMAPClient.isIPAddress(configuration.host) ? nil : configuration.host
        let (stream, continuation) = AsyncThrowingStream<SMTPEvent, any Error>.makeStream()
        let forwarder = SMTPForwarder(continuation, sslContext: sslContext, hostname: hostname)
        let expectingTLS = NIOLockedValueBox(false)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.nanoseconds(Int64(configuration.connectTimeout.seconds * 1e9)))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if configuration.security == .tls {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: hostname))
                        }
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(SMTPReplyDecoder(expectingTLS: expectingTLS)))
                        try channel.pipeline.syncOperations.addHandler(forwarder)
                    }
                }
                .connect(host: configuration.host, port: configuration.port).get()
        } catch {
            let reason = IMAPClient.describeConnect(error)
            throw SMTPError(.connect, server: server, "cannot connect to the SMTP server \(server): \(reason)",
                            hint: "check the host and port of the server address and that the server is running; sending is retried later")
        }
        return SMTPConnection(configuration: configuration, channel: channel, forwarder: forwarder, expectingTLS: expectingTLS,
                              events: stream, continuation: continuation)
    }

    static func makeSSLContext(_ configuration: SMTPClient.Configuration) throws(SMTPError) -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let file = configuration.trustedCertificates {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(file))
            } catch {
                throw SMTPError(.tls, server: configuration.server, "cannot read the certificates to trust for \(configuration.server) from \(file): \(error)",
                                hint: "give a PEM file (ca_file:) holding the server's certificate or its CA's")
            }
        }
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw SMTPError(.tls, server: configuration.server, "cannot set up TLS for \(configuration.server): \(error)")
        }
    }

    // MARK: - replies

    /// `text` with the password (and its base64) blanked out: a server may echo what it was sent.
    func redacted(_ text: String) -> String {
        var text = text
        for secret in secrets where !secret.isEmpty { text = text.replacingOccurrences(of: secret, with: "(hidden)") }
        return text
    }

    /// An error about a reply: `the SMTP server X answered 550 …: <what>`.
    func failure(_ code: SMTPError.Code, _ reply: SMTPReply, _ what: String, hint: String? = nil) -> SMTPError {
        let transient = (400..<500).contains(reply.code)
        let hint = hint.map { transient ? "\($0); the server says this is temporary, so sending is retried later" : $0 }
            ?? (transient ? "the server says this is temporary; sending is retried later" : nil)
        return SMTPError(code, server: server, "the SMTP server \(server) \(what): it answered \(reply.code) \(redacted(reply.text))",
                         hint: hint, replyCode: reply.code)
    }

    func classify(_ error: any Error) -> SMTPError {
        if let error = error as? SMTPError { return error }
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            return SMTPError(.tls, server: server, "TLS with the SMTP server \(server) failed: \(error)",
                             hint: "if the server uses a private or self-signed certificate, name it with ca_file:; check that the address names the host its certificate is for")
        }
        if let error = error as? SMTPReplyDecoder.Malformed {
            return SMTPError(.protocolError, server: server, "the SMTP server \(server) \(error.description)",
                             hint: "check that the address names an SMTP port (587 for STARTTLS, 465 for TLS)")
        }
        if error is CancellationError {
            return SMTPError(.connect, server: server, "sending through the SMTP server \(server) was cancelled")
        }
        return SMTPError(.connect, server: server, "the connection to the SMTP server \(server) failed: \(error)",
                         hint: "sending is retried later")
    }

    /// The next reply; none within `timeout` is `.timeout`, a closed connection `.connect`.
    func reply(for what: String, timeout: Duration? = nil) async throws(SMTPError) -> SMTPReply {
        let timeout = timeout ?? configuration.replyTimeout
        timerID += 1
        let id = timerID
        let continuation = self.continuation
        let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.seconds * 1e9))) { continuation.yield(.timer(id)) }
        defer { timer.cancel() }
        while true {
            let event: SMTPEvent?
            do {
                event = try await withTaskCancellationHandler {
                    try await events.next()
                } onCancel: { [channel] in
                    channel.close(promise: nil)
                }
            } catch {
                throw classify(Task.isCancelled ? CancellationError() : error)
            }
            if Task.isCancelled { throw classify(CancellationError()) }
            switch event {
            case .none:
                throw SMTPError(.connect, server: server, "the SMTP server \(server) closed the connection while we waited for \(what)",
                                hint: "sending is retried later; if this keeps happening, check the server's log")
            case .timer(let fired):
                if fired == id {
                    throw SMTPError(.timeout, server: server, "the SMTP server \(server) did not answer within \(Self.seconds(timeout)) (waiting for \(what))",
                                    hint: "the server is slow or stuck, or this is not an SMTP port (465 speaks TLS at once: use smtps://); sending is retried later")
                }
            case .reply(let reply):
                return reply
            }
        }
    }

    static func seconds(_ duration: Duration) -> String {
        let s = duration.seconds
        return s == s.rounded() ? "\(Int(s)) s" : String(format: "%.1f s", s)
    }

    /// Writes bytes; a write that does not finish within the reply timeout closes the connection.
    func write(_ bytes: [UInt8], what: String) async throws(SMTPError) {
        var buffer = channel.allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        let stalled = NIOLockedValueBox(false)
        let guardTask = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(configuration.replyTimeout.seconds * 1e9))) { [channel] in
            stalled.withLockedValue { $0 = true }
            channel.close(promise: nil)
        }
        defer { guardTask.cancel() }
        do {
            try await channel.writeAndFlush(buffer)
        } catch {
            if stalled.withLockedValue({ $0 }) {
                throw SMTPError(.timeout, server: server, "the SMTP server \(server) did not take \(what) within \(Self.seconds(configuration.replyTimeout))",
                                hint: "the server is slow or stuck; sending is retried later")
            }
            // A write on a connection that TLS just closed: the TLS error says why.
            throw classify(forwarder.failure.withLockedValue { $0 } ?? error)
        }
    }

    /// Sends a command line and reads its reply. `display` names it in messages (it may carry a secret).
    func command(_ line: String, display: String? = nil, startingTLS: Bool = false) async throws(SMTPError) -> SMTPReply {
        if startingTLS { expectingTLS.withLockedValue { $0 = true } }
        let what = display ?? String(line.prefix { $0 != " " && $0 != ":" })
        try await write(Array((line + "\r\n").utf8), what: what)
        return try await reply(for: "the reply to \(what)")
    }

    /// EHLO, or HELO when the server does not know EHLO.
    func hello(_ name: String) async throws(SMTPError) -> SMTPCapabilities {
        let ehlo = try await command("EHLO \(name)")
        if ehlo.code == 250 { return SMTPCapabilities(ehlo) }
        guard (500..<600).contains(ehlo.code) else {
            throw failure(.protocolError, ehlo, "refused EHLO", hint: ehlo.code < 500 ? nil : "check the server's log")
        }
        let helo = try await command("HELO \(name)")
        guard helo.code == 250 else { throw failure(.protocolError, helo, "refused both EHLO and HELO") }
        return SMTPCapabilities(nil)
    }

    /// AUTH PLAIN when offered, else AUTH LOGIN. Neither the password nor what carries it appears in an error.
    func authenticate(user: String, password: String, capabilities: SMTPCapabilities) async throws(SMTPError) {
        let mechanisms = capabilities.authMechanisms
        let plainToken = Data(([0] + Array(user.utf8) + [0] + Array(password.utf8))).base64EncodedString()
        secrets.append(plainToken)
        let hint = "check the user in the server address and the password (password_env: or password_file:)"
        if mechanisms.contains("PLAIN") {
            let reply = try await command("AUTH PLAIN \(plainToken)", display: "AUTH PLAIN")
            var final = reply
            if reply.code == 334 {
                // A server that wants the credentials after an empty challenge.
                final = try await command(plainToken, display: "AUTH PLAIN")
            }
            guard final.code == 235 else { throw failure(.authRejected, final, "refused the login as '\(user)' (AUTH PLAIN)", hint: hint) }
        } else if mechanisms.contains("LOGIN") {
            let start = try await command("AUTH LOGIN", display: "AUTH LOGIN")
            guard start.code == 334 else { throw failure(.authRejected, start, "refused AUTH LOGIN as '\(user)'", hint: hint) }
            let name = try await command(Data(user.utf8).base64EncodedString(), display: "AUTH LOGIN's user name")
            guard name.code == 334 else { throw failure(.authRejected, name, "refused the login as '\(user)' (AUTH LOGIN)", hint: hint) }
            let done = try await command(Data(password.utf8).base64EncodedString(), display: "AUTH LOGIN's password")
            guard done.code == 235 else { throw failure(.authRejected, done, "refused the login as '\(user)' (AUTH LOGIN)", hint: hint) }
        } else if mechanisms.isEmpty {
            throw SMTPError(.authRejected, server: server, "the SMTP server \(server) does not offer AUTH, so '\(user)' cannot log in",
                            hint: "remove the user from the server address if the server takes mail without a login")
        } else {
            throw SMTPError(.authRejected, server: server, "the SMTP server \(server) offers AUTH \(mechanisms.sorted().joined(separator: " ")), but neither PLAIN nor LOGIN",
                            hint: "ask the server's administrator to enable AUTH PLAIN or LOGIN over TLS")
        }
    }

    /// The message (already dot-stuffed, ending in CRLF), then `.`; returns the server's verdict.
    func sendMessage(_ stuffed: [UInt8]) async throws(SMTPError) -> SMTPReply {
        try await write(stuffed + Array(".\r\n".utf8), what: "the message")
        return try await reply(for: "the reply to the end of the message", timeout: configuration.dataTimeout)
    }

    /// RFC 5321 4.5.2: a line starting with `.` gets another; the message ends with CRLF.
    static func dotStuffed(_ message: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(message.count + message.count / 64 + 2)
        var lineStart = true
        for byte in message {
            if lineStart && byte == 0x2E { out.append(0x2E) }
            out.append(byte)
            lineStart = byte == 0x0A
        }
        if !(out.count >= 2 && out[out.count - 2] == 0x0D && out[out.count - 1] == 0x0A) { out += [0x0D, 0x0A] }
        return out
    }

    func quit() async {
        _ = try? await command("QUIT")
        await close()
    }

    func close() async {
        try? await channel.close()
    }
}
