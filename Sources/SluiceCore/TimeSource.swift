import Foundation

/// The clock that scheduling, retry and lease logic read. Inject a test clock to test them without sleeping.
public protocol TimeSource: Sendable {
    func now() -> Date
    /// Suspends until `deadline` (or returns at once if it has passed). Throws when the task is cancelled.
    func sleep(until deadline: Date) async throws
}

/// The real clock.
public struct SystemTimeSource: TimeSource {
    public init() {}
    public func now() -> Date { Date() }
    public func sleep(until deadline: Date) async throws {
        let seconds = deadline.timeIntervalSinceNow
        if seconds > 0 { try await Task.sleep(for: .milliseconds(Int64(seconds * 1000))) }
    }
}
