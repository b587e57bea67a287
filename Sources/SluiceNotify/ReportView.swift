import Foundation
import Mustache
import SluiceEngine

// What templates see. Every value is prepared here, in Swift, so templates stay logic-less: labels,
// colours, human durations and sizes, `has_…` flags for optional parts, and aligned text tables.
// docs/notifications.md (Reports and templates) lists the keys; keep it in step with these types.

/// A value templates see: its properties by their snake_case names (`run_id` for `runId`). A nil or
/// empty-string property is null: a section over it is skipped, an inverted section shown, and the name
/// does not fall through to an outer section's value of the same name.
protocol TemplateView: MustacheParent, Sendable {}

extension TemplateView {
    func child(named name: String) -> Any? {
        let label = TemplateKey.camelCase(name)
        for child in Mirror(reflecting: self).children where child.label == label {
            return TemplateKey.present(child.value)
        }
        return nil
    }
}

/// Null to a template: renders as nothing, false in sections.
struct TemplateNull: MustacheCustomRenderable {
    var renderText: String { "" }
    var isNull: Bool { true }
}

enum TemplateKey {
    static func camelCase(_ name: String) -> String {
        guard name.contains("_") else { return name }
        var out = ""
        var upper = false
        for c in name {
            if c == "_" { upper = true; continue }
            out += upper ? c.uppercased() : String(c)
            upper = false
        }
        return out
    }

    static func present(_ value: Any) -> Any {
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .optional {
            guard let wrapped = mirror.children.first?.value else { return TemplateNull() }
            return present(wrapped)
        }
        if let s = value as? String, s.isEmpty { return TemplateNull() }
        return value
    }
}

/// A name and its value (a parameter, a counter).
struct PairView: TemplateView {
    var name: String
    /// The name with a capital first letter, for headings.
    var label: String
    var value: String

    init(_ name: String, _ value: String) {
        self.name = name
        self.label = Human.capitalized(name)
        self.value = value
    }
}

struct StageView: TemplateView {
    var name: String
    var status: String
    var statusLabel: String
    var statusColor: String
    var statusTextColor: String
    var icon: String
    var duration: String
    var startedAt: String
    var reason: String?
    /// `12 of 12 tasks succeeded`, for stages with tasks.
    var tasks: String?
    var counters: [PairView]
    var hasCounters: Bool
    /// `policies 15 · rejected 3`.
    var countersText: String?
    var rejected: Int
    var hasRejected: Bool
    var peakMemory: String

    init(_ s: RunReport.Stage) {
        let style = StatusStyle.of(s.status)
        name = s.name
        status = s.status
        statusLabel = style.label
        statusColor = style.color
        statusTextColor = style.textColor
        icon = style.icon
        duration = s.durationMs == nil && s.startedAt == nil ? "–" : Human.duration(ms: s.durationMs)
        startedAt = Human.date(s.startedAt)
        reason = s.reason
        tasks = s.metrics.map { m in
            m.tasks == 1 && m.failed == 0 ? "1 task" : "\(Human.count(m.succeeded)) of \(Human.plural(m.tasks, "task")) succeeded"
        }
        counters = (s.counters ?? [:]).sorted { $0.key < $1.key }.map { PairView($0.key, Human.count($0.value)) }
        hasCounters = !counters.isEmpty
        let rejected = max(s.rejected ?? 0, s.rejectedRecords?.count ?? 0)
        self.rejected = rejected
        hasRejected = rejected > 0
        var parts = counters.map { "\($0.name) \($0.value)" }
        if rejected > 0 { parts.append("failed records \(Human.count(rejected))") }
        countersText = parts.joined(separator: " · ")
        peakMemory = Human.bytes(s.metrics?.peakRssBytes)
    }
}

/// A failed business record: `context.reject(record, reason:)`, kept in the report as "record: reason".
struct FailedRecordView: TemplateView {
    /// In a session report, the member's title (the "Pipeline" column).
    var pipeline: String?
    var pipelineColor: String?
    var pipelineTextColor: String?
    var stage: String
    var record: String
    var reason: String

    init(_ text: String, stage: String, member: MemberStyle? = nil) {
        self.stage = stage
        if let r = text.range(of: ": ") {
            record = String(text[..<r.lowerBound])
            reason = String(text[r.upperBound...])
        } else {
            record = text
            reason = ""
        }
        pipeline = member?.title
        pipelineColor = member?.color
        pipelineTextColor = member?.textColor
    }
}

