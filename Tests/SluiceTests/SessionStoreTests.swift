import Foundation
import Testing
import SluiceCore
import SluiceEngine
import SluiceNotify
import SluiceStore
import SluiceTesting

/// Coordination sessions and the outbox, on both stores: every decision once, however many processes race.
@Suite("Sessions and outbox contract")
struct SessionStoreTests {
    static func action(_ h: StoreHarness, _ dir: String) -> NotifyAction {
        NotifyAction(channel: .file(FileChannel(directory: dir)), root: h.dir.path)
    }

    static func session(_ h: StoreHarness, grouping: SessionSpec.Grouping = .window(.seconds(600)),
                        timeout: Duration = .seconds(300)) -> SessionSpec {
        SessionSpec(name: "daily", members: [.init(pipeline: "si", title: "Salud Internacional", color: "#f2c200"),
                                             .init(pipeline: "viajeros")],
                    grouping: grouping, timeout: timeout, onComplete: [action(h, "complete")],
                    onTimeout: [action(h, "timeout")], root: h.dir.path)
    }

    static func memberRun(_ h: StoreHarness, _ id: String, pipeline: String, session: SessionSpec,
                          params: [String: String] = [:], owner: LeaseOwner? = nil) -> RunRecord {
        var spec = h.spec()
        spec.name = pipeline
        spec.session = session
        spec.notify = PipelineNotify(onFailure: [action(h, "failures")])
        return RunRecord(id: RunID(id), pipeline: pipeline, spec: spec, params: params, trigger: "test", status: .pending,
                         createdAt: h.now, leaseOwner: owner ?? h.me, leaseExpiresAt: h.now.addingTimeInterval(30),
                         runDir: h.dir.file("runs/\(id)"))
    }

    static func create(_ store: any StateStore, _ run: RunRecord, at now: Date) async throws {
        guard case .created = try await store.createRun(run, overlap: .allow, now: now, events: []) else {
            Issue.record("run \(run.id) not created"); return
        }
    }

    /// Four processes (store connections of their own) finish the session's four members at the same
    /// moment, 100 times: each session completes exactly once, with exactly one combined-report notification.
    @Test(arguments: StoreKind.allCases) func racingLastMembersCompleteTheSessionOnce(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        var stores = [h.store]
        for _ in 1..<4 { stores.append(try await h.another()) }
        let pipelines = ["si", "viajeros", "salud", "vida"]
        var spec = Self.session(h)
        spec.members = pipelines.map { .init(pipeline: $0) }
        for round in 1...100 {
            // Each round a window apart, so each opens its own session.
            let now = h.now.addingTimeInterval(Double(round) * 1000)
            for pipeline in pipelines {
                try await Self.create(h.store, Self.memberRun(h, "\(pipeline)-\(round)", pipeline: pipeline, session: spec), at: now)
            }
            let session = try #require(try await h.store.session(ofRun: RunID("si-\(round)")))
            #expect(session.members.count == 4)
            let racing = stores
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for (i, pipeline) in pipelines.enumerated() {
                    group.addTask {
                        try await racing[i].finishRun(RunID("\(pipeline)-\(round)"), outcome: .success, owner: h.me,
                                                      now: now.addingTimeInterval(1), events: [])
                    }
                }
                for try await finished in group { #expect(finished) }
            }
            let done = try #require(try await h.store.sessions(matching: SessionQuery(idPrefix: session.id, limit: 1)).first)
            #expect(done.status == .complete, "round \(round)")
            let notes = try await h.store.notifications(matching: NotificationQuery(sessionID: session.id))
            #expect(notes.filter { $0.kind == .sessionComplete }.count == 1, "round \(round): \(notes.map(\.kind))")
            #expect(notes.count == 1)
        }
        // The runs succeeded, so no pipeline failure report was queued.
        #expect(try await h.store.notifications(matching: NotificationQuery(limit: 1000)).allSatisfy { $0.kind == .sessionComplete })
    }

