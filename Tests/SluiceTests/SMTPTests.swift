import Foundation
@testable import SluiceMail
import SluiceTesting
import Subprocess
import Testing
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// A throwaway aiosmtpd server (scripts/test-smtp.py) run by one test, on a port the kernel picked.
struct TestSMTP {
    var port: Int
    var maildir: String
    /// The self-signed certificate it presents for STARTTLS (nil without TLS).
    var certificate: String?

    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts/test-smtp.py").path


    /// A self-signed certificate and key for 127.0.0.1 and localhost, in `dir`.
    static func makeCertificate(in dir: TemporaryDirectory) async throws -> (cert: String, key: String) {
        try await TestTools.require("openssl") { await TestTools.succeeds("openssl", ["version"]) }
        let cert = dir.file("cert.pem"), key = dir.file("key.pem")
        let made = await TestTools.succeeds("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                                              "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                                              "-keyout", key, "-out", cert])
        try #require(made, "openssl could not make a test certificate")
        return (cert, key)
    }

    /// Runs `body` while a server started with these options listens (on `port`, or one the kernel
    /// picks); stops it afterwards.
    static func with<R: Sendable>(port: Int = 0, tls: Bool = true, user: String? = nil, password: String? = nil, mechanisms: String? = nil,
                        rejecting: [String] = [], hang: Bool = false, _ body: (TestSMTP) async throws -> R) async throws -> R {
        try await TestTools.require("python3 with aiosmtpd (pip install aiosmtpd)") { await TestTools.succeeds("python3", ["-c", "import aiosmtpd"]) }
        let dir = try TemporaryDirectory(prefix: "smtp")
        defer { dir.remove() }
        var arguments = ["--port", "\(port)", "--maildir", dir.file("mail")]
        var certificate: String?
        if tls {
            let (cert, key) = try await makeCertificate(in: dir)
            arguments += ["--tls-cert", cert, "--tls-key", key]
            certificate = cert
        }
        if let user, let password { arguments += ["--user", user, "--password", password] }
        if let mechanisms { arguments += ["--auth-mechanisms", mechanisms] }
        for address in rejecting { arguments += ["--reject-rcpt", address] }
        if hang { arguments.append("--hang") }
        return try await ThrowawayServer.with(script: script, arguments: arguments, log: dir.file("server.log")) { port in
            try await body(TestSMTP(port: port, maildir: dir.file("mail"), certificate: certificate))
        }
    }

    struct TestSMTPFailure: Error, CustomStringConvertible { var description: String }

    func configuration(user: String? = nil, password: String? = nil) -> SMTPClient.Configuration {
        var configuration = SMTPClient.Configuration(host: "127.0.0.1", port: port, security: .startTLS, user: user, password: password,
                                                     trustedCertificates: certificate)
        configuration.replyTimeout = .seconds(30)
        return configuration
    }

    /// The saved messages, oldest first.
    func messages() throws -> [[UInt8]] {
        let files = try FileManager.default.contentsOfDirectory(atPath: maildir).filter { $0.hasSuffix(".eml") }
        return try files.map { URL(fileURLWithPath: maildir).appendingPathComponent($0) }
            .sorted { (try? $0.resourceValues(forKeys: [.contentModificationDateKey]).contentModificationDate ?? .distantPast) ?? .distantPast
                < (try? $1.resourceValues(forKeys: [.contentModificationDateKey]).contentModificationDate ?? .distantPast) ?? .distantPast }
            .map { Array(try Data(contentsOf: $0)) }
    }
}

/// What a test expects to fail with.
func smtpFailure(_ operation: () async throws -> Void) async -> SMTPError? {
    do {
        try await operation()
        return nil
    } catch let error as SMTPError {
        return error
    } catch {
        Issue.record("not an SMTPError: \(error)")
        return nil
    }
}

