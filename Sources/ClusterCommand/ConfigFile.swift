import Foundation
import Yams

/// A `cluster` config file: a YAML mapping whose keys are the `run` flags without `--`.
///
/// ```yaml
/// command: [python3, app.py]
/// listen: [tcp://0.0.0.0:8080]
/// workers: 4
/// drain-timeout: 20s
/// env: {LOG_LEVEL: info}
/// ```
///
/// Every error names the file, the line and the key.
enum ConfigFile {
    /// Applies the file at `path` to `configuration`.
    static func apply(_ path: String, to configuration: inout RunConfiguration) throws {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw CommandError("\(path): cannot be read (\(error.localizedDescription)); give the path of a YAML file")
        }
        try apply(text: text, named: path, to: &configuration)
    }

    /// Applies YAML `text` (called `name` in errors) to `configuration`.
    static func apply(text: String, named name: String, to configuration: inout RunConfiguration) throws {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw CommandError("\(name): not valid YAML: \(error)")
        }
        guard let root else { return } // an empty file sets nothing
        guard let mapping = root.mapping else {
            throw CommandError("\(name):\(line(root)): the file must be a mapping of settings (key: value), such as 'workers: 4'")
        }
        for (keyNode, value) in mapping {
            guard let key = keyNode.scalar?.string else {
                throw CommandError("\(name):\(line(keyNode)): a key must be a plain word such as 'workers'")
            }
            guard let setting = RunConfiguration.setting(named: key) else {
                let known = RunConfiguration.settings.map(\.name).joined(separator: ", ")
                throw CommandError("\(name):\(line(keyNode)): unknown key '\(key)'; the keys are \(known)")
            }
            do {
                try setting.apply(try values(of: value, for: setting), &configuration)
            } catch {
                throw CommandError("\(name):\(line(value)): key '\(key)': \(error)")
            }
        }
    }

    /// A value as the setting takes it: one scalar, or for a list a sequence (or one
    /// scalar); `env` also takes a mapping.
    private static func values(of node: Node, for setting: RunConfiguration.Setting) throws -> [String] {
        if let scalar = node.scalar { return [scalar.string] }
        if setting.isList, let sequence = node.sequence {
            return try sequence.map { item in
                guard let scalar = item.scalar else { throw CommandError("a list item must be a plain value, not a list or a mapping") }
                return scalar.string
            }
        }
        if setting.name == "env", let mapping = node.mapping {
            return try mapping.map { key, value in
                guard let key = key.scalar?.string, let value = value.scalar?.string else {
                    throw CommandError("each variable must be NAME: value")
                }
                return "\(key)=\(value)"
            }
        }
        throw CommandError(setting.isList ? "expected a value or a list of values" : "expected one value (\(setting.help)), not a list or a mapping")
    }

    private static func line(_ node: Node) -> String {
        node.mark.map { String($0.line) } ?? "?"
    }
}
