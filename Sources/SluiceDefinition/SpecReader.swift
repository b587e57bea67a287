import Foundation
import SluiceCore
import Yams

/// Walks the YAML node tree, building a `PipelineSpec` and recording every problem with its location.
struct SpecReader {
    let file: String
    let root: String
    var diagnostics: [Diagnostic] = []
    /// `session: NAME`: a session declared in a session file beside this one (resolved by the loader).
    var sessionReference: (name: String, location: SourceLocation?)?

    static let pipelineKeys = ["name", "description", "schedule", "on_files", "on_mail", "overlap", "concurrency", "params", "env", "stages",
                               "lifecycle", "notify", "session"]
    static let scheduleKeys = ["cron", "every", "timezone", "missed", "max_missed"]
    static let fileTriggerKeys = ["glob", "settle"]
    static let mailTriggerKeys = ["mailbox", "password_env", "password_file", "ca_file", "auth", "subject_contains",
                                  "subject_regex", "from", "attachments", "poll", "max_size"]
    static let stageKeys = ["description", "needs", "run", "shell", "env", "workdir", "timeout", "hang_after",
                            "done_when", "grace", "retries", "when", "proceed_if", "for_each", "concurrency", "queue",
                            "max_failed_items", "outputs", "on_failure"]
    static let retryKeys = ["attempts", "backoff", "initial", "max", "jitter", "exit_codes"]
    static let whenKeys = ["files", "no_files", "upstream", "changed"]

    init(file: String, root: String) {
        self.file = file
        self.root = root
    }

    // MARK: - helpers

    func location(_ node: Node?) -> SourceLocation? {
        guard let mark = node?.mark else { return SourceLocation(file: file, line: 1, column: 1) }
        return SourceLocation(file: file, line: mark.line, column: mark.column)
    }

    mutating func error(_ message: String, _ node: Node?, hint: String? = nil) {
        diagnostics.append(.error(message, at: location(node), hint: hint))
    }

    static func kind(_ node: Node) -> String {
        switch node {
        case .scalar(let s):
            if s.style == .plain {
                if node.null != nil { return "nothing (null)" }
                if node.bool != nil { return "a boolean (\(s.string))" }
                if node.int != nil { return "a number (\(s.string))" }
                if node.float != nil { return "a number (\(s.string))" }
            }
            return "the text '\(s.string)'"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        }
    }

    /// Entries of a mapping as (key text, key node, value node); reports anything that is not a mapping.
    mutating func mapping(_ node: Node, _ what: String) -> [(String, Node, Node)]? {
        guard case .mapping(let m) = node else {
            error("\(what) must be a mapping (key: value lines), got \(Self.kind(node))", node)
            return nil
        }
        var entries: [(String, Node, Node)] = []
        for (k, v) in m {
            guard case .scalar(let s) = k else {
                error("keys of \(what) must be plain names, got \(Self.kind(k))", k)
                continue
            }
            entries.append((s.string, k, v))
        }
        return entries
    }

    mutating func checkKeys(_ entries: [(String, Node, Node)], allowed: [String], in what: String) {
        for (key, keyNode, _) in entries where !allowed.contains(key) {
            let hint = Suggest.hint(for: key, in: allowed) ?? "allowed keys: \(allowed.joined(separator: ", "))"
            error("unknown key '\(key)' in \(what)", keyNode, hint: hint)
        }
    }

    mutating func string(_ node: Node, _ what: String) -> String? {
        guard case .scalar(let s) = node else {
            error("\(what) must be text, got \(Self.kind(node))", node)
            return nil
        }
        if s.style == .plain && node.null != nil {
            error("\(what) must be text, got nothing (null)", node, hint: "write a value after the colon")
            return nil
        }
        // Plain numbers and booleans are read as their text (`run: [sleep, 5]`, `env: { DEBUG: true }`).
        return s.string
    }

    mutating func stringList(_ node: Node, _ what: String) -> [(String, Node)]? {
        switch node {
        case .scalar:
            return string(node, what).map { [($0, node)] }
        case .sequence(let seq):
            var out: [(String, Node)] = []
            for item in seq {
                if let s = string(item, "each entry of \(what)") { out.append((s, item)) }
            }
            return out
        default:
            error("\(what) must be text or a list of text, got \(Self.kind(node))", node)
            return nil
        }
    }

    mutating func duration(_ node: Node, _ what: String) -> Duration? {
        guard case .scalar(let s) = node, node.null == nil else {
            error("\(what) must be a duration such as 30s, 5m or 1h30m, got \(Self.kind(node))", node)
            return nil
        }
        guard let d = DurationText.parse(s.string) else {
            error("\(what) '\(s.string)' is not a duration", node,
                  hint: "write a number with a unit: 500ms, 30s, 5m, 2h, 1h30m, 1d (a plain number means seconds)")
            return nil
        }
        return d
    }

    mutating func positiveInt(_ node: Node, _ what: String) -> Int? {
        guard case .scalar(let s) = node, let v = Int(s.string) else {
            error("\(what) must be a whole number, got \(Self.kind(node))", node)
            return nil
        }
        guard v > 0 else {
            error("\(what) must be at least 1, got \(v)", node)
            return nil
        }
        return v
    }

    mutating func checkPlaceholders(_ text: String, _ node: Node, known: Set<String>, what: String, items: Bool = false) {
        switch Template.placeholders(in: text) {
        case .failure(.unclosed):
            error("\(what) has '{{' without a closing '}}': \(text)", node, hint: "write placeholders as {{params.name}}")
        case .failure(.empty):
            error("\(what) has an empty placeholder '{{}}'", node, hint: "write placeholders as {{params.name}}")
        case .success(let found):
            for p in found where !known.contains(p.name) {
                if Template.isItemName(p.name) {
                    if !items {
                        error("\(what) uses '{{\(p.name)}}', but this stage has no items", node,
                              hint: "add `for_each: <stage>` to run one task per item that stage emits")
                    }
                    continue
                }
                let hint = Suggest.hint(for: p.name, in: known)
                    ?? "known placeholders: \(known.sorted().joined(separator: ", "))"
                error("\(what) uses unknown placeholder '{{\(p.name)}}'", node, hint: hint)
            }
        }
    }

