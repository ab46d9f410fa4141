import NIOCore
import NIOHTTP1

/// HTTP/1.1 for the common case, with little per-request work: it parses requests with a
/// `Content-Length` body (or none) straight out of the read buffer, calls the responder,
/// and writes each response as one buffer. It measured about as costly per request as
/// Node's HTTP server with SwiftNIO's general pipeline (decoder, encoder, pipelining
/// handler), which a cluster of hello-world workers pays on every request.
///
/// Requests are parsed as RFC 9112 says (``LeanHTTPParser``): what it says to reject is
/// answered `400` (`431`, `413` for the size limits) and the connection closed at once.
/// Valid requests this handler does not parse itself (chunked bodies, `Expect`, upgrades,
/// unusual methods or targets) hand the connection, with the bytes read so far, to
/// SwiftNIO's full HTTP/1 pipeline; this handler stays in front of it to keep the timeouts.
///
/// ``HTTPServerLimits`` bounds every connection: the time to send a head, a whole request,
/// the time idle between requests, and the sizes of a head and a body.
///
/// Keep-alive follows the request (`Connection`, HTTP/1.0 or 1.1). Pipelined requests are
/// answered in order, in a loop (never by recursion), at most
/// ``maximumPipelinedPerTurn`` per turn of the event loop; the rest wait for the next
/// turn, and the handler reads no more from the socket while requests are waiting, a
/// response is pending or the socket is not writable, so neither the input nor the output
/// buffer grows without bound. On `ChannelShouldQuiesceEvent` a busy connection closes
/// after its response, which says `Connection: close`; an idle one closes after
/// ``idleGrace`` unless a request comes first (answered the same way), so a client that is
/// sending its next request as the drain begins is answered, not reset.
final class LeanHTTPHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Pipelined requests answered in one turn of the event loop before the others wait.
    static let maximumPipelinedPerTurn = 64

    /// Where the connection is; each phase with a deadline carries the time it began.
    private enum Phase {
        /// No request in progress.
        case idle(since: NIODeadline)
        /// Reading a request's head, since its first byte.
        case head(since: NIODeadline)
        /// Reading a request's body (head nil when the full pipeline holds it).
        case body(since: NIODeadline, LeanHTTPParser.Head?)
        /// The responder has the request.
        case responding
        /// Rejected or timed out: closing, input ignored.
        case closed
    }

    private let responder: ClusterHTTPResponder
    private let limits: HTTPServerLimits
    /// Given to each request as ``ClusterHTTPRequest/clientAddress``.
    private let client: SocketAddress?
    private var buffer: ByteBuffer?
    private var phase: Phase = .idle(since: .now())
    private var quiescing = false
    private var handedOver = false
    /// Inside ``process(context:)``: a response written now does not start another loop.
    private var processing = false
    private var continuationScheduled = false
    private var needsFlush = false
    private var readHeld = false
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    /// The last keep-alive response's buffer, written again for the next: once the socket
    /// has taken it, SwiftNIO no longer holds it, and clearing it allocates nothing.
    private var output: ByteBuffer?

    /// The largest response buffer kept for the next response: an idle connection holds it.
    static let maximumKeptOutput = 4096

    init(limits: HTTPServerLimits = .default, client: SocketAddress? = nil, responder: @escaping ClusterHTTPResponder) {
        self.limits = limits
        self.client = client
        self.responder = responder
    }

    func handlerAdded(context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        phase = .idle(since: context.eventLoop.now)
        armTimer(context: context)
    }

    func channelActive(context: ChannelHandlerContext) {
        phase = .idle(since: context.eventLoop.now)
        armTimer(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .closed = phase { return }
        if handedOver {
            if case .idle = phase {
                phase = .head(since: context.eventLoop.now)
                armTimer(context: context)
            }
            context.fireChannelRead(data)
            return
        }
        var incoming = unwrapInboundIn(data)
        if buffer == nil {
            buffer = incoming
        } else {
            buffer!.writeBuffer(&incoming)
        }
        process(context: context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable && !handedOver { process(context: context) }
        context.fireChannelWritabilityChanged()
    }

    /// Holds the socket's reads while requests wait (a pending response, the next turn, a
    /// full output buffer): a client pipelining faster than it reads fills its own buffers.
    func read(context: ChannelHandlerContext) {
        if !handedOver && holdsReads(context: context) {
            readHeld = true
        } else {
            context.read()
        }
    }

    private func holdsReads(context: ChannelHandlerContext) -> Bool {
        if case .responding = phase { return true }
        return continuationScheduled || !context.channel.isWritable
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is ChannelShouldQuiesceEvent, !handedOver else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        quiescing = true
        guard isIdle else { return }
        // Idle: a client under load is about to send its next request on this connection,
        // and closing now would race it (the request meets a reset). Wait a moment: a
        // request that comes is answered with `Connection: close`; none, and it closes.
        let context = NIOLoopBound(context, eventLoop: context.eventLoop)
        let handler = NIOLoopBound(self, eventLoop: context.value.eventLoop)
        context.value.eventLoop.scheduleTask(in: LeanHTTPHandler.idleGrace) {
            if handler.value.isIdle { context.value.close(promise: nil) }
        }
    }

    private var isIdle: Bool {
        guard case .idle = phase else { return false }
        return (buffer?.readableBytes ?? 0) == 0
    }

    /// How long an idle keep-alive connection stays open after the worker began to drain.
    static let idleGrace: TimeAmount = .milliseconds(500)

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// Answers the complete requests in the buffer, in order, in one loop.
    private func process(context: ChannelHandlerContext) {
        guard !processing else { return }
        processing = true
        defer { processing = false }
        var answered = 0
        loop: while !handedOver, context.channel.isWritable {
            let buffered = buffer?.readableBytes ?? 0
            switch phase {
            case .responding, .closed:
                break loop
            case .idle:
                guard buffered > 0 else { break loop }
                phase = .head(since: context.eventLoop.now)
            case .head(let since):
                guard buffered > 0 else { break loop }
                guard answered < LeanHTTPHandler.maximumPipelinedPerTurn else {
                    scheduleContinuation(context: context)
                    break loop
                }
                let outcome = buffer!.withUnsafeReadableBytes { LeanHTTPParser.parse($0, limits: limits) }
                switch outcome {
                case .incomplete:
                    break loop
                case .handOver:
                    handOver(context: context)
                    return
                case .reject(let status, let reason):
                    reject(status, reason: reason, context: context)
                    return
                case .head(let head):
                    buffer!.moveReaderIndex(forwardBy: head.length)
                    phase = .body(since: since, head)
                }
            case .body(_, let head):
                guard let head, buffered >= head.contentLength else { break loop }
                let body = head.contentLength > 0 ? buffer!.readSlice(length: head.contentLength)! : ByteBuffer()
                phase = .responding
                answered += 1
                let request = ClusterHTTPRequest(head: head.head, body: body, clientAddress: client)
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                responder(request, context.eventLoop).whenComplete { result in
                    let (handler, context) = loopBound.value
                    handler.respond(ClusterHTTPResponse(result), version: head.head.version, keepAlive: head.keepAlive, context: context)
                }
            }
        }
        if buffer?.readableBytes == 0 { buffer = nil }
        if needsFlush {
            needsFlush = false
            context.flush()
        }
        armTimer(context: context)
        if readHeld && !holdsReads(context: context) {
            readHeld = false
            context.read()
        }
    }

    private func scheduleContinuation(context: ChannelHandlerContext) {
        guard !continuationScheduled else { return }
        continuationScheduled = true
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = loopBound.value
            handler.continuationScheduled = false
            handler.process(context: context)
        }
    }

    private func respond(_ response: ClusterHTTPResponse, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext) {
        guard case .responding = phase, context.channel.isActive else { return }
        let keepAlive = keepAlive && !quiescing
        let capacity = 96 + response.body.readableBytes
        var out = output ?? context.channel.allocator.buffer(capacity: capacity)
        output = nil
        out.clear(minimumCapacity: capacity)  // copies only if SwiftNIO still holds it
        // Piece by piece: the line as one interpolated String would be a heap allocation.
        out.writeStaticString("HTTP/")
        out.writeString(String(version.major))
        out.writeStaticString(".")
        out.writeString(String(version.minor))
        out.writeStaticString(" ")
        out.writeString(String(response.status.code))
        out.writeStaticString(" ")
        out.writeString(response.status.reasonPhrase)
        out.writeStaticString("\r\n")
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
            closeAfter(out, context: context)
            return
        }
        phase = .idle(since: context.eventLoop.now)
        if out.capacity <= LeanHTTPHandler.maximumKeptOutput { output = out }
        context.write(wrapOutboundOut(out), promise: nil)
        needsFlush = true
        // Answered later than the loop that asked: a new loop (from the future's callback,
        // not from the loop) answers what waited and flushes.
        process(context: context)
    }

    /// Answers `status` with `reason` as the body and closes at once.
    private func reject(_ status: HTTPResponseStatus, reason: String, context: ChannelHandlerContext) {
        var out = context.channel.allocator.buffer(capacity: 128 + reason.utf8.count)
        let body = "\(status.code) \(status.reasonPhrase): \(reason)\n"
        out.writeString("HTTP/1.1 \(status.code) \(status.reasonPhrase)\r\nContent-Type: text/plain; charset=utf-8\r\n")
        out.writeString("Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
        closeAfter(out, context: context)
    }

    private func closeAfter(_ out: ByteBuffer, context: ChannelHandlerContext) {
        phase = .closed
        buffer = nil
        timer?.cancel()
        timer = nil
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(out)).whenComplete { _ in channel.close(promise: nil) }
    }

    // MARK: Timeouts

    /// When the current phase runs out of time, if it can.
    private var deadline: NIODeadline? {
        switch phase {
        case .idle(let since): since + TimeAmount(limits.idleTimeout)
        case .head(let since): since + TimeAmount(min(limits.headerTimeout, limits.requestTimeout))
        case .body(let since, _): since + TimeAmount(limits.requestTimeout)
        case .responding, .closed: nil
        }
    }

    /// One timer per connection, moved only when a deadline comes earlier than it: on a
    /// busy keep-alive connection each request costs no timer at all.
    private func armTimer(context: ChannelHandlerContext) {
        guard let deadline else { return }
        if let timerDeadline, timerDeadline <= deadline { return }
        timer?.cancel()
        timerDeadline = deadline
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = loopBound.value
            handler.timerFired(context: context)
        }
    }

    private func timerFired(context: ChannelHandlerContext) {
        timer = nil
        timerDeadline = nil
        guard let deadline else { return }
        guard deadline <= context.eventLoop.now else {
            armTimer(context: context)
            return
        }
        switch phase {
        case .idle, .responding, .closed:
            phase = .closed
            context.close(promise: nil)
        case .head:
            reject(.requestTimeout, reason: "the request head took longer than \(limits.headerTimeout) to arrive", context: context)
        case .body:
            reject(.requestTimeout, reason: "the request took longer than \(limits.requestTimeout) to arrive", context: context)
        }
    }

    // MARK: The full pipeline

    /// Gives the connection to SwiftNIO's full HTTP/1 pipeline, replaying what was read;
    /// this handler stays in front of it, passing bytes through and keeping the deadlines.
    private func handOver(context: ChannelHandlerContext) {
        handedOver = true
        let pending = buffer
        buffer = nil
        var decoderLimits = NIOHTTPDecoderLimitConfiguration()
        decoderLimits.maxHeaderListSize = limits.maxHeaderBytes
        decoderLimits.maxHeaderFieldSize = limits.maxHeaderBytes
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let fallback = HTTPResponderHandler(responder: responder, limits: limits) { event in
            let (handler, context) = loopBound.value
            handler.fallbackEvent(event, context: context)
        }
        do {
            try context.pipeline.syncOperations.configureHTTPServerPipeline(
                position: .after(self), withErrorHandling: true, withEncoderConfiguration: .init(),
                withDecoderLimitConfiguration: decoderLimits)
            try context.pipeline.syncOperations.addHandler(fallback)
        } catch {
            context.close(promise: nil)
            return
        }
        if let pending { context.fireChannelRead(NIOAny(pending)) }
        // After the request it has begun: the pipeline then answers it, with `close`.
        if quiescing { context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        if readHeld {
            readHeld = false
            context.read()
        }
    }

    /// The full pipeline's progress through a request, for the deadlines.
    private func fallbackEvent(_ event: HTTPResponderHandler.Event, context: ChannelHandlerContext) {
        switch (event, phase) {
        case (_, .closed):
            return
        case (.head, .head(let since)):
            phase = .body(since: since, nil)
        case (.head, _):
            phase = .body(since: context.eventLoop.now, nil)
        case (.end, _):
            phase = .responding
        case (.responded, _):
            phase = .idle(since: context.eventLoop.now)
        }
        armTimer(context: context)
    }

    private static func managed(_ name: String) -> Bool {
        name.caseInsensitiveCompare("content-length") || name.caseInsensitiveCompare("connection")
    }
}

extension String {
    /// ASCII case-insensitive equality, without allocating.
    fileprivate func caseInsensitiveCompare(_ other: String) -> Bool {
        guard utf8.count == other.utf8.count else { return false }
        return zip(utf8, other.utf8).allSatisfy { a, b in a | 0x20 == b | 0x20 }
    }
}
