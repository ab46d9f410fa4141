import Cluster
import NIOCore

/// Tells the runtime when a connection it handed over has first been read
/// (``AcceptedConnection/startedReading()``), then leaves the pipeline. Until that read a
/// crash of this worker loses nothing: the primary still holds the connection and hands
/// it to another worker, or (where the workers accept) this worker took few ahead of its
/// reads and the kernel's queue kept the rest.
final class ReadDeclarationHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let connection: AcceptedConnection

    private init(connection: AcceptedConnection) { self.connection = connection }

    /// Puts the handler first in `channel`'s pipeline; on its event loop, before the
    /// channel has read (an adopted channel reads once its loop polls again). When it
    /// cannot (the channel has closed already), the connection's close declares it instead.
    static func install(on channel: any Channel, for connection: AcceptedConnection) {
        try? channel.pipeline.syncOperations.addHandler(ReadDeclarationHandler(connection: connection), position: .first)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.startedReading()
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
