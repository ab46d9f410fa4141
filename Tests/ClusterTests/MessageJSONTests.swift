@testable import Cluster
@testable import ClusterJSON
import FoundationEssentials
import Testing


// MARK: Tests

@Suite struct MessageJSONTests {
    @Test func structsRoundTripFieldByField() throws {
        let value = Scalars()
        let decoded = try MessageJSON.decode(Scalars.self, from: try MessageJSON.encode(value))
        #expect(decoded.int == value.int)
        #expect(decoded.int8 == value.int8)
        #expect(decoded.int16 == value.int16)
        #expect(decoded.int32 == value.int32)
        #expect(decoded.int64 == value.int64)
        #expect(decoded.uint == value.uint)
        #expect(decoded.uint8 == value.uint8)
        #expect(decoded.uint16 == value.uint16)
        #expect(decoded.uint32 == value.uint32)
        #expect(decoded.uint64 == value.uint64)
        #expect(decoded.int128 == value.int128)
        #expect(decoded.uint128 == value.uint128)
        #expect(decoded.float == value.float)
        #expect(decoded.double == value.double)
        #expect(decoded.bool == value.bool)
        #expect(decoded.string == value.string)

        let nested = try MessageJSON.decode(Nested.self, from: try MessageJSON.encode(Nested()))
        #expect(nested.name == "outer")
        #expect(nested.inner == Inner(x: 1.5, flags: [true, false]))
        #expect(nested.list == Nested().list)
        #expect(nested.matrix == [[1, 2], [], [3]])
        #expect(nested.words == ["a", "", "c/d"])
        #expect(nested.doubles.map(\.bitPattern) == [0.5, -0.0, 1e300].map(\.bitPattern))
        #expect(nested.empty == [])
        #expect(nested.emptyObject == Empty())
    }

    @Test func everyShapeMatchesFoundationBothWays() throws {
        try crossCheck(Scalars())
        try crossCheck(Optionals(a: nil, b: nil, c: nil))
        try crossCheck(Optionals(a: 0, b: "", c: [nil, 2]))
        try crossCheck(Nested())
        try crossCheck(Shape.circle(radius: 0.25))
        try crossCheck([Shape.rect(1, -1), .labeled(name: "x", tags: []), .none])
        try crossCheck([Color.red, .green])
        try crossCheck([Level.low, .high])
        try crossCheck(FoundationTypes())
        try crossCheck(Everything())
        try crossCheck(Maps())
        try crossCheck(InOrder())
        try crossCheck([[String: [Int]]]())
        try crossCheck(["k": [Optional(1), nil]])
        try crossCheck([1: [2: 3]])
        try crossCheck(Set([1, 2, 3]))
        try crossCheck(JSONValue.object(["a": .array([.null, .bool(true), .number(-1.5), .string("s"), .object([:])])]))
    }

    @Test func topLevelFragmentsAndNil() throws {
        try crossCheck(42)
        try crossCheck("text")
        try crossCheck(true)
        try crossCheck(Optional<Int>.none)
        try crossCheck(Optional(3))
        try crossCheck([Int]())
        try crossCheck(Empty())
        #expect(text(try MessageJSON.encode(Optional<Int>.none)) == "null")
        #expect(text(try MessageJSON.encode(Optionals())) == "{}")  // nil members are omitted
    }

    @Test func interleavedWritesFallBackToFoundation() throws {
        for value in [Interleaved() as any Encodable, SiblingLists(), SwallowsErrors(), SwallowsNaN()] {
            #expect(try streamed(value).needsFallback)
            #expect(try sameDocument(value))
        }
        let object = try MessageJSON.decode([String: JSONValue].self, from: try MessageJSON.encode(Interleaved()))
        #expect(object == ["a": .number(1), "b": .number(3), "nested": .object(["x": .number(2), "y": .number(4)])])
        #expect(text(try MessageJSON.encode(SwallowsNaN())) == #"{"y":1}"#)
        let lists = try MessageJSON.decode([String: [Int]].self, from: try MessageJSON.encode(SiblingLists()))
        #expect(lists == ["first": [1, 3], "second": [2]])
    }

