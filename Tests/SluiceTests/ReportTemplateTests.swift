import Foundation
import SluiceCore
@testable import SluiceEngine
import SluiceNotify
import Testing

/// Realistic reports, built as values: the seed 000 insurance session (SI and Viajeros) and the seed 001
/// collector → loader run with a rollback.
enum ReportFixtures {
    static let t0 = Date(timeIntervalSince1970: 1_748_847_600) // 2025-06-02 07:00:00 UTC

    static func at(_ seconds: Double) -> Date { t0.addingTimeInterval(seconds) }

    static func attempt(_ n: Int, _ outcome: String, start: Double, ms: Int64, exit: Int32? = 0, message: String? = nil,
                        stderr: [String]? = nil, rss: Int64? = 80_000_000) -> RunReport.Attempt {
        RunReport.Attempt(number: n, outcome: outcome, startedAt: at(start), finishedAt: at(start + Double(ms) / 1000),
                          durationMs: ms, exitCode: exit, signal: nil, cpuMs: ms / 2, peakRssBytes: rss,
                          stdoutBytes: 1200, stderrBytes: stderr == nil ? 0 : 300, message: message, stderrTail: stderr,
                          host: "worker-1", pid: 4242)
    }

    static func stage(_ name: String, _ status: String, start: Double, ms: Int64, counters: [String: Int]? = nil,
                      rejected: [String]? = nil, reason: String? = nil, tasks: [RunReport.Task] = []) -> RunReport.Stage {
        RunReport.Stage(name: name, status: status, reason: reason, startedAt: at(start), finishedAt: at(start + Double(ms) / 1000),
                        durationMs: ms, counters: counters, rejected: rejected?.count, rejectedRecords: rejected,
                        metrics: tasks.isEmpty ? nil : RunReport.Metrics(tasks: tasks.count, succeeded: tasks.filter { $0.status == "success" }.count,
                                                                        failed: tasks.filter { $0.status == "failed" }.count,
                                                                        successRate: 1, tasksPerSecond: nil, meanTaskMs: nil, p95TaskMs: nil,
                                                                        peakRssBytes: 90_000_000),
                        progress: nil, tasks: tasks, waiting: nil)
    }

    static func run(_ pipeline: String, id: String, outcome: String, start: Double = 0, ms: Int64, params: [String: String] = [:],
                    trigger: String = "mail", stages: [RunReport.Stage], artifacts: [RunReport.Action]? = nil,
                    notices: [RunReport.Action]? = nil, bytes: Int64 = 2_400_000) -> RunReport {
        RunReport(pipeline: pipeline, runId: id, pipelineFile: "pipelines/\(pipeline).yml", params: params, trigger: trigger,
                  status: outcome, outcome: outcome, exitCode: outcome == "success" ? 0 : outcome == "partial_success" ? 1 : 2,
                  createdAt: at(start), startedAt: at(start), finishedAt: at(start + Double(ms) / 1000), durationMs: ms,
                  stages: stages,
                  totals: RunReport.Totals(stages: [:], attempts: stages.reduce(0) { $0 + max(1, $1.tasks.reduce(0) { $0 + $1.attempts.count }) },
                                           bytesWritten: bytes, peakRssBytes: 134_000_000, cpuMs: 61_000),
                  enginePeakRssBytes: 52_000_000, artifacts: artifacts, notices: notices)
    }

    /// SI: 15 policies processed, clean.
    static var si: RunReport {
        run("si", id: "20250602-070001-si", outcome: "success", ms: 125_000, params: ["mail_date": "2025-06-02"], stages: [
            stage("extract", "success", start: 0, ms: 62_000, counters: ["processed": 15]),
            stage("load", "success", start: 62, ms: 63_000, counters: ["loaded": 15]),
        ])
    }

