import Foundation
import Synchronization
import Testing

extension IntegrationTests {
    /// `cluster run` with programs nobody in this project wrote the server of: Python's
    /// standard-library HTTP server and Node's `http`, each on the socket it inherits by
    /// systemd socket activation. Real processes, sockets and signals.
    @Suite(.timeLimit(.minutes(2)))
    struct CommandTests {
        static let programs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Programs").path

        /// A cluster of `program` and the port it listens on, with its own control socket.
        struct Running {
            let process: SpawnedProcess
            let port: Int
            let control: String

            /// Runs `cluster SUBCOMMAND ... --control` and returns its exit code and output.
            func cluster(_ arguments: String...) throws -> (code: Int32, output: String) {
                try CommandTests.cluster(arguments + ["--control", control])
            }

            /// The workers' rows, asked on the control socket itself: tests poll it, and each
            /// `cluster status` process would leak a pipe in Foundation's `Process`.
            func status() throws -> [[String: Any]] { try controlStatus(control) }
        }

        static func start(_ command: [String], workers: Int = 2, _ flags: [String] = [], waitForReady: Bool = true) async throws -> Running {
            let control = NSTemporaryDirectory() + "cluster-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
            let process = try SpawnedProcess("cluster", ["run", "--listen", "tcp://127.0.0.1:0", "--workers", String(workers),
                                                         "--control", control] + flags + ["--"] + command)
            let listening = try await process.waitForLine { $0.hasPrefix("[cluster] listening on tcp://") }
            let port = try #require(listening.split(separator: ":").dropFirst(2).first.flatMap { Int($0.prefix { $0.isNumber }) })
            let running = Running(process: process, port: port, control: control)
            if !waitForReady { return running }
            _ = try await eventually { () throws -> Void in
                let rows = try running.status()
                guard rows.count == workers, rows.allSatisfy({ $0["state"] as? String == "ready" }) else { throw TestFailure.unexpected("\(rows)") }
            }
            return running
        }

        /// Runs the `cluster` binary to its end (10 s at most) and returns its exit code (128 +
        /// the signal, when a signal ended it) and output; `environment` is added to ours.
        static func cluster(_ arguments: [String], environment: [String: String] = [:]) throws -> (code: Int32, output: String) {
            try runToEnd(SpawnedProcess.product("cluster"), arguments, environment: environment, timeout: .seconds(10))
        }

        private func failures(_ outcomes: [Outcome: Int]) -> [Outcome: Int] {
            outcomes.filter { if case .ok = $0.key { false } else { true } }
        }