/// A member's name and colours, for attributing rows.
struct MemberStyle: Sendable {
    var title: String
    var color: String
    var textColor: String
}

/// An attempt that did not succeed.
struct FailureView: TemplateView {
    var stage: String
    var task: String
    var attempt: Int
    var outcome: String
    var outcomeLabel: String
    var exitCode: String?
    var message: String?
    var stderrTail: [String]
    var hasStderr: Bool
    /// The stderr tail as one block of text.
    var stderr: String?
    var duration: String
    var host: String?
    /// In a session report, the member's title.
    var pipeline: String?

    init(stage: String, task: RunReport.Task, attempt a: RunReport.Attempt, pipeline: String? = nil) {
        self.stage = stage
        self.task = task.key
        attempt = a.number
        outcome = a.outcome
        outcomeLabel = a.outcome.replacingOccurrences(of: "_", with: " ")
        exitCode = a.exitCode.map(String.init) ?? a.signal.map { "signal \($0)" }
        message = a.message
        var tail = a.stderrTail ?? []
        while tail.last?.trimmingCharacters(in: .whitespaces).isEmpty == true { tail.removeLast() }
        stderrTail = Array(tail.suffix(20))
        hasStderr = !stderrTail.isEmpty
        stderr = stderrTail.joined(separator: "\n")
        duration = Human.duration(ms: a.durationMs)
        host = a.host
        self.pipeline = pipeline
    }
}

/// An action on artifacts or files (`artifact.*`, `healing.*`, `lifecycle.*`), or a notice.
struct ActionView: TemplateView {
    var event: String
    /// The event without its prefix: `rollback`, `restored`, `published`, `manual_review`.
    var action: String
    var actionLabel: String
    var stage: String?
    var time: String
    var message: String
    var isHealing: Bool

    init(_ a: RunReport.Action) {
        event = a.event
        action = a.event.split(separator: ".", maxSplits: 1).last.map(String.init) ?? a.event
        actionLabel = action.replacingOccurrences(of: "_", with: " ")
        stage = a.stage
        time = Human.date(a.time)
        message = a.message
        isHealing = a.event.hasPrefix("healing.")
    }
}

/// One run, as `run` in every run template (and each session member's `run`).
struct RunView: TemplateView {
    var pipeline: String
    var runId: String
    var pipelineFile: String?
    var trigger: String
    var status: String
    /// The outcome once ended, else the status.
    var outcome: String
    var outcomeLabel: String
    var icon: String
    var statusColor: String
    var statusTextColor: String
    var isSuccess: Bool
    var isPartial: Bool
    var isFailed: Bool
    var isCancelled: Bool
    var isFinished: Bool
    var exitCode: String?
    var params: [PairView]
    var hasParams: Bool
    var createdAt: String
    var startedAt: String
    var finishedAt: String
    var duration: String
    var stages: [StageView]
    /// `4 stages: 3 success, 1 rolled back`.
    var stagesSummary: String
    var counters: [PairView]
    var hasCounters: Bool
    var countersText: String?
    /// `27 processed, 3 failed`: the `processed` counter (else the largest one) and the failed records.
    var headline: String?
    /// `Partial success – 27 processed, 3 failed`.
    var summary: String
    var failedRecords: [FailedRecordView]
    var hasFailedRecords: Bool
    var recordsFailed: Int
    /// Failed records counted but not listed (the report keeps the first ones of each stage).
    var unlistedRecords: Int
    var hasUnlistedRecords: Bool
    var failures: [FailureView]
    var hasFailures: Bool
    var unlistedFailures: Int
    var hasUnlistedFailures: Bool
    var actions: [ActionView]
    var hasActions: Bool
    var healing: [ActionView]
    var hasHealing: Bool
    var notices: [ActionView]
    var hasNotices: Bool
    var attempts: Int
    var peakMemory: String
    var enginePeakMemory: String
    var bytesWritten: String
    var cpuTime: String
    /// Aligned plain-text tables (header, rule, rows), for `.txt` templates.
    var textStages: [String]
    var textFailedRecords: [String]
    var textCounters: [String]

    static let failuresListed = 25