/// The leaf parts of a message (headers and decoded body), depth first, with our own MIME reader.
func leafParts(_ bytes: [UInt8]) throws -> [(headers: MIMEHeaders, body: [UInt8])] {
    func walk(_ part: ArraySlice<UInt8>) throws -> [(headers: MIMEHeaders, body: [UInt8])] {
        let (headers, start) = MIME.splitHeaders(part)
        let (type, parameters) = MIME.parameters(headers["Content-Type"] ?? "text/plain")
        if type.lowercased().hasPrefix("multipart/") {
            let boundary = try #require(parameters["boundary"])
            return try MIME.split(part[start...], boundary: boundary, mediaType: type).flatMap(walk)
        }
        let body = part[start...]
        switch headers["Content-Transfer-Encoding"]?.lowercased() {
        case "base64": return [(headers, try MIME.base64(body))]
        case "quoted-printable": return [(headers, MIME.quotedPrintable(body))]
        default: return [(headers, Array(body))]
        }
    }
    return try walk(bytes[...])
}

@Suite("SMTP: client against aiosmtpd")
struct SMTPClientTests {
    static let pdf: [UInt8] = Array("%PDF-1.4\n".utf8) + (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 3) } + [0, 0xFF, 0x0D, 0x0A, 0x2E]
    static let csv = Array("póliza;prima\nSI-001;120,50\n".utf8)
    static let longLine = String(repeating: "Línea larga con acentos — ", count: 20)

    static func report() throws -> OutgoingMail {
        OutgoingMail(
            from: try MailAddress(parsing: "Informes Sluice Pólizas <informes@example.com>"),
            to: [try MailAddress(parsing: "José Núñez <jose@example.com>"), try MailAddress(parsing: "ops@example.com")],
            cc: [try MailAddress(parsing: "\"Pérez, Ana ✅\" <ana@example.com>")],
            subject: "Informe diario ✅ – pólizas",
            text: "Hola José,\n\nel informe de hoy: 3 pólizas.\n\(longLine)\n.\n.una línea con punto\nFin.\n",
            html: "<html><body><h1>Informe diario ✅</h1><p>3 pólizas — <b>todo bien</b>.</p>\n<p>=?not an encoded word?=</p></body></html>",
            attachments: [MailAttachment(filename: "informe-2026-03-02.pdf", contentType: "application/pdf", data: pdf),
                          MailAttachment(filename: "pólizas del día ✅.csv", contentType: "text/csv", data: csv)],
            headers: [try MailHeader("X-Sluice-Run", "run-42")])
    }

    @Test(arguments: ["PLAIN", "LOGIN"])
    func deliversARichMessageOverSTARTTLSWithAuth(_ mechanism: String) async throws {
        try await TestSMTP.with(tls: true, user: "sluice", password: "s3cret-pw", mechanisms: mechanism) { server in
            let mail = try Self.report()
            let delivery = try await SMTPClient(server.configuration(user: "sluice", password: "s3cret-pw")).send(mail)
            #expect(delivery.accepted == ["jose@example.com", "ops@example.com", "ana@example.com"])
            #expect(delivery.rejected.isEmpty)
            let saved = try #require(try server.messages().first)
            #expect(try server.messages().count == 1)

            let message = try MIME.parse(saved)
            #expect(message.headers.subject == "Informe diario ✅ – pólizas")
            #expect(message.headers.from == "Informes Sluice Pólizas <informes@example.com>")
            #expect(message.headers["To"].map(MIME.decodeEncodedWords) == "José Núñez <jose@example.com>, ops@example.com")
            #expect(message.headers["Cc"].map(MIME.decodeEncodedWords) == "Pérez, Ana ✅ <ana@example.com>")
            #expect(message.headers["X-Envelope-To"] == "<jose@example.com>, <ana@example.com>, <ops@example.com>"
                || message.headers["X-Envelope-To"] == "<jose@example.com>, <ops@example.com>, <ana@example.com>")
            #expect(message.headers["X-Sluice-Run"] == "run-42")
            #expect(message.headers.messageID == "<\(delivery.messageID)>")
            #expect(message.headers["MIME-Version"] == "1.0")
            #expect(!message.headers.date.isEmpty)
            #expect(message.text == mail.text.replacingOccurrences(of: "\n", with: "\r\n"))
            #expect(message.attachments.map(\.filename) == ["informe-2026-03-02.pdf", "pólizas del día ✅.csv"])
            #expect(message.attachments.map(\.contentType) == ["application/pdf", "text/csv"])
            #expect(message.attachments.first?.data == Self.pdf)
            #expect(message.attachments.last?.data == Self.csv)

            let parts = try leafParts(saved)
            let html = try #require(parts.first { MIME.parameters($0.headers["Content-Type"] ?? "").0 == "text/html" })
            #expect(String(decoding: html.body, as: UTF8.self) == mail.html?.replacingOccurrences(of: "\n", with: "\r\n"))
            #expect(MIME.parameters(message.headers["Content-Type"] ?? "").0 == "multipart/mixed")
            // 7-bit, and every line within 78 characters.
            #expect(saved.allSatisfy { $0 < 0x80 })
            let lines = String(decoding: saved, as: UTF8.self).components(separatedBy: "\r\n")
            #expect(lines.allSatisfy { $0.utf8.count <= 78 }, "\(lines.filter { $0.utf8.count > 78 })")
        }
    }

    @Test(arguments: ["PLAIN", "LOGIN"])
    func wrongPasswordIsAuthRejectedNotTransientAndNeverShowsThePassword(_ mechanism: String) async throws {
        let password = "Wr0ng-Secret-4711"
        let mail = try Self.report()
        try await TestSMTP.with(tls: true, user: "sluice", password: "the-right-one", mechanisms: mechanism) { server in
            let configuration = server.configuration(user: "sluice", password: password)
            let error = try #require(await smtpFailure { _ = try await SMTPClient(configuration).send(mail) })
            #expect(error.code == .authRejected, "\(error)")
            #expect(!error.isTransient)
            #expect(error.replyCode.map { (500..<600).contains($0) } == true)
            #expect(error.message.contains("smtp://sluice@127.0.0.1:\(server.port)"), "\(error)")
            #expect(error.message.contains("'sluice'"), "\(error)")
            #expect(error.hint != nil)
            let base64 = Data(password.utf8).base64EncodedString()
            let plain = Data(([0] + Array("sluice".utf8) + [0] + Array(password.utf8))).base64EncodedString()
            for text in ["\(error)", String(reflecting: error), "\(configuration)", String(reflecting: configuration), dumped(configuration), dumped(error)] {
                #expect(!text.contains(password) && !text.contains(base64) && !text.contains(plain), "\(text)")
            }
            #expect(try server.messages().isEmpty)
        }
    }

    func dumped(_ value: Any) -> String {
        var text = ""
        dump(value, to: &text)
        return text
    }

    @Test func aClosedPortIsATransientConnectError() async throws {
        let port = try TestPostgres.PrivateServer.freePort()
        var configuration = SMTPClient.Configuration(host: "127.0.0.1", port: port, security: .startTLS, user: "sluice", password: "pw-12345")
        configuration.connectTimeout = .seconds(5)
        let mail = try Self.report()
        let error = try #require(await smtpFailure { _ = try await SMTPClient(configuration).send(mail) })
        #expect(error.code == .connect, "\(error)")
        #expect(error.isTransient)
        #expect(error.message.contains("smtp://sluice@127.0.0.1:\(port)"), "\(error)")
        #expect(error.message.contains("connection refused"), "\(error)")
        #expect(!"\(error)".contains("pw-12345"))
    }

    @Test func aServerThatNeverGreetsTimesOut() async throws {
        let mail = try Self.report()
        try await TestSMTP.with(tls: false, hang: true) { server in
            var configuration = server.configuration()
            configuration.replyTimeout = .seconds(1)
            let started = ContinuousClock.now
            let error = try #require(await smtpFailure { _ = try await SMTPClient(configuration).send(mail) })
            let elapsed = ContinuousClock.now - started
            #expect(error.code == .timeout, "\(error)")
            #expect(error.isTransient)
            #expect(error.message.contains("127.0.0.1:\(server.port)") && error.message.contains("greeting"), "\(error)")
            #expect(elapsed >= .milliseconds(900) && elapsed < .seconds(10), "\(elapsed)")
        }
    }

    @Test func refusedRecipientsAreReportedAndAllRefusedIsAnError() async throws {
        try await TestSMTP.with(tls: true, user: "sluice", password: "pw", rejecting: ["nobody@example.com", "gone@example.com"]) { server in
            let client = SMTPClient(server.configuration(user: "sluice", password: "pw"))
            var mail = try Self.report()
            mail.to = [try MailAddress("nobody@example.com"), try MailAddress("jose@example.com")]
            mail.cc = []
            let delivery = try await client.send(mail)
            #expect(delivery.accepted == ["jose@example.com"])
            #expect(delivery.rejected.map(\.address) == ["nobody@example.com"])
            #expect(delivery.rejected.first?.reply.hasPrefix("550") == true)
            #expect(try server.messages().count == 1)

            mail.to = [try MailAddress("nobody@example.com"), try MailAddress("gone@example.com")]
            let error = try #require(await smtpFailure { _ = try await client.send(mail) })
            #expect(error.code == .recipientRejected, "\(error)")
            #expect(!error.isTransient)
            #expect(error.message.contains("nobody@example.com") && error.message.contains("gone@example.com"), "\(error)")
            #expect(try server.messages().count == 1)
        }
    }

    @Test func anUntrustedCertificateIsATLSErrorAndNoLoginWithoutTLS() async throws {
        let mail = try Self.report()
        try await TestSMTP.with(tls: true, user: "sluice", password: "pw-untrusted") { server in
            var configuration = server.configuration(user: "sluice", password: "pw-untrusted")
            configuration.trustedCertificates = nil
            let error = try #require(await smtpFailure { _ = try await SMTPClient(configuration).send(mail) })
            #expect(error.code == .tls, "\(error)")
            #expect(!error.isTransient)
            #expect(error.message.contains("smtp://sluice@127.0.0.1:\(server.port)") && error.hint?.contains("ca_file") == true, "\(error)")
            #expect(!"\(error)".contains("pw-untrusted"))
        }
        try await TestSMTP.with(tls: false) { server in
            let error = try #require(await smtpFailure { _ = try await SMTPClient(server.configuration(user: "sluice", password: "pw")).send(mail) })
            #expect(error.code == .tls, "a login is never sent without STARTTLS: \(error)")
            #expect(try server.messages().isEmpty)
        }
    }

    /// Without a login, STARTTLS is used when offered (the TLS server requires it) and skipped when not.
    @Test(arguments: [true, false])
    func dotStuffingAndNoLogin(_ tls: Bool) async throws {
        try await TestSMTP.with(tls: tls) { server in
            let text = ".\n..\n.hidden line\nmiddle\n.\n"
            let mail = OutgoingMail(from: try MailAddress("a@example.com"), to: [try MailAddress("b@example.com")], subject: "dots", text: text)
            try await SMTPClient(server.configuration()).send(mail)
            let saved = try #require(try server.messages().first)
            #expect(try MIME.parse(saved).text == text.replacingOccurrences(of: "\n", with: "\r\n"), "\(String(decoding: saved, as: UTF8.self))")
        }
    }
}

