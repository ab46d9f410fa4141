import CClusterShims
#if canImport(Glibc)
import Glibc
#endif

/// Turns signals into calls on the I/O thread: a handler (C, async-signal-safe) writes
/// each signal's number to a pipe this watcher reads. Signals arriving together are all
/// delivered, in order; the same signal sent twice before the read may arrive once.
final class SignalWatcher: IOHandler, @unchecked Sendable {
    private let pipe: (read: Int32, write: Int32)
    private let loop: IOLoop
    private let handler: @Sendable (Int32) -> Void

    /// Watches `signals` from now on, for the life of the process (``restoreDefaults(_:)``
    /// gives signals their default handling back).
    init(_ signals: [Signal], loop: IOLoop = .shared, handler: @escaping @Sendable (Int32) -> Void) throws(ClusterError) {
        pipe = try Syscall.pipe()
        self.loop = loop
        self.handler = handler
        try Syscall.setNonBlocking(pipe.read)
        try Syscall.setNonBlocking(pipe.write)
        try loop.register(pipe.read, events: EPOLLIN.rawValue, handler: self)
        for signal in signals { _ = cluster_signal_forward(signal.rawValue, pipe.write) }
    }

    /// Restores the default handling of `signals` (the watcher keeps its pipe).
    func restoreDefaults(_ signals: [Signal]) {
        for signal in signals { _ = cluster_signal_default(signal.rawValue) }
    }

    func handle(events: UInt32) {
        loop.assertInLoop()
        var bytes = [UInt8](repeating: 0, count: 64)
        while let count = bytes.withUnsafeMutableBytes({ try? Syscall.read(pipe.read, into: $0) }) ?? nil, count > 0 {
            for signal in bytes[..<count] { handler(Int32(signal)) }
        }
    }
}
