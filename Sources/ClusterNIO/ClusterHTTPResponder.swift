public import NIOCore
public import NIOHTTP1

/// A request as a ``ClusterHTTPResponder`` sees it: the head and the whole body.
///
/// The `Cluster` prefix keeps the name apart from swift-http-types' `HTTPRequest`, which
/// Hummingbird and Vapor users import beside this module.
public struct ClusterHTTPRequest: Sendable {
    /// Method, URI, version and headers.
    public var head: HTTPRequestHead
    /// The body, possibly empty.
    public var body: ByteBuffer
    /// The client: the one a PROXY protocol header named on a listener with a
    /// `Cluster.ListenAddress.proxyProtocol`, else the connection's peer.
    public var clientAddress: SocketAddress? = nil
}

/// A response from a ``ClusterHTTPResponder``: status, headers, and a body sent with
/// `Content-Length`.
public struct ClusterHTTPResponse: Sendable {
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

extension ClusterHTTPResponse {
    /// The responder's answer, or a bare 500 when it failed (its error is not the client's business).
    init(_ result: Result<ClusterHTTPResponse, any Error>) {
        switch result {
        case .success(let response): self = response
        case .failure: self = ClusterHTTPResponse(status: .internalServerError, body: "internal error\n")
        }
    }
}

extension HTTPRequestHead {
    /// Whether the connection stays open after the response: as llhttp decided, except that
    /// `close` in `Connection` wins in every version, as RFC 9112 §9.3 says (llhttp lets an
    /// HTTP/1.0 `keep-alive` win over it, and §9.6 forbids answering another request). The
    /// lean parser decides the same from the bytes.
    var staysOpen: Bool {
        isKeepAlive && !headers[canonicalForm: "connection"].contains { $0.lowercased() == "close" }
    }
}

/// Answers one request on the connection's event loop; may complete later (a slow route).
public typealias ClusterHTTPResponder = @Sendable (ClusterHTTPRequest, any EventLoop) -> EventLoopFuture<ClusterHTTPResponse>

/// Collects a request from SwiftNIO's HTTP/1 pipeline, asks the responder, writes the
/// answer; keep-alive as the client asks. A body over the limit is answered `413` and the
/// connection closed; a parser error (answered `400` by the pipeline's error handler) closes
/// the connection at once.
final class HTTPResponderHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Progress through a request, for the deadlines kept in front of the pipeline.
    enum Event {
        /// A head arrived; its body follows.
        case head
        /// The request is complete; the responder has it.
        case end
        /// The response is written and the connection stays open.
        case responded
    }

    private let responder: ClusterHTTPResponder
    private let limits: HTTPServerLimits
    private let observe: (Event) -> Void
    private var head: HTTPRequestHead?
    private var body = ByteBuffer()
    /// No more requests on this connection: one was rejected, or answered as the last.
    /// (SwiftNIO's pipeline may hand on one it decoded before the close.)
    private var finished = false

    init(responder: @escaping ClusterHTTPResponder, limits: HTTPServerLimits = .default, observe: @escaping (Event) -> Void = { _ in }) {
        self.responder = responder
        self.limits = limits
        self.observe = observe
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !finished else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            observe(.head)
            // llhttp checked the digits; one it read but Int cannot hold is over any limit.
            let announced = head.headers["content-length"].first.map { Int($0) ?? .max } ?? 0
            guard announced <= limits.maxBodyBytes else {
                reject(version: head.version, context: context)
                return
            }
            self.head = head
            body.clear()
        case .body(var chunk):
            guard body.readableBytes + chunk.readableBytes <= limits.maxBodyBytes else {
                reject(version: head?.version ?? .http1_1, context: context)
                return
            }
            body.writeBuffer(&chunk)
        case .end:
            guard let head else { return }
            self.head = nil
            observe(.end)
            let keepAlive = head.staysOpen
            finished = !keepAlive
            let channel = context.channel
            let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            let request = ClusterHTTPRequest(head: head, body: body)
            body = ByteBuffer()
            responder(request, context.eventLoop).whenComplete { result in
                let (handler, context) = loopBound.value
                let response = ClusterHTTPResponse(result)
                guard channel.isActive else { return }
                handler.write(response, version: head.version, keepAlive: keepAlive, context: context)
            }
        }
    }

    /// A parser error: the error handler before this one has answered `400`; close now
    /// rather than wait for the client.
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finished = true
        context.close(promise: nil)
    }

    private func reject(version: HTTPVersion, context: ChannelHandlerContext) {
        finished = true
        head = nil
        body = ByteBuffer()
        let text = "413 Content Too Large: the body is over \(limits.maxBodyBytes) bytes\n"
        let response = ClusterHTTPResponse(status: .payloadTooLarge, body: text)
        write(response, version: version, keepAlive: false, context: context)
    }

    private func write(_ response: ClusterHTTPResponse, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext) {
        var headers = response.headers
        headers.replaceOrAdd(name: "Content-Length", value: String(response.body.readableBytes))
        if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: version, status: response.status, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
        guard !keepAlive else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            observe(.responded)
            return
        }
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}
