import Foundation
import SluiceArtifacts
import SluiceCore
import SluiceStore

/// Versioned outputs (C13), healing by rollback (C14) and lifecycle policies (C15).
extension RunExecutor {
    /// After a stage's attempt succeeded: checks that every declared output exists and publishes the
    /// versioned ones. Returns a problem (which fails the attempt) or nil.
    func publishOutputs(of stage: StageSpec, run: RunRecord, claimed: ClaimedTask) async throws -> String? {
        let shelf = ArtifactShelf(root: run.spec.root)
        var problems: [String] = []
        for output in stage.outputs {
            guard output.versioned else {
                do { _ = try shelf.resolve(output.path, artifact: nil, mustExist: true) } catch {
                    problems.append(error.message)
                }
                continue
            }
            let publisher = ArtifactShelf.Publisher(
                pipeline: run.pipeline, stage: stage.name, runID: runID.rawValue,
                annotations: ["host": owner.host, "attempt": String(claimed.attempt), "source": output.path])
            let result: ArtifactShelf.PublishResult
            do { result = try shelf.publish(output, by: publisher, now: time.now()) } catch {
                let problem = "artifact '\(output.name)': \(error.message)"
                problems.append(problem)
                try await emit([log.make("artifact.error", stage: stage.name, task: claimed.task.id, attempt: claimed.attempt, problem,
                                         attrs: ["artifact": output.name, "code": error.code.rawValue])])
                continue
            }
            switch result {
            case .unchanged(let newest):
                try await emit([log.make("artifact.unchanged", stage: stage.name, task: claimed.task.id, attempt: claimed.attempt,
                                         "artifact '\(output.name)' unchanged (version \(newest.version), sha256 \(newest.sha256.prefix(12)))",
                                         attrs: ["artifact": output.name, "version": String(newest.version), "sha256": newest.sha256])])
            case .published(let version, let previous, let removed):
                var attrs = ["artifact": output.name, "version": String(version.version), "sha256": version.sha256,
                             "size": String(version.size), "file": "artifacts/\(output.name)/\(version.file)"]
                if let previous { attrs["previous"] = String(previous.version) }
                var events = [log.make("artifact.published", stage: stage.name, task: claimed.task.id, attempt: claimed.attempt,
                                       "artifact '\(output.name)' version \(version.version) published (\(version.size) bytes, sha256 \(version.sha256.prefix(12)))"
                                           + (previous.map { "; version \($0.version) moved to historical" } ?? ""),
                                       attrs: attrs)]
                for old in removed {
                    events.append(log.make("artifact.retention", stage: stage.name,
                                           "artifact '\(output.name)' version \(old.version) removed by retention",
                                           attrs: ["artifact": output.name, "version": String(old.version), "file": old.file]))
                }
                let record = ArtifactVersionRecord(pipeline: run.pipeline, name: output.name, version: version.version,
                                                   sha256: version.sha256, size: version.size, createdAt: version.createdAt,
                                                   runID: runID, stage: stage.name, root: shelf.root, file: version.file,
                                                   annotations: version.annotations)
                try await store.recordArtifactVersion(record, events: events)
                log.published(events)
            }
        }
        if problems.isEmpty { return nil }
        return problems.joined(separator: "; ")
    }

    /// A stage with `on_failure: rollback` failed for good: restores each versioned output's newest
    /// (last good) version. Returns the events to record with the failure and, when something was
    /// restored, the reason the stage ends `rolled_back`.
    func rollBack(_ stage: StageSpec, root: String, claimed: ClaimedTask) -> (events: [EventRecord], reason: String?) {
        let shelf = ArtifactShelf(root: root)
        var restored: [String] = []
        var missing: [String] = []
        var events: [EventRecord] = []
        for output in stage.versionedOutputs {
            do {
                let version = try shelf.restore(output.name)
                restored.append("\(output.name) v\(version.version)")
                events.append(log.make("artifact.restored", stage: stage.name, task: claimed.task.id, attempt: claimed.attempt,
                                       "artifact '\(output.name)' restored to version \(version.version) at \(version.source) (sha256 \(version.sha256.prefix(12)))",
                                       attrs: ["artifact": output.name, "version": String(version.version), "sha256": version.sha256,
                                               "path": version.source]))
            } catch {
                missing.append("\(output.name) (\(error.message))")
            }
        }
        guard !restored.isEmpty else {
            events.append(log.make("healing.failed", stage: stage.name, task: claimed.task.id, attempt: claimed.attempt,
                                   "rollback impossible: no good version to restore: \(missing.joined(separator: "; "))",
                                   attrs: ["not_restored": missing.joined(separator: "; ")]))
            return (events, nil)
        }
        let reason = "rolled back to " + restored.joined(separator: ", ")
            + (missing.isEmpty ? "" : "; not restored: " + missing.joined(separator: "; "))
        events.append(log.make("healing.rollback", stage: stage.name, task: claimed.task.id, attempt: claimed.attempt,
                               "healing: stage '\(stage.name)' failed; \(reason)",
                               attrs: ["action": "rollback", "restored": restored.joined(separator: ", "),
                                       "not_restored": missing.joined(separator: "; ")]))
        events.append(log.make("notice.manual_review", stage: stage.name,
                               "manual review needed: stage '\(stage.name)' failed and was rolled back (\(restored.joined(separator: ", "))); downstream stages run on the restored data",
                               attrs: ["kind": "manual_review", "restored": restored.joined(separator: ", ")]))
        return (events, reason)
    }

