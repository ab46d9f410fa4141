@testable import Cluster
import Glibc
import Logging
import Testing

@Suite struct DispatcherHoldTests {
    /// A worker that never answers does not make the primary hold every connection it
    /// handed over: past the limit the oldest copies close, so those connections end when
    /// the worker closes its own; the others stay held (for another worker, should this
    /// one die).
    @Test func pastTheHoldLimitTheOldestCopiesClose() async throws {
        let (listener, bound) = try Socket.listen(.tcp(host: "127.0.0.1", port: 0))
        let dispatcher = try await IOLoop.shared.submit { () throws(ClusterError) in
            try Dispatcher(id: 1, fd: listener, distribution: .roundRobin, loop: .shared,
                           logger: Logger(label: "test.dispatcher"), holdLimit: 2)
        }
        let (mine, worker) = try Syscall.socketPair()
        defer { Syscall.close(worker) }
        let channel = Channel(fd: mine)
        try channel.start()
        try await IOLoop.shared.submit { () throws(ClusterError) in dispatcher.join(worker: 1, slot: 0, channel: channel) }
        defer {
            IOLoop.shared.execute {
                dispatcher.leave(worker: 1)
                dispatcher.close()
                channel.close(error: nil)
                Syscall.close(listener)
            }
        }

        // One at a time, so the handoffs are numbered (and aged) in the clients' order.
        var clients: [Int32] = []
        var handed: [Int32] = []
        var decoder = FrameDecoder(maximumPayload: Handoff.maximumPayloadSize)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { buffer.deallocate() }
        for _ in 0..<3 {
            clients.append(try connect(to: bound.port!))
            let deadline = ContinuousClock.now + .seconds(10)
            while handed.count < clients.count, ContinuousClock.now < deadline {
                _ = try Syscall.poll(worker, events: Int16(POLLIN), milliseconds: 100)
                var fds: [Int32] = [], truncated = false
                guard let count = try Syscall.receive(worker, into: buffer, fds: &fds, truncated: &truncated), count > 0 else { continue }
                decoder.append(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), descriptors: fds)
                while let frame = try decoder.next() { handed += frame.descriptors }
            }
        }
        defer { clients.forEach { Glibc.close($0) } }
        try #require(handed.count == 3)
        // The worker closes its copies without answering: only the oldest connection ends.
        handed.forEach(Syscall.close)
        var byte: UInt8 = 0
        _ = try Syscall.poll(clients[0], events: Int16(POLLIN), milliseconds: 10_000)
        #expect(recv(clients[0], &byte, 1, Int32(MSG_DONTWAIT)) == 0, "the oldest connection ended")
        for client in clients.dropFirst() {
            #expect(recv(client, &byte, 1, Int32(MSG_DONTWAIT)) == -1 && errno == EAGAIN, "a newer connection is still held")
        }
    }

    /// What the dispatcher asks of a dead worker's unanswered connections: whether anyone
    /// has read from them (then its request is gone, and no other worker can serve it).
    @Test func aConnectionReadFromIsToldFromOneNeverRead() throws {
        let (listener, bound) = try Socket.listen(.tcp(host: "127.0.0.1", port: 0))
        defer { Syscall.close(listener) }
        let client = try connect(to: bound.port!)
        defer { Glibc.close(client) }
        _ = try Syscall.poll(listener, events: Int16(POLLIN), milliseconds: 10_000)
        let server = try #require(try Syscall.accept(listener))
        defer { Syscall.close(server) }
        #expect(Syscall.bytesRead(from: server) == 0)
        #expect(send(client, "GET /", 5, 0) == 5)
        _ = try Syscall.poll(server, events: Int16(POLLIN), milliseconds: 10_000)
        #expect(Syscall.bytesRead(from: server) == 0, "arrived, unread")
        var bytes = [UInt8](repeating: 0, count: 2)
        #expect(recv(server, &bytes, 2, 0) == 2)
        #expect(Syscall.bytesRead(from: server) == 2)
    }

    private func connect(to port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(connected == 0, "connect: errno \(errno)")
        return fd
    }
}
