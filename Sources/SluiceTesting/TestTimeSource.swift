import Foundation
import SluiceCore
import Synchronization

/// A clock for tests: `sleep(until:)` returns at once and moves the clock to the deadline, so retry
/// backoffs and leases can be tested without waiting. Everything else reads `now()`.
public final class TestTimeSource: TimeSource {
    private let current: Mutex<Date>
    private let sleeps = Mutex<[Date]>([])

    public init(start: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        current = Mutex(start)
    }

    public func now() -> Date { current.withLock { $0 } }

    public func advance(by seconds: TimeInterval) {
        current.withLock { $0 = $0.addingTimeInterval(seconds) }
    }

    public func sleep(until deadline: Date) async throws {
        try Task.checkCancellation()
        sleeps.withLock { $0.append(deadline) }
        current.withLock { if deadline > $0 { $0 = deadline } }
        await Task.yield()
    }

    /// Every deadline slept until, in order.
    public var deadlines: [Date] { sleeps.withLock { $0 } }
}

/// A fresh temporary folder, removed by `remove()`.
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init(prefix: String = "sluice-test") throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        path = base.path
    }

    public func file(_ relative: String) -> String { (path as NSString).appendingPathComponent(relative) }

    public func write(_ relative: String, _ text: String, executable: Bool = false) throws {
        let target = file(relative)
        try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: URL(fileURLWithPath: target))
        if executable { try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: target) }
    }

    public func remove() { try? FileManager.default.removeItem(atPath: path) }
}
