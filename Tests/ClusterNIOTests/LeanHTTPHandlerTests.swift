@testable import ClusterNIO
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

@Suite struct LeanHTTPHandlerTests {
    /// A channel serving `path method body` back, through the lean handler.
    private func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(LeanHTTPHandler { request, loop in
            var body = request.body
            let text = "\(request.head.method) \(request.head.uri) \(body.readString(length: body.readableBytes) ?? "")"
            return loop.makeSucceededFuture(HTTPResponse(headers: ["X-Test": "1"], body: text))
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
        for request in ["GET / HTTP/1.1\r\nConnection: close\r\n\r\n", "GET / HTTP/1.0\r\n\r\n"] {
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
        #expect(throws: ChannelPipelineError.notFound, "the lean handler left the pipeline") {
            try channel.pipeline.syncOperations.handler(type: LeanHTTPHandler.self)
        }
    }

    @Test func aMalformedRequestGetsAnErrorFromTheFullPipeline() throws {
        let channel = try channel()
        // The decoder's error also reaches the end of the pipeline, where EmbeddedChannel rethrows it.
        #expect(throws: (any Error).self) { try channel.writeInbound(ByteBuffer(string: "NONSENSE\r\n\r\n")) }
        var response = ""
        while var buffer = try channel.readOutbound(as: ByteBuffer.self) { response += buffer.readString(length: buffer.readableBytes) ?? "" }
        #expect(response.hasPrefix("HTTP/1.1 400"), "\(response)")
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
        let promise = busy.eventLoop.makePromise(of: HTTPResponse.self)
        try busy.pipeline.syncOperations.addHandler(LeanHTTPHandler { _, _ in promise.futureResult })
        try busy.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        try busy.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n"))
        busy.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
        #expect(busy.isActive, "the request in flight keeps it open")
        promise.succeed(HTTPResponse(body: "done"))
        var buffer = try #require(try busy.readOutbound(as: ByteBuffer.self))
        #expect(buffer.readString(length: buffer.readableBytes)?.contains("Connection: close\r\n") == true)
        #expect(!busy.isActive)
    }

    @Test func theAcceptLimiterHoldsReadsAtTheLimitAndResumesWhenAConnectionCloses() throws {
        let server = EmbeddedChannel()
        let reads = ReadCounter()
        try server.pipeline.syncOperations.addHandler(reads)
        try server.pipeline.syncOperations.addHandler(AcceptLimiter(limit: 2))
        let children = [EmbeddedChannel(loop: server.embeddedEventLoop), EmbeddedChannel(loop: server.embeddedEventLoop)]
        for child in children { try server.writeInbound(child as any Channel) }
        server.read()
        #expect(reads.count == 0, "two connections open, limit two: no more accepting")
        try children[0].close().wait()
        server.embeddedEventLoop.run()
        #expect(reads.count == 1, "a connection closed: the held read goes through")
        server.read()
        #expect(reads.count == 2, "below the limit reads pass")
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
