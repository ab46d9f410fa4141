/// The unkeyed container of `MessageJSONEncoder`: writes elements into the array open at
/// `depth` (a view; the state lives in the encoder).
struct MessageJSONUnkeyedEncoding: UnkeyedEncodingContainer {
    let encoder: MessageJSONEncoder
    let depth: Int
    let id: Int

    var codingPath: [any CodingKey] { encoder.path(to: depth) }
    var count: Int { encoder.count(depth: depth, id: id) }

    mutating func encodeNil() throws { try element { encoder, _ in encoder.writeNull() } }
    mutating func encode(_ value: Bool) throws { try element { encoder, _ in encoder.writeBool(value) } }
    mutating func encode(_ value: String) throws { try element { encoder, _ in encoder.writeString(value) } }
    mutating func encode(_ value: Double) throws { try element { try $0.writeFloat(value, path: $1) } }
    mutating func encode(_ value: Float) throws { try element { try $0.writeFloat(value, path: $1) } }
    mutating func encode(_ value: Int) throws { try element { encoder, _ in encoder.writeInteger(value) } }
    mutating func encode(_ value: Int8) throws { try element { encoder, _ in encoder.writeInteger(value) } }
    mutating func encode(_ value: Int16) throws { try element { encoder, _ in encoder.writeInteger(value) } }
    mutating func encode(_ value: Int32) throws { try element { encoder, _ in encoder.writeInteger(value) } }
    mutating func encode(_ value: Int64) throws { try element { encoder, _ in encoder.writeInteger(value) } }
    mutating func encode(_ value: Int128) throws { try element { encoder, _ in encoder.writeInteger(value) } }
    mutating func encode(_ value: UInt) throws { try element { encoder, _ in encoder.writeInteger(value) } }
    mutating func encode(_ value: UInt8) throws { try element { encoder, _ in encoder.writeInteger(value) } }
    mutating func encode(_ value: UInt16) throws { try element { encoder, _ in encoder.writeInteger(value) } }
    mutating func encode(_ value: UInt32) throws { try element { encoder, _ in encoder.writeInteger(value) } }
    mutating func encode(_ value: UInt64) throws { try element { encoder, _ in encoder.writeInteger(value) } }
    mutating func encode(_ value: UInt128) throws { try element { encoder, _ in encoder.writeInteger(value) } }

    mutating func encode<T: Encodable>(_ value: T) throws {
        let index = try encoder.beginElement(depth: depth, id: id)
        try encoder.encodeValue(value, key: MessageJSONKey.index(index))
    }

    /// Starts an element and writes it with `write`, which also gets the element's coding
    /// path (for errors; built only when called).
    private func element(_ write: (MessageJSONEncoder, () -> [any CodingKey]) throws -> Void) throws {
        let index = try encoder.beginElement(depth: depth, id: id)
        try write(encoder) { codingPath + [MessageJSONKey.index(index)] }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let (depth, id) = nested(UInt8(ascii: "{"), UInt8(ascii: "}"))
        return KeyedEncodingContainer(MessageJSONKeyedEncoding<NestedKey>(encoder: encoder, depth: depth, id: id))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let (depth, id) = nested(UInt8(ascii: "["), UInt8(ascii: "]"))
        return MessageJSONUnkeyedEncoding(encoder: encoder, depth: depth, id: id)
    }

    private func nested(_ opener: UInt8, _ closer: UInt8) -> (depth: Int, id: Int) {
        guard let index = try? encoder.beginElement(depth: depth, id: id) else { return encoder.deadContainer() }
        return encoder.push(opener, closer, key: MessageJSONKey.index(index))
    }

    // See MessageJSONKeyedEncoding.superEncoder(): such values go to Foundation.
    mutating func superEncoder() -> any Encoder {
        _ = encoder.deadContainer()
        return encoder
    }
}
