import Foundation
import SluiceCore
import SluiceEngine
import SluiceStore

extension SessionReport {
    /// The report of a recorded session: every member the session declares, with its run's report.
    ///
    /// `asTimedOut`: the partial report, as the session stood when it timed out. A member that ended late
    /// (the notice may go out hours later, after an outage) is shown as it was then: still running, or
    /// missing when its run joined after the timeout; its own late report tells the rest.
    public static func build(store: any StateStore, session: SessionRecord, asTimedOut: Bool = false) async throws -> SessionReport {
        var members: [Member] = []
        for declared in session.spec.members {
            var member = session.members.first { $0.pipeline == declared.pipeline }
            var status = member?.runStatus.rawValue ?? "missing"
            if asTimedOut, let late = member, late.late {
                if let closed = session.closedAt, late.joinedAt > closed {
                    member = nil
                    status = "missing"
                } else {
                    status = RunStatus.running.rawValue
                }
            }
            var report: RunReport?
            if let member, !(asTimedOut && member.late) { report = try await RunReport.build(store: store, runID: member.runID) }
            members.append(Member(pipeline: declared.pipeline, title: declared.displayName, color: declared.color,
                                  runId: member?.runID.rawValue, status: status,
                                  late: !asTimedOut && (member?.late ?? false), report: report))
        }
        var report = SessionReport(sessionId: session.id, name: session.name, title: session.spec.title ?? session.name,
                             description: session.spec.description, key: session.key, status: session.status.rawValue,
                             openedAt: session.openedAt, deadline: session.deadline, closedAt: session.closedAt, members: members)
        report.headline = session.spec.headline
        return report
    }
}
