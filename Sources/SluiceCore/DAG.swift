/// Graph questions about a pipeline's stages.
public enum DAG {
    /// One cycle among the stages (`a → b → a`), or nil. Unknown `needs` are ignored here.
    public static func findCycle(_ stages: [StageSpec]) -> [StageName]? {
        let needs = Dictionary(stages.map { ($0.name, $0.dependencies) }, uniquingKeysWith: { a, _ in a })
        var state: [StageName: Int] = [:] // 1 visiting, 2 done
        var path: [StageName] = []
        func visit(_ name: StageName) -> [StageName]? {
            if state[name] == 2 { return nil }
            if state[name] == 1 {
                let start = path.firstIndex(of: name) ?? 0
                return Array(path[start...]) + [name]
            }
            state[name] = 1
            path.append(name)
            for next in needs[name] ?? [] where needs[next] != nil {
                if let cycle = visit(next) { return cycle }
            }
            path.removeLast()
            state[name] = 2
            return nil
        }
        for stage in stages {
            if let cycle = visit(stage.name) { return cycle }
        }
        return nil
    }

    /// Every stage `stage` depends on, directly or through others (`needs` and producers): those that
    /// have ended before it starts.
    public static func upstream(of stage: StageName, in spec: PipelineSpec) -> Set<StageName> {
        var upstream: Set<StageName> = []
        var next = spec.stage(stage)?.dependencies ?? []
        while let name = next.popLast() {
            if upstream.insert(name).inserted { next += spec.stage(name)?.dependencies ?? [] }
        }
        return upstream
    }

    /// Stages ordered so each comes after everything it needs (file order among equals).
    public static func topologicalOrder(_ stages: [StageSpec]) -> [StageName] {
        var done: Set<StageName> = []
        var order: [StageName] = []
        var remaining = stages
        while !remaining.isEmpty {
            let before = remaining.count
            remaining.removeAll { stage in
                guard stage.dependencies.allSatisfy({ done.contains($0) }) else { return false }
                done.insert(stage.name)
                order.append(stage.name)
                return true
            }
            if remaining.count == before { order += remaining.map(\.name); break } // cycle: validation reports it
        }
        return order
    }
}
