import Foundation
import SluiceMail
import Testing

/// The MIME reader on messages written out by hand, good and broken.
@Suite("MIME")
struct MIMETests {
    static func bytes(_ text: String) -> [UInt8] { Array(text.replacingOccurrences(of: "\n", with: "\r\n").utf8) }

    struct Words: CustomTestStringConvertible, Sendable {
        var raw: String, decoded: String
        var testDescription: String { raw }
    }

    static let encodedWords: [Words] = [
        Words(raw: "plain subject", decoded: "plain subject"),
        Words(raw: "=?UTF-8?B?QXNlZ3VyYWRvcyBTYWx1ZCBJbnRlcm5hY2lvbmFs?=", decoded: "Asegurados Salud Internacional"),
        Words(raw: "=?utf-8?Q?Asegurados_Viajeros_=E2=80=93_ma=C3=B1ana?=", decoded: "Asegurados Viajeros – mañana"),
        Words(raw: "=?ISO-8859-1?Q?Informe_de_p=F3lizas?=", decoded: "Informe de pólizas"),
        Words(raw: "=?iso-8859-1?B?SW5mb3JtZSBkZSBw82xpemFz?=", decoded: "Informe de pólizas"),
        // adjacent encoded words: the white space between them goes; around plain text it stays
        Words(raw: "=?UTF-8?Q?a?= =?UTF-8?Q?b?=", decoded: "ab"),
        Words(raw: "SI: =?UTF-8?Q?p=C3=B3lizas?= de hoy", decoded: "SI: pólizas de hoy"),
        Words(raw: "=?utf-8*es?Q?d=C3=ADa?=", decoded: "día"),
        // unknown charset or bad encoding: left as written
        Words(raw: "=?x-unknown?Q?abc?=", decoded: "=?x-unknown?Q?abc?="),
        Words(raw: "=?utf-8?B?###?=", decoded: "=?utf-8?B?###?="),
        Words(raw: "half =?utf-8?Q?open", decoded: "half =?utf-8?Q?open"),
        Words(raw: "Ana =?UTF-8?Q?Mu=C3=B1oz?= <ana@example.com>", decoded: "Ana Muñoz <ana@example.com>"),
    ]

    @Test(arguments: encodedWords)
    func encodedWordsDecode(_ c: Words) {
        #expect(MIME.decodeEncodedWords(c.raw) == c.decoded)
    }

    struct Param: CustomTestStringConvertible, Sendable {
        var header: String, value: String, name: String, expected: String?
        var testDescription: String { header }
    }

    static let parameters: [Param] = [
        Param(header: "multipart/mixed; boundary=\"b 1\"", value: "multipart/mixed", name: "boundary", expected: "b 1"),
        Param(header: "attachment; filename=report.csv", value: "attachment", name: "filename", expected: "report.csv"),
        Param(header: "attachment; filename=\"a \\\"q\\\"; b.csv\"", value: "attachment", name: "filename", expected: "a \"q\"; b.csv"),
        Param(header: "attachment; filename*=UTF-8''p%C3%B3lizas%20SI.xlsx", value: "attachment", name: "filename", expected: "pólizas SI.xlsx"),
        Param(header: "attachment; filename*=iso-8859-1'es'p%F3lizas.csv", value: "attachment", name: "filename", expected: "pólizas.csv"),
        Param(header: "attachment; filename*0*=UTF-8''p%C3%B3; filename*1=lizas.csv", value: "attachment", name: "filename", expected: "pólizas.csv"),
        Param(header: "text/plain; charset=utf-8", value: "text/plain", name: "name", expected: nil),
    ]

    @Test(arguments: parameters)
    func headerParameters(_ c: Param) {
        let (value, params) = MIME.parameters(c.header)
        #expect(value == c.value)
        #expect(params[c.name] == c.expected)
    }

    struct Encoded: CustomTestStringConvertible, Sendable {
        var input: String, output: String
        var testDescription: String { input.debugDescription }
    }

    static let quotedPrintable: [Encoded] = [
        Encoded(input: "caf=C3=A9", output: "café"),
        Encoded(input: "long line=\r\ncontinued", output: "long linecontinued"),
        Encoded(input: "soft=  \nbreak", output: "softbreak"),
        Encoded(input: "a=3Db", output: "a=b"),
        Encoded(input: "kept =ZZ as written", output: "kept =ZZ as written"),
        Encoded(input: "ends with =", output: "ends with "),
    ]

    @Test(arguments: quotedPrintable)
    func quotedPrintableDecodes(_ c: Encoded) {
        #expect(String(decoding: MIME.quotedPrintable(Array(c.input.utf8)[...]), as: UTF8.self) == c.output)
    }

    static let base64: [Encoded] = [
        Encoded(input: "aGVsbG8=", output: "hello"),
        Encoded(input: "aGVs\r\nbG8gd29y\r\nbGQ=", output: "hello world"),
        Encoded(input: "YQ==", output: "a"),
        Encoded(input: "YWI=", output: "ab"),
        Encoded(input: "", output: ""),
    ]

    @Test(arguments: base64)
    func base64Decodes(_ c: Encoded) throws {
        #expect(String(decoding: try MIME.base64(Array(c.input.utf8)[...]), as: UTF8.self) == c.output)
    }

    @Test(arguments: ["aGVsbG8*", "aGVsbG8=aGVs", "aGVsb"])
    func badBase64IsAnError(_ input: String) {
        #expect(throws: MIMEError.self) { try MIME.base64(Array(input.utf8)[...]) }
    }

