import Foundation
import ServiceLifecycle
import SluiceCore
import SluiceEngine
import SluiceMail
import SluiceStore
import Synchronization

/// The mailboxes being watched: one watcher per mailbox, however many pipelines route from it.
final class MailWatchers: Sendable {
    private let running = Mutex<Set<MailboxAddress>>([])
    /// True when nobody watches `mailbox` yet (the caller starts a watcher).
    func claim(_ mailbox: MailboxAddress) -> Bool { running.withLock { $0.insert(mailbox).inserted } }
    func release(_ mailbox: MailboxAddress) { _ = running.withLock { $0.remove(mailbox) } }
}

extension Server {
    /// A pipeline taking messages from a mailbox, with its filters.
    struct MailRoute: Sendable {
        var spec: PipelineSpec
        var trigger: MailTrigger
    }

    static func mailKey(pipeline: String, messageID: String) -> String { "mail:\(pipeline):\(messageID)" }

    /// Every pipeline routing from `mailbox`, by name.
    func mailRoutes(_ mailbox: MailboxAddress) -> [MailRoute] {
        catalog.withLock { $0.pipelines }.compactMap { spec in
            guard let trigger = spec.onMail, trigger.mailbox == mailbox else { return nil }
            return MailRoute(spec: spec, trigger: trigger)
        }
    }

