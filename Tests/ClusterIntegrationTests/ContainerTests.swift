import Foundation
import Testing

extension IntegrationTests {
    /// What a container runtime and Kubernetes rely on, with real processes: readiness that
    /// fails as soon as a drain begins, the primary as PID 1 (in a PID namespace of its own,
    /// as in a container), and the image's entry point (`deploy/container/Dockerfile`) run
    /// as the image runs it.
    @Suite(.timeLimit(.minutes(2)))
    struct ContainerTests {
        static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().path
        static let python = ["python3", "\(CommandTests.programs)/python_server.py"]
        /// `unshare` as a container runtime starts PID 1: a PID namespace and its own /proc.
        static let pidNamespace = ["/usr/bin/unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]
        static let canUnshare = getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare")

        /// The admin port `cluster run --admin` reports (`admin endpoints on …:PORT`).
        static func adminPort(of process: SpawnedProcess) async throws -> Int {
            let line = try await process.waitForLine { $0.hasPrefix("[cluster] admin endpoints on ") }
            return try #require(line.split(separator: ":").last.flatMap { Int($0) })
        }

        @Test func underClusterRunReadinessFailsAsSoonAsTheDrainBeginsWhileARequestInFlightIsStillServed() async throws {
            let cluster = try await CommandTests.start(Self.python, workers: 1, ["--admin", "127.0.0.1:0", "--drain-timeout", "30s"])
            defer { cluster.process.stop() }
            let admin = try await Self.adminPort(of: cluster.process)
            try await Self.drainWhileHoldingARequest(cluster.process, port: cluster.port, admin: admin) { release in
                try await cluster.process.waitForLine { $0.contains("holds a request until \(release)") }
            }
        }

        /// In a library cluster a draining worker keeps its channel, and counts as serving,
        /// until its last connection closes: readiness must not wait for that.
        @Test func inALibraryClusterReadinessFailsAsSoonAsTheDrainBeginsWhileARequestInFlightIsStillServed() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["supervised"],
                                             environment: ["WORKERS": "1", "ADMIN_PORT": "0", "DRAIN_TIMEOUT_MS": "30000"])
            defer { primary.stop() }
            let port = try #require(try await primary.waitForEvent(["event": "listening"])["port"] as? Int)
            let admin = try #require(try await primary.waitForEvent(["event": "admin"])["port"] as? Int)
            try await Self.drainWhileHoldingARequest(primary, port: port, admin: admin) { _ in
                try await primary.waitForEvent(["event": "request", "path": "/slow"])
            }
        }

        /// Holds a request open (`/slow?until=FILE`; `held` waits until the server has it),
        /// sends SIGTERM, and checks that `/readyz` answers 503 `draining` while that
        /// request is still open and unanswered, that it is then answered, and that the
        /// cluster exits 0.
        static func drainWhileHoldingARequest(_ process: SpawnedProcess, port: Int, admin: Int,
                                              held: (String) async throws -> Void) async throws {
            let release = NSTemporaryDirectory() + "cluster-release-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            defer { unlink(release) }
            _ = try await eventually { () throws -> Void in
                guard try HTTP.get(port: admin, path: "/readyz").status == 200 else { throw TestFailure.unexpected("not ready") }
            }
            let connection = try ClientConnection(port: port, timeout: 30)
            #expect(connection.send("/slow?until=\(release)", keepAlive: false) == nil)
            try await held(release)

            let stopped = ContinuousClock.now
            process.signal(SIGTERM)
            let notReady = try await eventually { () throws -> HTTP.Response in
                let response = try HTTP.get(port: admin, path: "/readyz")
                guard response.status == 503 else { throw TestFailure.unexpected("\(response)") }
                return response
            }
            let flipped = ContinuousClock.now - stopped
            #expect(notReady.body == "not ready: draining\n")
            #expect(isOpenAndUnanswered(connection.fd), "the request in flight was closed or answered before readiness failed")
            #expect(try HTTP.get(port: admin, path: "/healthz").status == 200, "the primary is alive while it drains")

            #expect(FileManager.default.createFile(atPath: release, contents: nil))
            let (outcome, response) = connection.receive()
            #expect(response?.status == 200, "the request in flight was served to its end: \(outcome)")
            #expect(try await process.waitForExit(timeout: .seconds(15)) == 0)
            print("readiness: /readyz answered 503 \(flipped) after SIGTERM, the request in flight then completed (\(response?.status ?? 0))")
        }

