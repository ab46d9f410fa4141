// Shared by the differential tests and the HTTP fuzz target (Fuzz/ links this file).
@_spi(Fuzzing) import ClusterNIO
import NIOCore
import NIOEmbedded
import NIOHTTP1

/// What a server made of a byte stream: the requests it answered, and whether it then
/// rejected the stream (an error status) rather than waiting for more or closing cleanly.
struct HTTPVerdict: Equatable, CustomStringConvertible {
    var accepted: Int
    var rejected: Bool

    var description: String { "\(accepted) accepted, " + (rejected ? "then rejected" : "not rejected") }
}

/// The same bytes through the lean path (`serveHTTP`'s handler) and through SwiftNIO's own
/// HTTP/1 server pipeline (llhttp) with the same size limits.
enum HTTPDifferential {
    /// The lean path's verdict on `chunks` read one after the other, and its channel.
    static func lean(_ chunks: [[UInt8]], limits: HTTPServerLimits) -> (HTTPVerdict, EmbeddedChannel) {
        let channel = EmbeddedChannel()
        let counter = Counter()
        try! channel.pipeline.syncOperations.addHandler(HTTPFuzzing.leanHandler(limits: limits) { _, loop in
            counter.count += 1
            return loop.makeSucceededFuture(HTTPResponse(body: "ok"))
        })
        _ = try? channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        var output: [UInt8] = []
        for chunk in chunks where channel.isActive {
            _ = try? channel.writeInbound(ByteBuffer(bytes: chunk))
            while let buffer = try? channel.readOutbound(as: ByteBuffer.self) { output += buffer.readableBytesView }
        }
        while let buffer = try? channel.readOutbound(as: ByteBuffer.self) { output += buffer.readableBytesView }
        let rejected = statuses(in: output).contains { $0 >= 400 }
        return (HTTPVerdict(accepted: counter.count, rejected: rejected), channel)
    }

    /// SwiftNIO's verdict: `configureHTTPServerPipeline` with `limits.maxHeaderBytes` as its
    /// header limits, a server that answers every request and applies `limits.maxBodyBytes`.
    static func reference(_ chunks: [[UInt8]], limits: HTTPServerLimits) -> HTTPVerdict {
        let channel = EmbeddedChannel()
        var decoderLimits = NIOHTTPDecoderLimitConfiguration()
        decoderLimits.maxHeaderListSize = limits.maxHeaderBytes
        decoderLimits.maxHeaderFieldSize = limits.maxHeaderBytes
        let server = ReferenceServer(maxBodyBytes: limits.maxBodyBytes)
        try! channel.pipeline.syncOperations.configureHTTPServerPipeline(
            withErrorHandling: true, withEncoderConfiguration: .init(), withDecoderLimitConfiguration: decoderLimits)
        try! channel.pipeline.syncOperations.addHandler(server)
        _ = try? channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        for chunk in chunks where !server.closed {
            _ = try? channel.writeInbound(ByteBuffer(bytes: chunk))
        }
        return HTTPVerdict(accepted: server.accepted, rejected: server.rejected)
    }

    /// The status codes of the responses in `output`.
    private static func statuses(in output: [UInt8]) -> [Int] {
        let marker = Array("HTTP/1.".utf8)
        var codes: [Int] = []
        var index = 0
        while index + marker.count + 5 <= output.count {
            if output[index..<index + marker.count].elementsEqual(marker) {
                let digits = output[index + marker.count + 2..<index + marker.count + 5]
                if let code = Int(String(decoding: digits, as: UTF8.self)) { codes.append(code) }
                index += marker.count
            } else {
                index += 1
            }
        }
        return codes
    }

    private final class Counter: @unchecked Sendable {
        var count = 0
    }
}

/// Answers every request SwiftNIO's pipeline decodes, counting them; rejects a body over
/// the limit, and counts a parser error as a rejection. Stops at the first close.
private final class ReferenceServer: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let maxBodyBytes: Int
    var accepted = 0
    var rejected = false
    var closed = false
    private var bodyBytes = 0
    private var keepAlive = true

    init(maxBodyBytes: Int) { self.maxBodyBytes = maxBodyBytes }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !closed else { return }
        switch unwrapInboundIn(data) {
        case .head(let head):
            keepAlive = head.isKeepAlive
            bodyBytes = 0
            if let length = head.headers["content-length"].first.flatMap({ Int($0) }), length > maxBodyBytes { reject() }
        case .body(let chunk):
            bodyBytes += chunk.readableBytes
            if bodyBytes > maxBodyBytes { reject() }
        case .end:
            accepted += 1
            let head = HTTPResponseHead(version: .http1_1, status: .ok, headers: ["Content-Length": "0"])
            context.write(wrapOutboundOut(.head(head)), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
            if !keepAlive { closed = true }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        reject()
    }

    private func reject() {
        guard !closed else { return }
        rejected = true
        closed = true
    }
}
