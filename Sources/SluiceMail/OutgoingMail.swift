import Foundation

/// An address that cannot be used as a sender or recipient: what is wrong with it and what to do.
public struct MailAddressError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public var hint: String?

    public init(_ message: String, hint: String? = nil) {
        self.message = message
        self.hint = hint
    }

    public var description: String { hint.map { "\(message)\n    hint: \($0)" } ?? message }
}

/// A mailbox: an optional display name and an address (`local@domain`, ASCII: we send 7-bit only).
/// An address holding a line break, white space, angle brackets or anything else that could end a
/// header field or an SMTP command is refused, so it can go into `MAIL FROM`, `RCPT TO` and headers as is.
public struct MailAddress: Sendable, Hashable, CustomStringConvertible {
    /// How mail readers show it; line breaks and other control characters are replaced by spaces when written.
    public var name: String?
    public let address: String

    public init(_ address: String, name: String? = nil) throws(MailAddressError) {
        self.address = try Self.validated(address)
        let trimmed = name?.trimmingCharacters(in: .whitespaces)
        self.name = trimmed?.isEmpty == false ? trimmed : nil
    }

    /// `Name <a@b>`, `"Last, First" <a@b>`, `<a@b>` or `a@b`. Text with a line break is refused
    /// (an attempt to add header fields), as is anything after the closing `>`.
    public init(parsing text: String) throws(MailAddressError) {
        if text.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" }) {
            throw MailAddressError("the address '\(Self.printable(text))' holds a line break",
                                   hint: "write one address as `Name <address@example.com>` on one line")
        }
        let text = text.trimmingCharacters(in: .whitespaces)
        guard let open = text.lastIndex(of: "<") else {
            try self.init(text)
            return
        }
        guard text.hasSuffix(">"), text[text.index(after: open)...].dropLast().firstIndex(of: ">") == nil else {
            throw MailAddressError("the address '\(text)' has text after its closing '>' or no closing '>'",
                                   hint: "write it as `Name <address@example.com>`")
        }
        let address = String(text[text.index(after: open)...].dropLast())
        var name = text[..<open].trimmingCharacters(in: .whitespaces)
        if name.count >= 2, name.hasPrefix("\""), name.hasSuffix("\"") {
            var unquoted = ""
            var escaped = false
            for c in name.dropFirst().dropLast() {
                if escaped { unquoted.append(c); escaped = false } else if c == "\\" { escaped = true } else { unquoted.append(c) }
            }
            name = unquoted
        }
        try self.init(address, name: name)
    }

    /// `Name <address>` (the name as given, not encoded), or the address.
    public var description: String { name.map { "\($0) <\(address)>" } ?? address }

    static func printable(_ text: String) -> String {
        String(String.UnicodeScalarView(text.unicodeScalars.map { $0.properties.generalCategory == .control ? "?" : $0 }))
    }

    static func validated(_ raw: String) throws(MailAddressError) -> String {
        let address = raw.trimmingCharacters(in: .whitespaces)
        let shown = printable(address)
        guard !address.isEmpty else { throw MailAddressError("an e-mail address is empty") }
        guard address.unicodeScalars.allSatisfy(\.isASCII) else {
            throw MailAddressError("the address '\(shown)' is not ASCII",
                                   hint: "write an international domain in its xn-- form; addresses with non-ASCII local parts (SMTPUTF8) are not supported")
        }
        let forbidden = Set(" \t\r\n<>()[],;:\"\\".unicodeScalars)
        if let bad = address.unicodeScalars.first(where: { $0.value < 0x21 || $0.value == 0x7F || forbidden.contains($0) }) {
            let what = bad.value < 0x21 || bad.value == 0x7F ? String(format: "the control character 0x%02X", bad.value) : "'\(bad)'"
            throw MailAddressError("the address '\(shown)' holds \(what), which an e-mail address cannot hold here",
                                   hint: "write it as local@domain, e.g. reports@example.com")
        }
        let parts = address.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, let local = parts.first, let domain = parts.last, !local.isEmpty, !domain.isEmpty else {
            throw MailAddressError("'\(shown)' is not an e-mail address (local@domain)", hint: "e.g. reports@example.com")
        }
        guard local.utf8.count <= 64, address.utf8.count <= 254 else {
            throw MailAddressError("the address '\(shown)' is too long (at most 64 characters before the @, 254 in all)")
        }
        guard !domain.hasPrefix("."), !domain.hasSuffix("."), !domain.contains(".."), !local.hasPrefix("."), !local.hasSuffix("."), !local.contains("..") else {
            throw MailAddressError("the address '\(shown)' has a misplaced '.'", hint: "e.g. reports@example.com")
        }
        return address
    }
}