    init(_ r: RunReport, member: MemberStyle? = nil) {
        pipeline = r.pipeline
        runId = r.runId
        pipelineFile = r.pipelineFile
        trigger = r.trigger
        status = r.status
        outcome = r.outcome ?? r.status
        let style = StatusStyle.of(outcome)
        outcomeLabel = style.label
        icon = style.icon
        statusColor = style.color
        statusTextColor = style.textColor
        isSuccess = outcome == "success"
        isPartial = outcome == "partial_success"
        isFailed = outcome == "failed"
        isCancelled = outcome == "cancelled"
        isFinished = r.outcome != nil
        exitCode = r.exitCode.map(String.init)
        params = r.params.sorted { $0.key < $1.key }.map { PairView($0.key, $0.value) }
        hasParams = !params.isEmpty
        createdAt = Human.date(r.createdAt)
        startedAt = Human.date(r.startedAt)
        finishedAt = Human.date(r.finishedAt)
        duration = Human.duration(ms: r.durationMs)
        stages = r.stages.map(StageView.init)
        var byStatus: [(String, Int)] = []
        for s in r.stages {
            let label = StatusStyle.of(s.status).label
            if let i = byStatus.firstIndex(where: { $0.0 == label }) { byStatus[i].1 += 1 } else { byStatus.append((label, 1)) }
        }
        stagesSummary = Human.plural(r.stages.count, "stage") + (byStatus.isEmpty ? "" : ": " + byStatus.map { "\($0.1) \($0.0)" }.joined(separator: ", "))
        let summed = Self.sum(r.stages.map { $0.counters ?? [:] })
        counters = summed.map { PairView($0.name, Human.count($0.value)) }
        hasCounters = !counters.isEmpty
        countersText = counters.map { "\($0.name) \($0.value)" }.joined(separator: " · ")
        failedRecords = r.stages.flatMap { s in (s.rejectedRecords ?? []).map { FailedRecordView($0, stage: s.name, member: member) } }
        recordsFailed = r.stages.reduce(0) { $0 + max($1.rejected ?? 0, $1.rejectedRecords?.count ?? 0) }
        hasFailedRecords = recordsFailed > 0
        unlistedRecords = max(0, recordsFailed - failedRecords.count)
        hasUnlistedRecords = unlistedRecords > 0
        headline = Self.headline(summed, failed: recordsFailed)
        summary = Human.capitalized(isFinished ? outcomeLabel : "still \(outcomeLabel)") + (headline.map { " – \($0)" } ?? "")
        var failures: [FailureView] = []
        for s in r.stages {
            for t in s.tasks {
                for a in t.attempts where a.outcome != "success" {
                    failures.append(FailureView(stage: s.name, task: t, attempt: a, pipeline: member?.title))
                }
            }
        }
        self.failures = Array(failures.prefix(Self.failuresListed))
        hasFailures = !failures.isEmpty
        unlistedFailures = max(0, failures.count - Self.failuresListed)
        hasUnlistedFailures = unlistedFailures > 0
        actions = (r.artifacts ?? []).map(ActionView.init)
        hasActions = !actions.isEmpty
        healing = (r.artifacts ?? []).filter { $0.event.hasPrefix("healing.") || $0.event.hasPrefix("artifact.") }.map(ActionView.init)
        hasHealing = !healing.isEmpty
        notices = (r.notices ?? []).map(ActionView.init)
        hasNotices = !notices.isEmpty
        attempts = r.totals.attempts
        peakMemory = Human.bytes(r.totals.peakRssBytes)
        enginePeakMemory = Human.bytes(r.enginePeakRssBytes)
        bytesWritten = Human.bytes(r.totals.bytesWritten)
        cpuTime = Human.duration(ms: r.totals.cpuMs)
        textStages = TextTable.lines(header: ["STAGE", "STATUS", "DURATION", "COUNTERS"],
                                     rows: stages.map { [$0.name, $0.statusLabel, $0.duration, $0.countersText ?? ""] })
        textFailedRecords = TextTable.lines(header: ["STAGE", "RECORD", "REASON"],
                                            rows: failedRecords.map { [$0.stage, $0.record, $0.reason] })
        textCounters = TextTable.lines(header: ["COUNTER", "TOTAL"], rows: counters.map { [$0.name, $0.value] })
    }

