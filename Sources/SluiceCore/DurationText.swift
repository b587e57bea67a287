import Foundation

/// Durations as users write them: `500ms`, `5s`, `20m`, `2h`, `1h30m`, `1d`, or a plain number of seconds.
public enum DurationText {
    public static func parse(_ text: String) -> Duration? {
        let s = text.trimmingCharacters(in: .whitespaces)
        if s.isEmpty { return nil }
        if let seconds = Double(s) { return seconds >= 0 && seconds.isFinite ? .milliseconds(Int64(seconds * 1000)) : nil }
        var total: Int64 = 0 // milliseconds
        var number = ""
        var chars = Array(s)[...]
        var sawUnit = false
        while let c = chars.first {
            if c.isNumber || c == "." {
                number.append(c)
                chars = chars.dropFirst()
                continue
            }
            var unit = ""
            while let u = chars.first, u.isLetter { unit.append(u); chars = chars.dropFirst() }
            guard let value = Double(number), value >= 0 else { return nil }
            let factor: Double
            switch unit {
            case "ms": factor = 1
            case "s", "sec": factor = 1000
            case "m", "min": factor = 60_000
            case "h": factor = 3_600_000
            case "d": factor = 86_400_000
            default: return nil
            }
            total += Int64(value * factor)
            number = ""
            sawUnit = true
        }
        guard number.isEmpty, sawUnit else { return nil }
        return .milliseconds(total)
    }

    /// `1h2m3s`, `250ms`, `0s`.
    public static func format(_ duration: Duration) -> String {
        let ms = duration.milliseconds
        if ms < 1000 { return "\(ms)ms" }
        var seconds = ms / 1000
        var parts = ""
        let h = seconds / 3600; seconds %= 3600
        let m = seconds / 60; seconds %= 60
        if h > 0 { parts += "\(h)h" }
        if m > 0 { parts += "\(m)m" }
        if seconds > 0 || parts.isEmpty {
            if h == 0 && m == 0 && ms % 1000 != 0 {
                parts += String(format: "%.1fs", Double(ms) / 1000)
            } else {
                parts += "\(seconds)s"
            }
        }
        return parts
    }
}

extension Duration {
    public var milliseconds: Int64 {
        let (s, atto) = components
        return s * 1000 + atto / 1_000_000_000_000_000
    }

    /// In seconds, to the nanosecond (not rounded to the millisecond as `milliseconds` is: a measured
    /// task of a few microseconds is not zero).
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
