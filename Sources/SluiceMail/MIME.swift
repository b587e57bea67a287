import Foundation

/// A message whose structure could not be read: what is wrong and where in the message.
public struct MIMEError: Error, Sendable, CustomStringConvertible, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { "broken MIME message: \(message)" }
}

/// The header fields of a message or of one of its parts, unfolded, in order.
public struct MIMEHeaders: Sendable, Equatable {
    public var fields: [(name: String, value: String)]

    public init(fields: [(name: String, value: String)] = []) { self.fields = fields }

    /// The first field with this name (case-insensitive), unfolded but not decoded.
    public subscript(_ name: String) -> String? {
        fields.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.fields.count == b.fields.count && zip(a.fields, b.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }

    /// `Subject`, with RFC 2047 encoded words decoded.
    public var subject: String { self["Subject"].map(MIME.decodeEncodedWords) ?? "" }
    /// `From`, with RFC 2047 encoded words decoded.
    public var from: String { self["From"].map(MIME.decodeEncodedWords) ?? "" }
    public var date: String { self["Date"]?.trimmingCharacters(in: .whitespaces) ?? "" }
    /// `Message-ID` as written, angle brackets included (nil when the message has none).
    public var messageID: String? {
        guard let id = self["Message-ID"]?.trimmingCharacters(in: .whitespaces), !id.isEmpty else { return nil }
        return id
    }
}

/// A file carried by a message.
public struct MIMEAttachment: Sendable, Equatable {
    /// As the sender named it (decoded), not yet made safe for a file system.
    public var filename: String
    public var contentType: String
    public var data: [UInt8]
}

/// A parsed message: its headers, its first plain-text body and its attachments.
public struct MIMEMessage: Sendable {
    public var headers: MIMEHeaders
    public var text: String?
    public var attachments: [MIMEAttachment]
}

/// A reader for Internet messages (RFC 5322 with MIME, RFC 2045–2047 and RFC 2231). Linear in the
/// message's size; a message whose structure cannot be read is a `MIMEError`, never a crash.
public enum MIME {
    /// How deep multiparts may nest.
    public static let maxDepth = 20

    // MARK: - messages

    public static func parse(_ bytes: [UInt8]) throws(MIMEError) -> MIMEMessage {
        var message = MIMEMessage(headers: MIMEHeaders(), text: nil, attachments: [])
        let (headers, bodyStart) = splitHeaders(bytes[...])
        message.headers = headers
        try walk(headers: headers, body: bytes[bodyStart...], depth: 0, into: &message)
        return message
    }

    /// Headers of a message (or part) and where its body starts. A part without a blank line has only headers.
    public static func splitHeaders(_ bytes: ArraySlice<UInt8>) -> (MIMEHeaders, Int) {
        var i = bytes.startIndex
        var lines: [String] = []
        var bodyStart = bytes.endIndex
        while i < bytes.endIndex {
            var end = i
            while end < bytes.endIndex && bytes[end] != 0x0A { end += 1 }
            var lineEnd = end
            if lineEnd > i && bytes[lineEnd - 1] == 0x0D { lineEnd -= 1 }
            let next = end < bytes.endIndex ? end + 1 : end
            if lineEnd == i { bodyStart = next; break }
            let line = text(bytes[i..<lineEnd])
            if let first = line.unicodeScalars.first, first == " " || first == "\t", !lines.isEmpty {
                lines[lines.count - 1] += line   // folding: the line break goes, the white space stays
            } else {
                lines.append(line)
            }
            i = next
            bodyStart = next
        }
        var fields: [(name: String, value: String)] = []
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }   // not a field: ignored, as mail readers do
            let name = line[..<colon].trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty, !name.contains(" ") else { continue }
            fields.append((name, line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
        }
        return (MIMEHeaders(fields: fields), bodyStart)
    }

    static func text(_ bytes: ArraySlice<UInt8>) -> String {
        String(validating: bytes, as: UTF8.self) ?? String(bytes.map { Character(Unicode.Scalar($0)) })
    }

