internal import FoundationEssentials

/// JSON for channel messages, as Node's `process.send` uses: a streaming `Encodable` encoder
/// and a tape-based `Decodable` decoder, both interchangeable with Foundation's
/// `JSONEncoder`/`JSONDecoder` under their default options and with `JSON.stringify`/`JSON.parse`.
///
/// Foundation's coders build a tree of boxed values for every message, which costs about a
/// microsecond each way even for a one-field struct; a message channel pays that on every
/// send, so this pair writes straight into one byte buffer and reads from one flat index.
/// A hand-written `encode(to:)` that writes to its containers out of document order cannot be
/// streamed; such a value is encoded again with Foundation, so the output is always right.
///
/// Where it differs from Foundation: "/" is not escaped (JSON does not need it); input must
/// be strict RFC 8259 (Foundation also takes trailing commas); integers are checked exactly
/// ("1.0" and "1e2" are integers, as in Foundation, but checked without going through
/// `Double`); a number too small for a Double reads as 0, as in `JSON.parse` (Foundation
/// rejects it); invalid UTF-8 in a string is reported only if that string is decoded;
/// decoding errors carry the whole coding path. Unpaired UTF-16 surrogate escapes are
/// rejected, as in Foundation. Not detected: a hand-written `encode(to:)` that encodes one
/// key twice in a container writes it twice (Foundation keeps the last value); with
/// duplicate keys in the input, the decoder reads the first one after the last key it found
/// (Foundation reads the first, `JSON.parse` the last).
package enum MessageJSON {
    /// The deepest nesting of arrays and objects the decoder accepts (Foundation's limit).
    package static let maximumDepth = 512

    /// Encodes `value` as compact JSON bytes.
    package static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = MessageJSONEncoder()
        if (try? encoder.encodeTopLevel(value)) != nil, !encoder.needsFallback { return encoder.bytes }
        // Written out of order, or an error was thrown (hand-written code may have caught it
        // half-way through a member and carried on): Foundation's answer, bytes or error, is
        // the definitive one.
        return Array(try JSONEncoder().encode(value))
    }

    /// Decodes `T` from JSON bytes.
    package static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try MessageJSONDecoder(parsing: bytes).decodeTopLevel(T.self)
    }

    /// Thrown by the encoder when containers are used out of document order; `encode`
    /// falls back to Foundation then, so it never reaches a caller.
    struct Fallback: Error {}
}
