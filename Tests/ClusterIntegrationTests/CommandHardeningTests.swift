import Foundation
import Testing

extension IntegrationTests {
    /// `cluster` given hostile values and hostile paths, as the real binary: every bad value
    /// is a clear error (never a trap), and no file or socket of someone else's is taken.
    @Suite(.timeLimit(.minutes(2)))
    struct CommandHardeningTests {
        typealias Command = CommandTests

        /// A bad flag, and what its error must say after `Error: `.
        static let badFlags: [([String], String)] = [
            (["--drain-timeout", "1e308s"], "--drain-timeout: '1e308s' is not a duration from 0s to 24h, such as 500ms, 2s, 5m or 1h"),
            (["--drain-timeout", "99999999999999999999h"], "--drain-timeout: '99999999999999999999h' is out of range; give a duration from 0s to 24h"),
            (["--drain-timeout", "9000000000000s"], "--drain-timeout: '9000000000000s' is out of range; give a duration from 0s to 24h"),
            (["--drain-timeout", "-5s"], "--drain-timeout: '-5s' is negative; give a duration from 0s to 24h"),
            (["--watchdog", "9223372036854775807"], "--watchdog: '9223372036854775807' is out of range; give a duration from 1s to 24h"),
            (["--max-age", "1e300"], "--max-age: '1e300' is not a duration from 10s to 365d"),
            (["--boot-timeout", "nan"], "--boot-timeout: 'nan' is not a duration from 1s to 24h"),
            (["--listen", "http://x:80"], "--listen: 'http://x:80' has the scheme 'http', which cluster does not listen with; write tcp://HOST:PORT, unix:PATH, fd://N or fd:NAME"),
            (["--admin", "http://x:80"], "--admin: 'http://x:80' has the scheme 'http'"),
            (["--user", "nosuchuser"], "--user: no user named 'nosuchuser' exists on this machine"),
            (["--group", "nosuchgroup"], "--group: no group named 'nosuchgroup' exists on this machine"),
            (["--workers", "0"], "--workers: '0' is not a worker count from 1 to 1024, or auto"),
            (["--workers", "-3"], "--workers: '-3' is not a worker count from 1 to 1024, or auto"),
            (["--max-rss", "99999999999999999999"], "--max-rss: '99999999999999999999' is not MiB from 1 to 1048576"),
            (["--limit-nofile", "-1"], "--limit-nofile: '-1' is not a count from 16 to 1048576"),
        ]

        @Test(arguments: badFlags)
        func aBadValueIsRefusedByValidateAndRunNamingTheOptionTheValueAndTheRange(flags: [String], message: String) throws {
            let control = NSTemporaryDirectory() + "cluster-bad-\(getpid()).sock"
            for subcommand in ["validate", "run"] {
                let result = try Command.cluster([subcommand, "--listen", "tcp://127.0.0.1:0", "--control", control] + flags + ["--", "true"])
                // 64 is ArgumentParser's usage error; 128 + n would be a signal (a trap is SIGILL or SIGTRAP).
                #expect(result.code == 64, "cluster \(subcommand) \(flags): \(result)")
                #expect(result.output.contains("Error: " + message), "cluster \(subcommand) \(flags): \(result.output)")
                #expect(!result.output.contains("Fatal error"), "\(result.output)")
            }
            #expect(access(control, F_OK) != 0, "nothing was bound")
        }