    /// Only one member ran: several processes expire the session at once; one partial report names the
    /// missing member. The member that finishes later is late and reported on its own.
    @Test(arguments: StoreKind.allCases) func aTimedOutSessionReportsOnceAndALateMemberOnItsOwn(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let stores = [h.store, try await h.another(), try await h.another()]
        let spec = Self.session(h, timeout: .seconds(60))
        try await Self.create(h.store, Self.memberRun(h, "s1", pipeline: "si", session: spec), at: h.now)
        #expect(try await h.store.nextSessionDeadline() == h.now.addingTimeInterval(60))
        #expect(try await h.store.expireSessions(now: h.now.addingTimeInterval(59)).isEmpty)
        let expired = try await withThrowingTaskGroup(of: [SessionRecord].self) { group in
            for store in stores { group.addTask { try await store.expireSessions(now: h.now.addingTimeInterval(61)) } }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(expired.count == 1)
        #expect(expired.first?.missing == ["si", "viajeros"])
        let session = try #require(expired.first)
        let notes = try await h.store.notifications(matching: NotificationQuery(sessionID: session.id))
        #expect(notes.map(\.kind) == [.sessionTimeout])
        #expect(try await h.store.nextSessionDeadline() == nil)

        // si ends after the timeout: late, reported on its own (on_late defaults to on_timeout's channels).
        #expect(try await h.store.finishRun(RunID("s1"), outcome: .failed, owner: h.me, now: h.now.addingTimeInterval(70), events: []))
        let late = try await h.store.notifications(matching: NotificationQuery(runID: RunID("s1")))
        #expect(Set(late.map(\.kind)) == [.sessionLate, .runReport])  // runReport: the pipeline's on_failure
        let record = try #require(try await h.store.session(ofRun: RunID("s1")))
        #expect(record.status == .timedOut)
        #expect(record.members.first?.late == true)
        // A viajeros run within the window joins the timed-out session as a late member, not a new session.
        try await Self.create(h.store, Self.memberRun(h, "v1", pipeline: "viajeros", session: spec), at: h.now.addingTimeInterval(80))
        #expect(try await h.store.session(ofRun: RunID("v1"))?.id == session.id)
        #expect(try await h.store.sessions(matching: SessionQuery(name: "daily")).count == 1)
    }

    @Test(arguments: StoreKind.allCases) func runsWithTheSameKeyShareASessionAndARestartReplacesTheMember(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let spec = Self.session(h, grouping: .key("{{params.mail_date}}"))
        try await Self.create(h.store, Self.memberRun(h, "s1", pipeline: "si", session: spec, params: ["mail_date": "2026-12-01"]), at: h.now)
        try await Self.create(h.store, Self.memberRun(h, "s2", pipeline: "si", session: spec, params: ["mail_date": "2026-12-02"]), at: h.now)
        try await Self.create(h.store, Self.memberRun(h, "s3", pipeline: "si", session: spec, params: ["mail_date": "2026-12-01"]), at: h.now)
        let first = try #require(try await h.store.session(ofRun: RunID("s3")))
        #expect(first.key == "2026-12-01")
        #expect(first.members.map(\.runID) == [RunID("s3")])  // s1 replaced
        #expect(try await h.store.session(ofRun: RunID("s1")) == nil)
        #expect(try await h.store.session(ofRun: RunID("s2"))?.id != first.id)
        // The replaced run ending changes nothing; the session waits for s3 and a viajeros run.
        #expect(try await h.store.finishRun(RunID("s1"), outcome: .success, owner: h.me, now: h.now, events: []))
        #expect(try await h.store.sessions(matching: SessionQuery(idPrefix: first.id))[0].status == .open)
        try await Self.create(h.store, Self.memberRun(h, "v1", pipeline: "viajeros", session: spec, params: ["mail_date": "2026-12-01"]), at: h.now)
        #expect(try await h.store.finishRun(RunID("s3"), outcome: .success, owner: h.me, now: h.now, events: []))
        #expect(try await h.store.finishRun(RunID("v1"), outcome: .failed, owner: h.me, now: h.now, events: []))
        #expect(try await h.store.sessions(matching: SessionQuery(idPrefix: first.id))[0].status == .complete)
        #expect(try await h.store.sessions(matching: SessionQuery(status: .open)).map(\.key) == ["2026-12-02"])

        // The report went out with s3 and v1: a re-delivered e-mail's run is left out of the closed session,
        // which keeps the runs its report was decided with.
        try await Self.create(h.store, Self.memberRun(h, "s4", pipeline: "si", session: spec, params: ["mail_date": "2026-12-01"]), at: h.now)
        let closed = try #require(try await h.store.sessions(matching: SessionQuery(idPrefix: first.id)).first)
        #expect(closed.members.map(\.runID).sorted { $0.rawValue < $1.rawValue } == [RunID("s3"), RunID("v1")])
        #expect(try await h.store.session(ofRun: RunID("s4")) == nil)
        #expect(try await h.store.events(run: RunID("s4"), afterID: 0, limit: 10).contains { $0.event == "session.left_out" })
        #expect(try await h.store.finishRun(RunID("s4"), outcome: .success, owner: h.me, now: h.now, events: []))
        #expect(try await h.store.notifications(matching: NotificationQuery(runID: RunID("s4"))).isEmpty, "no late report for it")

        // A run whose key renders empty (the param is missing) joins no session at all, and says why.
        try await Self.create(h.store, Self.memberRun(h, "s5", pipeline: "si", session: spec), at: h.now)
        #expect(try await h.store.session(ofRun: RunID("s5")) == nil)
        let said = try await h.store.events(run: RunID("s5"), afterID: 0, limit: 10).first { $0.event == "session.no_key" }
        #expect(said?.message.contains("{{params.mail_date}}") == true)
        #expect(try await h.store.sessions(matching: SessionQuery(name: "daily")).allSatisfy { $0.key != "" })
    }

    /// The outbox: a claim is exclusive and leased; a retry waits; a delivered one is not claimed again;
    /// a deliverer that died gives its claims back when the lease expires; a failed one can be queued again.
    @Test(arguments: StoreKind.allCases) func outboxClaimsAreExclusiveAndOutcomesRecorded(kind: StoreKind) async throws {
        let h = try await StoreHarness(kind)
        let spec = Self.session(h)
        var run = Self.memberRun(h, "r1", pipeline: "solo", session: spec)
        run.spec.session = nil
        run.spec.notify = PipelineNotify(onFailure: [Self.action(h, "a"), Self.action(h, "b"), Self.action(h, "c")])
        try await Self.create(h.store, run, at: h.now)
        #expect(try await h.store.finishRun(RunID("r1"), outcome: .failed, owner: h.me, now: h.now, events: []))
        let other = try await h.another()
        let claims = try await withThrowingTaskGroup(of: [NotificationRecord].self) { group in
            for (owner, store) in [("d1", h.store), ("d2", other)] {
                group.addTask { try await store.claimNotifications(owner: owner, limit: 2, now: h.now, leaseUntil: h.now.addingTimeInterval(60)) }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(claims.count == 3)
        #expect(Set(claims.map(\.id)).count == 3)
        #expect(claims.allSatisfy { $0.attempts == 1 && $0.kind == .runReport })
        let ids = claims.map(\.id).sorted()
        // Only the holder may record an outcome.
        #expect(try await h.store.finishDelivery(ids[0], owner: "nobody", outcome: .delivered, now: h.now) == false)
        // Find each claim's owner by trying both.
        func finish(_ id: Int64, _ outcome: DeliveryOutcome) async throws {
            if try await h.store.finishDelivery(id, owner: "d1", outcome: outcome, now: h.now) { return }
            #expect(try await h.store.finishDelivery(id, owner: "d2", outcome: outcome, now: h.now))
        }
        try await finish(ids[0], .delivered)
        try await finish(ids[1], .retry(at: h.now.addingTimeInterval(30), error: "smtp down"))
        try await finish(ids[2], .failed(error: "refused"))
        #expect(try await h.store.claimNotifications(owner: "d3", limit: 10, now: h.now.addingTimeInterval(10), leaseUntil: h.now.addingTimeInterval(70)).isEmpty)
        #expect(try await h.store.nextNotificationTime() == h.now.addingTimeInterval(30))
        let again = try await h.store.claimNotifications(owner: "d3", limit: 10, now: h.now.addingTimeInterval(31), leaseUntil: h.now.addingTimeInterval(40))
        #expect(again.map(\.id) == [ids[1]])
        #expect(again.first?.attempts == 2)
        #expect(again.first?.lastError == "smtp down")
        // d3 dies: after its lease, d4 takes it.
        #expect(try await h.store.claimNotifications(owner: "d4", limit: 10, now: h.now.addingTimeInterval(35), leaseUntil: h.now.addingTimeInterval(100)).isEmpty)
        let rescued = try await h.store.claimNotifications(owner: "d4", limit: 10, now: h.now.addingTimeInterval(41), leaseUntil: h.now.addingTimeInterval(100))
        #expect(rescued.map(\.id) == [ids[1]])
        #expect(try await h.store.finishDelivery(ids[1], owner: "d3", outcome: .delivered, now: h.now) == false)
        #expect(try await h.store.finishDelivery(ids[1], owner: "d4", outcome: .delivered, now: h.now))
        let all = try await h.store.notifications(matching: NotificationQuery())
        #expect(all.filter { $0.status == .delivered }.count == 2)
        #expect(all.first { $0.id == ids[2] }?.status == .failed)
        #expect(try await h.store.retryNotification(ids[2], now: h.now.addingTimeInterval(50)))
        #expect(try await h.store.retryNotification(ids[0], now: h.now) == false)
        #expect(try await h.store.notifications(matching: NotificationQuery(status: .pending)).map(\.id) == [ids[2]])
    }
}

/// The partial report is what the session looked like when it timed out, however late it is delivered.
@Suite("Session reports from the store")
struct SessionReportBuildTests {
    static func yaml(_ pipeline: String) -> String {
        """
        name: \(pipeline)
        session: { name: daily, members: [si, viajeros], timeout: 1s, on_timeout: [{ file: { dir: out } }] }
        stages:
          load: { run: ["true"] }
        """
    }

    @Test func aPartialReportDeliveredAfterTheLateMemberEndedStillNamesItMissing() async throws {
        let f = try EngineFixture()
        let (si, _) = try await f.run(Self.yaml("si"))
        #expect(si == .success)
        let timedOut = try await f.engine.store.expireSessions(now: Date().addingTimeInterval(5))
        #expect(timedOut.count == 1)
        // The mail server was down: the partial report is still queued when viajeros ends, late.
        let (viajeros, run) = try await f.run(Self.yaml("viajeros"))
        #expect(viajeros == .success)
        let session = try #require(try await f.engine.store.session(ofRun: run.id))
        #expect(session.status == .timedOut && session.members.first { $0.pipeline == "viajeros" }?.late == true)

        let partial = try await SessionReport.build(store: f.engine.store, session: session, asTimedOut: true)
        #expect(partial.missing.map(\.pipeline) == ["viajeros"], "as it stood at the timeout")
        let message = try ReportTemplates.builtIn.render(session: partial)
        #expect(message.subject.contains("viajeros"), "\(message.subject)")
        #expect(message.text.contains("viajeros"), "\(message.text.prefix(400))")

        // Shown now (sluice show, the late report), the session has viajeros' run, ended late.
        let now = try await SessionReport.build(store: f.engine.store, session: session)
        #expect(now.missing.isEmpty)
        #expect(now.members.first { $0.pipeline == "viajeros" }.map { $0.late && $0.status == "success" } == true)
    }
}
