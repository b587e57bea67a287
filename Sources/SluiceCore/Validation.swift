import Foundation

/// Checks a pipeline built in code (the YAML loader does the same with file locations): every
/// problem is returned, naming the stage and what is wrong.
public enum SpecValidation {
    public static func problems(in spec: PipelineSpec) -> [String] {
        var problems: [String] = []
        if spec.name.isEmpty { problems.append("the pipeline has no name") }
        if spec.concurrency < 1 { problems.append("concurrency must be at least 1, got \(spec.concurrency)") }
        if spec.stages.isEmpty { problems.append("pipeline '\(spec.name)' has no stages") }
        if let schedule = spec.schedule {
            switch schedule.rule {
            case .cron(let text):
                do throws(CronExpression.ParseError) { _ = try CronExpression(text) } catch {
                    problems.append("schedule '\(text)' is not a cron expression: \(error.message)")
                }
            case .every(let d):
                if d < .seconds(1) { problems.append("schedule every \(DurationText.format(d)) is shorter than 1s") }
            }
            if let zone = schedule.timeZone, TimeZone(identifier: zone) == nil {
                problems.append("schedule time zone '\(zone)' is not an IANA time zone (e.g. Europe/Madrid)")
            }
        }
        if let files = spec.onFiles, files.glob.hasPrefix("/") || files.glob.split(separator: "/").contains("..") {
            problems.append("on_files glob '\(files.glob)' leaves the pipeline's folder; write it relative, without '..'")
        }
        if let mail = spec.onMail {
            problems += MailTrigger.problems(subjectRegex: mail.subjectRegex, attachments: mail.attachments, auth: mail.auth)
            if (mail.passwordEnv == nil) == (mail.passwordFile == nil) {
                problems.append("on_mail needs exactly one of password_env and password_file")
            }
        }
        var seen: Set<StageName> = []
        for stage in spec.stages {
            if !seen.insert(stage.name).inserted {
                problems.append("two stages are named '\(stage.name)'; stage names must be unique")
            }
        }
        let names = Set(spec.stages.map(\.name))
        let known = Template.knownNames(params: spec.params.keys)
        for stage in spec.stages {
            let what = "stage '\(stage.name)'"
            if stage.name.isEmpty || stage.name.contains("/") {
                problems.append("stage name '\(stage.name)' must be non-empty and hold no '/'")
            }
            if let queue = stage.queue, !StageSpec.isQueueName(queue) {
                problems.append("\(what) has queue '\(queue)', which is not a queue name (letters, digits, '-', '_' or '.')")
            }
            for need in stage.needs {
                if need == stage.name {
                    problems.append("\(what) needs itself")
                } else if !names.contains(need) {
                    let hint = Suggest.hint(for: need, in: names).map { " (\($0))" } ?? ""
                    problems.append("\(what) needs '\(need)', which is not a stage of pipeline '\(spec.name)'\(hint)")
                }
            }
            if let producer = stage.forEach {
                if producer == stage.name {
                    problems.append("\(what) has for_each on itself")
                } else if !names.contains(producer) {
                    problems.append("\(what) takes the items of '\(producer)', which is not a stage of pipeline '\(spec.name)'")
                }
            }
            for upstream in stage.when.upstream.keys.sorted() where !stage.needs.contains(upstream) {
                problems.append("\(what) has a when.upstream condition on '\(upstream)', which is not in its needs")
            }
            switch stage.command {
            case .argv(let argv):
                if argv.first?.isEmpty ?? true { problems.append("\(what) has an empty command") }
                for arg in argv {
                    problems += placeholderProblems(arg, known: known, items: stage.forEach != nil, what: "\(what) argument")
                }
            case .shell(let script):
                if script.contains("{{") {
                    problems.append("\(what): a shell script may not hold {{placeholders}}; read $SLUICE_PARAM_<NAME> instead")
                }
            case .swift:
                break
            }
            if let pattern = stage.doneWhen, (try? Regex(pattern)) == nil {
                problems.append("\(what): done_when '\(pattern)' is not a valid regular expression")
            }
            if stage.retry.attempts < 1 { problems.append("\(what): retries.attempts must be at least 1") }
            if let c = stage.concurrency, c < 1 { problems.append("\(what): concurrency must be at least 1, got \(c)") }
            if let problem = stage.maxFailedItems.problem { problems.append("\(what): max_failed_items \(problem)") }
            if let t = stage.timeout, t <= .zero { problems.append("\(what): timeout must be longer than zero") }
            if let w = stage.workdir, w.hasPrefix("/") || w.split(separator: "/").contains("..") {
                problems.append("\(what): workdir '\(w)' must be a relative path inside the pipeline's folder")
            }
        }
        problems += artifactProblems(in: spec)
        let withoutSelfNeeds = spec.stages.map { stage in
            var copy = stage
            copy.needs.removeAll { $0 == stage.name }
            return copy
        }
        if let cycle = DAG.findCycle(withoutSelfNeeds) {
            problems.append("stages depend on each other in a cycle: \(cycle.joined(separator: " → "))")
        }
        return problems
    }

