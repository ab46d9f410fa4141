/// Checks a JSON document (RFC 8259) in one pass and lays out its values as tokens.
///
/// It rejects what `JSON.parse` rejects: trailing data, unterminated strings, raw control
/// characters in strings, bad escapes, unpaired UTF-16 surrogate escapes, leading zeros,
/// and nesting deeper than `MessageJSON.maximumDepth`. Invalid UTF-8 inside a string is
/// reported when that string is decoded.
struct MessageJSONParser {
    private let input: UnsafeBufferPointer<UInt8>
    private var position = 0
    private var tokens: [MessageJSONToken] = []

    /// Parses a whole document; the first token is its top-level value.
    static func parse(_ input: UnsafeBufferPointer<UInt8>) throws -> [MessageJSONToken] {
        var parser = MessageJSONParser(input: input)
        // A token takes two bytes of input or more, so this is one allocation for messages
        // up to 8 KiB; bigger ones grow geometrically as usual.
        parser.tokens.reserveCapacity(min(input.count / 2 + 1, 4096))
        // A UTF-8 byte order mark is skipped, as Foundation does.
        if input.count >= 3, input[0] == 0xEF, input[1] == 0xBB, input[2] == 0xBF { parser.position = 3 }
        try parser.parseValue(depth: 0)
        parser.skipWhitespace()
        guard parser.position == input.count else { throw parser.error("unexpected data after the JSON value") }
        return parser.tokens
    }

    private init(input: UnsafeBufferPointer<UInt8>) {
        self.input = input
    }

