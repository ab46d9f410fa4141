import Foundation
import Glibc
import Synchronization

/// HTTP/1.1 requests on loopback, each outcome classified as a load test counts them.
enum Outcome: Error, Hashable, CustomStringConvertible {
    case ok(worker: String)
    /// `reset`: ECONNRESET; `endOfStream`: the server closed before a whole response.
    case refused, reset, endOfStream, timeout
    case other(String)

    var description: String {
        switch self {
        case .ok(let worker): "ok(worker \(worker))"
        case .refused: "refused"
        case .reset: "reset"
        case .endOfStream: "end of stream"
        case .timeout: "timeout"
        case .other(let text): text
        }
    }
}

/// One client connection: connect, requests, responses read by Content-Length.
final class ClientConnection {
    let fd: Int32
    private var partial: [UInt8] = []

    /// Connects to `host`:`port`, from `source` (a 127.0.0.0/8 address) when given.
    init(host: String = "127.0.0.1", port: Int, source: String? = nil, timeout: Int = 10) throws(Outcome) {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var limit = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        if let source {
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_addr.s_addr = inet_addr(source)
            let bound = withUnsafePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            // No close here: self is whole, so deinit closes fd (closing twice would close
            // a descriptor another thread opened meanwhile).
            guard bound == 0 else { throw .other("bind \(source): errno \(errno)") }
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr(host)
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if connected != 0 {
            // No close here: a class whose initializer throws once every property is set is
            // deinitialized, and deinit closes the socket (twice would close a descriptor
            // another thread may have opened meanwhile).
            let error = errno
            throw error == ECONNREFUSED ? .refused : error == ETIMEDOUT ? .timeout : .other("connect: errno \(error)")
        }
    }

    deinit { close(fd) }

    /// Sends a GET (with `headers`, "Name: value" each) and reads one response; the body's
    /// second word is the worker id.
    func get(_ path: String = "/", headers: [String] = [], keepAlive: Bool) -> (Outcome, HTTP.Response?) {
        if let failure = send(path, headers: headers, keepAlive: keepAlive) { return (failure, nil) }
        return receive()
    }

    /// Sends a GET; nil when it went out.
    func send(_ path: String = "/", headers: [String] = [], keepAlive: Bool) -> Outcome? {
        let request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers.map { $0 + "\r\n" }.joined()
            + (keepAlive ? "" : "Connection: close\r\n") + "\r\n"
        let sent = request.withCString { Glibc.send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
        if sent < 0 { return errno == EPIPE || errno == ECONNRESET ? .reset : .other("send: errno \(errno)") }
        return nil
    }

    /// Reads one response (what arrived before a timeout is kept for the next call).
    func receive() -> (Outcome, HTTP.Response?) {
        var bytes = partial
        partial = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            if let response = complete(bytes) {
                let words = response.body.split(separator: " ")
                return (.ok(worker: words.count > 1 ? String(words[1]) : response.body), response)
            }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n > 0 { bytes += buffer[0..<n]; continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { partial = bytes }
            if n == 0 { return (.endOfStream, nil) } // closed before a whole response
            return (errno == EAGAIN || errno == EWOULDBLOCK ? .timeout : errno == ECONNRESET ? .reset : .other("recv: errno \(errno)"), nil)
        }
    }

    /// True when the server closes the connection without sending anything more.
    func readsEndOfFile() -> Bool {
        guard partial.isEmpty else { return false }
        var byte: UInt8 = 0
        return recv(fd, &byte, 1, 0) == 0
    }

    private func complete(_ bytes: [UInt8]) -> HTTP.Response? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n"), let response = try? HTTP.parse(text),
              let length = response.headers["content-length"].flatMap(Int.init) else { return nil }
        return text.utf8.count - text[..<split.upperBound].utf8.count >= length ? response : nil
    }
}

/// Runs `clients` threads that each make requests (a new connection each time, or
/// keep-alive) until `duration` has passed, counting every outcome.
func load(port: Int, clients: Int, duration: Duration, keepAlive: Bool = false,
          during: (() async throws -> Void)? = nil) async throws -> [Outcome: Int] {
    let counts = Mutex<[Outcome: Int]>([:])
    let deadline = ContinuousClock.now + duration
    let finished = Mutex(0)
    for _ in 0..<clients {
        Thread.detachNewThread {
            var connection: ClientConnection?
            while ContinuousClock.now < deadline {
                let outcome: Outcome
                do {
                    let current = try connection ?? ClientConnection(port: port)
                    let (result, response) = current.get(keepAlive: keepAlive)
                    outcome = result
                    let closes = response?.headers["connection"]?.lowercased() == "close"
                    connection = keepAlive && response != nil && !closes ? current : nil
                } catch {
                    outcome = (error as? Outcome) ?? .other("\(error)")
                    connection = nil
                }
                counts.withLock { counts in
                    let key: Outcome = if case .ok = outcome { .ok(worker: "any") } else { outcome }
                    counts[key, default: 0] += 1
                }
            }
            finished.withLock { $0 += 1 }
        }
    }
    // The clients run to the deadline even when `during` fails: none may outlive the test.
    let failure: (any Error)?
    do { try await during?(); failure = nil } catch { failure = error }
    while finished.withLock({ $0 }) < clients { try? await Task.sleep(for: .milliseconds(20)) }
    if let failure { throw failure }
    return counts.withLock { $0 }
}
