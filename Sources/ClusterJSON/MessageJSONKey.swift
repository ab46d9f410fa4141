/// The coding keys the coders make themselves: array positions in coding paths (written
/// "Index 3", as Foundation does) and the "super" key of `superDecoder()`.
///
/// It is an enum of an `Int` so that it fits in an existential's inline buffer: putting
/// an index in a coding path allocates nothing.
enum MessageJSONKey: CodingKey {
    case index(Int)
    case `super`

    init?(stringValue: String) {
        guard stringValue == "super" else { return nil }
        self = .super
    }

    init?(intValue: Int) { self = .index(intValue) }

    var stringValue: String {
        switch self {
        case .index(let index): "Index \(index)"
        case .super: "super"
        }
    }

    var intValue: Int? {
        if case .index(let index) = self { index } else { nil }
    }
}
