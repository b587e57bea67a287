import Foundation
import SluiceCore
import SluiceDefinition
import SluiceEngine
import SluiceMail
import SluiceStore
import SluiceStoreSQLite
import SluiceTesting
import SluiceTriggers
import Synchronization
import Testing

/// The Dovecot server started by scripts/test-dovecot.sh (and .ci/run); tests skip without it.
struct TestIMAP {
    var host: String
    var port: Int          // plain IMAP, STARTTLS offered
    var tlsPort: Int       // IMAPS
    var user: String
    var password: String
    var ca: String

    static func server() throws -> TestIMAP {
        let env = ProcessInfo.processInfo.environment
        guard let plain = env["SLUICE_TEST_IMAP"], let tls = env["SLUICE_TEST_IMAPS"], let user = env["SLUICE_TEST_IMAP_USER"],
              let password = env["SLUICE_TEST_IMAP_PASSWORD"], let ca = env["SLUICE_TEST_IMAP_CA"],
              let port = plain.split(separator: ":").last.flatMap({ Int($0) }), let tlsPort = tls.split(separator: ":").last.flatMap({ Int($0) }) else {
            try Test.cancel("mailbox tests skipped: SLUICE_TEST_IMAP is not set (run `source scripts/test-dovecot.sh` first; .ci/run does)")
        }
        return TestIMAP(host: String(plain.split(separator: ":").first!), port: port, tlsPort: tlsPort, user: user, password: password, ca: ca)
    }

    func configuration(_ security: IMAPClient.Security = .tls, trusted: Bool = true) -> IMAPClient.Configuration {
        IMAPClient.Configuration(host: host, port: security == .tls ? tlsPort : port, security: security, trustedCertificates: trusted ? ca : nil)
    }

    func client(_ security: IMAPClient.Security = .tls, method: IMAPClient.Authentication = .automatic) async throws -> IMAPClient {
        let client = try await IMAPClient.connect(configuration(security))
        try await client.login(user: user, password: password, method: method)
        return client
    }

    /// A new, empty mailbox of the test's own. Dovecot (maildir, several sessions creating mailboxes at
    /// once) now and then answers "Mailbox already exists" to a CREATE of a name nobody used; another
    /// fresh name is then asked for, at most three times.
    func folder() async throws -> String {
        let client = try await client()
        var attempt = 0
        while true {
            let name = "t-\(UUID().uuidString.prefix(12))"
            do {
                try await client.create(name)
                await client.logout()
                return name
            } catch let error as IMAPError where error.code == .command && error.message.contains("already exists") && attempt < 2 {
                attempt += 1
            } catch {
                await client.logout()
                throw error
            }
        }
    }

    func deliver(_ messages: [String], to folder: String, flags: [String] = []) async throws {
        let client = try await client()
        for message in messages { try await client.append(MIMETests.bytes(message), to: folder, flags: flags) }
        await client.logout()
    }

    func unseen(_ folder: String) async throws -> [UInt32] {
        let client = try await client()
        try await client.select(folder)
        let uids = try await client.searchUnseen()
        await client.logout()
        return uids
    }

    func all(_ folder: String) async throws -> [UInt32] {
        let client = try await client()
        try await client.select(folder)
        let uids = try await client.search("ALL")
        await client.logout()
        return uids
    }

    func mailbox(_ folder: String) -> String { "imaps://\(user)@\(host):\(tlsPort)/\(folder)" }
}

func mail(subject: String, id: String, from: String = "Aseguradora <informes@example.com>", attachment: (name: String, text: String)? = nil) -> String {
    var text = """
        From: \(from)
        To: sluice@example.com
        Subject: \(subject)
        Date: Mon, 2 Mar 2026 08:00:00 +0100
        Message-ID: <\(id)@example.com>
        MIME-Version: 1.0

        """
    if let attachment {
        text += """
            Content-Type: multipart/mixed; boundary="zz"

            --zz
            Content-Type: text/plain; charset=utf-8

            See the attachment.
            --zz
            Content-Type: text/csv
            Content-Disposition: attachment; filename="\(attachment.name)"
            Content-Transfer-Encoding: base64

            \(Data(attachment.text.utf8).base64EncodedString())
            --zz--

            """
    } else {
        text += "Content-Type: text/plain\n\nHello.\n"
    }
    return text
}

