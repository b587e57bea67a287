import Foundation
import Hummingbird
import NIOCore
import ServiceLifecycle
import SluiceCore
import SluiceEngine
import SluiceStore
import SluiceTriggers

/// The routes of the API (see `OpenAPIDocument.json`), the dashboard and `/metrics`.
struct API: Sendable {
    let engine: Engine
    let server: Server?
    let configuration: APIConfiguration
    let executions: Executions
    let metrics: APIMetrics

    var store: any StateStore { engine.store }

    static let maxPageSize = 200
    static let maxEventPage = 1000
    static let maxTailBytes = 1 << 20

    func register(on router: Router<some RequestContext>) {
        router.get("/api/health") { _, _ in try APIServer.json(.ok, ["status": "ok"]) }
        router.get("/api/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: OpenAPIDocument.json)))
        }
        router.get("/api/runs") { request, _ in try await reading(request) { try await listRuns(request) } }
        router.get("/api/runs/:id") { request, context in try await reading(request) { try await runDetail(request, context) } }
        router.get("/api/runs/:id/events") { request, context in try await reading(request) { try await events(request, context) } }
        router.get("/api/runs/:id/events/stream") { request, context in try await reading(request) { try await eventStream(request, context) } }
        router.get("/api/runs/:id/progress") { request, context in try await reading(request) { try await progress(request, context) } }
        router.get("/api/runs/:id/tasks/:task/logs") { request, context in try await reading(request) { try await logs(request, context) } }
        router.get("/api/pipelines") { request, _ in try await reading(request) { try pipelines() } }
        router.get("/api/schedules") { request, _ in try await reading(request) { try schedules() } }
        router.get("/api/artifacts") { request, _ in try await reading(request) { try await artifacts(request) } }
        router.get("/api/sessions") { request, _ in try await reading(request) { try await listSessions(request) } }
        router.get("/api/sessions/:id") { request, context in try await reading(request) { try await sessionDetail(context) } }
        router.post("/api/pipelines/:name/runs") { request, context in
            let response = try await APIServer.triggerRun(request, context: context, server: server, store: store)
            if response.status.code < 300 { metrics.action("trigger") }
            return response
        }
        router.post("/api/runs/:id/cancel") { request, context in try await acting(request, "cancel") { try await cancel(context) } }
        router.post("/api/runs/:id/retry") { request, context in try await acting(request, "retry") { try await resume(context, retryFailed: true) } }
        router.post("/api/runs/:id/resume") { request, context in try await acting(request, "resume") { try await resume(context, retryFailed: false) } }
        router.get("/metrics") { request, _ in try await reading(request) { try await metricsText() } }
        router.get("/") { _, _ in Dashboard.page() }
        router.get("/ui") { _, _ in Dashboard.page() }
    }

    // MARK: auth

    /// A read: open without a token only when bound to loopback and not disabled.
    func reading(_ request: Request, _ body: () async throws -> Response) async throws -> Response {
        if configuration.readsNeedToken, let refusal = try await APIServer.authenticate(request, store: store) { return refusal }
        return try await body()
    }

    /// A change: always needs a token.
    func acting(_ request: Request, _ action: String, _ body: () async throws -> Response) async throws -> Response {
        if let refusal = try await APIServer.authenticate(request, store: store) { return refusal }
        let response = try await body()
        if response.status.code < 300 { metrics.action(action) }
        return response
    }

    // MARK: parameters

    struct BadRequest: Error {
        var error: String
        var detail: String
    }

    struct NotFound: Error {
        var detail: String
    }

    /// Turns parameter and lookup errors into 400 / 404 answers.
    func answering(_ body: () async throws -> Response) async throws -> Response {
        do {
            return try await body()
        } catch let bad as BadRequest {
            return try APIServer.error(.badRequest, bad.error, bad.detail)
        } catch let missing as NotFound {
            return try APIServer.error(.notFound, "not found", missing.detail)
        }
    }

