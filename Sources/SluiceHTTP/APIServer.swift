import Foundation
import Hummingbird
import Logging
import NIOCore
import SluiceCore
import SluiceEngine
import SluiceStore
import SluiceTriggers

/// Where and how the HTTP API listens.
public struct APIConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// Answer reads (GET) without a token when bound to a loopback address. Off: every request needs one.
    public var openReadsOnLoopback = true
    /// How often live streams (events, logs) look at the store.
    public var poll: Duration = .milliseconds(250)

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Whether reads need a token: always, unless bound to loopback with open reads allowed.
    public var readsNeedToken: Bool { !(openReadsOnLoopback && Self.isLoopback(host)) }

    public static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }
}

/// The HTTP API, the dashboard and `/metrics`, served by `sluice serve --http ADDRESS` and `sluice ui`.
/// Anything that changes state requires a bearer token created with `sluice token create NAME` (the
/// store keeps only its SHA-256); reads too unless the server is bound to loopback. Errors are JSON
/// `{"error": …, "detail": …}` with the matching status code. The routes are described by
/// `OpenAPIDocument.json`, served at `/api/openapi.json`.
public enum APIServer {
    /// The application of `sluice serve --http`: `server` triggers and executes runs.
    public static func application(server: Server, host: String, port: Int, logger: Logger) -> some ApplicationProtocol {
        application(engine: server.engine, server: server, configuration: APIConfiguration(host: host, port: port), logger: logger)
    }

    /// The application. Without a `server` (`sluice ui`) nothing is triggered: runs are read, cancelled,
    /// retried and resumed (this process executes resumed runs).
    /// - Parameter onServerRunning: told the port once the server listens (useful with port 0).
    public static func application(engine: Engine, server: Server?, configuration: APIConfiguration, logger: Logger,
                                   onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        let executions = Executions(engine: engine)
        let api = API(engine: engine, server: server, configuration: configuration, executions: executions,
                      metrics: APIMetrics())
        let router = Router()
        router.add(middleware: JSONErrors())
        api.register(on: router)
        return Application(router: router, configuration: .init(address: .hostname(configuration.host, port: configuration.port),
                                                                serverName: "sluice"),
                           services: [executions],
                           onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? configuration.port) },
                           logger: logger)
    }

    /// Serves until the task is cancelled, without handling signals (for embedding, and the tests).
    public static func run(engine: Engine, server: Server?, configuration: APIConfiguration, logger: Logger,
                           onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        try await application(engine: engine, server: server, configuration: configuration, logger: logger,
                              onServerRunning: onServerRunning).runService(gracefulShutdownSignals: [])
    }

    struct TriggerBody: Decodable {
        var params: [String: String]?
        var idempotencyKey: String?

        enum CodingKeys: String, CodingKey {
            case params
            case idempotencyKey = "idempotency_key"
        }
    }

    struct RunCreated: Encodable {
        var runId: String?
        var pipeline: String
        var status: String
        var active: [String]?

        enum CodingKeys: String, CodingKey {
            case runId = "run_id", pipeline, status, active
        }
    }

    /// `POST /api/pipelines/{name}/runs` with `{"params": {…}, "idempotency_key": "…"}` (both optional):
    /// 201 and the run id when started, 200 when the key names an existing run, 202 when queued behind an
    /// active run (`overlap: queue`), 409 when skipped (`overlap: skip`).
    static func triggerRun(_ request: Request, context: some RequestContext, server: Server?, store: any StateStore) async throws -> Response {
        if let refusal = try await authenticate(request, store: store) { return refusal }
        let name = context.parameters.get("name") ?? ""
        guard let server else {
            return try error(.notFound, "no such pipeline",
                             "this server (`sluice ui`) serves no pipelines; trigger runs through `sluice serve --http` or `sluice run`")
        }
        guard let spec = server.pipeline(named: name) else {
            return try error(.notFound, "no such pipeline", "'\(name)' is not served here; GET /api/pipelines lists the pipelines served")
        }
        let data = Data(try await request.body.collect(upTo: 1 << 20).readableBytesView)
        var body = TriggerBody()
        if !data.isEmpty && !data.allSatisfy({ $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }) {
            do {
                body = try JSONDecoder().decode(TriggerBody.self, from: data)
            } catch {
                return try Self.error(.badRequest, "invalid body", "expected JSON like {\"params\": {\"name\": \"value\"}, \"idempotency_key\": \"…\"} (values are strings): \(describe(error))")
            }
        }
        if let key = body.idempotencyKey, key.isEmpty || key.count > 200 {
            return try error(.badRequest, "invalid idempotency_key", "give 1 to 200 characters")
        }
        do {
            switch try await server.trigger(spec, params: body.params ?? [:], idempotencyKey: body.idempotencyKey.map { "http:\(name):\($0)" },
                                            trigger: "http") {
            case .started(let run):
                return try json(.created, RunCreated(runId: run.id.rawValue, pipeline: name, status: run.status.rawValue))
            case .duplicate(let run):
                return try json(.ok, RunCreated(runId: run.id.rawValue, pipeline: name, status: run.status.rawValue))
            case .queued(let active):
                return try json(.accepted, RunCreated(pipeline: name, status: "queued", active: active.map(\.id.rawValue)))
            case .skipped(let active):
                return try error(.conflict, "not started",
                                 "run \(active.map(\.id.rawValue).joined(separator: ", ")) of '\(name)' is active and its overlap policy is skip")
            }
        } catch let failure as EngineError where failure.code == .invalidInput {
            return try error(.badRequest, "invalid params", failure.message + (failure.hint.map { " (\($0))" } ?? ""))
        }
    }

    /// A decoding error in words (no Swift type dump).
    static func describe(_ error: any Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let c): return "not valid JSON (\(c.debugDescription))"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
            return "wrong type at '\(c.codingPath.map(\.stringValue).joined(separator: "."))': \(c.debugDescription)"
        case DecodingError.keyNotFound(let key, _): return "missing '\(key.stringValue)'"
        default: return "\(error)"
        }
    }

    /// Nil when the request carries a valid token; otherwise the 401 to answer. Never tells which part was wrong.
    static func authenticate(_ request: Request, store: any StateStore) async throws -> Response? {
        let header = request.headers[.authorization] ?? ""
        guard header.lowercased().hasPrefix("bearer "), case let secret = header.dropFirst(7).trimmingCharacters(in: .whitespaces),
              !secret.isEmpty, try await store.token(hash: APITokens.hash(secret)) != nil else {
            var response = try error(.unauthorized, "unauthorized", "send Authorization: Bearer TOKEN (create one with `sluice token create NAME`)")
            response.headers[.wwwAuthenticate] = "Bearer realm=\"sluice\""
            return response
        }
        return nil
    }

    static func json(_ status: HTTPResponse.Status, _ value: some Encodable) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }

    static func error(_ status: HTTPResponse.Status, _ error: String, _ detail: String) throws -> Response {
        try json(status, ["error": error, "detail": detail])
    }
}

