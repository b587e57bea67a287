import Foundation
import Testing
import SluiceStore
import SluiceCore

@Suite("Core rules")
struct CoreTests {
    @Test(arguments: [("500ms", 500), ("5s", 5000), ("20m", 1_200_000), ("2h", 7_200_000), ("1h30m", 5_400_000),
                      ("1d", 86_400_000), ("90", 90_000), ("1.5s", 1500), ("0s", 0)])
    func durationsParse(_ text: String, _ ms: Int64) {
        #expect(DurationText.parse(text)?.milliseconds == ms)
    }

    /// `seconds` keeps what is below a millisecond (the benchmark times microsecond tasks with it);
    /// `milliseconds` counts whole ones.
    @Test func aDurationInSecondsKeepsItsMicroseconds() {
        #expect(Duration.microseconds(1_500).seconds == 0.0015)
        #expect(Duration.microseconds(1_500).milliseconds == 1)
        #expect(Duration.milliseconds(2_500).seconds == 2.5)
    }

    @Test(arguments: ["", "5 minutes", "m", "-3s", "5x", "1h30", "s5"])
    func badDurationsAreRejected(_ text: String) {
        #expect(DurationText.parse(text) == nil)
    }

    /// A run id is the UTC time to the second, then six random hex digits (sortable, short to type).
    @Test func runIDsAreTheUTCTimeAndSixHexDigits() throws {
        // 2026-12-05 06:10:58.9 UTC; and the first second of 2000 (a leap year's zero-padded fields).
        for (time, stamp) in [(1_796_451_058.9, "20261205-061058-"), (946_684_800.0, "20000101-000000-")] {
            let id = RunID.generate(at: Date(timeIntervalSince1970: time)).rawValue
            #expect(id.hasPrefix(stamp), "\(id)")
            let random = id.dropFirst(stamp.count)
            #expect(random.count == 6 && random.allSatisfy { $0.isHexDigit && !$0.isUppercase }, "\(id)")
        }
    }

    @Test func exponentialBackoffDoublesUpToTheCap() {
        let p = RetryPolicy(attempts: 6, backoff: .exponential, initial: .seconds(5), max: .seconds(30), jitter: 0)
        #expect((1...5).map { p.delay(afterAttempt: $0, random: 0.7).milliseconds } == [5000, 10000, 20000, 30000, 30000])
    }

    @Test func fixedBackoffAndJitter() {
        let p = RetryPolicy(attempts: 3, backoff: .fixed, initial: .seconds(4), max: .seconds(60), jitter: 0.5)
        #expect(p.delay(afterAttempt: 1, random: 0).milliseconds == 4000)
        #expect(p.delay(afterAttempt: 2, random: 0.5).milliseconds == 3000)
        #expect(p.delay(afterAttempt: 2, random: 0.999).milliseconds == 2002)
    }

    @Test func retryDecisionsFollowThePolicy() {
        let p = RetryPolicy(attempts: 3, initial: .seconds(1), jitter: 0, exitCodes: [75])
        #expect(p.decide(afterAttempt: 1, outcome: .failed, exitCode: 75, random: 0) == .retry(after: .seconds(1)))
        #expect(p.decide(afterAttempt: 2, outcome: .failed, exitCode: 75, random: 0) == .retry(after: .seconds(2)))
        if case .giveUp(let why) = p.decide(afterAttempt: 3, outcome: .failed, exitCode: 75, random: 0) {
            #expect(why.contains("all 3 attempts used"))
        } else { Issue.record("third failure must give up") }
        if case .giveUp(let why) = p.decide(afterAttempt: 1, outcome: .failed, exitCode: 1, random: 0) {
            #expect(why.contains("exit code 1 is not in retries.exit_codes"))
        } else { Issue.record("exit code 1 is not retryable") }
        // Timeouts and hangs retry whatever the exit codes; a command that cannot start never does.
        #expect(p.decide(afterAttempt: 1, outcome: .timedOut, exitCode: nil, random: 0) == .retry(after: .seconds(1)))
        #expect(p.decide(afterAttempt: 1, outcome: .hung, exitCode: nil, random: 0) == .retry(after: .seconds(1)))
        guard case .giveUp = p.decide(afterAttempt: 1, outcome: .spawnFailed, exitCode: nil, random: 0) else {
            Issue.record("spawn failures are not retried"); return
        }
    }

