// Shared by the differential tests and the HTTP fuzz target (Fuzz/ links this folder).
@_spi(Fuzzing) public import ClusterNIO
import NIOCore
public import NIOEmbedded
import NIOHTTP1

/// What a server made of a byte stream: the requests it answered, and whether it then
/// rejected the stream (an error status) rather than waiting for more or closing cleanly.
public struct HTTPVerdict: Equatable, CustomStringConvertible {
    /// Requests answered.
    public var accepted: Int
    /// Whether an error response followed them.
    public var rejected: Bool

    public var description: String { "\(accepted) accepted, " + (rejected ? "then rejected" : "not rejected") }
}

/// The same bytes through the lean path (`serveHTTP`'s handler) and through SwiftNIO's own
/// HTTP/1 server pipeline (llhttp) with the same size limits.
public enum HTTPDifferential {
    /// The lean path's verdict on `chunks` read one after the other, and its channel
    /// (``close(_:)`` it when done).
    public static func lean(_ chunks: [[UInt8]], limits: HTTPServerLimits) -> (HTTPVerdict, EmbeddedChannel) {
        let channel = EmbeddedChannel()
        let counter = Counter()
        try! channel.pipeline.syncOperations.addHandler(HTTPFuzzing.leanHandler(limits: limits) { _, loop in
            counter.count += 1
            return loop.makeSucceededFuture(ClusterHTTPResponse(body: "ok"))
        })
        _ = try? channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        var output: [UInt8] = []
        for chunk in chunks where channel.isActive {
            _ = try? channel.writeInbound(ByteBuffer(bytes: chunk))
            // Pipelined requests past one turn's share are answered on the next turns.
            channel.embeddedEventLoop.run()
            while let buffer = try? channel.readOutbound(as: ByteBuffer.self) { output += buffer.readableBytesView }
        }
        while let buffer = try? channel.readOutbound(as: ByteBuffer.self) { output += buffer.readableBytesView }
        let rejected = rejects(output)
        return (HTTPVerdict(accepted: counter.count, rejected: rejected), channel)
    }

    /// SwiftNIO's verdict: `configureHTTPServerPipeline` with `limits.maxHeaderBytes` as its
    /// header limits, a server that answers every request and applies `limits.maxBodyBytes`.
    public static func reference(_ chunks: [[UInt8]], limits: HTTPServerLimits) -> HTTPVerdict {
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
        let verdict = HTTPVerdict(accepted: server.accepted, rejected: server.rejected)
        // Closed after the verdict: its end of input would be judged too.
        close(channel)
        return verdict
    }

    /// Closes `channel` if a handler has not, and runs what its close left to the event
    /// loop (taking the handlers out of the pipeline, which frees them).
    public static func close(_ channel: EmbeddedChannel) {
        _ = try? channel.finish()
        channel.embeddedEventLoop.run()
    }

    /// Whether `output` has an error response before any answer that closed the
    /// connection as its request asked (`Connection: close`, HTTP/1.0): what the server
    /// writes after that is not an answer to the client, which asked for nothing more.
    private static func rejects(_ output: [UInt8]) -> Bool {
        let marker = Array("HTTP/1.".utf8)
        var starts: [Int] = []
        var index = 0
        while index + marker.count <= output.count {
            if output[index..<index + marker.count].elementsEqual(marker) {
                starts.append(index)
                index += marker.count
            } else {
                index += 1
            }
        }
        for (number, start) in starts.enumerated() {
            let end = number + 1 < starts.count ? starts[number + 1] : output.count
            let response = String(decoding: output[start..<end], as: UTF8.self)
            if let code = Int(response.dropFirst(marker.count + 2).prefix(3)), code >= 400 { return true }
            if response.lowercased().contains("\r\nconnection: close\r\n") { return false }
        }
        return false
    }

    private final class Counter: @unchecked Sendable {
        var count = 0
    }
}

/// Answers every request SwiftNIO's pipeline decodes, counting them; rejects a body over
/// the limit, and counts a parser error as a rejection. Stops at the first close: where
/// llhttp says the connection closes, or RFC 9112 does.
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
            // Not llhttp's verdict alone: it lets an HTTP/1.0 `keep-alive` win over `close`,
            // where RFC 9112 says `close` wins in every version (§9.3) and the server must
            // answer nothing more (§9.6). A server may always close; one that answers more
            // there is wrong, so the reference closes as the RFC asks.
            let close = head.headers[canonicalForm: "connection"].contains { $0.lowercased() == "close" }
            keepAlive = head.isKeepAlive && !close
            bodyBytes = 0
            if let length = head.headers["content-length"].first.map({ Int($0) ?? .max }), length > maxBodyBytes { reject() }
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
