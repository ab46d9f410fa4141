/// The unkeyed container of `MessageJSONDecoder`: walks the elements of the array at a token.
struct MessageJSONUnkeyedDecoding: UnkeyedDecodingContainer {
    let decoder: MessageJSONDecoder
    let codingPath: [any CodingKey]
    private let elementCount: Int
    private(set) var currentIndex = 0
    /// The token of the element at `currentIndex`.
    private var token: Int

    init(decoder: MessageJSONDecoder, array: Int, codingPath: [any CodingKey]) {
        self.decoder = decoder
        self.codingPath = codingPath
        self.elementCount = decoder.count(of: array)
        self.token = array + 1
    }

    var count: Int? { elementCount }
    var isAtEnd: Bool { currentIndex >= elementCount }

    private var elementPath: [any CodingKey] { codingPath + [MessageJSONKey.index(currentIndex)] }

    /// Reads the next element with `read` and moves past it; on error it stays put, as in Foundation.
    private mutating func next<T>(
        _ type: T.Type, _ read: (MessageJSONDecoder, Int, () -> [any CodingKey]) throws -> T
    ) throws -> T {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(T.self, .init(codingPath: elementPath, debugDescription: "Unkeyed container is at end."))
        }
        let (codingPath, index) = (codingPath, currentIndex)
        let value = try read(decoder, token) { codingPath + [MessageJSONKey.index(index)] }
        token = decoder.next(after: token)
        currentIndex += 1
        return value
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(Any?.self, .init(codingPath: elementPath, debugDescription: "Unkeyed container is at end."))
        }
        guard decoder.decodeNil(at: token) else { return false }
        token += 1
        currentIndex += 1
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { try next(type) { try $0.decodeBool(at: $1, path: $2) } }
    mutating func decode(_ type: String.Type) throws -> String { try next(type) { try $0.decodeString(at: $1, path: $2) } }
    mutating func decode(_ type: Double.Type) throws -> Double { try next(type) { try $0.decodeDouble(at: $1, path: $2) } }
    mutating func decode(_ type: Float.Type) throws -> Float { try next(type) { try $0.decodeFloat(at: $1, path: $2) } }
    mutating func decode(_ type: Int.Type) throws -> Int { try integer(type) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
    mutating func decode(_ type: Int128.Type) throws -> Int128 { try integer(type) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }
    mutating func decode(_ type: UInt128.Type) throws -> UInt128 { try integer(type) }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let (index, parentPath) = (MessageJSONKey.index(currentIndex), codingPath)
        return try next(type) { decoder, token, _ in try decoder.decodeValue(T.self, at: token, parentPath: parentPath, key: index) }
    }

    private mutating func integer<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        try next(type) { try $0.decodeInteger(T.self, at: $1, path: $2) }
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try next(KeyedDecodingContainer<NestedKey>.self) { decoder, token, path in
            guard decoder.kind(of: token) == .object else { throw decoder.mismatch([String: Any].self, at: token, path: path()) }
            return KeyedDecodingContainer(MessageJSONKeyedDecoding<NestedKey>(decoder: decoder, object: token, codingPath: path()))
        }
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try next((any UnkeyedDecodingContainer).self) { decoder, token, path in
            guard decoder.kind(of: token) == .array else { throw decoder.mismatch([Any].self, at: token, path: path()) }
            return MessageJSONUnkeyedDecoding(decoder: decoder, array: token, codingPath: path())
        }
    }

    mutating func superDecoder() throws -> any Decoder {
        try next((any Decoder).self) { decoder, token, path in try decoder.detached(at: token, codingPath: path()) }
    }
}