@Suite("Mailbox: IMAP client against Dovecot")
struct IMAPClientTests {
    @Test(arguments: [IMAPClient.Security.tls, .startTLS], [IMAPClient.Authentication.plain, .login])
    func logsInOverTLSAndSTARTTLSWithBothMethods(_ security: IMAPClient.Security, _ method: IMAPClient.Authentication) async throws {
        let server = try TestIMAP.server()
        let client = try await server.client(security, method: method)
        #expect(client.capabilities.contains("IMAP4REV1"))
        #expect(client.supportsIdle)
        let status = try await client.select("INBOX")
        #expect(status.uidValidity > 0)
        #expect(!status.readOnly)
        await client.logout()
    }

    @Test func wrongPasswordIsALoginErrorThatDoesNotShowThePassword() async throws {
        let server = try TestIMAP.server()
        for method in [IMAPClient.Authentication.plain, .login] {
            let client = try await IMAPClient.connect(server.configuration())
            do {
                try await client.login(user: server.user, password: "not-the-password-4711", method: method)
                Issue.record("a wrong password logged in")
            } catch let error as IMAPError {
                #expect(error.code == .login)
                #expect(error.message.contains("127.0.0.1:\(server.tlsPort)"), "\(error)")
                #expect(error.message.contains("'\(server.user)'"), "\(error)")
                #expect(!error.message.contains("4711"), "\(error)")
            }
            await client.close()
        }
    }

    @Test func refusedConnectionAndUntrustedCertificateAreClearErrors() async throws {
        let server = try TestIMAP.server()
        // A port nobody listens on.
        var refused = server.configuration()
        refused.port = 1
        await #expect {
            _ = try await IMAPClient.connect(refused)
        } throws: { error in
            guard let error = error as? IMAPError else { return false }
            return error.code == .connect && error.message.contains("connection refused") && error.message.contains("127.0.0.1:1")
        }
        // The self-signed certificate, not trusted: TLS fails, both ways.
        for security in [IMAPClient.Security.tls, .startTLS] {
            await #expect {
                _ = try await IMAPClient.connect(server.configuration(security, trusted: false))
            } throws: { error in
                guard let error = error as? IMAPError else { return false }
                return error.code == .tls && error.message.contains("ca_file")
            }
        }
    }

    @Test func searchFetchAndStore() async throws {
        let server = try TestIMAP.server()
        let folder = try await server.folder()
        try await server.deliver([mail(subject: "already read", id: "read-1")], to: folder, flags: ["\\Seen"])
        try await server.deliver([mail(subject: "=?UTF-8?Q?p=C3=B3lizas?=", id: "new-1", attachment: ("a.csv", "x,y\n1,2\n"))], to: folder)
        let client = try await server.client()
        try await client.select(folder)
        let unseen = try await client.searchUnseen()
        #expect(unseen.count == 1)
        let uid = try #require(unseen.first)
        let headers = try await client.fetchHeaders(unseen)
        #expect(headers.map(\.uid) == [uid])
        let parsed = MIME.splitHeaders(try #require(headers.first).header[...]).0
        #expect(parsed.subject == "pólizas")
        #expect(parsed.messageID == "<new-1@example.com>")
        #expect(try #require(headers.first).size > 100)
        // Fetching the body (BODY.PEEK[]) leaves it unseen.
        let body = try await client.fetchMessage(uid)
        let message = try MIME.parse(body)
        #expect(message.attachments.map(\.filename) == ["a.csv"])
        #expect(message.attachments.first.map { String(decoding: $0.data, as: UTF8.self) } == "x,y\n1,2\n")
        #expect(try await client.searchUnseen() == [uid])
        // Too large for a limit: refused before it is downloaded.
        await #expect { _ = try await client.fetchMessage(uid, limit: 10) } throws: { ($0 as? IMAPError)?.code == .tooLarge }
        try await client.markSeen(uid)
        #expect(try await client.searchUnseen().isEmpty)
        // IDLE: a message delivered meanwhile ends the wait.
        let delivery = Task {
            try await Task.sleep(for: .milliseconds(300))
            try await server.deliver([mail(subject: "while idle", id: "idle-1")], to: folder)
        }
        #expect(try await client.idle(timeout: .seconds(30)))
        try await delivery.value
        #expect(try await client.searchUnseen().count == 1)
        await client.logout()
    }
}

