import Foundation
import SluiceCore
import SluiceEngine
import SluiceStore
import Synchronization

/// What a person sees while a run executes: on a terminal, one line per active stage with a spinner
/// and elapsed time (redrawn ten times a second), finished stages printed once; otherwise one plain
/// line per event.
final class LiveView: Sendable {
    struct StageLine {
        var status: String
        var started: Date?
        var attempt: Int?
        var detail: String = ""
    }

    struct State {
        var order: [String] = []
        var stages: [String: StageLine] = [:]
        var drawnLines = 0
        var frame = 0
        var runID = ""
        /// Printed with the first event, so a run that cannot start prints only its error.
        var header: String?
        var progress: [String: StageProgress] = [:]
    }

    let plain: Bool
    let toStderr: Bool
    private let state = Mutex(State())
    private let ticker = Mutex<Task<Void, Never>?>(nil)
    static let spinner = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"]

    init(plain: Bool, toStderr: Bool) {
        self.plain = plain
        self.toStderr = toStderr
    }

    func write(_ text: String) {
        (toStderr ? FileHandle.standardError : FileHandle.standardOutput).write(Data(text.utf8))
    }

    func note(_ text: String) {
        if plain { write(text + "\n"); return }
        state.withLock { s in
            write(clearLive(&s) + text + "\n")
        }
    }