        @Test(arguments: [
            ("python", ["python3", "\(programs)/python_server.py"], [String]()),
            ("python reusePort", ["python3", "\(programs)/python_server.py"], ["--distribution", "reusePort"]),
            ("node", ["node", "\(programs)/node_server.js"], [String]()),
        ])
        func aProgramServesReloadsUnderLoadWithoutFailuresAndIsReplacedWhenItCrashes(name: String, command: [String], flags: [String]) async throws {
            let cluster = try await Self.start(command, flags)
            defer { cluster.process.stop() }
            // The program got its socket by socket activation, and PORT.
            let answer = try HTTP.get(port: cluster.port)
            #expect(answer.status == 200 && answer.body.hasSuffix(" tcp-\(cluster.port) port \(cluster.port)\n"), "\(answer)")
            let before = try cluster.status()
            #expect(before.count == 2 && before.allSatisfy { $0["state"] as? String == "ready" }, "\(before)")

            let outcomes = try await load(port: cluster.port, clients: 4, duration: .seconds(6)) {
                try await Task.sleep(for: .milliseconds(500))
                let (code, output) = try cluster.cluster("reload")
                #expect(code == 0 && output.hasPrefix("reload started"), "\(output)")
                try await cluster.process.waitForLine(timeout: .seconds(10)) { $0.contains("reload complete: every worker is generation 2") }
            }
            let served = outcomes[.ok(worker: "any")] ?? 0
            print("cluster run \(name): a reload under load: \(served) served, failures \(failures(outcomes))")
            #expect(served > 100)
            #expect(failures(outcomes).isEmpty, "failed requests: \(failures(outcomes))")
            // "reload complete" comes when every replacement is ready; the old programs may
            // still be finishing their last requests.
            let old = Set(before.compactMap { $0["programPID"] as? Int })
            _ = try await eventually(timeout: .seconds(30)) { () throws -> Void in
                let after = try cluster.status()
                guard after.count == 2, after.allSatisfy({ $0["generation"] as? Int == 2 }),
                      Set(after.compactMap { $0["programPID"] as? Int }).isDisjoint(with: old) else {
                    throw TestFailure.unexpected("not every program was replaced: \(before) -> \(after)")
                }
            }

            // A crash is a restart: the program's exit status is the worker's.
            _ = try? HTTP.get(port: cluster.port, path: "/crash", timeout: .seconds(2))
            try await cluster.process.waitForLine { $0.contains("exited (exit code 3)") && $0.contains("restarting slot") }
            let replaced = try await eventually { () throws -> [[String: Any]] in
                let rows = try cluster.status()
                guard rows.count == 2, rows.allSatisfy({ $0["state"] as? String == "ready" }),
                      rows.contains(where: { $0["restarts"] as? Int == 1 }) else { throw TestFailure.unexpected("\(rows)") }
                return rows
            }
            #expect(replaced.count == 2)
            #expect(try HTTP.get(port: cluster.port).status == 200)

            // Logs carry each line with its worker's id.
            let logs = try cluster.cluster("logs").output
            #expect(logs.split(separator: "\n").contains { $0.hasPrefix("[worker ") && $0.contains(" serving") }, "\(logs)")

            let (code, output) = try cluster.cluster("stop")
            #expect(code == 0 && output.contains("draining"))
            #expect(try await cluster.process.waitForExit(timeout: .seconds(15)) == 0)
            #expect(!FileManager.default.fileExists(atPath: cluster.control), "the control socket is removed on exit")
        }

        @Test func aHotUpgradeUnderLoadFailsNothingAndTheNewPrimaryAnswersTheControlSocket() async throws {
            let cluster = try await Self.start(["python3", "\(Self.programs)/python_server.py"])
            defer { cluster.process.stop() }
            var successor: Int32 = 0
            let outcomes = try await load(port: cluster.port, clients: 4, duration: .seconds(5)) {
                try await Task.sleep(for: .milliseconds(500))
                cluster.process.signal(SIGUSR2)
                let line = try await cluster.process.waitForLine {
                    $0.hasPrefix("[cluster] control socket") && !$0.contains("primary \(cluster.process.pid) ")
                }
                successor = try #require(line.split(separator: " ").firstIndex(of: "primary").map { Int32(line.split(separator: " ")[$0 + 1])! })
                cluster.process.adopt(successor)
                #expect(try await cluster.process.waitForExit(timeout: .seconds(15)) == 0, "the old primary drains and exits 0")
            }
            let served = outcomes[.ok(worker: "any")] ?? 0
            print("cluster run: hot upgrade under load: \(served) served, failures \(failures(outcomes))")
            #expect(served > 100)
            #expect(failures(outcomes).isEmpty, "failed requests: \(failures(outcomes))")
            let (code, output) = try cluster.cluster("status", "--json")
            #expect(code == 0 && output.contains("\"primaryPID\" : \(successor)"), "\(output)")
            kill(successor, SIGTERM)
        }

