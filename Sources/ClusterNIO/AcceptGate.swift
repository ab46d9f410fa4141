import NIOCore
import Synchronization

/// On a server channel: holds accepting while `maxOpen` accepted connections are open
/// (`maxConnections`: the rest wait in the socket's queue until one closes), and while
/// `maxUnread` of them have not been read yet (a worker whose event loop is busy leaves
/// the rest in the queue, which outlives the worker if it crashes: a crash loses what it
/// had begun to read, and these few).
final class AcceptGate: ChannelDuplexHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = Never

    private let maxOpen: Int
    private let maxUnread: Int
    private var open = 0
    private var unread = 0
    private var readHeld = false

    init(maxOpen: Int, maxUnread: Int) {
        self.maxOpen = max(1, maxOpen)
        self.maxUnread = max(1, maxUnread)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        open += 1
        unread += 1
        let loop = context.eventLoop
        let gate = NIOLoopBound(self, eventLoop: loop)
        let bound = NIOLoopBound(context, eventLoop: loop)
        let onLoop: @Sendable (@escaping @Sendable () -> Void) -> Void = { work in
            if loop.inEventLoop { work() } else { loop.execute(work) }
        }
        let read = FirstRead { onLoop { gate.value.childRead(context: bound.value) } }
        // First in the child's pipeline, before it is registered (the bootstrap's accept
        // handler comes after this one, and the child's loop runs tasks in order).
        let install: @Sendable () -> Void = {
            do {
                try child.pipeline.syncOperations.addHandler(FirstReadHandler(read), position: .first)
            } catch {
                read.declare()
            }
        }
        if child.eventLoop.inEventLoop { install() } else { child.eventLoop.execute(install) }
        child.closeFuture.whenComplete { _ in
            read.declare()
            onLoop { gate.value.childClosed(context: bound.value) }
        }
        context.fireChannelRead(data)
    }

    func read(context: ChannelHandlerContext) {
        if isOpen { context.read() } else { readHeld = true }
    }

    private var isOpen: Bool { open < maxOpen && unread < maxUnread }

    private func childRead(context: ChannelHandlerContext) {
        unread -= 1
        releaseHeldRead(context: context)
    }

    private func childClosed(context: ChannelHandlerContext) {
        open -= 1
        releaseHeldRead(context: context)
    }

    private func releaseHeldRead(context: ChannelHandlerContext) {
        guard readHeld, isOpen else { return }
        readHeld = false
        context.read()
    }
}

/// A connection's first read, or its close before any: declared once.
final class FirstRead: Sendable {
    private let declared = Atomic(false)
    private let action: @Sendable () -> Void

    init(_ action: @escaping @Sendable () -> Void) { self.action = action }

    func declare() {
        if !declared.exchange(true, ordering: .relaxed) { action() }
    }
}

/// Declares its channel's first read, then leaves the pipeline.
final class FirstReadHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let read: FirstRead

    init(_ read: FirstRead) { self.read = read }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        read.declare()
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
