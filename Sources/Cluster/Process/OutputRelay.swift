import CClusterShims
#if canImport(Glibc)
import Glibc
#endif

/// Copies a worker's output to the primary's, one whole line at a time, each prefixed.
final class OutputRelay: IOHandler, @unchecked Sendable {
    private let source: Int32
    private let destination: Int32
    private let prefix: [UInt8]
    private let loop: IOLoop
    private let observer: (@Sendable (String) -> Void)?
    // Loop-thread only.
    private var partial: [UInt8] = []

    /// Takes ownership of `source`, the read end of the worker's pipe.
    init(source: Int32, destination: Int32, prefix: String, loop: IOLoop = .shared,
         observer: (@Sendable (String) -> Void)? = nil) throws(ClusterError) {
        self.source = source
        self.observer = observer
        self.destination = destination
        self.prefix = Array(prefix.utf8)
        self.loop = loop
        try loop.register(source, events: EPOLLIN.rawValue, handler: self)
    }

    func handle(events: UInt32) {
        loop.assertInLoop()
        var buffer = [UInt8](repeating: 0, count: 16 << 10)
        let count = buffer.withUnsafeMutableBytes { (try? Syscall.read(source, into: $0)) ?? nil }
        guard let count else { return }
        guard count > 0 else {
            if !partial.isEmpty {
                emit(prefix + partial + [10])
                observer?(String(decoding: partial, as: UTF8.self))
            }
            loop.deregister(source)
            Syscall.close(source)
            return
        }
        var lines = partial
        lines.append(contentsOf: buffer[0..<count])
        var start = 0
        var out: [UInt8] = []
        for index in lines.indices where lines[index] == 10 {
            out.append(contentsOf: prefix)
            out.append(contentsOf: lines[start...index])
            observer?(String(decoding: lines[start..<index], as: UTF8.self))
            start = index + 1
        }
        partial = Array(lines[start...])
        if !out.isEmpty { emit(out) }
    }

    private func emit(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let written = Glibc.write(destination, raw.baseAddress! + offset, raw.count - offset)
                if written < 0 && errno == EINTR { continue }
                if written <= 0 { return }
                offset += written
            }
        }
    }
}
