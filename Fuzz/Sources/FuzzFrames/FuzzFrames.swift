import CFuzzerDriver
@_spi(Fuzzing) import Cluster

/// Input: one byte for the read size, one for the number of descriptors that arrive with
/// the first read, then the stream. Frames must come out exactly as they went in, and every
/// descriptor must be claimed by a frame or handed back, never lost or duplicated.
func fuzzFrames(_ input: UnsafeBufferPointer<UInt8>) {
    guard input.count >= 2 else { return }
    let readSize = Int(input[0]) + 1
    let descriptors = (0..<Int32(input[1] % 80)).map { 1000 + $0 }
    let stream = Array(input.dropFirst(2))
    let decoded = FrameFuzzing.decode(stream, readSize: readSize, descriptors: descriptors, maximumPayload: 1 << 16)
    let consumed = decoded.frames.joined()
    check(stream.starts(with: consumed), "frames encoded again differ from the bytes they came from")
    let handed = decoded.claimed.joined() + decoded.unclaimed
    check(Array(handed) == descriptors, "descriptors lost or duplicated: \(descriptors.count) in, \(handed.count) out")
    for (frame, claimed) in zip(decoded.frames, decoded.claimed) {
        check(Int(frame[5]) == claimed.count, "a frame claimed \(claimed.count) descriptors but announced \(frame[5])")
    }
}

func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    guard !condition else { return }
    fuzz_fail(message())
}