    /// Viajeros: 12 processed, 3 rejected records (one with markup in it), a retried attempt.
    static func viajeros(outcome: String = "partial_success", rejected: Bool = true) -> RunReport {
        let failedTask = RunReport.Task(id: 7, key: "sheet-2", status: "success", attempts: [
            attempt(1, "failed", start: 3, ms: 4_000, exit: 1, message: "exit code 1",
                    stderr: ["Traceback (most recent call last):", "  File \"load.py\", line 12", "ValueError: column 'fecha' is empty", ""]),
            attempt(2, "success", start: 9, ms: 3_000),
        ])
        let records = rejected ? ["POL-0042: missing birth date", "POL-<script>alert(1)</script>: id is not a policy number",
                                  "POL-0077: duplicate policy"] : nil
        return run("viajeros", id: "20250602-070003-vj", outcome: outcome, start: 3, ms: 98_000,
                   params: ["mail_subject": "Asegurados Viajeros <script>x</script>"], stages: [
                       stage("extract", rejected ? "partial_success" : "success", start: 3, ms: 50_000, counters: ["processed": 12],
                             rejected: records, tasks: [failedTask]),
                       stage("load", "success", start: 53, ms: 48_000, counters: ["loaded": 12]),
                   ])
    }

    static func session(status: String, members: [SessionReport.Member]) -> SessionReport {
        SessionReport(sessionId: "S-20250602-1", name: "daily-report", title: "Humano Insurance",
                      description: "SI and Viajeros policies from the morning e-mails", key: "2025-06-02", status: status,
                      openedAt: t0, deadline: at(300), closedAt: status == "complete" ? at(101) : at(300), members: members)
    }

    static let siColor = "#f2c200", viajerosColor = "#1f6feb"

    static func member(_ pipeline: String, _ title: String, _ color: String?, _ report: RunReport?, status: String? = nil,
                       late: Bool = false) -> SessionReport.Member {
        SessionReport.Member(pipeline: pipeline, title: title, color: color, runId: report?.runId,
                             status: status ?? report?.outcome ?? "missing", late: late, report: report)
    }

    static var completeSession: SessionReport {
        session(status: "complete", members: [
            member("si", "Salud Internacional (SI)", siColor, si),
            member("viajeros", "Viajeros", viajerosColor, viajeros()),
        ])
    }

    static var timedOutSession: SessionReport {
        session(status: "timed_out", members: [
            member("si", "Salud Internacional (SI)", siColor, si),
            member("viajeros", "Viajeros", viajerosColor, nil),
            member("extra", "Asistencia", nil, nil, status: "running"),
        ])
    }

    /// Seed 001: the collector failed, was rolled back, and the loader ran on the restored data.
    static var rolledBack: RunReport {
        let collectTask = RunReport.Task(id: 1, key: "collect", status: "failed", attempts: [
            attempt(1, "failed", start: 0, ms: 20_000, exit: 2, message: "exit code 2",
                    stderr: ["reading monthlyReports_2025-05.xlsb", "KeyError: 'resin_code'"]),
            attempt(2, "failed", start: 25, ms: 21_000, exit: 2, message: "exit code 2",
                    stderr: ["reading monthlyReports_2025-05.xlsb", "KeyError: 'resin_code'"]),
        ])
        let healing = [
            RunReport.Action(event: "artifact.restored", stage: "collect", time: at(47),
                             message: "artifact 'productRecords' restored to version 3 at newest/productRecords.parquet (sha256 9f2c4e1a7b3d)",
                             attrs: ["artifact": "productRecords", "version": "3"]),
            RunReport.Action(event: "healing.rollback", stage: "collect", time: at(47),
                             message: "healing: stage 'collect' failed; rolled back to productRecords v3",
                             attrs: ["action": "rollback", "restored": "productRecords v3", "not_restored": ""]),
        ]
        let notice = RunReport.Action(event: "notice.manual_review", stage: "collect", time: at(47),
                                      message: "manual review needed: stage 'collect' failed and was rolled back (productRecords v3); downstream stages run on the restored data",
                                      attrs: ["kind": "manual_review"])
        return run("data-pipeline", id: "20250602-020000-dp", outcome: "partial_success", ms: 125_000, trigger: "schedule",
                   stages: [
                       stage("collect", "rolled_back", start: 0, ms: 47_000, reason: "rolled back to productRecords v3", tasks: [collectTask]),
                       stage("load", "success", start: 47, ms: 78_000, counters: ["databases": 6, "changed": 2]),
                   ], artifacts: healing, notices: [notice], bytes: 1_530_000)
    }
}