/// A file sent with a message.
public struct MailAttachment: Sendable, Hashable {
    /// As the recipient sees it; any characters (non-ASCII names are encoded per RFC 2231 and RFC 2047).
    public var filename: String
    /// `type/subtype`; anything else is sent as `application/octet-stream`.
    public var contentType: String
    public var data: [UInt8]

    public init(filename: String, contentType: String = "application/octet-stream", data: [UInt8]) {
        self.filename = filename
        self.contentType = contentType
        self.data = data
    }
}

/// An extra header field (`X-Sluice-Run: …`). Its name is checked when made; its value has line
/// breaks replaced by spaces when written, so it can never start another field.
public struct MailHeader: Sendable, Hashable {
    public let name: String
    public var value: String

    /// Fields the message writes itself; giving one of them is refused.
    public static let reserved: Set<String> = ["date", "from", "to", "cc", "bcc", "subject", "message-id", "mime-version",
                                                "content-type", "content-transfer-encoding", "content-disposition", "sender", "reply-to-all"]

    public init(_ name: String, _ value: String) throws(MailAddressError) {
        guard !name.isEmpty, name.utf8.count <= 76, name.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F && $0 != ":" }) else {
            throw MailAddressError("'\(MailAddress.printable(name))' is not a header field name",
                                   hint: "use printable ASCII without spaces or ':', e.g. X-Sluice-Run")
        }
        guard !Self.reserved.contains(name.lowercased()) else {
            throw MailAddressError("the header field '\(name)' is written by Sluice itself and cannot be given as an extra header")
        }
        self.name = name
        self.value = value
    }
}

/// A message to send: rendered as RFC 5322 text, 7-bit clean, CRLF line ends, every line within 78
/// characters (except an address longer than that): UTF-8 text as quoted-printable, attachments as
/// base64, non-ASCII header text as RFC 2047 encoded words.
public struct OutgoingMail: Sendable, Hashable {
    public var from: MailAddress
    public var to: [MailAddress]
    public var cc: [MailAddress]
    /// One line: line breaks are replaced by spaces when written.
    public var subject: String
    public var text: String
    /// When given, the message is multipart/alternative: the text, then the HTML.
    public var html: String?
    public var attachments: [MailAttachment]
    public var headers: [MailHeader]

    public init(from: MailAddress, to: [MailAddress], cc: [MailAddress] = [], subject: String, text: String,
                html: String? = nil, attachments: [MailAttachment] = [], headers: [MailHeader] = []) {
        self.from = from
        self.to = to
        self.cc = cc
        self.subject = subject
        self.text = text
        self.html = html
        self.attachments = attachments
        self.headers = headers
    }

    /// Every recipient's address once, To before Cc, in order.
    public var recipients: [String] {
        var seen: Set<String> = []
        return (to + cc).map(\.address).filter { seen.insert($0.lowercased()).inserted }
    }

