import Foundation
import SluiceTesting
import Subprocess
import Testing
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// The API against its own OpenAPI document with schemathesis (PyPI), and the dashboard in headless
/// Chromium (Debian's package) as a user would use it: both scripts start the built `sluice ui` on a
/// throwaway state folder of their own. Skipped when a tool is missing, unless `CI` is set: `.ci/run`
/// installs them, and there they must run.
@Suite("HTTP API: schemathesis and the dashboard in Chromium", .serialized)
struct APIConformanceTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    /// Runs a script with the test build's `sluice`, returning its exit status and output.
    static func script(_ arguments: [String], port: Int, extra: [Environment.Key: String?] = [:]) async throws -> (ok: Bool, output: String) {
        let environment = Environment.inherit.updating(extra.merging(["SLUICE": CLI.executable, "PORT": String(port)]) { a, _ in a })
        let result = try await Subprocess.run(.name(arguments[0]), arguments: Arguments(Array(arguments.dropFirst())),
                                              environment: environment, workingDirectory: FilePath(root),
                                              output: .string(limit: 4 << 20), error: .string(limit: 4 << 20))
        return (result.terminationStatus.isSuccess, result.standardOutput + result.standardError)
    }

    @Test func theAPIConformsToItsOpenAPIDocument() async throws {
        try await TestTools.require("schemathesis (pip install schemathesis)") { await TestTools.succeeds("schemathesis", ["--version"]) }
        let (ok, output) = try await Self.script(["bash", "scripts/schemathesis.sh"], port: 18_180, extra: ["MAX_EXAMPLES": "25"])
        #expect(ok, "schemathesis found failures:\n\(output.suffix(6000))")
        #expect(output.contains("passed"), "schemathesis printed no summary:\n\(output.suffix(2000))")
    }

    @Test func theDashboardShowsRunsSessionsLiveProgressAndCancelsInChromium() async throws {
        try await TestTools.require("chromium (apt-get install chromium)") {
            ["/usr/bin/chromium", "/usr/bin/chromium-browser"].contains { FileManager.default.isExecutableFile(atPath: $0) }
        }
        try await TestTools.require("python3 with websocket-client (pip install websocket-client)") {
            await TestTools.succeeds("python3", ["-c", "import websocket"])
        }
        let shots = try TemporaryDirectory(prefix: "dashboard")
        defer { shots.remove() }
        let (ok, output) = try await Self.script(["python3", "scripts/dashboard-check.py", shots.path], port: 18_181)
        #expect(ok && output.contains("OK"), "dashboard-check.py:\n\(output.suffix(4000))")
        #expect(output.contains("shown with viajeros missing"), "the sessions page was not checked:\n\(output.suffix(2000))")
        for shot in ["finished-run", "sessions", "session", "live-1", "live-2", "cancelled"] {
            let size = (try? FileManager.default.attributesOfItem(atPath: shots.file("\(shot).png"))[.size] as? NSNumber)?.intValue ?? 0
            #expect(size > 5_000, "screenshot \(shot).png is missing or empty")
        }
    }
}
