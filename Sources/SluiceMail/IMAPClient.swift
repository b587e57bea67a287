import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// What went wrong talking to an IMAP server. The message says what, with which server, and what to
/// do; it never holds a password.
public struct IMAPError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// No TCP connection (refused, unreachable, unknown host, timed out).
        case connect
        /// TLS failed: handshake, certificate, or STARTTLS refused.
        case tls
        /// The server refused the user name or password (NO/BAD on LOGIN or AUTHENTICATE).
        case login
        /// The server answered NO or BAD to a command.
        case command
        /// The server broke the protocol or closed the connection.
        case protocolError
        /// A message is larger than allowed.
        case tooLarge
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// An IMAP4rev1 client (RFC 3501) on SwiftNIO: implicit TLS (IMAPS) or STARTTLS, LOGIN or
/// AUTHENTICATE PLAIN, SELECT, UID SEARCH, UID FETCH, UID STORE and IDLE (RFC 2177).
///
/// One task uses a client at a time; commands are sent one after another.
public final class IMAPClient {
    public enum Security: String, Sendable, Hashable, Codable {
        /// TLS from the first byte (IMAPS, port 993).
        case tls
        /// Plain text first, then STARTTLS before anything else (port 143); refused when the server does not offer it.
        case startTLS = "starttls"
        /// No TLS at all: only for tests on 127.0.0.1.
        case none
    }

    public enum Authentication: String, Sendable, Hashable, Codable {
        /// AUTHENTICATE PLAIN when the server offers it, LOGIN otherwise.
        case automatic = "auto"
        case plain
        case login
    }

    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var security: Security
        /// A PEM file of certificates to trust instead of the system's (a private CA, a self-signed server).
        public var trustedCertificates: String?
        public var connectTimeout: Duration = .seconds(15)
        /// How long one command may go unanswered.
        public var commandTimeout: Duration = .seconds(120)

        public init(host: String, port: Int, security: Security, trustedCertificates: String? = nil) {
            self.host = host
            self.port = port
            self.security = security
            self.trustedCertificates = trustedCertificates
        }

