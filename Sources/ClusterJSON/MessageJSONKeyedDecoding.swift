/// The keyed container of `MessageJSONDecoder`: the object at token `object`, its members
/// found by key when asked for.
struct MessageJSONKeyedDecoding<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: MessageJSONDecoder
    let object: Int
    let codingPath: [any CodingKey]

    var allKeys: [Key] {
        var keys: [Key] = []
        keys.reserveCapacity(decoder.count(of: object))
        var token = object + 1
        let end = decoder.next(after: object)
        while token < end {
            if let name = try? decoder.decodeString(at: token, path: { codingPath }), let key = Key(stringValue: name) {
                keys.append(key)
            }
            token = decoder.next(after: token + 1)
        }
        return keys
    }

    func contains(_ key: Key) -> Bool { decoder.member(key.stringValue, in: object) != nil }

    /// The value token of `key`, which must be there.
    private func token(_ key: Key) throws -> Int {
        guard let token = decoder.member(key.stringValue, in: object) else {
            let description = "No value associated with key \(key) (\"\(key.stringValue)\")."
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: description))
        }
        return token
    }

    /// The value token of `key` for `decodeIfPresent`: nil when the key is missing or null.
    /// (The protocol's default would look the key up three times.)
    private func presentToken(_ key: Key) -> Int? {
        guard let token = decoder.member(key.stringValue, in: object), decoder.kind(of: token) != .null else { return nil }
        return token
    }

    private func path(_ key: Key) -> [any CodingKey] { codingPath + [key] }

    func decodeNil(forKey key: Key) throws -> Bool { decoder.decodeNil(at: try token(key)) }

    // Each method calls the decoder with its concrete type: a helper generic over the value
    // type here would be generic over `Key` too, and the optimizer does not specialize that.
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try decoder.decodeBool(at: token(key)) { path(key) } }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try decoder.decodeString(at: token(key)) { path(key) } }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try decoder.decodeDouble(at: token(key)) { path(key) } }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try decoder.decodeFloat(at: token(key)) { path(key) } }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try decoder.decodeInteger(type, at: token(key)) { path(key) } }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try decoder.decodeInteger(type, at: token(key)) { path(key) } }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try decoder.decodeInteger(type, at: token(key)) { path(key) } }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try decoder.decodeInteger(type, at: token(key)) { path(key) } }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try decoder.decodeInteger(type, at: token(key)) { path(key) } }
    func decode(_ type: Int128.Type, forKey key: Key) throws -> Int128 { try decoder.decodeInteger(type, at: token(key)) { path(key) } }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try decoder.decodeInteger(type, at: token(key)) { path(key) } }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try decoder.decodeInteger(type, at: token(key)) { path(key) } }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try decoder.decodeInteger(type, at: token(key)) { path(key) } }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try decoder.decodeInteger(type, at: token(key)) { path(key) } }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try decoder.decodeInteger(type, at: token(key)) { path(key) } }
    func decode(_ type: UInt128.Type, forKey key: Key) throws -> UInt128 { try decoder.decodeInteger(type, at: token(key)) { path(key) } }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try decoder.decodeValue(T.self, at: token(key), parentPath: codingPath, key: key)
    }

    func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? {
        try presentToken(key).map { try decoder.decodeBool(at: $0) { path(key) } }
    }
    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? {
        try presentToken(key).map { try decoder.decodeString(at: $0) { path(key) } }
    }
    func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? {
        try presentToken(key).map { try decoder.decodeDouble(at: $0) { path(key) } }
    }
    func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? {
        try presentToken(key).map { try decoder.decodeFloat(at: $0) { path(key) } }
    }
    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? {
        try presentToken(key).map { try decoder.decodeInteger(type, at: $0) { path(key) } }
    }
    func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? {
        try presentToken(key).map { try decoder.decodeInteger(type, at: $0) { path(key) } }
    }
    func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? {
        try presentToken(key).map { try decoder.decodeInteger(type, at: $0) { path(key) } }
    }
    func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? {
        try presentToken(key).map { try decoder.decodeInteger(type, at: $0) { path(key) } }
    }
    func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? {
        try presentToken(key).map { try decoder.decodeInteger(type, at: $0) { path(key) } }
    }
    func decodeIfPresent(_ type: Int128.Type, forKey key: Key) throws -> Int128? {
        try presentToken(key).map { try decoder.decodeInteger(type, at: $0) { path(key) } }
    }
    func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? {
        try presentToken(key).map { try decoder.decodeInteger(type, at: $0) { path(key) } }
    }
    func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? {
        try presentToken(key).map { try decoder.decodeInteger(type, at: $0) { path(key) } }
    }
    func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? {
        try presentToken(key).map { try decoder.decodeInteger(type, at: $0) { path(key) } }
    }
    func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? {
        try presentToken(key).map { try decoder.decodeInteger(type, at: $0) { path(key) } }
    }
    func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? {
        try presentToken(key).map { try decoder.decodeInteger(type, at: $0) { path(key) } }
    }
    func decodeIfPresent(_ type: UInt128.Type, forKey key: Key) throws -> UInt128? {
        try presentToken(key).map { try decoder.decodeInteger(type, at: $0) { path(key) } }
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let token = presentToken(key) else { return nil }
        return try decoder.decodeValue(T.self, at: token, parentPath: codingPath, key: key)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        let token = try token(key)
        guard decoder.kind(of: token) == .object else { throw decoder.mismatch([String: Any].self, at: token, path: path(key)) }
        return KeyedDecodingContainer(MessageJSONKeyedDecoding<NestedKey>(decoder: decoder, object: token, codingPath: path(key)))
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        let token = try token(key)
        guard decoder.kind(of: token) == .array else { throw decoder.mismatch([Any].self, at: token, path: path(key)) }
        return MessageJSONUnkeyedDecoding(decoder: decoder, array: token, codingPath: path(key))
    }

    func superDecoder() throws -> any Decoder { try superDecoder(key: MessageJSONKey.super) }
    func superDecoder(forKey key: Key) throws -> any Decoder { try superDecoder(key: key) }

    /// Like Foundation, a missing key gives a decoder of null.
    private func superDecoder(key: any CodingKey) throws -> any Decoder {
        let token = decoder.member(key.stringValue, in: object)
        return try decoder.detached(at: token, codingPath: codingPath + [key])
    }
}
