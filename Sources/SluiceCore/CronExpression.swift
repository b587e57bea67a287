import Foundation

/// A 5-field cron expression (minute hour day-of-month month day-of-week) or an `@` shortcut,
/// parsed into the set of values each field allows. Firing times are computed by the scheduler.
public struct CronExpression: Sendable, Hashable, Codable {
    public var minutes: Set<Int>
    public var hours: Set<Int>
    public var daysOfMonth: Set<Int>
    public var months: Set<Int>
    /// 0 = Sunday … 6 = Saturday (7 is read as Sunday too).
    public var daysOfWeek: Set<Int>
    /// Whether day-of-month and day-of-week were both restricted (then either may match, as in Vixie cron).
    public var dayFieldsBothRestricted: Bool
    public var source: String

    public struct ParseError: Error, Hashable, Sendable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    static let shortcuts = ["@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                            "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"]
    static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    static let dayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    public init(_ text: String) throws(ParseError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        source = trimmed
        var expanded = trimmed
        if trimmed.hasPrefix("@") {
            guard let e = Self.shortcuts[trimmed.lowercased()] else {
                throw ParseError(message: "unknown shortcut '\(trimmed)' (known: \(Self.shortcuts.keys.sorted().joined(separator: ", ")))")
            }
            expanded = e
        }
        let fields = expanded.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        guard fields.count == 5 else {
            throw ParseError(message: "it has \(fields.count) field\(fields.count == 1 ? "" : "s"), not 5")
        }
        minutes = try Self.field(fields[0], "minute", 0...59, names: [])
        hours = try Self.field(fields[1], "hour", 0...23, names: [])
        daysOfMonth = try Self.field(fields[2], "day of month", 1...31, names: [])
        months = try Self.field(fields[3], "month", 1...12, names: Self.monthNames, nameBase: 1)
        var dow = try Self.field(fields[4], "day of week", 0...7, names: Self.dayNames)
        if dow.remove(7) != nil { dow.insert(0) }
        daysOfWeek = dow
        dayFieldsBothRestricted = fields[2] != "*" && fields[4] != "*"
    }

    static func field(_ text: String, _ name: String, _ range: ClosedRange<Int>, names: [String], nameBase: Int = 0) throws(ParseError) -> Set<Int> {
        var values: Set<Int> = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
            guard !part.isEmpty else { throw ParseError(message: "the \(name) field '\(text)' has an empty list entry") }
            var base = part
            var step = 1
            if let slash = part.firstIndex(of: "/") {
                base = String(part[..<slash])
                guard let s = Int(part[part.index(after: slash)...]), s > 0 else {
                    throw ParseError(message: "the \(name) field '\(text)' has a bad step after '/'")
                }
                step = s
            }
            func value(_ s: String) throws(ParseError) -> Int {
                if let n = Int(s) {
                    guard range.contains(n) else {
                        throw ParseError(message: "the \(name) field allows \(range.lowerBound)-\(range.upperBound), got \(n)")
                    }
                    return n
                }
                if let i = names.firstIndex(of: s.lowercased()) { return i + nameBase }
                throw ParseError(message: "the \(name) field '\(text)' holds '\(s)', which is not a number\(names.isEmpty ? "" : " or a name")")
            }
            let bounds: ClosedRange<Int>
            if base == "*" || base == "?" {
                bounds = range
            } else if let dash = base.firstIndex(of: "-") {
                let lo = try value(String(base[..<dash])), hi = try value(String(base[base.index(after: dash)...]))
                guard lo <= hi else { throw ParseError(message: "the \(name) range '\(base)' runs backwards") }
                bounds = lo...hi
            } else {
                let v = try value(base)
                bounds = v...(part.contains("/") ? range.upperBound : v)
            }
            values.formUnion(stride(from: bounds.lowerBound, through: bounds.upperBound, by: step))
        }
        return values
    }
}
