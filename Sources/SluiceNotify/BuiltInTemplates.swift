import Foundation
import SluiceCore

/// The built-in templates. The HTML is made for mail clients: tables for layout, inline styles only (no
/// `<style>`, no external resources), a 680 px column that shrinks to a phone's width. Every value is
/// written with `{{ }}`, which escapes it. Shared pieces are joined here in Swift, so each kind's
/// template is one whole text a user can copy and change.
enum BuiltInTemplates {
    static func subject(_ kind: ReportKind) -> String {
        switch kind {
        case .runReport: "[{{run.pipeline}}] {{run.icon}} {{run.summary}}"
        case .manualReview: "[{{run.pipeline}}] 🔧 Manual review needed – {{review.summary_short}}"
        case .sessionComplete: "[{{session.title}}] {{session.icon}} {{session.summary}}"
        case .sessionTimeout: "[{{session.title}}] ⏰ {{session.summary}}"
        case .sessionLate: "[{{title}}] 🕓 Late: {{late.member_title}} – {{run.icon}} {{run.summary}}"
        }
    }

    static func html(_ kind: ReportKind) -> String {
        switch kind {
        case .runReport: runReportHTML
        case .manualReview: manualReviewHTML
        case .sessionComplete, .sessionTimeout: sessionHTML
        case .sessionLate: sessionLateHTML
        }
    }

    static func text(_ kind: ReportKind) -> String {
        switch kind {
        case .runReport: runReportText
        case .manualReview: manualReviewText
        case .sessionComplete, .sessionTimeout: sessionText
        case .sessionLate: sessionLateText
        }
    }

    // MARK: HTML pieces

    static let font = "font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;"
    static let mono = "font-family:SFMono-Regular,Consolas,'Liberation Mono',Menlo,monospace;"
    static let muted = "color:#656d76;"
    static let th = "padding:7px 8px;border-bottom:1px solid #d0d7de;font-size:12px;font-weight:600;color:#57606a;text-align:left;"
    static let td = "padding:7px 8px;border-bottom:1px solid #eaeef2;vertical-align:top;"

    static func badge(_ background: String, _ color: String, _ text: String) -> String {
        "<span style=\"display:inline-block;padding:2px 10px;border-radius:12px;background:\(background);color:\(color);font-size:12px;font-weight:600;line-height:18px;white-space:nowrap;\">\(text)</span>"
    }

