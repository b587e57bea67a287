import Foundation
import SluiceCore
import Testing

/// Cron and interval firings, computed from a given instant (no clock, no sleeping).
@Suite("Schedules")
struct ScheduleTests {
    static func t(_ text: String) -> Date { ISO8601DateFormatter().date(from: text)! }

    struct Case: Sendable, CustomTestStringConvertible {
        var cron: String
        var zone: String
        var after: String
        var expected: [String]
        var testDescription: String { "\(cron) in \(zone) after \(after)" }
    }

    static let cases: [Case] = [
        // Fields: steps, ranges, lists, names, shortcuts.
        Case(cron: "*/15 * * * *", zone: "UTC", after: "2026-11-25T10:07:00Z", expected: ["2026-11-25T10:15:00Z", "2026-11-25T10:30:00Z"]),
        Case(cron: "10-30/10 * * * *", zone: "UTC", after: "2026-11-25T10:31:00Z", expected: ["2026-11-25T11:10:00Z", "2026-11-25T11:20:00Z"]),
        Case(cron: "0 6 * * 1-5", zone: "UTC", after: "2026-11-27T07:00:00Z", expected: ["2026-11-30T06:00:00Z", "2026-12-01T06:00:00Z"]),
        Case(cron: "0 0 1,15 * *", zone: "UTC", after: "2026-11-20T00:00:00Z", expected: ["2026-12-01T00:00:00Z", "2026-12-15T00:00:00Z"]),
        Case(cron: "30 8 * * sun", zone: "UTC", after: "2026-11-25T00:00:00Z", expected: ["2026-11-29T08:30:00Z", "2026-12-06T08:30:00Z"]),
        Case(cron: "0 12 1 jan,jul *", zone: "UTC", after: "2026-11-25T00:00:00Z", expected: ["2027-01-01T12:00:00Z", "2027-07-01T12:00:00Z"]),
        Case(cron: "@daily", zone: "UTC", after: "2026-11-25T13:00:00Z", expected: ["2026-11-26T00:00:00Z"]),
        Case(cron: "@hourly", zone: "UTC", after: "2026-11-25T13:00:00Z", expected: ["2026-11-25T14:00:00Z"]),
        // Day of month OR day of week when both are restricted (the 13th, or any Friday).
        Case(cron: "0 0 13 * fri", zone: "UTC", after: "2026-11-25T00:00:00Z", expected: ["2026-11-27T00:00:00Z", "2026-12-04T00:00:00Z", "2026-12-11T00:00:00Z", "2026-12-13T00:00:00Z"]),
        // 29 February: the next leap year.
        Case(cron: "0 0 29 2 *", zone: "UTC", after: "2026-03-01T00:00:00Z", expected: ["2028-02-29T00:00:00Z"]),
        // New York, spring forward (2026-03-08 02:00 EST -> 03:00 EDT): 02:30 does not exist, fires at the jump, once.
        Case(cron: "30 2 * * *", zone: "America/New_York", after: "2026-03-07T17:00:00Z",
             expected: ["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"]),
        Case(cron: "*/30 * * * *", zone: "America/New_York", after: "2026-03-08T06:15:00Z",
             expected: ["2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z"]),
        // New York, fall back (2026-11-01 02:00 EDT -> 01:00 EST): 01:30 happens twice, fires at the first only.
        Case(cron: "30 1 * * *", zone: "America/New_York", after: "2026-10-31T16:00:00Z",
             expected: ["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"]),
        Case(cron: "0 * * * *", zone: "America/New_York", after: "2026-11-01T04:30:00Z",
             expected: ["2026-11-01T05:00:00Z", "2026-11-01T07:00:00Z", "2026-11-01T08:00:00Z"]),
        // Madrid, spring forward (2026-03-29 02:00 CET -> 03:00 CEST) and fall back (2026-10-25 03:00 CEST -> 02:00 CET).
        Case(cron: "30 2 * * *", zone: "Europe/Madrid", after: "2026-03-28T12:00:00Z",
             expected: ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]),
        Case(cron: "30 2 * * *", zone: "Europe/Madrid", after: "2026-10-24T12:00:00Z",
             expected: ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]),
        Case(cron: "0 9 * * mon-fri", zone: "Europe/Madrid", after: "2026-10-23T08:00:00Z",
             expected: ["2026-10-26T08:00:00Z", "2026-10-27T08:00:00Z"]),
    ]

    @Test(arguments: cases) func cronFiresAtTheExpectedInstants(_ c: Case) throws {
        let schedule = Schedule(.cron(c.cron), timeZone: c.zone)
        var cursor = Self.t(c.after)
        var fired: [Date] = []
        for _ in c.expected {
            let next = try #require(schedule.nextFire(after: cursor))
            fired.append(next)
            cursor = next
        }
        #expect(fired == c.expected.map(Self.t))
    }

    @Test func aDSTDayHasEachWallClockFiringExactlyOnce() throws {
        // Every quarter hour across both changes in New York: 24 h of wall-clock time each day.
        let schedule = Schedule(.cron("*/15 * * * *"), timeZone: "America/New_York")
        for (start, end, expected) in [("2026-03-08T05:00:00Z", "2026-03-09T04:00:00Z", 92), // 23 real hours, 02:xx merged into the jump
                                       ("2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z", 96)] { // 25 real hours, 01:xx once
            let fires = schedule.fires(after: Self.t(start).addingTimeInterval(-1), through: Self.t(end).addingTimeInterval(-1), limit: 1000)
            #expect(fires.count == expected, "\(start): \(fires.count)")
            #expect(Set(fires).count == fires.count, "no instant twice")
        }
    }

    @Test func intervalsAreAlignedToTheEpoch() {
        let schedule = Schedule(.every(.seconds(900)))
        #expect(schedule.nextFire(after: Self.t("2026-11-25T10:07:30Z")) == Self.t("2026-11-25T10:15:00Z"))
        #expect(schedule.nextFire(after: Self.t("2026-11-25T10:15:00Z")) == Self.t("2026-11-25T10:30:00Z"))
    }

    @Test func missedFiringsFollowThePolicy() {
        let last = Self.t("2026-11-25T10:00:00Z"), now = Self.t("2026-11-25T11:07:00Z")
        let all = Schedule(.every(.seconds(900)), missed: .all(max: 3))
        #expect(all.missedFires(last: last, now: now) == ["10:30", "10:45", "11:00"].map { Self.t("2026-11-25T\($0):00Z") })
        #expect(Schedule(.every(.seconds(900)), missed: .once).missedFires(last: last, now: now) == [Self.t("2026-11-25T11:00:00Z")])
        #expect(Schedule(.every(.seconds(900)), missed: .skip).missedFires(last: last, now: now).isEmpty)
        #expect(all.missedFires(last: nil, now: now).isEmpty, "a first start has nothing to make up for")
    }

    @Test func aStoredBareCronStringStillDecodes() throws {
        let decoded = try JSONDecoder().decode(PipelineSpec.self, from: Data("""
            {"name":"p","schedule":"*/5 * * * *","overlap":"skip","concurrency":1,"params":{},"env":{},"root":"/","stages":[]}
            """.utf8))
        #expect(decoded.schedule == Schedule(.cron("*/5 * * * *")))
    }
}