    @Test(arguments: [
        ("https://hooks.slack.com/services/T000/B000/XXXXSECRET", "https://hooks.slack.com/…"),
        ("https://hooks.example.com/TOKEN123", "https://hooks.example.com/…"),
        ("https://user:pw@hooks.example.com:8443/a?token=abc#frag", "https://hooks.example.com:8443/…"),
        ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("not a url", "(an unparsable URL)"),
    ])
    func webhookURLsAreShownWithoutTheirSecrets(url: String, shown: String) {
        #expect(WebhookChannel.redacted(url) == shown)
        for secret in ["SECRET", "TOKEN123", "pw", "abc"] where url.contains(secret) {
            #expect(!WebhookChannel.redacted(url).contains(secret))
        }
    }

    @Test(arguments: [
        ("Mon, 2 Mar 2026 08:00:00 +0100", "2026-03-02"),
        ("2 Mar 2026 23:59 -0800", "2026-03-02"),
        ("Tue,  15 December 2026 01:00:00 GMT", "2026-12-15"),
        ("", nil), ("yesterday", nil), ("Mon, 32 Mar 2026 08:00:00 +0100", nil), ("Mon, 2 Foo 2026", nil),
    ] as [(String, String?)])
    func theDayOfAMailDateHeader(header: String, day: String?) {
        #expect(MailTrigger.day(ofDateHeader: header) == day)
    }

    @Test func outcomeRules() {
        #expect(RunOutcome.decide(stages: [.success, .skipped], cancelled: false) == .success)
        #expect(RunOutcome.decide(stages: [.success, .failed], cancelled: false) == .partialSuccess)
        #expect(RunOutcome.decide(stages: [.success, .upstreamFailed], cancelled: false) == .partialSuccess)
        #expect(RunOutcome.decide(stages: [.failed, .upstreamFailed], cancelled: false) == .failed)
        #expect(RunOutcome.decide(stages: [.success, .rolledBack], cancelled: false) == .partialSuccess)
        #expect(RunOutcome.decide(stages: [.success], cancelled: true) == .cancelled)
        #expect(RunOutcome.allCases.map(\.exitCode) == [0, 1, 2, 130])
    }

    func spec(_ stages: [StageSpec]) -> PipelineSpec {
        PipelineSpec(name: "p", root: "/tmp", stages: stages)
    }

    @Test func plannerWaitsRunsSkipsAndBlocks() {
        let a = StageSpec(name: "a", command: .argv(["true"]))
        let b = StageSpec(name: "b", needs: ["a"], command: .argv(["true"]))
        let c = StageSpec(name: "c", needs: ["a"], command: .argv(["true"]), proceedIf: [.success, .failed])
        let d = StageSpec(name: "d", needs: ["a"], command: .argv(["true"]),
                          when: Conditions(files: ["data/*.csv"]))
        let e = StageSpec(name: "e", needs: ["a"], command: .argv(["true"]),
                          when: Conditions(upstream: ["a": [.success]]), proceedIf: [.always])
        let planner = Planner(spec: spec([a, b, c, d, e]))
        #expect(planner.decide(b, statuses: ["a": .running], fileProbe: { _ in true }) == .wait)
        #expect(planner.decide(b, statuses: ["a": .success], fileProbe: { _ in true }) == .run)
        guard case .upstreamFailed = planner.decide(b, statuses: ["a": .failed], fileProbe: { _ in true }) else {
            Issue.record("b must not run after a failed"); return
        }
        guard case .skip = planner.decide(b, statuses: ["a": .skipped], fileProbe: { _ in true }) else {
            Issue.record("a skipped upstream skips b"); return
        }
        #expect(planner.decide(c, statuses: ["a": .failed], fileProbe: { _ in true }) == .run)
        #expect(planner.decide(d, statuses: ["a": .success], fileProbe: { _ in true }) == .run)
        guard case .skip(let reason) = planner.decide(d, statuses: ["a": .success], fileProbe: { _ in false }) else {
            Issue.record("no files: skip"); return
        }
        #expect(reason.contains("data/*.csv"))
        guard case .skip = planner.decide(e, statuses: ["a": .failed], fileProbe: { _ in true }) else {
            Issue.record("when.upstream success not met: skip"); return
        }
        #expect(planner.decide(e, statuses: ["a": .success], fileProbe: { _ in true }) == .run)
    }

