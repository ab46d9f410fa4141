internal import FoundationEssentials

/// Decodes `Decodable` values from JSON bytes laid out as tokens by `MessageJSONParser`.
///
/// One instance serves a whole value: nested values are decoded through it with `current`
/// pointing at their token (saved and restored around each), and its containers are token
/// indexes, so they stay valid in whatever order hand-written code uses them. Scalars are
/// converted from their bytes when asked for, with Foundation's checks and errors.
final class MessageJSONDecoder: Decoder {
    typealias Token = MessageJSONToken

    // Dynamic exclusivity checks on these class properties would cost more than the reads
    // themselves, and none is needed: one decoding runs on one thread and no access here
    // spans a call out to user code.
    private let bytes: [UInt8]
    /// A `var` only for the objects' lookup cursors.
    @exclusivity(unchecked) private var tokens: [Token]
    /// The token of the value being decoded.
    @exclusivity(unchecked) private var current = 0
    /// The coding path of the value being decoded, kept as its parent's path and its own
    /// key so that decoding a scalar builds no array.
    @exclusivity(unchecked) private var parentPath: [any CodingKey] = []
    @exclusivity(unchecked) private var key: (any CodingKey)?

    init(parsing bytes: [UInt8]) throws {
        self.bytes = bytes
        tokens = try bytes.withUnsafeBufferPointer { try MessageJSONParser.parse($0) }
    }

    private init(bytes: [UInt8], tokens: [Token], current: Int, codingPath: [any CodingKey]) {
        self.bytes = bytes
        self.tokens = tokens
        self.current = current
        self.parentPath = codingPath
    }

    /// A decoder of its own for the value at `token` (null when nil), for `superDecoder`,
    /// whose result may be used at any time rather than within one nested call.
    func detached(at token: Int?, codingPath: [any CodingKey]) throws -> MessageJSONDecoder {
        guard let token else {
            let null = Array("null".utf8)
            let tokens = try null.withUnsafeBufferPointer { try MessageJSONParser.parse($0) }
            return MessageJSONDecoder(bytes: null, tokens: tokens, current: 0, codingPath: codingPath)
        }
        return MessageJSONDecoder(bytes: bytes, tokens: tokens, current: token, codingPath: codingPath)
    }

    var userInfo: [CodingUserInfoKey: Any] { [:] }

    var codingPath: [any CodingKey] { key.map { parentPath + [$0] } ?? parentPath }

    // MARK: Values

    func decodeTopLevel<T: Decodable>(_ type: T.Type) throws -> T {
        try decodeValue(T.self, at: 0, parentPath: [], key: nil)
    }

    /// Decodes the value at `token`: the types Foundation's `JSONDecoder` reads in its own
    /// way first, then anything else through its `init(from:)`.
    func decodeValue<T: Decodable>(_ type: T.Type, at token: Int, parentPath: [any CodingKey], key: (any CodingKey)?) throws -> T {
        // Comparing metatypes is cheaper than trying casts on every value. The common
        // scalars skip init(from:) and its single-value container (arrays of them go
        // through here once per element); once the type is known equal, the bit cast is a
        // plain copy.
        func path() -> [any CodingKey] { key.map { parentPath + [$0] } ?? parentPath }
        if T.self == Int.self { return unsafeBitCast(try decodeInteger(Int.self, at: token, path: path), to: T.self) }
        if T.self == String.self { return unsafeBitCast(try decodeString(at: token, path: path), to: T.self) }
        if T.self == Double.self { return unsafeBitCast(try decodeDouble(at: token, path: path), to: T.self) }
        if T.self == Bool.self { return unsafeBitCast(try decodeBool(at: token, path: path), to: T.self) }
        // Arrays of them skip Array.init(from:), which runs unspecialized, per element.
        if T.self == [Int].self {
            let array = try decodeArray(at: token, parentPath, key) { try $0.decodeInteger(Int.self, at: $1, path: $2) }
            return unsafeBitCast(array, to: T.self)
        }
        if T.self == [String].self {
            return unsafeBitCast(try decodeArray(at: token, parentPath, key) { try $0.decodeString(at: $1, path: $2) }, to: T.self)
        }
        if T.self == [Double].self {
            return unsafeBitCast(try decodeArray(at: token, parentPath, key) { try $0.decodeDouble(at: $1, path: $2) }, to: T.self)
        }
        if T.self == Data.self || T.self == URL.self || T.self == Decimal.self {
            return try decodeFoundationValue(T.self, at: token, path: path)
        }
        let saved = (current, self.parentPath, self.key)
        (current, self.parentPath, self.key) = (token, parentPath, key)
        defer { (current, self.parentPath, self.key) = saved }
        return try T(from: self)
    }