@Suite("Report templates")
struct ReportTemplateTests {
    let templates = ReportTemplates.builtIn

    @Test("run_report: subject with icon and headline, stages with status colours, escaped values, aligned text")
    func runReport() throws {
        let m = try templates.render(run: ReportFixtures.viajeros(), kind: .runReport)
        #expect(m.subject == "[viajeros] ⚠️ Partial success – 12 processed, 3 failed")
        #expect(m.html.contains("#cc5500")) // partial-success badge
        #expect(m.html.contains("#1a7f37")) // success badge of 'load'
        #expect(m.html.contains("extract") && m.html.contains("load"))
        #expect(m.html.contains("ValueError: column &#39;fecha&#39; is empty"))
        #expect(m.html.contains("POL-&lt;script&gt;alert(1)&lt;/script&gt;"))
        #expect(!m.html.contains("<script"))
        #expect(m.html.contains("Asegurados Viajeros &lt;script&gt;x&lt;/script&gt;"))
        #expect(m.html.contains("1 min 38 s"))
        #expect(m.html.contains("134 MB") && m.html.contains("2.4 MB"))
        // Text: not HTML-escaped, tables aligned.
        #expect(m.text.contains("POL-<script>alert(1)</script>"))
        #expect(m.text.contains("""
            Stages (2 stages: 1 partial success, 1 success)
              STAGE    STATUS           DURATION  COUNTERS
              -------  ---------------  --------  -------------------------------
              extract  partial success  50 s      processed 12 · failed records 3
              load     success          48 s      loaded 12
            """))
        #expect(m.text.contains("""
            Failed records (3)
              STAGE    RECORD                         REASON
              -------  -----------------------------  -------------------------
              extract  POL-0042                       missing birth date
              extract  POL-<script>alert(1)</script>  id is not a policy number
              extract  POL-0077                       duplicate policy
            """))
        #expect(m.text.contains("  - extract [sheet-2], attempt 1: failed (exit 1)\n    exit code 1\n    | Traceback"))
    }

    @Test("run_report outcome icons")
    func outcomeIcons() throws {
        for (outcome, icon) in [("success", "✅"), ("partial_success", "⚠️"), ("failed", "❌"), ("cancelled", "🚫")] {
            var r = ReportFixtures.si
            r.outcome = outcome
            r.status = outcome
            let m = try templates.render(run: r, kind: .runReport)
            #expect(m.subject.hasPrefix("[si] \(icon) "), "\(outcome): \(m.subject)")
        }
    }

    @Test("manual_review (seed 001): what failed, what was restored, error details, healing actions, metadata")
    func manualReview() throws {
        let m = try templates.render(run: ReportFixtures.rolledBack, kind: .manualReview)
        #expect(m.subject == "[data-pipeline] 🔧 Manual review needed – 'collect' failed, rolled back to productRecords v3")
        #expect(m.text.contains("Stage 'collect' failed and was rolled back to productRecords v3. Then 'load' ran on the restored data."))
        #expect(m.text.contains("  Failed stage     collect (rolled back): rolled back to productRecords v3"))
        #expect(m.text.contains("Error details"))
        #expect(m.text.contains("    | KeyError: 'resin_code'"))
        #expect(m.text.contains("Healing actions\n  [collect] restored: artifact 'productRecords' restored to version 3"))
        #expect(m.text.contains("  [collect] rollback: healing: stage 'collect' failed"))
        #expect(m.text.contains("  Duration         2 min 5 s"))
        #expect(m.text.contains("  Peak memory      134 MB (stages' processes), 52.0 MB (Sluice)"))
        #expect(m.text.contains("  Written to disk  1.5 MB"))
        #expect(m.html.contains("Healing actions") && m.html.contains("Error details") && m.html.contains("Metadata"))
        #expect(m.html.contains("KeyError: &#39;resin_code&#39;"))
    }

    @Test("session_complete (seed 000): subject, member sections and colours, attribution, combined totals")
    func sessionComplete() throws {
        let clean = ReportFixtures.session(status: "complete", members: [
            ReportFixtures.member("si", "Salud Internacional (SI)", ReportFixtures.siColor, ReportFixtures.si),
            ReportFixtures.member("viajeros", "Viajeros", ReportFixtures.viajerosColor, ReportFixtures.viajeros(outcome: "success", rejected: false)),
        ])
        #expect(try templates.render(session: clean).subject == "[Humano Insurance] ✅ Daily report – 27 processed")

        let m = try templates.render(session: ReportFixtures.completeSession)
        #expect(m.subject == "[Humano Insurance] ⚠️ Daily report – 27 processed, 3 failed")
        #expect(m.html.contains("Combined report"))
        #expect(m.html.contains("2 pipelines finished: 1 succeeded, 1 partially succeeded"))
        #expect(m.html.contains("Combined statistics"))
        #expect(m.html.contains(">27</div>")) // processed, summed
        #expect(m.html.contains("border-left:6px solid #f2c200") && m.html.contains("border-left:6px solid #1f6feb"))
        #expect(m.html.contains("Salud Internacional (SI)") && m.html.contains("Viajeros"))
        #expect(m.html.contains(">Pipeline</th>"))
        // Each failed record is attributed to its member, in the member's colour.
        let row = try #require(m.html.components(separatedBy: "<tr>").first { $0.contains("POL-0077") })
        #expect(row.contains("background:#1f6feb") && row.contains(">Viajeros</span>"))
        #expect(!m.html.contains("<script"))
        #expect(m.text.contains("""
            Pipelines
              PIPELINE                  STATUS           DURATION    COUNTERS
              ------------------------  ---------------  ----------  ------------------------
              Salud Internacional (SI)  success          2 min 5 s   loaded 15 · processed 15
              Viajeros                  partial success  1 min 38 s  loaded 12 · processed 12
            """))
        #expect(m.text.contains("""
            Failed records (3)
              PIPELINE  STAGE    RECORD                         REASON
              --------  -------  -----------------------------  -------------------------
              Viajeros  extract  POL-0042                       missing birth date
            """))
        #expect(m.text.contains("== Salud Internacional (SI): ✅ success =="))
        #expect(m.text.contains("== Viajeros: ⚠️ partial success =="))
        #expect(m.text.contains("  Pipelines        2 of 2 finished (1 succeeded, 1 partial, 0 failed)"))
    }

    @Test("session_complete icons: ❌ when every member failed")
    func sessionAllFailed() throws {
        var a = ReportFixtures.si, b = ReportFixtures.viajeros()
        a.outcome = "failed"; b.outcome = "failed"
        let s = ReportFixtures.session(status: "complete", members: [
            ReportFixtures.member("si", "SI", nil, a), ReportFixtures.member("viajeros", "Viajeros", nil, b),
        ])
        let m = try templates.render(session: s)
        #expect(m.subject.hasPrefix("[Humano Insurance] ❌ "))
        // Members without a colour get the default palette's.
        #expect(m.html.contains("border-left:6px solid #1f6feb") && m.html.contains("border-left:6px solid #f2c200"))
    }

    @Test("session_timeout: ⏰, what finished, and prominently what is missing")
    func sessionTimeout() throws {
        let m = try templates.render(session: ReportFixtures.timedOutSession)
        #expect(m.subject == "[Humano Insurance] ⏰ Daily report – timed out, missing: Viajeros, Asistencia – 15 processed")
        #expect(m.html.contains("Partial report · timed out"))
        #expect(m.html.contains("Missing after the 5 min timeout: 2 of 3"))
        #expect(m.html.contains("never started") && m.html.contains("still running"))
        #expect(m.html.contains("border-left:6px solid #f2c200")) // SI finished: its section
        #expect(!m.html.contains("border-left:6px solid #1f6feb")) // Viajeros did not: no section
        #expect(m.text.contains("""
            MISSING after the 5 min timeout (2 of 3):
              - Viajeros: never started
              - Asistencia: still running
            """))
        #expect(m.text.contains("== Salud Internacional (SI): ✅ success =="))
    }

    @Test("session_late: one run's report, noting its session timed out")
    func sessionLate() throws {
        let m = try templates.render(run: ReportFixtures.viajeros(), kind: .sessionLate, session: ReportFixtures.timedOutSession)
        #expect(m.subject == "[Humano Insurance] 🕓 Late: Viajeros – ⚠️ Partial success – 12 processed, 3 failed")
        #expect(m.text.contains("Viajeros finished after session S-20250602-1 (Humano Insurance) timed out (timeout 5 min"))
        #expect(m.html.contains("finished after session S-20250602-1 (Humano Insurance) timed out"))
        let alone = try templates.render(run: ReportFixtures.viajeros(), kind: .sessionLate)
        #expect(alone.text.contains("viajeros finished after its session timed out"))
    }

    @Test("session kinds are not rendered from a run")
    func wrongKind() {
        #expect(throws: TemplateError.self) { try templates.render(run: ReportFixtures.si, kind: .sessionComplete) }
    }

    // MARK: Overrides

    func folder(_ files: [String: String]) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-templates-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (name, text) in files { try text.write(toFile: "\(dir)/\(name)", atomically: true, encoding: .utf8) }
        return dir
    }

    @Test("a user's folder replaces one template and uses a partial; the rest stays built-in")
    func overrideWithPartial() throws {
        let dir = try folder([
            "session_complete.html.mustache": "<h1>{{session.title}}</h1>\n<ul>\n{{#session.members}}\n{{> member_row}}\n{{/session.members}}\n</ul>\n",
            "member_row.mustache": "<li style=\"color:{{color}}\">{{title}}: {{status_label}}</li>\n",
            "session_complete.subject.mustache": "{{session.title}} & co: {{session.summary}}",
        ])
        let t = try ReportTemplates.load(overrides: dir)
        #expect(t.overridden == ["session_complete.html.mustache", "session_complete.subject.mustache"])
        #expect(t.partials == ["member_row"])
        let m = try t.render(session: ReportFixtures.completeSession)
        #expect(m.html == """
            <h1>Humano Insurance</h1>
            <ul>
            <li style="color:#f2c200">Salud Internacional (SI): success</li>
            <li style="color:#1f6feb">Viajeros: partial success</li>
            </ul>

            """)
        #expect(m.subject == "Humano Insurance & co: Daily report – 27 processed, 3 failed") // text: not escaped
        #expect(m.text.contains("== Viajeros: ⚠️ partial success ==")) // built-in text
        // Other kinds keep their built-in templates.
        #expect(try t.render(run: ReportFixtures.si, kind: .runReport).html.contains("Run report"))
        // A partial in a text template is not HTML-escaped.
        let dir2 = try folder(["run_report.txt.mustache": "{{#run.failed_records}}{{> rec}}{{/run.failed_records}}",
                               "rec.mustache": "{{record}}\n"])
        #expect(try ReportTemplates.load(overrides: dir2).render(run: ReportFixtures.viajeros(), kind: .runReport).text
                    .contains("POL-<script>alert(1)</script>\n"))
    }

    @Test("a subject given in the pipeline file overrides every subject")
    func subjectOverride() throws {
        let t = try ReportTemplates.load(overrides: nil, subject: "Sluice: {{session.title}}{{run.pipeline}}")
        #expect(try t.render(session: ReportFixtures.completeSession).subject == "Sluice: Humano Insurance")
        #expect(try t.render(run: ReportFixtures.si, kind: .runReport).subject == "Sluice: si")
        #expect(try templates.render(run: ReportFixtures.si, kind: .runReport, subjectOverride: "{{run.run_id}}\n done").subject
                    == "20250602-070001-si done")
        let error = #expect(throws: TemplateError.self) { try ReportTemplates.load(overrides: nil, subject: "Run {{run.pipeline") }
        #expect(error?.message.hasPrefix("subject:1:") == true)
    }

    @Test("a syntax error names the file, line and column, and what to do")
    func syntaxError() throws {
        let dir = try folder(["session_complete.html.mustache":
                                "<h1>{{session.title}}</h1>\n<ul>\n{{#session.members}}\n  <li>{{title}}</li>\n    {{/session.member}}\n</ul>\n"])
        let error = try #require(#expect(throws: TemplateError.self) { try ReportTemplates.load(overrides: dir) })
        #expect(error.code == .syntax)
        #expect(error.message == "\(dir)/session_complete.html.mustache:5:8: error: the closing tag {{/session.member}} does not match the section it closes")
        #expect(error.hint == "close each {{#name}} or {{^name}} with {{/name}} of the same name, innermost first")
        #expect(error.location == SourceLocation(file: "\(dir)/session_complete.html.mustache", line: 5, column: 8))
        #expect("\(error)".contains("\n    hint: close each"))

        // Text templates count lines the same way (the TEXT pragma put before them is not counted).
        let dir2 = try folder(["run_report.txt.mustache": "line one\n{{#run}}\n{{run_id}\n"])
        let e2 = try #require(#expect(throws: TemplateError.self) { try ReportTemplates.load(overrides: dir2) })
        #expect(e2.message.hasPrefix("\(dir2)/run_report.txt.mustache:3:"), "\(e2.message)")
        #expect(e2.message.contains("a tag is not closed"))

        let first = try #require(#expect(throws: TemplateError.self) { try ReportTemplates.load(overrides: nil, subject: "{{#a}}{{/b}}") })
        #expect(first.message == "subject:1:10: error: the closing tag {{/b}} does not match the section it closes")

        let dir3 = try folder(["manual_review.txt.mustache": "{{#run}}\nnever closed\n"])
        let e3 = try #require(#expect(throws: TemplateError.self) { try ReportTemplates.load(overrides: dir3) })
        #expect(e3.message.contains("manual_review.txt.mustache:") && e3.message.contains("a section is still open"))
    }

    @Test("a misspelt file name gets a did-you-mean")
    func misspeltFile() throws {
        let cases: [(String, String)] = [
            ("sesion_complete.html.mustache", "did you mean 'session_complete.html.mustache'?"),
            ("session_complete.text.mustache", "did you mean 'session_complete.txt.mustache'?"),
            ("manual_reveiw.subject.mustache", "did you mean 'manual_review.subject.mustache'?"),
            ("run_report.html", "did you mean 'run_report.html.mustache'?"),
            ("session_timeout.mustache", "name it session_timeout.html.mustache, session_timeout.txt.mustache or session_timeout.subject.mustache"),
        ]
        for (name, hint) in cases {
            let dir = try folder([name: "hello"])
            let error = try #require(#expect(throws: TemplateError.self) { try ReportTemplates.load(overrides: dir) }, "\(name)")
            #expect(error.code == .unknownFile)
            #expect(error.message.hasPrefix("\(dir)/\(name): error: '\(name)'"))
            #expect(error.hint == hint, "\(name)")
        }
        // Partials and unrelated files are fine.
        let ok = try folder(["footer.mustache": "x", "row.html.mustache": "y", "README.md": "notes"])
        #expect(try ReportTemplates.load(overrides: ok).partials == ["footer", "row.html"])
    }

    @Test("an unknown partial or a missing folder is reported")
    func unknownPartial() throws {
        let dir = try folder(["footer.mustache": "bye", "run_report.html.mustache": "<p>hi</p>\n  <p>{{> foter}}</p>\n"])
        let error = try #require(#expect(throws: TemplateError.self) { try ReportTemplates.load(overrides: dir) })
        #expect(error.code == .unknownPartial)
        #expect(error.message == "\(dir)/run_report.html.mustache:2:6: error: the partial 'foter' is not defined")
        #expect(error.hint == "did you mean 'footer'?")
        let missing = try #require(#expect(throws: TemplateError.self) { try ReportTemplates.load(overrides: "/nonexistent/templates") })
        #expect(missing.message.contains("the templates folder '/nonexistent/templates' does not exist"))
    }

    @Test("writeHTMLReport writes report.html atomically")
    func writesHTML() throws {
        let dir = try folder([:])
        let path = "\(dir)/report.html"
        try writeHTMLReport(ReportFixtures.rolledBack, to: path)
        try writeHTMLReport(ReportFixtures.rolledBack, to: path)
        let html = try String(contentsOfFile: path, encoding: .utf8)
        #expect(html.hasPrefix("<!DOCTYPE html>") && html.contains("data-pipeline") && html.hasSuffix("</html>\n"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["report.html"])
        #expect(throws: (any Error).self) { try writeHTMLReport(ReportFixtures.si, to: "/nonexistent/dir/report.html") }
    }

    /// `HTMLReportWriter.prepare` warms the renderer up with `RunReport.sample` (errors there are not
    /// reported): the sample must render, through the sections a real report uses.
    @Test func theWarmUpSampleRendersEverySectionOfARunReport() throws {
        let dir = try folder([:])
        try writeHTMLReport(.sample, to: "\(dir)/report.html")
        let html = try String(contentsOfFile: "\(dir)/report.html", encoding: .utf8)
        for expected in ["warm-up-stage", "warm_up_count", "warm-up record", "warm-up stderr"] { #expect(html.contains(expected), "\(expected)") }
    }
}

/// Renders reports to files and has headless Chromium screenshot them (scripts/report-screenshot-check.py):
/// the sections really render, in their colours. Needs Debian's chromium (.ci/run installs it).
@Suite("Report rendering in Chromium")
struct ReportScreenshotTests {
    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let inCI = ProcessInfo.processInfo.environment["CI"] != nil
    /// Kept after the run, to be looked at.
    static let outputDirectory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-report-screenshots").path

    static var root: String {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }

    func check(_ html: String, name: String, colors: [String], texts: [String], width: Int = 900) throws {
        try FileManager.default.createDirectory(atPath: Self.outputDirectory, withIntermediateDirectories: true)
        let file = "\(Self.outputDirectory)/\(name).html", png = "\(Self.outputDirectory)/\(name).png"
        try html.write(toFile: file, atomically: true, encoding: .utf8)
        var arguments = ["\(Self.root)/scripts/report-screenshot-check.py", file, png, "--window-size", "\(width),2600"]
        for c in colors { arguments += ["--expect-color", c] }
        for t in texts { arguments += ["--expect-text", t] }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3"] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        #expect(process.terminationStatus == 0, "report-screenshot-check.py \(name):\n\(text)")
    }

    @Test("session_complete, session_timeout and manual_review render with their sections and colours",
          .enabled(if: chromium != nil || inCI, "chromium is not installed (apt-get install -y chromium); CI installs it and runs this test"))
    func screenshots() throws {
        let t = ReportTemplates.builtIn
        let complete = try t.render(session: ReportFixtures.completeSession)
        try check(complete.html, name: "session_complete",
                  colors: [ReportFixtures.siColor, ReportFixtures.viajerosColor, "#1a7f37", "#cc5500"],
                  texts: ["Humano Insurance", "Combined statistics", "Salud Internacional (SI)", "Viajeros", "Failed records (3)",
                          "POL-<script>alert(1)</script>", "missing birth date", "Totals"])
        try check(complete.html, name: "session_complete-phone",
                  colors: [ReportFixtures.siColor, ReportFixtures.viajerosColor], texts: ["Humano Insurance"], width: 390)
        let timeout = try t.render(session: ReportFixtures.timedOutSession)
        try check(timeout.html, name: "session_timeout",
                  colors: [ReportFixtures.siColor, ReportFixtures.viajerosColor, "#cc5500", "#1a7f37"],
                  texts: ["Missing after the 5 min timeout: 2 of 3", "never started", "still running", "Salud Internacional (SI)"])
        let review = try t.render(run: ReportFixtures.rolledBack, kind: .manualReview)
        try check(review.html, name: "manual_review",
                  colors: ["#cc5500", "#1a7f37", "#cf222e"],
                  texts: ["Manual review needed", "Stage 'collect' failed and was rolled back to productRecords v3.",
                          "Error details", "KeyError: 'resin_code'", "Healing actions", "Metadata", "1.5 MB"])
        let run = try t.render(run: ReportFixtures.viajeros(), kind: .runReport)
        try check(run.html, name: "run_report", colors: ["#cc5500", "#1a7f37"], texts: ["viajeros", "Failed records (3)"])
    }
}