    static func integer(_ request: Request, _ name: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = request.uri.queryParameters[Substring(name)] else { return value }
        guard let number = Int(text), range.contains(number) else {
            throw BadRequest(error: "invalid \(name)", detail: "'\(text)' is not a whole number from \(range.lowerBound) to \(range.upperBound)")
        }
        return number
    }

    static func flag(_ request: Request, _ name: String) throws -> Bool {
        guard let text = request.uri.queryParameters[Substring(name)] else { return false }
        switch text {
        case "true", "1", "": return true
        case "false", "0": return false
        default: throw BadRequest(error: "invalid \(name)", detail: "'\(text)' is not true or false")
        }
    }

    static func date(_ request: Request, _ name: String) throws -> Date? {
        guard let text = request.uri.queryParameters[Substring(name)] else { return nil }
        guard let parsed = RFC3339.date(String(text)) else {
            throw BadRequest(error: "invalid \(name)", detail: "'\(text)' is not an RFC 3339 time like 2026-11-25T17:00:00Z")
        }
        return parsed
    }

    /// An optional text parameter (a name, a filter): 1 to 200 characters, or a 400. Characters as JSON
    /// Schema counts them (`maxLength`: code points), not grapheme clusters, which combining marks make fewer.
    static func text(_ request: Request, _ name: String) throws -> String? {
        guard let value = request.uri.queryParameters[Substring(name)].map(String.init) else { return nil }
        guard !value.isEmpty, value.unicodeScalars.count <= 200 else {
            throw BadRequest(error: "invalid \(name)", detail: "'\(value.prefix(40))' is empty or longer than 200 characters")
        }
        return value
    }

