import Foundation
import SluiceCore
import SluiceEngine

/// Hands items to the fan-out stages that take them; each is recorded within 100 ms, and its task can
/// start while the producer still runs. Items are deduplicated by key: an `id` (or `key`) property when
/// the item has one, else a hash of its content.
public struct ItemEmitter<Item: Encodable & Sendable>: Sendable {
    let context: StageContext

    public func emit(_ item: Item) throws {
        try context.emit(itemJSON: try Self.encode(item))
    }

    static func encode(_ item: Item) throws -> Data {
        try ValueCoding.encode(item, sortedKeys: true)
    }

    public func emit(contentsOf items: some Sequence<Item>) throws {
        for item in items { try emit(item) }
    }

    /// Emits `item`, first waiting while many emitted items (`StageContext.unrecordedItemLimit`) are not
    /// recorded yet: use it in a discovery of millions of items to keep memory bounded.
    public func send(_ item: Item) async throws {
        try await context.send(itemJSON: try Self.encode(item))
    }
}

/// A stage that discovers items for a `ForEach`: it emits them while it runs (streaming), or returns them.
///
///     let filings = Discover<Filing>("discover") { context, items in
///         for try await filing in listFilings() { try items.emit(filing) }
///     }
///     let parsed = ForEach("parse", over: filings, concurrency: 8) { context, filing in
///         try await parse(filing)
///     }
public struct Discover<Item: Codable & Sendable>: PipelineComponent, StageReference {
    public var definition: StageDefinition
    public var name: StageName { definition.spec.name }

    /// Emits items through `items` while it runs.
    public init(_ name: StageName, needs: any StageReference...,
                body: @escaping @Sendable (StageContext, ItemEmitter<Item>) async throws -> Void) {
        let run: StageBody = { context in
            try await body(context, ItemEmitter(context: context))
            return nil
        }
        definition = StageDefinition(spec: StageSpec(name: name, needs: specNeeds(needs), command: .swift), body: run, discovers: true)
    }

    /// Yields its items as an async sequence (streaming): each is recorded as it comes, and its task can
    /// start while the sequence goes on; the stage ends when the sequence does.
    ///
    ///     let events = Discover<Event>("tail", sequence: { context in feed.events(since: context.param("since")) })
    public init<Items: AsyncSequence>(_ name: StageName, needs: any StageReference...,
                                      sequence: @escaping @Sendable (StageContext) async throws -> Items)
    where Items.Element == Item, Items: SendableMetatype, Items.AsyncIterator: SendableMetatype {
        let run: StageBody = { context in
            let emitter = ItemEmitter<Item>(context: context)
            for try await item in try await sequence(context) { try await emitter.send(item) }
            return nil
        }
        definition = StageDefinition(spec: StageSpec(name: name, needs: specNeeds(needs), command: .swift), body: run, discovers: true)
    }

    /// Returns its items at once.
    public init(_ name: StageName, needs: any StageReference..., items: @escaping @Sendable (StageContext) async throws -> [Item]) {
        let run: StageBody = { context in
            try ItemEmitter<Item>(context: context).emit(contentsOf: try await items(context))
            return nil
        }
        definition = StageDefinition(spec: StageSpec(name: name, needs: specNeeds(needs), command: .swift), body: run, discovers: true)
    }
}

/// One task per item of a producer (a `Discover` stage, or a `Command` whose stdout lines are JSON items),
/// with its own concurrency limit, retries and timeout per item. Each task's result is recorded.
public struct ForEach<Item: Codable & Sendable, Output: Codable & Sendable>: PipelineComponent, StageReference {
    public var definition: StageDefinition
    public var name: StageName { definition.spec.name }

    /// - Parameters:
    ///   - concurrency: at most this many items at once (within the pipeline's concurrency).
    ///   - maxFailedItems: failed items the stage tolerates; within it the stage ends partial_success.
    public init(_ name: StageName, over producer: Discover<Item>, needs: any StageReference..., concurrency: Int? = nil,
                maxFailedItems: FailureTolerance = .count(0),
                body: @escaping @Sendable (StageContext, Item) async throws -> Output) {
        self.init(name, producer: producer.name, needs: needs, concurrency: concurrency, maxFailedItems: maxFailedItems, body: body)
    }

