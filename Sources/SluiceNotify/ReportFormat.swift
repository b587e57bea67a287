import Foundation

/// How reports write numbers, sizes, durations, dates and statuses for people.
enum Human {
    /// `850 ms`, `4.2 s`, `45 s`, `2 min 5 s`, `1 h 3 min`, `2 d 4 h`; `–` when unknown.
    static func duration(ms: Int64?) -> String {
        guard let ms, ms >= 0 else { return "–" }
        if ms < 1000 { return "\(ms) ms" }
        if ms < 10_000 {
            let tenths = (ms + 50) / 100
            return tenths % 10 == 0 ? "\(tenths / 10) s" : "\(tenths / 10).\(tenths % 10) s"
        }
        let s = (ms + 500) / 1000
        if s < 60 { return "\(s) s" }
        if s < 3600 { return s % 60 == 0 ? "\(s / 60) min" : "\(s / 60) min \(s % 60) s" }
        let m = s / 60
        if m < 24 * 60 { return m % 60 == 0 ? "\(m / 60) h" : "\(m / 60) h \(m % 60) min" }
        let h = m / 60
        return h % 24 == 0 ? "\(h / 24) d" : "\(h / 24) d \(h % 24) h"
    }

    static func duration(_ d: Duration) -> String {
        let (seconds, attoseconds) = d.components
        return duration(ms: seconds * 1000 + attoseconds / 1_000_000_000_000_000)
    }

    /// Decimal units: `512 B`, `12.3 kB`, `1.2 MB`, `3.40 GB`; `–` when unknown.
    static func bytes(_ n: Int64?) -> String {
        guard let n, n >= 0 else { return "–" }
        if n < 1000 { return "\(n) B" }
        let units = ["kB", "MB", "GB", "TB", "PB"]
        var value = Double(n) / 1000
        var unit = 0
        while value >= 999.95, unit < units.count - 1 { value /= 1000; unit += 1 }
        return value >= 100 ? String(format: "%.0f %@", value, units[unit]) : String(format: "%.1f %@", value, units[unit])
    }

    /// `12,345`.
    static func count(_ n: Int) -> String {
        let digits = String(n.magnitude)
        var out = ""
        for (i, c) in digits.enumerated() {
            if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return (n < 0 ? "-" : "") + out
    }

    /// `2025-06-01 08:02:05 UTC`; `–` when unknown.
    static func date(_ d: Date?) -> String {
        guard let d else { return "–" }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: d)
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d UTC", c.year ?? 0, c.month ?? 0, c.day ?? 0,
                      c.hour ?? 0, c.minute ?? 0, c.second ?? 0)
    }

    /// `daily-report` → `Daily report`.
    static func phrase(_ name: String) -> String {
        let words = name.replacingOccurrences(of: "_", with: " ").replacingOccurrences(of: "-", with: " ")
        guard let first = words.first else { return name }
        return first.uppercased() + words.dropFirst()
    }

    /// `policies` → `Policies`.
    static func capitalized(_ s: String) -> String {
        guard let first = s.first else { return s }
        return first.uppercased() + s.dropFirst()
    }

    static func plural(_ n: Int, _ one: String, _ many: String? = nil) -> String {
        "\(count(n)) \(n == 1 ? one : (many ?? one + "s"))"
    }
}

/// The look of a status: its words, badge colours and icon.
struct StatusStyle: Sendable {
    var label: String
    var color: String
    var textColor: String
    var icon: String

    static let green = "#1a7f37", orange = "#cc5500", red = "#cf222e", grey = "#6e7781", blue = "#0969da", lightGrey = "#8c959f"

