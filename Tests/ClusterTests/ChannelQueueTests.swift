@testable import Cluster
import Glibc
import Testing

@Suite struct ChannelQueueTests {
    /// A drain request for a worker that is megabytes behind goes ahead of the messages
    /// still queued for it, not after them; the messages still arrive, whole and in order.
    @Test func aDrainRequestOvertakesMessagesQueuedForAPeerThatIsBehind() throws {
        let (mine, theirs) = try Syscall.socketPair()
        defer { Syscall.close(theirs) }
        let channel = Channel(fd: mine)
        try channel.start()
        defer { channel.close(error: nil) }
        for index in 0..<8 {
            try channel.sendNow(Frame(kind: .message, payload: [UInt8](repeating: UInt8(index), count: 1 << 20)), force: true)
        }
        try channel.sendNow(Control.disconnect.frame, force: true, urgent: true)

        var decoder = FrameDecoder(maximumPayload: Channel.maximumMessageSize)
        var frames: [Frame] = []
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 << 10, alignment: 16)
        defer { buffer.deallocate() }
        let deadline = ContinuousClock.now + .seconds(20)
        while frames.count < 9, ContinuousClock.now < deadline {
            _ = try Syscall.poll(theirs, events: Int16(POLLIN), milliseconds: 100)
            var fds: [Int32] = [], truncated = false
            guard let count = try Syscall.receive(theirs, into: buffer, fds: &fds, truncated: &truncated), count > 0 else { continue }
            decoder.append(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), descriptors: fds)
            while let frame = try decoder.next() { frames.append(frame) }
        }
        let messages = frames.filter { $0.kind == .message }
        #expect(messages.map { $0.payload.first } == (0..<8).map { UInt8($0) })
        #expect(messages.allSatisfy { $0.payload.count == 1 << 20 })
        let drain = try #require(frames.firstIndex { $0.kind == .control })
        // Only what the socket buffer (1 MiB) had taken before the request was queued may
        // come first.
        #expect(drain <= 2, "the drain request came after \(drain) of 8 messages")
    }
}
