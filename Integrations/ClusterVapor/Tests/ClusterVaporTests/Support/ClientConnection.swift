import Foundation
import Glibc

/// One HTTP/1.1 client connection over a blocking loopback socket, with a timeout:
/// GET requests, responses read by `Content-Length`.
final class ClientConnection {
    struct Response {
        var status: Int
        var headers: [String: String]
        var body: String
    }

    private let fd: Int32
    private var received: [UInt8] = []

    /// Connects to 127.0.0.1:`port`, from `source` (a 127.0.0.0/8 address) when given.
    init(port: Int, source: String? = nil, timeout: Int = 10) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var limit = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        // No close on a throw below: deinit closes the socket once every property is set.
        if let source {
            guard ClientConnection.withAddress(source, port: 0, { bind(fd, $0, $1) }) == 0 else {
                throw TestFailure.unexpected("bind \(source): errno \(errno)")
            }
        }
        guard ClientConnection.withAddress("127.0.0.1", port: port, { connect(fd, $0, $1) }) == 0 else {
            throw TestFailure.unexpected("connect to port \(port): errno \(errno)")
        }
    }

    deinit { close(fd) }

    private static func withAddress(_ host: String, port: Int, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr(host)
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    /// Sends a GET and reads its response.
    func get(_ path: String, keepAlive: Bool = false) throws -> Response {
        try send(path, keepAlive: keepAlive)
        return try receive()
    }

    /// Sends a GET, with `Connection: close` unless kept alive.
    func send(_ path: String, keepAlive: Bool = false) throws {
        try send(raw: "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n" + (keepAlive ? "" : "Connection: close\r\n") + "\r\n")
    }

    /// Sends `text` as it is.
    func send(raw text: String) throws {
        guard text.withCString({ Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }) >= 0 else {
            throw TestFailure.unexpected("send: errno \(errno)")
        }
    }

    /// Reads one whole response.
    func receive() throws -> Response {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            if let (response, length) = parse() {
                received.removeFirst(length)
                return response
            }
            let n = recv(fd, &buffer, buffer.count, 0)
            guard n > 0 else { throw TestFailure.unexpected(n == 0 ? "closed before a whole response" : "recv: errno \(errno)") }
            received += buffer[0..<n]
        }
    }

    /// True when the server closes the connection without sending anything more.
    func readsEndOfFile() -> Bool {
        var byte: UInt8 = 0
        return received.isEmpty && recv(fd, &byte, 1, 0) == 0
    }

    /// The first whole response received, and its length in bytes.
    private func parse() -> (Response, Int)? {
        guard let end = received.indices.dropLast(3).first(where: { received[$0..<$0 + 4].elementsEqual("\r\n\r\n".utf8) }) else {
            return nil
        }
        let lines = String(decoding: received[..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let words = lines[0].split(separator: " ")
        guard words.count >= 2, let status = Int(words[1]) else { return nil }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = headers["content-length"].flatMap(Int.init) ?? 0
        guard received.count >= end + 4 + length else { return nil }
        let body = String(decoding: received[(end + 4)..<(end + 4 + length)], as: UTF8.self)
        return (Response(status: status, headers: headers, body: body), end + 4 + length)
    }
}
