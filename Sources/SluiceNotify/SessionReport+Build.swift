import Foundation
import SluiceCore
import SluiceEngine
import SluiceStore

extension SessionReport {
    /// The report of a recorded session: every member the session declares, with its run's report.
    public static func build(store: any StateStore, session: SessionRecord) async throws -> SessionReport {
        var members: [Member] = []
        for declared in session.spec.members {
            let member = session.members.first { $0.pipeline == declared.pipeline }
            var report: RunReport?
            if let member { report = try await RunReport.build(store: store, runID: member.runID) }
            members.append(Member(pipeline: declared.pipeline, title: declared.displayName, color: declared.color,
                                  runId: member?.runID.rawValue, status: member?.runStatus.rawValue ?? "missing",
                                  late: member?.late ?? false, report: report))
        }
        var report = SessionReport(sessionId: session.id, name: session.name, title: session.spec.title ?? session.name,
                             description: session.spec.description, key: session.key, status: session.status.rawValue,
                             openedAt: session.openedAt, deadline: session.deadline, closedAt: session.closedAt, members: members)
        report.headline = session.spec.headline
        return report
    }
}
