import Foundation
import Logging
import SluiceStore
import SluiceSupervisor
import Synchronization

/// What a task reports besides its exit: items (producers), business counters and failed records.
/// Filled from a command's stdout line protocol or a Swift stage's context; drained by the executor.
final class OutputSink: Sendable {
    let producer: Bool
    let counters = CounterBox()
    private let state = Mutex<(items: [ItemRecord], count: Int, problem: String?, lines: Int)>(([], 0, nil, 0))

    init(producer: Bool) { self.producer = producer }

    private let madeLogger = Mutex<Logger?>(nil)

    /// The task's logger (`StageContext.logger`), made by `make` at the first use.
    func logger(_ make: () -> Logger) -> Logger {
        madeLogger.withLock { made in
            if let made { return made }
            let logger = make()
            made = logger
            return logger
        }
    }

    /// One stdout line of a command.
    func line(_ text: String) {
        let number = state.withLock { s -> Int in s.lines += 1; return s.lines }
        switch OutputProtocol.parse(text, producer: producer) {
        case .item(let data):
            let explicit = text.hasPrefix("::item::")
            guard producer else {
                if explicit { fail("stdout line \(number): ::item:: but no stage takes this stage's items (for_each)") }
                return
            }
            do { add(try Items.record(json: data)) } catch {
                // A plain line that only looks like JSON is output; a marked one must be an item.
                if explicit { fail("stdout line \(number): ::item:: is followed by invalid JSON: \(text.prefix(200))") }
            }
        case .count(let name, let n): counters.add(name, n)
        case .reject(let record, let reason): counters.reject(record, reason: reason)
        case .other: break
        }
    }

    func add(_ item: ItemRecord) {
        let full = state.withLock { s -> Bool in
            s.items.append(item)
            s.count += 1
            return s.items.count == Self.batch
        }
        if full { filled.nudge() }
    }

    /// Items recorded in one go once that many wait (a producer's items are otherwise recorded every 100 ms).
    static let batch = 1024
    private let filled = Nudge()

    /// Returns once `count` items wait to be recorded, after `timeout`, or when the task is cancelled.
    func waitForBatch(_ count: Int, timeout: Duration) async {
        if state.withLock({ $0.items.count >= count }) { return }
        await filled.wait(upTo: timeout)
    }

    func fail(_ problem: String) {
        state.withLock { s in if s.problem == nil { s.problem = problem } }
    }

    /// Items not yet recorded, oldest first: at most `limit` of them.
    func pendingItems(limit: Int) -> [ItemRecord] {
        state.withLock { Array($0.items.prefix(limit)) }
    }

    /// The first `count` pending items were recorded.
    func recorded(_ count: Int) {
        state.withLock { $0.items.removeFirst(min(count, $0.items.count)) }
        drained.nudge()
    }

    private let drained = Nudge()

    /// Returns once at most `limit` items wait to be recorded (a fast Swift producer's back-pressure: the
    /// executor records pending items every 100 ms), or when the task is cancelled.
    func waitForRoom(limit: Int) async {
        while state.withLock({ $0.items.count }) > limit && !Task.isCancelled {
            await drained.wait()
        }
    }

    var itemCount: Int { state.withLock { $0.count } }
    /// Set when the task's output broke the protocol: the attempt fails with this message.
    var problem: String? { state.withLock { $0.problem } }

    /// Items a command wrote to `$SLUICE_ITEMS`, one JSON value per line.
    func readItemsFile(_ path: String) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return }
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
            do { add(try Items.record(json: Data(line.utf8))) } catch {
                fail("\(path):\(i + 1): not a JSON value: \(line.prefix(200))")
            }
        }
    }
}