    /// Counters summed by name, sorted by name.
    static func sum(_ all: [[String: Int]]) -> [(name: String, value: Int)] {
        var total: [String: Int] = [:]
        for counters in all { for (k, v) in counters { total[k, default: 0] += v } }
        return total.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// `27 processed, 3 failed`: the `processed` counter, else the largest one; then the failed records.
    static func headline(_ counters: [(name: String, value: Int)], failed: Int, lead: String? = nil) -> String? {
        var parts: [String] = []
        let main = counters.first { $0.name == lead } ?? counters.first { $0.name == "processed" }
            ?? counters.max { ($0.value, $1.name) < ($1.value, $0.name) }
        if let main { parts.append("\(Human.count(main.value)) \(main.name)") }
        if failed > 0 { parts.append("\(Human.count(failed)) failed") }
        return parts.isEmpty ? nil : parts.joined(separator: ", ")
    }
}

/// The manual-review notice's own part (`review`): what failed, what was restored, what ran after.
struct ReviewView: TemplateView {
    var failedStages: [StageView]
    /// `'collect'`, `'collect' and 'enrich'`.
    var failedStageNames: String
    /// `productRecords v3, purchaseOrders v2`.
    var restored: String?
    var rollbackSucceeded: Bool
    /// The stages that succeeded (on the restored data, when they ran after the rollback).
    var proceeded: String?
    /// One sentence saying what happened.
    var summary: String
    /// A few words for the subject.
    var summaryShort: String

    init(_ r: RunReport) {
        let rolledBack = r.stages.filter { $0.status == "rolled_back" }
        let failed = rolledBack.isEmpty ? r.stages.filter { $0.status == "failed" } : rolledBack
        failedStages = failed.map(StageView.init)
        let names = failed.map { "'\($0.name)'" }
        failedStageNames = names.count <= 1 ? names.joined() : names.dropLast().joined(separator: ", ") + " and " + (names.last ?? "")
        let actions = r.artifacts ?? []
        var restoredParts = actions.filter { $0.event == "healing.rollback" }.compactMap { $0.attrs["restored"] }.filter { !$0.isEmpty }
        if restoredParts.isEmpty {
            restoredParts = actions.filter { $0.event == "artifact.restored" }.compactMap { a in
                a.attrs["artifact"].map { name in a.attrs["version"].map { "\(name) v\($0)" } ?? name }
            }
        }
        restored = restoredParts.joined(separator: ", ")
        rollbackSucceeded = !rolledBack.isEmpty
        let ok = r.stages.filter { $0.status == "success" || $0.status == "partial_success" }.map { "'\($0.name)'" }
        proceeded = ok.joined(separator: ", ")
        let stageWord = failed.count == 1 ? "Stage" : "Stages"
        if failed.isEmpty {
            summary = "No stage failed in this run."
            summaryShort = "see the run report"
        } else if rollbackSucceeded {
            let what = restoredParts.isEmpty ? "its last good artifacts" : restoredParts.joined(separator: ", ")
            summary = "\(stageWord) \(failedStageNames) failed and \(failed.count == 1 ? "was" : "were") rolled back to \(what)."
                + (ok.isEmpty ? "" : " Then \(ok.joined(separator: ", ")) ran on the restored data.")
            summaryShort = "\(failedStageNames) failed, rolled back to \(what)"
        } else {
            summary = "\(stageWord) \(failedStageNames) failed and no good version could be restored."
            summaryShort = "\(failedStageNames) failed, nothing restored"
        }
    }
}

/// One member of a session, with its run when it started.
struct MemberView: TemplateView {
    var pipeline: String
    var title: String
    /// The member's badge colour (the session's `color:`, else from the default palette).
    var color: String
    var textColor: String
    var status: String
    var statusLabel: String
    var statusColor: String
    var statusTextColor: String
    var icon: String
    var runId: String?
    var late: Bool
    var hasRun: Bool
    var run: RunView?
    var duration: String
    var startedAt: String
    var finishedAt: String
    var counters: [PairView]
    var hasCounters: Bool
    var countersText: String?
    var headline: String?
    var isMissing: Bool
    var isFinished: Bool
    /// For a missing member: `never started`, `queued, never started` or `still running`.
    var missingState: String?

