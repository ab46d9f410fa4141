/// One value of a parsed JSON document, as `MessageJSONParser` lays them out: every value
/// in document order, an object's members as key token then value token.
///
/// Tokens say where a value's bytes are and skip over containers, nothing more: a scalar is
/// converted only when the decoder asks for it as some type, so parsing allocates nothing
/// but the token array.
struct MessageJSONToken {
    enum Kind: UInt8 {
        case object, array, string, number, `true`, `false`, null

        /// How Foundation names each kind in a type-mismatch error.
        var description: String {
            switch self {
            case .object: "a dictionary"
            case .array: "an array"
            case .string: "a string"
            case .number: "a number"
            case .true, .false: "bool"
            case .null: "null"
            }
        }
    }

    let kind: Kind
    /// A string holds backslash escapes (so it must be unescaped, not copied).
    var isEscaped = false
    /// A number has neither fraction nor exponent (so integers parse on the fast path).
    var isInteger = false
    /// The first byte: after the quote for a string, the bracket for a container.
    let start: Int
    /// Scalars: the byte after the value (for a string, its closing quote).
    /// Containers: the index of the first token after the container.
    var end = 0
    /// Containers: the number of elements, or of members for an object.
    var count = 0
    /// Objects: the key token where the next key lookup starts, just past the last one found.
    /// Synthesized code reads keys in the order it wrote them, so lookups mostly hit at once.
    var cursor = 0

    var isContainer: Bool { kind == .object || kind == .array }
}
