import Foundation
import NIOConcurrencyHelpers
import NIOCore

/// One response from an IMAP server: its text (literals shown as `{n}` where they stood) and the
/// literals it carried, in order.
public struct IMAPResponse: Sendable {
    public var text: String
    public var literals: [ByteBuffer]

    /// `*` (untagged), `+` (continuation request) or the tag of the command it ends.
    public var tag: Substring { text.prefix { $0 != " " } }

    /// For a tagged or untagged status response: OK, NO, BAD, BYE or PREAUTH (uppercased).
    public var status: Substring? {
        let words = text.split(separator: " ", maxSplits: 2)
        guard words.count >= 2 else { return nil }
        let word = words[1].uppercased()
        return ["OK", "NO", "BAD", "BYE", "PREAUTH"].contains(word) ? Substring(word) : nil
    }

    /// The human-readable rest after the status (and after a `[CODE]`).
    public var statusText: String {
        let words = text.split(separator: " ", maxSplits: 2)
        guard words.count == 3 else { return "" }
        var rest = words[2]
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") { rest = rest[rest.index(after: close)...] }
        return rest.trimmingCharacters(in: .whitespaces)
    }
}

/// Cuts the server's byte stream into responses: a line ending in CRLF, where a line ending in a
/// literal marker `{n}` (or `{n+}`) is followed by exactly n bytes and goes on after them. Each
/// byte is looked at once, so a 50 MB literal costs what it weighs; a line (not a literal) longer
/// than `maxLine` is an error.
struct IMAPResponseDecoder: ByteToMessageDecoder {
    typealias InboundOut = IMAPResponse

    var maxLine = 1 << 20
    private var text: [UInt8] = []
    private var literals: [ByteBuffer] = []
    private var pendingLiteral: Int?
    private var searched = 0

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if let size = pendingLiteral {
            guard buffer.readableBytes >= size, let literal = buffer.readSlice(length: size) else { return .needMoreData }
            literals.append(literal)
            pendingLiteral = nil
            return .continue
        }
        let view = buffer.readableBytesView
        guard let lf = view[(view.startIndex + searched)...].firstIndex(of: 0x0A) else {
            searched = view.count
            if searched + text.count > maxLine { throw IMAPError(.protocolError, "the server sent a line longer than \(maxLine) bytes") }
            return .needMoreData
        }
        searched = 0
        var line = buffer.readBytes(length: lf - view.startIndex + 1)!
        line.removeLast()
        if line.last == 0x0D { line.removeLast() }
        text += line
        if let size = Self.literalSize(line) {
            guard size <= Int(Int32.max) else { throw IMAPError(.protocolError, "the server announced a literal of \(size) bytes") }
            pendingLiteral = size
            return .continue
        }
        let response = IMAPResponse(text: String(decoding: text, as: UTF8.self), literals: literals)
        text = []
        literals = []
        context.fireChannelRead(wrapInboundOut(response))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }

    /// `{123}` or `{123+}` at the end of a line.
    static func literalSize(_ line: [UInt8]) -> Int? {
        guard line.last == 0x7D, let open = line.lastIndex(of: 0x7B) else { return nil }
        var digits = line[(open + 1)..<(line.count - 1)]
        if digits.last == 0x2B { digits = digits.dropLast() }
        guard !digits.isEmpty, digits.count <= 12, digits.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return Int(String(decoding: digits, as: UTF8.self))
    }
}

/// What the connection hands to the client: responses, a timer that went off, or the end.
enum IMAPEvent: Sendable {
    case response(IMAPResponse)
    case timer(Int)
}

/// Passes each response to the client's stream; the end of the connection ends the stream.
final class IMAPForwarder: ChannelInboundHandler, Sendable {
    typealias InboundIn = IMAPResponse

    let continuation: AsyncThrowingStream<IMAPEvent, any Error>.Continuation
    /// The error that ended the connection (a TLS handshake failure), for a write that failed after it.
    let failure = NIOLockedValueBox<(any Error)?>(nil)

    init(_ continuation: AsyncThrowingStream<IMAPEvent, any Error>.Continuation) { self.continuation = continuation }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        continuation.yield(.response(unwrapInboundIn(data)))
    }

    func channelInactive(context: ChannelHandlerContext) {
        continuation.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failure.withLockedValue { if $0 == nil { $0 = error } }
        continuation.finish(throwing: error)
        context.close(promise: nil)
    }
}
