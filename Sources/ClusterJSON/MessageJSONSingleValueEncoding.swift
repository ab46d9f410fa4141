/// The single-value container of `MessageJSONEncoder`: writes one value into the slot that
/// was open when it was made (`slotID`).
struct MessageJSONSingleValueEncoding: SingleValueEncodingContainer {
    let encoder: MessageJSONEncoder
    let slotID: Int

    var codingPath: [any CodingKey] { encoder.codingPath }

    mutating func encodeNil() throws { try fill { $0.writeNull() } }
    mutating func encode(_ value: Bool) throws { try fill { $0.writeBool(value) } }
    mutating func encode(_ value: String) throws { try fill { $0.writeString(value) } }
    mutating func encode(_ value: Double) throws { try fill { try $0.writeFloat(value) { codingPath } } }
    mutating func encode(_ value: Float) throws { try fill { try $0.writeFloat(value) { codingPath } } }
    mutating func encode(_ value: Int) throws { try fill { $0.writeInteger(value) } }
    mutating func encode(_ value: Int8) throws { try fill { $0.writeInteger(value) } }
    mutating func encode(_ value: Int16) throws { try fill { $0.writeInteger(value) } }
    mutating func encode(_ value: Int32) throws { try fill { $0.writeInteger(value) } }
    mutating func encode(_ value: Int64) throws { try fill { $0.writeInteger(value) } }
    mutating func encode(_ value: Int128) throws { try fill { $0.writeInteger(value) } }
    mutating func encode(_ value: UInt) throws { try fill { $0.writeInteger(value) } }
    mutating func encode(_ value: UInt8) throws { try fill { $0.writeInteger(value) } }
    mutating func encode(_ value: UInt16) throws { try fill { $0.writeInteger(value) } }
    mutating func encode(_ value: UInt32) throws { try fill { $0.writeInteger(value) } }
    mutating func encode(_ value: UInt64) throws { try fill { $0.writeInteger(value) } }
    mutating func encode(_ value: UInt128) throws { try fill { $0.writeInteger(value) } }

    mutating func encode<T: Encodable>(_ value: T) throws {
        try encoder.fillSlot(slotID, with: value)
    }

    /// Claims the slot and writes its value with `write`.
    private func fill(_ write: (MessageJSONEncoder) throws -> Void) throws {
        try encoder.fillSlot(slotID)
        try write(encoder)
    }
}
