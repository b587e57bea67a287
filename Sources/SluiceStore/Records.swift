import Foundation
import SluiceCore

/// A run's identifier: `YYYYMMDD-HHMMSS-xxxxxx`, sortable by creation time and short enough to type.
public struct RunID: Hashable, Sendable, Codable, CustomStringConvertible, Comparable {
    public var rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    /// `YYYYMMDD-HHMMSS-xxxxxx`: the UTC time, then six random hex digits. Formatted by hand: a calendar
    /// and `String(format:)` cost a process its first run a millisecond of Foundation set-up.
    public static func generate(at date: Date) -> RunID {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var t = tm()
        gmtime_r(&seconds, &t)
        func digits<N: BinaryInteger>(_ value: N, _ width: Int, radix: Int = 10) -> String {
            let text = String(value, radix: radix)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return RunID(digits(t.tm_year + 1900, 4) + digits(t.tm_mon + 1, 2) + digits(t.tm_mday, 2) + "-"
                     + digits(t.tm_hour, 2) + digits(t.tm_min, 2) + digits(t.tm_sec, 2) + "-"
                     + digits(UInt32.random(in: 0..<0x100_0000), 6, radix: 16))
    }
}

public typealias TaskID = Int64

/// Who holds a lease: one process on one host.
public struct LeaseOwner: Hashable, Sendable, Codable {
    public var id: String
    public var host: String
    public var pid: Int32

    public init(id: String = UUID().uuidString.lowercased(), host: String, pid: Int32) {
        self.id = id
        self.host = host
        self.pid = pid
    }

    /// The holder of a run recorded for workers (`sluice run --detach`): every worker that holds one
    /// of its tasks renews it, so it expires only when no worker works on it.
    public static let workerPool = LeaseOwner(id: "worker-pool", host: "", pid: 0)

    public static func currentProcess() -> LeaseOwner {
        LeaseOwner(host: ProcessInfo.processInfo.hostName, pid: ProcessInfo.processInfo.processIdentifier)
    }
}

public struct RunRecord: Sendable, Codable, Hashable {
    /// The record as `acquireRun` leaves it: running, leased to `owner` until `until`.
    public func acquired(by owner: LeaseOwner, until: Date, now: Date) -> RunRecord {
        var updated = self
        updated.status = .running
        updated.startedAt = startedAt ?? now
        updated.finishedAt = nil
        updated.leaseOwner = owner
        updated.leaseExpiresAt = until
        return updated
    }

    public var id: RunID
    public var pipeline: String
    public var spec: PipelineSpec
    public var params: [String: String]
    public var trigger: String
    public var status: RunStatus
    public var createdAt: Date
    public var startedAt: Date?
    public var finishedAt: Date?
    public var cancelRequestedAt: Date?
    public var leaseOwner: LeaseOwner?
    public var leaseExpiresAt: Date?
    public var idempotencyKey: String?
    /// Where this run's files live (`.sluice/runs/<id>`).
    public var runDir: String

    public init(id: RunID, pipeline: String, spec: PipelineSpec, params: [String: String], trigger: String,
                status: RunStatus, createdAt: Date, startedAt: Date? = nil, finishedAt: Date? = nil,
                cancelRequestedAt: Date? = nil, leaseOwner: LeaseOwner? = nil, leaseExpiresAt: Date? = nil,
                idempotencyKey: String? = nil, runDir: String) {
        self.id = id
        self.pipeline = pipeline
        self.spec = spec
        self.params = params
        self.trigger = trigger
        self.status = status
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.cancelRequestedAt = cancelRequestedAt
        self.leaseOwner = leaseOwner
        self.leaseExpiresAt = leaseExpiresAt
        self.idempotencyKey = idempotencyKey
        self.runDir = runDir
    }
}

public struct StageRecord: Sendable, Codable, Hashable {
    public var runID: RunID
    public var name: StageName
    public var status: StageStatus
    public var reason: String?
    public var startedAt: Date?
    public var finishedAt: Date?

    public init(runID: RunID, name: StageName, status: StageStatus, reason: String? = nil,
                startedAt: Date? = nil, finishedAt: Date? = nil) {
        self.runID = runID
        self.name = name
        self.status = status
        self.reason = reason
        self.startedAt = startedAt
        self.finishedAt = finishedAt
    }
}

public struct TaskRecord: Sendable, Codable, Hashable {
    public var id: TaskID
    public var runID: RunID
    public var stage: StageName
    /// Stable key within the stage (`main` for a single-task stage; an item key for fan-out).
    public var key: String
    public var status: TaskStatus
    /// Attempts started so far.
    public var attempts: Int
    /// Attempts lost to a crashed or vanished process, in a row.
    public var lostAttempts: Int
    /// A pending task is not claimed before this time (retry backoff).
    public var notBefore: Date?
    public var leaseOwner: String?
    public var leaseExpiresAt: Date?
    public var createdAt: Date
    public var finishedAt: Date?
    /// The item a fan-out task processes (JSON), nil for other tasks.
    public var item: Data?

