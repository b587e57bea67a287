import Foundation
import Subprocess
import Testing
#if canImport(System)
import System
#else
import SystemPackage
#endif

/// Tools a test needs from the machine (servers, browsers, PyPI packages).
enum TestTools {
    /// Skips the test when a tool is missing, unless `CI` is set: in CI the tests must run.
    static func require(_ what: String, _ check: () async -> Bool) async throws {
        guard await !check() else { return }
        if ProcessInfo.processInfo.environment["CI"] != nil {
            Issue.record("\(what) is missing, and CI is set: .ci/run must install it")
            throw CancellationError()
        }
        try Test.cancel("skipped: \(what) is missing (CI installs it; see .ci/run)")
    }

    /// Whether `executable arguments…` (found on PATH) exits 0.
    static func succeeds(_ executable: String, _ arguments: [String], in directory: String? = nil) async -> Bool {
        let result = try? await Subprocess.run(.name(executable), arguments: Arguments(arguments),
                                               workingDirectory: directory.map { FilePath($0) }, output: .discarded, error: .discarded)
        return result?.terminationStatus.isSuccess ?? false
    }
}

/// A test server from scripts/ (test-smtp.py, test-webhook.py) run for the length of one closure: it
/// prints `ready PORT` once it listens and stops on SIGTERM. swift-subprocess closes every other
/// descriptor in the child, so the server holds no other test's pipes.
enum ThrowawayServer {
    struct Failure: Error, CustomStringConvertible { var description: String }

    static func script(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/\(name)").path
    }

    /// Starts `python3 script arguments…`, runs `body` with the port it listens on, then stops it.
    /// Its stderr goes to `log`, quoted when it does not start.
    static func with<R: Sendable>(script: String, arguments: [String], log: String, _ body: (Int) async throws -> R) async throws -> R {
        let logFD = try FileDescriptor.open(FilePath(log), .writeOnly, options: [.create, .truncate], permissions: .ownerReadWrite)
        let outcome = try await Subprocess.run(.name("python3"), arguments: Arguments([script] + arguments), input: .none, output: .sequence,
                                               error: .fileDescriptor(logFD, closeAfterSpawningProcess: true)) { execution -> Result<R, any Error> in
            var text = ""
            for try await chunk in execution.standardOutput {
                chunk.withUnsafeBytes { text += String(decoding: $0, as: UTF8.self) }
                if text.contains("\n") { break }
            }
            let result: Result<R, any Error>
            if let line = text.split(separator: "\n").first, line.hasPrefix("ready "), let port = Int(line.dropFirst(6)) {
                do { result = .success(try await body(port)) } catch { result = .failure(error) }
            } else {
                let name = (script as NSString).lastPathComponent
                result = .failure(Failure(description: "\(name) did not start: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")"))
            }
            try? execution.send(signal: .terminate)
            return result
        }
        return try outcome.closureResult.get()
    }

    /// A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's pick, released at once).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket() failed: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        guard bound == 0 else { throw Failure(description: "bind() failed: errno \(errno)") }
        let named = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        guard named == 0 else { throw Failure(description: "getsockname() failed: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}