    /// An id as the store writes them: ASCII letters, digits and `punctuation`, no path characters.
    static func validID(_ text: String, maxLength: Int, punctuation: String) -> Bool {
        !text.isEmpty && text.count <= maxLength && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || punctuation.contains($0)) }
    }

    /// A run id (`YYYYMMDD-HHMMSS-xxxxxx`).
    static func validRunID(_ text: String) -> Bool { validID(text, maxLength: 64, punctuation: "-") }

    func run(_ context: some RequestContext) async throws -> RunRecord {
        let id = context.parameters.get("id") ?? ""
        guard Self.validRunID(id), let run = try await store.run(RunID(id)) else {
            throw NotFound(detail: "no run '\(id)'; GET /api/runs lists runs")
        }
        return run
    }

    // MARK: runs

    struct RunSummary: Encodable {
        var runId: String
        var pipeline: String
        var status: String
        var trigger: String
        var params: [String: String]
        var createdAt: String
        var startedAt: String?
        var finishedAt: String?
        var durationMs: Int64?
        var cancelRequested: Bool
        var interrupted: Bool
    }

    func summary(_ r: RunRecord) -> RunSummary {
        RunSummary(runId: r.id.rawValue, pipeline: r.pipeline, status: r.status.rawValue, trigger: r.trigger, params: r.params,
                   createdAt: EventLog.timestamp(r.createdAt), startedAt: r.startedAt.map(EventLog.timestamp),
                   finishedAt: r.finishedAt.map(EventLog.timestamp),
                   durationMs: r.startedAt.map { Int64((((r.finishedAt ?? engine.time.now()).timeIntervalSince($0)) * 1000).rounded()) },
                   cancelRequested: r.cancelRequestedAt != nil && !r.status.isTerminal, interrupted: engine.isInterrupted(r))
    }

    struct RunPage: Encodable {
        var runs: [RunSummary]
        var nextCursor: String?
    }

    /// `GET /api/runs?pipeline=&status=a,b&created_after=&created_before=&limit=&cursor=`: newest first.
    func listRuns(_ request: Request) async throws -> Response {
        try await answering {
            let q = request.uri.queryParameters
            let limit = try Self.integer(request, "limit", default: 50, range: 1...Self.maxPageSize)
            var statuses: [RunStatus] = []
            if let text = q["status"] {
                for part in text.split(separator: ",", omittingEmptySubsequences: false) {
                    guard let status = RunStatus(rawValue: String(part)) else {
                        throw BadRequest(error: "invalid status", detail: "'\(part)' is not a run status (pending, running, success, partial_success, failed, cancelled)")
                    }
                    statuses.append(status)
                }
            }
            let cursor = q["cursor"].map(String.init)
            if let cursor, !Self.validRunID(cursor) {
                throw BadRequest(error: "invalid cursor", detail: "use the next_cursor of the previous page")
            }
            let pipeline = try Self.text(request, "pipeline")
            let query = RunQuery(pipeline: pipeline, statuses: statuses,
                                 createdAfter: try Self.date(request, "created_after"), createdBefore: try Self.date(request, "created_before"),
                                 beforeID: cursor.map(RunID.init), limit: limit + 1)
            let runs = try await store.runs(matching: query)
            let page = Array(runs.prefix(limit))
            return try Self.encoded(.ok, RunPage(runs: page.map(summary), nextCursor: runs.count > limit ? page.last?.id.rawValue : nil))
        }
    }

    /// `GET /api/runs/{id}`: the run's report (as `sluice show --json`), with `cancel_requested` and `interrupted`.
    func runDetail(_ request: Request, _ context: some RequestContext) async throws -> Response {
        try await answering {
            let run = try await run(context)
            let report = try await RunReport.build(store: store, runID: run.id, allTasks: try Self.flag(request, "all_tasks"))
            guard var object = try JSONSerialization.jsonObject(with: try report.json()) as? [String: Any] else {
                throw BadRequest(error: "internal", detail: "report is not an object")
            }
            object["cancel_requested"] = run.cancelRequestedAt != nil && !run.status.isTerminal
            object["interrupted"] = engine.isInterrupted(run)
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
        }
    }

    // MARK: events

    struct Event: Encodable {
        var id: Int64
        var time: String
        var event: String
        var stage: String?
        var taskId: Int64?
        var attempt: Int?
        var message: String
        var attrs: [String: String]

        init(_ e: EventRecord) {
            id = e.id
            time = EventLog.timestamp(e.time)
            event = e.event
            stage = e.stage
            taskId = e.taskID
            attempt = e.attempt
            message = e.message
            attrs = e.attrs
        }
    }

    struct EventPage: Encodable {
        var events: [Event]
        /// Pass as `after` for the next page; the same value when there is nothing newer yet.
        var nextAfter: Int64
        var more: Bool
    }

    /// `GET /api/runs/{id}/events?after=&limit=`: oldest first.
    func events(_ request: Request, _ context: some RequestContext) async throws -> Response {
        try await answering {
            let run = try await run(context)
            let after = try Self.integer(request, "after", default: 0, range: 0...Int.max)
            let limit = try Self.integer(request, "limit", default: 200, range: 1...Self.maxEventPage)
            let events = try await store.events(run: run.id, afterID: Int64(after), limit: limit)
            return try Self.encoded(.ok, EventPage(events: events.map(Event.init), nextAfter: events.last?.id ?? Int64(after),
                                                   more: events.count == limit))
        }
    }

    /// `GET /api/runs/{id}/events/stream`: Server-Sent Events, in order, from `after` (or `Last-Event-ID`)
    /// until the run ended; a comment every 15 s keeps proxies from closing an idle stream. Each write
    /// waits for the client, so a slow reader only slows its own stream.
    func eventStream(_ request: Request, _ context: some RequestContext) async throws -> Response {
        try await answering {
            let run = try await run(context)
            var after = try Self.integer(request, "after", default: 0, range: 0...Int.max)
            if let last = request.headers.first(where: { $0.name.canonicalName == "last-event-id" })?.value {
                guard let id = Int(last), id >= 0 else { throw BadRequest(error: "invalid Last-Event-ID", detail: "'\(last)' is not an event id") }
                after = max(after, id)
            }
            let store = self.store, poll = configuration.poll, runID = run.id, start = Int64(after)
            let encoder = Self.encoder
            let body = ResponseBody { writer in
                var last = start
                var lastWrite = ContinuousClock.now
                var finalRead = false
                while true {
                    let batch = try await store.events(run: runID, afterID: last, limit: 500)
                    if !batch.isEmpty {
                        var text = ""
                        for event in batch {
                            text += "id: \(event.id)\nevent: \(Self.sseName(event.event))\ndata: \(String(decoding: try encoder.encode(Event(event)), as: UTF8.self))\n\n"
                        }
                        try await writer.write(ByteBuffer(string: text))
                        lastWrite = ContinuousClock.now
                        last = batch.last!.id
                        if batch.count == 500 { continue }
                    }
                    if finalRead {
                        let status = try await store.run(runID)?.status.rawValue ?? "unknown"
                        try await writer.write(ByteBuffer(string: "event: end\ndata: {\"status\":\"\(status)\"}\n\n"))
                        break
                    }
                    // One more read after the run ended: events recorded with its finish.
                    if try await store.run(runID)?.status.isTerminal ?? true { finalRead = true; continue }
                    // A stream of a live run would hold a graceful shutdown until the run ended: end it; the
                    // client comes back with Last-Event-ID.
                    if Task.isShuttingDownGracefully {
                        try await writer.write(ByteBuffer(string: ": server shutting down\n\n"))
                        break
                    }
                    if ContinuousClock.now - lastWrite >= .seconds(15) {
                        try await writer.write(ByteBuffer(string: ": keep-alive\n\n"))
                        lastWrite = ContinuousClock.now
                    }
                    try await Task.sleep(for: poll)
                }
                try await writer.finish(nil)
            }
            return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
        }
    }

    /// Event names go on one `event:` line: only characters that cannot break the framing.
    static func sseName(_ name: String) -> String {
        let cleaned = name.filter { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
        return cleaned.isEmpty ? "message" : cleaned
    }

    // MARK: progress

    struct ProgressPage: Encodable {
        var runId: String
        var status: String
        var stages: [StageProgress]
    }

    /// `GET /api/runs/{id}/progress`: done / expected / rate (since the stage started) / ETA per stage with tasks.
    func progress(_ request: Request, _ context: some RequestContext) async throws -> Response {
        try await answering {
            let run = try await run(context)
            let counts = try await store.taskCounts(run: run.id)
            let stages = try await store.stages(of: run.id)
            let status = Dictionary(stages.map { ($0.name, $0.status) }, uniquingKeysWith: { a, _ in a })
            let now = engine.time.now()
            let list = stages.compactMap { stage -> StageProgress? in
                guard let c = counts[stage.name], c.total > 0 else { return nil }
                let seconds = stage.startedAt.map { (stage.finishedAt ?? now).timeIntervalSince($0) } ?? 0
                let growing = run.spec.stage(stage.name)?.forEach.map { status[$0] == .running || status[$0] == .pending } ?? false
                return StageProgress(stage: stage.name, counts: c, ratePerSecond: seconds > 0 ? Double(c.finished) / seconds : 0, growing: growing)
            }
            return try Self.encoded(.ok, ProgressPage(runId: run.id.rawValue, status: run.status.rawValue, stages: list))
        }
    }

    // MARK: logs

    /// `GET /api/runs/{id}/tasks/{task}/logs?stream=stdout|stderr&attempt=&tail=&follow=`: a task's output.
    /// The file is found from the task's record (its run folder, stage and key), never from a path in the
    /// request; a path that would leave the run's folder is refused.
    func logs(_ request: Request, _ context: some RequestContext) async throws -> Response {
        try await answering {
            let run = try await run(context)
            let taskText = context.parameters.get("task") ?? ""
            guard let taskID = TaskID(taskText), taskID > 0, let task = try await store.task(taskID), task.runID == run.id else {
                throw NotFound(detail: "run \(run.id) has no task '\(taskText)'; task ids are in GET /api/runs/\(run.id)")
            }
            let stream = request.uri.queryParameters["stream"].map(String.init) ?? "stdout"
            guard stream == "stdout" || stream == "stderr" else {
                throw BadRequest(error: "invalid stream", detail: "'\(stream)' is neither stdout nor stderr")
            }
            guard task.attempts >= 1 else { throw NotFound(detail: "task \(taskID) has not started an attempt yet") }
            let attempt = try Self.integer(request, "attempt", default: task.attempts, range: 1...Int.max)
            guard attempt <= task.attempts else { throw NotFound(detail: "task \(taskID) has \(task.attempts) attempt(s)") }
            let tail = try Self.integer(request, "tail", default: 64 * 1024, range: 0...Self.maxTailBytes)
            let follow = try Self.flag(request, "follow")
            let files = RunFiles(directory: run.runDir)
            let name = Items.fileName(key: task.key, taskID: task.id)
            let path = stream == "stdout" ? files.stdout(stage: task.stage, task: name, attempt: attempt)
                                          : files.stderr(stage: task.stage, task: name, attempt: attempt)
            let root = URL(fileURLWithPath: run.runDir).standardizedFileURL.resolvingSymlinksInPath().path + "/"
            let resolved = URL(fileURLWithPath: path).standardizedFileURL.resolvingSymlinksInPath().path
            guard resolved.hasPrefix(root) else { throw NotFound(detail: "the log of task \(taskID) is outside its run's folder") }
            guard FileManager.default.fileExists(atPath: resolved) else {
                throw NotFound(detail: "no \(stream) file for task \(taskID) attempt \(attempt) (the run's folder may have been removed)")
            }
            let store = self.store, poll = configuration.poll
            let start = Self.fileSize(resolved).map { $0 > UInt64(tail) ? $0 - UInt64(tail) : 0 } ?? 0
            if !follow {
                let data = Self.read(resolved, from: start, limit: tail)
                return Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-cache"],
                                body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
            }
            let body = ResponseBody { writer in
                var offset = start
                while true {
                    let done = try await store.task(taskID).map { $0.status.isTerminal || $0.attempts > attempt } ?? true
                    while true {
                        let chunk = Self.read(resolved, from: offset, limit: 64 * 1024)
                        if chunk.isEmpty { break }
                        try await writer.write(ByteBuffer(bytes: chunk))
                        offset += UInt64(chunk.count)
                    }
                    if done || Task.isShuttingDownGracefully { break }
                    try await Task.sleep(for: poll)
                }
                try await writer.finish(nil)
            }
            return Response(status: .ok, headers: [.contentType: "text/plain; charset=utf-8", .cacheControl: "no-cache"], body: body)
        }
    }

    static func fileSize(_ path: String) -> UInt64? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.uint64Value
    }

    static func read(_ path: String, from offset: UInt64, limit: Int) -> Data {
        guard limit > 0, let handle = FileHandle(forReadingAtPath: path) else { return Data() }
        defer { try? handle.close() }
        guard (try? handle.seek(toOffset: offset)) != nil else { return Data() }
        return (try? handle.read(upToCount: limit)) ?? Data()
    }

    // MARK: pipelines and schedules

    struct PipelineInfo: Encodable {
        var name: String
        var description: String?
        var file: String?
        var params: [String: String]
        var stages: [String]
        var overlap: String
        var schedule: ScheduleInfo?
        var onFiles: String?
    }

    struct ScheduleInfo: Encodable {
        var pipeline: String
        var trigger: String
        var timeZone: String
        var nextFireAt: String?
        var missed: String
        var overlap: String
    }

    struct Served<T: Encodable>: Encodable {
        /// False under `sluice ui`: nothing is served, so nothing is listed.
        var serving: Bool
        var items: [T]
    }

    func scheduleInfo(_ spec: PipelineSpec, now: Date) -> ScheduleInfo? {
        guard let schedule = spec.schedule else { return nil }
        let missed: String = switch schedule.missed {
        case .skip: "skip"
        case .once: "once"
        case .all(let max): "all (max \(max))"
        }
        return ScheduleInfo(pipeline: spec.name, trigger: schedule.summary, timeZone: schedule.timeZone ?? "UTC",
                            nextFireAt: schedule.nextFire(after: now).map(EventLog.timestamp), missed: missed, overlap: spec.overlap.rawValue)
    }

    /// `GET /api/pipelines`: what `sluice serve` serves, with its triggers.
    func pipelines() throws -> Response {
        let now = engine.time.now()
        let items = (server?.pipelines ?? []).map { spec in
            PipelineInfo(name: spec.name, description: spec.description, file: spec.sourceFile, params: spec.params,
                         stages: spec.stages.map(\.name), overlap: spec.overlap.rawValue, schedule: scheduleInfo(spec, now: now),
                         onFiles: spec.onFiles.map { "files \($0.glob) (settle \(DurationText.format($0.settle)))" })
        }
        return try Self.encoded(.ok, Served(serving: server != nil, items: items))
    }

    /// `GET /api/schedules`: every schedule served, with its next fire time.
    func schedules() throws -> Response {
        let now = engine.time.now()
        return try Self.encoded(.ok, Served(serving: server != nil, items: (server?.pipelines ?? []).compactMap { scheduleInfo($0, now: now) }))
    }

    // MARK: artifacts

    struct ArtifactVersion: Encodable {
        var pipeline: String
        var name: String
        var version: Int
        var sha256: String
        var size: Int64
        var createdAt: Date
        var runId: String?
        var stage: String?
        var file: String
        var annotations: [String: String]
    }

    struct ArtifactList: Encodable {
        var items: [ArtifactVersion]
    }

    /// `GET /api/artifacts`: recorded artifact versions, newest first, by pipeline, name and run.
    func artifacts(_ request: Request) async throws -> Response {
        try await answering { try await artifactList(request) }
    }

    func artifactList(_ request: Request) async throws -> Response {
        let run = try Self.text(request, "run_id")
        if let run, !Self.validRunID(run) { throw BadRequest(error: "invalid run_id", detail: "'\(run.prefix(40))' is not a run id") }
        let versions = try await store.artifactVersions(pipeline: try Self.text(request, "pipeline"), name: try Self.text(request, "name"),
                                                        run: run.map(RunID.init))
        return try Self.encoded(.ok, ArtifactList(items: versions.map { v in
            ArtifactVersion(pipeline: v.pipeline, name: v.name, version: v.version, sha256: v.sha256, size: v.size,
                            createdAt: v.createdAt, runId: v.runID?.rawValue, stage: v.stage, file: v.file,
                            annotations: v.annotations)
        }))
    }

    // MARK: sessions

    struct SessionList: Encodable {
        var items: [SessionSummary]
    }

    /// A session id (`NAME-YYYYMMDD-HHMMSS-xxxxxx`).
    static func validSessionID(_ text: String) -> Bool { validID(text, maxLength: 240, punctuation: "-_.") }

    /// `GET /api/sessions?name=&status=&limit=`: coordination sessions, newest first, with their members.
    func listSessions(_ request: Request) async throws -> Response {
        try await answering {
            let q = request.uri.queryParameters
            var query = SessionQuery(limit: try Self.integer(request, "limit", default: 50, range: 1...Self.maxPageSize))
            query.name = try Self.text(request, "name")
            if let text = q["status"].map(String.init) {
                guard let status = SessionStatus(rawValue: text) else {
                    throw BadRequest(error: "invalid status",
                                     detail: "'\(text.prefix(40))' is not a session status (\(SessionStatus.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                query.status = status
            }
            let sessions = try await store.sessions(matching: query)
            return try Self.encoded(.ok, SessionList(items: sessions.map { SessionSummary($0) }))
        }
    }

    /// `GET /api/sessions/{id}`: one session, its members' runs, what is missing and its notifications.
    func sessionDetail(_ context: some RequestContext) async throws -> Response {
        try await answering {
            let id = context.parameters.get("id") ?? ""
            guard Self.validSessionID(id),
                  let session = try await store.sessions(matching: SessionQuery(idPrefix: id, limit: 2)).first(where: { $0.id == id }) else {
                throw NotFound(detail: "no session '\(id.prefix(80))'; GET /api/sessions lists sessions")
            }
            let notifications = try await store.notifications(matching: NotificationQuery(sessionID: session.id, limit: 100))
            return try Self.encoded(.ok, SessionSummary(session, notifications: notifications))
        }
    }

    // MARK: actions

    struct ActionAnswer: Encodable {
        var runId: String
        var status: String
        var detail: String
    }

    /// `POST /api/runs/{id}/cancel`: 202 when requested (the process executing it stops it), 409 when it ended.
    func cancel(_ context: some RequestContext) async throws -> Response {
        try await answering {
            let run = try await run(context)
            switch try await engine.cancel(run) {
            case .notFound:
                throw NotFound(detail: "no run '\(run.id)'")
            case .alreadyFinished(let r):
                return try APIServer.error(.conflict, "already ended", "run \(r.id) ended \(r.status.rawValue); nothing to cancel")
            case .requested(let r):
                let now = try await store.run(r.id)
                return try Self.encoded(.accepted, ActionAnswer(runId: r.id.rawValue, status: now?.status.rawValue ?? r.status.rawValue,
                                                                detail: now?.status == .cancelled ? "cancelled" : "cancel requested"))
            }
        }
    }

    /// `POST /api/runs/{id}/resume` and `/retry` (`--retry-failed`): this process executes the run again;
    /// what succeeded is kept. 202 when started, 409 when there is nothing to do or someone executes it.
    func resume(_ context: some RequestContext, retryFailed: Bool) async throws -> Response {
        try await answering {
            let run = try await run(context)
            let verb = retryFailed ? "retry" : "resume"
            if run.status == .success {
                return try APIServer.error(.conflict, "nothing to \(verb)", "run \(run.id) succeeded")
            }
            if !run.status.isTerminal && !engine.isInterrupted(run) {
                return try APIServer.error(.conflict, "run is active", "run \(run.id) is being executed; cancel it first or wait until it ends")
            }
            let stages = try await store.stages(of: run.id)
            if run.status.isTerminal && !retryFailed && !stages.contains(where: { $0.status == .cancelled || !$0.status.isTerminal }) {
                return try APIServer.error(.conflict, "nothing to resume",
                                           "run \(run.id) ended \(run.status.rawValue) with nothing unfinished; POST /api/runs/\(run.id)/retry runs failed stages again")
            }
            let missing = run.spec.stages.filter { $0.command == .swift && engine.inProcess.body(pipeline: run.pipeline, stage: $0.name) == nil }
            if !missing.isEmpty {
                return try APIServer.error(.conflict, "cannot execute here",
                                           "stages \(missing.map(\.name).joined(separator: ", ")) are Swift code this server does not have; use the pipeline's executable (`resume`)")
            }
            guard executions.submit(run, retryFailed: retryFailed) else {
                return try APIServer.error(.serviceUnavailable, "shutting down", "the server is stopping; try again once it is back")
            }
            return try Self.encoded(.accepted, ActionAnswer(runId: run.id.rawValue, status: run.status.rawValue,
                                                            detail: retryFailed ? "retrying failed stages" : "resuming"))
        }
    }

    // MARK: metrics

    func metricsText() async throws -> Response {
        let text = try await metrics.render(store: store)
        return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    // MARK: encoding

    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, enc in
            var c = enc.singleValueContainer()
            try c.encode(EventLog.timestamp(date))
        }
        return encoder
    }

    static func encoded(_ status: HTTPResponse.Status, _ value: some Encodable) throws -> Response {
        Response(status: status, headers: [.contentType: "application/json"],
                 body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }
}