    @Test func errorsFromEncodeAreNotSwallowed() {
        #expect(throws: Fails.Failure.self) { try MessageJSON.encode([Fails()]) }
    }

    @Test func largeMessagesRoundTrip() throws {
        let list = (0..<20_000).map { Inner(x: Double($0) / 7, flags: [$0 % 2 == 0]) }
        let bytes = try MessageJSON.encode(list)
        #expect(bytes.count > 500_000)
        #expect(try MessageJSON.decode([Inner].self, from: bytes) == list)
        #expect(try JSONDecoder().decode([Inner].self, from: Data(bytes)) == list)
    }

    @Test func subclassesStreamOrFallBackAsTheyMust() throws {
        let shared = SharedContainer(id: 1, name: "n")
        #expect(try !streamed(shared).needsFallback)
        #expect(try sameDocument(shared))
        let sharedBack = try MessageJSON.decode(SharedContainer.self, from: try MessageJSON.encode(shared))
        #expect(sharedBack.id == 1 && sharedBack.name == "n")

        let superKey = SuperKey(id: 2, name: "m")
        #expect(try streamed(superKey).needsFallback)
        #expect(try sameDocument(superKey))
        let superBack = try MessageJSON.decode(SuperKey.self, from: try MessageJSON.encode(superKey))
        #expect(superBack.id == 2 && superBack.name == "m")
    }

    @Test func valuesThatEncodeNothing() throws {
        #expect(throws: EncodingError.self) { try MessageJSON.encode(EncodesNothing()) }
        #expect(throws: EncodingError.self) { try JSONEncoder().encode(EncodesNothing()) }
        #expect(try sameDocument(HoldsNothing()))
        #expect(text(try MessageJSON.encode(HoldsNothing())) == #"{"value":{}}"#)
    }

    @Test func everyControlCharacterAndNonASCIIIsEscapedOrKept() throws {
        let controls = String((0..<0x20).map { Character(Unicode.Scalar(UInt8($0))) })
        let string = controls + "\"\\/\u{7F} é ß 中文 😀 👩‍👩‍👧 \u{2028}"
        try crossCheck(string)
        let encoded = text(try MessageJSON.encode(string))
        #expect(encoded.hasPrefix(#""\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f\u0010"#))
        #expect(encoded.contains(#"\u001e\u001f\"\\/"#))
        #expect(!encoded.utf8.contains { $0 < 0x20 })
        #expect(try MessageJSON.decode(String.self, from: try MessageJSON.encode(string)) == string)
    }

    @Test func escapesDecodeIncludingSurrogatePairs() throws {
        let json = #""\"\\\/\b\f\n\r\t\u0000\u00e9\u4E2D\ud83d\ude00 \uD834\uDD1E""#
        let expected = "\"\\/\u{8}\u{C}\n\r\t\u{0}é中😀 𝄞"
        #expect(try MessageJSON.decode(String.self, from: Array(json.utf8)) == expected)
        #expect(try JSONDecoder().decode(String.self, from: Data(json.utf8)) == expected)
        // Keys with escapes are found too.
        #expect(try MessageJSON.decode(One.self, from: Array(#"{"\u0061":5}"#.utf8)) == One(a: 5))
    }

