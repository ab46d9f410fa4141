import Foundation
import Testing

extension IntegrationTests {
    /// Listeners behind a PROXY protocol balancer, with real processes and sockets: the
    /// client drives the balancer's side by writing the header HAProxy would send.
    @Suite(.timeLimit(.minutes(3)))
    struct ProxyProtocolTests {
        static let strategies = ["shared", "reusePort", "roundRobin", "leastConnections", "sticky"]

        /// The fixture's HTTP server on `tcp://0.0.0.0:0?proxy=VERSION`; its port.
        private func start(_ strategy: String, proxy: String, acceptMode: String = "automatic") async throws -> (SpawnedProcess, port: Int) {
            let primary = try SpawnedProcess("ClusterFixture", ["serve"], environment: [
                "WORKERS": "2", "DISTRIBUTION": strategy, "LISTEN": "tcp://0.0.0.0:0?proxy=\(proxy)", "ACCEPT_MODE": acceptMode,
            ])
            let listening = try await primary.waitForEvents(["event": "listening"], count: 2)
            for event in listening { primary.adopt(Int32(event["pid"] as! Int)) }
            return (primary, listening[0]["port"] as! Int)
        }

        /// What HAProxy sends for a TCP client at `source`:`port` to 127.0.0.1:80.
        static func header(_ version: String, source: String, port: UInt16 = 4242) -> [UInt8] {
            if version == "v1" { return Array("PROXY TCP4 \(source) 127.0.0.1 \(port) 80\r\n".utf8) }
            let address = source.split(separator: ".").map { UInt8($0)! }
            return [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0x00, 0x0C]
                + address + [127, 0, 0, 1] + [UInt8(port >> 8), UInt8(port & 0xFF), 0, 80]
        }

        /// Sends `version`'s header for `source`, then GET /client; the worker and the
        /// client it saw.
        static func ask(port: Int, version: String, source: String, from real: String? = nil) throws -> (worker: String, client: String) {
            let connection = try ClientConnection(port: port, source: real)
            connection.sendRaw(header(version, source: source))
            let (outcome, response) = connection.get("/client", keepAlive: false)
            guard case .ok(let worker) = outcome, let words = response?.body.split(whereSeparator: \.isWhitespace), words.count == 4 else {
                throw TestFailure.unexpected("\(source): \(outcome), \(response?.body ?? "no body")")
            }
            return (worker, String(words[3]))
        }

        @Test(arguments: strategies, ["v1", "v2"])
        func theWorkerSeesTheClientTheHeaderNames(strategy: String, version: String) async throws {
            let (primary, port) = try await start(strategy, proxy: version)
            defer { primary.stop() }
            for index in 0..<8 {
                let source = "203.0.113.\(index + 1)"
                #expect(try Self.ask(port: port, version: version, source: source).client == source)
            }

            // A header of the other version, and a request with no header: closed, unanswered.
            for bytes in [Self.header(version == "v1" ? "v2" : "v1", source: "198.51.100.9"), Array("GET / HTTP/1.1\r\n\r\n".utf8)] {
                let bad = try ClientConnection(port: port)
                bad.sendRaw(bytes)
                #expect(bad.closesUnanswered(), "\(strategy) \(version): a connection without a good header was served")
            }
            #expect(try Self.ask(port: port, version: version, source: "192.0.2.200").client == "192.0.2.200")
        }

        @Test(arguments: ["sticky", "reusePort"])
        func theRuntimesAcceptPathReadsTheHeaderToo(strategy: String) async throws {
            // The worker's I/O thread takes the handoffs on its channel, or accepts itself.
            let (primary, port) = try await start(strategy, proxy: "v2", acceptMode: "runtime")
            defer { primary.stop() }
            for index in 0..<4 {
                let source = "203.0.113.\(index + 50)"
                #expect(try Self.ask(port: port, version: "v2", source: source).client == source)
            }
        }