    private mutating func parseValue(depth: Int) throws {
        skipWhitespace()
        guard position < input.count else { throw error("unexpected end of data") }
        switch input[position] {
        case UInt8(ascii: "{"): try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): try parseString()
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): try parseNumber()
        case UInt8(ascii: "t"): try parseLiteral("true", .true)
        case UInt8(ascii: "f"): try parseLiteral("false", .false)
        case UInt8(ascii: "n"): try parseLiteral("null", .null)
        default: throw error("unexpected \(describe(input[position]))")
        }
    }

    private mutating func parseObject(depth: Int) throws {
        let index = try openContainer(.object, depth: depth)
        var count = 0
        if !consume(UInt8(ascii: "}")) {
            repeat {
                skipWhitespace()
                guard position < input.count, input[position] == UInt8(ascii: "\"") else {
                    throw error("expected a string key")
                }
                try parseString()
                skipWhitespace()
                guard consume(UInt8(ascii: ":")) else { throw error("expected ':' after an object key") }
                try parseValue(depth: depth)
                count += 1
            } while try separator(closer: UInt8(ascii: "}"))
        }
        tokens[index].end = tokens.count
        tokens[index].count = count
    }

    private mutating func parseArray(depth: Int) throws {
        let index = try openContainer(.array, depth: depth)
        var count = 0
        if !consume(UInt8(ascii: "]")) {
            repeat {
                try parseValue(depth: depth)
                count += 1
            } while try separator(closer: UInt8(ascii: "]"))
        }
        tokens[index].end = tokens.count
        tokens[index].count = count
    }

    private mutating func openContainer(_ kind: MessageJSONToken.Kind, depth: Int) throws -> Int {
        guard depth <= MessageJSON.maximumDepth else {
            throw error("more than \(MessageJSON.maximumDepth) nested arrays and objects")
        }
        let index = tokens.count
        tokens.append(MessageJSONToken(kind: kind, start: position, cursor: index + 1))
        position += 1
        skipWhitespace()
        return index
    }

    /// After a member or element: true at a comma, false at the container's closer.
    private mutating func separator(closer: UInt8) throws -> Bool {
        skipWhitespace()
        if consume(UInt8(ascii: ",")) { return true }
        if consume(closer) { return false }
        throw error(position < input.count ? "expected ',' or '\(Character(Unicode.Scalar(closer)))'" : "unexpected end of data")
    }

    private mutating func parseString() throws {
        let start = position + 1
        var index = start
        var isEscaped = false
        while true {
            guard index < input.count else { throw error("unterminated string") }
            let byte = input[index]
            if byte == UInt8(ascii: "\"") { break }
            if byte == UInt8(ascii: "\\") {
                isEscaped = true
                index = try skipEscape(at: index)
            } else if byte < 0x20 {
                throw error("unescaped control character in a string", at: index)
            } else {
                index += 1
            }
        }
        tokens.append(MessageJSONToken(kind: .string, isEscaped: isEscaped, start: start, end: index))
        position = index + 1
    }

    /// Checks the escape sequence at `index` (a backslash) and returns the index after it.
    private func skipEscape(at index: Int) throws -> Int {
        guard index + 1 < input.count else { throw error("unterminated string") }
        switch input[index + 1] {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
            UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
            return index + 2
        case UInt8(ascii: "u"):
            let unit = try hexEscape(at: index)
            if UTF16.isTrailSurrogate(unit) { throw error("unpaired UTF-16 surrogate escape", at: index) }
            guard UTF16.isLeadSurrogate(unit) else { return index + 6 }
            guard index + 7 < input.count, input[index + 6] == UInt8(ascii: "\\"), input[index + 7] == UInt8(ascii: "u"),
                UTF16.isTrailSurrogate(try hexEscape(at: index + 6))
            else { throw error("unpaired UTF-16 surrogate escape", at: index) }
            return index + 12
        default:
            throw error("invalid escape sequence", at: index)
        }
    }

    /// The code unit of the `\uXXXX` escape at `index`.
    private func hexEscape(at index: Int) throws -> UInt16 {
        guard index + 6 <= input.count, let unit = Self.hex4(input, at: index + 2) else {
            throw error("invalid \\u escape", at: index)
        }
        return unit
    }

    private static func hex4(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> UInt16? {
        var unit: UInt16 = 0
        for byte in bytes[index..<index + 4] {
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: return nil
            }
            unit = unit << 4 | UInt16(digit)
        }
        return unit
    }

    /// Checks the number grammar: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    private mutating func parseNumber() throws {
        let start = position
        var index = position
        if input[index] == UInt8(ascii: "-") { index += 1 }
        guard index < input.count, isDigit(input[index]) else { throw error("expected a digit", at: index) }
        if input[index] == UInt8(ascii: "0") {
            index += 1
            if index < input.count, isDigit(input[index]) { throw error("leading zero in a number", at: start) }
        } else {
            index = skipDigits(from: index)
        }
        var isInteger = true
        if index < input.count, input[index] == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            guard index < input.count, isDigit(input[index]) else { throw error("expected a digit", at: index) }
            index = skipDigits(from: index)
        }
        if index < input.count, input[index] | 0x20 == UInt8(ascii: "e") {
            isInteger = false
            index += 1
            if index < input.count, input[index] == UInt8(ascii: "+") || input[index] == UInt8(ascii: "-") { index += 1 }
            guard index < input.count, isDigit(input[index]) else { throw error("expected a digit", at: index) }
            index = skipDigits(from: index)
        }
        tokens.append(MessageJSONToken(kind: .number, isInteger: isInteger, start: start, end: index))
        position = index
    }

    private func skipDigits(from index: Int) -> Int {
        var index = index
        while index < input.count, isDigit(input[index]) { index += 1 }
        return index
    }

    private func isDigit(_ byte: UInt8) -> Bool { byte &- UInt8(ascii: "0") < 10 }

    private mutating func parseLiteral(_ literal: StaticString, _ kind: MessageJSONToken.Kind) throws {
        let length = literal.utf8CodeUnitCount
        guard position + length <= input.count,
            UnsafeBufferPointer(start: literal.utf8Start, count: length).elementsEqual(input[position..<position + length])
        else { throw error("unexpected \(describe(input[position]))") }
        tokens.append(MessageJSONToken(kind: kind, start: position, end: position + length))
        position += length
    }

    private mutating func skipWhitespace() {
        while position < input.count {
            switch input[position] {
            case UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\t"): position += 1
            default: return
            }
        }
    }

    private mutating func consume(_ byte: UInt8) -> Bool {
        guard position < input.count, input[position] == byte else { return false }
        position += 1
        return true
    }

    private func describe(_ byte: UInt8) -> String {
        (0x21..<0x7F).contains(byte) ? "character '\(Character(Unicode.Scalar(byte)))'" : "byte 0x\(String(byte, radix: 16))"
    }

    private func error(_ message: String, at offset: Int? = nil) -> DecodingError {
        .dataCorrupted(.init(codingPath: [], debugDescription: "The given data was not valid JSON: \(message) at byte \(offset ?? position)."))
    }

    // MARK: Strings

    /// The text of a string token whose bytes hold escapes (which the parser checked).
    /// Nil when the bytes are not valid UTF-8.
    static func unescape(_ span: UnsafeBufferPointer<UInt8>) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(span.count)
        var index = 0
        while index < span.count {
            let byte = span[index]
            guard byte == UInt8(ascii: "\\") else {
                bytes.append(byte)
                index += 1
                continue
            }
            let escape = span[index + 1]
            index += 2
            switch escape {
            case UInt8(ascii: "b"): bytes.append(0x08)
            case UInt8(ascii: "f"): bytes.append(0x0C)
            case UInt8(ascii: "n"): bytes.append(0x0A)
            case UInt8(ascii: "r"): bytes.append(0x0D)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "u"):
                var scalar = UInt32(hex4(span, at: index)!)
                index += 4
                if UTF16.isLeadSurrogate(UInt16(scalar)) {
                    let trail = UInt32(hex4(span, at: index + 2)!)
                    index += 6
                    scalar = 0x10000 + (scalar - 0xD800) << 10 + (trail - 0xDC00)
                }
                bytes.append(contentsOf: UTF8.encode(Unicode.Scalar(scalar)!)!)
            default: bytes.append(escape)  // " \ /
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}
