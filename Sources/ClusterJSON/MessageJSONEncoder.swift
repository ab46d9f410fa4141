internal import FoundationEssentials

/// Streams an `Encodable` value as compact JSON into one byte buffer, with no tree in between.
///
/// One instance serves a whole value. Its containers are small views (a depth and an id)
/// onto the stack of open containers kept here, and every nested value is encoded through
/// this same object, `slot` saying where that value goes. A stream has one write position,
/// so each write must come to the innermost open container; writing to a parent closes the
/// nested containers it holds (control has come back to it). A write to a container that
/// was closed, or to an ancestor of a value still being encoded, is out of document order:
/// the encoder then throws `MessageJSON.Fallback` (or, where the API cannot throw, only sets
/// `needsFallback`) and `MessageJSON.encode` redoes the value with Foundation. It does the
/// same after any error, since code that catches one may leave a member half-written.
final class MessageJSONEncoder: Encoder {
    /// An open container.
    struct Frame {
        /// Unique in one encoding, so a container can tell its frame from a later one at the same depth.
        let id: Int
        /// `]` or `}`, written when the frame closes.
        let closer: UInt8
        /// Its key in the parent container, for coding paths; nil at the top level.
        let key: (any CodingKey)?
        /// Members or elements written so far: they decide commas, and are an unkeyed container's `count`.
        var count = 0
    }

    /// The position of the value whose `encode(to:)` is running.
    struct Slot {
        /// The depth its container takes (`frames.count` when the slot opened).
        let depth: Int
        let id: Int
        /// Its key in the parent container, for coding paths.
        let key: (any CodingKey)?
        /// Whether nothing has been written for the value yet.
        var isOpen = true
        /// The frame its container opened, so that asking for the container again (as a
        /// subclass does when its `encode(to:)` calls `super.encode(to:)`) gets the same one.
        var frameID = 0
    }

    // The state is touched several times per member written; dynamic exclusivity checks
    // on class properties cost more than the writes themselves, and none is needed: one
    // encoding runs on one thread and no access here spans a call out to user code.
    @exclusivity(unchecked) private(set) var bytes: [UInt8] = []
    @exclusivity(unchecked) private var frames: [Frame] = []
    @exclusivity(unchecked) private var slot = Slot(depth: 0, id: 0, key: nil, isOpen: false)
    @exclusivity(unchecked) private var lastID = 0
    /// Whether the stream gave up on the value (out-of-order writes or an error), so that
    /// Foundation must encode it.
    @exclusivity(unchecked) private(set) var needsFallback = false

    init() {
        bytes.reserveCapacity(64)
    }

    var userInfo: [CodingUserInfoKey: Any] { [:] }

    var codingPath: [any CodingKey] {
        path(to: slot.depth - 1) + (slot.key.map { [$0] } ?? [])
    }

    /// The coding path of the container at `depth`.
    func path(to depth: Int) -> [any CodingKey] {
        frames.prefix(max(depth + 1, 0)).compactMap(\.key)
    }

    /// The coding path of a value being written under `key` into the innermost container.
    private func valuePath(_ key: (any CodingKey)?) -> [any CodingKey] {
        path(to: frames.count - 1) + (key.map { [$0] } ?? [])
    }

    // MARK: Values

    /// Encodes the whole message.
    func encodeTopLevel<T: Encodable>(_ value: T) throws {
        try encodeValue(value, key: nil)
    }

    /// Encodes `value` at the write position: the types Foundation's `JSONEncoder` writes in
    /// its own way first, then anything else through its `encode(to:)`.
    func encodeValue<T: Encodable>(_ value: T, key: (any CodingKey)?) throws {
        // Comparing metatypes is cheaper than trying casts on every value. The common
        // scalars skip encode(to:) and its single-value container (arrays of them come
        // through here once per element); once the type is known equal, the bit cast is a
        // plain copy.
        if T.self == Int.self { return writeInteger(unsafeBitCast(value, to: Int.self)) }
        if T.self == String.self { return writeString(unsafeBitCast(value, to: String.self)) }
        if T.self == Double.self { return try writeFloat(unsafeBitCast(value, to: Double.self)) { valuePath(key) } }
        if T.self == Bool.self { return writeBool(unsafeBitCast(value, to: Bool.self)) }
        // Arrays of them skip Array.encode(to:), which runs unspecialized, per element.
        if T.self == [Int].self { return writeArray(unsafeBitCast(value, to: [Int].self)) { $0.writeInteger($1) } }
        if T.self == [String].self { return writeArray(unsafeBitCast(value, to: [String].self)) { $0.writeString($1) } }
        if T.self == [Double].self {
            return try writeArray(unsafeBitCast(value, to: [Double].self)) { encoder, element, index in
                try encoder.writeFloat(element) { encoder.valuePath(key) + [MessageJSONKey.index(index)] }
            }
        }
        if T.self == Data.self { return writeString((value as! Data).base64EncodedString()) }
        if T.self == URL.self { return writeString((value as! URL).absoluteString) }
        if T.self == Decimal.self { return try writeDecimal(value as! Decimal, key: key) }

        let parent = slot
        lastID += 1
        slot = Slot(depth: frames.count, id: lastID, key: key)
        do {
            try value.encode(to: self)
        } catch {
            throw failing(error)
        }
        if slot.isOpen {
            guard slot.depth > 0 else {
                let description = "Top-level \(T.self) did not encode any values."
                throw failing(EncodingError.invalidValue(value, .init(codingPath: [], debugDescription: description)))
            }
            // Foundation writes a nested value that encoded nothing as an empty object.
            bytes.append(UInt8(ascii: "{"))
            bytes.append(UInt8(ascii: "}"))
        } else {
            close(downTo: slot.depth)
        }
        slot = parent
    }

