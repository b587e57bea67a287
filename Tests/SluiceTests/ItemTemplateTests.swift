import Foundation
import Testing
import SluiceCore
import SluiceStore
@testable import SluiceEngine

/// `{{item}}` and `{{item.field}}` in a fan-out command, worked out per name.
@Suite("Item placeholders")
struct ItemTemplateTests {
    let json = Data(#"{"key": "k1", "n": 7, "ok": true, "none": null, "nested": {"a": {"b": "deep"}, "list": [1, 2]}, "dotted.name": "d"}"#.utf8)

    @Test func eachNameHasItsValueTextAsIsOthersAsJSON() {
        let lazy = Items.ItemValues(json)
        #expect(lazy["item"] == #"{"dotted.name":"d","key":"k1","n":7,"nested":{"a":{"b":"deep"},"list":[1,2]},"none":null,"ok":true}"#)
        #expect(lazy["item.nested"] == #"{"a":{"b":"deep"},"list":[1,2]}"#)
        #expect(lazy["item.nested.a"] == #"{"b":"deep"}"#)
        #expect(lazy["item.key"] == "k1")
        #expect(lazy["item.n"] == "7")
        #expect(lazy["item.ok"] == "true")
        #expect(lazy["item.none"] == "")
        #expect(lazy["item.nested.a.b"] == "deep")
        #expect(lazy["item.nested.list"] == "[1,2]")
        #expect(lazy["item.dotted.name"] == "d", "a field name may hold dots")
        #expect(lazy["item.missing"] == nil)
        #expect(lazy["params.x"] == nil)
        #expect(Items.ItemValues(Data("\"plain text\"".utf8))["item"] == "plain text")
        #expect(Items.ItemValues(nil)["item"] == nil)
    }

    @Test func renderingLooksNamesUpAndLeavesTheRestAsWritten() {
        let item = Items.ItemValues(json)
        let values = ["run.id": "r1"]
        func render(_ text: String) -> String {
            Template.render(text) { name in (Template.isItemName(name) ? item[name] : nil) ?? values[name] }
        }
        #expect(render("{{ item.key }}-{{run.id}}") == "k1-r1")
        #expect(render("--x={{item.nested.a.b}}") == "--x=deep")
        #expect(render("{{unknown}}|{{item.missing}}") == "|")
        #expect(render("no placeholders") == "no placeholders")
        #expect(render("open {{ without close") == "open {{ without close")
        #expect(render("{{{run.id}}}") == "}", "the name is '{run.id', unknown")
    }
}

/// Items keyed by content: plain integers skip the JSON round trip (same bytes) and are their own key.
@Suite("Item records")
struct ItemRecordTests {
    @Test func plainIntegersAreRecordedAsTheFullPathRecordsThem() throws {
        for text in ["0", "7", "-12", "123456789012345678", "4096"] {
            let data = Data(text.utf8)
            #expect(Items.isPlainInteger(data), "\(text)")
            let value = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
            let canonical = try JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .fragmentsAllowed, .withoutEscapingSlashes])
            let record = try Items.record(json: data)
            #expect(record.value == canonical, "\(text) is its own canonical JSON")
            #expect(record.key == text, "a plain integer is its own key")
            #expect(Items.plainInteger(data) == Int(text), "\(text) reads back as the number it is")
        }
        #expect(Items.plainInteger(Data("-999999999999999999".utf8)) == nil, "19 bytes: not read by hand")
        for text in ["-0", "007", "1.5", "1e3", "12345678901234567890", "\"7\"", "-", "", " 7", "7 ", "1/", "9:"] {
            #expect(!Items.isPlainInteger(Data(text.utf8)), "\(text)")
            #expect(Items.plainInteger(Data(text.utf8)) == nil, "\(text)")
        }
        // A slice of a larger buffer (its indices do not start at 0) reads the same.
        let slice = Data("[4096]".utf8).dropFirst().dropLast()
        #expect(Items.plainInteger(slice) == 4096)
        #expect(try Items.record(json: Data("1.50".utf8)).value == Data("1.5".utf8), "other numbers take the full path")
        // `::item:: 42` hands over " 42": the same item, the same key, as `42` in $SLUICE_ITEMS.
        for text in [" 42", "42 ", "\t42\n"] {
            let record = try Items.record(json: Data(text.utf8))
            #expect(record.key == "42" && record.value == Data("42".utf8), "\(text.debugDescription) is keyed as 42: \(record.key)")
        }
    }
}
