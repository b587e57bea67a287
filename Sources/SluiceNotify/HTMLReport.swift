import Foundation
import SluiceCore
import SluiceEngine

/// Writes a run's report as HTML (the built-in `run_report` template) to `path`, atomically: into a
/// temporary file beside it, then renamed over it, so a reader never sees half a report.
/// The engine writes `.sluice/runs/<id>/report.html` beside `report.json` with it.
public func writeHTMLReport(_ report: RunReport, to path: String) throws {
    let html = try ReportTemplates.builtInRunReport.render(run: report, kind: .runReport).html
    try writeAtomically(Data(html.utf8), to: path)
}

/// Writes data into `path` through a temporary file in the same folder and a rename.
func writeAtomically(_ data: Data, to path: String) throws(TemplateError) {
    let url = URL(fileURLWithPath: path)
    let folder = url.deletingLastPathComponent()
    let temporary = folder.appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
    do {
        try data.write(to: temporary)
    } catch {
        throw TemplateError(.write, "cannot write \(temporary.path): \(error.localizedDescription)",
                            hint: "check that the folder \(folder.path) exists and is writable")
    }
    guard rename(temporary.path, url.path) == 0 else {
        let reason = String(cString: strerror(errno))
        try? FileManager.default.removeItem(at: temporary)
        throw TemplateError(.write, "cannot move the report into \(path): \(reason)")
    }
}