        @Test func theStatusTableScaleAndSignalWork() async throws {
            let cluster = try await Self.start(["python3", "\(Self.programs)/python_server.py"], workers: 1)
            defer { cluster.process.stop() }
            let table = try cluster.cluster("status").output.split(separator: "\n").map(String.init)
            #expect(table.count == 3 && table[1].split(separator: " ") == ["ID", "PID", "SLOT", "GEN", "STATE", "UPTIME", "RESTARTS", "CPU", "RSS", "REQ/S", "CONNS"], "\(table)")
            #expect(table[2].split(separator: " ").prefix(5).elementsEqual(["1", "\(try cluster.status()[0]["programPID"] as! Int)", "0", "1", "ready"].map { Substring($0) }), "\(table)")

            // Follow the logs while a worker joins.
            let follower = try SpawnedProcess("cluster", ["logs", "-f", "--control", cluster.control])
            defer { follower.stop() }
            try await follower.waitForLine { $0.hasPrefix("[worker 1] python ") && $0.hasSuffix(" serving") }
            #expect(try cluster.cluster("scale", "2").output.contains("scaling to 2 workers"))
            _ = try await cluster.process.waitForLine { $0.contains("[worker 2] python") && $0.contains(" serving") }
            try await follower.waitForLine { $0.hasPrefix("[worker 2] python ") && $0.hasSuffix(" serving") }
            let pid = try #require(try cluster.status().first { $0["id"] as? Int == 2 }?["programPID"] as? Int)
            let (code, output) = try cluster.cluster("signal", "2", "TERM")
            #expect(code == 0 && output.contains("sent SIGTERM to worker 2's program (pid \(pid))"), "\(output)")
            try await cluster.process.waitForLine { $0 == "[worker 2] python \(pid) drained" }

            let unknown = try cluster.cluster("signal", "99", "TERM")
            #expect(unknown.code != 0 && unknown.output.contains("no worker 99"), "\(unknown)")
            // Only the owner may use the control socket.
            let mode = try FileManager.default.attributesOfItem(atPath: cluster.control)[.posixPermissions] as? Int
            #expect(mode == 0o600)
        }

        @Test func aProgramIsReadyWhenItWaitsOnItsSocketNotBefore() async throws {
            // The program sleeps 2 s before it serves: by /proc it is not accepting yet.
            let cluster = try await Self.start(["python3", "\(Self.programs)/python_server.py"], workers: 1, ["--env", "BOOT_DELAY_MS=2000"],
                                               waitForReady: false)
            defer { cluster.process.stop() }
            let started = ContinuousClock.now
            try await Task.sleep(for: .milliseconds(1200))
            #expect(try cluster.status().first?["state"] as? String == "starting")
            _ = try await eventually { () throws -> Void in
                guard try cluster.status().first?["state"] as? String == "ready" else { throw TestFailure.unexpected("not ready") }
            }
            let ready = ContinuousClock.now - started
            print("cluster run: a program that boots for 2 s was ready after \(ready)")
            #expect(ready >= .milliseconds(1800) && ready < .seconds(4))
            #expect(try HTTP.get(port: cluster.port).status == 200)
        }

        @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare"), "a PID namespace needs root and unshare"))
        func asPID1InAContainerItReapsOrphansAndDrainsOnTERM() async throws {
            let (process, port, primary, worker) = try await Self.startAsPID1()
            defer { process.stop() }
            _ = try await eventually { try HTTP.get(port: port, path: "/orphan") }
            try await Task.sleep(for: .seconds(2)) // the orphan exits after 1 s
            let zombies = children(of: primary).filter { processState($0) == "Z" }
            #expect(zombies.isEmpty, "orphans left as zombies: \(zombies)")
            #expect(children(of: primary) == [worker], "only the worker is left")
            kill(primary, SIGTERM)
            #expect(try await process.waitForExit(timeout: .seconds(15)) == 0, "TERM drains and stops with 0")
        }

