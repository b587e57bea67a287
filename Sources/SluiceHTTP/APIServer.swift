import Foundation
import Hummingbird
import Logging
import SluiceCore
import SluiceEngine
import SluiceStore
import SluiceTriggers

/// The HTTP API served by `sluice serve --http ADDRESS`. Anything that changes state requires a bearer
/// token created with `sluice token create NAME` (the store keeps only its SHA-256). Errors are JSON
/// `{"error": …, "detail": …}` with the matching status code.
public enum APIServer {
    /// The application, ready to run as a service next to `server`.
    public static func application(server: Server, host: String, port: Int, logger: Logger) -> some ApplicationProtocol {
        let router = Router()
        router.get("/api/health") { _, _ in
            try json(.ok, ["status": "ok"])
        }
        router.post("/api/pipelines/:name/runs") { request, context in
            try await triggerRun(request, context: context, server: server)
        }
        return Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "sluice"),
                           logger: logger)
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
    static func triggerRun(_ request: Request, context: some RequestContext, server: Server) async throws -> Response {
        if let refusal = try await authenticate(request, store: server.engine.store) { return refusal }
        guard let name = context.parameters.get("name"), let spec = server.pipeline(named: name) else {
            return try error(.notFound, "no such pipeline", "'\(context.parameters.get("name") ?? "")' is not served here; GET /api/health answers when the server is up")
        }
        let data = Data(try await request.body.collect(upTo: 1 << 20).readableBytesView)
        var body = TriggerBody()
        if !data.isEmpty && !data.allSatisfy({ $0 == 0x20 || $0 == 0x0a || $0 == 0x0d || $0 == 0x09 }) {
            do {
                body = try JSONDecoder().decode(TriggerBody.self, from: data)
            } catch {
                return try Self.error(.badRequest, "invalid body", "expected JSON like {\"params\": {\"name\": \"value\"}, \"idempotency_key\": \"…\"} (values are strings): \(error)")
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
