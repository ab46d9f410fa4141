import Foundation
import Testing

extension IntegrationTests {
    /// systemd's two protocols with real processes: socket activation (`LISTEN_FDS`, from
    /// Debian's `systemd-socket-activate`) and sd_notify (a notify socket this test reads,
    /// as systemd does, with each sender's pid), and the shipped unit files as systemd's own
    /// checker reads them.
    @Suite(.timeLimit(.minutes(2)))
    struct SystemdTests {
        static let units = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../deploy/systemd").standardized.path

        /// The path of systemd's `tool`: missing, skipped with a printed reason, or in CI a failure.
        static func tool(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) -> String? {
            requiredTool(name, by: "SystemdTests", sourceLocation: sourceLocation)
        }

        @Test func aSocketFromSystemdServesThroughReloadUpgradeAndStopWhileTheNotifySocketHearsEachInOrder() async throws {
            guard let activate = Self.tool("systemd-socket-activate") else { return }
            let notify = try NotifySocket()
            let port = try freePort()
            let control = NSTemporaryDirectory() + "cluster-systemd-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
            let process = try SpawnedProcess(
                "cluster", ["run", "--listen", "fd:web", "--workers", "2", "--control", control, "--",
                            "python3", "\(CommandTests.programs)/python_server.py"],
                environment: ["NOTIFY_SOCKET": notify.path],
                launcher: [activate, "--listen=127.0.0.1:\(port)", "--fdname=web", "-E", "PATH", "-E", "NOTIFY_SOCKET"])
            defer { process.stop() }
            _ = try await process.waitForLine { $0.contains("Listening on 127.0.0.1:\(port)") }

            // Start: the first connection makes systemd-socket-activate exec the primary (same
            // pid), and waits in the socket's queue until a worker serves it.
            #expect(try HTTP.get(port: port, timeout: .seconds(30)).status == 200)
            let primary = process.pid
            let ready = try await notify.wait(for: "READY=1 from the primary") { $0.pid == primary && $0.has("READY=1") }
            #expect(ready.message.value("STATUS") == "2 of 2 workers ready")
            let workers = try controlStatus(control).compactMap { $0["pid"] as? Int }
            #expect(workers.count == 2)
            for worker in workers {
                let environment = (try? String(contentsOfFile: "/proc/\(worker)/environ", encoding: .utf8)) ?? ""
                let names = environment.split(separator: "\0").map { $0.prefix { $0 != "=" } }
                #expect(!names.contains("NOTIFY_SOCKET") && !names.contains("LISTEN_FDS"),
                        "a worker must not speak for the service nor take its sockets: \(names)")
            }

            // Reload: RELOADING=1 with the monotonic clock, then READY=1 when it is done.
            process.signal(SIGHUP)
            let reloading = try await notify.wait(after: ready.index + 1, for: "RELOADING=1") { $0.has("RELOADING=1") }
            #expect(reloading.message.pid == primary)
            #expect((reloading.message.value("MONOTONIC_USEC").flatMap { UInt64($0) } ?? 0) > 0)
            let reloaded = try await notify.wait(after: reloading.index + 1, for: "READY=1 after the reload") { $0.has("READY=1") }
            #expect(reloaded.message.pid == primary)

            // Hot upgrade: the new primary says MAINPID= (itself) and READY=1, and serves the same socket.
            process.signal(SIGUSR2)
            let handover = try await notify.wait(after: reloaded.index + 1, for: "MAINPID=") { $0.value("MAINPID") != nil }
            let successor = try #require(handover.message.value("MAINPID").flatMap { Int32($0) })
            process.adopt(successor)
            #expect(successor != primary && handover.message.pid == successor && handover.message.has("READY=1"), "\(handover.message)")
            #expect(try await process.waitForExit(timeout: .seconds(20)) == 0, "the old primary drains and exits 0")
            #expect(try HTTP.get(port: port).status == 200, "the socket systemd passed is served by the new primary")

