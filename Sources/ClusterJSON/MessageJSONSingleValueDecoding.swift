/// The single-value container of `MessageJSONDecoder`: the value at one token.
struct MessageJSONSingleValueDecoding: SingleValueDecodingContainer {
    let decoder: MessageJSONDecoder
    let token: Int

    // Read from the decoder rather than stored, which would make the container too big to
    // be an existential without a heap box.
    var codingPath: [any CodingKey] { decoder.codingPath }

    func decodeNil() -> Bool { decoder.decodeNil(at: token) }

    func decode(_ type: Bool.Type) throws -> Bool { try decoder.decodeBool(at: token) { codingPath } }
    func decode(_ type: String.Type) throws -> String { try decoder.decodeString(at: token) { codingPath } }
    func decode(_ type: Double.Type) throws -> Double { try decoder.decodeDouble(at: token) { codingPath } }
    func decode(_ type: Float.Type) throws -> Float { try decoder.decodeFloat(at: token) { codingPath } }
    func decode(_ type: Int.Type) throws -> Int { try decoder.decodeInteger(type, at: token) { codingPath } }
    func decode(_ type: Int8.Type) throws -> Int8 { try decoder.decodeInteger(type, at: token) { codingPath } }
    func decode(_ type: Int16.Type) throws -> Int16 { try decoder.decodeInteger(type, at: token) { codingPath } }
    func decode(_ type: Int32.Type) throws -> Int32 { try decoder.decodeInteger(type, at: token) { codingPath } }
    func decode(_ type: Int64.Type) throws -> Int64 { try decoder.decodeInteger(type, at: token) { codingPath } }
    func decode(_ type: Int128.Type) throws -> Int128 { try decoder.decodeInteger(type, at: token) { codingPath } }
    func decode(_ type: UInt.Type) throws -> UInt { try decoder.decodeInteger(type, at: token) { codingPath } }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try decoder.decodeInteger(type, at: token) { codingPath } }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try decoder.decodeInteger(type, at: token) { codingPath } }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try decoder.decodeInteger(type, at: token) { codingPath } }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try decoder.decodeInteger(type, at: token) { codingPath } }
    func decode(_ type: UInt128.Type) throws -> UInt128 { try decoder.decodeInteger(type, at: token) { codingPath } }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let position = decoder.position
        return try decoder.decodeValue(T.self, at: token, parentPath: position.parentPath, key: position.key)
    }
}
