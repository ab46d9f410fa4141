import Foundation

/// The instructions of a Dockerfile's last stage (the image that runs), as the tests need
/// them: continuation lines joined, comments dropped, exec-form arrays decoded.
struct Dockerfile {
    struct Instruction {
        let keyword: String
        let arguments: String
    }

    let instructions: [Instruction]

    init(path: String) throws {
        var lines: [String] = []
        var pending = ""
        for raw in try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n") {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("#") { continue }
            if line.hasSuffix("\\") {
                pending += line.dropLast() + " "
            } else if !(pending + line).isEmpty {
                lines.append(pending + line)
                pending = ""
            }
        }
        let all = lines.map { line in
            let keyword = line.prefix { !$0.isWhitespace }
            return Instruction(keyword: keyword.uppercased(),
                               arguments: line.dropFirst(keyword.count).trimmingCharacters(in: .whitespaces))
        }
        instructions = Array(all[(all.lastIndex { $0.keyword == "FROM" } ?? 0)...])
    }

    /// The arguments of the last `keyword` instruction (the one in force), if any.
    func arguments(_ keyword: String) -> String? {
        instructions.last { $0.keyword == keyword }?.arguments
    }

    /// The last `keyword` instruction's exec form (`["a", "b"]`), decoded.
    func execForm(_ keyword: String) throws -> [String]? {
        try arguments(keyword).map(Self.decodeExecForm)
    }

    /// The variables every `ENV` sets (`KEY=value` pairs; values without spaces or quotes).
    var environment: [String: String] {
        var variables: [String: String] = [:]
        for instruction in instructions where instruction.keyword == "ENV" {
            for pair in instruction.arguments.split(whereSeparator: \.isWhitespace) {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { variables[String(parts[0])] = String(parts[1]) }
            }
        }
        return variables
    }

    /// The ports `EXPOSE` declares.
    var exposedPorts: [Int] {
        instructions.filter { $0.keyword == "EXPOSE" }
            .flatMap { $0.arguments.split(whereSeparator: \.isWhitespace) }
            .compactMap { Int($0.prefix { $0.isNumber }) }
    }

    /// The `HEALTHCHECK`'s command in exec form (after its options and `CMD`).
    func healthcheck() throws -> [String]? {
        guard let arguments = arguments("HEALTHCHECK"), let command = arguments.range(of: "CMD ") else { return nil }
        return try Self.decodeExecForm(String(arguments[command.upperBound...]))
    }

    private static func decodeExecForm(_ text: String) throws -> [String] {
        guard let array = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String] else {
            throw TestFailure.unexpected("not an exec-form array: \(text)")
        }
        return array
    }
}
