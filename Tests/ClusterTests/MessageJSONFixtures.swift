@testable import Cluster
@testable import ClusterJSON
import FoundationEssentials
import Testing

// MARK: Shapes

struct Scalars: Codable, Equatable {
    var int = -42
    var int8 = Int8.min
    var int16 = Int16.max
    var int32 = Int32.min
    var int64 = Int64.max
    var uint = UInt.max
    var uint8 = UInt8.max
    var uint16 = UInt16(7)
    var uint32 = UInt32.max
    var uint64 = UInt64.max
    var int128 = Int128.min
    var uint128 = UInt128.max
    var float: Float = 3.25
    var double = 0.1
    var bool = true
    var string = "héllo \"wörld\" 😀"
}

struct Optionals: Codable, Equatable {
    var a: Int?
    var b: String?
    var c: [Int?]?
}

struct Inner: Codable, Equatable {
    var x: Double
    var flags: [Bool]
}

struct Empty: Codable, Equatable {}

struct Nested: Codable, Equatable {
    var name = "outer"
    var inner = Inner(x: 1.5, flags: [true, false])
    var list = [Inner(x: -2, flags: []), Inner(x: 1e-7, flags: [true])]
    var matrix = [[1, 2], [], [3]]
    var words = ["a", "", "c/d"]
    var doubles = [0.5, -0.0, 1e300]
    var empty: [String] = []
    var emptyObject = Empty()
}

enum Shape: Codable, Equatable {
    case circle(radius: Double)
    case rect(Double, Double)
    case labeled(name: String, tags: [String])
    case none
}

enum Color: String, Codable, CodingKeyRepresentable {
    case red, green
}

enum Level: Int, Codable {
    case low = 1, high = 9
}

struct Maps: Codable, Equatable {
    var byName = ["one": 1, "two": 2, "with \"quote\"": 3]
    var byID = [1: "a", -7: "b", Int.max: "c"]
    var byColor = [Color.red: 1, .green: 2]
    var nested = ["x": ["y": true], "z": [:]]
}

struct FoundationTypes: Codable, Equatable {
    var date = Date(timeIntervalSinceReferenceDate: 123_456.789)
    var data = Data([0, 1, 2, 250, 251, 252, 253, 254, 255])
    var emptyData = Data()
    var url = URL(string: "https://example.org/a/b?c=d&e=%20f#g")!
    var decimal = Decimal(string: "1234567890.0987654321")!
    var uuid = UUID(uuidString: "E621E1F8-C36C-495A-93FC-0C247A3E6E5F")!
}

struct Everything: Codable, Equatable {
    var scalars = Scalars()
    var optionals = Optionals(a: 1, b: nil, c: [1, nil, 3])
    var nested = Nested()
    var shapes: [Shape] = [.circle(radius: 2), .rect(1, 2), .labeled(name: "n", tags: ["t"]), .none]
    var color = Color.green
    var level = Level.high
    var foundation = FoundationTypes()
}

/// Any JSON value, decoded by trying each type in turn (hand-written code that relies on
/// failed decodes leaving the decoder usable).
indirect enum JSONValue: Codable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

// MARK: Hand-written coding

/// Writes to its parent container after taking a nested one, then to the nested one.
struct Interleaved: Encodable {
    enum Keys: String, CodingKey { case a, nested, b }
    enum NestedKeys: String, CodingKey { case x, y }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        var nested = container.nestedContainer(keyedBy: NestedKeys.self, forKey: .nested)
        try container.encode(1, forKey: .a)
        try nested.encode(2, forKey: .x)
        try container.encode(3, forKey: .b)
        try nested.encode(4, forKey: .y)
    }
}

/// Takes two nested arrays, then fills the first.
struct SiblingLists: Encodable {
    enum Keys: String, CodingKey { case first, second }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        var first = container.nestedUnkeyedContainer(forKey: .first)
        var second = container.nestedUnkeyedContainer(forKey: .second)
        try first.encode(1)
        try second.encode(2)
        try first.encode(3)
    }
}

/// Nested containers used in document order, as hand-written code usually does.
struct InOrder: Codable, Equatable {
    enum Keys: String, CodingKey { case id, point, list, nothing, after }
    enum PointKeys: String, CodingKey { case x, y }
    var id = 7
    var point = (x: 1, y: 2)
    var list = [[1], [2, 3]]
    var after = "done"

    init() {}

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        // Read out of document order: decoding containers are independent.
        after = try container.decode(String.self, forKey: .after)
        var list = try container.nestedUnkeyedContainer(forKey: .list)
        let point = try container.nestedContainer(keyedBy: PointKeys.self, forKey: .point)
        id = try container.decode(Int.self, forKey: .id)
        guard try container.decodeNil(forKey: .nothing) else { throw DecodingError.dataCorruptedError(forKey: .nothing, in: container, debugDescription: "not null") }
        self.list = []
        while !list.isAtEnd {
            var inner = try list.nestedUnkeyedContainer()
            var values: [Int] = []
            while !inner.isAtEnd { values.append(try inner.decode(Int.self)) }
            self.list.append(values)
        }
        self.point = (try point.decode(Int.self, forKey: .x), try point.decode(Int.self, forKey: .y))
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(id, forKey: .id)
        var point = container.nestedContainer(keyedBy: PointKeys.self, forKey: .point)
        try point.encode(self.point.x, forKey: .x)
        try point.encode(self.point.y, forKey: .y)
        var list = container.nestedUnkeyedContainer(forKey: .list)
        for values in self.list {
            var inner = list.nestedUnkeyedContainer()
            for value in values { try inner.encode(value) }
        }
        try container.encodeNil(forKey: .nothing)
        try container.encode(after, forKey: .after)
    }

    static func == (a: InOrder, b: InOrder) -> Bool {
        a.id == b.id && a.point == b.point && a.list == b.list && a.after == b.after
    }
}