/// Polls `condition` every 50 ms for up to 2 minutes: the full suite can starve these in-process servers
/// for a while on a loaded machine (a generous deadline, no timed assertion).
func eventually(_ condition: () async throws -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(120)
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    Issue.record("condition not met within 120 s")
}

final class LogLines: Sendable {
    private let lines = Mutex<[String]>([])
    func append(_ line: String) { lines.withLock { $0.append(line) } }
    var all: [String] { lines.withLock { $0 } }
}

extension IMAPClientTests {
    /// A 50 MB attachment through Dovecot: appended, fetched and decoded. Slow in debug builds, so it runs
    /// only with SLUICE_TEST_LARGE_MAIL=1.
    @Test func aFiftyMegabyteAttachmentArrivesWhole() async throws {
        guard ProcessInfo.processInfo.environment["SLUICE_TEST_LARGE_MAIL"] == "1" else {
            try Test.cancel("the 50 MB message test runs only with SLUICE_TEST_LARGE_MAIL=1")
        }
        let server = try TestIMAP.server()
        let folder = try await server.folder()
        let payload = (0..<(50 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) }
        let encoded = Data(payload).base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed])
        var message = MIMETests.bytes("Subject: SI big\nMessage-ID: <big@example.com>\nContent-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Disposition: attachment; filename=big.bin\nContent-Transfer-Encoding: base64\n\n")
        message += Array(encoded.utf8) + MIMETests.bytes("\n--zz--\n")
        let client = try await server.client()
        try await client.append(message, to: folder)
        try await client.select(folder)
        let uid = try #require(try await client.searchUnseen().first)
        let parsed = try MIME.parse(try await client.fetchMessage(uid))
        #expect(parsed.attachments.first?.data == payload)
        await client.logout()
    }
}

/// `sluice serve`'s mailbox trigger, in process, against Dovecot and a SQLite store.
@Suite("Mailbox: serve routes messages to pipelines")
struct MailServeTests {
    final class Harness: Sendable {
        let dir: TemporaryDirectory
        let engine: Engine
        let server: Server
        let lines: LogLines
        let imap: TestIMAP

        init(_ imap: TestIMAP, pipelines: [String: String]) throws {
            self.imap = imap
            let dir = try TemporaryDirectory(prefix: "mail")
            self.dir = dir
            for (file, text) in pipelines { try text.write(toFile: dir.file(file), atomically: true, encoding: .utf8) }
            let layout = StateLayout(directory: dir.file(".sluice"))
            engine = Engine(store: try SQLiteStateStore.open(path: layout.databasePath), layout: layout)
            var options = Server.Options()
            options.grace = .seconds(5)
            options.tick = .milliseconds(200)
            let lines = LogLines()
            self.lines = lines
            server = Server(engine: engine, catalog: Catalog(sources: pipelines.keys.sorted().map { dir.file($0) }), options: options) { line in
                lines.append(line)
            }
        }

        var log: [String] { lines.all }

        func serving<T>(_ body: () async throws -> T) async throws -> T {
            let server = self.server
            let task = Task { try await server.run() }
            defer { task.cancel() }
            let result = try await body()
            task.cancel()
            _ = await task.result
            return result
        }

        func runs(_ pipeline: String) async throws -> [RunRecord] { try await engine.store.recentRuns(pipeline: pipeline, limit: 100) }

        func text(_ file: String) -> String? { try? String(contentsOfFile: dir.file(file), encoding: .utf8) }
    }