@Suite("SMTP: messages and addresses")
struct OutgoingMailTests {
    static let date = Date(timeIntervalSince1970: 1_772_438_400)   // Mon, 02 Mar 2026 08:00:00 +0000

    @Test func dotStuffingDoublesLeadingDotsAndEndsWithCRLF() {
        #expect(SMTPConnection.dotStuffed(Array(".a\r\nb\r\n..c".utf8)) == Array("..a\r\nb\r\n...c\r\n".utf8))
        #expect(SMTPConnection.dotStuffed(Array("x\r\n".utf8)) == Array("x\r\n".utf8))
    }

    @Test(arguments: ["Informe diario ✅ – pólizas", String(repeating: "ñ", count: 100), "a" + String(repeating: "✅", count: 40),
                      String(repeating: "👨‍👩‍👧‍👦", count: 5), "plain ascii with _ underscores and ? marks = ok", "😀",
                      String(repeating: "日本語のテキスト ", count: 12)])
    func encodedWordsStayShortSplitBetweenCharactersAndDecodeBack(_ text: String) {
        let words = MIME.encodedWords(text, firstLineRoom: 60)
        #expect(words.first.map { $0.utf8.count <= 60 } == true)
        #expect(words.allSatisfy { $0.utf8.count <= 75 && $0.hasPrefix("=?UTF-8?Q?") && $0.hasSuffix("?=") })
        #expect(words.allSatisfy { $0.unicodeScalars.allSatisfy { $0.isASCII && $0 != " " } })
        // Each word decodes on its own: none is cut inside a UTF-8 sequence.
        #expect(words.allSatisfy { !MIME.decodeEncodedWords($0).hasPrefix("=?") })
        #expect(MIME.decodeEncodedWords(words.joined(separator: "\r\n ").replacingOccurrences(of: "\r\n", with: "")) == text)
        #expect(MIME.decodeEncodedWords(words.joined(separator: " ")) == text)
    }