    static func open(strip: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="color-scheme" content="light only">
        <title>{{title}}</title>
        </head>
        <body style="margin:0;padding:0;background:#eef1f4;">
        <table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="background:#eef1f4;">
        <tr><td align="center" style="padding:24px 8px;">
        <table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="max-width:680px;background:#ffffff;border:1px solid #d8dee4;border-radius:10px;\(font)color:#1f2328;font-size:14px;line-height:1.5;">
        <tr><td style="height:6px;background:\(strip);border-radius:10px 10px 0 0;font-size:0;line-height:0;">&nbsp;</td></tr>

        """
    }

    static func close(footer: String) -> String {
        """
        <tr><td style="padding:14px 24px 18px 24px;border-top:1px solid #eaeef2;font-size:12px;color:#8c959f;">\(footer)</td></tr>
        </table>
        </td></tr>
        </table>
        </body>
        </html>

        """
    }

    static func header(kicker: String, heading: String, line: String) -> String {
        """
        <tr><td style="padding:18px 24px 6px 24px;">
        <div style="font-size:12px;\(muted)text-transform:uppercase;letter-spacing:0.06em;font-weight:600;">\(kicker)</div>
        <h1 style="margin:4px 0 10px 0;font-size:22px;line-height:1.3;color:#1f2328;">\(heading)</h1>
        <div>\(line)</div>
        </td></tr>

        """
    }

    static func section(_ title: String, _ body: String) -> String {
        """
        <tr><td style="padding:10px 24px 6px 24px;">
        <h2 style="margin:10px 0 10px 0;padding-bottom:6px;border-bottom:1px solid #eaeef2;font-size:16px;color:#1f2328;">\(title)</h2>
        \(body)
        </td></tr>

        """
    }

    static func facts(_ rows: [(String, String)]) -> String {
        "<table role=\"presentation\" width=\"100%\" cellpadding=\"0\" cellspacing=\"0\" border=\"0\" style=\"font-size:13px;\">\n"
            + rows.map { label, value in
                label.hasPrefix("{{") // rows inside a section: the label is its opening tag, the value ends with its closing one
                    ? label + value
                    : "<tr><td style=\"padding:3px 12px 3px 0;\(muted)width:130px;vertical-align:top;white-space:nowrap;\">\(label)</td><td style=\"padding:3px 0;vertical-align:top;\">\(value)</td></tr>"
            }.joined(separator: "\n") + "\n</table>"
    }

    /// Counter tiles over `counters` (pairs) in the current context.
    static let tiles = """
        <div>{{#counters}}<div style="display:inline-block;min-width:96px;margin:0 8px 8px 0;padding:8px 14px;background:#f6f8fa;border:1px solid #e1e4e8;border-radius:8px;vertical-align:top;"><div style="font-size:20px;font-weight:700;line-height:1.2;">{{value}}</div><div style="font-size:12px;\(muted)">{{label}}</div></div>{{/counters}}</div>
        """

    /// A stage table over `stages` in the current context (a run).
    static let stageTable = """
        <table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="border-collapse:collapse;font-size:13px;">
        <tr><th style="\(th)">Stage</th><th style="\(th)">Status</th><th style="\(th)text-align:right;">Duration</th><th style="\(th)">Counters</th></tr>
        {{#stages}}
        <tr><td style="\(td)"><strong>{{name}}</strong>{{#reason}}<div style="font-size:12px;\(muted)">{{.}}</div>{{/reason}}</td><td style="\(td)">\(badge("{{status_color}}", "{{status_text_color}}", "{{status_label}}"))</td><td style="\(td)text-align:right;white-space:nowrap;">{{duration}}</td><td style="\(td)">{{#counters_text}}{{.}}{{/counters_text}}{{^counters_text}}<span style="color:#8c959f;">–</span>{{/counters_text}}{{#tasks}}<div style="font-size:12px;\(muted)">{{.}}</div>{{/tasks}}</td></tr>
        {{/stages}}
        </table>
        """

    /// Failed records over `failed_records`; with a Pipeline column when `pipelineColumn`.
    static func recordTable(pipelineColumn: Bool) -> String {
        let pipelineHead = pipelineColumn ? "<th style=\"\(th)\">Pipeline</th>" : ""
        let pipelineCell = pipelineColumn
            ? "<td style=\"\(td)\">\(badge("{{pipeline_color}}", "{{pipeline_text_color}}", "{{pipeline}}"))</td>" : ""
        return """
            <table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="border-collapse:collapse;font-size:13px;">
            <tr>\(pipelineHead)<th style="\(th)">Stage</th><th style="\(th)">Record</th><th style="\(th)">Reason</th></tr>
            {{#failed_records}}
            <tr>\(pipelineCell)<td style="\(td)white-space:nowrap;">{{stage}}</td><td style="\(td)\(mono)font-size:12px;word-break:break-all;">{{record}}</td><td style="\(td)">{{reason}}</td></tr>
            {{/failed_records}}
            </table>
            {{#has_unlisted_records}}<p style="margin:8px 0 0 0;font-size:12px;\(muted)">… and {{unlisted_records}} more failed records, not listed.</p>{{/has_unlisted_records}}
            """
    }

    /// Failed attempts over `failures`: message and stderr tail.
    static let failureBlocks = """
        {{#failures}}
        <div style="margin:0 0 10px 0;padding:10px 12px;background:#fff8f8;border:1px solid #f3c9cc;border-left:4px solid #cf222e;border-radius:6px;">
        <div style="font-weight:600;">{{#pipeline}}{{.}} · {{/pipeline}}{{stage}}{{#task}} · {{.}}{{/task}} — attempt {{attempt}}: {{outcome_label}}{{#exit_code}} (exit {{.}}){{/exit_code}}</div>
        {{#message}}<div style="margin-top:4px;word-break:break-word;">{{.}}</div>{{/message}}
        {{#has_stderr}}<pre style="margin:8px 0 0 0;padding:8px 10px;background:#1f2328;color:#e6edf3;border-radius:4px;font-size:12px;line-height:1.45;white-space:pre-wrap;word-break:break-word;\(mono)">{{stderr}}</pre>{{/has_stderr}}
        </div>
        {{/failures}}
        {{#has_unlisted_failures}}<p style="margin:0;font-size:12px;\(muted)">… and {{unlisted_failures}} more failed attempts (see <code>sluice show {{run_id}}</code>).</p>{{/has_unlisted_failures}}
        """

    /// The body of one run's report, in the context of `run`.
    static let runBody = """
        {{#has_params}}
        \(section("Parameters", facts([("{{#params}}", "<tr><td style=\"padding:3px 12px 3px 0;\(muted)width:130px;vertical-align:top;\(mono)font-size:12px;\">{{name}}</td><td style=\"padding:3px 0;word-break:break-word;\">{{value}}</td></tr>{{/params}}")])))
        {{/has_params}}
        {{#has_counters}}
        \(section("Business counters", tiles))
        {{/has_counters}}
        \(section("Stages <span style=\"font-weight:400;font-size:13px;\(muted)\">{{stages_summary}}</span>", stageTable))
        {{#has_failed_records}}
        \(section("Failed records ({{records_failed}})", recordTable(pipelineColumn: false)))
        {{/has_failed_records}}
        {{#has_failures}}
        \(section("Errors", failureBlocks))
        {{/has_failures}}
        """

    static let resources = facts([
        ("Duration", "{{duration}}"), ("Attempts", "{{attempts}}"), ("CPU time", "{{cpu_time}}"),
        ("Peak memory", "{{peak_memory}}"), ("Written to disk", "{{bytes_written}}"),
    ])

    static let runFacts = facts([
        ("Run", "<span style=\"\(mono)font-size:12px;\">{{run_id}}</span>"), ("Trigger", "{{trigger}}"),
        ("Started", "{{started_at}}"), ("Finished", "{{finished_at}}"), ("Duration", "{{duration}}"),
        ("{{#exit_code}}", "<tr><td style=\"padding:3px 12px 3px 0;\(muted)\">Exit code</td><td style=\"padding:3px 0;\">{{.}}</td></tr>{{/exit_code}}"),
    ])

    // MARK: HTML templates

    static let runReportHTML = open(strip: "{{run.status_color}}")
        + header(kicker: "Run report",
                 heading: "{{run.icon}} {{run.pipeline}}",
                 line: badge("{{run.status_color}}", "{{run.status_text_color}}", "{{run.outcome_label}}")
                    + " <span style=\"\(muted)\">{{#run.headline}}{{.}}{{/run.headline}}</span>")
        + "{{#run}}\n"
        + section("Summary", runFacts)
        + runBody
        + section("Resources", resources)
        + "{{/run}}\n"
        + close(footer: "Sent by Sluice · run {{run.run_id}}{{#run.pipeline_file}} · {{.}}{{/run.pipeline_file}}")

    static let manualReviewHTML = open(strip: "#cc5500")
        + header(kicker: "Manual review needed",
                 heading: "🔧 {{run.pipeline}}",
                 line: "<div style=\"padding:12px 14px;background:#fff4e5;border:1px solid #f5c27a;border-left:6px solid #cc5500;border-radius:8px;font-size:15px;color:#5c2700;\">{{review.summary}}</div>")
        + "{{#run}}\n"
        + section("Summary", facts([
            ("Outcome", badge("{{status_color}}", "{{status_text_color}}", "{{outcome_label}}")),
            ("Failed", "{{#review.failed_stages}}<div>\(badge("{{status_color}}", "{{status_text_color}}", "{{status_label}}")) <strong>{{name}}</strong>{{#reason}} <span style=\"\(muted)font-size:12px;\">{{.}}</span>{{/reason}}</div>{{/review.failed_stages}}"),
            ("{{#review.restored}}", "<tr><td style=\"padding:3px 12px 3px 0;\(muted)\">Restored</td><td style=\"padding:3px 0;\">{{.}}</td></tr>{{/review.restored}}"),
            ("{{#review.proceeded}}", "<tr><td style=\"padding:3px 12px 3px 0;\(muted)\">Ran afterwards</td><td style=\"padding:3px 0;\">{{.}}</td></tr>{{/review.proceeded}}"),
            ("Run", "<span style=\"\(mono)font-size:12px;\">{{run_id}}</span>"), ("Trigger", "{{trigger}}"),
            ("Started", "{{started_at}}"), ("Finished", "{{finished_at}}"),
        ]))
        + "{{#has_failures}}\n" + section("Error details", failureBlocks) + "{{/has_failures}}\n"
        + "{{#has_healing}}\n"
        + section("Healing actions", """
            <table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="border-collapse:collapse;font-size:13px;">
            {{#healing}}
            <tr><td style="\(td)width:1%;white-space:nowrap;">\(badge("{{#is_healing}}#cc5500{{/is_healing}}{{^is_healing}}#0969da{{/is_healing}}", "#ffffff", "{{action_label}}"))</td><td style="\(td)">{{message}}<div style="font-size:12px;\(muted)">{{#stage}}stage {{.}} · {{/stage}}{{time}}</div></td></tr>
            {{/healing}}
            </table>
            """)
        + "{{/has_healing}}\n"
        + "{{#has_notices}}\n"
        + section("Notices", "{{#notices}}<p style=\"margin:0 0 6px 0;\">{{message}}</p>{{/notices}}")
        + "{{/has_notices}}\n"
        + section("Stages <span style=\"font-weight:400;font-size:13px;\(muted)\">{{stages_summary}}</span>", stageTable)
        + "{{#has_counters}}\n" + section("Business counters", tiles) + "{{/has_counters}}\n"
        + "{{#has_failed_records}}\n" + section("Failed records ({{records_failed}})", recordTable(pipelineColumn: false)) + "{{/has_failed_records}}\n"
        + section("Metadata", facts([
            ("Duration", "{{duration}}"), ("Peak memory", "{{peak_memory}} <span style=\"\(muted)font-size:12px;\">(stages' processes)</span>"),
            ("Sluice process", "{{engine_peak_memory}} peak memory"), ("Written to disk", "{{bytes_written}}"),
            ("Attempts", "{{attempts}}"), ("CPU time", "{{cpu_time}}"),
        ]))
        + "{{/run}}\n"
        + close(footer: "Sent by Sluice · run {{run.run_id}} · inspect it with <code>sluice show {{run.run_id}}</code>")

    /// One member's section (in the context of a member).
    static let memberSection = """
        <table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="margin:0 0 16px 0;border:1px solid #d8dee4;border-left:6px solid {{color}};border-radius:8px;">
        <tr><td style="padding:12px 14px;">
        <div>\(badge("{{color}}", "{{text_color}}", "{{title}}")) \(badge("{{status_color}}", "{{status_text_color}}", "{{icon}} {{status_label}}")){{#late}} \(badge("#6e7781", "#ffffff", "late")){{/late}}</div>
        <div style="margin:6px 0 8px 0;font-size:12px;\(muted)">{{pipeline}} · run {{run_id}} · {{duration}} · started {{started_at}}</div>
        {{#has_counters}}
        \(tiles)
        {{/has_counters}}
        {{#run}}
        \(stageTable)
        {{/run}}
        </td></tr>
        </table>
        """

    static let sessionHTML = open(strip: "{{session.status_color}}")
        + header(kicker: "{{#session.is_complete}}Combined report{{/session.is_complete}}{{#session.is_timed_out}}Partial report · timed out{{/session.is_timed_out}}",
                 heading: "{{session.icon}} {{session.title}}",
                 line: "<div style=\"font-size:15px;\">" + badge("{{session.status_color}}", "{{session.status_text_color}}", "{{session.status_label}}")
                    + " <strong>{{session.heading}}</strong></div>"
                    + "{{#session.description}}<div style=\"margin-top:6px;\(muted)\">{{.}}</div>{{/session.description}}"
                    + "<div style=\"margin-top:10px;\">{{#session.members}}<span style=\"display:inline-block;margin:0 6px 6px 0;padding:3px 10px;border-radius:12px;background:{{color}};color:{{text_color}};font-size:12px;font-weight:600;\">{{title}} · {{#missing_state}}{{.}}{{/missing_state}}{{^missing_state}}{{status_label}}{{/missing_state}}</span>{{/session.members}}</div>")
        + "{{#session}}\n"
        + "{{#has_missing}}\n"
        + """
        <tr><td style="padding:10px 24px 4px 24px;">
        <div style="padding:12px 14px;background:#fff4e5;border:1px solid #f5c27a;border-left:6px solid #cc5500;border-radius:8px;">
        <div style="font-weight:700;font-size:15px;color:#8a3b00;margin-bottom:6px;">⏰ Missing after the {{timeout}} timeout: {{missing_count}} of {{member_count}}</div>
        <table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="font-size:13px;">
        {{#missing}}
        <tr><td style="padding:4px 10px 4px 0;width:1%;white-space:nowrap;">\(badge("{{color}}", "{{text_color}}", "{{title}}"))</td><td style="padding:4px 0;color:#5c2700;"><strong>{{missing_state}}</strong>{{#run_id}} <span style="font-size:12px;">(run {{.}})</span>{{/run_id}}</td></tr>
        {{/missing}}
        </table>
        <div style="margin-top:6px;font-size:12px;color:#8a3b00;">Opened {{opened_at}} · deadline {{deadline}}. A run that still finishes is reported on its own.</div>
        </div>
        </td></tr>

        """
        + "{{/has_missing}}\n"
        + "{{#has_counters}}\n" + section("Combined statistics", tiles) + "{{/has_counters}}\n"
        + "{{#has_finished}}\n" + section("Pipelines", "{{#finished}}\n\(memberSection)\n{{/finished}}") + "{{/has_finished}}\n"
        + "{{#has_failed_records}}\n" + section("Failed records ({{records_failed}})", recordTable(pipelineColumn: true)) + "{{/has_failed_records}}\n"
        + "{{#has_failures}}\n" + section("Errors", failureBlocks) + "{{/has_failures}}\n"
        + section("Totals", facts([
            ("Pipelines", "{{finished_count}} of {{member_count}} finished · {{succeeded_count}} succeeded · {{partial_count}} partial · {{failed_count}} failed"),
            ("Failed records", "{{records_failed}}"), ("Session", "<span style=\"\(mono)font-size:12px;\">{{session_id}}</span>{{#key}} · key {{.}}{{/key}}"),
            ("Opened", "{{opened_at}}"), ("Closed", "{{closed_at}}"), ("Duration", "{{duration}}"), ("Timeout", "{{timeout}}"),
            ("Attempts", "{{attempts}}"), ("Peak memory", "{{peak_memory}}"), ("Written to disk", "{{bytes_written}}"),
        ]))
        + "{{/session}}\n"
        + close(footer: "Sent by Sluice · session {{session.name}} · {{session.session_id}}")

    static let sessionLateHTML = open(strip: "{{run.status_color}}")
        + header(kicker: "Late result{{#session}} · {{title}}{{/session}}",
                 heading: "{{run.icon}} {{late.member_title}}",
                 line: "<div style=\"padding:12px 14px;background:#f6f8fa;border:1px solid #d0d7de;border-left:6px solid #6e7781;border-radius:8px;\">🕓 {{late.note}}</div>"
                    + "<div style=\"margin-top:10px;\">" + badge("{{run.status_color}}", "{{run.status_text_color}}", "{{run.outcome_label}}")
                    + " <span style=\"\(muted)\">{{#run.headline}}{{.}}{{/run.headline}}</span></div>")
        + "{{#run}}\n"
        + section("Summary", runFacts)
        + runBody
        + section("Resources", resources)
        + "{{/run}}\n"
        + close(footer: "Sent by Sluice · run {{run.run_id}}{{#late.session_id}} · session {{.}}{{/late.session_id}}")

    // MARK: Text pieces

    static let textRunBody = """
        {{#has_params}}

        Parameters
        {{#params}}
          {{name}} = {{value}}
        {{/params}}
        {{/has_params}}
        {{#has_counters}}

        Business counters
        {{#text_counters}}
        {{.}}
        {{/text_counters}}
        {{/has_counters}}

        Stages ({{stages_summary}})
        {{#text_stages}}
        {{.}}
        {{/text_stages}}
        {{#has_failed_records}}

        Failed records ({{records_failed}})
        {{#text_failed_records}}
        {{.}}
        {{/text_failed_records}}
        {{#has_unlisted_records}}
          … and {{unlisted_records}} more, not listed
        {{/has_unlisted_records}}
        {{/has_failed_records}}

        """

    static let textFailures = """
        {{#has_failures}}

        Errors
        {{#failures}}
          - {{#pipeline}}{{.}} / {{/pipeline}}{{stage}}{{#task}} [{{.}}]{{/task}}, attempt {{attempt}}: {{outcome_label}}{{#exit_code}} (exit {{.}}){{/exit_code}}
        {{#message}}
            {{.}}
        {{/message}}
        {{#stderr_tail}}
            | {{.}}
        {{/stderr_tail}}
        {{/failures}}
        {{#has_unlisted_failures}}
          … and {{unlisted_failures}} more failed attempts
        {{/has_unlisted_failures}}
        {{/has_failures}}

        """

    static let textRunFacts = """
        Run       {{run_id}}
        Trigger   {{trigger}}
        Started   {{started_at}}
        Finished  {{finished_at}}
        Duration  {{duration}}
        {{#exit_code}}
        Exit code {{.}}
        {{/exit_code}}

        """

    static let textResources = """

        Resources
          Attempts         {{attempts}}
          CPU time         {{cpu_time}}
          Peak memory      {{peak_memory}}
          Written to disk  {{bytes_written}}

        """

    // MARK: Text templates

    static let runReportText = """
        {{run.icon}} {{run.pipeline}}: {{run.summary}}

        {{#run}}

        """ + textRunFacts + textRunBody + textFailures + textResources + """
        {{/run}}

        --
        Sent by Sluice{{#run.pipeline_file}} · {{.}}{{/run.pipeline_file}}

        """

    static let manualReviewText = """
        MANUAL REVIEW NEEDED: {{run.pipeline}}

        {{review.summary}}

        {{#run}}
        Summary
          Outcome          {{outcome_label}}
        {{#review.failed_stages}}
          Failed stage     {{name}} ({{status_label}}){{#reason}}: {{.}}{{/reason}}
        {{/review.failed_stages}}
        {{#review.restored}}
          Restored         {{.}}
        {{/review.restored}}
        {{#review.proceeded}}
          Ran afterwards   {{.}}
        {{/review.proceeded}}
          Run              {{run_id}}
          Trigger          {{trigger}}
          Started          {{started_at}}
          Finished         {{finished_at}}
        """ + textFailures.replacingOccurrences(of: "\nErrors\n", with: "\nError details\n") + """
        {{#has_healing}}

        Healing actions
        {{#healing}}
          {{#stage}}[{{.}}] {{/stage}}{{action_label}}: {{message}}
        {{/healing}}
        {{/has_healing}}
        {{#has_notices}}

        Notices
        {{#notices}}
          {{message}}
        {{/notices}}
        {{/has_notices}}

        Stages ({{stages_summary}})
        {{#text_stages}}
        {{.}}
        {{/text_stages}}
        {{#has_failed_records}}

        Failed records ({{records_failed}})
        {{#text_failed_records}}
        {{.}}
        {{/text_failed_records}}
        {{/has_failed_records}}

        Metadata
          Duration         {{duration}}
          Peak memory      {{peak_memory}} (stages' processes), {{engine_peak_memory}} (Sluice)
          Written to disk  {{bytes_written}}
          Attempts         {{attempts}}
          CPU time         {{cpu_time}}
        {{/run}}

        --
        Sent by Sluice · sluice show {{run.run_id}}

        """

    static let sessionText = """
        {{session.icon}} {{session.title}}: {{session.heading}}
        {{session.summary}}
        {{#session}}
        {{#description}}
        {{.}}
        {{/description}}

        Session   {{session_id}}{{#key}} (key {{.}}){{/key}}
        Opened    {{opened_at}}
        Closed    {{closed_at}}
        Duration  {{duration}}
        Timeout   {{timeout}}
        {{#has_missing}}

        MISSING after the {{timeout}} timeout ({{missing_count}} of {{member_count}}):
        {{#missing}}
          - {{title}}: {{missing_state}}{{#run_id}} (run {{.}}){{/run_id}}
        {{/missing}}
        {{/has_missing}}

        Pipelines
        {{#text_members}}
        {{.}}
        {{/text_members}}
        {{#has_counters}}

        Combined statistics
        {{#text_counters}}
        {{.}}
        {{/text_counters}}
        {{/has_counters}}
        {{#finished}}

        == {{title}}: {{icon}} {{status_label}}{{#late}} (late){{/late}} ==
        run {{run_id}} · {{duration}} · started {{started_at}}
        {{#counters_text}}
        {{.}}
        {{/counters_text}}
        {{#run}}
        {{#text_stages}}
        {{.}}
        {{/text_stages}}
        {{/run}}
        {{/finished}}
        {{#has_failed_records}}

        Failed records ({{records_failed}})
        {{#text_failed_records}}
        {{.}}
        {{/text_failed_records}}
        {{#has_unlisted_records}}
          … and {{unlisted_records}} more, not listed
        {{/has_unlisted_records}}
        {{/has_failed_records}}

        """ + textFailures + """

        Totals
          Pipelines        {{finished_count}} of {{member_count}} finished ({{succeeded_count}} succeeded, {{partial_count}} partial, {{failed_count}} failed)
          Failed records   {{records_failed}}
          Attempts         {{attempts}}
          Peak memory      {{peak_memory}}
          Written to disk  {{bytes_written}}
        {{/session}}

        --
        Sent by Sluice · session {{session.name}}

        """

    static let sessionLateText = """
        🕓 LATE: {{late.member_title}}: {{run.summary}}

        {{late.note}}

        {{#run}}

        """ + textRunFacts + textRunBody + textFailures + textResources + """
        {{/run}}

        --
        Sent by Sluice{{#late.session_id}} · session {{.}}{{/late.session_id}}

        """
}