    private func decodeFoundationValue<T>(_ type: T.Type, at token: Int, path: () -> [any CodingKey]) throws -> T {
        if T.self == Decimal.self {
            guard tokens[token].kind == .number, let value = Decimal(string: String(decoding: text(of: token), as: UTF8.self)) else {
                throw mismatch(Decimal.self, at: token, path: path())
            }
            return value as! T
        }
        let string = try decodeString(at: token, path: path)
        if T.self == URL.self {
            guard let url = URL(string: string) else {
                throw DecodingError.dataCorrupted(.init(codingPath: path(), debugDescription: "Invalid URL string."))
            }
            return url as! T
        }
        guard let data = Data(base64Encoded: string) else {
            throw DecodingError.dataCorrupted(.init(codingPath: path(), debugDescription: "Encountered Data is not valid Base64."))
        }
        return data as! T
    }

    /// The elements of the array at `token`, each read by `element`.
    private func decodeArray<Element>(
        at token: Int, _ parentPath: [any CodingKey], _ key: (any CodingKey)?,
        _ element: (MessageJSONDecoder, Int, () -> [any CodingKey]) throws -> Element
    ) throws -> [Element] {
        func path() -> [any CodingKey] { key.map { parentPath + [$0] } ?? parentPath }
        guard tokens[token].kind == .array else { throw mismatch([Any].self, at: token, path: path()) }
        let count = tokens[token].count
        var elements: [Element] = []
        elements.reserveCapacity(count)
        var next = token + 1
        for index in 0..<count {
            elements.append(try element(self, next) { path() + [MessageJSONKey.index(index)] })
            next = self.next(after: next)
        }
        return elements
    }

