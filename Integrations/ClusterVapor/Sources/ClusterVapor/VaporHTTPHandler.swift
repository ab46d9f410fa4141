import Cluster
import NIOCore
import NIOHTTP1
import Vapor

/// Answers the HTTP/1.1 requests of one connection with a Vapor application's responder:
/// each request's head and body (collected, up to a limit) become a `Request`, the
/// application's responder answers it, and the `Response` goes out with `Date`, `Server`
/// and `Connection` set as Vapor's own server sets them.
///
/// It sits after SwiftNIO's HTTP/1 server pipeline (`configureHTTPServerPipeline`), whose
/// pipelining handler passes on one request at a time, answers a malformed one with 400,
/// and closes the connection once asked to quiesce (a drain): at once when idle, else
/// after the response in flight.
final class VaporHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// What every connection of a server shares.
    struct Settings: Sendable {
        let application: Application
        let worker: ClusterWorker
        /// The `Server` header's value; none when nil.
        let serverName: String?
        /// The largest request body answered; a larger one gets 413 and the connection closes.
        let maxBodySize: Int
        let dates: ResponseDate
    }

    private enum State {
        /// Between requests.
        case idle
        /// The request's head has come, and its body so far.
        case reading(HTTPRequestHead, body: ByteBuffer?)
        /// The responder has the request.
        case responding
        /// Answered 413 before the body ended: what is left is dropped, and the connection closes.
        case refusing
    }

    private let settings: Settings
    /// The client: the one a PROXY header named, else the peer.
    private let client: SocketAddress?
    private var state = State.idle

    init(settings: Settings, client: SocketAddress?) {
        self.settings = settings
        self.client = client
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch (unwrapInboundIn(data), state) {
        case (.head(let head), .idle):
            state = .reading(head, body: nil)
        case (.body(var chunk), .reading(let head, var body)):
            guard (body?.readableBytes ?? 0) + chunk.readableBytes <= settings.maxBodySize else {
                state = .refusing
                write(Response(status: .payloadTooLarge), body: nil, for: head, keepAlive: false, context: context)
                return
            }
            if body == nil { body = chunk } else { body!.writeBuffer(&chunk) }
            state = .reading(head, body: body)
        case (.end, .reading(let head, let body)):
            state = .responding
            respond(to: head, body: body, context: context)
        case (.head, .refusing), (.body, .refusing), (.end, .refusing):
            break
        case (.head, .reading), (.head, .responding), (.body, .idle), (.body, .responding), (.end, .idle), (.end, .responding):
            // SwiftNIO's pipelining handler passes on one request's parts at a time, in order.
            assertionFailure("HTTP part out of order while \(state)")
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A parse error has been answered (400) by SwiftNIO's error handler; any other ends
        // the connection, as Vapor's own server does.
        context.close(promise: nil)
    }

    /// Hands the request to the application's responder and writes its response.
    private func respond(to head: HTTPRequestHead, body: ByteBuffer?, context: ChannelHandlerContext) {
        let application = settings.application
        let request = Request(
            application: application, method: head.method, url: URI(path: head.uri), version: head.version,
            headersNoUpdate: head.headers, collectedBody: body, remoteAddress: client, logger: application.logger,
            byteBufferAllocator: context.channel.allocator, on: context.eventLoop)
        settings.worker.countRequest() // the primary's stats, the autoscaler and recycling by requests
        let loop = context.eventLoop
        // As Vapor's server: no body for HEAD or 204, so a streamed one is not even produced.
        let bodyless = head.method == .HEAD
        let bound = NIOLoopBound((self, context), eventLoop: loop)
        application.responder.current.respond(to: request)
            .flatMap { response in
                guard response.status != .noContent, !bodyless else { return loop.makeSucceededFuture((response, ByteBuffer?.none)) }
                // A streamed body is collected, then written: the public Response API has no other way to read it.
                return response.body.collect(on: loop).map { (response, $0) }
            }
            .hop(to: loop)
            .whenComplete { result in
                let (handler, context) = bound.value
                switch result {
                case .success(let (response, body)):
                    handler.write(response, body: body, for: head, keepAlive: head.isKeepAlive, context: context)
                case .failure(let error):
                    application.logger.report(error: error)
                    context.close(promise: nil)
                }
            }
    }

    /// Writes `response`; closes the connection after it unless it is kept alive, which it
    /// is not once the worker drains.
    private func write(_ response: Response, body: ByteBuffer?, for head: HTTPRequestHead, keepAlive: Bool,
                       context: ChannelHandlerContext) {
        let keepAlive = keepAlive && !settings.worker.isDraining
        var headers = response.headers
        headers.replaceOrAdd(name: .date, value: settings.dates.now)
        if let serverName = settings.serverName { headers.replaceOrAdd(name: .server, value: serverName) }
        headers.replaceOrAdd(name: .connection, value: keepAlive ? "keep-alive" : "close")
        let responseHead = HTTPResponseHead(version: response.version, status: response.status, headers: headers)
        context.write(wrapOutboundOut(.head(responseHead)), promise: nil)
        if let body, body.readableBytes > 0 {
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        // Before the end goes out: the pipelining handler may pass the next request on at once.
        if case .responding = state { state = .idle }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            written.whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
        }
    }
}
