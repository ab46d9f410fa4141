@testable import Cluster
import Testing

@Suite struct HandoffTests {
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
}