    @Test func cyclesAndOrder() {
        let stages = [StageSpec(name: "a", needs: ["c"], command: .argv(["x"])),
                      StageSpec(name: "b", needs: ["a"], command: .argv(["x"])),
                      StageSpec(name: "c", needs: ["b"], command: .argv(["x"]))]
        #expect(DAG.findCycle(stages) == ["a", "c", "b", "a"])
        let ok = [StageSpec(name: "m", needs: ["t", "d"], command: .argv(["x"])),
                  StageSpec(name: "t", command: .argv(["x"])),
                  StageSpec(name: "d", needs: ["t"], command: .argv(["x"]))]
        #expect(DAG.findCycle(ok) == nil)
        #expect(DAG.topologicalOrder(ok) == ["t", "d", "m"])
        // Upstream: through needs and a fan-out's producer, transitively; not the stages beside it.
        let fan = PipelineSpec(name: "p", root: "/tmp", stages: ok + [
            StageSpec(name: "find", needs: ["d"], command: .swift),
            StageSpec(name: "work", command: .swift, forEach: "find"),
            StageSpec(name: "join", needs: ["work"], command: .swift)])
        #expect(DAG.upstream(of: "join", in: fan) == ["work", "find", "d", "t"])
        #expect(DAG.upstream(of: "m", in: fan) == ["t", "d"])
        #expect(DAG.upstream(of: "t", in: fan).isEmpty)
    }

    /// A tolerance's syntax is read by its parser; its range is one rule for YAML and Swift.
    @Test func failureToleranceTextAndRange() {
        #expect(FailureTolerance("10") == .count(10) && FailureTolerance(" 2.5 %") == .percent(2.5))
        #expect(FailureTolerance("ten") == nil && FailureTolerance("%") == nil)
        #expect(FailureTolerance("150%")?.problem == "is 150%: a percentage must be between 0% and 100%")
        #expect(FailureTolerance("-1")?.problem == "is -1: a count must be at least 0")
        #expect(FailureTolerance("100%")?.problem == nil && FailureTolerance("0")?.problem == nil)
    }

    @Test func templatesSubstituteInsideOneArgument() {
        let values = ["params.in": "my dir; rm -rf /", "run.id": "r1"]
        #expect(Template.render("--input={{params.in}}", values: values) == "--input=my dir; rm -rf /")
        #expect(Template.render("{{ run.id }}/x", values: values) == "r1/x")
        #expect((try? Template.placeholders(in: "a {{params.x}} b {{y}}").get().map(\.name)) == ["params.x", "y"])
        #expect(Template.placeholders(in: "a {{params.x") == .failure(.unclosed(offset: 2)))
    }

    @Test func suggestions() {
        #expect(Suggest.closest(to: "translat", in: ["translate", "analyze"]) == "translate")
        #expect(Suggest.closest(to: "stagse", in: ["name", "stages", "params"]) == "stages")
        #expect(Suggest.closest(to: "zzzzzz", in: ["stages"]) == nil)
    }
}