    /// The message as sent: headers (Date, From, To, Cc, Subject, Message-ID, MIME-Version, the extra
    /// ones), then the body. `messageID` is written in angle brackets (given with or without them).
    /// The same mail, date and id give the same bytes.
    public func rendered(date: Date, messageID: String) -> [UInt8] {
        var out = MessageWriter()
        out.field("Date", [Self.rfc5322Date(date)])
        out.field("From", MessageWriter.addressTokens([from]))
        if !to.isEmpty { out.field("To", MessageWriter.addressTokens(to)) }
        if !cc.isEmpty { out.field("Cc", MessageWriter.addressTokens(cc)) }
        out.unstructured("Subject", subject)
        let id = MessageWriter.singleLine(messageID).filter { $0 != "<" && $0 != ">" && $0 != " " }
        out.field("Message-ID", ["<\(id.isEmpty ? "sluice" : id)>"])
        out.field("MIME-Version", ["1.0"])
        for header in headers { out.unstructured(header.name, header.value) }

        let seed = MessageWriter.fnv1a(id + subject)
        let alternative = "=_sluice_alt_\(seed)"
        let mixed = "=_sluice_mix_\(seed)"
        func writeBodies(_ out: inout MessageWriter) {
            if let html {
                out.field("Content-Type", ["multipart/alternative;", "boundary=\"\(alternative)\""])
                out.blank()
                out.line("--\(alternative)")
                out.textPart(text, subtype: "plain")
                out.line("--\(alternative)")
                out.textPart(html, subtype: "html")
                out.line("--\(alternative)--")
            } else {
                out.textPart(text, subtype: "plain", last: attachments.isEmpty)
            }
        }
        if attachments.isEmpty {
            writeBodies(&out)
        } else {
            out.field("Content-Type", ["multipart/mixed;", "boundary=\"\(mixed)\""])
            out.blank()
            out.line("This is a message in MIME format.")
            out.line("--\(mixed)")
            writeBodies(&out)
            for attachment in attachments {
                out.line("--\(mixed)")
                out.attachment(attachment)
            }
            out.line("--\(mixed)--")
        }
        return out.bytes
    }

    /// `Tue, 03 Mar 2026 08:00:00 +0000`.
    static func rfc5322Date(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC") ?? calendar.timeZone
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        let day = days[((c.weekday ?? 1) - 1) % 7], month = months[((c.month ?? 1) - 1) % 12]
        return String(format: "%@, %02d %@ %04d %02d:%02d:%02d +0000", day, c.day ?? 1, month, c.year ?? 1970,
                      c.hour ?? 0, c.minute ?? 0, c.second ?? 0)
    }
}

/// Writes a message line by line, CRLF, folding header fields at 78 characters.
struct MessageWriter {
    var bytes: [UInt8] = []
    static let maxLine = 78

    mutating func line(_ text: String) {
        bytes += Array(text.utf8)
        bytes += [0x0D, 0x0A]
    }

    mutating func blank() { bytes += [0x0D, 0x0A] }

    /// `Name: token token …`, folded (a line break before the space between two tokens) when a line
    /// would pass 78 characters. Tokens are ASCII without line breaks.
    mutating func field(_ name: String, _ tokens: [String]) {
        var current = name + ":"
        for token in tokens {
            if current.utf8.count + 1 + token.utf8.count > Self.maxLine && current.utf8.count > name.utf8.count + 1 {
                line(current)
                current = " " + token
            } else {
                current += " " + token
            }
        }
        line(current)
    }

    /// An unstructured field (Subject, extra headers): ASCII text folded at spaces, or RFC 2047 encoded
    /// words when it holds non-ASCII characters, `=?`, or a word too long to fold.
    mutating func unstructured(_ name: String, _ value: String) {
        let text = Self.singleLine(value).trimmingCharacters(in: .whitespaces)
        let words = text.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        let plain = text.unicodeScalars.allSatisfy { $0.isASCII } && !text.contains("=?")
            && words.allSatisfy { $0.utf8.count <= Self.maxLine - name.utf8.count - 2 }
        if plain {
            field(name, words)
        } else {
            field(name, MIME.encodedWords(text, firstLineRoom: Self.maxLine - 2 - name.utf8.count - 2))
        }
    }

    /// CR, LF and other control characters become spaces: a value can never end its field.
    static func singleLine(_ text: String) -> String {
        var scalars = String.UnicodeScalarView()
        var lastWasBreak = false
        for s in text.unicodeScalars {
            let isBreak = s == "\r" || s == "\n" || s == "\u{2028}" || s == "\u{2029}" || s == "\u{85}"
            if isBreak {
                if !lastWasBreak { scalars.append(" ") }
            } else if s.properties.generalCategory == .control {
                scalars.append(" ")
            } else {
                scalars.append(s)
            }
            lastWasBreak = isBreak
        }
        return String(scalars)
    }

