import CFuzzerDriver
import ClusterNIO
import HTTPDifferential

/// Limits that arbitrary inputs (libFuzzer's default `-max_len` is 4096) reach only for
/// bodies: the head limit is counted differently by the two parsers, and is tested with
/// clear cases in `HTTPParserDifferentialTests`.
let limits = HTTPServerLimits(maxHeaderBytes: 1 << 20, maxBodyBytes: 1024)

/// The first byte says where to cut the rest into two reads: the lean parser must reach
/// the same verdict however the bytes arrive. A disagreement with SwiftNIO aborts.
func fuzzHTTP(_ input: UnsafeBufferPointer<UInt8>) {
    guard let first = input.first else { return }
    let input = Array(input.dropFirst())
    let cut = Int(first) % (input.count + 1)
    let reference = HTTPDifferential.reference([input], limits: limits)
    let (lean, channel) = HTTPDifferential.lean([Array(input[..<cut]), Array(input[cut...])], limits: limits)
    HTTPDifferential.close(channel)
    if lean != reference {
        fuzz_fail("lean: \(lean); SwiftNIO: \(reference); input: \(String(decoding: input, as: UTF8.self).debugDescription)")
    }
}
