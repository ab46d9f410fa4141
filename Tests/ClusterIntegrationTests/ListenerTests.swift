import Foundation
import Testing

extension IntegrationTests {
    /// Listeners of every family, bound by the primary at a worker's request.
    @Suite(.timeLimit(.minutes(1)))
    struct ListenerTests {
        @Test func workersServeOnUnixDomainAndIPv6Listeners() async throws {
            let socketPath = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-\(getpid()).sock").path
            defer { unlink(socketPath) }
            let primary = try SpawnedProcess("ClusterFixture", ["listeners"], environment: ["SOCKET_PATH": socketPath])
            defer { primary.stop() }
            let unix = try await primary.waitForEvent(["event": "listening", "address": "unix:\(socketPath)"])
            primary.adopt(Int32(unix["pid"] as! Int))
            let tcp = try await primary.waitForLine { $0.contains(#""event":"listening""#) && $0.contains("[::1]") }
            let port = SpawnedProcess.json(tcp)!["port"] as! Int

            #expect(try request(family: AF_INET6, port: port, path: "/six") == "worker 1 on /six\n")
            #expect(try request(unixPath: socketPath, path: "/unix") == "worker 1 on /unix\n")
        }

        private func request(family: Int32, port: Int, path: String) throws -> String {
            var address = sockaddr_in6()
            address.sin6_family = sa_family_t(AF_INET6)
            address.sin6_port = UInt16(port).bigEndian
            address.sin6_addr = in6addr_loopback
            return try exchange(family: family, path: path) { fd in
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
                }
            }
        }

        private func request(unixPath: String, path: String) throws -> String {
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in
                raw.copyBytes(from: unixPath.utf8)
                raw[unixPath.utf8.count] = 0
            }
            return try exchange(family: AF_UNIX, path: path) { fd in
                withUnsafePointer(to: &address) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
                }
            }
        }

        private func exchange(family: Int32, path: String, connecting: (Int32) -> Int32) throws -> String {
            let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var limit = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            guard connecting(fd) == 0 else { throw TestFailure.unexpected("connect: errno \(errno)") }
            let request = "GET \(path) HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            _ = request.withCString { send(fd, $0, strlen($0), Int32(MSG_NOSIGNAL)) }
            var bytes: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while case let n = recv(fd, &buffer, buffer.count, 0), n > 0 { bytes += buffer[0..<n] }
            return try HTTP.parse(String(decoding: bytes, as: UTF8.self)).body
        }
    }
}

extension IntegrationTests {
    @Suite(.timeLimit(.minutes(1)))
    struct ServerBootstrapTests {
        @Test func aServerBootstrapServesOnThePrimarysListenerWhoseBacklogIsRestored() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["bootstrap"])
            defer { primary.stop() }
            let listening = try await primary.waitForEvent(["event": "listening"])
            primary.adopt(Int32(listening["pid"] as! Int))
            let port = listening["port"] as! Int
            #expect(try HTTP.get(port: port).body == "bootstrapped\n")

            // The bootstrap asked for a backlog of 16; the worker gave SwiftNIO the primary's.
            let somaxconn = Int((try? String(contentsOfFile: "/proc/sys/net/core/somaxconn", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 4096
            #expect(try listenBacklog(port: port) == min(4096, somaxconn))
        }

        /// On a shared socket every worker would be woken for every connection, which
        /// SwiftNIO's server channel treats as a bug: `bind` refuses it and says what to use.
        @Test func aServerBootstrapOnASharedListenerIsRefusedWithAClearError() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["bootstrap", "shared"])
            defer { primary.stop() }
            let failed = try await primary.waitForEvent(["event": "bindFailed"])
            let error = failed["error"] as? String ?? ""
            #expect(error.contains("distributed by shared") && error.contains("needs a reusePort listener")
                    && error.contains("Use serve(_:)"), "\(error)")
        }

        /// The accept-queue limit of the listener on `port`, as `ss -ltn` reports it (Send-Q).
        private func listenBacklog(port: Int) throws -> Int? {
            let ss = Process()
            ss.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            ss.arguments = ["ss", "-Hltn", "sport = :\(port)"]
            let pipe = Pipe()
            ss.standardOutput = pipe
            try ss.run()
            ss.waitUntilExit()
            let line = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let fields = line.split(whereSeparator: \.isWhitespace)
            return fields.count > 2 ? Int(fields[2]) : nil
        }
    }
}