    @Test(arguments: [
        "", " ", "{", "}", "[", "]", "[1", "[1,]", "[,1]", "[1 2]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{a:1}",
        "{'a':1}", "{\"a\" 1}", "{\"a\":1 \"b\":2}", "{1:2}", "01", "-01", "00", "1.", ".5", "-", "+1", "1e", "1e+",
        "1.e5", "0x10", "NaN", "Infinity", "-Infinity", "tru", "nul", "falsey", "True", "\"abc", "\"\\x\"", "\"\\u12\"",
        "\"\\u12G4\"", "\"a\u{1}b\"", "\"tab\tin\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\\ud800x\"",
        "[1] x", "1 2", "{\"a\":1}}", "[\"a\"]]", "/* */1", "1 // comment", "\u{0}",
    ])
    func malformedJSONIsRejected(json: String) {
        let error = decodingError { _ = try MessageJSON.decode(JSONValue.self, from: Array(json.utf8)) }
        #expect(isDataCorrupted(error), "\(json.debugDescription) gave \(String(describing: error))")
    }

    @Test func nestingIsLimitedTo512() throws {
        func nested(_ depth: Int) -> [UInt8] { Array((String(repeating: "[", count: depth) + String(repeating: "]", count: depth)).utf8) }
        let deepest = nested(512)
        #expect(throws: Never.self) { try deepest.withUnsafeBufferPointer { _ = try MessageJSONParser.parse($0) } }
        #expect(isDataCorrupted(decodingError { _ = try MessageJSON.decode(JSONValue.self, from: nested(513)) }))
        #expect(isDataCorrupted(decodingError { _ = try JSONDecoder().decode(JSONValue.self, from: Data(nested(513))) }))
    }

    @Test func invalidUTF8InAStringIsRejected() {
        let bytes: [UInt8] = [0x22, 0x61, 0xFF, 0x22]
        #expect(isDataCorrupted(decodingError { _ = try MessageJSON.decode(String.self, from: bytes) }))
    }

    @Test func whitespaceAndAByteOrderMarkAreAccepted() throws {
        #expect(try MessageJSON.decode([Int].self, from: Array(" \t\r\n[ 1 ,\n2 ] \n".utf8)) == [1, 2])
        #expect(try MessageJSON.decode(Int.self, from: [0xEF, 0xBB, 0xBF] + Array("7".utf8)) == 7)
    }

    @Test func integerEdgesRoundTrip() throws {
        try crossCheck([Int.min, Int.max, 0, -1])
        try crossCheck([UInt64.max, 0])
        try crossCheck([Int8.min, Int8.max])
        try crossCheck([Int128.min, Int128.max])
        try crossCheck([UInt128.max])
        #expect(text(try MessageJSON.encode([Int.min, Int.max])) == "[-9223372036854775808,9223372036854775807]")
        #expect(text(try MessageJSON.encode(UInt64.max)) == "18446744073709551615")
        #expect(try MessageJSON.decode(Int.self, from: Array("-9223372036854775808".utf8)) == .min)
        #expect(try MessageJSON.decode(UInt64.self, from: Array("18446744073709551615".utf8)) == .max)
    }

    @Test func integerOverflowAndFractionsAreRejected() {
        func rejects<T: FixedWidthInteger & Decodable>(_ json: String, as type: T.Type, sourceLocation: SourceLocation = #_sourceLocation) {
            let error = decodingError { _ = try MessageJSON.decode(T.self, from: Array(json.utf8)) }
            #expect(error != nil, "\(json) as \(T.self)", sourceLocation: sourceLocation)
        }
        rejects("9223372036854775808", as: Int.self)
        rejects("-9223372036854775809", as: Int.self)
        rejects("18446744073709551616", as: UInt64.self)
        rejects("-1", as: UInt.self)
        rejects("256", as: UInt8.self)
        rejects("-129", as: Int8.self)
        rejects("1.5", as: Int.self)
        rejects("1e19", as: Int.self)
        rejects("1e-2", as: Int.self)
        rejects("0.15e1", as: Int8.self)
        rejects("100000000000000000000000000000000000000000000000", as: Int.self)
        rejects("1e999999999999999999", as: Int.self)
        rejects("340282366920938463463374607431768211456", as: UInt128.self)
        rejects("\"1\"", as: Int.self)
        rejects("true", as: Int.self)
        rejects("null", as: Int.self)
    }

