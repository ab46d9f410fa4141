import Foundation

/// A minimal HTTP/1.1 client over a blocking loopback socket, with a deadline.
enum HTTP {
    struct Response {
        var status: Int
        var headers: [String: String]
        var body: String
    }

    /// GET `path` on `host`:`port` with `Connection: close`.
    static func get(host: String = "127.0.0.1", port: Int, path: String = "/", timeout: Duration = .seconds(10)) throws -> Response {
        let connection = try ClientConnection(host: host, port: port, timeout: Int(timeout.components.seconds))
        let (outcome, response) = connection.get(path, keepAlive: false)
        guard let response else { throw TestFailure.unexpected("GET \(path) on port \(port): \(outcome)") }
        return response
    }

    static func parse(_ text: String) throws -> Response {
        guard let split = text.range(of: "\r\n\r\n") else { throw TestFailure.unexpected("no complete response: \(text.debugDescription)") }
        let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { throw TestFailure.unexpected("bad status line \(lines[0])") }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            if let colon = line.firstIndex(of: ":") {
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return Response(status: status, headers: headers, body: String(text[split.upperBound...]))
    }
}