    static func isValidName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, CharacterSet.alphanumerics.contains(first) || first == "_" else { return false }
        return name.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || "_-.".unicodeScalars.contains($0) } && name.count <= 100
    }

    // MARK: - pipeline

    mutating func read(_ document: Node?) -> PipelineSpec? {
        guard let document else {
            diagnostics.append(.error("the pipeline file is empty", at: SourceLocation(file: file, line: 1, column: 1),
                                      hint: "a pipeline needs at least `name:` and `stages:`; `sluice init` writes an example"))
            return nil
        }
        guard let entries = mapping(document, "a pipeline file") else { return nil }
        checkKeys(entries, allowed: Self.pipelineKeys, in: "the pipeline")
        let byKey = Dictionary(entries.map { ($0.0, ($0.1, $0.2)) }, uniquingKeysWith: { a, _ in a })

        var name = ""
        if let (_, v) = byKey["name"] {
            if let n = string(v, "name") {
                if Self.isValidName(n) { name = n } else {
                    error("pipeline name '\(n)' is not allowed: it must start with a letter, digit or '_', hold only letters, digits, '_', '-' and '.', and be at most 100 characters", v)
                }
            }
        } else {
            error("the pipeline has no `name:`", document, hint: "add a line such as `name: market-data`")
        }
        let description = byKey["description"].flatMap { string($0.1, "description") }
        let schedule = byKey["schedule"].flatMap { readSchedule($0.1) }
        let onFiles = byKey["on_files"].flatMap { readFileTrigger($0.1) }
        let onMail = byKey["on_mail"].flatMap { readMailTrigger($0.1) }
        var overlap = OverlapPolicy.skip
        if let (_, v) = byKey["overlap"], let s = string(v, "overlap") {
            if let o = OverlapPolicy(rawValue: s) { overlap = o } else {
                error("overlap must be one of skip, queue, allow; got '\(s)'", v,
                      hint: Suggest.hint(for: s, in: OverlapPolicy.allCases.map(\.rawValue)))
            }
        }
        var concurrency = 4
        if let (_, v) = byKey["concurrency"], let c = positiveInt(v, "concurrency") { concurrency = c }

        var params: [String: String] = [:]
        if let (_, v) = byKey["params"], let pe = mapping(v, "params") {
            for (k, kn, pv) in pe {
                if !Self.isParamName(k) {
                    error("param name '\(k)' may hold only letters, digits and '_'", kn)
                } else if case .scalar = pv, let s = string(pv, "param '\(k)'") {
                    params[k] = s
                } else if case .scalar = pv {
                } else {
                    error("param '\(k)' must be a single value (text or number), got \(Self.kind(pv))", pv)
                }
            }
        }
        if onFiles != nil { FileTrigger.declareParams(in: &params) }
        if onMail != nil { MailTrigger.declareParams(in: &params) }
        var envNames: [String: String] = [:]
        for name in params.keys.sorted() {
            let envName = "SLUICE_PARAM_" + name.uppercased()
            if let other = envNames[envName] {
                error("params '\(other)' and '\(name)' would both reach commands as $\(envName)", byKey["params"]?.1,
                      hint: "rename one of them; param names differing only in case are not allowed")
            }
            envNames[envName] = name
        }
        let known = Template.knownNames(params: params.keys)
        var env: [String: String] = [:]
        if let (_, v) = byKey["env"] { env = readEnv(v, known: known, what: "env") }

        var stages: [StageSpec] = []
        var stageNodes: [StageName: (key: Node, value: Node)] = [:]
        if let (_, v) = byKey["stages"] {
            if let se = mapping(v, "stages") {
                if se.isEmpty { error("`stages:` is empty", v, hint: "add at least one stage with a `run:` list") }
                for (stageName, kn, sv) in se {
                    guard Self.isValidName(stageName) else {
                        error("stage name '\(stageName)' is not allowed: it must start with a letter, digit or '_', hold only letters, digits, '_', '-' and '.', and be at most 100 characters", kn)
                        continue
                    }
                    stageNodes[stageName] = (kn, sv)
                    if let stage = readStage(stageName, kn, sv, known: known) { stages.append(stage) }
                }
            }
        } else {
            error("the pipeline has no `stages:`", document, hint: "add `stages:` with at least one stage")
        }

        checkGraph(stages, nodes: stageNodes)
        let lifecycle = byKey["lifecycle"].map { readLifecycle($0.1, stages: Set(stageNodes.keys)) } ?? []
        checkArtifacts(stages, nodes: stageNodes)
        let notify = byKey["notify"].map { readNotify($0.1) } ?? PipelineNotify()
        var session: SessionSpec?
        if let (_, v) = byKey["session"] {
            if case .scalar = v {
                if let n = string(v, "session") { sessionReference = (n, location(v)) }
            } else if let inline = readSession(v, inline: true) {
                if !name.isEmpty && inline.member(name) == nil {
                    error("session '\(inline.name)' does not list this pipeline ('\(name)') among its members", v,
                          hint: "add '\(name)' to its members")
                }
                session = inline
            }
        }
        return PipelineSpec(name: name, description: description, schedule: schedule, onFiles: onFiles, onMail: onMail, overlap: overlap,
                            concurrency: concurrency, params: params, env: env, root: root,
                            sourceFile: file, stages: stages, lifecycle: lifecycle, notify: notify, session: session)
    }

    static func isParamName(_ s: String) -> Bool {
        guard let f = s.unicodeScalars.first, CharacterSet.letters.contains(f) || f == "_" else { return false }
        return s.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || $0 == "_" }
    }

    mutating func readEnv(_ node: Node, known: Set<String>, what: String, items: Bool = false) -> [String: String] {
        var env: [String: String] = [:]
        guard let entries = mapping(node, what) else { return env }
        for (k, kn, v) in entries {
            guard let first = k.unicodeScalars.first, !CharacterSet.decimalDigits.contains(first),
                  k.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "_") }) else {
                error("environment variable name '\(k)' may hold only letters, digits and '_', and may not start with a digit", kn)
                continue
            }
            if let s = string(v, "\(what).\(k)") {
                checkPlaceholders(s, v, known: known, what: "\(what).\(k)", items: items)
                env[k] = s
            }
        }
        return env
    }

    // MARK: - stages

    mutating func readStage(_ name: StageName, _ keyNode: Node, _ node: Node, known: Set<String>) -> StageSpec? {
        let what = "stage '\(name)'"
        guard let entries = mapping(node, what) else { return nil }
        checkKeys(entries, allowed: Self.stageKeys, in: what)
        let byKey = Dictionary(entries.map { ($0.0, ($0.1, $0.2)) }, uniquingKeysWith: { a, _ in a })
        let stageKnown = known

        var forEach: StageName?
        if let (_, v) = byKey["for_each"], let producer = string(v, "\(what).for_each") {
            if producer == name {
                error("stage '\(name)' has for_each on itself", v, hint: "name the stage whose items this stage processes")
            } else {
                forEach = producer
            }
        }
        let items = forEach != nil

        var command: CommandSpec?
        switch (byKey["run"], byKey["shell"]) {
        case (nil, nil):
            error("\(what) has neither `run:` nor `shell:`", keyNode,
                  hint: "add `run: [program, arg, ...]` (or `shell: \"...\"` to run a shell script)")
        case (.some, .some(let (shellKey, _))):
            error("\(what) has both `run:` and `shell:`", shellKey, hint: "keep one: `run:` is an argv list, `shell:` a script for /bin/sh")
        case (.some(let (_, runNode)), nil):
            if case .sequence(let seq) = runNode {
                var argv: [String] = []
                for item in seq {
                    if let s = string(item, "each argument of \(what).run") {
                        checkPlaceholders(s, item, known: stageKnown, what: "\(what).run", items: items)
                        argv.append(s)
                    }
                }
                if argv.isEmpty {
                    error("\(what).run is an empty list", runNode, hint: "name the program to run first, e.g. run: [python3, script.py]")
                } else if argv[0].isEmpty {
                    error("\(what).run starts with an empty program name", runNode)
                }
                command = .argv(argv)
            } else if case .scalar(let s) = runNode {
                let words = s.string.split(separator: " ").map { "\"\($0)\"" }.joined(separator: ", ")
                error("\(what).run must be a list of arguments (argv), got the text '\(s.string)'", runNode,
                      hint: "write `run: [\(words)]`, or `shell: \"\(s.string)\"` if you need a shell")
            } else {
                error("\(what).run must be a list of arguments (argv), got \(Self.kind(runNode))", runNode)
            }
        case (nil, .some(let (_, shellNode))):
            if let s = string(shellNode, "\(what).shell") {
                if s.contains("{{") {
                    error("\(what).shell may not hold {{placeholders}}: values are never spliced into a shell script", shellNode,
                          hint: s.contains("{{item")
                            ? "read the item from the environment instead: \"$SLUICE_ITEM\" (its JSON) or \"$SLUICE_ITEM_KEY\"; or use `run: [sh, -c, '…\"$1\"…', sh, \"{{item.field}}\"]`"
                            : "read params from the environment instead, e.g. \"$SLUICE_PARAM_INPUT\" for {{params.input}}")
                }
                command = .shell(s)
            }
        }

        var needs: [StageName] = []
        if let (_, v) = byKey["needs"], let list = stringList(v, "\(what).needs") {
            for (n, _) in list where !needs.contains(n) { needs.append(n) }
        }

        var env: [String: String] = [:]
        if let (_, v) = byKey["env"] { env = readEnv(v, known: stageKnown, what: "\(what).env", items: items) }

        var workdir: String?
        if let (_, v) = byKey["workdir"], let w = string(v, "\(what).workdir") {
            checkPlaceholders(w, v, known: stageKnown, what: "\(what).workdir")
            if w.hasPrefix("/") || w.split(separator: "/").contains("..") {
                error("\(what).workdir '\(w)' leaves the pipeline's folder", v,
                      hint: "use a path relative to the pipeline file's folder, without '..'")
            } else { workdir = w }
        }

        var timeout: Duration?, hangAfter: Duration?, grace: Duration = .seconds(10)
        if let (_, v) = byKey["timeout"] { timeout = positiveDuration(v, "\(what).timeout") }
        if let (_, v) = byKey["hang_after"] { hangAfter = positiveDuration(v, "\(what).hang_after") }
        if let (_, v) = byKey["grace"], let g = duration(v, "\(what).grace") { grace = g }

        var doneWhen: String?
        if let (_, v) = byKey["done_when"], let pattern = string(v, "\(what).done_when") {
            do {
                _ = try Regex(pattern)
                doneWhen = pattern
            } catch {
                self.error("\(what).done_when '\(pattern)' is not a valid regular expression: \(error)", v,
                           hint: "escape special characters such as ( ) [ ] . * + ? with a backslash, or quote the text")
            }
        }

        var retry = RetryPolicy.none
        if let (_, v) = byKey["retries"] { retry = readRetries(v, what: "\(what).retries") }

        var when = Conditions()
        if let (_, v) = byKey["when"] { when = readWhen(v, what: "\(what).when", known: stageKnown) }

        var stageConcurrency: Int?
        if let (_, v) = byKey["concurrency"], let c = positiveInt(v, "\(what).concurrency") { stageConcurrency = c }
        var tolerance = FailureTolerance.count(0)
        if let (_, v) = byKey["max_failed_items"] {
            if forEach == nil {
                error("\(what).max_failed_items applies only to a stage with for_each", v)
            } else if case .scalar(let sc) = v, let t = FailureTolerance(sc.string) {
                if let problem = t.problem {
                    error("\(what).max_failed_items \(problem)", v, hint: FailureTolerance.hint)
                } else {
                    tolerance = t
                }
            } else {
                error("\(what).max_failed_items must be a count (e.g. 10) or a percentage (e.g. 5%), got \(Self.kind(v))", v)
            }
        }
        if let forEach { needs.removeAll { $0 == forEach } }
        var queue: String?
        if let (_, v) = byKey["queue"], let q = string(v, "\(what).queue") {
            if !StageSpec.isQueueName(q) {
                error("\(what).queue '\(q)' is not a queue name", v,
                      hint: "use letters, digits, '-', '_' or '.', e.g. queue: gpu")
            } else {
                queue = q
            }
        }

        var proceedIf: Set<UpstreamOutcome> = [.success]
        if let (_, v) = byKey["proceed_if"], let list = stringList(v, "\(what).proceed_if") {
            proceedIf = readOutcomes(list, what: "\(what).proceed_if")
        }

        var outputs: [OutputSpec] = []
        if let (_, v) = byKey["outputs"] { outputs = readOutputs(v, what: "\(what).outputs") }
        if !outputs.isEmpty, forEach != nil, let (k, _) = byKey["outputs"] {
            error("\(what) has outputs and for_each", k,
                  hint: "declare outputs on a stage that runs once, such as a join stage after the fan-out")
        }
        var onFailure = FailureAction.fail
        if let (k, v) = byKey["on_failure"], let text = string(v, "\(what).on_failure") {
            if let action = FailureAction(rawValue: text) {
                onFailure = action
                if action == .rollback, !outputs.contains(where: \.versioned) {
                    error("\(what) has on_failure: rollback but no versioned output to restore", k,
                          hint: "declare the files it rebuilds under outputs: with versioned: true")
                }
            } else {
                error("\(what).on_failure must be fail or rollback, got '\(text)'", v,
                      hint: Suggest.hint(for: text, in: FailureAction.allCases.map(\.rawValue)))
            }
        }

        // A stage with a bad command is still returned, so its needs are checked too; the errors
        // already recorded keep the pipeline from being used.
        return StageSpec(name: name, description: byKey["description"].flatMap { string($0.1, "\(what).description") },
                         needs: needs, command: command ?? .argv([]), env: env, workdir: workdir, timeout: timeout,
                         hangAfter: hangAfter, doneWhen: doneWhen, grace: grace, retry: retry, when: when,
                         proceedIf: proceedIf, forEach: forEach, concurrency: stageConcurrency, maxFailedItems: tolerance,
                         queue: queue, location: location(keyNode), outputs: outputs, onFailure: onFailure)
    }

    static let cronHint = "use 5 fields (minute hour day-of-month month day-of-week), e.g. \"*/15 * * * *\", or @hourly, @daily, @weekly, @monthly"

    /// `schedule: "CRON"`, or a mapping with `cron:` or `every:`, `timezone:`, `missed:` and `max_missed:`.
    mutating func readSchedule(_ node: Node) -> Schedule? {
        if case .scalar = node {
            guard let text = string(node, "schedule") else { return nil }
            return cronRule(text, node).map { Schedule($0) }
        }
        guard let entries = mapping(node, "schedule") else { return nil }
        checkKeys(entries, allowed: Self.scheduleKeys, in: "schedule")
        let byKey = Dictionary(entries.map { ($0.0, ($0.1, $0.2)) }, uniquingKeysWith: { a, _ in a })
        var rule: Schedule.Rule?
        switch (byKey["cron"], byKey["every"]) {
        case (let cron?, nil):
            rule = string(cron.1, "schedule.cron").flatMap { cronRule($0, cron.1) }
        case (nil, let every?):
            if let d = positiveDuration(every.1, "schedule.every") {
                if d < .seconds(1) { error("schedule.every must be at least 1s", every.1) } else { rule = .every(d) }
            }
        case (_?, _?):
            error("schedule has both cron: and every:; give one", node)
        case (nil, nil):
            error("schedule needs cron: or every:", node, hint: "e.g. `cron: \"0 6 * * *\"` or `every: 15m`")
        }
        var zone: String?
        if let (_, v) = byKey["timezone"], let name = string(v, "schedule.timezone") {
            if TimeZone(identifier: name) == nil {
                error("schedule.timezone '\(name)' is not a time zone", v,
                      hint: Suggest.hint(for: name, in: TimeZone.knownTimeZoneIdentifiers) ?? "use an IANA name such as Europe/Madrid or America/New_York")
            } else {
                zone = name
            }
        }
        var missed = MissedRuns.skip
        var cap = 10
        if let (_, v) = byKey["max_missed"], let n = positiveInt(v, "schedule.max_missed") { cap = n }
        if let (_, v) = byKey["missed"], let text = string(v, "schedule.missed") {
            switch text {
            case "skip": missed = .skip
            case "once": missed = .once
            case "all": missed = .all(max: cap)
            default: error("schedule.missed must be skip, once or all; got '\(text)'", v, hint: Suggest.hint(for: text, in: ["skip", "once", "all"]))
            }
        } else if byKey["max_missed"] != nil {
            error("schedule.max_missed applies only with `missed: all`", byKey["max_missed"]?.0)
        }
        guard let rule else { return nil }
        let schedule = Schedule(rule, timeZone: zone, missed: missed)
        if case .cron = rule, schedule.nextFire(after: Date()) == nil {
            error("schedule '\(schedule.summary)' never fires (no such date in the next five years)", node)
            return nil
        }
        return schedule
    }

    mutating func cronRule(_ text: String, _ node: Node) -> Schedule.Rule? {
        do throws(CronExpression.ParseError) {
            let cron = try CronExpression(text)
            if cron.next(after: Date(), in: TimeZone(identifier: "UTC")!) == nil {
                error("schedule '\(text)' never fires (no such date in the next five years)", node)
                return nil
            }
            return .cron(text)
        } catch {
            self.error("schedule '\(text)' is not a cron expression: \(error.message)", node,
                       hint: error.message.hasPrefix("it has") || error.message.hasPrefix("unknown shortcut") ? Self.cronHint : nil)
            return nil
        }
    }

    /// `on_files: {glob: "inbox/*.csv", settle: 10s}`; the glob stays inside the pipeline root.
    mutating func readFileTrigger(_ node: Node) -> FileTrigger? {
        guard let entries = mapping(node, "on_files") else { return nil }
        checkKeys(entries, allowed: Self.fileTriggerKeys, in: "on_files")
        let byKey = Dictionary(entries.map { ($0.0, ($0.1, $0.2)) }, uniquingKeysWith: { a, _ in a })
        guard let (_, g) = byKey["glob"] else {
            error("on_files needs glob:", node, hint: "e.g. `glob: \"inbox/*.csv\"` (relative to the pipeline's folder)")
            return nil
        }
        guard let glob = string(g, "on_files.glob") else { return nil }
        if glob.hasPrefix("/") || glob.split(separator: "/").contains("..") || glob.hasPrefix("~") {
            error("on_files.glob '\(glob)' leaves the pipeline's folder", g,
                  hint: "write it relative to the pipeline's folder, without '..' (e.g. inbox/*.csv)")
            return nil
        }
        var settle: Duration = .seconds(10)
        if let (_, v) = byKey["settle"], let d = duration(v, "on_files.settle") { settle = d }
        return FileTrigger(glob: glob, settle: settle)
    }

    mutating func readMailTrigger(_ node: Node) -> MailTrigger? {
        guard let entries = mapping(node, "on_mail") else { return nil }
        if let (_, keyNode, _) = entries.first(where: { $0.0 == "password" }) {
            error("on_mail.password: a password never goes in a pipeline file", keyNode,
                  hint: "put it in an environment variable (password_env: SLUICE_MAIL_PASSWORD) or a file readable only by you (password_file: /etc/sluice/mail-password)")
            return nil
        }
        checkKeys(entries, allowed: Self.mailTriggerKeys, in: "on_mail")
        let byKey = Dictionary(entries.map { ($0.0, ($0.1, $0.2)) }, uniquingKeysWith: { a, _ in a })
        guard let (_, m) = byKey["mailbox"] else {
            error("on_mail needs mailbox:", node, hint: "e.g. `mailbox: \"imaps://user@mail.example.com:993/INBOX\"`")
            return nil
        }
        guard let text = string(m, "on_mail.mailbox") else { return nil }
        let mailbox: MailboxAddress
        do throws(MailboxAddress.ParseError) { mailbox = try MailboxAddress(parsing: text) } catch {
            self.error("on_mail.mailbox '\(error == .password ? "(hidden)" : text)' \(error.message)", m,
                  hint: "e.g. imaps://user@mail.example.com:993/INBOX (TLS) or imap://user@mail.example.com/INBOX (STARTTLS)")
            return nil
        }
        var ok = true
        var trigger = MailTrigger(mailbox: mailbox, location: location(node))
        if let (_, v) = byKey["password_env"], let name = string(v, "on_mail.password_env") {
            if name.isEmpty || !name.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "_") }) {
                error("on_mail.password_env '\(name)' is not an environment variable name", v, hint: "e.g. SLUICE_MAIL_PASSWORD")
                ok = false
            }
            trigger.passwordEnv = name
        }
        if let (_, v) = byKey["password_file"], let path = string(v, "on_mail.password_file") {
            trigger.passwordFile = path.hasPrefix("/") ? path : (root as NSString).appendingPathComponent(path)
        }
        if trigger.passwordEnv == nil && trigger.passwordFile == nil {
            error("on_mail needs password_env: or password_file:", node,
                  hint: "name the environment variable that holds the password (password_env: SLUICE_MAIL_PASSWORD) or a file holding it")
            ok = false
        } else if trigger.passwordEnv != nil && trigger.passwordFile != nil {
            error("on_mail has both password_env and password_file; give one", byKey["password_file"]?.1)
            ok = false
        }
        if let (_, v) = byKey["ca_file"], let path = string(v, "on_mail.ca_file") {
            trigger.caFile = path.hasPrefix("/") ? path : (root as NSString).appendingPathComponent(path)
        }
        if let (_, v) = byKey["auth"], let auth = string(v, "on_mail.auth") {
            if ["auto", "plain", "login"].contains(auth) { trigger.auth = auth } else {
                error("on_mail.auth must be auto, plain or login; got '\(auth)'", v, hint: Suggest.hint(for: auth, in: ["auto", "plain", "login"]))
                ok = false
            }
        }
        if let (_, v) = byKey["subject_contains"], let s = string(v, "on_mail.subject_contains") {
            if s.isEmpty { error("on_mail.subject_contains is empty", v, hint: "leave it out to take every subject"); ok = false }
            trigger.subjectContains = s
        }
        if let (_, v) = byKey["subject_regex"], let s = string(v, "on_mail.subject_regex") {
            do { _ = try Regex(s) } catch {
                self.error("on_mail.subject_regex '\(s)' is not a regular expression: \(error)", v,
                           hint: "e.g. '^(?i)asegurados salud' ; quote it in YAML")
                ok = false
            }
            trigger.subjectRegex = s
        }
        if let (_, v) = byKey["from"], let s = string(v, "on_mail.from") { trigger.from = s }
        if let (_, v) = byKey["attachments"], let s = string(v, "on_mail.attachments") {
            if s.isEmpty || s.hasPrefix("/") || s.hasPrefix("~") || s.split(separator: "/").contains("..") {
                error("on_mail.attachments '\(s)' leaves the pipeline's folder", v, hint: "write a folder relative to the pipeline's folder, without '..' (e.g. mail)")
                ok = false
            }
            trigger.attachments = s
        }
        if let (_, v) = byKey["poll"], let d = positiveDuration(v, "on_mail.poll") { trigger.poll = d }
        if let (_, v) = byKey["max_size"], let s = string(v, "on_mail.max_size") {
            if let size = Self.byteSize(s) { trigger.maxSize = size } else {
                error("on_mail.max_size '\(s)' is not a size", v, hint: "e.g. 25MB, 500KB or a number of bytes")
                ok = false
            }
        }
        return ok ? trigger : nil
    }

    /// `25MB`, `500KB`, `1GB` or bytes.
    static func byteSize(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).uppercased()
        for (suffix, factor) in [("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1)] where t.hasSuffix(suffix) {
            guard let n = Int(t.dropLast(suffix.count).trimmingCharacters(in: .whitespaces)), n > 0 else { return nil }
            return n * factor
        }
        guard let n = Int(t), n > 0 else { return nil }
        return n
    }

    mutating func positiveDuration(_ node: Node, _ what: String) -> Duration? {
        guard let d = duration(node, what) else { return nil }
        if d <= .zero {
            error("\(what) must be longer than zero", node)
            return nil
        }
        return d
    }

    mutating func readOutcomes(_ list: [(String, Node)], what: String) -> Set<UpstreamOutcome> {
        var set: Set<UpstreamOutcome> = []
        for (s, n) in list {
            if let o = UpstreamOutcome(rawValue: s) { set.insert(o) } else {
                let names = UpstreamOutcome.allCases.map(\.rawValue)
                error("\(what): unknown outcome '\(s)'", n,
                      hint: Suggest.hint(for: s, in: names) ?? "use one or more of \(names.joined(separator: ", "))")
            }
        }
        return set.isEmpty ? [.success] : set
    }

    mutating func readRetries(_ node: Node, what: String) -> RetryPolicy {
        var policy = RetryPolicy()
        if case .scalar = node {
            if let n = positiveInt(node, "\(what) (a number of attempts)") { policy.attempts = n }
            return policy
        }
        guard let entries = mapping(node, what) else { return policy }
        checkKeys(entries, allowed: Self.retryKeys, in: what)
        var maxNode: Node?
        for (key, _, v) in entries {
            switch key {
            case "attempts": if let n = positiveInt(v, "\(what).attempts") { policy.attempts = n }
            case "backoff":
                if let s = string(v, "\(what).backoff") {
                    if let b = RetryPolicy.Backoff(rawValue: s) { policy.backoff = b } else {
                        error("\(what).backoff must be fixed or exponential, got '\(s)'", v,
                              hint: Suggest.hint(for: s, in: ["fixed", "exponential"]))
                    }
                }
            case "initial": if let d = duration(v, "\(what).initial") { policy.initial = d }
            case "max": if let d = duration(v, "\(what).max") { policy.max = d; maxNode = v }
            case "jitter":
                if let b = v.bool, case .scalar(let s) = v, s.style == .plain, Double(s.string) == nil {
                    policy.jitter = b ? 0.25 : 0
                } else if let f = v.float ?? v.int.map(Double.init), (0...1).contains(f) {
                    policy.jitter = f
                } else {
                    error("\(what).jitter must be true, false or a fraction between 0 and 1, got \(Self.kind(v))", v)
                }
            case "exit_codes":
                var codes: Set<Int32> = []
                let items: [Node]
                if case .sequence(let seq) = v { items = Array(seq) } else { items = [v] }
                for item in items {
                    if let n = item.int, (1...255).contains(n) { codes.insert(Int32(n)) } else {
                        error("each of \(what).exit_codes must be an exit code from 1 to 255, got \(Self.kind(item))", item)
                    }
                }
                policy.exitCodes = codes
            default: break
            }
        }
        if policy.max < policy.initial {
            error("\(what).max (\(DurationText.format(policy.max))) is shorter than initial (\(DurationText.format(policy.initial)))",
                  maxNode ?? node, hint: "max caps the backoff delay; make it at least as long as initial")
        }
        return policy
    }

    mutating func readWhen(_ node: Node, what: String, known: Set<String>) -> Conditions {
        var when = Conditions()
        if case .scalar(let s) = node, s.string == "changed" {
            when.changed = true
            return when
        }
        guard let entries = mapping(node, what) else { return when }
        checkKeys(entries, allowed: Self.whenKeys, in: what)
        for (key, _, v) in entries {
            switch key {
            case "files", "no_files":
                guard let list = stringList(v, "\(what).\(key)") else { continue }
                for (pattern, pn) in list {
                    checkPlaceholders(pattern, pn, known: known, what: "\(what).\(key)")
                    if let problem = Self.globProblem(pattern) {
                        error("\(what).\(key) '\(pattern)' is not a valid glob: \(problem)", pn,
                              hint: "use * for any name, ? for one character, [abc] for a set, e.g. \"data/raw/*.csv\"")
                    } else if key == "files" { when.files.append(pattern) } else { when.noFiles.append(pattern) }
                }
            case "changed":
                if let b = v.bool, case .scalar(let sc) = v, sc.style == .plain { when.changed = b } else {
                    error("\(what).changed must be true or false, got \(Self.kind(v))", v)
                }
            case "upstream":
                guard let ue = mapping(v, "\(what).upstream") else { continue }
                for (stage, _, ov) in ue {
                    guard let list = stringList(ov, "\(what).upstream.\(stage)") else { continue }
                    when.upstream[stage] = readOutcomes(list, what: "\(what).upstream.\(stage)")
                }
            default: break
            }
        }
        return when
    }

    // MARK: - artifacts and lifecycle

    static let outputKeys = ["path", "versioned", "name", "keep", "keep_for"]
    static let lifecycleKeys = ["delete", "archive", "files", "after_success_of"]

    /// `outputs:` — a list of paths, or of mappings `{path, versioned, name, keep, keep_for}`.
    mutating func readOutputs(_ node: Node, what: String) -> [OutputSpec] {
        let items: [Node]
        if case .sequence(let seq) = node { items = Array(seq) } else if case .scalar = node { items = [node] } else {
            error("\(what) must be a list of paths or of mappings with path:, got \(Self.kind(node))", node,
                  hint: "e.g. outputs: [{ path: db/sales.sqlite, versioned: true, keep: 10 }]")
            return []
        }
        var outputs: [OutputSpec] = []
        for item in items {
            var output: OutputSpec
            var pathNode = item
            if case .scalar = item {
                guard let path = string(item, "each entry of \(what)") else { continue }
                output = OutputSpec(path: path)
            } else {
                guard let entries = mapping(item, "each entry of \(what)") else { continue }
                checkKeys(entries, allowed: Self.outputKeys, in: "an entry of \(what)")
                let byKey = Dictionary(entries.map { ($0.0, ($0.1, $0.2)) }, uniquingKeysWith: { a, _ in a })
                guard let (_, p) = byKey["path"] else {
                    error("an entry of \(what) has no path:", item, hint: "e.g. { path: db/sales.sqlite, versioned: true }")
                    continue
                }
                pathNode = p
                guard let path = string(p, "\(what).path") else { continue }
                output = OutputSpec(path: path)
                if let (_, v) = byKey["versioned"] {
                    if let b = v.bool, case .scalar(let sc) = v, sc.style == .plain { output.versioned = b } else {
                        error("\(what).versioned must be true or false, got \(Self.kind(v))", v)
                    }
                }
                if let (_, v) = byKey["name"], let n = string(v, "\(what).name") {
                    if OutputSpec.isArtifactName(n) { output.name = n } else {
                        error("artifact name '\(n)' may hold only letters, digits, '-', '_' and '.' (not first), at most 100 characters", v)
                    }
                }
                if let (_, v) = byKey["keep"], let n = positiveInt(v, "\(what).keep") { output.keep = n }
                if let (_, v) = byKey["keep_for"] { output.keepFor = positiveDuration(v, "\(what).keep_for") }
                if !output.versioned, let (k, _) = byKey["keep"] ?? byKey["keep_for"] {
                    error("\(what): keep and keep_for apply only to a versioned output", k, hint: "add versioned: true")
                }
            }
            if let problem = RelativePath.problem(output.path) {
                error("output '\(output.path)' must be a path inside the pipeline's folder, but \(problem)", pathNode,
                      hint: "write it relative to the pipeline file's folder, without '..'")
                continue
            }
            if Self.globProblem(output.path) == nil, output.path.contains(where: { "*?[".contains($0) }) {
                error("output '\(output.path)' is a pattern; name one file per output", pathNode)
                continue
            }
            if output.versioned, !OutputSpec.isArtifactName(output.name) {
                error("artifact name '\(output.name)' (from the file name) is not allowed", pathNode,
                      hint: "give it a name: made of letters, digits, '-', '_' and '.'")
                continue
            }
            outputs.append(output)
        }
        return outputs
    }

    /// `lifecycle:` — one policy or a list: `{delete: GLOB, after_success_of: [...]}` or
    /// `{archive: FOLDER, files: GLOB, after_success_of: [...]}`.
    mutating func readLifecycle(_ node: Node, stages: Set<StageName>) -> [LifecyclePolicy] {
        let items: [Node]
        if case .sequence(let seq) = node { items = Array(seq) } else { items = [node] }
        var policies: [LifecyclePolicy] = []
        for item in items {
            guard let entries = mapping(item, "lifecycle") else { continue }
            checkKeys(entries, allowed: Self.lifecycleKeys, in: "lifecycle")
            let byKey = Dictionary(entries.map { ($0.0, ($0.1, $0.2)) }, uniquingKeysWith: { a, _ in a })
            var ok = true
            func path(_ key: String) -> String? {
                guard let (_, v) = byKey[key], let text = string(v, "lifecycle.\(key)") else { ok = false; return nil }
                if let problem = RelativePath.problem(text) {
                    error("lifecycle.\(key) '\(text)' must stay inside the pipeline's folder, but \(problem)", v,
                          hint: "write it relative to the pipeline file's folder, without '..'")
                    ok = false
                    return nil
                }
                if key != "archive", let problem = Self.globProblem(text) {
                    error("lifecycle.\(key) '\(text)' is not a valid glob: \(problem)", v)
                    ok = false
                    return nil
                }
                return text
            }
            var files: String?
            var action = LifecyclePolicy.Action.delete
            switch (byKey["delete"], byKey["archive"]) {
            case (_?, nil):
                files = path("delete")
                if let (k, _) = byKey["files"] { error("lifecycle.files goes with archive:; delete: names the files itself", k) }
            case (nil, _?):
                if let folder = path("archive") { action = .archive(folder: folder) }
                if byKey["files"] == nil {
                    error("lifecycle with archive: needs files: (the glob of files to move)", item,
                          hint: "e.g. { archive: data/archive, files: \"data/raw/*.csv\", after_success_of: [translate] }")
                    ok = false
                } else { files = path("files") }
            case (_?, _?):
                error("lifecycle has both delete: and archive:; give one", item)
                ok = false
            case (nil, nil):
                error("lifecycle needs delete: GLOB or archive: FOLDER", item,
                      hint: "e.g. { delete: \"data/raw/*.csv\", after_success_of: [translate, analyze] }")
                ok = false
            }
            var after: [StageName] = []
            if let (k, v) = byKey["after_success_of"], let list = stringList(v, "lifecycle.after_success_of") {
                for (name, n) in list {
                    if stages.contains(name) { if !after.contains(name) { after.append(name) } } else {
                        error("lifecycle.after_success_of names unknown stage '\(name)'", n,
                              hint: Suggest.hint(for: name, in: stages) ?? "stages in this file: \(stages.sorted().joined(separator: ", "))")
                        ok = false
                    }
                }
                if list.isEmpty { error("lifecycle.after_success_of is empty", k); ok = false }
            } else if byKey["after_success_of"] == nil {
                error("lifecycle needs after_success_of: the stages that must succeed before files are touched", item,
                      hint: "e.g. after_success_of: [translate, analyze]")
                ok = false
            }
            if ok, let files { policies.append(LifecyclePolicy(files: files, action: action, afterSuccessOf: after, location: location(item))) }
        }
        return policies
    }

    /// Cross-stage artifact rules: unique artifact names, `when: changed` needing a versioned upstream.
    mutating func checkArtifacts(_ stages: [StageSpec], nodes: [StageName: (key: Node, value: Node)]) {
        var owners: [String: StageName] = [:]
        let byName = Dictionary(stages.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for stage in stages {
            for output in stage.versionedOutputs {
                if let other = owners[output.name] {
                    error("artifact '\(output.name)' of stage '\(stage.name)' is also an output of stage '\(other)'", nodes[stage.name]?.key,
                          hint: "give one of them another name: (artifact names are unique in a pipeline)")
                } else { owners[output.name] = stage.name }
            }
            if stage.when.changed, !stage.dependencies.contains(where: { !(byName[$0]?.versionedOutputs.isEmpty ?? true) }) {
                error("stage '\(stage.name)' has when: changed, but none of its needs has a versioned output", nodes[stage.name]?.key,
                      hint: "add the stage that publishes the artifacts to needs:")
            }
        }
    }

    // MARK: - graph

    mutating func checkGraph(_ stages: [StageSpec], nodes: [StageName: (key: Node, value: Node)]) {
        let names = Set(nodes.keys)
        for stage in stages {
            let stageNode = nodes[stage.name]?.value
            let entries: [(String, Node, Node)]
            if case .mapping(let m)? = stageNode {
                entries = m.compactMap { k, v in k.string.map { ($0, k, v) } }
            } else { entries = [] }
            let needsNode = entries.first { $0.0 == "needs" }?.2
            let whenNode = entries.first { $0.0 == "when" }?.2
            func upstreamKey(_ name: String) -> Node? {
                guard case .mapping(let when)? = whenNode,
                      case .mapping(let upstream)? = when.first(where: { $0.key.string == "upstream" })?.value else { return whenNode }
                return upstream.first { $0.key.string == name }?.key ?? whenNode
            }
            func node(in list: Node?, named name: String) -> Node? {
                if case .sequence(let seq)? = list { return seq.first { $0.string == name } ?? list }
                return list
            }
            for need in stage.needs {
                if need == stage.name {
                    error("stage '\(stage.name)' needs itself", node(in: needsNode, named: need))
                } else if !names.contains(need) {
                    error("stage '\(stage.name)' needs unknown stage '\(need)'", node(in: needsNode, named: need),
                          hint: Suggest.hint(for: need, in: names.subtracting([stage.name]))
                            ?? "stages in this file: \(names.sorted().joined(separator: ", "))")
                }
            }
            if let producer = stage.forEach, !names.contains(producer) {
                let forEachNode = entries.first { $0.0 == "for_each" }?.2
                error("stage '\(stage.name)' has for_each on unknown stage '\(producer)'", forEachNode,
                      hint: Suggest.hint(for: producer, in: names.subtracting([stage.name]))
                        ?? "stages in this file: \(names.sorted().joined(separator: ", "))")
            }
            for upstream in stage.when.upstream.keys.sorted() where !stage.needs.contains(upstream) {
                let others = names.subtracting([stage.name])
                let hint = names.contains(upstream)
                    ? "add '\(upstream)' to `needs:` so it has finished before this stage is decided"
                    : (Suggest.hint(for: upstream, in: others) ?? "stages in this file: \(names.sorted().joined(separator: ", "))")
                error("stage '\(stage.name)' has a when.upstream condition on '\(upstream)', which is not in its needs", upstreamKey(upstream), hint: hint)
            }
        }
        // A stage that needs itself was reported above; the cycle search looks for longer loops.
        let withoutSelfNeeds = stages.map { stage in
            var copy = stage
            copy.needs.removeAll { $0 == stage.name }
            return copy
        }
        if let cycle = DAG.findCycle(withoutSelfNeeds) {
            error("stages depend on each other in a cycle: \(cycle.joined(separator: " → "))", nodes[cycle[0]]?.key,
                  hint: "remove one of these `needs` so the stages form a graph without loops")
        }
    }

    // MARK: - light syntax checks

    static func globProblem(_ pattern: String) -> String? {
        if pattern.isEmpty { return "it is empty" }
        var depth = 0
        for c in pattern {
            if c == "[" { depth += 1 }
            if c == "]" { if depth == 0 { return "']' without '['" }; depth -= 1 }
        }
        if depth != 0 { return "'[' without ']'" }
        let withoutPlaceholders = Template.render(pattern, values: [:])
        if withoutPlaceholders.contains("{") || withoutPlaceholders.contains("}") { return "braces {a,b} are not supported; list the patterns instead" }
        return nil
    }

}
