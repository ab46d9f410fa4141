@testable import ClusterNIO
import NIOCore
import NIOEmbedded
import Testing

/// The server channel's accepting is held while `maxUnread` accepted connections are
/// unread (released by a first read, or by the close of one never read) and while
/// `maxOpen` are open (released by a close).
@Suite struct AcceptGateTests {
    private func server(maxOpen: Int = .max, maxUnread: Int) throws -> (EmbeddedChannel, ReadCounter) {
        let counter = ReadCounter()
        let server = EmbeddedChannel()
        try server.pipeline.syncOperations.addHandler(counter)
        try server.pipeline.syncOperations.addHandler(AcceptGate(maxOpen: maxOpen, maxUnread: maxUnread))
        return (server, counter)
    }

    /// A connection accepted by `server`: a child channel through its pipeline.
    private func accept(_ server: EmbeddedChannel) throws -> EmbeddedChannel {
        let child = EmbeddedChannel(loop: server.embeddedEventLoop)
        try server.writeInbound(child as any Channel)
        return child
    }

    @Test func acceptingIsHeldAtTheLimitAndResumesAtAFirstRead() throws {
        let (server, counter) = try server(maxUnread: 2)
        server.read()
        #expect(counter.count == 1)
        let first = try accept(server), second = try accept(server)
        server.read()
        #expect(counter.count == 1, "two accepted and unread: no accept")
        try first.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\n"))
        #expect(counter.count == 2, "the first read releases the held accept")
        #expect(try first.readInbound(as: ByteBuffer.self) == ByteBuffer(string: "GET / HTTP/1.1\r\n"), "the bytes go on")
        #expect(throws: ChannelPipelineError.notFound) { try first.pipeline.syncOperations.handler(type: FirstReadHandler.self) }

        // A second read of the same connection counts for nothing.
        _ = try accept(server)
        server.read()
        #expect(counter.count == 2)
        try first.writeInbound(ByteBuffer(string: "Host: x\r\n"))
        #expect(counter.count == 2, "still two unread")
        // A connection closed before any read releases it too.
        try second.close().wait()
        server.embeddedEventLoop.run()
        #expect(counter.count == 3)
    }

    @Test func belowTheLimitEveryReadGoesThrough() throws {
        let (server, counter) = try server(maxUnread: 4)
        for _ in 0..<3 { _ = try accept(server) }
        server.read()
        server.read()
        #expect(counter.count == 2)
    }

    @Test func atMaxOpenAcceptingIsHeldUntilAConnectionCloses() throws {
        let (server, counter) = try server(maxOpen: 2, maxUnread: 4)
        let children = [try accept(server), try accept(server)]
        for child in children { try child.writeInbound(ByteBuffer(string: "GET")) }
        server.read()
        #expect(counter.count == 0, "two connections open, read, limit two: no more accepting")
        try children[0].close().wait()
        server.embeddedEventLoop.run()
        #expect(counter.count == 1, "a connection closed: the held read goes through")
        server.read()
        #expect(counter.count == 2, "below the limit reads pass")
    }

    @Test func bothLimitsMustAllowAnAccept() throws {
        let (server, counter) = try server(maxOpen: 2, maxUnread: 1)
        let first = try accept(server)
        server.read()
        #expect(counter.count == 0, "one unread")
        try first.writeInbound(ByteBuffer(string: "GET"))
        #expect(counter.count == 1, "read: released")
        _ = try accept(server)
        try first.writeInbound(ByteBuffer(string: "more"))
        server.read()
        #expect(counter.count == 1, "the second is unread, and two are open")
    }
}