    @Test func addressesParse() throws {
        let cases: [(String, String?, String)] = [
            ("Ana Muñoz <ana@example.com>", "Ana Muñoz", "ana@example.com"),
            ("\"Pérez, Juan \\\"JP\\\"\" <juan@example.com>", "Pérez, Juan \"JP\"", "juan@example.com"),
            ("<x@y.example>", nil, "x@y.example"),
            ("  x@y.example ", nil, "x@y.example"),
            ("Reports <reports+daily@mail.example.com>", "Reports", "reports+daily@mail.example.com"),
        ]
        for (text, name, address) in cases {
            let parsed = try MailAddress(parsing: text)
            #expect(parsed.name == name, "\(text)")
            #expect(parsed.address == address, "\(text)")
        }
    }

    @Test(arguments: ["a@example.com\r\nBcc: evil@example.com", "Name\nBcc: evil@example.com <a@example.com>", "a@example.com\n",
                      "a b@example.com", "<a@example.com> trailing", "Name <a@example.com", "no-at-sign", "a@b@example.com",
                      "josé@example.com", "a@exämple.com", "", "<>", "a@example.com>\r\nRCPT TO:<x@y.z", "a@.example.com", "a\u{0}@example.com"])
    func badOrInjectingAddressesAreRefused(_ text: String) {
        #expect(throws: MailAddressError.self, "\(text.debugDescription)") { try MailAddress(parsing: text) }
        #expect(throws: MailAddressError.self, "\(text.debugDescription)") { try MailAddress(text) }
    }