    /// The stages that published a new artifact version in this run (for `when: changed`).
    func changedStages(_ spec: PipelineSpec) async throws -> Set<StageName> {
        guard spec.stages.contains(where: \.when.changed) else { return [] }
        return Set(try await store.artifactVersions(pipeline: nil, name: nil, run: runID).compactMap(\.stage))
    }

    /// Once every stage is terminal: each lifecycle policy whose stages all succeeded acts on the files
    /// matching it that were last modified before the run started, when the run ends `success` (never
    /// after a failure, a cancel, a rollback or tolerated failures). Each file acted on is an event.
    func applyLifecycle(_ run: RunRecord, outcome: RunOutcome) async throws {
        let spec = run.spec
        guard !spec.lifecycle.isEmpty else { return }
        let cancelled = outcome != .success
        let stages = try await store.stages(of: runID)
        let statuses = Dictionary(stages.map { ($0.name, $0.status) }, uniquingKeysWith: { a, _ in a })
        let started = run.startedAt ?? run.createdAt
        for policy in spec.lifecycle {
            guard policy.applies(statuses: statuses, cancelled: cancelled) else {
                let why = cancelled ? "the run ends \(outcome.rawValue), not success"
                    : policy.afterSuccessOf.filter { statuses[$0] != .success }.map { "'\($0)' ended \(statuses[$0]?.rawValue ?? "unknown")" }.joined(separator: ", ")
                try await emit([log.make("lifecycle.skipped", "lifecycle '\(policy.summary)' not applied: \(why)",
                                         attrs: ["files": policy.files])])
                continue
            }
            let values = CommandTask.templateValues(run: run, stage: policy.afterSuccessOf[0])
            let pattern = Template.render(policy.files, values: values)
            var events: [EventRecord] = []
            for file in Lifecycle.matches(pattern, root: spec.root, before: started) {
                switch Lifecycle.act(on: file, policy: policy, root: spec.root) {
                case .success(let done):
                    events.append(log.make(done.event, done.message, attrs: done.attrs))
                case .failure(let problem):
                    events.append(log.make("lifecycle.error", problem.message, attrs: ["file": file]))
                }
            }
            if events.isEmpty {
                events.append(log.make("lifecycle.nothing", "lifecycle '\(policy.summary)': no file matched", attrs: ["files": pattern]))
            }
            try await emit(events)
        }
    }
}

/// The file work of lifecycle policies: matching inside the root, refusing symlinks and escapes.
enum Lifecycle {
    struct Done {
        var event: String
        var message: String
        var attrs: [String: String]
    }

    struct Problem: Error {
        var message: String
    }

    /// Regular files matching `pattern` (relative to `root`) modified before `before`, as relative paths.
    static func matches(_ pattern: String, root: String, before: Date) -> [String] {
        guard RelativePath.problem(pattern) == nil else { return [] }
        let prefix = (root as NSString).appendingPathComponent("x").dropLast()
        return FileProbe.paths(pattern, root: root).compactMap { path -> String? in
            path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : nil
        }.filter { relative in
            let path = root + "/" + relative
            // Symbolic links are kept so that acting on them is refused with a recorded reason.
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
                  let type = attributes[.type] as? FileAttributeType, type == .typeRegular || type == .typeSymbolicLink,
                  let modified = attributes[.modificationDate] as? Date else { return false }
            return modified < before
        }
    }

    static func act(on relative: String, policy: LifecyclePolicy, root: String) -> Result<Done, Problem> {
        let shelf = ArtifactShelf(root: root)
        let path: String
        do { path = try shelf.resolve(relative, artifact: nil, mustExist: true) } catch {
            return .failure(Problem(message: "lifecycle refused '\(relative)': \(error.message)"))
        }
        switch policy.action {
        case .delete:
            do { try FileManager.default.removeItem(atPath: path) } catch {
                return .failure(Problem(message: "lifecycle could not delete '\(relative)': \(error.localizedDescription)"))
            }
            return .success(Done(event: "lifecycle.deleted", message: "lifecycle deleted \(relative)", attrs: ["file": relative]))
        case .archive(let folder):
            let target = folder + "/" + (relative as NSString).lastPathComponent
            do {
                let destination = try shelf.resolve(target, artifact: nil, mustExist: false)
                try FileManager.default.createDirectory(atPath: (destination as NSString).deletingLastPathComponent,
                                                        withIntermediateDirectories: true)
                if FileManager.default.fileExists(atPath: destination) { try FileManager.default.removeItem(atPath: destination) }
                try FileManager.default.moveItem(atPath: path, toPath: destination)
            } catch let error as ArtifactError {
                return .failure(Problem(message: "lifecycle refused to archive '\(relative)' into '\(folder)': \(error.message)"))
            } catch {
                return .failure(Problem(message: "lifecycle could not archive '\(relative)' into '\(folder)': \(error.localizedDescription)"))
            }
            return .success(Done(event: "lifecycle.archived", message: "lifecycle archived \(relative) into \(folder)",
                                 attrs: ["file": relative, "archive": target]))
        }
    }
}