    private func writeArray<Element>(_ elements: [Element], _ write: (MessageJSONEncoder, Element, Int) throws -> Void) rethrows {
        bytes.append(UInt8(ascii: "["))
        for (index, element) in elements.enumerated() {
            if index > 0 { bytes.append(UInt8(ascii: ",")) }
            try write(self, element, index)
        }
        bytes.append(UInt8(ascii: "]"))
    }

    private func writeArray<Element>(_ elements: [Element], _ write: (MessageJSONEncoder, Element) -> Void) {
        writeArray(elements) { encoder, element, _ in write(encoder, element) }
    }

    private func writeDecimal(_ value: Decimal, key: (any CodingKey)?) throws {
        guard !value.isNaN else {
            let description = "Unable to encode Decimal.nan directly in JSON."
            throw failing(EncodingError.invalidValue(value, .init(codingPath: valuePath(key), debugDescription: description)))
        }
        bytes.append(contentsOf: value.description.utf8)
    }

    // MARK: Containers

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let (depth, id) = openSlotContainer(UInt8(ascii: "{"), UInt8(ascii: "}"))
        return KeyedEncodingContainer(MessageJSONKeyedEncoding<Key>(encoder: self, depth: depth, id: id))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let (depth, id) = openSlotContainer(UInt8(ascii: "["), UInt8(ascii: "]"))
        return MessageJSONUnkeyedEncoding(encoder: self, depth: depth, id: id)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        MessageJSONSingleValueEncoding(encoder: self, slotID: slot.id)
    }

    /// Opens the container of the value being encoded, or returns the one it already opened.
    private func openSlotContainer(_ opener: UInt8, _ closer: UInt8) -> (depth: Int, id: Int) {
        if slot.isOpen, frames.count == slot.depth {
            slot.isOpen = false
            slot.frameID = push(opener, closer, key: slot.key).id
            return (slot.depth, slot.frameID)
        }
        if !slot.isOpen, slot.depth < frames.count, frames[slot.depth].id == slot.frameID,
            frames[slot.depth].closer == closer
        {
            return (slot.depth, slot.frameID)
        }
        return deadContainer()
    }

    /// Opens a container at the write position.
    func push(_ opener: UInt8, _ closer: UInt8, key: (any CodingKey)?) -> (depth: Int, id: Int) {
        lastID += 1
        bytes.append(opener)
        frames.append(Frame(id: lastID, closer: closer, key: key))
        return (frames.count - 1, lastID)
    }

    /// Marks the value for Foundation and returns a container that matches no frame, so
    /// that any write to it throws `Fallback` (for calls that cannot throw themselves).
    func deadContainer() -> (depth: Int, id: Int) {
        needsFallback = true
        return (0, -1)
    }

    /// Starts a member of the object at `depth`: a comma if needed, the key and a colon.
    func beginMember(_ key: some CodingKey, depth: Int, id: Int) throws {
        try enter(depth: depth, id: id)
        if frames[depth].count > 0 { bytes.append(UInt8(ascii: ",")) }
        frames[depth].count += 1
        writeString(key.stringValue)
        bytes.append(UInt8(ascii: ":"))
    }

    /// Starts an element of the array at `depth`; returns its index.
    func beginElement(depth: Int, id: Int) throws -> Int {
        try enter(depth: depth, id: id)
        let index = frames[depth].count
        if index > 0 { bytes.append(UInt8(ascii: ",")) }
        frames[depth].count = index + 1
        return index
    }

    /// The number of elements written to the container at `depth`.
    func count(depth: Int, id: Int) -> Int {
        depth < frames.count && frames[depth].id == id ? frames[depth].count : 0
    }

    /// Makes the container at `depth` the write position, closing the finished containers
    /// nested in it; throws `Fallback` when it cannot be (writes out of document order).
    private func enter(depth: Int, id: Int) throws {
        guard depth >= slot.depth, depth < frames.count, frames[depth].id == id else { throw fallback() }
        if frames.count > depth + 1 { close(downTo: depth + 1) }
    }

    /// Claims the open slot `id` for one value written through a single-value container.
    func fillSlot(_ id: Int) throws {
        guard slot.id == id, slot.isOpen, frames.count == slot.depth else { throw fallback() }
        slot.isOpen = false
    }

    /// Encodes a value through the single-value container of slot `id`.
    func fillSlot<T: Encodable>(_ id: Int, with value: T) throws {
        guard slot.id == id, slot.isOpen, frames.count == slot.depth else { throw fallback() }
        try encodeValue(value, key: slot.key)
        slot.isOpen = false
    }

    private func close(downTo depth: Int) {
        while frames.count > depth { bytes.append(frames.removeLast().closer) }
    }

    private func fallback() -> any Error { failing(MessageJSON.Fallback()) }

    /// Gives up on streaming the value, and returns `error` to throw.
    private func failing(_ error: any Error) -> any Error {
        needsFallback = true
        return error
    }

    // MARK: Scalars

    func writeNull() {
        bytes.append(contentsOf: "null".utf8)
    }

    func writeBool(_ value: Bool) {
        bytes.append(contentsOf: value ? "true".utf8 : "false".utf8)
    }

    func writeInteger<T: FixedWidthInteger>(_ value: T) {
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        // Digits come out last first: fill a stack buffer from its end (40 holds 2^128).
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 40) { digits in
            var index = digits.count
            repeat {
                let (rest, digit) = magnitude.quotientAndRemainder(dividingBy: 10)
                index -= 1
                digits[index] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: digit)
                magnitude = rest
            } while magnitude != 0
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: digits[index...]))
        }
    }

    /// Writes a float in its shortest round-trip form (Swift's `description`), less a
    /// trailing ".0" as Foundation writes it; throws what Foundation throws for NaN and
    /// infinities, which JSON cannot express.
    func writeFloat<F: BinaryFloatingPoint & LosslessStringConvertible>(_ value: F, path: () -> [any CodingKey]) throws {
        guard value.isFinite else {
            let name = value.isNaN ? "nan" : value < 0 ? "-infinity" : "infinity"
            let description = "Unable to encode \(F.self).\(name) directly in JSON."
            throw failing(EncodingError.invalidValue(value, .init(codingPath: path(), debugDescription: description)))
        }
        bytes.append(contentsOf: value.description.utf8)
        let count = bytes.count
        if count >= 2, bytes[count - 2] == UInt8(ascii: "."), bytes[count - 1] == UInt8(ascii: "0") {
            bytes.removeLast(2)
        }
    }

    func writeString(_ string: String) {
        bytes.append(UInt8(ascii: "\""))
        if string.utf8.withContiguousStorageIfAvailable({ writeEscaped($0) }) == nil {
            Array(string.utf8).withUnsafeBufferPointer { writeEscaped($0) }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    /// Copies UTF-8 into the buffer, escaping what JSON requires: quote, backslash and the
    /// control characters (short forms where JSON has them, else \u00XX).
    private func writeEscaped(_ utf8: UnsafeBufferPointer<UInt8>) {
        var start = 0
        for index in 0..<utf8.count {
            let byte = utf8[index]
            guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start..<index]))
            bytes.append(UInt8(ascii: "\\"))
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): bytes.append(byte)
            case 0x08: bytes.append(UInt8(ascii: "b"))
            case 0x0C: bytes.append(UInt8(ascii: "f"))
            case 0x0A: bytes.append(UInt8(ascii: "n"))
            case 0x0D: bytes.append(UInt8(ascii: "r"))
            case 0x09: bytes.append(UInt8(ascii: "t"))
            default:
                bytes.append(contentsOf: "u00".utf8)
                bytes.append(UInt8(ascii: "0") + byte >> 4)  // 0 or 1: the byte is below 0x20
                let low = byte & 0xF
                bytes.append(low < 10 ? UInt8(ascii: "0") + low : UInt8(ascii: "a") + low - 10)
            }
            start = index + 1
        }
        bytes.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[start...]))
    }
}
