public import NIOCore
public import NIOHTTP1

/// A request as a responder sees it: the head and the whole body.
public struct HTTPRequest: Sendable {
    /// Method, URI, version and headers.
    public var head: HTTPRequestHead
    /// The body, possibly empty.
    public var body: ByteBuffer
}

/// A response: status, headers, and a body sent with `Content-Length`.
public struct HTTPResponse: Sendable {
    /// The status.
    public var status: HTTPResponseStatus
    /// Headers; `Content-Length` and `Connection` are set for you.
    public var headers: HTTPHeaders
    /// The body.
    public var body: ByteBuffer

    /// A response with `body` as UTF-8 text.
    public init(status: HTTPResponseStatus = .ok, headers: HTTPHeaders = ["Content-Type": "text/plain; charset=utf-8"], body: String) {
        self.status = status
        self.headers = headers
        self.body = ByteBuffer(string: body)
    }

    /// A response with raw bytes.
    public init(status: HTTPResponseStatus = .ok, headers: HTTPHeaders = [:], body: ByteBuffer) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

extension HTTPResponse {
    /// The responder's answer, or a bare 500 when it failed (its error is not the client's business).
    init(_ result: Result<HTTPResponse, any Error>) {
        switch result {
        case .success(let response): self = response
        case .failure: self = HTTPResponse(status: .internalServerError, body: "internal error\n")
        }
    }
}

/// Answers one request on the connection's event loop; may complete later (a slow route).
public typealias HTTPResponder = @Sendable (HTTPRequest, any EventLoop) -> EventLoopFuture<HTTPResponse>

/// Collects a request, asks the responder, writes the answer; keep-alive as the client asks.
final class HTTPResponderHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let responder: HTTPResponder
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()

    init(responder: @escaping HTTPResponder) {
        self.responder = responder
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
            body.clear()
        case .body(var chunk):
            body.writeBuffer(&chunk)
        case .end:
            guard let head else { return }
            self.head = nil
            let keepAlive = head.isKeepAlive
            let channel = context.channel
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            responder(HTTPRequest(head: head, body: body), context.eventLoop).whenComplete { result in
                let (handler, context) = loopBound.value
                let response = HTTPResponse(result)
                guard channel.isActive else { return }
                handler.write(response, version: head.version, keepAlive: keepAlive, context: context)
            }
        }
    }

    private func write(_ response: HTTPResponse, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext) {
        var headers = response.headers
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body.readableBytes))
        if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: response.status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
        guard !keepAlive else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            return
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