        var server: String { "\(host):\(port)" }
    }

    public let configuration: Configuration
    let channel: any Channel
    private var events: AsyncThrowingStream<IMAPEvent, any Error>.AsyncIterator
    private let continuation: AsyncThrowingStream<IMAPEvent, any Error>.Continuation
    private let forwarder: IMAPForwarder
    private var nextTag = 1
    private var timerID = 0
    /// What the server said it can do (uppercased), refreshed after STARTTLS and login.
    public private(set) var capabilities: Set<String> = []
    /// Untagged responses that arrived between commands (EXISTS during IDLE, ...).
    private var pendingUntagged: [IMAPResponse] = []

    private init(configuration: Configuration, channel: any Channel, forwarder: IMAPForwarder,
                 events: AsyncThrowingStream<IMAPEvent, any Error>, continuation: AsyncThrowingStream<IMAPEvent, any Error>.Continuation) {
        self.configuration = configuration
        self.forwarder = forwarder
        self.channel = channel
        self.events = events.makeAsyncIterator()
        self.continuation = continuation
    }

    // MARK: - connecting

    /// Connects, reads the greeting, and (STARTTLS) upgrades to TLS. Throws `.connect` or `.tls`.
    public static func connect(_ configuration: Configuration) async throws -> IMAPClient {
        let (stream, continuation) = AsyncThrowingStream<IMAPEvent, any Error>.makeStream()
        let sslContext: NIOSSLContext? = configuration.security == .none ? nil : try makeSSLContext(configuration)
        let hostname = isIPAddress(configuration.host) ? nil : configuration.host
        let forwarder = IMAPForwarder(continuation)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.nanoseconds(Int64(configuration.connectTimeout.seconds * 1e9)))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if configuration.security == .tls, let sslContext {
                            try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: sslContext, serverHostname: hostname))
                        }
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(IMAPResponseDecoder()))
                        try channel.pipeline.syncOperations.addHandler(forwarder)
                    }
                }
                .connect(host: configuration.host, port: configuration.port).get()
        } catch {
            throw IMAPError(.connect, "cannot connect to the IMAP server \(configuration.server): \(describeConnect(error)); check the host and port in the mailbox address and that the server is running")
        }
        let client = IMAPClient(configuration: configuration, channel: channel, forwarder: forwarder, events: stream, continuation: continuation)
        do {
            let greeting = try await client.nextResponse(timeout: configuration.commandTimeout)
            if greeting.status == "BYE" {
                throw IMAPError(.connect, "the IMAP server \(configuration.server) refused the connection: \(greeting.statusText)")
            }
            guard greeting.tag == "*", greeting.status == "OK" || greeting.status == "PREAUTH" else {
                throw IMAPError(.protocolError, "\(configuration.server) did not greet as an IMAP server (it said '\(greeting.text.prefix(100))'); is this the IMAP port?")
            }
            try await client.refreshCapabilities()
            if configuration.security == .startTLS {
                guard client.capabilities.contains("STARTTLS") else {
                    throw IMAPError(.tls, "the IMAP server \(configuration.server) does not offer STARTTLS; use imaps:// (port 993) or ask its administrator to enable TLS")
                }
                _ = try await client.run("STARTTLS", failure: .tls)
                guard let sslContext else { throw IMAPError(.tls, "no TLS context") }
                try await channel.eventLoop.submit {
                    let handler = try NIOSSLClientHandler(context: sslContext, serverHostname: hostname)
                    try channel.pipeline.syncOperations.addHandler(handler, position: .first)
                }.get()
                try await client.refreshCapabilities()
            }
            return client
        } catch let error as IMAPError {
            await client.close()
            throw error
        } catch {
            await client.close()
            throw classify(error, configuration)
        }
    }

    static func makeSSLContext(_ configuration: Configuration) throws -> NIOSSLContext {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let file = configuration.trustedCertificates {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(file))
            } catch {
                throw IMAPError(.tls, "cannot read the certificates to trust from \(file): \(error); give a PEM file")
            }
        }
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw IMAPError(.tls, "cannot set up TLS for \(configuration.server): \(error)")
        }
    }

    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }

    static func describeConnect(_ error: any Error) -> String {
        if let error = error as? NIOConnectionError {
            if let dns = error.dnsAError ?? error.dnsAAAAError { return "the host name does not resolve (\(dns))" }
            if let first = error.connectionErrors.first { return describeConnect(first.error) }
        }
        if let error = error as? IOError {
            switch error.errnoCode {
            case ECONNREFUSED: return "connection refused"
            case ENETUNREACH, EHOSTUNREACH: return "the host is unreachable"
            case ETIMEDOUT: return "timed out"
            default: return "\(error)"
            }
        }
        if let error = error as? ChannelError, case .connectTimeout = error { return "timed out" }
        return "\(error)"
    }

    /// TLS errors become `.tls`; a closed connection `.protocolError`.
    static func classify(_ error: any Error, _ configuration: Configuration) -> IMAPError {
        if let error = error as? IMAPError { return error }
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            return IMAPError(.tls, "TLS with the IMAP server \(configuration.server) failed: \(error); if the server uses a private or self-signed certificate, name it with ca_file:, and check that the mailbox address names the host its certificate is for")
        }
        if error is CancellationError { return IMAPError(.protocolError, "cancelled") }
        return IMAPError(.protocolError, "the connection to the IMAP server \(configuration.server) failed: \(error)")
    }

    /// Closes the connection from any task (a shutdown): the command waiting on it ends with an error.
    public var interrupt: @Sendable () -> Void { { [channel] in channel.close(promise: nil) } }

    public func close() async {
        try? await channel.close()
    }

    // MARK: - commands

    /// The next response; no answer within `timeout` is an error.
    func nextResponse(timeout: Duration) async throws -> IMAPResponse {
        guard let response = try await next(timeout: timeout) else {
            throw IMAPError(.protocolError, "the IMAP server \(configuration.server) did not answer within \(Int(timeout.seconds))s")
        }
        return response
    }

    /// The next response, or nil when none came within `timeout`.
    func next(timeout: Duration) async throws -> IMAPResponse? {
        timerID += 1
        let id = timerID
        let continuation = self.continuation
        let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.seconds * 1e9))) { continuation.yield(.timer(id)) }
        defer { timer.cancel() }
        while true {
            let event: IMAPEvent?
            do {
                event = try await withTaskCancellationHandler {
                    try await events.next()
                } onCancel: { [channel] in
                    channel.close(promise: nil)
                }
            } catch {
                try Task.checkCancellation()
                throw Self.classify(error, configuration)
            }
            try Task.checkCancellation()
            switch event {
            case .none:
                throw IMAPError(.protocolError, "the IMAP server \(configuration.server) closed the connection")
            case .timer(let fired):
                if fired == id { return nil }
            case .response(let response):
                return response
            }
        }
    }

    func send(_ line: String) async throws {
        var buffer = channel.allocator.buffer(capacity: line.utf8.count + 2)
        buffer.writeString(line)
        buffer.writeString("\r\n")
        do {
            try await channel.writeAndFlush(buffer)
        } catch {
            // A write on a connection that TLS just closed: the TLS error says why.
            throw Self.classify(forwarder.failure.withLockedValue { $0 } ?? error, configuration)
        }
    }

    func makeTag() -> String {
        defer { nextTag += 1 }
        return "S\(nextTag)"
    }

    /// Sends a command and collects the untagged responses and then its tagged OK; NO or BAD throw
    /// `failure` with the server's text. `display` replaces the command in messages (secrets).
    @discardableResult
    func run(_ command: String, display: String? = nil, failure: IMAPError.Code = .command) async throws -> [IMAPResponse] {
        let tag = makeTag()
        try await send("\(tag) \(command)")
        var untagged: [IMAPResponse] = []
        while true {
            let response = try await nextResponse(timeout: configuration.commandTimeout)
            if response.tag == tag {
                guard response.status == "OK" else {
                    let what = display ?? String(command.prefix { $0 != " " })
                    throw IMAPError(failure, "the IMAP server \(configuration.server) answered \(response.status ?? "?") to \(what): \(response.statusText)")
                }
                untagged.append(response)   // the tagged OK last: its [CODE] may matter (READ-ONLY)
                return untagged
            }
            if response.tag == "*" && response.status == "BYE" {
                throw IMAPError(.protocolError, "the IMAP server \(configuration.server) closed the session: \(response.statusText)")
            }
            untagged.append(response)
        }
    }

    func refreshCapabilities() async throws {
        let responses = try await run("CAPABILITY")
        var found: Set<String> = []
        for response in responses where response.text.uppercased().hasPrefix("* CAPABILITY ") {
            for word in response.text.split(separator: " ").dropFirst(2) { found.insert(word.uppercased()) }
        }
        capabilities = found
    }

    /// Logs in; the password never appears in an error or a log.
    public func login(user: String, password: String, method: Authentication = .automatic) async throws {
        let plain: Bool
        switch method {
        case .plain: plain = true
        case .login: plain = false
        case .automatic: plain = capabilities.contains("AUTH=PLAIN")
        }
        if plain {
            let token = Data(([UInt8]() + [0] + Array(user.utf8) + [0] + Array(password.utf8))).base64EncodedString()
            if capabilities.contains("SASL-IR") {
                try await run("AUTHENTICATE PLAIN \(token)", display: "AUTHENTICATE PLAIN as '\(user)'", failure: .login)
            } else {
                let tag = makeTag()
                try await send("\(tag) AUTHENTICATE PLAIN")
                let response = try await nextResponse(timeout: configuration.commandTimeout)
                guard response.tag == "+" else {
                    throw IMAPError(.login, "the IMAP server \(configuration.server) refused AUTHENTICATE PLAIN: \(response.statusText)")
                }
                try await send(token)
                while true {
                    let response = try await nextResponse(timeout: configuration.commandTimeout)
                    guard response.tag == tag else { continue }
                    guard response.status == "OK" else {
                        throw IMAPError(.login, "the IMAP server \(configuration.server) answered \(response.status ?? "?") to AUTHENTICATE PLAIN as '\(user)': \(response.statusText)")
                    }
                    break
                }
            }
        } else {
            guard !capabilities.contains("LOGINDISABLED") else {
                throw IMAPError(.login, "the IMAP server \(configuration.server) does not allow LOGIN on this connection (LOGINDISABLED); use TLS (imaps:// or STARTTLS)")
            }
            try await run("LOGIN \(try Self.quoted(user)) \(try Self.quoted(password))", display: "LOGIN as '\(user)'", failure: .login)
        }
        try await refreshCapabilities()
    }

    /// A quoted string; text with line breaks or outside ASCII cannot be quoted and is refused.
    static func quoted(_ text: String) throws -> String {
        guard text.unicodeScalars.allSatisfy({ $0.isASCII && $0 != "\r" && $0 != "\n" && $0 != "\0" }) else {
            throw IMAPError(.login, "a user name or password outside ASCII cannot be sent with LOGIN; use auth: plain")
        }
        return "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }

    public struct MailboxStatus: Sendable {
        public var uidValidity: UInt32
        public var exists: Int
        public var readOnly: Bool
    }

    /// Opens a mailbox (folder) read-write.
    @discardableResult
    public func select(_ mailbox: String) async throws -> MailboxStatus {
        let responses = try await run("SELECT \(try Self.quoted(mailbox))")
        var status = MailboxStatus(uidValidity: 0, exists: 0, readOnly: false)
        for response in responses {
            let words = response.text.split(separator: " ")
            if words.count >= 3, words[2].uppercased() == "EXISTS", let n = Int(words[1]) { status.exists = n }
            if let range = response.text.range(of: "[UIDVALIDITY ") {
                status.uidValidity = UInt32(response.text[range.upperBound...].prefix { $0.isNumber }) ?? 0
            }
            if response.text.uppercased().contains("[READ-ONLY]") { status.readOnly = true }
        }
        return status
    }

    /// The UIDs of the messages without \Seen.
    public func searchUnseen() async throws -> [UInt32] {
        try await search("UNSEEN")
    }

    public func search(_ criteria: String) async throws -> [UInt32] {
        let responses = try await run("UID SEARCH \(criteria)")
        return responses.filter { $0.text.uppercased().hasPrefix("* SEARCH") }
            .flatMap { $0.text.split(separator: " ").dropFirst(2).compactMap { UInt32($0) } }
            .sorted()
    }

    public struct FetchedHeader: Sendable {
        public var uid: UInt32
        public var size: Int
        public var flags: [String]
        /// The raw header block.
        public var header: [UInt8]
    }

    /// Size, flags and headers of each message, without setting \Seen.
    public func fetchHeaders(_ uids: [UInt32]) async throws -> [FetchedHeader] {
        guard !uids.isEmpty else { return [] }
        var out: [FetchedHeader] = []
        for chunk in stride(from: 0, to: uids.count, by: 200).map({ Array(uids[$0..<min($0 + 200, uids.count)]) }) {
            let responses = try await run("UID FETCH \(chunk.map(String.init).joined(separator: ",")) (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER])")
            for response in responses where response.text.uppercased().contains(" FETCH (") {
                guard let uid = Self.number(after: "UID ", in: response.text) else { continue }
                var flags: [String] = []
                if let range = response.text.range(of: "FLAGS (") {
                    flags = response.text[range.upperBound...].prefix { $0 != ")" }.split(separator: " ").map(String.init)
                }
                out.append(FetchedHeader(uid: UInt32(uid), size: Self.number(after: "RFC822.SIZE ", in: response.text) ?? 0, flags: flags,
                                         header: response.literals.first.map { Array($0.readableBytesView) } ?? []))
            }
        }
        return out
    }

    /// The whole message (BODY.PEEK[]: reading it does not set \Seen). Refused with `.tooLarge` when
    /// the server announces more than `limit` bytes.
    public func fetchMessage(_ uid: UInt32, limit: Int = .max) async throws -> [UInt8] {
        if limit < .max {
            let sizes = try await run("UID FETCH \(uid) (UID RFC822.SIZE)")
            if let size = sizes.compactMap({ Self.number(after: "RFC822.SIZE ", in: $0.text) }).first, size > limit {
                throw IMAPError(.tooLarge, "message UID \(uid) is \(size) bytes, more than the limit of \(limit) bytes")
            }
        }
        let responses = try await run("UID FETCH \(uid) (UID BODY.PEEK[])")
        guard let response = responses.first(where: { Self.number(after: "UID ", in: $0.text) == Int(uid) && !$0.literals.isEmpty }),
              let literal = response.literals.first else {
            throw IMAPError(.command, "the IMAP server \(configuration.server) sent no body for message UID \(uid) (was it deleted?)")
        }
        return Array(literal.readableBytesView)
    }

    /// Adds flags (e.g. `\Seen`) to messages.
    public func addFlags(_ flags: [String], to uids: [UInt32]) async throws {
        guard !uids.isEmpty else { return }
        try await run("UID STORE \(uids.map(String.init).joined(separator: ",")) +FLAGS.SILENT (\(flags.joined(separator: " ")))")
    }

    public func markSeen(_ uid: UInt32) async throws {
        try await addFlags(["\\Seen"], to: [uid])
    }

    /// Creates a folder (tests and tools).
    public func create(_ folder: String) async throws {
        try await run("CREATE \(try Self.quoted(folder))")
    }

    /// Appends a message to a mailbox (tests and tools).
    public func append(_ message: [UInt8], to mailbox: String, flags: [String] = []) async throws {
        let tag = makeTag()
        let flagList = flags.isEmpty ? "" : " (\(flags.joined(separator: " ")))"
        try await send("\(tag) APPEND \(try Self.quoted(mailbox))\(flagList) {\(message.count)}")
        let response = try await nextResponse(timeout: configuration.commandTimeout)
        guard response.tag == "+" else {
            throw IMAPError(.command, "the IMAP server \(configuration.server) refused APPEND: \(response.statusText)")
        }
        var buffer = channel.allocator.buffer(capacity: message.count + 2)
        buffer.writeBytes(message)
        buffer.writeString("\r\n")
        try await channel.writeAndFlush(buffer)
        while true {
            let response = try await nextResponse(timeout: configuration.commandTimeout)
            guard response.tag == tag else { continue }
            guard response.status == "OK" else { throw IMAPError(.command, "APPEND failed: \(response.statusText)") }
            return
        }
    }

    public var supportsIdle: Bool { capabilities.contains("IDLE") }

    /// Waits in IDLE until the server reports a change in the mailbox (new messages, flags) or `timeout`
    /// passes. Returns whether something changed.
    public func idle(timeout: Duration) async throws -> Bool {
        let tag = makeTag()
        try await send("\(tag) IDLE")
        let ready = try await nextResponse(timeout: configuration.commandTimeout)
        guard ready.tag == "+" else {
            throw IMAPError(.command, "the IMAP server \(configuration.server) refused IDLE: \(ready.text)")
        }
        var changed = false
        while let response = try await next(timeout: timeout) {
                let words = response.text.uppercased().split(separator: " ")
                if response.tag == "*", words.count >= 3, ["EXISTS", "RECENT", "FETCH", "EXPUNGE"].contains(words[2]) { changed = true; break }
                if response.tag == "*" && response.status == "BYE" {
                    throw IMAPError(.protocolError, "the IMAP server \(configuration.server) closed the session: \(response.statusText)")
                }
        }
        try await send("DONE")
        while true {
            let response = try await nextResponse(timeout: configuration.commandTimeout)
            if response.tag == tag {
                guard response.status == "OK" else { throw IMAPError(.command, "IDLE ended with \(response.text)") }
                return changed
            }
        }
    }

    public func logout() async {
        _ = try? await run("LOGOUT")
        await close()
    }

    static func number(after marker: String, in text: String) -> Int? {
        guard let range = text.range(of: marker, options: .caseInsensitive) else { return nil }
        return Int(text[range.upperBound...].prefix { $0.isNumber })
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
