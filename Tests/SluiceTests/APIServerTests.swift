import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Logging
import Testing
import SluiceCore
import SluiceEngine
import SluiceHTTP
import SluiceStore
import SluiceTesting
import SluiceTriggers

/// The HTTP API, `/metrics` and the dashboard, served for real on an ephemeral port over a real SQLite store.
struct APIHarness {
    let fixture: EngineFixture
    var engine: Engine { fixture.engine }
    var store: any StateStore { fixture.engine.store }

    init() throws { fixture = try EngineFixture() }

    /// Runs the server (on port 0, loopback) while `body` runs; `server` serves pipelines (serve mode).
    func serving(openReads: Bool = true, server: Server? = nil, _ body: (URL) async throws -> Void) async throws {
        var configuration = APIConfiguration(host: "127.0.0.1", port: 0)
        configuration.openReadsOnLoopback = openReads
        configuration.poll = .milliseconds(50)
        let (ports, found) = AsyncStream.makeStream(of: Int.self)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let engine = self.engine, settings = configuration, log = logger
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await APIServer.run(engine: engine, server: server, configuration: settings, logger: log) { port in found.yield(port) }
            }
            if let server { group.addTask { try await server.run() } }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            do {
                try await body(URL(string: "http://127.0.0.1:\(port)")!)
            } catch {
                group.cancelAll()
                throw error
            }
            group.cancelAll()
        }
    }

    func token(_ name: String = "t") async throws -> String {
        let (secret, hash) = APITokens.generate()
        #expect(try await store.createToken(APIToken(name: name, hash: hash, createdAt: Date())))
        return secret
    }

    struct Answer {
        var status: Int
        var data: Data
        var contentType: String
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:] }
        var text: String { String(decoding: data, as: UTF8.self) }
    }

    static func request(_ base: URL, _ path: String, method: String = "GET", body: String? = nil, token: String? = nil) async throws -> Answer {
        var request = URLRequest(url: URL(string: base.absoluteString + path)!)
        request.httpMethod = method
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = response as? HTTPURLResponse
        return Answer(status: http?.statusCode ?? 0, data: data, contentType: http?.value(forHTTPHeaderField: "Content-Type") ?? "")
    }

    /// Waits until `condition` holds (no timing assertion: a generous bound against hanging forever).
    func until(_ condition: () async throws -> Bool) async throws {
        for _ in 0..<1200 {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(25))
        }
        Issue.record("condition not met")
    }
}

/// A minimal HTTP/1.1 client on a socket, for reading a stream as it arrives (and for a client that never reads).
final class RawHTTP: @unchecked Sendable {
    let fd: Int32

    init(port: Int, path: String) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { close(fd); throw EngineError(.io, "connect failed") }
        let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
        _ = request.withCString { send(fd, $0, strlen($0), 0) }
    }

    /// Reads until the server closes, telling `seen` everything read so far. Blocking: call off the main actor.
    func read(_ seen: (String) -> Void) -> String {
        var text = Data()
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            text.append(contentsOf: buffer[0..<n])
            seen(String(decoding: text, as: UTF8.self))
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// `read` on a thread of its own: a blocking read must not hold one of the few threads Swift
    /// concurrency runs every test's tasks on.
    func readOnThread(_ seen: @escaping @Sendable (String) -> Void) async -> String {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: self.read(seen)) }.start()
        }
    }

    deinit { close(fd) }

    /// The body of a chunked response, decoded (bytes, not characters: "\r\n" is one Character).
    static func dechunk(_ raw: String) -> String {
        let bytes = Array(raw.utf8)
        func crlf(from i: Int) -> Int? {
            var j = i
            while j >= 0 && j + 1 < bytes.count { if bytes[j] == 13 && bytes[j + 1] == 10 { return j }; j += 1 }
            return nil
        }
        var i = 0
        while let end = crlf(from: i), end != i { i = end + 2 }   // headers, up to the empty line
        i += 2
        var body: [UInt8] = []
        while i < bytes.count, let end = crlf(from: i), let size = Int(String(decoding: bytes[i..<end], as: UTF8.self), radix: 16), size > 0 {
            let start = end + 2
            body += bytes[start..<min(bytes.count, start + size)]
            i = start + size + 2
        }
        return String(decoding: body, as: UTF8.self)
    }
}