    static func walk(headers: MIMEHeaders, body: ArraySlice<UInt8>, depth: Int, into message: inout MIMEMessage) throws(MIMEError) {
        guard depth <= maxDepth else { throw MIMEError("multiparts nest deeper than \(maxDepth) levels") }
        let (type, typeParams) = parameters(headers["Content-Type"] ?? "text/plain")
        let mediaType = type.lowercased()
        if mediaType.hasPrefix("multipart/") {
            guard let boundary = typeParams["boundary"], !boundary.isEmpty else {
                throw MIMEError("\(mediaType) part has no boundary parameter in its Content-Type")
            }
            guard boundary.utf8.count <= 200 else { throw MIMEError("\(mediaType) boundary is longer than 200 characters") }
            for part in try split(body, boundary: boundary, mediaType: mediaType) {
                let (partHeaders, start) = splitHeaders(part)
                try walk(headers: partHeaders, body: part[start...], depth: depth + 1, into: &message)
            }
            return
        }
        let encoding = (headers["Content-Transfer-Encoding"] ?? "7bit").trimmingCharacters(in: .whitespaces).lowercased()
        let data: [UInt8]
        switch encoding {
        case "base64": data = try base64(body)
        case "quoted-printable": data = quotedPrintable(body)
        case "7bit", "8bit", "binary", "": data = Array(body)
        default: throw MIMEError("unknown Content-Transfer-Encoding '\(encoding)' in a \(mediaType) part")
        }
        let (disposition, dispositionParams) = parameters(headers["Content-Disposition"] ?? "")
        let filename = dispositionParams["filename"] ?? typeParams["name"]
        if let filename, !filename.isEmpty {
            message.attachments.append(MIMEAttachment(filename: decodeEncodedWords(filename), contentType: mediaType, data: data))
        } else if disposition.lowercased() == "attachment" {
            message.attachments.append(MIMEAttachment(filename: "", contentType: mediaType, data: data))
        } else if mediaType == "text/plain" && message.text == nil {
            message.text = decodeText(data[...], charset: typeParams["charset"] ?? "us-ascii") ?? text(data[...])
        }
    }

    /// The parts of a multipart body between `--boundary` lines, up to `--boundary--`.
    static func split(_ body: ArraySlice<UInt8>, boundary: String, mediaType: String) throws(MIMEError) -> [ArraySlice<UInt8>] {
        let delimiter = Array(("--" + boundary).utf8)
        var parts: [ArraySlice<UInt8>] = []
        var partStart: Int?     // where the current part's content starts
        var closed = false
        var lineStart = body.startIndex
        while lineStart < body.endIndex {
            var end = lineStart
            while end < body.endIndex && body[end] != 0x0A { end += 1 }
            let next = end < body.endIndex ? end + 1 : end
            if body[lineStart] == 0x2D, end - lineStart >= delimiter.count,
               body[lineStart..<(lineStart + delimiter.count)].elementsEqual(delimiter) {
                var rest = lineStart + delimiter.count
                let isClose = rest + 1 < end && body[rest] == 0x2D && body[rest + 1] == 0x2D
                if isClose { rest += 2 }
                // Only white space may follow a delimiter on its line.
                if body[rest..<end].allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) {
                    if let start = partStart {
                        // The line break before a delimiter belongs to the delimiter.
                        var contentEnd = lineStart
                        if contentEnd > start && body[contentEnd - 1] == 0x0A { contentEnd -= 1 }
                        if contentEnd > start && body[contentEnd - 1] == 0x0D { contentEnd -= 1 }
                        parts.append(body[start..<max(start, contentEnd)])
                    }
                    if isClose { closed = true; break }
                    partStart = next
                }
            }
            lineStart = next
        }
        if partStart == nil {
            throw MIMEError("\(mediaType) body has no part: the boundary '\(boundary)' named in its Content-Type never occurs")
        }
        if !closed {
            throw MIMEError("\(mediaType) body ends without its closing boundary '--\(boundary)--' (a truncated message?)")
        }
        return parts
    }

    // MARK: - header parameters (RFC 2045, RFC 2231)

