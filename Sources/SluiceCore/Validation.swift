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
            if let t = stage.timeout, t <= .zero { problems.append("\(what): timeout must be longer than zero") }
            if let w = stage.workdir, w.hasPrefix("/") || w.split(separator: "/").contains("..") {
                problems.append("\(what): workdir '\(w)' must be a relative path inside the pipeline's folder")
            }
        }
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