/// Writes out of order and swallows the error that causes, carrying on regardless.
struct SwallowsErrors: Encodable {
    enum Keys: String, CodingKey { case a, b, c }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        var nested = container.nestedContainer(keyedBy: Keys.self, forKey: .a)
        try container.encode(1, forKey: .b)
        try? nested.encode(2, forKey: .c)
    }
}

/// Tries to write a NaN, ignores the error and writes something else.
struct SwallowsNaN: Encodable {
    enum Keys: String, CodingKey { case x, y, z }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try? container.encode(Double.nan, forKey: .x)
        try container.encode(1, forKey: .y)
        try? container.encode([1, Double.infinity], forKey: .z)
    }
}

struct Fails: Encodable {
    struct Failure: Error {}
    func encode(to encoder: any Encoder) throws {
        var container = encoder.unkeyedContainer()
        try container.encode(1)
        throw Failure()
    }
}

class Base: Codable {
    var id: Int
    init(id: Int) { self.id = id }
}

/// A subclass sharing its parent's container, the usual way.
final class SharedContainer: Base {
    enum Keys: String, CodingKey { case name }
    var name: String

    init(id: Int, name: String) {
        self.name = name
        super.init(id: id)
    }

    required init(from decoder: any Decoder) throws {
        name = try decoder.container(keyedBy: Keys.self).decode(String.self, forKey: .name)
        try super.init(from: decoder)
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(name, forKey: .name)
        try super.encode(to: encoder)
    }
}

/// A subclass encoding its parent under "super".
final class SuperKey: Base {
    enum Keys: String, CodingKey { case name }
    var name: String

    init(id: Int, name: String) {
        self.name = name
        super.init(id: id)
    }

    required init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        name = try container.decode(String.self, forKey: .name)
        try super.init(from: container.superDecoder())
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(name, forKey: .name)
        try super.encode(to: container.superEncoder())
    }
}

/// Writes a NaN deep inside nested containers, to check the error's coding path.
struct DeepNaN: Encodable {
    enum Keys: String, CodingKey { case outer, inner }
    var values: [Double] = [1, .nan]

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        var outer = container.nestedContainer(keyedBy: Keys.self, forKey: .outer)
        var list = outer.nestedUnkeyedContainer(forKey: .inner)
        var inner = list.nestedContainer(keyedBy: Keys.self)
        try inner.encode(values, forKey: .inner)
    }
}

struct EncodesNothing: Encodable {
    func encode(to encoder: any Encoder) throws {}
}

struct HoldsNothing: Encodable {
    var value = EncodesNothing()
}

struct One: Codable, Equatable {
    var a: Int
}

struct Floats: Codable {
    var d: Double
    var values: [Double]
    var f: Float
}

// MARK: Helpers

func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// The document `bytes` holds, as Foundation reads it: comparing these compares JSON texts
/// regardless of member order (Foundation's encoder writes members in hash order).
func document(_ bytes: [UInt8]) throws -> JSONValue {
    try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
}

func sameDocument<T: Encodable>(_ value: T) throws -> Bool {
    try document(try MessageJSON.encode(value)) == document(Array(try JSONEncoder().encode(value)))
}

/// Encodes with the streaming encoder alone, to see whether it fell back.
func streamed<T: Encodable>(_ value: T) throws -> MessageJSONEncoder {
    let encoder = MessageJSONEncoder()
    try? encoder.encodeTopLevel(value)
    return encoder
}

/// The value survives ours → ours, ours → Foundation and Foundation → ours, and ours writes
/// the document Foundation writes.
func crossCheck<T: Codable & Equatable>(_ value: T, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let ours = try MessageJSON.encode(value)
    let theirs = Array(try JSONEncoder().encode(value))
    #expect(try MessageJSON.decode(T.self, from: ours) == value, sourceLocation: sourceLocation)
    #expect(try JSONDecoder().decode(T.self, from: Data(ours)) == value, sourceLocation: sourceLocation)
    #expect(try MessageJSON.decode(T.self, from: theirs) == value, sourceLocation: sourceLocation)
    #expect(try document(ours) == document(theirs), sourceLocation: sourceLocation)
}

func decodingError(_ body: () throws -> Void) -> DecodingError? {
    do {
        try body()
        return nil
    } catch {
        return error as? DecodingError
    }
}

func isDataCorrupted(_ error: DecodingError?) -> Bool {
    if case .dataCorrupted = error { return true }
    return false
}

func path(_ error: DecodingError?) -> [String]? {
    switch error {
    case .typeMismatch(_, let context), .valueNotFound(_, let context), .keyNotFound(_, let context), .dataCorrupted(let context):
        return context.codingPath.map(\.stringValue)
    default:
        return nil
    }
}
