import Crypto
import Foundation
import SluiceTesting
import Testing

/// Sessions and their notifications through the real `sluice` executable, against real servers
/// (aiosmtpd for e-mail, a Python http.server for webhooks): outages, refused logins, broken
/// templates and unknown members never change a run, and say what is wrong where.
@Suite("Notifications: sessions, outbox and channels through the CLI")
struct NotifyCLITests {
    let cli: CLI
    init() throws { cli = CLI(dir: try TemporaryDirectory(prefix: "notify")) }

    /// SI and Viajeros, with counters and a rejected record, and a session file whose `on_complete` is `actions`.
    func writeInsurance(actions: String, members: String = "[si, viajeros]") throws {
        try cli.dir.write("si.yml", """
            name: si
            session: insurance-daily
            stages:
              load:
                run: [sh, -c, 'echo "::count:: policies 3"; echo "::reject:: {\\"record\\": \\"row 7\\", \\"reason\\": \\"negative amount\\"}"']
            """)
        try cli.dir.write("viajeros.yml", """
            name: viajeros
            session: insurance-daily
            stages:
              load:
                run: [sh, -c, 'echo "::count:: policies 2"']
            """)
        try cli.dir.write("insurance.session.yml", """
            session: insurance-daily
            title: Insurance daily
            members: \(members)
            timeout: 1h
            on_complete:
            \(actions)
            """)
    }

    func json(_ text: String) -> [String: Any] {
        (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:]
    }

