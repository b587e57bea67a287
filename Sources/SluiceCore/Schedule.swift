import Foundation

/// When `sluice serve` starts a pipeline on its own: a cron expression in a time zone, or a fixed
/// interval, with a policy for the firings missed while nothing was serving.
public struct Schedule: Sendable, Hashable, Codable {
    public enum Rule: Sendable, Hashable, Codable {
        /// A 5-field cron expression (or `@hourly`, `@daily`, …), read as wall-clock time in `timeZone`.
        case cron(String)
        /// Every interval, aligned to the Unix epoch (`every: 15m` fires at :00, :15, :30, :45).
        case every(Duration)
    }

    public var rule: Rule
    /// An IANA time zone name (e.g. `Europe/Madrid`); UTC when nil.
    public var timeZone: String?
    public var missed: MissedRuns

    public init(_ rule: Rule, timeZone: String? = nil, missed: MissedRuns = .skip) {
        self.rule = rule
        self.timeZone = timeZone
        self.missed = missed
    }

    /// The first firing strictly after `date`, or nil when the rule never fires again.
    public func nextFire(after date: Date) -> Date? {
        switch rule {
        case .cron(let text):
            guard let cron = try? CronExpression(text) else { return nil }
            return cron.next(after: date, in: timeZone.flatMap(TimeZone.init(identifier:)) ?? TimeZone(identifier: "UTC")!)
        case .every(let interval):
            let step = interval.seconds
            guard step > 0 else { return nil }
            return Date(timeIntervalSince1970: ((date.timeIntervalSince1970 / step).rounded(.down) + 1) * step)
        }
    }

    /// The firings in `(after, through]`, oldest first, at most `limit` of them (the newest when cut).
    public func fires(after: Date, through: Date, limit: Int) -> [Date] {
        var result: [Date] = []
        var cursor = after
        while let next = nextFire(after: cursor), next <= through {
            result.append(next)
            if result.count > limit { result.removeFirst() }
            cursor = next
        }
        return result
    }

    /// The firings to make up for when serving resumes at `now`, the last recorded one being `last`.
    public func missedFires(last: Date?, now: Date) -> [Date] {
        guard let last else { return [] }
        switch missed {
        case .skip: return []
        case .once: return fires(after: last, through: now, limit: 1)
        case .all(let max): return fires(after: last, through: now, limit: max)
        }
    }

    public var summary: String {
        switch rule {
        case .cron(let text): "cron \"\(text)\"\(timeZone.map { " (\($0))" } ?? " (UTC)")"
        case .every(let d): "every \(DurationText.format(d))"
        }
    }

    // A bare string in stored specs is a cron expression in UTC (the first format).
    public init(from decoder: any Decoder) throws {
        if let text = try? decoder.singleValueContainer().decode(String.self) {
            self.init(.cron(text))
            return
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(try c.decode(Rule.self, forKey: .rule), timeZone: try c.decodeIfPresent(String.self, forKey: .timeZone),
                  missed: try c.decodeIfPresent(MissedRuns.self, forKey: .missed) ?? .skip)
    }

    enum CodingKeys: String, CodingKey { case rule, timeZone, missed }
}

extension Schedule: ExpressibleByStringLiteral {
    /// A cron expression in UTC: `schedule: "*/15 * * * *"`.
    public init(stringLiteral value: String) { self.init(.cron(value)) }
}

/// What to do about firings missed while nothing was serving.
public enum MissedRuns: Sendable, Hashable, Codable {
    /// Nothing: the next firing is the next one from now.
    case skip
    /// One catch-up run (for the latest missed firing).
    case once
    /// A run for each missed firing, at most this many (the latest ones).
    case all(max: Int)
}

extension CronExpression {
    /// The first time strictly after `date` whose wall-clock time in `zone` matches. Daylight saving
    /// changes neither skip nor double a firing: a wall-clock time that does not exist (the clocks
    /// jumped over it) fires at the jump; one that happens twice fires at its first occurrence only.
    public func next(after date: Date, in zone: TimeZone) -> Date? {
        var utc = Calendar(identifier: .gregorian)
        utc.timeZone = TimeZone(identifier: "UTC")!
        let afterWall = date.timeIntervalSince1970 + Double(zone.secondsFromGMT(for: date))
        let startDay = utc.startOfDay(for: Date(timeIntervalSince1970: afterWall))
        let hours = self.hours.sorted(), minutes = self.minutes.sorted()
        // Five years covers every expression that fires at all (29 February on a given weekday included).
        for dayIndex in 0..<(366 * 5 + 2) {
            guard let day = utc.date(byAdding: .day, value: dayIndex, to: startDay) else { return nil }
            let parts = utc.dateComponents([.month, .day, .weekday], from: day)
            guard let month = parts.month, let dom = parts.day, let weekday = parts.weekday,
                  months.contains(month), matchesDay(dayOfMonth: dom, dayOfWeek: weekday - 1) else { continue }
            for hour in hours {
                for minute in minutes {
                    let wall = day.timeIntervalSince1970 + Double(hour * 3600 + minute * 60)
                    guard wall > afterWall else { continue }
                    let instant = Self.instant(wall: wall, in: zone)
                    if instant > date { return instant }
                }
            }
        }
        return nil
    }

    func matchesDay(dayOfMonth: Int, dayOfWeek: Int) -> Bool {
        let domOK = daysOfMonth.contains(dayOfMonth), dowOK = daysOfWeek.contains(dayOfWeek)
        return dayFieldsBothRestricted ? (domOK || dowOK) : (domOK && dowOK)
    }

    /// The moment a wall-clock time (seconds since the epoch, read as if in UTC) happens in `zone`:
    /// its first occurrence when it happens twice, the clock change when it does not happen at all.
    static func instant(wall: Double, in zone: TimeZone) -> Date {
        let offsets = Set([-86_400.0, 0, 86_400].map { Double(zone.secondsFromGMT(for: Date(timeIntervalSince1970: wall + $0))) })
        let valid = offsets.map { Date(timeIntervalSince1970: wall - $0) }
            .filter { Double(zone.secondsFromGMT(for: $0)) == wall - $0.timeIntervalSince1970 }
        if let first = valid.min() { return first }
        let latest = offsets.max() ?? 0
        return zone.nextDaylightSavingTimeTransition(after: Date(timeIntervalSince1970: wall - latest - 1))
            ?? Date(timeIntervalSince1970: wall - (offsets.min() ?? 0))
    }
}
