import Foundation

/// RFC 3339 date-times (`2026-11-25T17:00:00Z`, `…T17:00:00.5+02:00`), as OpenAPI's `date-time` format.
enum RFC3339 {
    static func date(_ text: String) -> Date? {
        let b = Array(text.utf8)
        func number(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= b.count else { return nil }
            var n = 0
            for c in b[from..<from + count] {
                guard c >= 48 && c <= 57 else { return nil }
                n = n * 10 + Int(c - 48)
            }
            return n
        }
        func byte(_ i: Int) -> UInt8? { i < b.count ? b[i] : nil }
        guard let year = number(0, 4), byte(4) == 45, let month = number(5, 2), byte(7) == 45, let day = number(8, 2),
              let t = byte(10), t == 84 || t == 116 || t == 32,
              let hour = number(11, 2), byte(13) == 58, let minute = number(14, 2), byte(16) == 58, let second = number(17, 2),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second <= 60 else { return nil }
        var i = 19
        var fraction = 0.0
        if byte(i) == 46 {
            i += 1
            var scale = 0.1
            let start = i
            while let c = byte(i), c >= 48 && c <= 57 { fraction += Double(c - 48) * scale; scale /= 10; i += 1 }
            guard i > start else { return nil }
        }
        var offset = 0
        switch byte(i) {
        case 90, 122: i += 1
        case 43, 45:
            guard let oh = number(i + 1, 2), byte(i + 3) == 58, let om = number(i + 4, 2), oh < 24, om < 60 else { return nil }
            offset = (oh * 3600 + om * 60) * (byte(i) == 45 ? -1 : 1)
            i += 6
        default: return nil
        }
        guard i == b.count else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        guard let base = calendar.date(from: DateComponents(year: year, month: month, day: day, hour: hour, minute: minute,
                                                            second: min(second, 59))) else { return nil }
        return base.addingTimeInterval(fraction - Double(offset))
    }
}