            // Stop: STOPPING=1 from the primary that stops; none from the one that handed over.
            kill(successor, SIGTERM)
            let stopping = try await notify.wait(after: handover.index + 1, for: "STOPPING=1") { $0.has("STOPPING=1") }
            #expect(stopping.message.pid == successor)
            _ = try await eventually(timeout: .seconds(20)) { () throws -> Void in
                if isRunning(successor) { throw TestFailure.unexpected("primary \(successor) still runs") }
            }
            #expect(!notify.messages.contains { $0.pid == primary && $0.has("STOPPING=1") },
                    "the old primary's drain is not the service stopping: \(notify.messages)")
            print("systemd: notify messages in order: \(notify.messages.map(\.description).joined(separator: " | "))")
        }

        /// Runs `cluster run ARGUMENTS -- true` with `sockets` (python's names: "stream",
        /// "datagram") passed from descriptor 3 as a service manager passes them (LISTEN_PID
        /// is the cluster's own pid: the launcher execs it).
        static func runWithPassedSockets(_ sockets: [String], names: String, _ arguments: [String]) throws -> (code: Int32, output: String) {
            let launcher = """
                import os, socket, sys
                kinds = {"stream": socket.SOCK_STREAM, "datagram": socket.SOCK_DGRAM}
                wanted = [kind for kind in sys.argv[1].split(",") if kind]
                made = [socket.socket(socket.AF_INET, kinds[kind]) for kind in wanted]
                # Out of the way of descriptors 3 and up before they are placed there.
                high = [os.dup2(s.fileno(), 100 + index) for index, s in enumerate(made)]
                for index, s in enumerate(made):
                    s.bind(("127.0.0.1", 0))
                    if wanted[index] == "stream": s.listen(16)
                    os.dup2(high[index], 3 + index)
                    os.set_inheritable(3 + index, True)
                env = dict(os.environ)
                if made: env.update(LISTEN_FDS=str(len(made)), LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES=sys.argv[2])
                os.execve(sys.argv[3], sys.argv[3:], env)
                """
            return try runToEnd(try #require(which("python3")),
                                ["-c", launcher, sockets.joined(separator: ","), names, SpawnedProcess.product("cluster"), "run"]
                                    + arguments + ["--", "true"],
                                timeout: .seconds(10))
        }

        @Test(arguments: [
            ([String](), "", ["--listen", "fd:web"], "no sockets were passed to this process (LISTEN_FDS is not set)"),
            (["stream"], "web", ["--listen", "fd:api"], "no passed socket is named 'api' (LISTEN_FDNAMES: web)"),
            (["stream"], "web", ["--listen", "fd://4"], "passed descriptors 3 to 3, not 4"),
            (["stream"], "web", ["--listen", "fd:web", "--distribution", "reusePort"], "reusePort binds a socket for each worker"),
            (["datagram"], "web", ["--listen", "fd:web"], "is not a stream socket"),
            (["stream", "stream"], "web:web", ["--listen", "fd:web"], "2 passed sockets are named 'web'"),
            (["stream"], "web", ["--listen", "fd:web", "--listen", "fd://3"], "which another listener already uses"),
        ])
        func aPassedSocketTheClusterCannotServeIsAClearError(sockets: [String], names: String, arguments: [String], message: String) throws {
            let (code, output) = try Self.runWithPassedSockets(sockets, names: names, arguments)
            #expect(code != 0 && output.contains(message), "exit \(code): \(output)")
        }

        @Test func theShippedUnitsPassSystemdsOwnCheck() throws {
            guard let analyze = Self.tool("systemd-analyze") else { return }
            // The units name installed paths; checked here with this build's binary in their place.
            let directory = NSTemporaryDirectory() + "units-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            for unit in ["cluster-app.socket", "cluster-app.service"] {
                let text = try String(contentsOfFile: "\(Self.units)/\(unit)", encoding: .utf8)
                    .replacingOccurrences(of: "/usr/local/bin/cluster", with: SpawnedProcess.product("cluster"))
                    .replacingOccurrences(of: "/usr/local/bin/app", with: try #require(which("python3")))
                try text.write(toFile: "\(directory)/\(unit)", atomically: true, encoding: .utf8)
            }
            let (code, output) = try runToEnd(analyze, ["verify", "--man=no", "\(directory)/cluster-app.socket", "\(directory)/cluster-app.service"],
                                              timeout: .seconds(30))
            #expect(code == 0 && output.isEmpty, "systemd-analyze verify: exit \(code): \(output)")
            let service = try String(contentsOfFile: "\(Self.units)/cluster-app.service", encoding: .utf8)
            for setting in ["Type=notify", "NotifyAccess=all", "KillMode=mixed", "--listen fd:web"] {
                #expect(service.contains(setting), "the service unit needs \(setting)")
            }
        }
    }
}