    init(_ m: SessionReport.Member, index: Int) {
        pipeline = m.pipeline
        title = m.title
        color = MemberColors.color(m.color, index: index)
        textColor = MemberColors.textColor(on: color)
        let status = m.report?.outcome ?? m.status
        self.status = status
        let style = StatusStyle.of(status)
        statusLabel = style.label
        statusColor = style.color
        statusTextColor = style.textColor
        icon = style.icon
        runId = m.runId
        late = m.late
        let view = m.report.map { RunView($0, member: MemberStyle(title: m.title, color: MemberColors.color(m.color, index: index),
                                                                   textColor: MemberColors.textColor(on: MemberColors.color(m.color, index: index)))) }
        run = view
        hasRun = view != nil
        duration = view?.duration ?? "–"
        startedAt = view?.startedAt ?? "–"
        finishedAt = view?.finishedAt ?? "–"
        counters = view?.counters ?? []
        hasCounters = !counters.isEmpty
        countersText = view?.countersText
        headline = view?.headline
        switch m.status {
        case "missing": missingState = "never started"
        case "pending": missingState = "queued, never started"
        case "running": missingState = "still running"
        default: missingState = nil
        }
        isMissing = missingState != nil
        isFinished = !isMissing && m.report != nil
    }

    var style: MemberStyle { MemberStyle(title: title, color: color, textColor: textColor) }
}

/// A session's combined (or partial) report, as `session`.
struct SessionView: TemplateView {
    var sessionId: String
    var name: String
    var title: String
    var description: String?
    var key: String?
    var status: String
    var statusLabel: String
    var statusColor: String
    var statusTextColor: String
    /// ✅ every member succeeded, ⚠️ some did not, ❌ all failed; ⏰ timed out.
    var icon: String
    /// The overall status in words, for the heading.
    var heading: String
    /// `Daily report – 27 processed` (after the title and icon in the subject).
    var summary: String
    var isComplete: Bool
    var isTimedOut: Bool
    var openedAt: String
    var deadline: String
    var closedAt: String
    /// The session's timeout (`5 min`).
    var timeout: String
    /// From opening to closing (or to the last member's end).
    var duration: String
    var members: [MemberView]
    var finished: [MemberView]
    var hasFinished: Bool
    var missing: [MemberView]
    var hasMissing: Bool
    var missingCount: Int
    var missingNames: String?
    var memberCount: Int
    var finishedCount: Int
    var succeededCount: Int
    var partialCount: Int
    var failedCount: Int
    var counters: [PairView]
    var hasCounters: Bool
    var countersText: String?
    var headline: String?
    var failedRecords: [FailedRecordView]
    var hasFailedRecords: Bool
    var recordsFailed: Int
    var unlistedRecords: Int
    var hasUnlistedRecords: Bool
    var failures: [FailureView]
    var hasFailures: Bool
    var attempts: Int
    var peakMemory: String
    var bytesWritten: String
    var textMembers: [String]
    var textCounters: [String]
    var textFailedRecords: [String]