    /// Watches one mailbox while a pipeline routes from it: logs in, processes every unseen message,
    /// then waits in IDLE (or polls). A failure (server unreachable, wrong password) is logged and
    /// tried again with a growing pause; the rest of serve goes on meanwhile.
    func watchMailbox(_ mailbox: MailboxAddress) async {
        var backoff: Duration = .seconds(1)
        var reported: Set<String> = []
        var failing = false
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            let routes = mailRoutes(mailbox)
            guard let first = routes.first else {
                say("mailbox \(mailbox): no pipeline routes from it any more; stopped watching it")
                return
            }
            do {
                let client = try await openMailbox(mailbox, first)
                if failing { say("mailbox \(mailbox): connected again") }
                failing = false
                backoff = .seconds(1)
                do {
                    try await withGracefulShutdownHandler {
                        while !Task.isShuttingDownGracefully && !Task.isCancelled {
                            let routes = mailRoutes(mailbox)
                            guard !routes.isEmpty else { break }
                            let waiting = try await processMailbox(client, mailbox, routes: routes, reported: &reported)
                            // A message waiting for its pipeline (overlap) is tried again soon.
                            let poll = routes.map(\.trigger.poll).min() ?? .seconds(60)
                            let wait = waiting ? min(poll, options.tick * 2) : poll
                            if client.supportsIdle {
                                _ = try await client.idle(timeout: wait)
                            } else {
                                try await Task.sleep(for: wait)
                            }
                        }
                    } onGracefulShutdown: { [interrupt = client.interrupt] in
                        interrupt()
                    }
                    await client.logout()
                } catch {
                    await client.close()
                    throw error
                }
            } catch {
                if Task.isShuttingDownGracefully || Task.isCancelled { return }
                failing = true
                say("error: mailbox \(mailbox): \(error); trying again in \(DurationText.format(backoff))")
                let pause = backoff
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: pause) }
                backoff = min(backoff * 2, .seconds(300))
            }
        }
    }

    /// Connects, logs in and selects the folder.
    func openMailbox(_ mailbox: MailboxAddress, _ route: MailRoute) async throws -> IMAPClient {
        let password = try Self.password(route)
        var configuration = IMAPClient.Configuration(host: mailbox.host, port: mailbox.port,
                                                     security: mailbox.security == .tls ? .tls : .startTLS,
                                                     trustedCertificates: route.trigger.caFile)
        configuration.connectTimeout = .seconds(15)
        let client = try await IMAPClient.connect(configuration)
        do {
            try await client.login(user: mailbox.user, password: password,
                                   method: IMAPClient.Authentication(rawValue: route.trigger.auth) ?? .automatic)
            let status = try await client.select(mailbox.folder)
            if status.readOnly {
                throw IMAPError(.command, "the folder '\(mailbox.folder)' is read-only for '\(mailbox.user)': messages cannot be marked seen")
            }
            return client
        } catch {
            await client.close()
            throw error
        }
    }

    /// The password from the environment variable or file the trigger names; the error never shows it.
    static func password(_ route: MailRoute) throws -> String {
        let pipeline = route.spec.name
        if let name = route.trigger.passwordEnv {
            guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
                throw IMAPError(.login, "the environment variable \(name) (on_mail.password_env of pipeline '\(pipeline)') is not set; export it in the environment of sluice serve")
            }
            return value
        }
        if let file = route.trigger.passwordFile {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw IMAPError(.login, "cannot read the password file \(file) (on_mail.password_file of pipeline '\(pipeline)'); check that it exists and that sluice serve may read it")
            }
            let line = text.split(separator: "\n", omittingEmptySubsequences: false).first.map { String($0) } ?? ""
            return line.hasSuffix("\r") ? String(line.dropLast()) : line
        }
        throw IMAPError(.login, "pipeline '\(pipeline)' names no password_env or password_file for its mailbox")
    }

    /// Processes every unseen message once; returns whether one waits for its pipeline (to be tried soon).
    func processMailbox(_ client: IMAPClient, _ mailbox: MailboxAddress, routes: [MailRoute],
                        reported: inout Set<String>) async throws -> Bool {
        let uids = try await client.searchUnseen()
        guard !uids.isEmpty else { return false }
        var waiting = false
        for header in try await client.fetchHeaders(uids) {
            if Task.isShuttingDownGracefully || Task.isCancelled { break }
            let (headers, _) = MIME.splitHeaders(header.header[...])
            let subject = headers.subject, from = headers.from
            let messageID = headers.messageID ?? "<uid-\(header.uid)@\(mailbox.host)>"
            let what = "message \(messageID) '\(subject)' from \(from)"
            func once(_ kind: String, _ line: String) {
                if reported.insert(kind + "\u{0}" + messageID).inserted { say("mailbox \(mailbox): \(line)") }
            }
            let matched = routes.filter { $0.trigger.matches(subject: subject, from: from) }
            guard !matched.isEmpty else {
                once("nomatch", "\(what) matches no pipeline's on_mail filters; it stays unseen")
                continue
            }
            let limit = matched.map(\.trigger.maxSize).min() ?? .max
            guard header.size <= limit else {
                once("size", "\(what) is \(header.size) bytes, more than on_mail.max_size (\(limit) bytes) of '\(matched.map(\.spec.name).joined(separator: "', '"))'; it stays unseen (raise max_size to take it)")
                continue
            }
            let message: MIMEMessage
            do {
                let raw = try await client.fetchMessage(header.uid, limit: limit)
                message = try MIME.parse(raw)
            } catch let error as MIMEError {
                once("mime", "\(what): \(error); it stays unseen and starts no run")
                continue
            } catch let error as IMAPError where error.code == .tooLarge {
                once("size", "\(what): \(error); it stays unseen (raise on_mail.max_size to take it)")
                continue
            }
            var recorded = true
            for route in matched {
                switch await startMailRun(route, message: message, messageID: messageID, what: what, once: once) {
                case .recorded: break
                case .waiting: recorded = false; waiting = true
                case .failed: recorded = false
                }
            }
            // Seen only once every run it starts is recorded: a crash before this line leaves it unseen,
            // and the next look finds the runs by their idempotency keys instead of starting them again.
            if recorded { try await client.markSeen(header.uid) }
        }
        return waiting
    }

    enum MailStart { case recorded, waiting, failed }

    /// Saves the attachments and starts the pipeline's run for the message (or finds it recorded).
    func startMailRun(_ route: MailRoute, message: MIMEMessage, messageID: String, what: String,
                      once: (String, String) -> Void) async -> MailStart {
        let spec = route.spec
        let key = Self.mailKey(pipeline: spec.name, messageID: messageID)
        let trigger = "mail \(messageID)"
        do {
            let saved = try Self.saveAttachments(message.attachments, messageID: messageID, spec: spec, trigger: route.trigger)
            let params: [String: String] = [
                MailTrigger.subjectParam: message.headers.subject,
                MailTrigger.fromParam: message.headers.from,
                MailTrigger.dateParam: message.headers.date,
                MailTrigger.dayParam: MailTrigger.day(ofDateHeader: message.headers.date) ?? "",
                MailTrigger.messageIDParam: messageID,
                MailTrigger.attachmentsParam: saved.files.joined(separator: "\n"),
                MailTrigger.folderParam: saved.folder,
            ]
            var probe = spec
            if spec.overlap == .queue { probe.overlap = .skip }   // the message waits unseen instead of this watcher
            switch try await engine.start(probe, params: params, trigger: trigger, idempotencyKey: key) {
            case .started(let run):
                manual.push(.execute(run))
                return .recorded
            case .duplicate:
                return .recorded
            case .skipped(let active):
                once("busy:" + spec.name, "\(what) waits unseen: run \(active.map(\.id.rawValue).joined(separator: ", ")) of '\(spec.name)' is active (overlap: \(spec.overlap.rawValue))")
                return .waiting
            }
        } catch {
            say("error: '\(spec.name)' (\(trigger)): \(error); the message stays unseen and is tried again")
            return .failed
        }
    }

    /// Writes each attachment into `<attachments>/<message>/` under the pipeline's folder; returns
    /// their paths relative to that folder. Names are made safe: no folder part, no leading dot, no
    /// control character, at most 200 bytes, unique within the message.
    static func saveAttachments(_ attachments: [MIMEAttachment], messageID: String, spec: PipelineSpec,
                                trigger: MailTrigger) throws -> (folder: String, files: [String]) {
        let folder = trigger.attachments + "/" + safeName(messageID.trimmingCharacters(in: CharacterSet(charactersIn: "<> ")), fallback: "message")
        guard !attachments.isEmpty else { return (folder, []) }
        let root = URL(fileURLWithPath: spec.root).standardizedFileURL.path
        let directory = (root as NSString).appendingPathComponent(folder)
        // The folder stays inside the pipeline's folder, symbolic links included.
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let resolvedRoot = URL(fileURLWithPath: root).resolvingSymlinksInPath().path
        guard URL(fileURLWithPath: directory).resolvingSymlinksInPath().path.hasPrefix(resolvedRoot + "/") else {
            throw IMAPError(.command, "the attachments folder \(folder) leads outside the pipeline's folder \(root) (a symbolic link?)")
        }
        var used: Set<String> = []
        var files: [String] = []
        for (index, attachment) in attachments.enumerated() {
            var name = safeName(attachment.filename, fallback: "attachment-\(index + 1)")
            if used.contains(name) {
                let ext = (name as NSString).pathExtension, base = (name as NSString).deletingPathExtension
                var n = 2
                while used.contains(ext.isEmpty ? "\(base)-\(n)" : "\(base)-\(n).\(ext)") { n += 1 }
                name = ext.isEmpty ? "\(base)-\(n)" : "\(base)-\(n).\(ext)"
            }
            used.insert(name)
            let path = (directory as NSString).appendingPathComponent(name)
            try Data(attachment.data).write(to: URL(fileURLWithPath: path), options: .atomic)
            files.append(folder + "/" + name)
        }
        return (folder, files)
    }

    /// A file name from untrusted text: its last path component, without control characters or
    /// leading dots, at most 200 bytes (the extension kept).
    static func safeName(_ text: String, fallback: String) -> String {
        var name = String(text.split(whereSeparator: { $0 == "/" || $0 == "\\" }).last ?? "")
        name = String(String.UnicodeScalarView(name.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F && $0 != ":" }))
        name = name.trimmingCharacters(in: .whitespaces)
        while name.hasPrefix(".") { name.removeFirst() }
        if name.utf8.count > 200 {
            let ext = (name as NSString).pathExtension
            var base = (name as NSString).deletingPathExtension
            let keep = ext.utf8.count <= 20 ? ext : ""
            while base.utf8.count + keep.utf8.count + 1 > 200 { base.removeLast() }
            name = keep.isEmpty ? base : base + "." + keep
        }
        return name.isEmpty ? fallback : name
    }
}