        /// Whether the connection is open with nothing to read yet (no answer, no close).
        static func isOpenAndUnanswered(_ fd: Int32) -> Bool {
            var byte: UInt8 = 0
            return recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT)) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
        }

        @Test(.enabled(if: canUnshare, "a PID namespace needs root and unshare"))
        func asPID1AHotUpgradeIsRefusedAndAReloadTakesItsPlace() async throws {
            let (process, port, primary, worker) = try await CommandTests.startAsPID1()
            defer { process.stop() }

            kill(primary, SIGUSR2)
            let refusal = try await process.waitForLine { $0.contains("hot upgrade is refused as PID 1") }
            #expect(refusal.contains("`cluster reload` or SIGHUP"), "\(refusal)")
            #expect(children(of: primary) == [worker], "no new primary was started")
            #expect(try HTTP.get(port: port).status == 200, "it keeps serving")

            kill(primary, SIGHUP)
            try await process.waitForLine { $0.contains("reload complete: every worker is generation 2") }
            #expect(try HTTP.get(port: port).status == 200)
            _ = try await eventually { () throws -> Void in
                guard !children(of: primary).contains(worker) else { throw TestFailure.unexpected("worker \(worker) still runs") }
            }

            kill(primary, SIGTERM)
            #expect(try await process.waitForExit(timeout: .seconds(15)) == 0, "TERM drains and stops with 0")
            print("PID 1: \(refusal)")
        }

        /// The image's ENTRYPOINT and CMD, with its ENV, run as PID 1 from this build's
        /// binaries (the image copies them to /usr/local/bin): it serves, its HEALTHCHECK
        /// passes, and its STOPSIGNAL drains it to exit 0 within its drain timeout. Only the
        /// ports differ: this PID namespace shares the host's network.
        @Test(.enabled(if: canUnshare, "a PID namespace needs root and unshare"))
        func theImagesEntryPointServesAsPID1AndItsStopSignalDrainsItToExit0() async throws {
            let dockerfile = try Dockerfile(path: "\(Self.repository)/deploy/container/Dockerfile")
            let command = try #require(try dockerfile.execForm("ENTRYPOINT")) + (try dockerfile.execForm("CMD") ?? [])
            let stopSignal = try #require(dockerfile.arguments("STOPSIGNAL"))
            #expect(stopSignal == "SIGTERM")
            let executable = try #require(command.first)
            #expect(executable.hasPrefix("/usr/local/bin/"))
            var environment = dockerfile.environment
            let drainTimeout = Duration.milliseconds(try #require(environment["DRAIN_TIMEOUT_MS"].flatMap { Int($0) }))
            #expect(Set(dockerfile.exposedPorts) == Set([environment["PORT"], environment["ADMIN_PORT"]].compactMap { $0.flatMap { Int($0) } }))
            let port = try freePort()
            var admin = try freePort()
            while admin == port { admin = try freePort() }
            environment["PORT"] = String(port)
            environment["ADMIN_PORT"] = String(admin)

            let process = try SpawnedProcess(URL(fileURLWithPath: executable).lastPathComponent, Array(command.dropFirst()),
                                             environment: environment, launcher: Self.pidNamespace)
            defer { process.stop() }
            try await process.waitForLine { $0 == "Primary 1 is running" }
            _ = try await eventually(timeout: .seconds(20)) { () throws -> Void in
                guard try HTTP.get(port: admin, path: "/readyz").status == 200 else { throw TestFailure.unexpected("not ready") }
            }
            let answer = try HTTP.get(port: port)
            #expect(answer.status == 200 && answer.body == "Hello World\n", "\(answer)")
            let healthcheck = try #require(try dockerfile.healthcheck())
            let (code, output) = try runToEnd(healthcheck[0], Array(healthcheck.dropFirst()), environment: environment, timeout: .seconds(5))
            #expect(code == 0, "the HEALTHCHECK failed: \(output)")

            let primary = try #require(children(of: process.pid).first) // PID 1 inside, as the host sees it
            let stopped = ContinuousClock.now
            kill(primary, SIGTERM)
            #expect(try await process.waitForExit(timeout: drainTimeout) == 0, "SIGTERM drains and exits 0 within the drain timeout")
            let took = ContinuousClock.now - stopped
            try await process.waitForLine { $0 == "Primary 1 stopped" }
            print("entry point \(command.joined(separator: " ")) as PID 1: served, healthy, SIGTERM to exit 0 in \(took)")
        }
    }
}
