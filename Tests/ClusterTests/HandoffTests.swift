@testable import Cluster
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct HandoffTests {
    @Test func aConnectionFromAProxyListenerCarriesEachClientAndHeaderLength() throws {
        let clients = [
            HandedClient(headerLength: 28, client: PeerAddress(kind: .ipv4([192, 0, 2, 7], port: 56324))),
            HandedClient(headerLength: 528, client: PeerAddress(kind: .ipv6([0x20, 0x01, 0x0D, 0xB8] + [UInt8](repeating: 0, count: 11) + [1], port: 443))),
            HandedClient(headerLength: 16, client: nil),
        ]
        let frame = Handoff.connection(listener: 2, number: 9).frame(clients: clients)
        #expect(frame.payload.count == Handoff.payloadSize + 3 * HandedClient.recordSize)
        #expect(frame.payload.count <= Handoff.maximumPayloadSize)
        #expect(try Handoff(frame) == .connection(listener: 2, number: 9))
        #expect(HandedClient.records(in: frame.payload.dropFirst(Handoff.payloadSize)) == clients)
        // Only a connection message may carry records, and only whole ones.
        var answer = Handoff.answer(listener: 2, number: 9, taken: true).frame()
        answer.payload += clients[0].record
        #expect(throws: ClusterError.self) { try Handoff(answer) }
        var cut = frame
        cut.payload.removeLast()
        #expect(throws: ClusterError.self) { try Handoff(cut) }
    }

    /// A worker answers a declined connection at once (and closes it), a taken one at once
    /// or, taken unread, not yet: its reader answers once it has read.
    @Test func aConnectionTakenUnreadIsNotAnsweredYet() throws {
        let pairs = try (0..<3).map { _ in try Syscall.socketPair() }
        defer { pairs.forEach { Syscall.close($0.1) } }
        var frame = Handoff.connection(listener: 4, number: 10).frame(descriptors: pairs.map(\.0))
        frame.missingDescriptors = 1
        let decisions: [HandoffDecision] = [.declined, .taken, .takenUnread]
        var offered: [UInt64] = []
        var answers: [Handoff] = []
        Handoff.answerConnections(in: frame, listener: 4, first: 10,
                                  take: { _, _, number in
                                      offered.append(number)
                                      return decisions[Int(number - 10)]
                                  },
                                  answer: { answers.append(try! Handoff($0)) })
        #expect(offered == [10, 11, 12])
        // The fourth never arrived (the worker's table was full): declined, the primary routes it on.
        #expect(answers == [.answer(listener: 4, number: 10, taken: false), .answer(listener: 4, number: 11, taken: true),
                            .answer(listener: 4, number: 13, taken: false)])
        #expect(fcntl(pairs[0].0, F_GETFD) == -1, "a declined connection is closed")
        #expect(fcntl(pairs[2].0, F_GETFD) >= 0, "a connection taken is the taker's")
        Syscall.close(pairs[1].0)
        Syscall.close(pairs[2].0)
    }

    @Test func everyMessageSurvivesARoundTripIn16Bytes() throws {
        let messages: [Handoff] = [
            .connection(listener: 3, number: 0x0102_0304_0506_0708),
            .answer(listener: 0, number: 1, taken: true),
            .answer(listener: 7, number: UInt64.max, taken: false),
            .closed(listener: 1, count: 12_345),
            .stop(listener: 2),
        ]
        for message in messages {
            let frame = message.frame(descriptors: [])
            #expect(frame.kind == .handoff)
            #expect(frame.payload.count == 16)
            #expect(try Handoff(frame) == message)
        }
    }

    @Test func aMalformedMessageIsRefusedWithItsReason() {
        var short = Handoff.closed(listener: 1, count: 1).frame()
        short.payload.removeLast()
        #expect(throws: ClusterError.self) { try Handoff(short) }
        var unknown = Handoff.closed(listener: 1, count: 1).frame()
        unknown.payload[0] = 9
        do {
            _ = try Handoff(unknown)
            Issue.record("an unknown operation was accepted")
        } catch {
            #expect(error.description.contains("unknown handoff operation 9"))
        }
        var reserved = Handoff.closed(listener: 1, count: 1).frame()
        reserved.payload[2] = 1
        #expect(throws: ClusterError.self) { try Handoff(reserved) }
    }

    /// What the worker says on a link the primary does not read for a while waits in the
    /// link, and goes out in order once the socket is writable again (EPOLLOUT on the I/O
    /// thread): nothing is dropped, and nothing waits for a timer.
    @Test func closesThePrimaryDoesNotReadYetGoOutInOrderOnceItDoes() throws {
        let (link, primaryEnds) = try HandoffLink.make(loop: .shared)
        defer { primaryEnds.forEach { Syscall.close($0) } }
        // Several MiB of frames: far more than the socket's buffer takes.
        let count = 200_000
        for index in 0..<count { link.send([.closed(listener: 1, count: index + 1)]) }
        var reader = FrameReader(maximumPayload: Handoff.payloadSize)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)
        defer { buffer.deallocate() }
        var seen = 0
        var outOfOrder = 0
        let deadline = ContinuousClock.now + .seconds(30)
        while seen < count, ContinuousClock.now < deadline {
            _ = try Syscall.poll(primaryEnds[0], events: Int16(POLLIN), milliseconds: 1000)
            guard let read = try reader.read(from: primaryEnds[0], into: buffer) else { continue }
            try #require(read > 0, "the link closed after \(seen) frames")
            while let frame = try reader.next() {
                seen += 1
                if try Handoff(frame) != .closed(listener: 1, count: seen) { outOfOrder += 1 }
            }
        }
        #expect(seen == count)
        #expect(outOfOrder == 0)
        withExtendedLifetime(link) {}
    }
}
