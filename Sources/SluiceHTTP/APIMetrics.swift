import CoreMetrics
import Foundation
import Prometheus
import SluiceStore
import Synchronization

/// `/metrics` in the Prometheus text format. Counts of runs, tasks and attempts come from the store at
/// each scrape (so they match it, whichever process did the work); actions taken through this server
/// are counted here. Gauges go through swift-metrics into a swift-prometheus registry of this server's own
/// (nothing global is bootstrapped); the task duration histogram is computed by the store in fixed
/// buckets and written in the same format.
final class APIMetrics: Sendable {
    let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory
    /// Every gauge set so far, so a state that disappeared from the store goes back to 0.
    private let gauges = Mutex<[String: CoreMetrics.Gauge]>([:])
    private let counters = Mutex<[String: CoreMetrics.Counter]>([:])

    /// Bounds (seconds) of the task duration histogram.
    static let durationBounds: [Double] = [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14_400]

    init() {
        let factory = PrometheusMetricsFactory(registry: registry)
        self.factory = factory
    }

    /// Counts an action taken through the API (`trigger`, `cancel`, `retry`, `resume`).
    func action(_ name: String) {
        let factory = self.factory
        counters.withLock { counters in
            let counter = counters[name] ?? CoreMetrics.Counter(label: "sluice_api_actions_total", dimensions: [("action", name)], factory: factory)
            counters[name] = counter
            counter.increment()
        }
    }

    func render(store: any StateStore) async throws -> String {
        let stats = try await store.statistics(durationBounds: Self.durationBounds)
        var values: [String: (label: String, dimensions: [(String, String)], value: Int)] = [:]
        func put(_ label: String, _ dims: [(String, String)], _ value: Int) {
            values[label + dims.map { "\u{0}\($0.0)=\($0.1)" }.joined()] = (label, dims, value)
        }
        for (key, n) in stats.runs { put("sluice_runs", [("pipeline", key.pipeline), ("status", key.state)], n) }
        for (key, n) in stats.tasks { put("sluice_tasks", [("pipeline", key.pipeline), ("status", key.state)], n) }
        for (key, n) in stats.attempts { put("sluice_attempts", [("pipeline", key.pipeline), ("outcome", key.state)], n) }
        for (key, n) in stats.triggers { put("sluice_trigger_firings", [("pipeline", key.pipeline), ("trigger", key.state)], n) }
        for (pipeline, n) in stats.retries { put("sluice_task_retries", [("pipeline", pipeline)], n) }
        var queue: [String: Int] = [:]
        var lost: [String: Int] = [:]
        for (key, n) in stats.tasks where key.state == "pending" { queue[key.pipeline, default: 0] += n }
        for (key, n) in stats.attempts where key.state == "lost" { lost[key.pipeline, default: 0] += n }
        for pipeline in Set(stats.runs.keys.map(\.pipeline)) {
            put("sluice_queue_depth", [("pipeline", pipeline)], queue[pipeline] ?? 0)
            put("sluice_lease_expiries", [("pipeline", pipeline)], lost[pipeline] ?? 0)
        }
        var backlog: [String: Int] = [:]
        for (key, n) in stats.notifications {
            put("sluice_notifications", [("kind", key.pipeline), ("status", key.state)], n)
            backlog[key.pipeline, default: 0] += key.state == "pending" ? n : 0
        }
        for (kind, n) in backlog { put("sluice_notification_backlog", [("kind", kind)], n) }
        for (key, n) in stats.sessions { put("sluice_sessions", [("session", key.pipeline), ("status", key.state)], n) }
        let factory = self.factory
        gauges.withLock { gauges in
            for (id, gauge) in gauges where values[id] == nil { gauge.record(0) }
            for (id, entry) in values {
                let gauge = gauges[id] ?? CoreMetrics.Gauge(label: entry.label, dimensions: entry.dimensions, factory: factory)
                gauges[id] = gauge
                gauge.record(entry.value)
            }
        }
        var text = registry.emitToString()
        text += "# HELP sluice_task_duration_seconds Wall time of finished task attempts, from the store.\n"
        text += "# TYPE sluice_task_duration_seconds histogram\n"
        for (pipeline, h) in stats.durations.sorted(by: { $0.key < $1.key }) {
            let p = Self.escape(pipeline)
            for (bound, n) in zip(h.bounds, h.cumulative) {
                text += "sluice_task_duration_seconds_bucket{pipeline=\"\(p)\",le=\"\(Self.number(bound))\"} \(n)\n"
            }
            text += "sluice_task_duration_seconds_bucket{pipeline=\"\(p)\",le=\"+Inf\"} \(h.count)\n"
            text += "sluice_task_duration_seconds_sum{pipeline=\"\(p)\"} \(Self.number(h.sumSeconds))\n"
            text += "sluice_task_duration_seconds_count{pipeline=\"\(p)\"} \(h.count)\n"
        }
        return text
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }

    /// A label value in the text format: backslash, quote and newline escaped.
    static func escape(_ value: String) -> String {
        value.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            .replacingOccurrences(of: "\n", with: "\\n")
    }
}