    @Test func lineBreaksInHeaderValuesCannotAddFields() throws {
        let mail = OutgoingMail(
            from: try MailAddress("a@example.com", name: "Evil\r\nBcc: victim@example.com"),
            to: [try MailAddress("b@example.com", name: "B\nX-Injected: 1")],
            subject: "Hello\r\nBcc: victim@example.com\r\n\r\nbody", text: "hi",
            headers: [try MailHeader("X-Note", "one\r\nBcc: victim@example.com")]
        )
        let rendered = mail.rendered(date: Self.date, messageID: "id\r\nBcc: x@example.com")
        let (headers, _) = MIME.splitHeaders(rendered[...])
        #expect(headers["Bcc"] == nil)
        #expect(headers["X-Injected"] == nil)
        #expect(headers.fields.map(\.name) == ["Date", "From", "To", "Subject", "Message-ID", "MIME-Version", "X-Note", "Content-Type", "Content-Transfer-Encoding"])
        #expect(headers.subject == "Hello Bcc: victim@example.com body")
        #expect(headers.from == "Evil Bcc: victim@example.com <a@example.com>" || headers.from == "\"Evil Bcc: victim@example.com\" <a@example.com>")
        #expect(!headers.fields.contains { $0.value.contains("\r") || $0.value.contains("\n") })

        #expect(throws: MailAddressError.self) { try MailHeader("X-Bad\r\nBcc", "x") }
        #expect(throws: MailAddressError.self) { try MailHeader("X Bad", "x") }
        #expect(throws: MailAddressError.self) { try MailHeader("Content-Type", "text/html") }
        #expect(throws: MailAddressError.self) { try MailHeader("bcc", "x@example.com") }
    }

