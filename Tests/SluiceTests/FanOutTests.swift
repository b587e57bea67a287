import Foundation
import Sluice
import SluiceDefinition
import SluiceEngine
import SluiceStore
import SluiceStoreSQLite
import SluiceTesting
import Synchronization
import Testing

struct Doc: Codable, Sendable, Hashable, Identifiable {
    var id: String
    var words: Int
}

@Suite("Fan-out")
struct FanOutTests {
    @Test func theJoinRunsExactlyOnceUnderManyConcurrentCompletions() async throws {
        let f = try SwiftFixture()
        for round in 0..<100 {
            let joins = Mutex(0)
            let processed = Mutex(0)
            let find = Discover<Doc>("find") { _, items in
                for i in 0..<20 { try items.emit(Doc(id: "d\(i)", words: i)) }
            }
            let count = ForEach("count", over: find, concurrency: 8) { _, doc -> Int in
                processed.withLock { $0 += 1 }
                return doc.words
            }
            let join = Stage("join", needs: count) { context -> Int in
                joins.withLock { $0 += 1 }
                return try await context.results(of: count).values.reduce(0, +)
            }
            let pipeline = try Pipeline("join-\(round)", concurrency: 8, root: f.dir.path) { find; count; join }
            let (outcome, run) = try await f.run(pipeline)
            #expect(outcome == .success)
            #expect(joins.withLock { $0 } == 1)
            #expect(processed.withLock { $0 } == 20)
            let sum = try await f.store.results(run: run.id, stage: "join")["main"]
            #expect(sum.flatMap { try? JSONDecoder().decode(Int.self, from: $0) } == 190)
        }
    }

    @Test func discoveryStreamsItemsIntoProcessingWhileItRuns() async throws {
        let f = try SwiftFixture()
        let find = Discover<Doc>("find") { _, items in
            for i in 0..<6 {
                try items.emit(Doc(id: "d\(i)", words: i))
                try await Task.sleep(for: .milliseconds(300))
            }
        }
        let process = ForEach("process", over: find, concurrency: 2) { _, doc in doc.words * 2 }
        let pipeline = try Pipeline("stream", root: f.dir.path) { find; process }
        let (outcome, run) = try await f.run(pipeline)
        #expect(outcome == .success)
        let attempts = try await f.store.attempts(of: run.id)
        let discoveryEnd = try #require(attempts.first { $0.stage == "find" }?.finishedAt)
        let firstItemEnd = try #require(attempts.filter { $0.stage == "process" }.compactMap(\.finishedAt).min())
        #expect(firstItemEnd < discoveryEnd, "the first item finished before discovery did")
        #expect(attempts.filter { $0.stage == "process" }.count == 6)
    }