    static func pipeline(_ name: String, _ imap: TestIMAP, folder: String, filters: String, extra: String = "",
                         run: String = "[\"sh\", \"-c\", \"printf '%s|%s|%s' \\\"$SLUICE_PARAM_MAIL_SUBJECT\\\" \\\"$SLUICE_PARAM_MAIL_MESSAGE_ID\\\" \\\"$SLUICE_PARAM_MAIL_ATTACHMENTS\\\" > NAME.out\"]") -> String {
        """
        name: \(name)
        overlap: allow
        on_mail:
          mailbox: "\(imap.mailbox(folder))"
          password_env: SLUICE_TEST_IMAP_PASSWORD
          ca_file: \(imap.ca)
          poll: 1s
        \(filters.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
        \(extra)
        stages:
          take:
            run: \(run.replacingOccurrences(of: "NAME", with: name))
        """
    }

    @Test func twoMessagesArrivingTogetherStartTheTwoRoutedPipelinesOnceEach() async throws {
        let imap = try TestIMAP.server()
        let folder = try await imap.folder()
        // Seed 000: both e-mails arrive at once; each subject routes to its own pipeline.
        try await imap.deliver([
            mail(subject: "Asegurados Salud Internacional 2026-03-02", id: "si-1", attachment: ("../../etc/si polizas.csv", "id\n1\n")),
            mail(subject: "=?UTF-8?Q?Asegurados_Viajeros_=E2=80=93_2026-03-02?=", id: "viajeros-1", attachment: ("viajeros.csv", "id\n2\n")),
        ], to: folder)
        let h = try Harness(imap, pipelines: [
            "si.yml": Self.pipeline("si", imap, folder: folder, filters: "subject_contains: salud internacional"),
            "viajeros.yml": Self.pipeline("viajeros", imap, folder: folder, filters: "subject_regex: '(?i)^asegurados viajeros'\nfrom: informes@example.com"),
        ])
        try await h.serving {
            try await eventually { h.text("si.out") != nil && h.text("viajeros.out") != nil }
            try await eventually { try await imap.unseen(folder).isEmpty }
        }
        let si = try await h.runs("si"), viajeros = try await h.runs("viajeros")
        #expect(si.count == 1 && viajeros.count == 1, "\(h.log)")
        #expect(si.first?.idempotencyKey == "mail:si:<si-1@example.com>")
        #expect(viajeros.first?.params["mail_subject"] == "Asegurados Viajeros – 2026-03-02")
        #expect(viajeros.first?.params["mail_from"] == "Aseguradora <informes@example.com>")
        #expect(viajeros.first?.params["mail_date"] == "Mon, 2 Mar 2026 08:00:00 +0100")
        #expect(viajeros.first?.params["mail_day"] == "2026-03-02")
        // Attachments arrive as input files inside the pipeline's folder, named safely.
        #expect(h.text("si.out") == "Asegurados Salud Internacional 2026-03-02|<si-1@example.com>|mail/si-1@example.com/si polizas.csv")
        #expect(h.text("mail/si-1@example.com/si polizas.csv") == "id\n1\n")
        #expect(h.text("mail/viajeros-1@example.com/viajeros.csv") == "id\n2\n")
        #expect(try await imap.all(folder).count == 2)
    }

    @Test func aRunRecordedButNotMarkedSeenIsNeitherLostNorDuplicated() async throws {
        let imap = try TestIMAP.server()
        let folder = try await imap.folder()
        try await imap.deliver([mail(subject: "SI report", id: "crash-1")], to: folder)
        let h = try Harness(imap, pipelines: ["si.yml": Self.pipeline("si", imap, folder: folder, filters: "subject_contains: SI")])
        // A serve that died between recording the run and marking the message seen left this behind.
        let spec = try #require(PipelineLoader.load(file: h.dir.file("si.yml")).spec)
        guard case .started(let recorded) = try await h.engine.start(spec, params: [:], trigger: "mail <crash-1@example.com>",
                                                                    idempotencyKey: "mail:si:<crash-1@example.com>") else {
            Issue.record("the run was not recorded"); return
        }
        #expect(try await imap.unseen(folder).count == 1)
        try await h.serving {
            try await eventually { try await imap.unseen(folder).isEmpty }
        }
        #expect(try await h.runs("si").map(\.id) == [recorded.id], "no second run: \(h.log)")
    }

