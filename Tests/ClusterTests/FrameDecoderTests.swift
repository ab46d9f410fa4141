@testable import Cluster
import Testing

@Suite struct FrameDecoderTests {
    private func encoded(_ frames: [Frame]) -> [UInt8] {
        var bytes: [UInt8] = []
        for frame in frames { frame.encode(into: &bytes) }
        return bytes
    }

    private func feed(_ decoder: inout FrameDecoder, _ bytes: [UInt8], descriptors: [Int32] = []) {
        bytes.withUnsafeBytes { decoder.append($0, descriptors: descriptors) }
    }

    @Test func framesSurviveARoundTripWithEveryField() throws {
        let frames = [
            Frame(kind: .message, payload: Array("hello".utf8)),
            Frame(kind: .request, peer: 7, correlation: 0x0102_0304_0506_0708, payload: []),
            Frame(kind: .control, payload: [UInt8](repeating: 0xAB, count: 70_000)),
        ]
        var decoder = FrameDecoder(maximumPayload: 1 << 20)
        feed(&decoder, encoded(frames))
        for expected in frames { #expect(try decoder.next() == expected) }
        #expect(try decoder.next() == nil)
        #expect(decoder.bufferedByteCount == 0)
    }

    @Test func aFrameSplitAtEveryByteStillDecodesOnce() throws {
        let frame = Frame(kind: .reply, correlation: 42, payload: Array("split me".utf8))
        let bytes = encoded([frame])
        var decoder = FrameDecoder(maximumPayload: 1024)
        for (index, byte) in bytes.enumerated() {
            feed(&decoder, [byte])
            let decoded = try decoder.next()
            #expect((decoded != nil) == (index == bytes.count - 1))
            if let decoded { #expect(decoded == frame) }
        }
    }

    @Test func descriptorsAttachToTheFrameThatAnnouncedThem() throws {
        let plain = Frame(kind: .message, payload: [1])
        let carrying = Frame(kind: .message, payload: [2], descriptors: [100, 101])
        var decoder = FrameDecoder(maximumPayload: 1024)
        feed(&decoder, encoded([plain, carrying]), descriptors: [100, 101])
        #expect(try decoder.next()?.descriptors == [])
        #expect(try decoder.next()?.descriptors == [100, 101])
        #expect(decoder.descriptors.isEmpty)
    }

    @Test func anUnknownKindIsRejected() {
        var bytes = encoded([Frame(kind: .message, payload: [])])
        bytes[4] = 99
        var decoder = FrameDecoder(maximumPayload: 1024)
        feed(&decoder, bytes)
        #expect { try decoder.next() } throws: { ($0 as? ClusterError)?.context == "unknown frame kind 99" }
    }

    @Test func nonZeroReservedBytesAreRejected() {
        var bytes = encoded([Frame(kind: .message, payload: [])])
        bytes[6] = 1
        var decoder = FrameDecoder(maximumPayload: 1024)
        feed(&decoder, bytes)
        #expect { try decoder.next() } throws: { ($0 as? ClusterError)?.code == .malformedFrame }
    }

    @Test func aLengthOverTheLimitIsRejectedBeforeTheBodyArrives() {
        let bytes = encoded([Frame(kind: .message, payload: [UInt8](repeating: 0, count: 2048))])
        var decoder = FrameDecoder(maximumPayload: 1024)
        feed(&decoder, Array(bytes.prefix(Frame.headerSize)))
        #expect { try decoder.next() } throws: {
            ($0 as? ClusterError)?.context == "a frame announces 2048 bytes; the limit is 1024"
        }
    }

    @Test func missingDescriptorsAreAProtocolError() {
        var decoder = FrameDecoder(maximumPayload: 1024)
        feed(&decoder, encoded([Frame(kind: .message, payload: [1], descriptors: [5])]))
        #expect { try decoder.next() } throws: {
            ($0 as? ClusterError)?.context == "a frame announces 1 descriptors but 0 arrived"
        }
    }

    @Test func descriptorsThatNoFrameAnnouncesAreAProtocolError() throws {
        var decoder = FrameDecoder(maximumPayload: 1024)
        feed(&decoder, encoded([Frame(kind: .message, payload: [1])]), descriptors: [7, 8])
        #expect(try decoder.next()?.descriptors == [])
        #expect { try decoder.next() } throws: {
            ($0 as? ClusterError)?.context == "2 descriptors arrived that no frame announces (at most 0 may wait)"
        }
        #expect(decoder.takeUnclaimedDescriptors() == [7, 8])
    }

    @Test func aPartialFrameMayHoldOnlyTheDescriptorsItAnnounces() throws {
        let bytes = encoded([Frame(kind: .message, payload: [1, 2, 3], descriptors: [5])])
        var honest = FrameDecoder(maximumPayload: 1024)
        feed(&honest, Array(bytes.prefix(Frame.headerSize + 1)), descriptors: [5])
        #expect(try honest.next() == nil)
        var lying = FrameDecoder(maximumPayload: 1024)
        feed(&lying, Array(bytes.prefix(Frame.headerSize + 1)), descriptors: [5, 6])
        #expect { try lying.next() } throws: {
            ($0 as? ClusterError)?.context == "2 descriptors arrived that no frame announces (at most 1 may wait)"
        }
    }
}
