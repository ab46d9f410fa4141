import NIOCore
import NIOHTTP1

/// HTTP/1.1 for the common case, with little per-request work: it parses requests with a
/// `Content-Length` body (or none) straight out of the read buffer, calls the responder,
/// and writes each response as one buffer. It measured about as costly per request as
/// Node's HTTP server with SwiftNIO's general pipeline (decoder, encoder, pipelining
/// handler), which a cluster of hello-world workers pays on every request.
///
/// Anything else (chunked request bodies, `Expect`, upgrades, oversized or malformed
/// heads) hands the connection, with the bytes read so far, to SwiftNIO's full HTTP/1
/// pipeline, which handles it as usual.
///
/// Keep-alive follows the request (`Connection`, HTTP/1.0 or 1.1). Pipelined requests are
/// answered in order, one at a time. On `ChannelShouldQuiesceEvent` a busy connection
/// closes after its response, which says `Connection: close`; an idle one closes after
/// ``idleGrace`` unless a request comes first (answered the same way), so a client that is
/// sending its next request as the drain begins is answered, not reset.
final class LeanHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// A head longer than this goes to the full pipeline (which rejects it as it should).
    static let maximumHeadSize = 16 << 10

    private let responder: HTTPResponder
    private var buffer: ByteBuffer?
    private var busy = false
    private var quiescing = false
    private var handedOver = false

    init(responder: @escaping HTTPResponder) {
        self.responder = responder
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var incoming = unwrapInboundIn(data)
        if buffer == nil {
            buffer = incoming
        } else {
            buffer!.writeBuffer(&incoming)
        }
        if !busy { process(context: context) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        quiescing = true
        guard !busy && (buffer?.readableBytes ?? 0) == 0 else { return }
        // Idle: a client under load is about to send its next request on this connection,
        // and closing now would race it (the request meets a reset). Wait a moment: a
        // request that comes is answered with `Connection: close`; none, and it closes.
        let context = NIOLoopBound(context, eventLoop: context.eventLoop)
        let handler = NIOLoopBound(self, eventLoop: context.value.eventLoop)
        context.value.eventLoop.scheduleTask(in: LeanHTTPHandler.idleGrace) {
            if !handler.value.busy && (handler.value.buffer?.readableBytes ?? 0) == 0 { context.value.close(promise: nil) }
        }
    }

    /// How long an idle keep-alive connection stays open after the worker began to drain.
    static let idleGrace: TimeAmount = .milliseconds(500)

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func process(context: ChannelHandlerContext) {
        guard !busy, !handedOver, var bytes = buffer, bytes.readableBytes > 0 else { return }
        switch LeanHTTPHandler.parse(&bytes) {
        case .incomplete:
            if bytes.readableBytes > LeanHTTPHandler.maximumHeadSize { handOver(context: context) }
        case .unsupported:
            handOver(context: context)
        case .request(let head, let body, let keepAlive):
            buffer = bytes.readableBytes > 0 ? bytes : nil
            busy = true
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            responder(HTTPRequest(head: head, body: body), context.eventLoop).whenComplete { result in
                let (handler, context) = loopBound.value
                handler.respond(HTTPResponse(result), version: head.version, keepAlive: keepAlive, context: context)
            }
        }
    }

    private func respond(_ response: HTTPResponse, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext) {
        busy = false
        guard context.channel.isActive else { return }
        let keepAlive = keepAlive && !quiescing
        var out = context.channel.allocator.buffer(capacity: 96 + response.body.readableBytes)
        out.writeString("HTTP/\(version.major).\(version.minor) \(response.status.code) \(response.status.reasonPhrase)\r\n")
        for (name, value) in response.headers where !LeanHTTPHandler.managed(name) {
            out.writeString(name)
            out.writeStaticString(": ")
            out.writeString(value)
            out.writeStaticString("\r\n")
        }
        out.writeStaticString("Content-Length: ")
        out.writeString(String(response.body.readableBytes))
        out.writeStaticString(keepAlive ? "\r\n\r\n" : "\r\nConnection: close\r\n\r\n")
        var body = response.body
        out.writeBuffer(&body)
        guard keepAlive else {
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(out)).whenComplete { _ in channel.close(promise: nil) }
            return
        }
        context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        process(context: context)
    }

    /// Gives the connection to SwiftNIO's full HTTP/1 pipeline, replaying what was read.
    private func handOver(context: ChannelHandlerContext) {
        handedOver = true
        let pending = buffer
        buffer = nil
        do {
            try context.pipeline.syncOperations.configureHTTPServerPipeline(position: .after(self), withErrorHandling: true)
            try context.pipeline.syncOperations.addHandler(HTTPResponderHandler(responder: responder))
        } catch {
            context.close(promise: nil)
            return
        }
        if let pending { context.fireChannelRead(NIOAny(pending)) }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    private static func managed(_ name: String) -> Bool {
        name.caseInsensitiveCompare("content-length") || name.caseInsensitiveCompare("connection")
    }

    // MARK: Parsing

    enum Parsed {
        case incomplete
        case unsupported
        case request(HTTPRequestHead, body: ByteBuffer, keepAlive: Bool)
    }

    /// Parses one request from the front of `bytes`, consuming it when complete.
    static func parse(_ bytes: inout ByteBuffer) -> Parsed {
        let (parsed, consumed) = bytes.withUnsafeReadableBytes { raw -> (Parsed, Int) in
            guard let headEnd = find(raw, "\r\n\r\n") else { return (.incomplete, 0) }
            var lines = split(raw, upTo: headEnd)
            guard let requestLine = lines.first else { return (.unsupported, 0) }
            lines.removeFirst()
            let parts = requestLine.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
            guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty,
                  let version = version(parts[2]) else { return (.unsupported, 0) }
            var headers = HTTPHeaders()
            var contentLength = 0
            var keepAlive = version.minor >= 1
            for line in lines {
                guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex else { return (.unsupported, 0) }
                let name = String(decoding: line[..<colon], as: UTF8.self)
                let value = String(decoding: trim(line[line.index(after: colon)...]), as: UTF8.self)
                if name.caseInsensitiveCompare("content-length") {
                    guard let length = Int(value), length >= 0 else { return (.unsupported, 0) }
                    contentLength = length
                } else if name.caseInsensitiveCompare("transfer-encoding") || name.caseInsensitiveCompare("expect")
                            || name.caseInsensitiveCompare("upgrade") {
                    return (.unsupported, 0)
                } else if name.caseInsensitiveCompare("connection") {
                    let lowered = value.lowercased()
                    if lowered.contains("close") { keepAlive = false }
                    if lowered.contains("keep-alive") { keepAlive = true }
                    if lowered.contains("upgrade") { return (.unsupported, 0) }
                }
                headers.add(name: name, value: value)
            }
            let bodyStart = headEnd + 4
            guard raw.count - bodyStart >= contentLength else { return (.incomplete, 0) }
            let method = HTTPMethod(rawValue: String(decoding: parts[0], as: UTF8.self))
            let head = HTTPRequestHead(version: version, method: method, uri: String(decoding: parts[1], as: UTF8.self), headers: headers)
            var body = ByteBufferAllocator().buffer(capacity: contentLength)
            if contentLength > 0 { body.writeBytes(UnsafeRawBufferPointer(rebasing: raw[bodyStart..<bodyStart + contentLength])) }
            return (.request(head, body: body, keepAlive: keepAlive), bodyStart + contentLength)
        }
        bytes.moveReaderIndex(forwardBy: consumed)
        return parsed
    }

    private static func find(_ raw: UnsafeRawBufferPointer, _ pattern: StaticString) -> Int? {
        let needle = UnsafeRawBufferPointer(start: pattern.utf8Start, count: pattern.utf8CodeUnitCount)
        guard raw.count >= needle.count else { return nil }
        var index = 0
        while index <= raw.count - needle.count {
            if raw[index] == needle[0] && raw[index + 1] == needle[1] && raw[index + 2] == needle[2] && raw[index + 3] == needle[3] {
                return index
            }
            index += 1
        }
        return nil
    }

    private static func split(_ raw: UnsafeRawBufferPointer, upTo end: Int) -> [Slice<UnsafeRawBufferPointer>] {
        var lines: [Slice<UnsafeRawBufferPointer>] = []
        var start = 0
        var index = 0
        while index < end {
            if raw[index] == UInt8(ascii: "\r") && raw[index + 1] == UInt8(ascii: "\n") {
                lines.append(raw[start..<index])
                start = index + 2
                index += 2
            } else {
                index += 1
            }
        }
        lines.append(raw[start..<end])
        return lines
    }

    private static func version(_ text: Slice<UnsafeRawBufferPointer>) -> HTTPVersion? {
        let bytes = Array(text)
        guard bytes.count == 8, bytes.starts(with: Array("HTTP/1.".utf8)) else { return nil }
        switch bytes[7] {
        case UInt8(ascii: "0"): return .http1_0
        case UInt8(ascii: "1"): return .http1_1
        default: return nil
        }
    }

    private static func trim(_ slice: Slice<UnsafeRawBufferPointer>) -> Slice<UnsafeRawBufferPointer> {
        var slice = slice
        while let first = slice.first, first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") { slice = slice.dropFirst() }
        while let last = slice.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") { slice = slice.dropLast() }
        return slice
    }
}

extension String {
    /// ASCII case-insensitive equality, without allocating.
    fileprivate func caseInsensitiveCompare(_ other: String) -> Bool {
        guard utf8.count == other.utf8.count else { return false }
        return zip(utf8, other.utf8).allSatisfy { a, b in a | 0x20 == b | 0x20 }
    }
}