    init(_ s: SessionReport) {
        sessionId = s.sessionId
        name = s.name
        title = s.title
        description = s.description
        key = s.key
        status = s.status
        isComplete = s.status == "complete"
        isTimedOut = !isComplete
        openedAt = Human.date(s.openedAt)
        deadline = Human.date(s.deadline)
        closedAt = Human.date(s.closedAt)
        timeout = Human.duration(ms: Int64((s.deadline.timeIntervalSince(s.openedAt) * 1000).rounded()))
        members = s.members.enumerated().map { MemberView($1, index: $0) }
        finished = members.filter(\.isFinished)
        hasFinished = !finished.isEmpty
        missing = members.filter(\.isMissing)
        hasMissing = !missing.isEmpty
        missingCount = missing.count
        missingNames = missing.map(\.title).joined(separator: ", ")
        memberCount = members.count
        finishedCount = finished.count
        succeededCount = finished.filter { $0.status == "success" }.count
        partialCount = finished.filter { $0.status == "partial_success" }.count
        failedCount = finished.filter { $0.status == "failed" || $0.status == "cancelled" }.count
        let reports = s.members.compactMap(\.report)
        let summed = RunView.sum(reports.flatMap { $0.stages.map { $0.counters ?? [:] } })
        counters = summed.map { PairView($0.name, Human.count($0.value)) }
        hasCounters = !counters.isEmpty
        countersText = counters.map { "\($0.name) \($0.value)" }.joined(separator: " · ")
        let runs = members.compactMap(\.run)
        failedRecords = runs.flatMap(\.failedRecords)
        recordsFailed = runs.reduce(0) { $0 + $1.recordsFailed }
        hasFailedRecords = recordsFailed > 0
        unlistedRecords = max(0, recordsFailed - failedRecords.count)
        hasUnlistedRecords = unlistedRecords > 0
        failures = runs.flatMap(\.failures)
        hasFailures = !failures.isEmpty
        attempts = reports.reduce(0) { $0 + $1.totals.attempts }
        peakMemory = Human.bytes(reports.compactMap { $0.totals.peakRssBytes }.max())
        bytesWritten = Human.bytes(reports.isEmpty ? nil : reports.reduce(0) { $0 + $1.totals.bytesWritten })
        let end = s.closedAt ?? reports.compactMap(\.finishedAt).max()
        duration = end.map { Human.duration(ms: Int64(($0.timeIntervalSince(s.openedAt) * 1000).rounded())) } ?? "–"
        let headline = RunView.headline(summed, failed: recordsFailed, lead: s.headline)
        self.headline = headline

        let overall: String
        if isComplete {
            if finished.allSatisfy({ $0.status == "success" }) { overall = "success" }
            else if !finished.isEmpty, finished.allSatisfy({ $0.status == "failed" || $0.status == "cancelled" }) { overall = "failed" }
            else { overall = "partial_success" }
        } else {
            overall = "timed_out"
        }
        let style = StatusStyle.of(overall)
        statusLabel = isComplete ? StatusStyle.of(overall).label : style.label
        statusColor = style.color
        statusTextColor = style.textColor
        // Every run succeeded but records were rejected: the subject's icon warns (the status stays success).
        icon = overall == "success" && recordsFailed > 0 ? StatusStyle.of("partial_success").icon : style.icon
        let pipelines = Human.plural(memberCount, "pipeline")
        let phrase = Human.phrase(s.name)
        if isComplete {
            switch overall {
            case "success": heading = memberCount == 1 ? "The pipeline succeeded" : "All \(pipelines) succeeded"
            case "failed": heading = memberCount == 1 ? "The pipeline failed" : "All \(pipelines) failed"
            default:
                var parts: [String] = []
                if succeededCount > 0 { parts.append("\(succeededCount) succeeded") }
                if partialCount > 0 { parts.append("\(partialCount) partially succeeded") }
                if failedCount > 0 { parts.append("\(failedCount) failed") }
                heading = "\(pipelines) finished: " + parts.joined(separator: ", ")
            }
            let fallback = overall == "success" ? "all \(pipelines) succeeded" : heading.prefix(1).lowercased() + heading.dropFirst()
            summary = "\(phrase) – \(headline ?? fallback)"
        } else {
            heading = "Timed out after \(timeout): \(missingCount) of \(pipelines) did not finish"
            summary = "\(phrase) – timed out, missing: \(missing.map(\.title).joined(separator: ", "))"
                + (headline.map { " – \($0)" } ?? "")
        }
        textMembers = TextTable.lines(header: ["PIPELINE", "STATUS", "DURATION", "COUNTERS"],
                                      rows: members.map { [$0.title, $0.missingState ?? $0.statusLabel, $0.duration, $0.countersText ?? ""] })
        textCounters = TextTable.lines(header: ["COUNTER", "TOTAL"], rows: counters.map { [$0.name, $0.value] })
        textFailedRecords = TextTable.lines(header: ["PIPELINE", "STAGE", "RECORD", "REASON"],
                                            rows: failedRecords.map { [$0.pipeline ?? "", $0.stage, $0.record, $0.reason] })
    }
}

/// A late member's note (`late`), in the session_late report.
struct LateView: TemplateView {
    var sessionId: String?
    var sessionTitle: String?
    var memberTitle: String
    var timeout: String?
    var deadline: String?
    var note: String
}

/// What a run-report template sees at its top.
struct RunContext: TemplateView {
    var kind: String
    /// The heading: the pipeline's name (or the session's title, for session_late).
    var title: String
    var run: RunView
    var review: ReviewView?
    var session: SessionView?
    var member: MemberView?
    var late: LateView?
    var generator: String
}

/// What a session template sees at its top.
struct SessionContext: TemplateView {
    var kind: String
    var title: String
    var session: SessionView
    var generator: String
}
