import ClusterJSON

/// The message codec for the fuzz target in `Fuzz/`, which may be built in release mode
/// where `@testable` is unavailable. Not API: no stability promised.
@_spi(Fuzzing) public enum MessageJSONFuzzing {
    /// Decodes `T` from JSON bytes as a channel message's payload is decoded.
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try MessageJSON.decode(type, from: bytes)
    }

    /// Encodes `value` as a channel message's payload is encoded.
    public static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        try MessageJSON.encode(value)
    }

    /// Reads a `.failure` frame's payload as a worker does, sends the error it stands for
    /// back the way the primary does and reads that again: nil when both readings agree
    /// (code, errno, system call, address), else what differs.
    public static func failureDisagreement(_ payload: [UInt8]) -> String? {
        let first = RemoteFailure.error(from: payload)
        let prefix = "the peer failed the request: "
        // By bytes: a combining mark after the prefix's space joins it in one Character.
        let bytes = Array(first.context.utf8)
        let context = bytes.starts(with: prefix.utf8) ? String(decoding: bytes.dropFirst(prefix.utf8.count), as: UTF8.self) : first.context
        let resent = ClusterError(first.code, errno: first.errno, systemCall: first.systemCall, address: first.address, context)
        let second = RemoteFailure.error(from: RemoteFailure(resent).payload)
        guard second.code == first.code, second.errno == first.errno, second.systemCall == first.systemCall,
              second.address == first.address, second.context == first.context else {
            return "\(first) came back as \(second)"
        }
        return nil
    }
}
