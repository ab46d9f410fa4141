@testable import ClusterNIO
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@Suite struct LeanHTTPHandlerTests {
    /// A channel serving `path method body` back, through the lean handler.
    private func channel(limits: HTTPServerLimits = .default) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(LeanHTTPHandler(limits: limits) { request, loop in
            var body = request.body
            let text = "\(request.head.method) \(request.head.uri) \(body.readString(length: body.readableBytes) ?? "")"
            return loop.makeSucceededFuture(ClusterHTTPResponse(headers: ["X-Test": "1"], body: text))
        })
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    private func exchange(_ channel: EmbeddedChannel, _ request: String) throws -> String {
        try channel.writeInbound(ByteBuffer(string: request))
        var out = ""
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) { out += buffer.readString(length: buffer.readableBytes) ?? "" }
        return out
    }

    @Test func aKeepAliveRequestIsAnsweredAndTheConnectionStaysOpen() throws {
        let channel = try channel()
        let response = try exchange(channel, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(response == "HTTP/1.1 200 OK\r\nX-Test: 1\r\nContent-Length: 7\r\n\r\nGET /a ")
        #expect(channel.isActive)
    }

    @Test func connectionCloseAndHTTP10AreAnsweredWithConnectionCloseAndClosed() throws {
        // `close` wins over an HTTP/1.0 `keep-alive` on both paths (RFC 9112 §9.3).
        let requests = ["GET / HTTP/1.1\r\nConnection: close\r\n\r\n", "GET / HTTP/1.0\r\n\r\n",
                        "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
                        "OPTIONS * HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"]
        for request in requests {
            let channel = try channel()
            let response = try exchange(channel, request)
            #expect(response.contains("\r\nConnection: close\r\n\r\n"), "\(response)")
            #expect(!channel.isActive)
        }
    }

    @Test func bodiesSplitAcrossReadsAndPipelinedRequestsAreAnsweredInOrder() throws {
        let channel = try channel()
        #expect(try exchange(channel, "POST /p HTTP/1.1\r\nContent-Length: 5\r\n\r\nhe") == "")
        let response = try exchange(channel, "llo" + "GET /q HTTP/1.1\r\n\r\n")
        #expect(response == "HTTP/1.1 200 OK\r\nX-Test: 1\r\nContent-Length: 13\r\n\r\nPOST /p hello"
            + "HTTP/1.1 200 OK\r\nX-Test: 1\r\nContent-Length: 7\r\n\r\nGET /q ")
    }

    @Test func aChunkedRequestGoesToSwiftNIOsFullPipeline() throws {
        let channel = try channel()
        let response = try exchange(channel, "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"), "\(response)")
        #expect(response.hasSuffix("POST /c hello"), "\(response)")
        _ = try channel.pipeline.syncOperations.handler(type: HTTPResponderHandler.self)
        #expect(channel.isActive)
    }

    @Test func aMalformedRequestGetsA400FromTheFullPipelineAndIsClosed() throws {
        let channel = try channel()
        let response = try exchange(channel, "NONSENSE\r\n\r\n")
        #expect(response.hasPrefix("HTTP/1.1 400"), "\(response)")
        #expect(!channel.isActive)
    }

    @Test func quiescingClosesAnIdleConnectionAndMarksTheLastResponse() throws {
        let idle = try channel()
        idle.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(idle.isActive, "an idle connection gets a moment for the request its client may be sending")
        idle.embeddedEventLoop.advanceTime(by: LeanHTTPHandler.idleGrace)
        #expect(!idle.isActive)

        let raced = try channel()
        raced.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        try raced.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"))
        var answer = try #require(try raced.readOutbound(as: ByteBuffer.self))
        #expect(answer.readString(length: answer.readableBytes)?.contains("Connection: close\r\n") == true,
                "a request that arrives during the grace is answered, and the answer says close")
        #expect(!raced.isActive)

        let busy = EmbeddedChannel()
        let promise = busy.eventLoop.makePromise(of: ClusterHTTPResponse.self)
        try busy.pipeline.syncOperations.addHandler(LeanHTTPHandler { _, _ in promise.futureResult })
        try busy.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try busy.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"))
        busy.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(busy.isActive, "the request in flight keeps it open")
        promise.succeed(ClusterHTTPResponse(body: "done"))
        var buffer = try #require(try busy.readOutbound(as: ByteBuffer.self))
        #expect(buffer.readString(length: buffer.readableBytes)?.contains("Connection: close\r\n") == true)
        #expect(!busy.isActive)
    }

    @Test func eightThousandPipelinedRequestsInOneReadAreAnsweredInOrderAFewPerTurn() throws {
        let channel = try channel()
        let requests = (0..<8000).map { "GET /\($0) HTTP/1.1\r\n\r\n" }.joined()
        let first = try exchange(channel, requests)
        let answeredAtOnce = first.components(separatedBy: "HTTP/1.1 200 OK").count - 1
        #expect(answeredAtOnce == LeanHTTPHandler.maximumPipelinedPerTurn, "the rest wait for the next turn")
        channel.embeddedEventLoop.run()
        var rest = ""
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) { rest += buffer.readString(length: buffer.readableBytes) ?? "" }
        let bodies = (first + rest).components(separatedBy: "\r\n\r\n").dropFirst().map { $0.prefix { $0 != "H" } }
        #expect(bodies.count == 8000)
        #expect(bodies.elementsEqual((0..<8000).map { "GET /\($0) " }), "answered in order")
        #expect(channel.isActive)
    }

    @Test func noMoreIsReadFromTheSocketWhileAResponseIsPending() throws {
        let channel = EmbeddedChannel()
        let reads = ReadCounter()
        let promise = channel.eventLoop.makePromise(of: ClusterHTTPResponse.self)
        try channel.pipeline.syncOperations.addHandler(reads)
        try channel.pipeline.syncOperations.addHandler(LeanHTTPHandler { _, _ in promise.futureResult })
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try channel.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"))
        let before = reads.count
        channel.read()
        #expect(reads.count == before, "the read is held while the responder works")
        promise.succeed(ClusterHTTPResponse(body: "done"))
        #expect(reads.count == before + 1, "answered: the held read goes through")
    }

    @Test func aSlowHeadIsAnswered408AndClosedAtTheHeaderTimeout() throws {
        let channel = try channel(limits: HTTPServerLimits(headerTimeout: .seconds(2)))
        #expect(try exchange(channel, "GET / HTTP/1.1\r\nHo") == "")
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1900))
        #expect(try exchange(channel, "st: a\r\nX") == "", "a byte at a time does not extend the deadline")
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
        let response = try exchange(channel, "")
        #expect(response.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"), "\(response)")
        #expect(!channel.isActive)
    }

    @Test func anIdleConnectionIsClosedAtTheIdleTimeoutCountedFromItsLastResponse() throws {
        let channel = try channel(limits: HTTPServerLimits(idleTimeout: .seconds(5)))
        channel.embeddedEventLoop.advanceTime(by: .seconds(4))
        #expect(try exchange(channel, "GET / HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 200"))
        channel.embeddedEventLoop.advanceTime(by: .seconds(4))
        #expect(channel.isActive, "4 s after the response")
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(!channel.isActive)
        #expect(try exchange(channel, "") == "", "closed without a response")
    }

    @Test func aSlowBodyIsAnswered408AtTheRequestTimeoutOnBothPaths() throws {
        let limits = HTTPServerLimits(headerTimeout: .seconds(1), requestTimeout: .seconds(10))
        for request in ["POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nhe",
                        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe"] {
            let channel = try channel(limits: limits)
            #expect(try exchange(channel, request) == "")
            channel.embeddedEventLoop.advanceTime(by: .seconds(9))
            #expect(channel.isActive, "the head came in time; the body has until the request timeout")
            channel.embeddedEventLoop.advanceTime(by: .seconds(1))
            #expect(try exchange(channel, "").hasPrefix("HTTP/1.1 408"))
            #expect(!channel.isActive)
        }
    }

    @Test func aBodyOverTheLimitIsAnswered413AndClosedOnBothPaths() throws {
        let limits = HTTPServerLimits(maxBodyBytes: 100)
        let announced = try channel(limits: limits)
        let response = try exchange(announced, "POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n")
        #expect(response.hasPrefix("HTTP/1.1 413 Payload Too Large\r\n"), "refused before the body is read: \(response)")
        #expect(response.hasSuffix("the body is over 100 bytes\n"), "\(response)")
        #expect(!announced.isActive)
        let chunked = try channel(limits: limits)
        let chunks = String(repeating: "40\r\n" + String(repeating: "x", count: 64) + "\r\n", count: 2)
        #expect(try exchange(chunked, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks).hasPrefix("HTTP/1.1 413"))
        #expect(!chunked.isActive)
    }

    @Test func anOversizedHeadIsAnswered431AndClosed() throws {
        let channel = try channel(limits: HTTPServerLimits(maxHeaderBytes: 1024))
        let response = try exchange(channel, "GET / HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 1100))
        #expect(response.hasPrefix("HTTP/1.1 431"), "refused before the head ends: \(response)")
        #expect(!channel.isActive)
    }

    @Test func aChunkedRequestArrivingDuringTheDrainGraceIsAnsweredThenClosed() throws {
        let channel = try channel()
        channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        let response = try exchange(channel, "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n") && response.hasSuffix("POST /c hello"), "\(response)")
        #expect(!channel.isActive, "closed once answered")
    }
}

/// Counts the reads that reach the head of a pipeline.
final class ReadCounter: ChannelOutboundHandler {
    typealias OutboundIn = Never
    private(set) var count = 0
    func read(context: ChannelHandlerContext) {
        count += 1
        context.read()
    }
}