    @Test func longLinesAreFoldedAndComeBackWhole() throws {
        let subject = (1...30).map { "palabra\($0)" }.joined(separator: " ")
        let longWord = String(repeating: "x", count: 200)
        let body = String(repeating: "0123456789 ", count: 60) + "\n" + longWord + "\n" + String(repeating: "é", count: 150) + "   \nend"
        let many = try (1...12).map { try MailAddress("person\($0)@example.com", name: "Person Number \($0)") }
        let mail = OutgoingMail(from: try MailAddress("a@example.com"), to: many, subject: subject, text: body,
                                attachments: [MailAttachment(filename: String(repeating: "informe de pólizas ", count: 6) + ".csv", data: Array(longWord.utf8))])
        let rendered = mail.rendered(date: Self.date, messageID: "x@example.com")
        let lines = String(decoding: rendered, as: UTF8.self).components(separatedBy: "\r\n")
        #expect(lines.allSatisfy { $0.utf8.count <= 78 }, "\(lines.filter { $0.utf8.count > 78 })")
        #expect(!String(decoding: rendered, as: UTF8.self).replacingOccurrences(of: "\r\n", with: "").contains("\n"), "no bare LF")
        let message = try MIME.parse(rendered)
        #expect(message.headers.subject == subject)
        #expect(message.headers["To"] == many.map { "\($0.name ?? "") <\($0.address)>" }.joined(separator: ", "))
        #expect(message.text == body.replacingOccurrences(of: "\n", with: "\r\n"))
        #expect(message.attachments.first?.filename == String(repeating: "informe de pólizas ", count: 6) + ".csv")
        #expect(message.attachments.first?.data == Array(longWord.utf8))

        let longSubject = String(repeating: "Informe diario ✅ – pólizas ", count: 5)
        var encoded = mail
        encoded.subject = longSubject
        let rendered2 = encoded.rendered(date: Self.date, messageID: "y@example.com")
        let lines2 = String(decoding: rendered2, as: UTF8.self).components(separatedBy: "\r\n")
        #expect(lines2.allSatisfy { $0.utf8.count <= 76 || !$0.contains("=?") }, "lines with encoded words stay within 76")
        #expect(try MIME.parse(rendered2).headers.subject == longSubject.trimmingCharacters(in: .whitespaces))
    }

    @Test func renderingIsDeterministicWithDateAndID() throws {
        let mail = try SMTPClientTests.report()
        let a = mail.rendered(date: Self.date, messageID: "<fixed@example.com>")
        #expect(a == mail.rendered(date: Self.date, messageID: "fixed@example.com"))
        let headers = MIME.splitHeaders(a[...]).0
        #expect(headers.date == "Mon, 02 Mar 2026 08:00:00 +0000")
        #expect(headers.messageID == "<fixed@example.com>")
    }
}