    /// Over the JSON items of a command (`Item` decodes each of them).
    public init(_ name: StageName, over producer: Command, as _: Item.Type = Item.self, needs: any StageReference...,
                concurrency: Int? = nil, maxFailedItems: FailureTolerance = .count(0),
                body: @escaping @Sendable (StageContext, Item) async throws -> Output) {
        self.init(name, producer: producer.name, needs: needs, concurrency: concurrency, maxFailedItems: maxFailedItems, body: body)
    }

    init(_ name: StageName, producer: StageName, needs: [any StageReference], concurrency: Int?,
         maxFailedItems: FailureTolerance, body: @escaping @Sendable (StageContext, Item) async throws -> Output) {
        let run: StageBody = { context in
            guard let data = context.item else {
                throw StageResultError(message: "stage '\(context.stage)' ran without an item", hint: nil)
            }
            let item: Item
            do { item = try ValueCoding.decode(Item.self, from: data) } catch {
                throw StageResultError(message: "item \(context.taskKey) of stage '\(producer)' cannot be read as \(Item.self): \(error)",
                                       hint: "the producer's items must decode as \(Item.self)")
            }
            return try ValueCoding.encode(try await body(context, item))
        }
        definition = StageDefinition(
            spec: StageSpec(name: name, needs: specNeeds(needs), command: .swift, forEach: producer,
                            concurrency: concurrency, maxFailedItems: maxFailedItems),
            body: run)
    }
}

extension ForEach where Output == NoResult {
    public init(_ name: StageName, over producer: Discover<Item>, needs: any StageReference..., concurrency: Int? = nil,
                maxFailedItems: FailureTolerance = .count(0), body: @escaping @Sendable (StageContext, Item) async throws -> Void) {
        self.init(name, producer: producer.name, needs: needs, concurrency: concurrency, maxFailedItems: maxFailedItems) { context, item in
            try await body(context, item)
            return NoResult()
        }
    }
}

extension Command {
    /// One task per item of `producer`: the item reaches the command as `{{item}}` / `{{item.field}}`
    /// inside arguments (never through a shell) and as `$SLUICE_ITEM` (JSON).
    public func forEach(_ producer: some StageReference, concurrency: Int? = nil,
                        maxFailedItems: FailureTolerance = .count(0)) -> Command {
        with {
            $0.forEach = producer.name
            $0.concurrency = concurrency
            $0.maxFailedItems = maxFailedItems
        }
    }
}

/// A fan-out stage's results, read from the store a page at a time, in task order (`streamedResults(of:)`).
public struct StageResults<Output: Decodable & Sendable>: AsyncSequence, Sendable {
    public typealias Element = (key: String, value: Output)
    let pages: EncodedResults

    public struct AsyncIterator: AsyncIteratorProtocol {
        var pages: EncodedResults.AsyncIterator
        let decoder = JSONDecoder()

        public mutating func next() async throws -> (key: String, value: Output)? {
            guard let next = try await pages.next() else { return nil }
            if Output.self == Int.self, let number = Items.plainInteger(next.result) { return (next.key, number as! Output) }
            return (next.key, try decoder.decode(Output.self, from: next.result))
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(pages: pages.makeAsyncIterator()) }
}

extension StageContext {
    /// The results of a fan-out stage's successful tasks as an async sequence of `(key, value)`, read a
    /// page at a time: a join over a million items that folds them (a sum, a merge into a file) holds one
    /// page, not all of them.
    ///
    ///     var total = 0
    ///     for try await (_, value) in context.streamedResults(of: double) { total += value }
    public func streamedResults<Item, Output>(of stage: ForEach<Item, Output>) -> StageResults<Output> {
        StageResults(pages: encodedResultPages(of: stage.name))
    }

    /// The results of a fan-out stage's successful tasks, by item key.
    public func results<Item, Output>(of stage: ForEach<Item, Output>) async throws -> [String: Output] {
        var results: [String: Output] = [:]
        for (key, data) in try await encodedResults(of: stage.name) {
            results[key] = try ValueCoding.decode(Output.self, from: data)
        }
        return results
    }
}
