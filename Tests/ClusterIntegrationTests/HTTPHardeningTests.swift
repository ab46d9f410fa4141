import Foundation
import Glibc
import Synchronization
import Testing

extension IntegrationTests {
    /// Hostile HTTP clients against the `hello` example's worker: none of them costs the
    /// worker its life, its memory, or a descriptor for longer than the limits say.
    @Suite(.timeLimit(.minutes(2)))
    struct HTTPHardeningTests {
        /// `hello` with one worker on a free port: the process, the worker's pid, the port.
        private func hello(_ environment: [String: String] = [:]) async throws -> (SpawnedProcess, Int32, Int) {
            let example = try SpawnedProcess("hello", environment: ["PORT": "0", "WORKERS": "1"].merging(environment) { $1 })
            let started = try await example.waitForLine { $0.hasPrefix("Worker ") && $0.hasSuffix(" started") }
            let worker = Int32(started.split(separator: " ")[1])!
            example.adopt(worker)
            let listening = try await example.waitForLine { $0.hasPrefix("Worker ") && $0.contains(" is listening on tcp://") }
            let port = try #require(listening.split(separator: ":").last.flatMap { Int($0) })
            _ = try await eventually { try HTTP.get(port: port) }
            return (example, worker, port)
        }

        @Test func eightThousandPipelinedRequestsInOneWriteAreAllAnsweredByTheSameWorker() async throws {
            let (example, worker, port) = try await hello()
            defer { example.stop() }
            let connection = try ClientConnection(port: port, timeout: 20)
            let request = Array("GET / HTTP/1.1\r\n\r\n".utf8)
            // One request first, for the size of one answer.
            #expect(sendAll(connection.fd, request))
            var first: [UInt8] = []
            while !first.ends(with: "Hello World\n".utf8) {
                let more = receive(connection.fd, atLeast: 1, timeout: .seconds(10))
                try #require(!more.bytes.isEmpty, "the first request is answered")
                first += more.bytes
            }
            let responseLength = first.count
            let flood = Array([[UInt8]](repeating: request, count: 8000).joined())
            #expect(flood.count == 144_000)
            // The worker stops reading while its answers wait in a full socket: send on a
            // thread of its own, read here.
            let fd = connection.fd
            let sender = sendInBackground(fd, flood, times: 1)
            let received = receive(fd, atLeast: 8000 * responseLength, timeout: .seconds(60))
            try await sender.wait()
            #expect(received.bytes.count == 8000 * responseLength, "\(received.bytes.count / responseLength) of 8000 answered")
            let answers = String(decoding: received.bytes, as: UTF8.self).components(separatedBy: "HTTP/1.1 200 OK\r\n").count - 1
            #expect(answers == 8000)
            #expect(isRunning(worker), "the worker survived")
            #expect(!example.output.contains { $0.contains("died") }, "\(example.output)")
            #expect(try HTTP.get(port: port).body == "Hello World\n")
            #expect(example.output.filter { $0.hasSuffix(" started") && $0.hasPrefix("Worker ") }.count == 1, "no worker was replaced")
        }

        @Test func malformedAndSmugglingRequestsGet400AndTheConnectionClosesAtOnce() async throws {
            let (example, worker, port) = try await hello()
            defer { example.stop() }
            let requests = [
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 37\r\n\r\nhello",
                "POST / HTTP/1.1\r\nContent-Length : 37\r\n\r\n",
                "POST / HTTP/1.1\r\nContent-Length: +37\r\n\r\n",
                "GET / HTTP/1.1\nHost: a\n\n",
                "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "GET /\u{1} HTTP/1.1\r\n\r\n",
            ]
            for request in requests {
                let connection = try ClientConnection(port: port, timeout: 10)
                let started = ContinuousClock.now
                #expect(sendAll(connection.fd, Array(request.utf8)))
                let answer = receive(connection.fd, atLeast: Int.max, timeout: .seconds(10))
                let text = String(decoding: answer.bytes, as: UTF8.self)
                #expect(text.hasPrefix("HTTP/1.1 400 Bad Request\r\n"), "\(request.debugDescription): \(text.debugDescription)")
                #expect(text.contains("Connection: close\r\n"), "\(text.debugDescription)")
                #expect(answer.closed, "\(request.debugDescription): the server closes the connection")
                #expect(ContinuousClock.now - started < .seconds(5), "closed at once, not when the client gives up")
            }
            #expect(isRunning(worker))
        }