    /// `Name <a@b>,` tokens for an address list: the display name as atoms, a quoted string or encoded words.
    static func addressTokens(_ addresses: [MailAddress]) -> [String] {
        var tokens: [String] = []
        for (i, address) in addresses.enumerated() {
            let comma = i < addresses.count - 1 ? "," : ""
            if let raw = address.name.map({ singleLine($0).trimmingCharacters(in: .whitespaces) }), !raw.isEmpty {
                tokens += phrase(raw)
                tokens.append("<\(address.address)>" + comma)
            } else {
                tokens.append(address.address + comma)
            }
        }
        return tokens
    }

    /// A display name: atoms when it is plain ASCII words, a quoted string when it has specials, encoded words otherwise.
    static func phrase(_ name: String) -> [String] {
        let atext = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~")
        let scalars = name.unicodeScalars
        if scalars.allSatisfy({ $0.isASCII }) && !name.contains("=?") {
            let words = name.split(separator: " ").map(String.init)
            if words.allSatisfy({ $0.unicodeScalars.allSatisfy { atext.contains($0) } }) { return words }
            let quoted = "\"" + name.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
            if quoted.utf8.count <= 70 { return [quoted] }
        }
        return MIME.encodedWords(name, firstLineRoom: 60)
    }

    /// A text body: UTF-8, quoted-printable. Before a boundary the line break belongs to the boundary;
    /// as the whole message (`last`) it ends with one line break, its own if it has one.
    mutating func textPart(_ text: String, subtype: String, last: Bool = false) {
        line("Content-Type: text/\(subtype); charset=utf-8")
        line("Content-Transfer-Encoding: quoted-printable")
        blank()
        bytes += Self.quotedPrintable(text)
        if !last || bytes.suffix(2) != [0x0D, 0x0A] { blank() }
    }

    mutating func attachment(_ attachment: MailAttachment) {
        let type = Self.mediaType(attachment.contentType)
        var name = Self.singleLine(attachment.filename).trimmingCharacters(in: .whitespaces)
        if name.isEmpty { name = "attachment" }
        if name.unicodeScalars.allSatisfy({ $0.isASCII }) && !name.contains("=?") && name.utf8.count <= 60 {
            let quoted = "\"" + name.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
            field("Content-Type", ["\(type);", "name=\(quoted)"])
            field("Content-Disposition", ["attachment;", "filename=\(quoted)"])
        } else {
            // RFC 2047 words in `name=` for older readers; RFC 2231 (with continuations) in `filename*=`.
            var words = MIME.encodedWords(name, firstLineRoom: 68)
            words[0] = "name=\"" + words[0]
            words[words.count - 1] += "\""
            field("Content-Type", ["\(type);"] + words)
            let sections = Self.rfc2231Sections(name, room: 50)
            if sections.count == 1 {
                field("Content-Disposition", ["attachment;", "filename*=utf-8''\(sections[0])"])
            } else {
                let tokens = sections.enumerated().map { i, s in
                    "filename*\(i)*=\(i == 0 ? "utf-8''" : "")\(s)\(i < sections.count - 1 ? ";" : "")"
                }
                field("Content-Disposition", ["attachment;"] + tokens)
            }
        }
        line("Content-Transfer-Encoding: base64")
        blank()
        let encoded = Array(Data(attachment.data).base64EncodedString().utf8)
        for start in stride(from: 0, to: encoded.count, by: 76) {
            bytes += encoded[start..<min(start + 76, encoded.count)]
            blank()
        }
    }