        @Test(arguments: ["v1", "v2"])
        func stickyRoutesByTheClientTheHeaderNames(version: String) async throws {
            let (primary, port) = try await start("sticky", proxy: version)
            defer { primary.stop() }
            var workers: Set<String> = []
            for index in 0..<16 {
                let source = "198.51.100.\(index + 1)"
                // The same client through two balancer connections from different addresses.
                let first = try Self.ask(port: port, version: version, source: source, from: "127.0.0.2")
                let second = try Self.ask(port: port, version: version, source: source, from: "127.0.0.\(index + 3)")
                #expect(first.worker == second.worker, "\(source) reached workers \(first.worker) and \(second.worker)")
                workers.insert(first.worker)
            }
            #expect(workers.count == 2, "16 clients all on worker \(workers)")
        }

        @Test func underClusterRunTheHeaderIsLeftForTheProgramToRead() async throws {
            // The program gets the socket itself: the first line it reads is the header.
            let program = "import socket; s = socket.socket(fileno=3); c, _ = s.accept(); line = c.makefile('rb').readline(); c.sendall(line); c.close()"
            let process = try SpawnedProcess("cluster", ["run", "--listen", "tcp://127.0.0.1:0?proxy=v1", "--workers", "1", "--", "python3", "-c", program])
            defer { process.stop() }
            let listening = try await process.waitForLine { $0.hasPrefix("[cluster] listening on tcp://") }
            #expect(listening.contains("?proxy=v1"))
            let port = try #require(listening.split(separator: ":").dropFirst(2).first.flatMap { Int($0.prefix { $0.isNumber }) })
            let header = Self.header("v1", source: "192.0.2.33")
            let echoed = try await eventually { () throws -> [UInt8] in
                let connection = try ClientConnection(port: port, timeout: 5)
                connection.sendRaw(header)
                var bytes: [UInt8] = [], buffer = [UInt8](repeating: 0, count: 256)
                while case let n = recv(connection.fd, &buffer, buffer.count, 0), n > 0 { bytes += buffer[0..<n] }
                guard !bytes.isEmpty else { throw TestFailure.unexpected("nothing echoed yet") }
                return bytes
            }
            #expect(echoed == header)
        }

        @Test(arguments: ["shared", "roundRobin"])
        func aConnectionThatEndsInsideItsHeaderIsClosedAtOnce(strategy: String) async throws {
            let (primary, port) = try await start(strategy, proxy: "v1")
            defer { primary.stop() }
            let started = ContinuousClock.now
            let cut = try ClientConnection(port: port, timeout: 15)
            cut.sendRaw(Array(Self.header("v1", source: "192.0.2.1").prefix(20)))
            shutdown(cut.fd, Int32(SHUT_WR))
            #expect(cut.closesUnanswered())
            #expect(ContinuousClock.now - started < .seconds(4), "closed only by the header timeout")
            #expect(try Self.ask(port: port, version: "v1", source: "192.0.2.2").client == "192.0.2.2")
        }

        @Test(arguments: ["shared", "roundRobin"])
        func aSilentConnectionIsClosedAfterTheHeaderTimeoutWhileOthersAreServed(strategy: String) async throws {
            let (primary, port) = try await start(strategy, proxy: "v2")
            defer { primary.stop() }
            let silent = try ClientConnection(port: port, timeout: 15)
            let half = try ClientConnection(port: port, timeout: 15)
            half.sendRaw(Array(Self.header("v2", source: "192.0.2.1").prefix(10)))
            let started = ContinuousClock.now
            for index in 0..<4 {
                let source = "192.0.2.\(index + 10)"
                #expect(try Self.ask(port: port, version: "v2", source: source).client == source)
            }
            #expect(silent.closesUnanswered() && half.closesUnanswered())
            let waited = ContinuousClock.now - started
            #expect(waited >= .seconds(4) && waited < .seconds(14), "closed after \(waited), not after the 5 s header timeout")
        }
    }
}

extension ClientConnection {
    /// Writes `bytes` as they are (a PROXY header).
    func sendRaw(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    /// True when the server ends the connection (closes or resets it) without a byte.
    func closesUnanswered() -> Bool {
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, 0)
        return n == 0 || (n < 0 && errno == ECONNRESET)
    }
}