        @Test func theEdgesOfEveryRangeAreAccepted() throws {
            let edges = ["--workers", "1024", "--ready-after", "0", "--boot-timeout", "1s", "--drain-timeout", "24h",
                         "--restart-delay", "0.5ms", "--boot-period", "86400s", "--max-surge", "1", "--watchdog", "1000ms",
                         "--max-age", "365d", "--scale-down-after", "1440m", "--max-rss", "1048576", "--limit-nofile", "16",
                         "--limit-as", "1048576", "--limit-cpu", "31536000", "--max-boot-failures", "10000",
                         "--user", "0", "--group", "root", "--admin", "127.0.0.1:0",
                         "--listen", "tcp://[::1]:0", "--listen", ":0", "--listen", "unix:/tmp/edge.sock"]
            let result = try Command.cluster(["validate"] + edges + ["--", "true"])
            #expect(result.code == 0, "\(result)")
            #expect(result.output == "ok: 1024 workers of 'true' on tcp://[::1]:0, tcp://0.0.0.0:0, unix:/tmp/edge.sock (shared)\n", "\(result)")
            for (flag, value) in [("--drain-timeout", "24.001h"), ("--boot-timeout", "999ms"), ("--max-age", "9s"), ("--workers", "1025")] {
                let outside = try Command.cluster(["validate", "--listen", ":0", flag, value, "--", "true"])
                #expect(outside.code == 64 && outside.output.contains("Error: \(flag): '\(value)'"), "just outside: \(outside)")
            }
        }

        @Test func aBadValueInAConfigFileNamesTheFileTheLineTheKeyAndTheRange() throws {
            let file = NSTemporaryDirectory() + "cluster-bad-\(getpid()).yaml"
            defer { unlink(file) }
            let cases: [(String, String)] = [
                ("drain-timeout: 1e308s", "key 'drain-timeout': '1e308s' is not a duration from 0s to 24h"),
                ("max-age: 99999999999999999999h", "key 'max-age': '99999999999999999999h' is out of range; give a duration from 10s to 365d"),
                ("watchdog: -1s", "key 'watchdog': '-1s' is negative; give a duration from 1s to 24h"),
                ("workers: 0", "key 'workers': '0' is not a worker count from 1 to 1024, or auto"),
                ("user: nosuchuser", "key 'user': no user named 'nosuchuser' exists on this machine"),
                ("listen: [ftp://x:21]", "key 'listen': 'ftp://x:21' has the scheme 'ftp'"),
            ]
            for (line, message) in cases {
                try "command: [python3, app.py]\n\(line)\n".write(toFile: file, atomically: true, encoding: .utf8)
                let result = try Command.cluster(["validate", file])
                #expect(result.code == 64 && result.output.contains("Error: \(file):2: \(message)"), "\(line): \(result)")
            }
        }

        @Test func theLongestDurationsStillStartAndATERMStillDrains() async throws {
            let control = NSTemporaryDirectory() + "cluster-long-\(getpid()).sock"
            let process = try SpawnedProcess("cluster", ["run", "--listen", "tcp://127.0.0.1:0", "--workers", "1", "--control", control,
                                                         "--drain-timeout", "24h", "--boot-timeout", "24h", "--max-age", "365d",
                                                         "--restart-delay", "1h", "--boot-period", "24h",
                                                         "--", "python3", "\(Command.programs)/python_server.py"])
            defer { process.stop() }
            try await process.waitForLine { $0.hasPrefix("[worker 1] python ") && $0.hasSuffix(" serving") }
            process.signal(SIGTERM)
            try await process.waitForLine { $0.hasPrefix("[worker 1] python ") && $0.hasSuffix(" drained") }
            #expect(try await process.waitForExit(timeout: .seconds(15)) == 0, "TERM drained and stopped with 0, no trap: \(process.output)")
        }

        // MARK: Paths

        static func path(_ name: String) -> String {
            NSTemporaryDirectory() + "cluster-\(name)-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        }

        /// A Unix socket bound at `path`: listening (another service's live socket), or closed
        /// at once (a stale file, as a killed process leaves).
        static func bindSocket(_ path: String, listening: Bool) throws -> Int32 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in raw.copyBytes(from: path.utf8) }
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            try #require(bound == 0, "bind \(path): errno \(errno)")
            if listening { try #require(listen(fd, 16) == 0) } else { close(fd) }
            return fd
        }

