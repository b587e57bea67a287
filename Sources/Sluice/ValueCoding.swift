import Foundation
import SluiceEngine

/// How stage results and items are written and read: JSON, with plain integers (counts, ids) written
/// and read directly — the same text JSONEncoder writes, without an encoder per value. Fan-out tasks
/// that take microseconds spent more in making coders than in their work.
enum ValueCoding {
    static func encode<Value: Encodable>(_ value: Value, sortedKeys: Bool = false) throws -> Data {
        if let number = value as? Int { return Data(String(number).utf8) }
        let encoder = JSONEncoder()
        if sortedKeys { encoder.outputFormatting = [.sortedKeys] }
        return try encoder.encode(value)
    }

    static func decode<Value: Decodable>(_ type: Value.Type, from data: Data) throws -> Value {
        if Value.self == Int.self, let number = Items.plainInteger(data) { return number as! Value }
        return try JSONDecoder().decode(type, from: data)
    }
}