        /// `cluster run` of one Python worker as PID 1 of a PID namespace of its own, as in a
        /// container (needs root and unshare): the process (unshare), the port, and the
        /// primary and its worker as the host sees them.
        static func startAsPID1() async throws -> (process: SpawnedProcess, port: Int, primary: Int32, worker: Int32) {
            let control = NSTemporaryDirectory() + "cluster-pid1-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
            let process = try SpawnedProcess("cluster", ["run", "--listen", "tcp://127.0.0.1:0", "--workers", "1", "--control", control,
                                                         "--", "python3", "\(programs)/python_server.py"],
                                             launcher: ContainerTests.pidNamespace)
            do {
                let listening = try await process.waitForLine { $0.hasPrefix("[cluster] listening on tcp://") }
                let port = try #require(listening.split(separator: ":").dropFirst(2).first.flatMap { Int($0.prefix { $0.isNumber }) })
                try await process.waitForLine { $0.hasPrefix("[cluster] control socket") && $0.contains("; primary 1 runs") }
                try await process.waitForLine { $0.hasPrefix("[worker 1] python ") && $0.hasSuffix(" serving") }
                let primary = try #require(children(of: process.pid).first)
                return (process, port, primary, try #require(children(of: primary).first))
            } catch {
                process.stop()
                throw error
            }
        }

        @Test func readinessBySdNotifyAndAWatchdogThatFires() async throws {
            // python_server.py says READY=1 when NOTIFY_SOCKET is set; it never pings the
            // watchdog, so with --watchdog the worker gets SIGABRT and is replaced.
            let cluster = try await Self.start(["python3", "\(Self.programs)/python_server.py"], workers: 1,
                                               ["--readiness", "notify", "--watchdog", "3s"])
            defer { cluster.process.stop() }
            #expect(try cluster.status().first?["state"] as? String == "ready")
            try await cluster.process.waitForLine(timeout: .seconds(5)) { $0.contains("sent no WATCHDOG=1") }
            try await cluster.process.waitForLine(timeout: .seconds(5)) { $0.contains("exited (signal 6 (SIGABRT))") }
        }

        @Test func configFilesAndFlagsAreCheckedWithTheLineAndTheKey() throws {
            let directory = NSTemporaryDirectory() + "cluster-config-\(getpid())"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let good = directory + "/good.yaml"
            try """
                command: [python3, app.py]
                listen:
                  - tcp://127.0.0.1:8080
                workers: 3
                drain-timeout: 20s
                env: {LOG_LEVEL: info}
                """.write(toFile: good, atomically: true, encoding: .utf8)
            let valid = try Self.cluster(["validate", good])
            #expect(valid.code == 0 && valid.output == "ok: 3 workers of 'python3 app.py' on tcp://127.0.0.1:8080 (shared)\n", "\(valid)")
            // Flags override the file.
            let overridden = try Self.cluster(["validate", good, "--workers", "5", "--distribution", "reusePort"])
            #expect(overridden.output.hasPrefix("ok: 5 workers") && overridden.output.contains("(reusePort)"), "\(overridden)")

            let bad = directory + "/bad.yaml"
            try "command: [python3, app.py]\nworkers: 3\nwrokers: 4\n".write(toFile: bad, atomically: true, encoding: .utf8)
            let unknown = try Self.cluster(["validate", bad])
            #expect(unknown.code != 0 && unknown.output.contains("\(bad):3: unknown key 'wrokers'"), "\(unknown)")

            try "command: [python3, app.py]\ndrain-timeout: soon\n".write(toFile: bad, atomically: true, encoding: .utf8)
            let value = try Self.cluster(["validate", bad])
            #expect(value.output.contains("\(bad):2: key 'drain-timeout': 'soon' is not a duration from 0s to 24h, such as 500ms, 2s, 5m or 1h"), "\(value)")

            try "command: [python3, app.py]\ndistribution: roundRobin\n".write(toFile: bad, atomically: true, encoding: .utf8)
            let strategy = try Self.cluster(["validate", bad])
            #expect(strategy.output.contains("\(bad):2: key 'distribution': roundRobin needs the primary to hand each connection"), "\(strategy)")

            let flag = try Self.cluster(["validate", good, "--workers", "many"])
            #expect(flag.code != 0 && flag.output.contains("--workers: 'many' is not a worker count from 1 to 1024, or auto"), "\(flag)")
            let noProgram = try Self.cluster(["run", "--listen", "tcp://127.0.0.1:0"])
            #expect(noProgram.code != 0 && noProgram.output.contains("no program to run"), "\(noProgram)")
            let noCluster = try Self.cluster(["status", "--control", directory + "/none.sock"])
            #expect(noCluster.code != 0 && noCluster.output.contains("no cluster answers on \(directory)/none.sock"), "\(noCluster)")
        }
    }
}