/// Every error leaves as `{error, detail}`: unknown routes, wrong methods, oversized bodies, store failures.
struct JSONErrors<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let failure as HTTPError {
            switch failure.status {
            case .notFound:
                if let allowed = Routes.methods(forPath: request.uri.path), !allowed.contains(request.method.rawValue) {
                    var response = try APIServer.error(.methodNotAllowed, "method not allowed",
                                                       "\(request.uri.path) answers \(allowed.sorted().joined(separator: ", "))")
                    response.headers[.allow] = allowed.sorted().joined(separator: ", ")
                    return response
                }
                return try APIServer.error(.notFound, "not found", "no route \(request.method.rawValue) \(request.uri.path); GET /api/openapi.json lists the API")
            case .contentTooLarge:
                return try APIServer.error(failure.status, "body too large", "request bodies are limited to 1 MiB")
            default:
                return try APIServer.error(failure.status, failure.status.reasonPhrase.lowercased(), failure.body ?? failure.status.reasonPhrase)
            }
        } catch let failure as StoreError {
            return try APIServer.error(.serviceUnavailable, "store unavailable", failure.message + (failure.hint.map { " (\($0))" } ?? ""))
        } catch let failure as EngineError {
            let status: HTTPResponse.Status = switch failure.code {
            case .runNotFound: .notFound
            case .runBusy, .overlap: .conflict
            case .invalidInput: .badRequest
            default: .internalServerError
            }
            return try APIServer.error(status, failure.code.rawValue, failure.message + (failure.hint.map { " (\($0))" } ?? ""))
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            return try APIServer.error(.internalServerError, "internal error", "\(error)")
        }
    }
}

/// The routes the OpenAPI document lists, to tell an unknown path (404) from a known one asked with
/// another method (405 with `Allow`).
enum Routes {
    static let table: [(pattern: [Substring], methods: Set<String>)] = {
        guard let document = try? JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json.utf8)) as? [String: Any],
              let paths = document["paths"] as? [String: [String: Any]] else { return [] }
        return paths.map { path, operations in
            (path.split(separator: "/", omittingEmptySubsequences: false), Set(operations.keys.map { $0.uppercased() }))
        }
    }()

    /// The methods of the route `path` matches, nil when it matches none.
    static func methods(forPath path: String) -> Set<String>? {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        var found: Set<String>?
        for route in table where route.pattern.count == parts.count {
            let matches = zip(route.pattern, parts).allSatisfy { pattern, part in
                (pattern.hasPrefix("{") && pattern.hasSuffix("}") && !part.isEmpty) || pattern == part
            }
            if matches { found = (found ?? []).union(route.methods) }
        }
        return found
    }
}