    @Test func commandItemsArePassedLiterallyAsArguments() async throws {
        let f = try EngineFixture()
        // The producer prints the items as they are (no shell ever evaluates them).
        try f.dir.write("items.jsonl", #"""
            {"key": "a", "name": "x; rm -rf ./victim"}
            {"key": "b", "name": "$(touch pwned)"}
            ::item:: {"key": "c", "name": "`id` | cat"}

            """#)
        let (outcome, run) = try await f.run(#"""
            name: literal
            stages:
              find:
                run: [cat, items.jsonl]
              use:
                for_each: find
                run: [sh, -c, 'printf "%s" "$1" > "out-$SLUICE_ITEM_KEY.txt"; printf "%s" "$SLUICE_ITEM" > "json-$SLUICE_ITEM_KEY.txt"', sh, "{{item.name}}"]
            """#)
        #expect(outcome == .success)
        _ = FileManager.default.createFile(atPath: f.dir.file("victim"), contents: nil)
        #expect(try String(contentsOfFile: f.dir.file("out-a.txt"), encoding: .utf8) == "x; rm -rf ./victim")
        #expect(try String(contentsOfFile: f.dir.file("out-b.txt"), encoding: .utf8) == "$(touch pwned)")
        #expect(try String(contentsOfFile: f.dir.file("out-c.txt"), encoding: .utf8) == "`id` | cat")
        #expect(try String(contentsOfFile: f.dir.file("json-a.txt"), encoding: .utf8) == #"{"key":"a","name":"x; rm -rf ./victim"}"#)
        #expect(!FileManager.default.fileExists(atPath: f.dir.file("pwned")))
        #expect(try await f.engine.store.items(run: run.id, stage: "find").map(\.key) == ["a", "b", "c"])
    }

    /// A stage limited to one task at a time (the store counts its running tasks) takes its next task as
    /// soon as the one before is recorded, not when the run process next looks for others' work (made
    /// an hour here: a run that waited for it would never end within the time limit).
    @Test(.timeLimit(.minutes(1))) func aLimitedFanOutTakesItsNextTaskOnceTheOneBeforeIsRecorded() async throws {
        let f = try EngineFixture { $0.othersPoll = .seconds(3600) }
        let (outcome, run) = try await f.run(#"""
            name: limited
            stages:
              find:
                run: [sh, -c, 'for i in 1 2 3 4 5 6; do echo "{\"key\": \"k$i\"}"; done']
              use:
                for_each: find
                concurrency: 1
                run: [sh, -c, 'echo "$1" >> used.txt', sh, "{{item.key}}"]
            """#)
        #expect(outcome == .success)
        #expect(try String(contentsOfFile: f.dir.file("used.txt"), encoding: .utf8) == "k1\nk2\nk3\nk4\nk5\nk6\n")
        #expect(try await f.engine.store.taskCounts(run: run.id)["use"]?.success == 6)
    }

    @Test func countersAndRejectedRecordsAddUpExactly() async throws {
        let f = try EngineFixture()
        let (outcome, run) = try await f.run(#"""
            name: counters
            stages:
              find: { run: [sh, -c, 'for i in $(seq 1 50); do echo "{\"key\": \"$i\"}"; done'] }
              work:
                for_each: find
                concurrency: 4
                run: [sh, -c, 'echo "::count:: rows 3"; echo "::count:: files"; if [ "$1" = 7 ]; then echo "::reject:: {\"record\": \"row $1\", \"reason\": \"bad\"}"; fi', sh, "{{item.key}}"]
              audit:
                needs: [work]
                run: [sh, -c, 'echo "::count:: rows 5"; echo "::count:: audited 2"; echo "::reject:: {\"record\": {\"id\": 9, \"amt\": -1}, \"reason\": \"bad id\"}"']
            """#)
        #expect(outcome == .success)
        let report = try await RunReport.build(store: f.engine.store, runID: run.id)
        let work = try #require(report.stages.first { $0.name == "work" })
        #expect(work.counters == ["rows": 150, "files": 50])
        #expect(work.rejected == 1)
        #expect(work.rejectedRecords == ["row 7: bad"])
        // A record that is a row (an object) keeps its JSON, not Swift's description of a dictionary.
        let audit = try #require(report.stages.first { $0.name == "audit" })
        #expect(audit.rejectedRecords == [#"{"amt":-1,"id":9}: bad id"#])
        // Summed for the run too.
        #expect(report.totals.counters == ["rows": 155, "files": 50, "audited": 2])
        #expect(report.totals.rejected == 2)
        #expect(work.metrics?.tasks == 50)
        #expect(work.metrics?.successRate == 1)
        #expect(work.progress?.expected == 50)
        #expect(work.progress?.percent == 100)
    }

    @Test func failedItemsWithinTheToleranceMakeThePipelinePartial() async throws {
        let yaml = #"""
            name: tolerance
            stages:
              find: { run: [sh, -c, 'for i in $(seq 1 20); do echo "{\"key\": \"$i\"}"; done'] }
              work: { for_each: find, max_failed_items: TOLERANCE, run: [sh, -c, 'test "$1" -gt 2', sh, "{{item.key}}"] }
              join: { needs: [work], run: ["true"] }
            """#
        let f = try EngineFixture()
        let (within, run1) = try await f.run(yaml.replacingOccurrences(of: "TOLERANCE", with: "10%"))
        #expect(within == .partialSuccess)
        #expect(try await f.stageStatuses(run1) == ["find": .success, "work": .partialSuccess, "join": .success])
        let (beyond, run2) = try await f.run(yaml.replacingOccurrences(of: "TOLERANCE", with: "1"))
        #expect(beyond == .partialSuccess)
        #expect(try await f.stageStatuses(run2) == ["find": .success, "work": .failed, "join": .upstreamFailed])
        // Each says why, in its record and its event.
        let reasons = Dictionary(uniqueKeysWithValues: try await f.engine.store.stages(of: run1.id).map { ($0.name, $0.reason) })
        #expect(reasons["work"] == "2 of 20 items failed (tolerated)")
        let failed = try #require(try await f.engine.store.stages(of: run2.id).first { $0.name == "work" })
        #expect(failed.reason == "2 of 20 items failed: more than max_failed_items (1) allows")
        #expect(try await f.events(run2).contains { $0.event == "stage.failed" && $0.message.contains("more than max_failed_items (1)") })
    }

    /// A fan-out stage whose last item ended before its (streaming) producer ends with it, in the
    /// producer's commit: the live view hears of both.
    @Test func aFanOutThatEndsWithItsProducerIsPublishedLive() async throws {
        let f = try EngineFixture()
        guard case .started(let run) = try await f.engine.start(try f.spec(#"""
            name: ends-together
            stages:
              find: { run: [sh, -c, 'echo "{\"key\": 1}"; echo "{\"key\": 2}"; sleep 1'] }
              work: { for_each: find, run: ["true"] }
            """#)) else { throw EngineError(.overlap, "not started") }
        let seen = Mutex<[String]>([])
        let outcome = try await f.engine.execute(run, observer: { event in seen.withLock { $0.append("\(event.stage ?? "-") \(event.event)") } })
        #expect(outcome == .success)
        let events = seen.withLock { $0 }
        #expect(events.contains("find stage.success"), "\(events)")
        #expect(events.contains("work stage.success"), "\(events)")
    }

    @Test func aFailedProducerStopsItsFanOut() async throws {
        let f = try EngineFixture()
        let (outcome, run) = try await f.run(#"""
            name: producer-fails
            stages:
              find: { run: [sh, -c, 'echo "{\"key\": 1}"; echo "{\"key\": 2}"; exit 3'] }
              work: { for_each: find, run: ["true"] }
            """#)
        #expect(outcome == .failed)
        #expect(try await f.stageStatuses(run) == ["find": .failed, "work": .upstreamFailed])
    }

    @Test func resumeRunsFailedItemsOnlyWhenAsked() async throws {
        let f = try EngineFixture()
        let yaml = #"""
            name: retry-items
            stages:
              find: { run: [sh, -c, 'for i in 1 2 3 4; do echo "{\"key\": \"$i\"}"; done'] }
              work: { for_each: find, run: [sh, -c, 'echo "$1" >> ran.log; test "$1" != 3 || test -f fixed', sh, "{{item.key}}"] }
              join: { needs: [work], run: [sh, -c, 'echo joined >> join.log'] }
            """#
        let (first, run) = try await f.run(yaml)
        #expect(first == .partialSuccess)
        _ = FileManager.default.createFile(atPath: f.dir.file("fixed"), contents: nil)
        #expect(try await f.engine.execute(try #require(try await f.engine.store.run(run.id)), resume: true) == .partialSuccess,
                "without retryFailed the failed item stays failed")
        #expect(try await f.engine.execute(try #require(try await f.engine.store.run(run.id)), resume: true, retryFailed: true) == .success)
        let ran = try String(contentsOfFile: f.dir.file("ran.log"), encoding: .utf8).split(separator: "\n").sorted()
        #expect(ran == ["1", "2", "3", "3", "4"], "completed items are never run again")
        #expect(try String(contentsOfFile: f.dir.file("join.log"), encoding: .utf8) == "joined\n")
    }

    @Test func itemsAreDeduplicatedByKeyAndTheFileProtocolWorks() async throws {
        let f = try EngineFixture()
        let (outcome, run) = try await f.run(#"""
            name: dedupe
            stages:
              find: { run: [sh, -c, 'echo "{\"id\": 1}"; echo "{\"id\": 1}"; echo "{\"id\": 2, \"x\": true}" >> "$SLUICE_ITEMS"; echo "\"plain\"" >> "$SLUICE_ITEMS"'] }
              work: { for_each: find, run: [sh, -c, 'echo "$SLUICE_ITEM_KEY" >> keys.log'] }
            """#)
        #expect(outcome == .success)
        let items = try await f.engine.store.items(run: run.id, stage: "find")
        #expect(items.count == 3)
        #expect(items.map(\.key).prefix(2) == ["1", "2"])
        let keys = try String(contentsOfFile: f.dir.file("keys.log"), encoding: .utf8).split(separator: "\n")
        #expect(keys.count == 3)
    }

    @Test func invalidItemJSONFailsTheProducerClearly() async throws {
        let f = try EngineFixture()
        let (outcome, run) = try await f.run("name: bad-items\nstages:\n  find: { run: [sh, -c, 'echo \"::item:: {oops\"'] }\n  work: { for_each: find, run: [\"true\"] }\n")
        #expect(outcome == .failed)
        let attempt = try #require(try await f.engine.store.attempts(of: run.id).first)
        #expect(attempt.message?.contains("stdout line 1: ::item:: is followed by invalid JSON") == true)
    }
}
