import Crypto
import Foundation
import SluiceCore
import SluiceStore

/// Items as stages emit them and fan-out tasks receive them.
public enum Items {
    /// An item from its JSON text: its key is the item's `"key"` (or `"id"`) field when it has one, the
    /// number itself for a plain integer, else a hash of its canonical JSON, so the same item always gets
    /// the same key.
    public static func record(json data: Data) throws -> ItemRecord {
        // A plain integer is its own canonical JSON (JSONSerialization writes it back unchanged) and its
        // own key, as an object's "id" would be: readable, and consecutive numbers are recorded side by
        // side in the store's key index (hashes land anywhere: a million items read back the index's
        // pages from the file again and again).
        if isPlainInteger(data) { return ItemRecord(key: String(decoding: data, as: UTF8.self), value: data) }
        let value = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        let canonical = try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes])
        // An integer written with spaces around it (`::item:: 42`) is keyed as the plain one is.
        if isPlainInteger(canonical) { return ItemRecord(key: String(decoding: canonical, as: UTF8.self), value: canonical) }
        if let object = value as? [String: Any] {
            for field in ["key", "id"] {
                if let s = object[field] as? String, !s.isEmpty { return ItemRecord(key: s, value: canonical) }
                if let n = object[field] as? NSNumber, !isBoolean(n) {
                    return ItemRecord(key: n.stringValue, value: canonical)
                }
            }
        }
        return ItemRecord(key: contentKey(canonical), value: canonical)
    }

    /// `-?[1-9][0-9]*` or `0`, short enough to be an Int64 for certain.
    public static func isPlainInteger(_ data: Data) -> Bool { plainInteger(data) != nil }

    /// `data` as an Int when it is a JSON integer written plainly: `-?[1-9][0-9]*` or `0`, at most 18
    /// bytes (so it fits an Int64 for certain). One pass over the bytes: fan-out results and items are
    /// mostly such numbers, read by the hundred thousand.
    public static func plainInteger(_ data: Data) -> Int? {
        guard data.count <= 18 else { return nil }
        return data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) -> Int? in
            guard let first = bytes.first else { return nil }
            let negative = first == UInt8(ascii: "-")
            let start = negative ? 1 : 0
            guard start < bytes.count else { return nil }
            let lead = bytes[start]
            if lead == UInt8(ascii: "0") { return !negative && bytes.count == 1 ? 0 : nil }
            var value = 0
            for index in start..<bytes.count {
                let digit = bytes[index] &- UInt8(ascii: "0")
                guard digit <= 9 else { return nil }
                value = value &* 10 &+ Int(digit)
            }
            return negative ? -value : value
        }
    }

    /// JSON booleans come back as NSNumber; their Objective-C type is `c`.
    static func isBoolean(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }

    /// A key derived from content: the first 16 bytes of its SHA-256, in hex.
    public static func contentKey(_ data: Data) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var hex = [UInt8]()
        hex.reserveCapacity(32)
        for byte in SHA256.hash(data: data).prefix(16) {
            hex.append(digits[Int(byte >> 4)])
            hex.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: hex, as: UTF8.self)
    }

    /// The values of `{{item}}` and `{{item.field}}` (nested fields as `item.a.b`) for an item's JSON,
    /// each worked out when a template asks for it (a command usually names one or two fields; rendering
    /// them all was most of preparing a fan-out command): text as is, other values as JSON.
    public struct ItemValues {
        let root: Any?

        public init(_ data: Data?) {
            root = data.flatMap { try? JSONSerialization.jsonObject(with: $0, options: [.fragmentsAllowed]) }
        }

        /// The value of `item` or `item.a.b` (a field name may itself hold dots), or nil.
        public subscript(name: String) -> String? {
            guard let root else { return nil }
            if name == "item" { return Self.text(root) }
            guard name.hasPrefix("item.") else { return nil }
            return Self.find(name.dropFirst(5), in: root, depth: 1)
        }

        private static func find(_ path: Substring, in value: Any, depth: Int) -> String? {
            guard depth <= 8, let object = value as? [String: Any] else { return nil }
            if let child = object[String(path)] { return text(child) }
            for (key, child) in object where path.hasPrefix(key + ".") {
                if let found = find(path.dropFirst(key.count + 1), in: child, depth: depth + 1) { return found }
            }
            return nil
        }

        static func text(_ v: Any) -> String {
            if let s = v as? String { return s }
            if let n = v as? NSNumber { return isBoolean(n) ? (n.boolValue ? "true" : "false") : n.stringValue }
            if v is NSNull { return "" }
            return (try? JSONSerialization.data(withJSONObject: v, options: [.sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes]))
                .map { String(decoding: $0, as: UTF8.self) } ?? ""
        }
    }

    /// A file name for a task key: the key itself when it is safe, else a cleaned form with the task id.
    public static func fileName(key: String, taskID: TaskID) -> String {
        // On every task's path: bytes, not Characters.
        func allowed(_ b: UInt8) -> Bool {
            (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || (b >= 0x30 && b <= 0x39) || b == 0x2E || b == 0x5F || b == 0x2D
        }
        let utf8 = key.utf8
        if utf8.count <= 80, utf8.first != 0x2E, utf8.allSatisfy(allowed) { return key }
        return String(key.map { $0.isASCII && allowed($0.asciiValue!) ? $0 : "_" }.prefix(60)) + "-\(taskID)"
    }
}

/// The line protocol any command stage may print on stdout (the lines stay in its log too):
///
///     ::item:: {"symbol": "AAPL"}        an item (a producer's plain JSON lines are items too)
///     ::count:: rows 120                  add 120 to the counter "rows"
///     ::reject:: {"record": "row 7", "reason": "negative amount"}
enum OutputProtocol {
    enum Line {
        case item(Data)
        case count(String, Int)
        case reject(String, String)
        case other
    }

    static func parse(_ line: String, producer: Bool) -> Line {
        if line.hasPrefix("::") {
            if line.hasPrefix("::item::") { return .item(Data(line.dropFirst(8).utf8)) }
            if line.hasPrefix("::count::") {
                let parts = line.dropFirst(9).split(separator: " ", omittingEmptySubsequences: true)
                if parts.count == 2, let n = Int(parts[1]) { return .count(String(parts[0]), n) }
                if parts.count == 1 { return .count(String(parts[0]), 1) }
                return .other
            }
            if line.hasPrefix("::reject::") {
                let rest = line.dropFirst(10).trimmingCharacters(in: .whitespaces)
                if let object = try? JSONSerialization.jsonObject(with: Data(rest.utf8)) as? [String: Any] {
                    // A record that is not a string (a row as an object) is kept as its JSON.
                    return .reject(object["record"].map(Items.ItemValues.text) ?? "", object["reason"].map(Items.ItemValues.text) ?? "")
                }
                return .reject(rest, "")
            }
        }
        if producer, let first = line.first, first == "{" || first == "[" || first == "\"" {
            return .item(Data(line.utf8))
        }
        return .other
    }
}
