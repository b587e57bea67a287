import Dispatch
import Foundation
import GRDB
import GRDBSQLite
import Synchronization

/// WAL checkpoints on a connection of their own, off the writer. SQLite's automatic checkpoint runs in
/// the connection that commits, once the WAL holds 1,000 pages: the writer then copies pages into the
/// database file before it can take the next change (a twentieth of a large fan-out's time). Installed
/// as the writer's WAL hook (which replaces the automatic checkpoint), this hands the same checkpoint to
/// a queue of its own instead: a passive checkpoint, which waits for no reader or writer.
///
/// A checkpoint running beside the writer never catches up with it, and SQLite starts the WAL over only
/// after a checkpoint that copied all of it: once the WAL holds `catchUp` pages, the writer checkpoints
/// itself — the few pages the queue has not copied yet — so the WAL stays a few MiB, as before.
final class Checkpointer: Sendable {
    /// SQLite's own threshold for its automatic checkpoint.
    static let pages: Int32 = 1000
    static let catchUp: Int32 = 4000

    private let path: String
    private let queue = DispatchQueue(label: "sluice.sqlite.checkpoint")
    private let scheduled = Atomic<Bool>(false)
    private let connection = Mutex<DatabaseQueue?>(nil)

    init(path: String) { self.path = path }

    /// Makes `db` (the writer) hand its checkpoints to this checkpointer. `self` must outlive the connection.
    func install(on db: Database) {
        let context = Unmanaged.passUnretained(self).toOpaque()
        sqlite3_wal_hook(db.sqliteConnection, { context, connection, _, pages in
            if pages >= Checkpointer.catchUp {
                _ = sqlite3_wal_checkpoint_v2(connection, nil, SQLITE_CHECKPOINT_PASSIVE, nil, nil)
            } else if let context, pages >= Checkpointer.pages {
                Unmanaged<Checkpointer>.fromOpaque(context).takeUnretainedValue().schedule()
            }
            return SQLITE_OK
        }, context)
    }

    private func schedule() {
        guard scheduled.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
        queue.async { [self] in
            scheduled.store(false, ordering: .releasing)
            checkpoint()
        }
    }

    /// A passive checkpoint; a failure only leaves the pages in the WAL for the next one (or for the
    /// checkpoint SQLite makes when the last connection closes).
    private func checkpoint() {
        connection.withLock { connection in
            do {
                if connection == nil {
                    var config = Configuration()
                    config.busyMode = .timeout(1)
                    connection = try DatabaseQueue(path: path, configuration: config)
                }
                try connection?.writeWithoutTransaction { db in _ = try db.checkpoint(.passive) }
            } catch {
                connection = nil
            }
        }
    }

    /// Waits for a checkpoint under way and closes the connection.
    func close() {
        queue.sync {}
        connection.withLock { connection in
            try? connection?.close()
            connection = nil
        }
    }
}