        @Test func aSlowlorisConnectionIsAnswered408AndClosedAtTheHeaderTimeout() async throws {
            let (example, _, port) = try await hello(["HTTP_HEADER_TIMEOUT_MS": "1500"])
            defer { example.stop() }
            let connection = try ClientConnection(port: port, timeout: 10)
            let started = ContinuousClock.now
            #expect(sendAll(connection.fd, Array("GET / HTTP/1.1\r\n".utf8)))
            // A header line every 200 ms, for at most 10 s, until the server answers.
            var answer: (bytes: [UInt8], closed: Bool) = ([], false)
            for line in 0..<50 {
                answer = receive(connection.fd, atLeast: Int.max, timeout: .milliseconds(200))
                if !answer.bytes.isEmpty || answer.closed { break }
                _ = sendAll(connection.fd, Array("X-Line-\(line): a\r\n".utf8))
            }
            if !answer.closed { answer.bytes += receive(connection.fd, atLeast: Int.max, timeout: .seconds(5)).bytes }
            let elapsed = ContinuousClock.now - started
            let text = String(decoding: answer.bytes, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"), "\(text.debugDescription)")
            #expect(elapsed >= .milliseconds(1400), "not before the timeout: \(elapsed)")
            #expect(elapsed < .seconds(8), "at the timeout, give or take a busy machine: \(elapsed)")
        }

        @Test func anIdleConnectionIsClosedAtTheIdleTimeoutWithoutAResponse() async throws {
            let (example, _, port) = try await hello(["HTTP_IDLE_TIMEOUT_MS": "1500"])
            defer { example.stop() }
            let connection = try ClientConnection(port: port, timeout: 10)
            let started = ContinuousClock.now
            let answer = receive(connection.fd, atLeast: Int.max, timeout: .seconds(10))
            let elapsed = ContinuousClock.now - started
            #expect(answer.closed && answer.bytes.isEmpty, "\(answer)")
            #expect(elapsed >= .milliseconds(1400) && elapsed < .seconds(8), "\(elapsed)")
        }

        @Test func anOversizedBodyGets413AndCloseAndTheWorkersMemoryDoesNotGrow() async throws {
            let (example, worker, port) = try await hello(["HTTP_MAX_BODY_BYTES": "1048576"])
            defer { example.stop() }
            let before = try #require(residentKilobytes(worker))
            let chunk = [UInt8](repeating: UInt8(ascii: "x"), count: 64 << 10)
            let chunkHead = Array(String(chunk.count, radix: 16).utf8) + Array("\r\n".utf8)
            // Announced (the lean parser refuses it from the head) and chunked (the full
            // pipeline counts it): each client sends up to 256 MiB until the server closes.
            let heads = [
                ("POST / HTTP/1.1\r\nContent-Length: 1073741824\r\n\r\n", chunk),
                ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", chunkHead + chunk + Array("\r\n".utf8)),
            ]
            for (head, piece) in heads {
                let connection = try ClientConnection(port: port, timeout: 20)
                let fd = connection.fd
                #expect(sendAll(fd, Array(head.utf8)))
                let sender = sendInBackground(fd, piece, times: (256 << 20) / piece.count)
                let answer = receive(fd, atLeast: Int.max, timeout: .seconds(30))
                let text = String(decoding: answer.bytes, as: UTF8.self)
                #expect(text.hasPrefix("HTTP/1.1 413 Payload Too Large\r\n"), "\(head.debugDescription): \(text.prefix(200).debugDescription)")
                #expect(answer.closed, "the connection is closed")
                shutdown(fd, Int32(SHUT_RDWR))
                // The descriptor stays ours until the sender is done with it.
                try await sender.wait()
            }
            let after = try #require(residentKilobytes(worker))
            #expect(after - before < 32 << 10, "resident memory \(before) kB before, \(after) kB after")
            let last = try HTTP.get(port: port)
            #expect(last.body == "Hello World\n", "\(last) \(example.output)")
        }
    }
}

/// Sends all of `bytes`; false when the connection failed first.
private func sendAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var offset = 0
    while offset < bytes.count {
        let sent = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if sent < 0 && errno == EINTR { continue }
        if sent <= 0 { return false }
        offset += sent
    }
    return true
}

/// Sends `bytes` `times` times on a thread of its own, stopping at the first failure;
/// wait for the returned sender before closing `fd`.
private func sendInBackground(_ fd: Int32, _ bytes: [UInt8], times: Int) -> BackgroundSender {
    let sender = BackgroundSender()
    Thread.detachNewThread {
        for _ in 0..<times {
            guard sendAll(fd, bytes) else { break }
        }
        sender.done.withLock { $0 = true }
    }
    return sender
}

private final class BackgroundSender: Sendable {
    let done = Mutex(false)

    /// Returns when the thread has stopped sending.
    func wait() async throws {
        while !done.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(5)) }
    }
}

/// Reads until `atLeast` bytes came, the server closed (or reset) the connection, or
/// `timeout` passed with nothing more.
private func receive(_ fd: Int32, atLeast: Int, timeout: Duration) -> (bytes: [UInt8], closed: Bool) {
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 64 << 10)
    let deadline = ContinuousClock.now + timeout
    while bytes.count < atLeast {
        let left = deadline - ContinuousClock.now
        guard left > .zero else { return (bytes, false) }
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
        let ready = poll(&descriptor, 1, max(1, milliseconds))
        if ready < 0 && errno == EINTR { continue }
        guard ready > 0 else { continue }
        let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        if count > 0 {
            bytes += buffer[0..<count]
        } else if count == 0 || errno == ECONNRESET {
            return (bytes, true)
        } else if errno != EAGAIN && errno != EINTR {
            return (bytes, true)
        }
    }
    return (bytes, false)
}

extension Array where Element == UInt8 {
    fileprivate func ends(with suffix: String.UTF8View) -> Bool {
        count >= suffix.count && self[(count - suffix.count)...].elementsEqual(suffix)
    }
}