    // MARK: Containers

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard tokens[current].kind == .object else { throw mismatch([String: Any].self, at: current, path: codingPath) }
        return KeyedDecodingContainer(MessageJSONKeyedDecoding<Key>(decoder: self, object: current, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard tokens[current].kind == .array else { throw mismatch([Any].self, at: current, path: codingPath) }
        return MessageJSONUnkeyedDecoding(decoder: self, array: current, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        MessageJSONSingleValueDecoding(decoder: self, token: current)
    }

    /// The path and key of the value being decoded, for a single-value container that
    /// decodes a nested value in its place.
    var position: (parentPath: [any CodingKey], key: (any CodingKey)?) { (parentPath, key) }

    // MARK: Tokens

    func kind(of token: Int) -> Token.Kind { tokens[token].kind }

    /// The number of elements of an array, or members of an object.
    func count(of token: Int) -> Int { tokens[token].count }

    /// The token after `token` and everything inside it.
    func next(after token: Int) -> Int {
        tokens[token].isContainer ? tokens[token].end : token + 1
    }

    /// The value token of the member `name` of the object at `object`, or nil.
    ///
    /// Scans the keys comparing UTF-8 bytes (objects in messages are small), starting
    /// where the last lookup ended, so reading keys in document order costs one comparison
    /// each. With duplicate keys, the first from the cursor wins.
    func member(_ name: String, in object: Int) -> Int? {
        let end = tokens[object].end
        guard end > object + 1 else { return nil }
        var name = name
        return name.withUTF8 { name in
            bytes.withUnsafeBufferPointer { bytes in
                let cursor = tokens[object].cursor
                var keyToken = cursor
                repeat {
                    let valueToken = keyToken + 1
                    let following = next(after: valueToken)
                    if keyMatches(keyToken, name, bytes) {
                        tokens[object].cursor = following < end ? following : object + 1
                        return valueToken
                    }
                    keyToken = following < end ? following : object + 1
                } while keyToken != cursor
                return nil
            }
        }
    }

    private func keyMatches(_ token: Int, _ name: UnsafeBufferPointer<UInt8>, _ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        let key = tokens[token]
        guard !key.isEscaped else {
            let text = MessageJSONParser.unescape(UnsafeBufferPointer(rebasing: bytes[key.start..<key.end]))
            return text.map { $0.utf8.elementsEqual(name) } ?? false
        }
        guard key.end - key.start == name.count else { return false }
        var index = 0
        while index < name.count {
            guard bytes[key.start + index] == name[index] else { return false }
            index += 1
        }
        return true
    }

    /// The bytes of a scalar token.
    private func text(of token: Int) -> ArraySlice<UInt8> { bytes[tokens[token].start..<tokens[token].end] }

    // MARK: Scalars

    func decodeNil(at token: Int) -> Bool { tokens[token].kind == .null }

    func decodeBool(at token: Int, path: () -> [any CodingKey]) throws -> Bool {
        switch tokens[token].kind {
        case .true: return true
        case .false: return false
        default: throw mismatch(Bool.self, at: token, path: path())
        }
    }

    func decodeString(at token: Int, path: () -> [any CodingKey]) throws -> String {
        let string = tokens[token]
        guard string.kind == .string else { throw mismatch(String.self, at: token, path: path()) }
        let value = bytes.withUnsafeBufferPointer { bytes in
            let text = UnsafeBufferPointer(rebasing: bytes[string.start..<string.end])
            return string.isEscaped ? MessageJSONParser.unescape(text) : String(validating: text, as: UTF8.self)
        }
        guard let value else {
            throw DecodingError.dataCorrupted(.init(codingPath: path(), debugDescription: "The string is not valid UTF-8."))
        }
        return value
    }

    func decodeInteger<T: FixedWidthInteger>(_ type: T.Type, at token: Int, path: () -> [any CodingKey]) throws -> T {
        let number = tokens[token]
        guard number.kind == .number else { throw mismatch(T.self, at: token, path: path()) }
        let value: T? = bytes.withUnsafeBufferPointer { bytes in
            MessageJSONNumber.integer(UnsafeBufferPointer(rebasing: bytes[number.start..<number.end]), isInteger: number.isInteger)
        }
        guard let value else { throw unrepresentable(T.self, at: token, path: path()) }
        return value
    }

    func decodeDouble(at token: Int, path: () -> [any CodingKey]) throws -> Double {
        let number = tokens[token]
        guard number.kind == .number else { throw mismatch(Double.self, at: token, path: path()) }
        let value = bytes.withUnsafeBufferPointer { bytes in
            MessageJSONNumber.double(UnsafeBufferPointer(rebasing: bytes[number.start..<number.end]))
        }
        guard let value else { throw unrepresentable(Double.self, at: token, path: path()) }
        return value
    }

    func decodeFloat(at token: Int, path: () -> [any CodingKey]) throws -> Float {
        let number = tokens[token]
        guard number.kind == .number else { throw mismatch(Float.self, at: token, path: path()) }
        let value = bytes.withUnsafeBufferPointer { bytes in
            MessageJSONNumber.float(UnsafeBufferPointer(rebasing: bytes[number.start..<number.end]))
        }
        guard let value else { throw unrepresentable(Float.self, at: token, path: path()) }
        return value
    }

    // MARK: Errors

    /// What Foundation throws when a value is not of the type asked for.
    func mismatch(_ type: Any.Type, at token: Int, path: [any CodingKey]) -> DecodingError {
        let kind = tokens[token].kind
        if kind == .null {
            let description = "Cannot get value of type \(type) -- found null value instead"
            return .valueNotFound(type, .init(codingPath: path, debugDescription: description))
        }
        let description = "Expected to decode \(type) but found \(kind.description) instead."
        return .typeMismatch(type, .init(codingPath: path, debugDescription: description))
    }

    private func unrepresentable(_ type: Any.Type, at token: Int, path: [any CodingKey]) -> DecodingError {
        let number = String(decoding: text(of: token), as: UTF8.self)
        return .dataCorrupted(.init(codingPath: path, debugDescription: "Parsed JSON number <\(number)> does not fit in \(type)."))
    }
}
