import CFuzzerDriver
@_spi(Fuzzing) import Cluster

/// A message as applications send them: nested, optional, keyed and unkeyed.
struct Message: Codable, Equatable {
    var id: Int
    var name: String
    var tags: [String]
    var ratio: Double?
    var counts: [String: Int]?
    var done: Bool
    var child: [Message]?
}

enum Command: Codable, Equatable {
    case start(worker: Int)
    case stop(reason: String?)
    case ping
}

/// Decodes the bytes as each shape; whatever decodes must encode and decode back to itself.
func fuzzJSON(_ input: UnsafeBufferPointer<UInt8>) {
    let bytes = Array(input)
    roundTrip(Message.self, bytes)
    roundTrip([String: [Int64]].self, bytes)
    roundTrip([Double].self, bytes)
    roundTrip([String?].self, bytes)
    roundTrip(Command.self, bytes)
    roundTrip(UInt8.self, bytes)
    roundTrip(String.self, bytes)
    // A failed request's payload (a peer's error, with errno, system call and address).
    if let disagreement = MessageJSONFuzzing.failureDisagreement(bytes) { fuzz_fail("failure payload: \(disagreement)") }
}

func roundTrip<T: Codable & Equatable>(_ type: T.Type, _ bytes: [UInt8]) {
    guard let value = try? MessageJSONFuzzing.decode(type, from: bytes) else { return }
    do {
        let encoded = try MessageJSONFuzzing.encode(value)
        let again = try MessageJSONFuzzing.decode(type, from: encoded)
        guard again == value else {
            fuzz_fail("\(T.self): \(value) came back as \(again) from \(String(decoding: encoded, as: UTF8.self))")
        }
    } catch {
        fuzz_fail("\(T.self): \(value), decoded from \(String(decoding: bytes, as: UTF8.self).debugDescription), does not round-trip: \(error)")
    }
}