    /// The only session, as `sluice show SESSION --json` prints it (with its notifications).
    func theSession() throws -> [String: Any] {
        let list = try cli.run(["sessions", "--json"])
        let sessions = (try? JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]]) ?? []
        try #require(sessions.count == 1, "one session expected: \(list.output)")
        let id = try #require(sessions[0]["session_id"] as? String)
        return json(try cli.run(["show", id, "--json"]).stdout)
    }

    func notifications() throws -> [[String: Any]] {
        (try theSession()["notifications"] as? [[String: Any]]) ?? []
    }

    /// Runs both members; both succeed whatever the channel does.
    func runBoth(environment: [String: String] = [:]) throws -> (si: CLI.Result, viajeros: CLI.Result) {
        let si = try cli.run(["run", "si.yml", "--no-tty"], environment: environment)
        #expect(si.status == 0, "\(si.output)")
        #expect(si.output.contains("waiting for viajeros"), "\(si.output)")
        let viajeros = try cli.run(["run", "viajeros.yml", "--no-tty"], environment: environment)
        #expect(viajeros.status == 0, "a channel never changes a run's outcome: \(viajeros.output)")
        for result in [si, viajeros] {
            let id = try #require(cli.runID(result))
            #expect(try cli.show(id)["status"] as? String == "success")
        }
        return (si, viajeros)
    }

    @Test func anSMTPOutageLeavesTheRunsAloneAndTheReportArrivesOnceAfterRecovery() async throws {
        try await TestTools.require("python3 with aiosmtpd (pip install aiosmtpd)") { await TestTools.succeeds("python3", ["-c", "import aiosmtpd"]) }
        let port = try ThrowawayServer.freePort()
        try writeInsurance(actions: """
              - email:
                  smtp: smtp://127.0.0.1:\(port)
                  from: "Sluice <sluice@example.com>"
                  to: ["Ops Ñandú <ops@example.com>"]
            """)
        let (_, viajeros) = try runBoth()
        #expect(viajeros.output.contains("not delivered yet"), "\(viajeros.output)")
        let pending = try notifications()
        #expect(pending.count == 1)
        #expect(pending.first?["status"] as? String == "pending")
        #expect(pending.first?["last_error"] as? String != nil)
        #expect(try theSession()["status"] as? String == "complete")

        try await TestSMTP.with(port: port, tls: false) { server in
            // The first retry is due 5 s after the failed attempt; `outbox deliver` sends what is due.
            var delivered = false
            let deadline = Date().addingTimeInterval(30)
            while !delivered && Date() < deadline {
                let pass = try cli.run(["outbox", "deliver"])
                delivered = pass.stdout.contains("delivered 1,")
                if !delivered { try await Task.sleep(for: .milliseconds(500)) }
            }
            #expect(delivered, "the e-mail is delivered once the server is back")
            #expect(try cli.run(["outbox", "deliver"]).stdout.contains("delivered 0,"), "and never again")
            let mails = try server.messages()
            #expect(mails.count == 1)
            let text = String(decoding: mails.first ?? [], as: UTF8.self)
            #expect(text.contains("Insurance daily"))
            #expect(text.contains("=?utf-8?") || text.contains("=?UTF-8?"), "the non-ASCII name is encoded")
        }
        let delivered = try notifications()
        #expect(delivered.first?["status"] as? String == "delivered")
        #expect((delivered.first?["attempts"] as? Int ?? 0) >= 2)
    }

    @Test func aRefusedLoginFailsTheNoticeNamesTheChannelAndNeverShowsThePassword() async throws {
        let secret = "not-the-password-\(UUID().uuidString.prefix(6))"
        try await TestSMTP.with(user: "reports", password: "right-one") { server in
            try writeInsurance(actions: """
                  - email:
                      smtp: smtp://reports@127.0.0.1:\(server.port)
                      password_env: SLUICE_TEST_SMTP_PASSWORD
                      ca_file: \(server.certificate ?? "")
                      from: sluice@example.com
                      to: [ops@example.com]
                """)
            let (si, viajeros) = try runBoth(environment: ["SLUICE_TEST_SMTP_PASSWORD": secret])
            let notices = try notifications()
            #expect(notices.first?["status"] as? String == "failed", "a refused login is not tried again: \(notices)")
            let error = notices.first?["last_error"] as? String ?? ""
            #expect(error.contains("127.0.0.1:\(server.port)"), "names the channel: \(error)")
            #expect(error.lowercased().contains("login") || error.lowercased().contains("auth"), "\(error)")
            #expect(try server.messages().isEmpty)
            let outbox = try cli.run(["outbox", "list"])
            for text in [si.output, viajeros.output, outbox.output, error] + (try allFiles(under: cli.dir.file(".sluice"))) {
                #expect(!text.contains(secret), "the password never appears")
            }
        }
    }

    /// The text of every file under `path` (events, logs, reports, the store).
    func allFiles(under path: String) throws -> [String] {
        guard let walker = FileManager.default.enumerator(atPath: path) else { return [] }
        return walker.compactMap { $0 as? String }.compactMap { name in
            (try? Data(contentsOf: URL(fileURLWithPath: path + "/" + name))).map { String(decoding: $0, as: UTF8.self) }
        }
    }

    @Test(arguments: [false, true])
    func aWebhookAnswering500OrHangingStaysQueuedAndTheRunIsUnaffected(hang: Bool) async throws {
        try await TestTools.require("python3") { await TestTools.succeeds("python3", ["--version"]) }
        let received = cli.dir.file("received")
        try await ThrowawayServer.with(script: ThrowawayServer.script("test-webhook.py"),
                                       arguments: ["--port", "0", "--dir", received, "--status", "500"] + (hang ? ["--hang"] : []),
                                       log: cli.dir.file("webhook.log")) { port in
            try writeInsurance(actions: """
                  - webhook:
                      url: http://127.0.0.1:\(port)/hooks/sluice
                      secret_env: SLUICE_TEST_HOOK_SECRET
                      timeout: 1s
                """)
            let secret = "hook-secret-\(UUID().uuidString.prefix(6))"
            _ = try runBoth(environment: ["SLUICE_TEST_HOOK_SECRET": secret])
            let notice = try #require(try notifications().first)
            #expect(notice["status"] as? String == "pending", "a failing receiver is tried again later: \(notice)")
            let error = notice["last_error"] as? String ?? ""
            #expect(error.contains("webhook"), "names the channel: \(error)")
            #expect(error.contains(hang ? "could not be reached" : "answered HTTP 500"), "\(error)")
            #expect(!error.contains(secret))
            // The receiver got the signed report.
            let body = try Data(contentsOf: URL(fileURLWithPath: received + "/0001.json"))
            let headers = try String(contentsOfFile: received + "/0001.headers", encoding: .utf8)
            let mac = HMAC<SHA256>.authenticationCode(for: body, using: SymmetricKey(data: Data(secret.utf8)))
            let expected = "sha256=" + mac.map { String(format: "%02x", $0) }.joined()
            #expect(headers.lowercased().contains("x-sluice-signature: \(expected)"), "\(headers)")
            let payload = json(String(decoding: body, as: UTF8.self))
            #expect(payload["kind"] as? String == "session_complete")
            #expect(payload["session_id"] as? String != nil)
        }
    }

    @Test func aBrokenTemplateIsAnErrorInValidateAWarningInRunAndAFailedNoticeUntilFixed() throws {
        try cli.dir.write("tpl/session_complete.html.mustache", "<h1>{{#members}}\n{{title}}\n{{/member}}</h1>\n")
        try writeInsurance(actions: """
              - file:
                  dir: reports
                templates: tpl
            """)
        let validate = try cli.run(["validate", "si.yml"], stateDir: false)
        #expect(validate.status == 2)
        #expect(validate.stderr.contains("session_complete.html.mustache:3:"), "names the template file and line: \(validate.stderr)")
        let (si, _) = try runBoth()
        #expect(si.stderr.contains("warning:") && si.stderr.contains("session_complete.html.mustache"), "\(si.output)")
        let notice = try #require(try notifications().first)
        #expect(notice["status"] as? String == "failed")
        #expect((notice["last_error"] as? String ?? "").contains("session_complete.html.mustache:3:"))
        let id = try #require(notice["id"] as? Int)

        try cli.dir.write("tpl/session_complete.html.mustache", "<h1>{{#members}}\n{{title}}\n{{/members}}</h1>\n")
        #expect(try cli.run(["outbox", "retry", "\(id)"]).status == 0)
        #expect(try cli.run(["outbox", "deliver"]).stdout.contains("delivered 1,"))
        let written = try FileManager.default.contentsOfDirectory(atPath: cli.dir.file("reports"))
        #expect(written.contains { $0.hasSuffix(".html") })
        #expect(try notifications().first?["status"] as? String == "delivered")
    }

    @Test func aSessionNamingAnUnknownPipelineIsRefusedWithItsLineAndKeepsWhatWasRecorded() throws {
        try writeInsurance(actions: "  - file: { dir: reports }")
        let first = try cli.run(["run", "si.yml", "--no-tty"])
        let id = try #require(cli.runID(first))
        try cli.dir.write("insurance.session.yml", """
            session: insurance-daily
            members:
              - si
              - viajeross
            on_complete:
              - file: { dir: reports }
            """)
        let refused = try cli.run(["run", "viajeros.yml", "--no-tty"])
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("insurance.session.yml:4:"), "points at the member: \(refused.stderr)")
        #expect(refused.stderr.contains("session 'insurance-daily' names unknown pipeline 'viajeross'"))
        #expect(refused.stderr.contains("did you mean 'viajeros'?"), "\(refused.stderr)")
        #expect(try cli.show(id)["status"] as? String == "success", "what was recorded stays")
        #expect(try theSession()["status"] as? String == "open")
    }

    @Test func aSessionDeclaredInlineIsNamedByTheOtherMemberAndAnUnknownMemberIsAWarning() throws {
        try cli.dir.write("si.yml", """
            name: si
            session: { name: pair, members: [si, viajeros], on_complete: [{ file: { dir: reports } }] }
            stages:
              load: { run: ["true"] }
            """)
        try cli.dir.write("viajeros.yml", """
            name: viajeros
            session: pair
            stages:
              load: { run: ["true"] }
            """)
        #expect(try cli.run(["run", "si.yml", "--no-tty"]).status == 0)
        let second = try cli.run(["run", "viajeros.yml", "--no-tty"])
        #expect(second.status == 0, "\(second.output)")
        let session = try theSession()
        #expect(session["status"] as? String == "complete", "\(session)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: cli.dir.file("reports")).contains { $0.hasSuffix(".html") })

        // The session had an action: its combined report is in its folder.
        #expect(try sessionFile("report.html").contains("viajeros"))

        try cli.dir.write("solo.yml", """
            name: solo
            session: { name: trio, members: [solo, ghost], on_complete: [{ file: { dir: reports } }] }
            stages:
              load: { run: ["true"] }
            """)
        let checked = try cli.run(["validate", "solo.yml"], stateDir: false)
        #expect(checked.status == 0, "a warning, not an error: \(checked.output)")
        #expect(checked.output.contains("warning: session 'trio' names unknown pipeline 'ghost'"), "\(checked.output)")
    }

    @Test func aSessionWithoutActionsStillGetsItsCombinedReportInItsFolder() throws {
        for name in ["si", "viajeros"] {
            try cli.dir.write("\(name).yml", """
                name: \(name)
                session: { name: quiet, members: [si, viajeros] }
                stages:
                  load: { run: [sh, -c, "echo '::count:: policies 2'"] }
                """)
        }
        #expect(try cli.run(["run", "si.yml", "--no-tty"]).status == 0)
        #expect(try cli.run(["run", "viajeros.yml", "--no-tty"]).status == 0)
        #expect(try theSession()["status"] as? String == "complete")
        let html = try sessionFile("report.html")
        #expect(html.contains("si") && html.contains("viajeros") && html.contains("policies"), "\(html.prefix(300))")
        #expect(try sessionFile("report.json").contains("\"status\""))
    }

    // MARK: the seed 000 example

    /// A copy of examples/insurance in the test's folder, its e-mail pointed at `smtpPort` and its timeout set.
    func copyInsuranceExample(smtpPort: Int, timeout: String = "5m") throws {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { root.deleteLastPathComponent() }
        let copy = cli.dir.file("insurance")
        try FileManager.default.copyItem(atPath: root.appendingPathComponent("examples/insurance").path, toPath: copy)
        for leftover in ["output", ".sluice"] { try? FileManager.default.removeItem(atPath: copy + "/" + leftover) }
        let session = copy + "/insurance.session.yml"
        let text = try String(contentsOfFile: session, encoding: .utf8)
            .replacingOccurrences(of: "127.0.0.1:10025", with: "127.0.0.1:\(smtpPort)")
            .replacingOccurrences(of: "timeout: 5m", with: "timeout: \(timeout)")
        try text.write(toFile: session, atomically: true, encoding: .utf8)
    }

    func sessionFile(_ name: String) throws -> String {
        let id = try #require(try theSession()["session_id"] as? String)
        return try String(contentsOfFile: cli.dir.file(".sluice/sessions/\(id)/\(name)"), encoding: .utf8)
    }

    @Test func theSeed000ExampleSendsOneCombinedReportWithEveryRejectedRecordAttributed() throws {
        try copyInsuranceExample(smtpPort: try ThrowawayServer.freePort())
        for file in ["si.yml", "viajeros.yml", "insurance.session.yml"] {
            #expect(try cli.run(["validate", "insurance/\(file)"], stateDir: false).status == 0)
        }
        let si = try cli.run(["run", "insurance/si.yml", "-p", "mail_folder=samples", "--no-tty"])
        #expect(si.status == 0, "\(si.output)")
        #expect(si.output.contains("waiting for viajeros"))
        let viajeros = try cli.run(["run", "insurance/viajeros.yml", "-p", "mail_folder=samples", "--no-tty"])
        #expect(viajeros.status == 0, "\(viajeros.output)")
        #expect(try theSession()["status"] as? String == "complete")

        let text = try sessionFile("report.txt")
        #expect(text.hasPrefix("[Humano Insurance] ⚠️ Daily report – 27 policies, 4 failed"), "\(text.prefix(200))")
        for line in ["Salud Internacional (SI)  validate  asegurados_si.csv row 8 (SI-1007)  premium -1840.00 is not positive",
                     "Viajeros                  validate  asegurados.csv row 14 (VJ-2012)    policy_id VJ-2012 appears twice"] {
            #expect(text.contains(line), "failed records carry their pipeline: \(line)")
        }
        let html = try sessionFile("report.html")
        #expect(html.contains("#f2c200") && html.contains("#1e6bd6"), "each member's badge colour")
        let written = try FileManager.default.contentsOfDirectory(atPath: cli.dir.file("insurance/output/reports"))
        #expect(written.filter { $0.hasSuffix(".html") }.count == 1, "the file channel wrote the one report: \(written)")
        // The e-mail waits for its server; the runs are done and successful.
        let email = try notifications().first { ($0["channel"] as? String ?? "").hasPrefix("e-mail") }
        #expect(email?["status"] as? String == "pending")
    }

    @Test func theSeed000ExampleTimesOutWithAPartialReportAndReportsTheLateMemberOnItsOwn() async throws {
        try copyInsuranceExample(smtpPort: try ThrowawayServer.freePort(), timeout: "2s")
        #expect(try cli.run(["run", "insurance/si.yml", "-p", "mail_folder=samples", "--no-tty"]).status == 0)
        try await Task.sleep(for: .milliseconds(2500))
        let pass = try cli.run(["outbox", "deliver"])
        #expect(pass.stdout.contains("sessions timed out 1"), "\(pass.output)")
        #expect(try cli.run(["outbox", "deliver"]).stdout.contains("sessions timed out 0"), "exactly once")
        #expect(try theSession()["status"] as? String == "timed_out")
        let text = try sessionFile("report.txt")
        #expect(text.contains("missing: Viajeros"), "\(text.prefix(300))")
        let timeouts = try notifications().filter { $0["kind"] as? String == "session_timeout" }
        #expect(timeouts.count == 2, "one per on_timeout action: \(timeouts)")

        let late = try cli.run(["run", "insurance/viajeros.yml", "-p", "mail_folder=samples", "--no-tty"])
        #expect(late.status == 0, "\(late.output)")
        let session = try theSession()
        let member = (session["members"] as? [[String: Any]])?.first { $0["pipeline"] as? String == "viajeros" }
        #expect(member?["late"] as? Bool == true)
        #expect(member?["status"] as? String == "success")
        let lateNotices = try notifications().filter { $0["kind"] as? String == "session_late" }
        #expect(lateNotices.count == 2, "the late member is reported on its own (on_late defaults to on_timeout's actions)")
        let reports = try FileManager.default.contentsOfDirectory(atPath: cli.dir.file("insurance/output/reports")).filter { $0.hasSuffix(".html") }
        #expect(reports.contains { $0.hasPrefix("session_timeout-") } && reports.contains { $0.hasPrefix("session_late-") }, "\(reports)")
    }

    // MARK: seed 001

    @Test func aRolledBackStageSendsTheManualReviewNoticeWithErrorAndHealing() throws {
        try cli.dir.write("collector.yml", """
            name: collector
            params: { mode: good }
            notify:
              on_manual_review:
                - file: { dir: reviews }
            stages:
              collect:
                run: [sh, -c, 'mkdir -p data; if [ "$1" = good ]; then echo "{\\"v\\": 1}" > data/products.json; else echo "{broken" > data/products.json; echo "upstream API returned 502" >&2; exit 3; fi', sh, "{{params.mode}}"]
                outputs: [{ path: data/products.json, versioned: true }]
                on_failure: rollback
              publish:
                needs: [collect]
                proceed_if: [success, rolled_back]
                run: [cat, data/products.json]
            """)
        let good = try cli.run(["run", "collector.yml", "--no-tty"])
        #expect(good.status == 0, "\(good.output)")
        #expect(!FileManager.default.fileExists(atPath: cli.dir.file("reviews")), "no review after a clean run")
        let bad = try cli.run(["run", "collector.yml", "-p", "mode=bad", "--no-tty"])
        #expect(bad.output.contains("notification: manual_review by file in reviews delivered"), "\(bad.output)")
        let id = try #require(cli.runID(bad))
        #expect(try cli.show(id)["status"] as? String == "partial_success")
        let text = try String(contentsOfFile: cli.dir.file("reviews/manual_review-\(id)-1.txt"), encoding: .utf8)
        #expect(text.hasPrefix("[collector] 🔧 Manual review needed – 'collect' failed, rolled back to products.json v1"), "\(text.prefix(120))")
        for part in ["Error details", "| upstream API returned 502", "Healing actions", "restored to version 1", "Ran afterwards   'publish'"] {
            #expect(text.contains(part), "the notice shows \(part)")
        }
        #expect(FileManager.default.fileExists(atPath: cli.dir.file(".sluice/runs/\(id)/report.html")), "the run's HTML report")
        #expect(try String(contentsOfFile: cli.dir.file("data/products.json"), encoding: .utf8) == "{\"v\": 1}\n", "the good version was restored")
    }
}