/// What a reading thread has seen so far.
final class Seen: @unchecked Sendable {
    private let lock = NSLock()
    private var value = ""
    var text: String {
        get { lock.withLock { value } }
        set { lock.withLock { value = newValue } }
    }
}

@Suite("HTTP API")
struct APIServerTests {
    @Test func readsPaginateValidateAndAnswer404AndLogsNeverLeaveTheRunFolder() async throws {
        let h = try APIHarness()
        let (ok, first) = try await h.fixture.run("""
            name: greet
            stages:
              hello: { run: [sh, -c, "echo hello-out; echo hello-err >&2"] }
              count: { needs: [hello], run: [sh, -c, "echo '::count:: rows 7'"] }
            """)
        #expect(ok == .success)
        _ = try await h.fixture.run("name: other\nstages:\n  a: { run: [\"false\"] }\n")
        let (_, third) = try await h.fixture.run("name: greet\nstages:\n  hello: { run: [\"true\"] }\n")
        try await h.serving { base in
            let all = try await APIHarness.request(base, "/api/runs")
            #expect(all.status == 200 && all.contentType.hasPrefix("application/json"))
            let runs = try #require(all.json["runs"] as? [[String: Any]])
            #expect(runs.count == 3)
            #expect(runs.first?["run_id"] as? String == third.id.rawValue, "newest first")
            #expect(all.json["next_cursor"] == nil)

            let page1 = try await APIHarness.request(base, "/api/runs?limit=2")
            let cursor = try #require(page1.json["next_cursor"] as? String)
            let page2 = try await APIHarness.request(base, "/api/runs?limit=2&cursor=\(cursor)")
            let paged = ((page1.json["runs"] as? [[String: Any]] ?? []) + (page2.json["runs"] as? [[String: Any]] ?? [])).compactMap { $0["run_id"] as? String }
            #expect(paged == runs.compactMap { $0["run_id"] as? String })
            #expect(page2.json["next_cursor"] == nil)

            let failed = try await APIHarness.request(base, "/api/runs?status=failed")
            #expect((failed.json["runs"] as? [[String: Any]])?.map { $0["pipeline"] as? String } == ["other"])
            let greet = try await APIHarness.request(base, "/api/runs?pipeline=greet&status=success,failed")
            #expect((greet.json["runs"] as? [Any])?.count == 2)
            let future = try await APIHarness.request(base, "/api/runs?created_after=2999-01-01T00:00:00Z")
            #expect((future.json["runs"] as? [Any])?.count == 0)
            let past = try await APIHarness.request(base, "/api/runs?created_after=2000-01-01T01:30:00.25%2B01:30&created_before=2999-01-01T00:00:00Z")
            #expect((past.json["runs"] as? [Any])?.count == 3, "RFC 3339 with an offset and a fraction")
            let wrongMethod = try await APIHarness.request(base, "/api/runs", method: "POST", body: "{}")
            #expect(wrongMethod.status == 405 && wrongMethod.json["error"] as? String == "method not allowed")
            #expect(try await APIHarness.request(base, "/api/runs/\(first.id)/cancel").status == 405)

            for bad in ["limit=0", "limit=201", "limit=-5", "limit=abc", "limit=99999999999999999999999", "status=bogus",
                        "created_after=yesterday", "created_after=2026-13-01T00:00:00Z", "created_before=2026-01-01", "cursor=../../etc",
                        "pipeline=", "status=", "status=failed,,success",
                        // 150 characters to the eye, 300 to JSON Schema's maxLength (an e and a combining accent each)
                        "pipeline=" + String(repeating: "e%CC%81", count: 150)] {
                let answer = try await APIHarness.request(base, "/api/runs?\(bad)")
                #expect(answer.status == 400, "\(bad)")
                #expect(answer.json["error"] is String && answer.json["detail"] is String, "\(bad): JSON {error, detail}")
            }
            for missing in ["/api/runs/20990101-000000-abcdef", "/api/runs/nope/events", "/api/runs/nope/progress", "/api/nothing",
                            "/api/runs/%2E%2E%2Fetc/events"] {
                let answer = try await APIHarness.request(base, missing)
                #expect(answer.status == 404, "\(missing)")
                #expect(answer.json["error"] is String, "\(missing): JSON error")
            }

            let detail = try await APIHarness.request(base, "/api/runs/\(first.id)")
            #expect(detail.status == 200)
            #expect(detail.json["status"] as? String == "success")
            let stages = try #require(detail.json["stages"] as? [[String: Any]])
            #expect(stages.map { $0["name"] as? String } == ["hello", "count"])
            #expect((stages[1]["counters"] as? [String: Int])?["rows"] == 7)
            let task = try #require((stages[0]["tasks"] as? [[String: Any]])?.first)
            let taskID = try #require(task["id"] as? Int)
            #expect((task["attempts"] as? [[String: Any]])?.first?["outcome"] as? String == "success")

            let events = try await h.store.events(run: first.id, afterID: 0, limit: 1000)
            var paged2: [Int] = []
            var after = 0
            while true {
                let page = try await APIHarness.request(base, "/api/runs/\(first.id)/events?after=\(after)&limit=3")
                let ids = (page.json["events"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? Int }
                paged2 += ids
                after = page.json["next_after"] as? Int ?? after
                if page.json["more"] as? Bool != true { break }
            }
            #expect(paged2 == events.map { Int($0.id) }, "event pages cover every event once, in order")
            #expect(try await APIHarness.request(base, "/api/runs/\(first.id)/events?limit=1001").status == 400)
            #expect(try await APIHarness.request(base, "/api/runs/\(first.id)/events?after=-1").status == 400)

            let log = try await APIHarness.request(base, "/api/runs/\(first.id)/tasks/\(taskID)/logs")
            #expect(log.status == 200 && log.text == "hello-out\n")
            #expect(try await APIHarness.request(base, "/api/runs/\(first.id)/tasks/\(taskID)/logs?stream=stderr").text == "hello-err\n")
            #expect(try await APIHarness.request(base, "/api/runs/\(first.id)/tasks/\(taskID)/logs?tail=4").text == "out\n")
            let followed = try await APIHarness.request(base, "/api/runs/\(first.id)/tasks/\(taskID)/logs?follow=true")
            #expect(followed.text == "hello-out\n", "following a finished task returns its log and ends")
            for bad in ["stream=../../etc/passwd", "tail=-1", "tail=9999999999", "attempt=0", "follow=maybe"] {
                #expect(try await APIHarness.request(base, "/api/runs/\(first.id)/tasks/\(taskID)/logs?\(bad)").status == 400, "\(bad)")
            }
            for bad in ["../../../etc/passwd", "..%2F..%2Fstate.sqlite", "abc", "0", "99999"] {
                #expect(try await APIHarness.request(base, "/api/runs/\(first.id)/tasks/\(bad)/logs").status == 404, "\(bad)")
            }
            // A task of another run is not found through this one.
            #expect(try await APIHarness.request(base, "/api/runs/\(third.id)/tasks/\(taskID)/logs").status == 404)
            #expect(try await APIHarness.request(base, "/api/runs/\(first.id)/tasks/\(taskID)/logs?attempt=2").status == 404)

            let progress = try await APIHarness.request(base, "/api/runs/\(first.id)/progress")
            let rows = try #require(progress.json["stages"] as? [[String: Any]])
            #expect(rows.map { $0["stage"] as? String } == ["hello", "count"])
            #expect(rows.allSatisfy { $0["done"] as? Int == 1 && $0["expected"] as? Int == 1 })

            let page = try await APIHarness.request(base, "/")
            #expect(page.status == 200 && page.contentType.hasPrefix("text/html") && page.text.contains("<title>Sluice</title>"))
            #expect(try await APIHarness.request(base, "/api/schedules").json["serving"] as? Bool == false)
        }
    }

    @Test func changesNeedAValidTokenAndRefusedRequestsChangeNothing() async throws {
        let h = try APIHarness()
        let (outcome, run) = try await h.fixture.run("name: flaky\nstages:\n  check: { run: [test, -f, ok] }\n")
        #expect(outcome == .failed)
        let token = try await h.token("ops")
        let revoked = try await h.token("old")
        #expect(try await h.store.revokeToken(name: "old", now: Date()))
        let before = try await h.store.events(run: run.id, afterID: 0, limit: 10_000).count
        try await h.serving { base in
            for action in ["cancel", "retry", "resume"] {
                for bad in [nil, "slc_wrong", revoked] {
                    let answer = try await APIHarness.request(base, "/api/runs/\(run.id)/\(action)", method: "POST", token: bad)
                    #expect(answer.status == 401, "\(action) with \(bad ?? "no token")")
                    #expect(answer.json["error"] as? String == "unauthorized")
                }
            }
            #expect(try await APIHarness.request(base, "/api/pipelines/flaky/runs", method: "POST", body: "{}").status == 401)
            #expect(try await h.store.events(run: run.id, afterID: 0, limit: 10_000).count == before, "refused requests record nothing")
            #expect(try await h.store.run(run.id)?.status == .failed)
            // With a token: a finished run cannot be cancelled, a failed one has nothing unfinished to resume.
            #expect(try await APIHarness.request(base, "/api/runs/\(run.id)/cancel", method: "POST", token: token).status == 409)
            #expect(try await APIHarness.request(base, "/api/runs/\(run.id)/resume", method: "POST", token: token).status == 409)
            #expect(try await APIHarness.request(base, "/api/runs/20990101-000000-abcdef/retry", method: "POST", token: token).status == 404)
            // `sluice ui` serves no pipelines: nothing to trigger.
            #expect(try await APIHarness.request(base, "/api/pipelines/flaky/runs", method: "POST", body: "{}", token: token).status == 404)
            // Retry runs the failed stage again, executed by the server.
            try h.fixture.dir.write("ok", "")
            let retry = try await APIHarness.request(base, "/api/runs/\(run.id)/retry", method: "POST", token: token)
            #expect(retry.status == 202)
            try await h.until { try await h.store.run(run.id)?.status == .success }
            #expect(try await APIHarness.request(base, "/api/runs/\(run.id)/retry", method: "POST", token: token).status == 409, "nothing left to retry")
            let metrics = try await APIHarness.request(base, "/metrics")
            #expect(metrics.text.contains("sluice_api_actions_total{action=\"retry\"} 1"))
        }
        // Reads need a token too when open reads are turned off.
        try await h.serving(openReads: false) { (base: URL) async throws in
            #expect(try await APIHarness.request(base, "/api/runs").status == 401)
            #expect(try await APIHarness.request(base, "/metrics").status == 401)
            #expect(try await APIHarness.request(base, "/api/runs", token: revoked).status == 401)
            #expect(try await APIHarness.request(base, "/api/runs", token: token).status == 200)
            #expect(try await APIHarness.request(base, "/api/health").status == 200)
        }
    }

    @Test func triggerWithParamsStartsARunAndCancelStopsIt() async throws {
        let h = try APIHarness()
        try h.fixture.dir.write("wait.yml", """
            name: wait
            overlap: allow
            schedule: "0 0 1 1 *"
            params:
              who: nobody
            stages:
              hold: { run: [sh, -c, "echo $0 > who.txt; while [ ! -f never ]; do sleep 0.05; done", "{{params.who}}"] }
            """)
        let server = Server(engine: h.engine, catalog: Catalog(sources: [h.fixture.dir.file("wait.yml")])) { _ in }
        let token = try await h.token()
        try await h.serving(server: server) { base in
            try await h.until { try await APIHarness.request(base, "/api/pipelines").json["items"].map { ($0 as? [Any])?.count == 1 } ?? false }
            let schedules = try await APIHarness.request(base, "/api/schedules")
            let schedule = try #require((schedules.json["items"] as? [[String: Any]])?.first)
            #expect(schedules.json["serving"] as? Bool == true && schedule["pipeline"] as? String == "wait" && schedule["time_zone"] as? String == "UTC")
            let year = Calendar(identifier: .gregorian).component(.year, from: Date()) + 1
            #expect((schedule["next_fire_at"] as? String)?.hasPrefix("\(year)-01-01T00:00:00") == true, "the next firing: next new year, UTC")
            #expect(try await APIHarness.request(base, "/api/pipelines/wait/runs", method: "POST", body: "{not json", token: token).status == 400)
            #expect(try await APIHarness.request(base, "/api/pipelines/wait/runs", method: "POST", body: #"{"params": {"who": 5}}"#, token: token).status == 400)
            #expect(try await APIHarness.request(base, "/api/pipelines/wait/runs", method: "POST", body: #"{"params": {"whom": "x"}}"#, token: token).status == 400)
            let started = try await APIHarness.request(base, "/api/pipelines/wait/runs", method: "POST", body: #"{"params": {"who": "alice"}}"#, token: token)
            #expect(started.status == 201)
            let id = try #require(started.json["run_id"] as? String)
            try await h.until { (try? String(contentsOfFile: h.fixture.dir.file("who.txt"), encoding: .utf8)) == "alice\n" }
            let cancel = try await APIHarness.request(base, "/api/runs/\(id)/cancel", method: "POST", token: token)
            #expect(cancel.status == 202)
            try await h.until { try await h.store.run(RunID(id))?.status == .cancelled }
            let resume = try await APIHarness.request(base, "/api/runs/\(id)/cancel", method: "POST", token: token)
            #expect(resume.status == 409, "cancelling an ended run")
        }
    }

    @Test func sseDeliversALiveRunsEventsInOrderAndASlowClientDoesNotStopOthers() async throws {
        let h = try APIHarness()
        let spec = try h.fixture.spec("""
            name: live
            stages:
              wait: { run: [sh, -c, "while [ ! -f go ]; do sleep 0.05; done"] }
              after: { needs: [wait], run: ["true"] }
            """)
        guard case .started(let run) = try await h.engine.start(spec) else { Issue.record("not started"); return }
        let engine = h.engine
        let execution = Task { try await engine.execute(run) }
        try await h.serving { base in
            let port = try #require(base.port)
            // A client that never reads a stream of a live run.
            let idle = try RawHTTP(port: port, path: "/api/runs/\(run.id)/events/stream")
            let client = try RawHTTP(port: port, path: "/api/runs/\(run.id)/events/stream")
            let go = h.fixture.dir.file("go")
            let raw = await client.readOnThread { text in
                    // Once the run's first events arrived, let it go on: what follows is recorded while streaming.
                    if text.contains("run.start") && !FileManager.default.fileExists(atPath: go) {
                        _ = FileManager.default.createFile(atPath: go, contents: nil)
                    }
            }
            #expect(try await APIHarness.request(base, "/api/health").status == 200, "the idle client does not stop others")
            _ = idle
            let body = RawHTTP.dechunk(raw)
            #expect(raw.contains("text/event-stream"))
            let ids = body.split(separator: "\n").compactMap { $0.hasPrefix("id: ") ? Int64($0.dropFirst(4)) : nil }
            let recorded = try await h.store.events(run: run.id, afterID: 0, limit: 10_000)
            #expect(ids == recorded.map(\.id), "every event once, in order")
            #expect(body.contains("event: stage.success"))
            #expect(body.hasSuffix("event: end\ndata: {\"status\":\"success\"}\n\n"))
            // Resuming from Last-Event-ID / after gives only newer events.
            let tail = try await APIHarness.request(base, "/api/runs/\(run.id)/events/stream?after=\(ids[ids.count - 2])")
            #expect(tail.text.components(separatedBy: "id: ").count == 2)
        }
        #expect(try await execution.value == .success)
    }

    @Test func artifactVersionsAreListedByPipelineNameAndRun() async throws {
        let h = try APIHarness()
        let (ok, run) = try await h.fixture.run("name: collect\nstages:\n  build: { run: [\"true\"] }\n")
        #expect(ok == .success)
        let now = Date()
        for (version, name) in [(1, "sales.sqlite"), (2, "sales.sqlite"), (1, "stock.sqlite")] {
            try await h.store.recordArtifactVersion(ArtifactVersionRecord(
                pipeline: "collect", name: name, version: version, sha256: String(repeating: "\(version)", count: 64), size: 8192,
                createdAt: now.addingTimeInterval(Double(version)), runID: version == 2 ? run.id : nil, stage: "build", root: "/srv/collect",
                file: "newest/\(name).v\(version)", annotations: ["source": "test"]), events: [])
        }
        try await h.serving { base in
            let all = try await APIHarness.request(base, "/api/artifacts?pipeline=collect")
            #expect(all.status == 200)
            let items = try #require(all.json["items"] as? [[String: Any]])
            #expect(items.count == 3)
            let sales = try await APIHarness.request(base, "/api/artifacts?name=sales.sqlite").json["items"] as? [[String: Any]]
            #expect(sales?.map { $0["version"] as? Int ?? 0 } == [2, 1], "newest first")
            #expect(sales?.first?["annotations"] as? [String: String] == ["source": "test"])
            let byRun = try await APIHarness.request(base, "/api/artifacts?run_id=\(run.id.rawValue)").json["items"] as? [[String: Any]]
            #expect(byRun?.count == 1 && byRun?.first?["run_id"] as? String == run.id.rawValue)
            #expect(try await APIHarness.request(base, "/api/artifacts?run_id=../x").status == 400)
            #expect(try await APIHarness.request(base, "/api/artifacts?pipeline=").status == 400)
            #expect((try await APIHarness.request(base, "/api/artifacts?pipeline=none").json["items"] as? [Any])?.isEmpty == true)
        }
    }

    @Test func sessionsAreListedWithTheirMembersAndNotificationsAndCountedInMetrics() async throws {
        let h = try APIHarness()
        let yaml = """
            name: si
            session: { name: daily, title: Daily report, members: [si, viajeros], timeout: 1h,
                       on_complete: [{ file: { dir: reports } }] }
            stages:
              a: { run: ["true"] }
            """
        let (ok, run) = try await h.fixture.run(yaml)
        #expect(ok == .success)
        let session = try #require(try await h.store.session(ofRun: run.id))
        try await h.serving { base in
            let list = try await APIHarness.request(base, "/api/sessions")
            #expect(list.status == 200)
            let items = try #require(list.json["items"] as? [[String: Any]])
            #expect(items.count == 1)
            let first = try #require(items.first)
            #expect(first["session_id"] as? String == session.id)
            #expect(first["status"] as? String == "open" && first["title"] as? String == "Daily report")
            #expect(first["missing"] as? [String] == ["viajeros"])
            let members = try #require(first["members"] as? [[String: Any]])
            #expect(members.map { $0["pipeline"] as? String } == ["si", "viajeros"])
            #expect(members.map { $0["status"] as? String } == ["success", "missing"])
            #expect(members.first?["run_id"] as? String == run.id.rawValue)
            #expect((try await APIHarness.request(base, "/api/sessions?status=complete").json["items"] as? [Any])?.isEmpty == true)
            #expect((try await APIHarness.request(base, "/api/sessions?name=daily&status=open").json["items"] as? [Any])?.count == 1)
            #expect(try await APIHarness.request(base, "/api/sessions?status=done").status == 400)
            #expect(try await APIHarness.request(base, "/api/sessions?limit=0").status == 400)

            let detail = try await APIHarness.request(base, "/api/sessions/\(session.id)")
            #expect(detail.status == 200 && detail.json["session_id"] as? String == session.id)
            #expect(detail.json["notifications"] as? [Any] != nil, "the detail lists the session's notifications")
            #expect(try await APIHarness.request(base, "/api/sessions/nope-20260101-000000-abcdef").status == 404)
            #expect(try await APIHarness.request(base, "/api/sessions/..%2F..%2Fetc").status == 404)

            let samples = try PrometheusText.parse(try await APIHarness.request(base, "/metrics").text)
            #expect(samples.first { $0.name == "sluice_sessions" && $0.labels == ["session": "daily", "status": "open"] }?.value == 1)
        }
    }

    @Test func metricsParseAndMatchTheStore() async throws {
        let h = try APIHarness()
        _ = try await h.fixture.run("name: m1\nstages:\n  a: { run: [\"true\"] }\n  b: { needs: [a], run: [\"true\"] }\n")
        _ = try await h.fixture.run("name: m1\nstages:\n  a: { run: [\"false\"] }\n")
        _ = try await h.fixture.run("name: m2\nnotify: { on_success: [{ file: { dir: out } }] }\nstages:\n  a: { run: [\"true\"] }\n")
        try await h.serving { base in
            let answer = try await APIHarness.request(base, "/metrics")
            #expect(answer.status == 200 && answer.contentType.hasPrefix("text/plain"))
            let samples = try PrometheusText.parse(answer.text)
            func value(_ name: String, _ labels: [String: String]) -> Double? {
                samples.first { $0.name == name && $0.labels == labels }?.value
            }
            let stats = try await h.store.statistics(durationBounds: [1])
            for (key, n) in stats.runs {
                #expect(value("sluice_runs", ["pipeline": key.pipeline, "status": key.state]) == Double(n))
            }
            #expect(value("sluice_runs", ["pipeline": "m1", "status": "success"]) == 1)
            #expect(value("sluice_runs", ["pipeline": "m1", "status": "failed"]) == 1)
            #expect(value("sluice_tasks", ["pipeline": "m1", "status": "success"]) == 2)
            #expect(value("sluice_tasks", ["pipeline": "m1", "status": "failed"]) == 1)
            #expect(value("sluice_trigger_firings", ["pipeline": "m1", "trigger": "manual"]) == 2)
            let attempts = try await h.store.attempts(of: try #require(try await h.store.recentRuns(pipeline: "m1", limit: 10).first).id)
            #expect(!attempts.isEmpty)
            #expect(value("sluice_task_duration_seconds_count", ["pipeline": "m1"]) == 3)
            #expect(value("sluice_task_duration_seconds_bucket", ["pipeline": "m1", "le": "+Inf"]) == 3)
            #expect(value("sluice_queue_depth", ["pipeline": "m2"]) == 0)
            // m2's report waits in the outbox (nothing delivers in this test): the backlog counts it.
            #expect(value("sluice_notifications", ["kind": "run_report", "status": "pending"]) == 1)
            #expect(value("sluice_notification_backlog", ["kind": "run_report"]) == 1)
        }
    }

    @Test func everyRouteOfTheOpenAPIDocumentAnswersAsItSays() async throws {
        let h = try APIHarness()
        let (_, run) = try await h.fixture.run("name: doc\nstages:\n  a: { run: [sh, -c, \"echo hi\"] }\n")
        let taskID = try #require(try await h.store.tasks(of: run.id).first?.id)
        let token = try await h.token()
        try await h.serving { base in
            let answer = try await APIHarness.request(base, "/api/openapi.json")
            #expect(answer.status == 200)
            let document = answer.json
            #expect(document["openapi"] as? String == "3.1.0")
            let paths = try #require(document["paths"] as? [String: [String: Any]])
            let shared = (document["components"] as? [String: Any])?["responses"] as? [String: Any] ?? [:]
            /// A response as written, or the shared one its `$ref` names.
            func resolved(_ response: Any?) -> [String: Any]? {
                guard let response = response as? [String: Any] else { return nil }
                guard let ref = response["$ref"] as? String else { return response }
                let name = ref.replacingOccurrences(of: "#/components/responses/", with: "")
                #expect(shared[name] != nil, "\(ref) is not in components.responses")
                return shared[name] as? [String: Any]
            }
            var checked = 0
            for (template, operations) in paths.sorted(by: { $0.key < $1.key }) {
                let path = template.replacingOccurrences(of: "{id}", with: run.id.rawValue)
                    .replacingOccurrences(of: "{task}", with: String(taskID)).replacingOccurrences(of: "{name}", with: "doc")
                for (method, operation) in operations {
                    let responses = try #require((operation as? [String: Any])?["responses"] as? [String: Any], "\(method) \(template)")
                    let got = try await APIHarness.request(base, path, method: method.uppercased(), body: method == "post" ? "{}" : nil, token: token)
                    #expect(responses[String(got.status)] != nil, "\(method.uppercased()) \(template) answered \(got.status), not in the document")
                    if let content = resolved(responses[String(got.status)])?["content"] as? [String: Any] {
                        #expect(content.keys.contains { got.contentType.hasPrefix($0) }, "\(method.uppercased()) \(template): \(got.contentType)")
                    }
                    checked += 1
                }
            }
            #expect(checked == paths.values.reduce(0) { $0 + $1.count })
            // And every route the server has is in the document: an undocumented one would be a 404 here.
            #expect(paths.keys.contains("/api/runs/{id}/events/stream") && paths.keys.contains("/metrics"))
        }
    }
}

/// A strict reader of the Prometheus text format (0.0.4): comments, and `name{label="value",…} number` samples.
enum PrometheusText {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    struct Malformed: Error, CustomStringConvertible {
        var line: String
        var description: String { "not a Prometheus sample: \(line)" }
    }

    static func parse(_ text: String) throws -> [Sample] {
        var samples: [Sample] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ")
                guard parts.count >= 3, parts[1] == "HELP" || parts[1] == "TYPE" else { throw Malformed(line: String(line)) }
                if parts[1] == "TYPE", !["counter", "gauge", "histogram", "summary", "untyped"].contains(String(parts.count > 3 ? parts[3] : "")) {
                    throw Malformed(line: String(line))
                }
                continue
            }
            var rest = Substring(line)
            let name = rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" || $0 == ":" }
            guard let first = name.first, !first.isNumber else { throw Malformed(line: String(line)) }
            rest = rest.dropFirst(name.count)
            var labels: [String: String] = [:]
            if rest.first == "{" {
                rest = rest.dropFirst()
                while rest.first != "}" {
                    let key = rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
                    rest = rest.dropFirst(key.count)
                    guard !key.isEmpty, rest.hasPrefix("=\"") else { throw Malformed(line: String(line)) }
                    rest = rest.dropFirst(2)
                    var value = ""
                    while let c = rest.first, c != "\"" {
                        if c == "\\" {
                            rest = rest.dropFirst()
                            switch rest.first {
                            case "n": value.append("\n")
                            case "\\": value.append("\\")
                            case "\"": value.append("\"")
                            default: throw Malformed(line: String(line))
                            }
                        } else {
                            value.append(c)
                        }
                        rest = rest.dropFirst()
                    }
                    guard rest.first == "\"" else { throw Malformed(line: String(line)) }
                    rest = rest.dropFirst()
                    labels[String(key)] = value
                    if rest.first == "," { rest = rest.dropFirst() }
                }
                rest = rest.dropFirst()
            }
            guard rest.first == " " else { throw Malformed(line: String(line)) }
            let fields = rest.dropFirst().split(separator: " ")
            guard let number = fields.first, fields.count <= 2, let value = Double(number == "+Inf" ? "inf" : String(number)) else {
                throw Malformed(line: String(line))
            }
            samples.append(Sample(name: String(name), labels: labels, value: value))
        }
        return samples
    }
}

@Suite("CLI: sluice ui")
struct UICLITests {
    @Test func uiServesTheDashboardAndAPIOverAStoreAndStopsOnSIGTERM() async throws {
        let cli = CLI(dir: try TemporaryDirectory(prefix: "ui"))
        try cli.dir.write("p.yml", "name: p\nstages:\n  a: { run: [\"true\"] }\n")
        #expect(try cli.run(["run", "p.yml"]).status == 0)
        let process = try ServeCLITests().serve(cli, [], log: "ui.log", command: "ui", extra: ["--http", "127.0.0.1:0"])
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        var port: Int?
        try await cli.wait {
            let log = ServeCLITests().text(cli, "ui.log")
            port = log.range(of: "http://127.0.0.1:").flatMap { Int(log[$0.upperBound...].prefix { $0.isNumber }) }
            return port != nil
        }
        let base = URL(string: "http://127.0.0.1:\(try #require(port))")!
        let page = try await APIHarness.request(base, "/")
        #expect(page.status == 200 && page.text.contains("Sluice"))
        let runs = try await APIHarness.request(base, "/api/runs")
        #expect((runs.json["runs"] as? [[String: Any]])?.first?["pipeline"] as? String == "p")
        try await ServeCLITests().stop(process)
    }