    @Test func aMessageIsMarkedSeenOnlyAfterItsRunIsRecorded() async throws {
        let imap = try TestIMAP.server()
        let folder = try await imap.folder()
        let h = try Harness(imap, pipelines: [
            "si.yml": Self.pipeline("si", imap, folder: folder, filters: "subject_contains: SI").replacingOccurrences(of: "overlap: allow", with: "overlap: skip"),
        ])
        // A run of the pipeline is active, so a new one cannot be recorded (overlap: skip).
        let spec = try #require(PipelineLoader.load(file: h.dir.file("si.yml")).spec)
        guard case .started(let blocker) = try await h.engine.start(spec, params: [:], trigger: "manual") else {
            Issue.record("the blocking run did not start"); return
        }
        try await imap.deliver([mail(subject: "SI report", id: "wait-1")], to: folder)
        try await h.serving {
            try await eventually { h.log.contains { $0.contains("<wait-1@example.com>") && $0.contains("waits unseen") } }
            #expect(try await imap.unseen(folder).count == 1, "no run recorded yet, so not seen")
            #expect(try await h.runs("si").count == 1)
            _ = try await h.engine.execute(blocker)
            try await eventually { try await imap.unseen(folder).isEmpty }
            #expect(try await h.runs("si").contains { $0.idempotencyKey == "mail:si:<wait-1@example.com>" })
        }
    }

    @Test func messagesItCannotTakeStayUnseenAndAreLoggedOnce() async throws {
        let imap = try TestIMAP.server()
        let folder = try await imap.folder()
        let broken = """
            Subject: SI broken
            Message-ID: <broken-1@example.com>
            Content-Type: multipart/mixed; boundary=zz

            --zz
            Content-Type: text/plain

            cut off here
            """
        try await imap.deliver([
            mail(subject: "newsletter", id: "nomatch-1"),
            mail(subject: "SI huge", id: "big-1", attachment: ("big.csv", String(repeating: "x", count: 8000))),
            broken,
        ], to: folder)
        let h = try Harness(imap, pipelines: ["si.yml": Self.pipeline("si", imap, folder: folder, filters: "subject_contains: SI\nmax_size: 4KB")])
        try await h.serving {
            try await eventually { h.log.filter { $0.contains("stays unseen") }.count >= 3 }
            // One more message, taken: the mailbox was looked at again since.
            try await imap.deliver([mail(subject: "SI good", id: "good-1")], to: folder)
            try await eventually { h.text("si.out") != nil }
            try await eventually { try await imap.unseen(folder).count == 3 }
        }
        let log = h.log
        #expect(log.filter { $0.contains("<nomatch-1@example.com>") && $0.contains("matches no pipeline") }.count == 1, "\(log)")
        #expect(log.filter { $0.contains("<big-1@example.com>") && $0.contains("max_size") }.count == 1, "\(log)")
        #expect(log.filter { $0.contains("<broken-1@example.com>") && $0.contains("closing boundary") }.count == 1, "\(log)")
        #expect(try await h.runs("si").map(\.idempotencyKey) == ["mail:si:<good-1@example.com>"])
    }

    @Test func wrongCredentialsAreLoggedAndRetriedWhileTheRestOfServeGoesOn() async throws {
        let imap = try TestIMAP.server()
        setenv("SLUICE_TEST_WRONG_IMAP_PASSWORD", "wrong-secret-9321", 1)
        let h = try Harness(imap, pipelines: [
            "si.yml": Self.pipeline("si", imap, folder: "INBOX", filters: "subject_contains: SI")
                .replacingOccurrences(of: "password_env: SLUICE_TEST_IMAP_PASSWORD", with: "password_env: SLUICE_TEST_WRONG_IMAP_PASSWORD"),
            "tick.yml": """
                name: tick
                schedule:
                  every: 1s
                stages:
                  t:
                    run: ["sh", "-c", "echo tick >> ticks.txt"]
                """,
        ])
        try await h.serving {
            try await eventually { h.log.filter { $0.contains("error: mailbox") }.count >= 2 && (h.text("ticks.txt")?.count ?? 0) >= 10 }
        }
        let errors = h.log.filter { $0.contains("error: mailbox") }
        #expect(errors.first?.contains("answered NO to AUTHENTICATE PLAIN as '\(imap.user)'") == true, "\(h.log)")
        #expect(errors.first?.contains("trying again in") == true)
        #expect(!h.log.joined().contains("wrong-secret-9321"), "the password never appears in the log")
    }
}

