import Cluster
import NIOCore

/// Watches a handoff link's doorbell: each time the primary has rung, takes every
/// handoff waiting (the acceptor's handler adopts them on this loop).
final class DoorbellHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let acceptor: Acceptor
    private var rang = false

    init(acceptor: Acceptor) { self.acceptor = acceptor }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) { rang = true }

    func channelReadComplete(context: ChannelHandlerContext) {
        guard rang else { return }
        rang = false
        acceptor.receiveHandoffs()
    }
}
