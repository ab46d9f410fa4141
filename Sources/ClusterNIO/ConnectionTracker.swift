import NIOCore
import Synchronization

/// The open connections of one worker, so a drain can quiesce them and wait for them.
final class ConnectionTracker: Sendable {
    private struct State {
        var open: [ObjectIdentifier: any Channel] = [:]
        /// Accepted, handed to an event loop, not yet added.
        var expected = 0
        var quiescing = false
    }
    private let state = Mutex(State())
    private let count: @Sendable (_ opened: Bool) -> Void

    /// `count` hears of every connection opened and closed.
    init(count: @escaping @Sendable (_ opened: Bool) -> Void = { _ in }) {
        self.count = count
    }

    /// A connection is on its way: ``add(_:expected:)`` or ``abandon()`` follows.
    func expect() { state.withLock { $0.expected += 1 } }

    /// An expected connection could not be adopted.
    func abandon() { state.withLock { $0.expected -= 1 } }

    func add(_ channel: any Channel, expected: Bool = false) {
        let key = ObjectIdentifier(channel)
        let quiescing = state.withLock { state in
            state.open[key] = channel
            if expected { state.expected -= 1 }
            return state.quiescing
        }
        count(true)
        channel.closeFuture.whenComplete { [self] _ in
            _ = state.withLock { $0.open.removeValue(forKey: key) }
            count(false)
        }
        // Adopted after the drain began: quiesce as soon as the pipeline exists.
        if quiescing {
            channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        }
    }

    /// Asks `fraction` of the open connections to finish and close (a keep-alive client
    /// then reconnects, perhaps to another worker).
    func shed(_ fraction: Double) {
        let chosen = state.withLock { state -> [any Channel] in
            guard !state.quiescing else { return [] }
            let count = Int((Double(state.open.count) * fraction).rounded())
            return Array(state.open.values.shuffled().prefix(count))
        }
        for channel in chosen {
            channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        }
    }

    /// Asks every connection to finish and close, and waits until all have.
    func quiesceAll() async {
        let channels = state.withLock { state in
            state.quiescing = true
            return Array(state.open.values)
        }
        for channel in channels {
            channel.eventLoop.execute { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }
        }
        for channel in channels { _ = try? await channel.closeFuture.get() }
        // Connections adopted while the first ones closed, and those still on their way.
        while true {
            let (next, expected) = state.withLock { ($0.open.values.first, $0.expected) }
            if let next {
                _ = try? await next.closeFuture.get()
            } else if expected > 0 {
                try? await Task.sleep(for: .milliseconds(5))
            } else {
                return
            }
        }
    }
}