@Suite("Mailbox: on_mail in pipeline files")
struct MailDefinitionTests {
    func load(_ onMail: String) -> PipelineLoader.Loaded {
        PipelineLoader.parse(yaml: """
            name: p
            on_mail:
            \(onMail.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
            stages:
              s:
                run: [echo, "{{params.mail_subject}}", "{{params.mail_attachments}}"]
            """, file: "/tmp/p.yml", root: "/tmp")
    }

    @Test func aValidTriggerDeclaresTheMailParams() throws {
        let loaded = load("mailbox: imaps://me%40example.com@mail.example.com/Reports\npassword_env: MAIL_PW\nsubject_contains: SI\nmax_size: 25MB")
        let spec = try #require(loaded.spec, "\(loaded.diagnostics)")
        let trigger = try #require(spec.onMail)
        #expect(trigger.mailbox == MailboxAddress(security: .tls, user: "me@example.com", host: "mail.example.com", port: 993, folder: "Reports"))
        #expect(trigger.maxSize == 25 << 20)
        #expect(Set(MailTrigger.params).isSubset(of: Set(spec.params.keys)))
        #expect(trigger.matches(subject: "Asegurados SI hoy", from: "x"))
        #expect(!trigger.matches(subject: "Viajeros", from: "x"))
    }

    struct Bad: CustomTestStringConvertible, Sendable {
        var yaml: String, line: Int, message: String
        var testDescription: String { message }
    }

    static let bad: [Bad] = [
        Bad(yaml: "password_env: X", line: 3, message: "on_mail needs mailbox:"),
        Bad(yaml: "mailbox: imaps://u@h/INBOX\npassword: hunter2", line: 4, message: "a password never goes in a pipeline file"),
        Bad(yaml: "mailbox: imaps://u:hunter2@h/INBOX\npassword_env: X", line: 3, message: "holds a password"),
        Bad(yaml: "mailbox: pop3://u@h/INBOX\npassword_env: X", line: 3, message: "use imaps://"),
        Bad(yaml: "mailbox: imaps://h/INBOX\npassword_env: X", line: 3, message: "names no user"),
        Bad(yaml: "mailbox: imaps://u@h/INBOX", line: 3, message: "needs password_env: or password_file:"),
        Bad(yaml: "mailbox: imaps://u@h/INBOX\npassword_env: X\nsubject_regex: '(unclosed'", line: 5, message: "is not a regular expression"),
        Bad(yaml: "mailbox: imaps://u@h/INBOX\npassword_env: X\nattachments: ../outside", line: 5, message: "leaves the pipeline's folder"),
        Bad(yaml: "mailbox: imaps://u@h/INBOX\npassword_env: X\nsubjet_contains: SI", line: 5, message: "unknown key 'subjet_contains'"),
        Bad(yaml: "mailbox: imaps://u@h:99999/INBOX\npassword_env: X", line: 3, message: "is not a port number"),
    ]

    @Test(arguments: bad)
    func mistakesAreReportedAtTheirLine(_ c: Bad) {
        let loaded = load(c.yaml)
        #expect(loaded.spec == nil)
        let error = loaded.diagnostics.first { $0.description.contains(c.message) }
        #expect(error?.location?.line == c.line, "\(loaded.diagnostics.map(\.description))")
        #expect(!loaded.diagnostics.map(\.description).joined().contains("hunter2"), "the password is never repeated")
    }
}