    /// `type/subtype; name=value; name*=utf-8''%E2%82%AC` → the value before the first `;` and the
    /// parameters by lowercased name, RFC 2231 continuations and charsets decoded.
    public static func parameters(_ header: String) -> (String, [String: String]) {
        var pieces: [String] = []
        var current = ""
        var quoted = false, escaped = false
        for c in header {
            if escaped { current.append(c); escaped = false; continue }
            if quoted && c == "\\" { escaped = true; continue }
            if c == "\"" { quoted.toggle(); continue }
            if c == ";" && !quoted { pieces.append(current); current = ""; continue }
            current.append(c)
        }
        pieces.append(current)
        let value = pieces.removeFirst().trimmingCharacters(in: .whitespaces)
        var plain: [String: String] = [:]
        var extended: [String: [Int: (String, Bool)]] = [:]   // name → section → (text, percent-encoded)
        for piece in pieces {
            guard let eq = piece.firstIndex(of: "=") else { continue }
            var name = piece[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            let text = piece[piece.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty else { continue }
            var encoded = false
            if name.hasSuffix("*") { encoded = true; name.removeLast() }
            if let star = name.firstIndex(of: "*"), let section = Int(name[name.index(after: star)...]) {
                extended[String(name[..<star]), default: [:]][section] = (text, encoded)
            } else if encoded {
                extended[name, default: [:]][0] = (text, true)
            } else {
                plain[name] = text
            }
        }
        var result = plain
        for (name, sections) in extended {
            var charset = "us-ascii"
            var bytes: [UInt8] = []
            for section in sections.keys.sorted() {
                guard let (text, encoded) = sections[section] else { continue }
                var body = Substring(text)
                if encoded && section == sections.keys.min() {
                    // charset'language'value
                    let parts = text.split(separator: "'", maxSplits: 2, omittingEmptySubsequences: false)
                    if parts.count == 3 { charset = String(parts[0]); body = parts[2] }
                }
                bytes += encoded ? percentDecode(body) : Array(body.utf8)
            }
            if let decoded = decodeText(bytes[...], charset: charset) { result[name] = decoded }
        }
        return (value, result)
    }

    static func percentDecode(_ text: Substring) -> [UInt8] {
        var out: [UInt8] = []
        let utf8 = Array(text.utf8)
        var i = 0
        while i < utf8.count {
            if utf8[i] == 0x25, i + 2 < utf8.count, let h = hex(utf8[i + 1]), let l = hex(utf8[i + 2]) {
                out.append(h << 4 | l); i += 3
            } else {
                out.append(utf8[i]); i += 1
            }
        }
        return out
    }

    // MARK: - RFC 2047 encoded words

    /// Decodes `=?charset?B?...?=` and `=?charset?Q?...?=` words (white space between two adjacent
    /// encoded words is dropped); a word in an unknown charset or badly encoded stays as written.
    public static func decodeEncodedWords(_ text: String) -> String {
        guard text.contains("=?") else { return text }
        var out = ""
        var rest = Substring(text)
        var pendingSpace = ""          // white space after an encoded word, dropped if another follows
        var lastWasEncoded = false
        while let start = rest.range(of: "=?") {
            let before = rest[..<start.lowerBound]
            if let (decoded, after) = encodedWord(rest[start.lowerBound...]) {
                if lastWasEncoded && before.allSatisfy(\.isWhitespace) {
                    // adjacent encoded words: the white space between them goes
                } else {
                    out += pendingSpace + before
                }
                out += decoded
                pendingSpace = ""
                lastWasEncoded = true
                rest = after
                let spaces = rest.prefix { $0 == " " || $0 == "\t" }
                pendingSpace = String(spaces)
                rest = rest.dropFirst(spaces.count)
            } else {
                out += pendingSpace + before + "=?"
                pendingSpace = ""
                lastWasEncoded = false
                rest = rest[start.upperBound...]
            }
        }
        return out + pendingSpace + rest
    }

    static func encodedWord(_ text: Substring) -> (String, Substring)? {
        // =?charset?X?payload?=
        let body = text.dropFirst(2)
        guard let q1 = body.firstIndex(of: "?") else { return nil }
        let charset = body[..<q1]
        let afterCharset = body[body.index(after: q1)...]
        guard afterCharset.count >= 2, let mode = afterCharset.first, afterCharset.dropFirst().first == "?" else { return nil }
        let payloadStart = afterCharset.dropFirst(2)
        guard let end = payloadStart.range(of: "?=") else { return nil }
        let payload = payloadStart[..<end.lowerBound]
        guard !payload.contains(" ") else { return nil }
        let bytes: [UInt8]
        switch mode {
        case "B", "b":
            guard let b = try? base64(Array(payload.utf8)[...]) else { return nil }
            bytes = b
        case "Q", "q":
            bytes = quotedPrintable(Array(payload.utf8)[...], underscoreIsSpace: true)
        default:
            return nil
        }
        // RFC 2231 allows a language after the charset: utf-8*en
        let name = charset.split(separator: "*").first.map(String.init) ?? ""
        guard let decoded = decodeText(bytes[...], charset: name) else { return nil }
        return (decoded, payloadStart[end.upperBound...])
    }

    /// Text in a named charset; nil for a charset we do not know or bytes that are not in it.
    public static func decodeText(_ bytes: ArraySlice<UInt8>, charset: String) -> String? {
        switch charset.lowercased().trimmingCharacters(in: .whitespaces) {
        case "utf-8", "utf8":
            return String(validating: bytes, as: UTF8.self)
        case "us-ascii", "ascii", "":
            return bytes.allSatisfy { $0 < 0x80 } ? String(decoding: bytes, as: UTF8.self) : text(bytes)
        case "iso-8859-1", "latin1", "latin-1", "iso8859-1", "l1":
            return String(bytes.map { Character(Unicode.Scalar($0)) })
        case "iso-8859-15", "latin9":
            return String(bytes.map { Character(Unicode.Scalar(latin9($0)) ?? Unicode.Scalar($0)) })
        case "windows-1252", "cp1252":
            return String(data: Data(bytes), encoding: .windowsCP1252)
        default:
            return nil
        }
    }

    static func latin9(_ b: UInt8) -> UInt32 {
        switch b {
        case 0xA4: 0x20AC
        case 0xA6: 0x160
        case 0xA8: 0x161
        case 0xB4: 0x17D
        case 0xB8: 0x17E
        case 0xBC: 0x152
        case 0xBD: 0x153
        case 0xBE: 0x178
        default: UInt32(b)
        }
    }

    // MARK: - transfer encodings

    static func hex(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: c - 0x30
        case 0x41...0x46: c - 0x41 + 10
        case 0x61...0x66: c - 0x61 + 10
        default: nil
        }
    }

    /// Base64 with line breaks and white space ignored; any other character outside the alphabet is an error.
    public static func base64(_ input: ArraySlice<UInt8>) throws(MIMEError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(input.count / 4 * 3)
        var quad: UInt32 = 0
        var count = 0
        var padding = 0
        for c in input {
            let v: UInt32
            switch c {
            case 0x41...0x5A: v = UInt32(c - 0x41)
            case 0x61...0x7A: v = UInt32(c - 0x61 + 26)
            case 0x30...0x39: v = UInt32(c - 0x30 + 52)
            case 0x2B, 0x2D: v = 62
            case 0x2F, 0x5F: v = 63
            case 0x3D: padding += 1; continue
            case 0x20, 0x09, 0x0D, 0x0A: continue
            default:
                throw MIMEError("base64 content holds the character \(c < 0x20 || c >= 0x7F ? String(format: "0x%02X", c) : "'\(Character(Unicode.Scalar(c)))'"), which base64 does not use")
            }
            if padding > 0 { throw MIMEError("base64 content goes on after its '=' padding") }
            quad = quad << 6 | v
            count += 1
            if count == 4 {
                out.append(UInt8(quad >> 16 & 0xFF)); out.append(UInt8(quad >> 8 & 0xFF)); out.append(UInt8(quad & 0xFF))
                quad = 0; count = 0
            }
        }
        switch count {
        case 0: break
        case 2: out.append(UInt8(quad >> 4 & 0xFF))
        case 3: out.append(UInt8(quad >> 10 & 0xFF)); out.append(UInt8(quad >> 2 & 0xFF))
        default: throw MIMEError("base64 content is cut off (its length is not a multiple of 4 characters)")
        }
        return out
    }

    /// Quoted-printable: `=XX` bytes, `=` at a line end joins lines; an `=` not followed by two hex
    /// digits is kept as written (as mail readers do).
    public static func quotedPrintable(_ input: ArraySlice<UInt8>, underscoreIsSpace: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(input.count)
        var i = input.startIndex
        while i < input.endIndex {
            let c = input[i]
            if c == 0x3D {
                // soft line break: "=\r\n" or "=\n" (white space before the break allowed), or "=" at the very end
                var j = i + 1
                while j < input.endIndex && (input[j] == 0x20 || input[j] == 0x09) { j += 1 }
                if j == input.endIndex { i = j; continue }
                if input[j] == 0x0A { i = j + 1; continue }
                if input[j] == 0x0D && j + 1 < input.endIndex && input[j + 1] == 0x0A { i = j + 2; continue }
                if i + 2 < input.endIndex, let h = hex(input[i + 1]), let l = hex(input[i + 2]) {
                    out.append(h << 4 | l)
                    i += 3
                    continue
                }
                out.append(c)
                i += 1
            } else if c == 0x5F && underscoreIsSpace {
                out.append(0x20)
                i += 1
            } else {
                out.append(c)
                i += 1
            }
        }
        return out
    }
}