        /// True when something accepts connections at `path`.
        static func answers(_ path: String) throws -> Bool {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            defer { close(fd) }
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &address.sun_path) { raw in raw.copyBytes(from: path.utf8) }
            return withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            } == 0
        }

        static func inode(_ path: String) -> UInt? {
            var info = stat()
            return lstat(path, &info) == 0 ? UInt(info.st_ino) : nil
        }

        /// `--control` or `--listen unix:` given another's regular file or live socket.
        static let occupiedPaths: [(flag: String, live: Bool, message: String)] = [
            ("--control", false, "is a regular file, not a socket; it is left as it is, so the control socket cannot use that path"),
            ("--control", true, "a process is listening on the socket"),
            ("--listen", false, "is a regular file, not a socket; it is left as it is, so the listener unix:"),
            ("--listen", true, "a process is listening on the socket"),
        ]

        @Test(arguments: occupiedPaths)
        func aRegularFileOrAnotherServicesLiveSocketIsLeftAsItIs(flag: String, live: Bool, message: String) throws {
            let path = Self.path(live ? "live" : "file")
            var listener: Int32 = -1
            if live {
                listener = try Self.bindSocket(path, listening: true)
            } else {
                try "precious data\n".write(toFile: path, atomically: false, encoding: .utf8)
            }
            defer {
                if listener >= 0 { close(listener) }
                unlink(path)
            }
            let before = Self.inode(path)
            let control = flag == "--control" ? path : Self.path("control")
            var arguments = ["run", "--workers", "1", "--control", control, "--listen", "tcp://127.0.0.1:0"]
            if flag == "--listen" { arguments += ["--listen", "unix:" + path] }
            let result = try Command.cluster(arguments + ["--", "sleep", "30"])
            #expect(result.code == 1, "a refusal, not a trap or a start: \(result)")
            #expect(result.output.contains(path) && result.output.contains(message), "\(result.output)")
            #expect(Self.inode(path) == before, "the same file is still there")
            if live {
                #expect(try Self.answers(path), "the other service still answers on its socket")
            } else {
                #expect(try String(contentsOfFile: path, encoding: .utf8) == "precious data\n")
            }
        }

        @Test func aStaleControlSocketAndAStaleListenSocketAreReplaced() async throws {
            let control = Self.path("stale-control"), listen = Self.path("stale-listen")
            _ = try Self.bindSocket(control, listening: false)
            _ = try Self.bindSocket(listen, listening: false)
            defer { unlink(control); unlink(listen) }
            #expect(try !Self.answers(control) && !Self.answers(listen), "both are stale: files nobody answers on")
            let process = try SpawnedProcess("cluster", ["run", "--workers", "1", "--control", control, "--listen", "unix:" + listen,
                                                         "--readiness", "started", "--ready-after", "0s", "--", "sleep", "600"])
            defer { process.stop() }
            try await process.waitForLine { $0.hasPrefix("[cluster] listening on unix:\(listen) ") }
            try await process.waitForLine { $0.hasPrefix("[cluster] control socket \(control);") }
            #expect(try Self.answers(listen), "the cluster listens where the stale socket was")
            let status = try Command.cluster(["status", "--json", "--control", control])
            #expect(status.code == 0 && status.output.contains("\"primaryPID\""), "\(status)")
            let none = try Command.cluster(["scale", "0", "--control", control])
            #expect(none.code == 1 && none.output.contains("scale takes a worker count from 1 to 1024"), "\(none)")
            let stop = try Command.cluster(["stop", "--control", control])
            #expect(stop.code == 0, "\(stop)")
            #expect(try await process.waitForExit(timeout: .seconds(15)) == 0)
            #expect(Self.inode(control) == nil, "the primary removed its own control socket on the way out")
        }

        @Test func theDefaultControlDirectoryMustBeTheUsersAndWritableByNoOneElse() async throws {
            let directory = NSTemporaryDirectory() + "cluster-runtime-\(getpid())"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let run = ["run", "--workers", "1", "--listen", "tcp://127.0.0.1:0", "--readiness", "started", "--ready-after", "0s", "--", "sleep", "600"]

            chmod(directory, 0o777)
            let open = try Command.cluster(run, environment: ["XDG_RUNTIME_DIR": directory])
            #expect(open.code == 1 && open.output.contains("\(directory) may be written by other users (mode 777)"), "\(open)")
            if getuid() == 0 {
                chmod(directory, 0o700)
                chown(directory, 65534, 65534)
                let foreign = try Command.cluster(run, environment: ["XDG_RUNTIME_DIR": directory])
                #expect(foreign.code == 1 && foreign.output.contains("\(directory) belongs to uid 65534, not to you (uid 0)"), "\(foreign)")
                chown(directory, 0, 0)
            }
            #expect(Self.inode(directory + "/cluster.sock") == nil, "no socket was made in a directory that failed the check")

            chmod(directory, 0o700)
            let process = try SpawnedProcess("cluster", run, environment: ["XDG_RUNTIME_DIR": directory])
            defer { process.stop() }
            try await process.waitForLine { $0.hasPrefix("[cluster] control socket \(directory)/cluster.sock;") }
            let status = try Command.cluster(["status", "--json"], environment: ["XDG_RUNTIME_DIR": directory])
            #expect(status.code == 0 && status.output.contains("\"primaryPID\""), "the client finds the default path too: \(status)")
            process.signal(SIGTERM)
            #expect(try await process.waitForExit(timeout: .seconds(15)) == 0)
        }

        /// A control server as another user would squat the path with: it binds, becomes
        /// `nobody`, listens, logs what each client sends and answers as a cluster would.
        static let foreignServer = """
            import os, socket, sys
            path = sys.argv[1]
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(path)
            os.chmod(path, 0o777)
            os.setgroups([]); os.setgid(65534); os.setuid(65534)
            server.listen(16)  # the credentials SO_PEERCRED reports are taken here
            print(f"listening as uid {os.getuid()}", flush=True)
            while True:
                client, _ = server.accept()
                request = client.recv(65536)
                print(f"request: {request!r}", flush=True)
                try:
                    client.sendall(b'{"ok":true,"message":"stopping now"}\\n')
                except OSError:
                    pass
                client.close()
            """

        @Test(.enabled(if: getuid() == 0, "becoming another user takes root"))
        func aClientSendsNothingToAControlSocketServedByAnotherUser() async throws {
            let path = Self.path("foreign")
            defer { unlink(path) }
            let python = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") ? "/usr/bin/python3" : "python3"
            let server = Process()
            server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            server.arguments = [python, "-c", Self.foreignServer, path]
            let pipe = Pipe()
            server.standardOutput = pipe
            server.standardError = pipe
            try server.run()
            defer { kill(server.processIdentifier, SIGKILL) }
            let lines = Lines()
            Thread.detachNewThread {
                let reader = pipe.fileHandleForReading
                var data = Data()
                while true {
                    let chunk = reader.availableData
                    if chunk.isEmpty { return }
                    data.append(chunk)
                    while let newline = data.firstIndex(of: 10) {
                        lines.append(String(decoding: data[data.startIndex..<newline], as: UTF8.self))
                        data.removeSubrange(data.startIndex...newline)
                    }
                }
            }
            _ = try await eventually { () throws -> Void in
                guard lines.all.contains("listening as uid 65534") else { throw TestFailure.unexpected("\(lines.all)") }
            }
            for command in [["status"], ["stop"], ["stop", "--now"]] {
                let result = try Command.cluster(command + ["--control", path])
                #expect(result.code == 1, "\(command): \(result)")
                #expect(result.output.contains("the control socket \(path) is served by uid 65534, not by you (uid 0) or root; nothing was sent to it"), "\(result.output)")
                #expect(!result.output.contains("stopping now"), "the forged answer was not believed")
            }
            let requests = try await eventually { () throws -> [String] in
                let requests = lines.all.filter { $0.hasPrefix("request: ") }
                guard requests.count == 3 else { throw TestFailure.unexpected("\(lines.all)") }
                return requests
            }
            #expect(requests.allSatisfy { $0 == "request: b''" }, "the server got no request: \(requests)")
        }
    }
}
