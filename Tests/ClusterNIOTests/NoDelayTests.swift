@testable import ClusterNIO
import Glibc
import Testing

@Suite struct NoDelayTests {
    /// The reusePort path sets TCP_NODELAY once, on the listening socket, and relies on
    /// the kernel copying it to every accepted socket.
    @Test func aConnectionAcceptedFromTheListenerHasNoDelay() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(listener >= 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                #expect(bind(listener, raw, length) == 0)
                #expect(listen(listener, 1) == 0)
                #expect(getsockname(listener, raw, &length) == 0)
                _ = listener.settingNoDelay(if: true)
                let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                defer { close(client) }
                #expect(connect(client, raw, length) == 0)
                let accepted = accept(listener, nil, nil)
                try #require(accepted >= 0)
                defer { close(accepted) }
                #expect(noDelay(of: accepted) == 1)
                #expect(noDelay(of: client) == 0, "a socket of its own keeps the default")
            }
        }
    }

    private func noDelay(of descriptor: Int32) -> Int32 {
        var value: Int32 = -1
        var size = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(descriptor, Int32(IPPROTO_TCP), TCP_NODELAY, &value, &size)
        return value
    }
}
