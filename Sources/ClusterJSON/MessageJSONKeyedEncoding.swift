/// The keyed container of `MessageJSONEncoder`: writes `"key":value` members into the object
/// open at `depth` (a view; the state lives in the encoder).
struct MessageJSONKeyedEncoding<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let encoder: MessageJSONEncoder
    let depth: Int
    let id: Int

    var codingPath: [any CodingKey] { encoder.path(to: depth) }

    // Each method calls the encoder with its concrete type: a helper generic over the value
    // type here would be generic over `Key` too, and the optimizer does not specialize that.
    mutating func encodeNil(forKey key: Key) throws { try member(key) { $0.writeNull() } }
    mutating func encode(_ value: Bool, forKey key: Key) throws { try member(key) { $0.writeBool(value) } }
    mutating func encode(_ value: String, forKey key: Key) throws { try member(key) { $0.writeString(value) } }
    mutating func encode(_ value: Double, forKey key: Key) throws {
        try member(key) { try $0.writeFloat(value) { codingPath + [key] } }
    }
    mutating func encode(_ value: Float, forKey key: Key) throws {
        try member(key) { try $0.writeFloat(value) { codingPath + [key] } }
    }
    mutating func encode(_ value: Int, forKey key: Key) throws { try member(key) { $0.writeInteger(value) } }
    mutating func encode(_ value: Int8, forKey key: Key) throws { try member(key) { $0.writeInteger(value) } }
    mutating func encode(_ value: Int16, forKey key: Key) throws { try member(key) { $0.writeInteger(value) } }
    mutating func encode(_ value: Int32, forKey key: Key) throws { try member(key) { $0.writeInteger(value) } }
    mutating func encode(_ value: Int64, forKey key: Key) throws { try member(key) { $0.writeInteger(value) } }
    mutating func encode(_ value: Int128, forKey key: Key) throws { try member(key) { $0.writeInteger(value) } }
    mutating func encode(_ value: UInt, forKey key: Key) throws { try member(key) { $0.writeInteger(value) } }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { try member(key) { $0.writeInteger(value) } }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { try member(key) { $0.writeInteger(value) } }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { try member(key) { $0.writeInteger(value) } }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { try member(key) { $0.writeInteger(value) } }
    mutating func encode(_ value: UInt128, forKey key: Key) throws { try member(key) { $0.writeInteger(value) } }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try member(key) { try $0.encodeValue(value, key: key) }
    }

    /// Starts the member `key` and writes its value with `write`.
    private func member(_ key: Key, _ write: (MessageJSONEncoder) throws -> Void) throws {
        try encoder.beginMember(key, depth: depth, id: id)
        try write(encoder)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let (depth, id) = nested(UInt8(ascii: "{"), UInt8(ascii: "}"), forKey: key)
        return KeyedEncodingContainer(MessageJSONKeyedEncoding<NestedKey>(encoder: encoder, depth: depth, id: id))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let (depth, id) = nested(UInt8(ascii: "["), UInt8(ascii: "]"), forKey: key)
        return MessageJSONUnkeyedEncoding(encoder: encoder, depth: depth, id: id)
    }

    private func nested(_ opener: UInt8, _ closer: UInt8, forKey key: Key) -> (depth: Int, id: Int) {
        do {
            try encoder.beginMember(key, depth: depth, id: id)
        } catch {
            return encoder.deadContainer()
        }
        return encoder.push(opener, closer, key: key)
    }

    // A super encoder's value is written whenever its user gets round to it, which a
    // stream cannot wait for: such values go to Foundation.
    mutating func superEncoder() -> any Encoder {
        _ = encoder.deadContainer()
        return encoder
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder { superEncoder() }
}