    public init(id: TaskID, runID: RunID, stage: StageName, key: String, status: TaskStatus, attempts: Int,
                lostAttempts: Int, notBefore: Date?, leaseOwner: String?, leaseExpiresAt: Date?,
                createdAt: Date, finishedAt: Date?, item: Data? = nil) {
        self.id = id
        self.runID = runID
        self.stage = stage
        self.key = key
        self.status = status
        self.attempts = attempts
        self.lostAttempts = lostAttempts
        self.notBefore = notBefore
        self.leaseOwner = leaseOwner
        self.leaseExpiresAt = leaseExpiresAt
        self.createdAt = createdAt
        self.finishedAt = finishedAt
        self.item = item
    }
}

/// The measured facts of one attempt at a task.
public struct AttemptRecord: Sendable, Codable, Hashable {
    public var taskID: TaskID
    public var runID: RunID
    public var stage: StageName
    public var number: Int
    public var outcome: AttemptOutcome
    public var startedAt: Date
    public var finishedAt: Date?
    public var exitCode: Int32?
    public var signal: Int32?
    public var cpuMs: Int64?
    public var peakRSSBytes: Int64?
    public var stdoutBytes: Int64
    public var stderrBytes: Int64
    public var stderrTail: String?
    public var message: String?
    public var host: String?
    public var pid: Int32?
    /// Start time of the process (Linux clock ticks since boot), so a leftover process group can be
    /// recognised after a crash without being confused with a reused pid.
    public var processStartTicks: Int64?
    /// Business counters and failed records the attempt reported: `count.<name>`, `rejected`, `rejected.<n>`.
    public var counters: [String: String]

    public var wallMs: Int64? {
        finishedAt.map { Int64(($0.timeIntervalSince(startedAt) * 1000).rounded()) }
    }

    public init(taskID: TaskID, runID: RunID, stage: StageName, number: Int, outcome: AttemptOutcome,
                startedAt: Date, finishedAt: Date? = nil, exitCode: Int32? = nil, signal: Int32? = nil,
                cpuMs: Int64? = nil, peakRSSBytes: Int64? = nil, stdoutBytes: Int64 = 0, stderrBytes: Int64 = 0,
                stderrTail: String? = nil, message: String? = nil, host: String? = nil, pid: Int32? = nil,
                processStartTicks: Int64? = nil, counters: [String: String] = [:]) {
        self.taskID = taskID
        self.runID = runID
        self.stage = stage
        self.number = number
        self.outcome = outcome
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.exitCode = exitCode
        self.signal = signal
        self.cpuMs = cpuMs
        self.peakRSSBytes = peakRSSBytes
        self.stdoutBytes = stdoutBytes
        self.stderrBytes = stderrBytes
        self.stderrTail = stderrTail
        self.message = message
        self.host = host
        self.pid = pid
        self.processStartTicks = processStartTicks
        self.counters = counters
    }
}

/// One line of a run's event log.
public struct EventRecord: Sendable, Codable, Hashable {
    /// Assigned by the store, increasing; 0 before it is stored.
    public var id: Int64
    public var runID: RunID
    public var pipeline: String
    public var stage: StageName?
    public var taskID: TaskID?
    public var attempt: Int?
    public var event: String
    public var time: Date
    public var message: String
    public var attrs: [String: String]

    public init(id: Int64 = 0, runID: RunID, pipeline: String, stage: StageName? = nil, taskID: TaskID? = nil,
                attempt: Int? = nil, event: String, time: Date, message: String, attrs: [String: String] = [:]) {
        self.id = id
        self.runID = runID
        self.pipeline = pipeline
        self.stage = stage
        self.taskID = taskID
        self.attempt = attempt
        self.event = event
        self.time = time
        self.message = message
        self.attrs = attrs
    }
}

/// One item a producer stage emitted: a stable key and its JSON value.
public struct ItemRecord: Sendable, Hashable, Codable {
    public var key: String
    public var value: Data

    public init(key: String, value: Data) {
        self.key = key
        self.value = value
    }
}

/// A credential for the HTTP API. The secret itself is shown once, when created; the store keeps
/// only its SHA-256 (hex), so a copy of the store gives no access.
public struct APIToken: Sendable, Codable, Hashable {
    public var name: String
    public var hash: String
    public var createdAt: Date
    public var revokedAt: Date?

    public init(name: String, hash: String, createdAt: Date, revokedAt: Date? = nil) {
        self.name = name
        self.hash = hash
        self.createdAt = createdAt
        self.revokedAt = revokedAt
    }
}

/// One published version of an artifact (C13), as the store indexes it. The files and the JSON index
/// beside them (`artifacts/<name>/index.json` under `root`) are what restores read; this record lets
/// `sluice artifacts` list versions and `when: changed` know which stages published in a run.
public struct ArtifactVersionRecord: Sendable, Codable, Hashable {
    public var pipeline: String
    public var name: String
    public var version: Int
    public var sha256: String
    public var size: Int64
    public var createdAt: Date
    public var runID: RunID?
    public var stage: StageName?
    /// The pipeline root the artifact lives under (absolute).
    public var root: String
    /// The version's file, relative to `root/artifacts/<name>` (`newest/...` when published).
    public var file: String
    public var annotations: [String: String]

    public init(pipeline: String, name: String, version: Int, sha256: String, size: Int64, createdAt: Date,
                runID: RunID?, stage: StageName?, root: String, file: String, annotations: [String: String] = [:]) {
        self.pipeline = pipeline
        self.name = name
        self.version = version
        self.sha256 = sha256
        self.size = size
        self.createdAt = createdAt
        self.runID = runID
        self.stage = stage
        self.root = root
        self.file = file
        self.annotations = annotations
    }
}