    @Test func headersUnfoldAndDecode() throws {
        let message = try MIME.parse(Self.bytes("""
            From: =?UTF-8?Q?Jos=C3=A9?= <jose@example.com>
            Subject: =?UTF-8?B?QXNlZ3VyYWRvcyBTYWx1ZA==?=
             =?UTF-8?B?IEludGVybmFjaW9uYWw=?=
            Date: Mon, 2 Mar 2026 08:00:00 +0100
            Message-ID: <abc.123@example.com>

            Hello.
            """))
        #expect(message.headers.subject == "Asegurados Salud Internacional")
        #expect(message.headers.from == "José <jose@example.com>")
        #expect(message.headers.date == "Mon, 2 Mar 2026 08:00:00 +0100")
        #expect(message.headers.messageID == "<abc.123@example.com>")
        #expect(message.text == "Hello.")
        #expect(message.attachments.isEmpty)
    }

    @Test func nestedMultipartWithAttachments() throws {
        let message = try MIME.parse(Self.bytes("""
            Subject: SI
            Content-Type: multipart/mixed; boundary="outer"

            preamble, ignored
            --outer
            Content-Type: multipart/alternative; boundary=inner

            --inner
            Content-Type: text/plain; charset=iso-8859-1
            Content-Transfer-Encoding: quoted-printable

            p=F3lizas adjuntas
            --inner
            Content-Type: text/html

            <p>pólizas</p>
            --inner--
            --outer
            Content-Type: text/csv; name="ignored.csv"
            Content-Disposition: attachment; filename*=UTF-8''p%C3%B3lizas.csv
            Content-Transfer-Encoding: base64

            aWQsbmFtZQoxLEFuYQo=
            --outer
            Content-Type: application/octet-stream
            Content-Disposition: attachment; filename="=?UTF-8?Q?r=C3=A9sum=C3=A9.bin?="

            raw bytes
            --outer
            Content-Type: application/pdf
            Content-Disposition: attachment

            %PDF
            --outer--
            epilogue, ignored
            """))
        #expect(message.text == "pólizas adjuntas")
        #expect(message.attachments.map(\.filename) == ["pólizas.csv", "résumé.bin", ""])
        #expect(message.attachments.map { String(decoding: $0.data, as: UTF8.self) } == ["id,name\n1,Ana\n", "raw bytes", "%PDF"])
        #expect(message.attachments.map(\.contentType) == ["text/csv", "application/octet-stream", "application/pdf"])
    }

    struct Broken: CustomTestStringConvertible, Sendable {
        var name: String, message: String, error: String
        var testDescription: String { name }
    }

    static let broken: [Broken] = [
        Broken(name: "multipart without a boundary", message: "Content-Type: multipart/mixed\n\nbody\n", error: "no boundary parameter"),
        Broken(name: "boundary never occurs", message: "Content-Type: multipart/mixed; boundary=zz\n\n--other\n\nx\n--other--\n", error: "never occurs"),
        Broken(name: "truncated: no closing boundary", message: "Content-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Type: text/plain\n\nhalf a mess", error: "without its closing boundary"),
        Broken(name: "bad base64 in an attachment",
               message: "Content-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Disposition: attachment; filename=a\nContent-Transfer-Encoding: base64\n\n!!!!\n--zz--\n",
               error: "base64 does not use"),
        Broken(name: "unknown transfer encoding", message: "Content-Transfer-Encoding: x-rot13\n\nuryyb\n", error: "unknown Content-Transfer-Encoding"),
        Broken(name: "nesting too deep",
               message: nested(30),
               error: "nest deeper"),
    ]

    /// Multiparts nested `depth` deep, each well formed.
    static func nested(_ depth: Int) -> String {
        (0..<depth).reversed().reduce("Content-Type: text/plain\n\ninnermost") { inner, level in
            "Content-Type: multipart/mixed; boundary=b\(level)\n\n--b\(level)\n\(inner)\n--b\(level)--\n"
        }
    }

    @Test func nestingWithinTheLimitParses() throws {
        #expect(try MIME.parse(Self.bytes(Self.nested(10))).text == "innermost")
    }

    @Test(arguments: broken)
    func brokenStructureIsAnErrorNotACrash(_ c: Broken) {
        do {
            _ = try MIME.parse(Self.bytes(c.message))
            Issue.record("\(c.name): parsed without an error")
        } catch {
            #expect(error.description.contains(c.error), "\(error.description)")
        }
    }

    @Test func garbageNeverCrashes() {
        // Random bytes and every prefix of a real message: each parses or is a MIMEError.
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let bytes = (0..<Int.random(in: 0..<400, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            _ = try? MIME.parse(bytes)
        }
        let real = Self.bytes("Content-Type: multipart/mixed; boundary=q\n\n--q\nContent-Transfer-Encoding: base64\nContent-Disposition: attachment; filename*0*=utf-8''%C3\n\naGk=\n--q--\n")
        for n in 0...real.count { _ = try? MIME.parse(Array(real[..<n])) }
        #expect(throws: MIMEError.self) { try MIME.parse(Array(real[..<(real.count - 8)])) }
    }

    @Test func aLargeAttachmentParsesInLinearTime() throws {
        // 11 MB of base64 (8 MB decoded): a quadratic parser would not finish.
        let payload = [UInt8](repeating: 0x41, count: 8 << 20)
        let encoded = Data(payload).base64EncodedString(options: [.lineLength76Characters, .endLineWithCarriageReturn, .endLineWithLineFeed])
        var message = Self.bytes("Subject: big\nContent-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=big.bin\nContent-Transfer-Encoding: base64\n\n")
        message += Array(encoded.utf8)
        message += Self.bytes("\n--zz--\n")
        let parsed = try MIME.parse(message)
        #expect(parsed.attachments.count == 1)
        #expect(parsed.attachments.first?.data.count == payload.count)
    }
}
