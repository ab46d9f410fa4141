import FoundationEssentials
#if canImport(Glibc)
import Glibc
#endif

/// What JSON costs per message, apart from the channel: the same calls swift-cluster makes
/// in `send(_:)` (`Array(JSONEncoder().encode(value))`) and in `ClusterMessage.decode`
/// (`JSONDecoder().decode(T.self, from: Data(bytes))`), timed in a loop in one thread;
/// and the same with one encoder/decoder reused, to show what the per-call setup costs.
/// Prints `"bench":"cost"` lines with `"side":"codec"`.
enum Codec {
    static let iterations = 200_000

    static func measure() {
        var sink = 0
        let encodeFresh = perCall { k in
            sink &+= (try? Array(JSONEncoder().encode(Bench.Item(i: k))))?.count ?? 0
        }
        let encoder = JSONEncoder()
        let encodeReused = perCall { k in
            sink &+= (try? Array(encoder.encode(Bench.Item(i: k))))?.count ?? 0
        }
        let samples = (0..<1024).map { Array(#"{"i":\#(100_000 + $0)}"#.utf8) }
        let decodeFresh = perCall { k in
            sink &+= (try? JSONDecoder().decode(Bench.Item.self, from: Data(samples[k & 1023])))?.i ?? 0
        }
        let decoder = JSONDecoder()
        let decodeReused = perCall { k in
            sink &+= (try? decoder.decode(Bench.Item.self, from: Data(samples[k & 1023])))?.i ?? 0
        }
        for (figure, nanoseconds) in [("json-encode", encodeFresh), ("json-encode-reused-encoder", encodeReused),
                                      ("json-decode", decodeFresh), ("json-decode-reused-decoder", decodeReused)] {
            print(#"{"bench":"cost","impl":"swift-cluster","figure":"\#(figure)","side":"codec","cpu_ns_per_msg":\#(nanoseconds),"n":\#(iterations)}"#)
        }
        if sink == 42 { print("") } // keep the work observable
    }

    /// Thread CPU nanoseconds per call of `body`, after a short warm-up.
    private static func perCall(_ body: (Int) -> Void) -> Int {
        for k in 0..<1000 { body(k) }
        let start = threadCPU()
        for k in 0..<iterations { body(k) }
        return Int((Double(threadCPU() - start) / Double(iterations)).rounded())
    }

    private static func threadCPU() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}