    func begin(_ run: RunRecord) {
        state.withLock { s in
            s.runID = run.id.rawValue
            s.order = run.spec.stages.map(\.name)
            s.header = "run \(run.id) of '\(run.pipeline)' (\(run.spec.stages.count) stage\(run.spec.stages.count == 1 ? "" : "s"))\n"
        }
        guard !plain else { return }
        let task = Task { [weak self] in
            while !Task.isCancelled {
                self?.redraw()
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
        ticker.withLock { $0 = task }
    }

    /// The latest progress of the active stages (about once a second); drawn with the next frame.
    func progress(_ snapshot: [StageProgress]) {
        guard !plain else { return }
        state.withLock { s in
            s.progress = Dictionary(snapshot.map { ($0.stage, $0) }, uniquingKeysWith: { a, _ in a })
        }
    }

    static func bar(_ p: StageProgress, width: Int = 24) -> String {
        let fraction = p.expected == 0 ? 0 : Double(p.done + p.failed) / Double(p.expected)
        let filled = Int((fraction * Double(width)).rounded(.down))
        var text = "[" + String(repeating: "█", count: filled) + String(repeating: "░", count: width - filled) + "] "
        text += "\(p.done + p.failed)/\(p.expected)\(p.growing ? "+" : "") \(p.percent.formatted())%"
        if p.ratePerSecond > 0 { text += " · \(p.ratePerSecond.formatted())/s" }
        if let eta = p.etaSeconds, eta > 0 { text += " · ETA \(p.growing ? "≥" : "")\(DurationText.format(.seconds(eta)))" }
        if p.failed > 0 { text += " · \(p.failed) failed" }
        return text
    }

    func end() {
        ticker.withLock { $0?.cancel(); $0 = nil }
        guard !plain else { return }
        state.withLock { s in write(clearLive(&s)) }
    }

    func handle(_ event: EventRecord) {
        if let header = state.withLock({ s -> String? in defer { s.header = nil }; return s.header }) { write(header) }
        if plain {
            guard event.event != "run.created" else { return }
            let f = DateFormatter()
            f.dateFormat = "HH:mm:ss"
            let who = event.stage.map { "\($0)" } ?? "run"
            write("\(f.string(from: event.time)) \(who) \(event.event): \(event.message)\n")
            return
        }
        guard let stage = event.stage else {
            if event.event == "run.cancel_requested" || event.event == "run.takeover" { note(event.message) }
            return
        }
        state.withLock { s in
            var line = s.stages[stage] ?? StageLine(status: "pending")
            var finished: String?
            switch event.event {
            case "stage.start":
                line.status = "running"; line.started = event.time
            case "task.start":
                if line.status == "retrying" { line.status = "running" }
                line.attempt = event.attempt
                line.detail = event.attempt.map { $0 > 1 ? "attempt \($0)" : "" } ?? ""
            case "task.retry":
                // A fan-out stage retrying one item is still running; its bar counts the failures.
                if s.progress[stage] == nil { line.status = "retrying"; line.detail = event.message }
            case "task.failure", "task.timeout", "task.hang", "task.spawn_failed":
                line.detail = event.message
            default:
                if event.event.hasPrefix("stage.") {
                    let status = String(event.event.dropFirst("stage.".count))
                    line.status = status
                    let elapsed = line.started.map { Terminal.duration(Int64(event.time.timeIntervalSince($0) * 1000)) } ?? ""
                    let mark = status == "success" ? "✓" : (status == "skipped" ? "–" : (status == "partial_success" ? "!" : "✗"))
                    var text = "\(mark) \(stage.padding(toLength: max(12, stage.count), withPad: " ", startingAt: 0))  \(status)"
                    if !elapsed.isEmpty { text += "  \(elapsed)" }
                    if status != "success", !line.detail.isEmpty { text += "  (\(line.detail))" }
                    if status == "skipped" || status == "upstream_failed", event.message.count < 200 {
                        text += "  \(event.message)"
                    }
                    finished = text
                }
            }
            s.stages[stage] = line
            if let finished { write(clearLive(&s) + finished + "\n") }
        }
    }

    /// Erases the live lines; returns the escape sequence to do so.
    private func clearLive(_ s: inout State) -> String {
        guard s.drawnLines > 0 else { return "" }
        let text = "\u{1B}[\(s.drawnLines)A\u{1B}[J"
        s.drawnLines = 0
        return text
    }

    private func redraw() {
        state.withLock { s in
            s.frame += 1
            let now = Date()
            var lines: [String] = []
            for name in s.order {
                guard let line = s.stages[name], line.status == "running" || line.status == "retrying" else { continue }
                let elapsed = line.started.map { Terminal.duration(Int64(now.timeIntervalSince($0) * 1000)) } ?? ""
                var text = "\(Self.spinner[s.frame % Self.spinner.count]) \(name.padding(toLength: max(12, name.count), withPad: " ", startingAt: 0))  \(line.status)  \(elapsed)"
                if let p = s.progress[name], p.expected > 1 || p.growing {
                    text += "  " + Self.bar(p)
                } else if !line.detail.isEmpty {
                    text += "  \(line.detail.prefix(80))"
                }
                lines.append(text)
            }
            write(clearLive(&s) + lines.map { $0 + "\n" }.joined())
            s.drawnLines = lines.count
        }
    }

    func summary(_ report: RunReport, outcome: RunOutcome) {
        var text = "run \(report.runId) \(outcome.rawValue) in \(Terminal.duration(report.durationMs))"
        let counts = report.totals.stages.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        text += " (\(counts))\n"
        if let counters = Terminal.counters(report.totals.counters, rejected: report.totals.rejected) {
            text += "  counters: \(counters)\n"
        }
        for stage in report.stages where stage.status == "failed" {
            if let attempt = stage.tasks.last?.attempts.last {
                // A fan-out stage says how many items failed; its last failed attempt follows.
                if let reason = stage.reason { text += "  \(stage.name): \(reason)\n" }
                let message = attempt.message ?? attempt.outcome
                text += "  \(stage.name): \(message)\n"
                // A Swift stage's error is its message and its log's last line: said once.
                let tail = (attempt.stderrTail ?? []).suffix(5)
                if !(tail.count == 1 && message.hasSuffix(tail[tail.startIndex])) {
                    for line in tail { text += "    | \(line)\n" }
                }
            }
        }
        let tool = Terminal.tool
        text += "  details: \(tool) show \(report.runId)   logs: \(tool) logs \(report.runId)\n"
        write(text)
    }
}
