import NIOCore

/// Holds a server channel's accepting while `limit` accepted connections are open: the
/// connections wait in the socket's queue until one closes.
final class AcceptLimiter: ChannelDuplexHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = Never

    private let limit: Int
    private var open = 0
    private var readHeld = false

    init(limit: Int) { self.limit = max(1, limit) }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        open += 1
        let limiter = NIOLoopBound(self, eventLoop: context.eventLoop)
        let context = NIOLoopBound(context, eventLoop: context.eventLoop)
        child.closeFuture.whenComplete { _ in
            context.value.eventLoop.execute { limiter.value.childClosed(context: context.value) }
        }
        context.value.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        if open < limit { context.read() } else { readHeld = true }
    }

    private func childClosed(context: ChannelHandlerContext) {
        open -= 1
        if readHeld, open < limit {
            readHeld = false
            context.read()
        }
    }
}
