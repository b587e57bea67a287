import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import SluiceCore
import SluiceEngine
import SluiceHTTP
import UnixSignals

/// `--http host:port` and `--token-for-reads`, shared by `serve` and `ui`.
struct HTTPOptions: ParsableArguments {
    @Flag(name: .customLong("token-for-reads"),
          help: "Require a token for reads too (they are open without one only when bound to loopback).")
    var tokenForReads = false

    static func address(_ text: String) throws -> (host: String, port: Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw CLIError(message: "--http '\(text)' is not host:port", hint: "e.g. --http 127.0.0.1:8080", exitCode: ExitStatus.failure)
        }
        let host = String(text[..<colon])
        return (host.isEmpty ? "127.0.0.1" : host, port)
    }

    func configuration(_ text: String) throws -> APIConfiguration {
        let (host, port) = try Self.address(text)
        var configuration = APIConfiguration(host: host, port: port)
        configuration.openReadsOnLoopback = !tokenForReads
        return configuration
    }

    static func announce(_ configuration: APIConfiguration, port: Int) {
        let reads = configuration.readsNeedToken ? "every request needs a token" : "reads open on loopback, changes need a token"
        Terminal.note("\(Date().formatted(.iso8601)) dashboard and API on http://\(configuration.host):\(port)/ (\(reads); tokens: `sluice token create NAME`)")
    }
}

struct UICommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ui", abstract: "Serve the dashboard, the HTTP API and /metrics over a state store (no triggers).",
        discussion: """
            Shows every run of the store in a browser: runs, run detail (stages, timeline, progress, live events, logs), and
            cancel / retry / resume buttons (with a token from `sluice token create`). Runs resumed or retried here are executed
            by this process. Schedules and the trigger button need `sluice serve --http` instead. See docs/dashboard.md.
            """)

    @Option(help: ArgumentHelp("Where to listen.", valueName: "host:port")) var http = "127.0.0.1:8080"
    @OptionGroup var httpOptions: HTTPOptions
    @OptionGroup var state: StateOptions

    func run() async throws {
        try await guarded {
            let configuration = try httpOptions.configuration(http)
            let engine = try await state.engine()
            var logger = Logger(label: "sluice.ui")
            logger.logLevel = .warning
            let app = APIServer.application(engine: engine, server: nil, configuration: configuration, logger: logger) { port in
                HTTPOptions.announce(configuration, port: port)
            }
            let group = ServiceGroup(configuration: ServiceGroupConfiguration(
                services: [app], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
            return 0
        }
    }
}