    /// `type/subtype` when it is one (tokens only), lowercased; `application/octet-stream` otherwise.
    static func mediaType(_ raw: String) -> String {
        let tspecials = Set("()<>@,;:\\\"/[]?= ".unicodeScalars)
        let parts = raw.trimmingCharacters(in: .whitespaces).lowercased().split(separator: "/", omittingEmptySubsequences: false)
        let isToken: (Substring) -> Bool = { part in
            !part.isEmpty && part.utf8.count <= 64 && part.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value < 0x7F && !tspecials.contains($0) }
        }
        guard parts.count == 2, isToken(parts[0]), isToken(parts[1]) else { return "application/octet-stream" }
        return parts.joined(separator: "/")
    }

    /// The percent-encoded UTF-8 of `text` (RFC 2231 attribute-char kept) in sections of at most
    /// `room` characters, each ending on a character boundary.
    static func rfc2231Sections(_ text: String, room: Int) -> [String] {
        let keep = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&+-.^_`|~")
        var sections: [String] = []
        var current = ""
        for character in text {
            var piece = ""
            for scalar in character.unicodeScalars {
                if scalar.isASCII && keep.contains(scalar) {
                    piece.unicodeScalars.append(scalar)
                } else {
                    for byte in String(scalar).utf8 { piece += String(format: "%%%02X", byte) }
                }
            }
            if !current.isEmpty && current.utf8.count + piece.utf8.count > room {
                sections.append(current)
                current = ""
            }
            current += piece
        }
        sections.append(current)
        return sections
    }

    /// Quoted-printable (RFC 2045): lines of at most 76 characters with soft breaks, line ends made
    /// CRLF, white space before a line end and every byte outside printable ASCII encoded, `=` as `=3D`.
    static func quotedPrintable(_ text: String) -> [UInt8] {
        let normalized = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        let lines = normalized.split(separator: "\n", omittingEmptySubsequences: false)
        var out: [UInt8] = []
        out.reserveCapacity(normalized.utf8.count * 11 / 10)
        let hex = Array("0123456789ABCDEF".utf8)
        for (n, line) in lines.enumerated() {
            let bytes = Array(line.utf8)
            var column = 0
            for (i, byte) in bytes.enumerated() {
                let last = i == bytes.count - 1
                let literal = (byte >= 33 && byte <= 126 && byte != 0x3D) || ((byte == 0x20 || byte == 0x09) && !last)
                let piece: [UInt8] = literal ? [byte] : [0x3D, hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
                // Room for a soft break's '=' unless this is the line's last piece.
                if column + piece.count > (last ? 76 : 75) {
                    out += [0x3D, 0x0D, 0x0A]
                    column = 0
                }
                out += piece
                column += piece.count
            }
            if n < lines.count - 1 { out += [0x0D, 0x0A] }
        }
        return out
    }

    /// FNV-1a of the text, as 16 hex digits: boundaries that differ between messages but not between renderings.
    static func fnv1a(_ text: String) -> String {
        var hash: UInt64 = 0xcbf29ce484222325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x100000001b3
        }
        let digits = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}

extension MIME {
    /// RFC 2047 encoded words (`=?UTF-8?Q?…?=`) for `text`, each at most 75 characters (the first at
    /// most `firstLineRoom`, so it fits beside its field name), split only between characters — never
    /// inside a UTF-8 sequence, nor inside a character unless one character alone does not fit a word.
    /// Written with spaces (or folds) between them, readers join them without the spaces. Uses the
    /// characters RFC 2047 allows in a phrase, so the words serve in display names too.
    public static func encodedWords(_ text: String, firstLineRoom: Int = 75) -> [String] {
        let prefix = "=?UTF-8?Q?", suffix = "?="
        let overhead = prefix.utf8.count + suffix.utf8.count
        let safe = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!*+-/")
        func encode(_ scalars: some Sequence<Unicode.Scalar>) -> String {
            var out = ""
            for scalar in scalars {
                if scalar == " " {
                    out += "_"
                } else if scalar.isASCII && safe.contains(scalar) {
                    out.unicodeScalars.append(scalar)
                } else {
                    for byte in String(scalar).utf8 { out += String(format: "=%02X", byte) }
                }
            }
            return out
        }
        var words: [String] = []
        var current = ""
        func room() -> Int { max((words.isEmpty ? min(firstLineRoom, 75) : 75) - overhead, 12) }
        func add(_ piece: String) {
            if !current.isEmpty && current.utf8.count + piece.utf8.count > room() {
                words.append(prefix + current + suffix)
                current = ""
            }
            current += piece
        }
        for character in text {
            let piece = encode(character.unicodeScalars)
            if piece.utf8.count <= 75 - overhead {
                add(piece)
            } else {
                // One character (a long emoji sequence) larger than a word: split between its scalars.
                for scalar in character.unicodeScalars { add(encode(CollectionOfOne(scalar))) }
            }
        }
        if !current.isEmpty || words.isEmpty { words.append(prefix + current + suffix) }
        return words
    }
}