    @Test func integralNumbersWithFractionOrExponentDecodeExactly() throws {
        for (json, value) in [("1.0", 1), ("1e2", 100), ("1.25e2", 125), ("12500e-2", 125), ("-0", 0), ("0e5", 0), ("0.000", 0), ("-4.0E+1", -40)] {
            #expect(try MessageJSON.decode(Int.self, from: Array(json.utf8)) == value, "\(json)")
            #expect(try JSONDecoder().decode(Int.self, from: Data(json.utf8)) == value, "\(json)")
        }
        #expect(try MessageJSON.decode(Int64.self, from: Array("9223372036854775807.000e0".utf8)) == .max)
        #expect(try MessageJSON.decode(UInt.self, from: Array("-0".utf8)) == 0)
    }

    @Test func doubleEdgesRoundTripExactly() throws {
        let values: [Double] = [
            0.1, 1e300, -0.0, 0, .leastNonzeroMagnitude /* 5e-324 */, .leastNormalMagnitude, .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
            1.0 / 3, 123456789.123, 9007199254740994, 1e16, 1e-7, 0.30000000000000004, -2.5, 1e22, 1e23,
        ]
        for value in values {
            let decoded = try MessageJSON.decode(Double.self, from: try MessageJSON.encode(value))
            #expect(decoded.bitPattern == value.bitPattern, "\(value)")
            #expect(try JSONDecoder().decode(Double.self, from: Data(try MessageJSON.encode(value))).bitPattern == value.bitPattern)
            #expect(try MessageJSON.decode(Double.self, from: Array(try JSONEncoder().encode(value))).bitPattern == value.bitPattern)
        }
        #expect(text(try MessageJSON.encode([0.1, 1e300, -0.0, .leastNonzeroMagnitude, 2])) == "[0.1,1e+300,-0,5e-324,2]")
        let floats: [Float] = [0.1, -0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude, 16_777_215, 3.4e38]
        for value in floats {
            #expect(try MessageJSON.decode(Float.self, from: try MessageJSON.encode(value)).bitPattern == value.bitPattern, "\(value)")
        }
    }

    @Test func doubleTextDecodesCorrectlyRounded() throws {
        let texts = [
            "0.1", "1E300", "-0", "-0.0", "5e-324", "4.9406564584124654e-324", "1.7976931348623157e308",
            "2.2250738585072014e-308", "9007199254740993", "0.30000000000000004", "123456789012345678901234567890",
            "1e-400", "0.000001", "1e22", "1e23", "3.141592653589793238462643383279", "2.5e-3", "100", "-12345.6789e-3",
        ]
        for json in texts {
            #expect(try MessageJSON.decode(Double.self, from: Array(json.utf8)).bitPattern == Double(json)!.bitPattern, "\(json)")
        }
        #expect(throws: DecodingError.self) { try MessageJSON.decode(Double.self, from: Array("1e400".utf8)) }
        #expect(throws: DecodingError.self) { try MessageJSON.decode(Float.self, from: Array("1e39".utf8)) }
    }

    @Test func nonConformingFloatsThrowLikeFoundation() throws {
        let cases = [
            Floats(d: .nan, values: [], f: 0), Floats(d: .infinity, values: [], f: 0), Floats(d: 0, values: [1, -.infinity], f: 0),
            Floats(d: 0, values: [], f: .nan),
        ]
        for value in cases {
            var ours: [String]?
            var theirs: [String]?
            do { _ = try MessageJSON.encode(value) } catch let EncodingError.invalidValue(_, context) { ours = context.codingPath.map(\.stringValue) }
            do { _ = try JSONEncoder().encode(value) } catch let EncodingError.invalidValue(_, context) { theirs = context.codingPath.map(\.stringValue) }
            #expect(ours != nil)
            #expect(ours == theirs)
        }
        #expect(throws: EncodingError.self) { try MessageJSON.encode(Double.nan) }
        var ours: [String]?
        var theirs: [String]?
        do { _ = try MessageJSON.encode(DeepNaN()) } catch let EncodingError.invalidValue(_, context) { ours = context.codingPath.map(\.stringValue) }
        do { _ = try JSONEncoder().encode(DeepNaN()) } catch let EncodingError.invalidValue(_, context) { theirs = context.codingPath.map(\.stringValue) }
        #expect(ours != nil)
        #expect(ours == theirs)
    }