    static func of(_ status: String) -> StatusStyle {
        switch status {
        case "success": StatusStyle(label: "success", color: green, textColor: "#ffffff", icon: "✅")
        case "partial_success": StatusStyle(label: "partial success", color: orange, textColor: "#ffffff", icon: "⚠️")
        case "rolled_back": StatusStyle(label: "rolled back", color: orange, textColor: "#ffffff", icon: "↩️")
        case "failed": StatusStyle(label: "failed", color: red, textColor: "#ffffff", icon: "❌")
        case "upstream_failed": StatusStyle(label: "upstream failed", color: red, textColor: "#ffffff", icon: "❌")
        case "skipped": StatusStyle(label: "skipped", color: grey, textColor: "#ffffff", icon: "⏭️")
        case "cancelled": StatusStyle(label: "cancelled", color: grey, textColor: "#ffffff", icon: "🚫")
        case "running": StatusStyle(label: "running", color: blue, textColor: "#ffffff", icon: "⏳")
        case "pending": StatusStyle(label: "pending", color: lightGrey, textColor: "#ffffff", icon: "🕓")
        case "missing": StatusStyle(label: "never started", color: lightGrey, textColor: "#ffffff", icon: "⭕")
        case "complete": StatusStyle(label: "complete", color: green, textColor: "#ffffff", icon: "✅")
        case "timed_out": StatusStyle(label: "timed out", color: orange, textColor: "#ffffff", icon: "⏰")
        case "open": StatusStyle(label: "open", color: blue, textColor: "#ffffff", icon: "⏳")
        default: StatusStyle(label: status.replacingOccurrences(of: "_", with: " "), color: grey, textColor: "#ffffff", icon: "•")
        }
    }
}

/// Member badge colours: the session's, when it is a plain CSS colour, else the default palette's.
enum MemberColors {
    static let palette = ["#1f6feb", "#f2c200", "#8250df", "#1b7c83", "#bf3989", "#953800", "#57606a"]

    static func color(_ given: String?, index: Int) -> String {
        if let given = given?.trimmingCharacters(in: .whitespaces), isSafeCSSColor(given) { return given }
        return palette[index % palette.count]
    }

    /// A colour that can go into a style attribute as it is: `#rgb`, `#rrggbb(aa)`, a name, or `rgb(…)`/`hsl(…)`.
    static func isSafeCSSColor(_ s: String) -> Bool {
        guard !s.isEmpty, s.count <= 40 else { return false }
        if s.hasPrefix("#") {
            let hex = s.dropFirst()
            return [3, 4, 6, 8].contains(hex.count) && hex.allSatisfy(\.isHexDigit)
        }
        if s.allSatisfy({ $0.isASCII && $0.isLetter }) { return true }
        for fn in ["rgb(", "rgba(", "hsl(", "hsla("] where s.lowercased().hasPrefix(fn) && s.hasSuffix(")") {
            let inner = s.dropFirst(fn.count).dropLast()
            return inner.allSatisfy { $0.isASCII && ($0.isNumber || " .,%/".contains($0) || $0 == "d" || $0 == "e" || $0 == "g") }
        }
        return false
    }

    /// Dark text on light badge colours (a yellow), white on the others.
    static func textColor(on color: String) -> String {
        let light = ["yellow", "gold", "khaki", "white", "ivory", "lightyellow", "beige", "wheat", "orange", "lime", "cyan", "aqua"]
        if light.contains(color.lowercased()) { return "#1f2328" }
        guard color.hasPrefix("#") else { return "#ffffff" }
        var hex = String(color.dropFirst())
        if hex.count == 3 || hex.count == 4 { hex = hex.prefix(3).map { "\($0)\($0)" }.joined() }
        guard hex.count >= 6, let v = UInt32(hex.prefix(6), radix: 16) else { return "#ffffff" }
        func channel(_ shift: UInt32) -> Double {
            let c = Double((v >> shift) & 0xff) / 255
            return c <= 0.03928 ? c / 12.92 : pow((c + 0.055) / 1.055, 2.4)
        }
        let luminance = 0.2126 * channel(16) + 0.7152 * channel(8) + 0.0722 * channel(0)
        return luminance > 0.4 ? "#1f2328" : "#ffffff"
    }
}

/// Plain-text tables: columns padded to their widest cell (by characters, so emoji may shift a little).
enum TextTable {
    static func lines(header: [String], rows: [[String]], indent: String = "  ") -> [String] {
        guard !rows.isEmpty else { return [] }
        let all = [header] + rows
        let columns = header.count
        var widths = [Int](repeating: 0, count: columns)
        for row in all { for (i, cell) in row.prefix(columns).enumerated() { widths[i] = max(widths[i], cell.count) } }
        func line(_ row: [String]) -> String {
            var out = indent
            for i in 0..<columns {
                let cell = i < row.count ? row[i] : ""
                out += i == columns - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) + "  "
            }
            return out.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }
        return [line(header), indent + widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")] + rows.map(line)
    }
}