    /// `outputs`, `on_failure`, `when: changed` and `lifecycle` rules.
    public static func artifactProblems(in spec: PipelineSpec) -> [String] {
        var problems: [String] = []
        var artifactNames: [String: StageName] = [:]
        for stage in spec.stages {
            let what = "stage '\(stage.name)'"
            for output in stage.outputs {
                if let problem = RelativePath.problem(output.path) {
                    problems.append("\(what): output '\(output.path)' must be a path inside the pipeline's folder, but \(problem)")
                }
                guard output.versioned else {
                    if output.keep != nil || output.keepFor != nil {
                        problems.append("\(what): output '\(output.path)' has keep/keep_for but is not versioned (add versioned: true)")
                    }
                    continue
                }
                if !OutputSpec.isArtifactName(output.name) {
                    problems.append("\(what): artifact name '\(output.name)' may hold only letters, digits, '-', '_' and '.' (not first)")
                }
                if let other = artifactNames[output.name] {
                    problems.append("\(what): artifact '\(output.name)' is also an output of stage '\(other)'; give one of them another name")
                } else {
                    artifactNames[output.name] = stage.name
                }
                if let keep = output.keep, keep < 1 { problems.append("\(what): output '\(output.path)' keep must be at least 1, got \(keep)") }
                if let keepFor = output.keepFor, keepFor <= .zero { problems.append("\(what): output '\(output.path)' keep_for must be longer than zero") }
            }
            if !stage.outputs.isEmpty, stage.forEach != nil {
                problems.append("\(what) has outputs and for_each; declare outputs on a stage that runs once (e.g. the join after the fan-out)")
            }
            if stage.onFailure == .rollback, stage.versionedOutputs.isEmpty {
                problems.append("\(what) has on_failure: rollback but no versioned output to restore; add outputs with versioned: true")
            }
            if stage.when.changed {
                let upstream = stage.dependencies.compactMap { spec.stage($0) }
                if !upstream.contains(where: { !$0.versionedOutputs.isEmpty }) {
                    problems.append("\(what) has when: changed, but none of its needs has a versioned output")
                }
            }
        }
        let names = Set(spec.stages.map(\.name))
        for policy in spec.lifecycle {
            if let problem = RelativePath.problem(policy.files) {
                problems.append("lifecycle files '\(policy.files)' must stay inside the pipeline's folder, but \(problem)")
            }
            if case .archive(let folder) = policy.action, let problem = RelativePath.problem(folder) {
                problems.append("lifecycle archive folder '\(folder)' must stay inside the pipeline's folder, but \(problem)")
            }
            if policy.afterSuccessOf.isEmpty {
                problems.append("lifecycle '\(policy.files)' names no stage in after_success_of; name the stages that must succeed first")
            }
            for name in policy.afterSuccessOf where !names.contains(name) {
                let hint = Suggest.hint(for: name, in: names).map { " (\($0))" } ?? ""
                problems.append("lifecycle '\(policy.files)' waits for '\(name)', which is not a stage of pipeline '\(spec.name)'\(hint)")
            }
        }
        return problems
    }

    static func placeholderProblems(_ text: String, known: Set<String>, items: Bool, what: String) -> [String] {
        switch Template.placeholders(in: text) {
        case .failure: return ["\(what) '\(text)' has a '{{' without a closing '}}'"]
        case .success(let found):
            return found.filter { !known.contains($0.name) && !(items && Template.isItemName($0.name)) }.map {
                Template.isItemName($0.name) ? "\(what) uses '{{\($0.name)}}', but the stage has no items (forEach)"
                    : "\(what) uses unknown placeholder '{{\($0.name)}}'"
            }
        }
    }
}