    @Test func errorsSayWhatAndWhereLikeFoundation() throws {
        let cases: [(String, any Decodable.Type)] = [
            (#"{"a":"x"}"#, One.self), (#"{"a":null}"#, One.self), ("{}", One.self), (#"[{"a":1},{"b":1}]"#, [One].self),
            (#"{"x":1,"flags":[true,3]}"#, Inner.self), (#"{"x":1,"flags":{}}"#, Inner.self), ("[1]", One.self),
            (#"[1,2]"#, [String].self), (#"{"list":[{"x":"1"}]}"#, [String: [Inner]].self),
            (#"{"data":"!!"}"#, [String: Data].self),
        ]
        for (json, type) in cases {
            let ours = decodingError { _ = try MessageJSON.decode(type, from: Array(json.utf8)) }
            let theirs = decodingError { _ = try JSONDecoder().decode(type, from: Data(json.utf8)) }
            #expect(ours != nil, "\(json)")
            #expect(path(ours) == path(theirs), "\(json): \(String(describing: ours)) vs \(String(describing: theirs))")
            #expect(String(describing: ours).prefix(20) == String(describing: theirs).prefix(20), "\(json)")
        }
    }

    @Test func numbersThatDoNotFitSayWhere() {
        // (Foundation reports these without a coding path.)
        let error = decodingError { _ = try MessageJSON.decode([String: UInt8].self, from: Array(#"{"a":300}"#.utf8)) }
        #expect(isDataCorrupted(error))
        #expect(path(error) == ["a"])
    }

    @Test func decodeIfPresentAndNil() throws {
        #expect(try MessageJSON.decode(Optionals.self, from: Array(#"{"a":null,"c":[null,1]}"#.utf8)) == Optionals(a: nil, b: nil, c: [nil, 1]))
        #expect(try MessageJSON.decode(Optionals.self, from: Array(#"{"b":"x","z":{"deep":[1,{}]}}"#.utf8)) == Optionals(b: "x"))
        #expect(throws: DecodingError.self) { try MessageJSON.decode(Optionals.self, from: Array(#"{"a":"1"}"#.utf8)) }
    }

    @Test func readsWhatNodeWrites() throws {
        // JSON.stringify output: no spaces, large numbers with exponents, escaped quotes.
        let node = #"{"id":1,"name":"a\"b\u2028","score":1e+21,"neg":-0.5,"list":[1,"two",null,true,{"k":[]}],"nested":{"deep":{}}}"#
        let value = try MessageJSON.decode(JSONValue.self, from: Array(node.utf8))
        #expect(value == (try JSONDecoder().decode(JSONValue.self, from: Data(node.utf8))))
        #expect(try MessageJSON.decode(JSONValue.self, from: try MessageJSON.encode(value)) == value)
    }

    @Test func keysAreFoundInAnyOrder() throws {
        struct Three: Codable, Equatable { var a: Int; var b: Int; var c: Int }
        for json in [#"{"a":1,"b":2,"c":3}"#, #"{"c":3,"b":2,"a":1}"#, #"{"x":0,"b":2,"y":[1],"c":3,"a":1,"z":{}}"#] {
            #expect(try MessageJSON.decode(Three.self, from: Array(json.utf8)) == Three(a: 1, b: 2, c: 3), "\(json)")
        }
        let big = Dictionary(uniqueKeysWithValues: (0..<2000).map { ("key\($0)", $0) })
        #expect(try MessageJSON.decode([String: Int].self, from: try MessageJSON.encode(big)) == big)
    }
}