    @Test func anOpenEventStreamOfALiveRunDoesNotHoldShutdown() async throws {
        let cli = CLI(dir: try TemporaryDirectory(prefix: "ui-sse"))
        try cli.dir.write("hold.yml", "name: hold\nstages:\n  wait: { run: [sh, -c, \"while [ ! -f go ]; do sleep 0.05; done\"] }\n")
        let run = try cli.start(["run", "hold.yml"])
        defer { if run.isRunning { kill(run.processIdentifier, SIGKILL) } }
        let ui = try ServeCLITests().serve(cli, [], log: "ui.log", command: "ui", extra: ["--http", "127.0.0.1:0"])
        defer { if ui.isRunning { kill(ui.processIdentifier, SIGKILL) } }
        var port: Int?
        try await cli.wait {
            let log = ServeCLITests().text(cli, "ui.log")
            port = log.range(of: "http://127.0.0.1:").flatMap { Int(log[$0.upperBound...].prefix { $0.isNumber }) }
            return port != nil
        }
        let base = URL(string: "http://127.0.0.1:\(try #require(port))")!
        var live: String?
        try await cli.wait {
            live = (try? Data(contentsOf: base.appendingPathComponent("api/runs")))
                .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
                .flatMap { ($0["runs"] as? [[String: Any]])?.first { $0["status"] as? String == "running" }?["run_id"] as? String }
            return live != nil
        }
        let stream = try RawHTTP(port: try #require(port), path: "/api/runs/\(try #require(live))/events/stream")
        let seen = Seen()
        let reading = Task { await stream.readOnThread { seen.text = $0 } }
        try await cli.wait { seen.text.contains("run.start") }   // the stream is open; nothing more comes while the run waits
        try await ServeCLITests().stop(ui)   // exits 0 although the run goes on
        #expect(await reading.value.contains(": server shutting down"))
        try cli.dir.write("go", "")
        while run.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        #expect(run.terminationStatus == 0)
    }
}
