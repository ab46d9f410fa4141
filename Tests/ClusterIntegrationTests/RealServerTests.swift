import Foundation
import Synchronization
import Testing

extension IntegrationTests {
    /// `cluster run` with the servers people run in production, each as its users start it,
    /// on the socket it inherits: gunicorn and Puma (a master process and worker processes),
    /// nginx (the same, taking the socket from `NGINX="3;"`), uvicorn, Node's `http` and Go's
    /// `net/http`. A server missing from the machine is skipped with a printed reason, except
    /// in CI (`CI` set), which installs them all (`.ci/run`): there it fails.
    @Suite(.timeLimit(.minutes(3)))
    struct RealServerTests {
        static let servers = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Programs/servers").path

        enum Server: String, CaseIterable, Sendable, CustomTestStringConvertible {
            case gunicorn, uvicorn, puma, nginx, node, go

            var testDescription: String { rawValue }

            /// What must be on PATH.
            var executable: String { rawValue }

            /// How many processes the program starts (its workers), none for one-process servers.
            var children: Int {
                switch self {
                case .gunicorn, .puma, .nginx: 2
                case .uvicorn, .node, .go: 0
                }
            }

            /// Whether the app honours BOOT_DELAY_MS (sleeps before it can answer).
            var delaysItsBoot: Bool { self != .nginx }

            /// Whether its graceful shutdown closes connections it accepted but has not read
            /// a request from yet (uvicorn's `Server.shutdown` closes every connection with
            /// no request in progress): under load a reload can reset the few that were
            /// accepted at the moment the drain signal arrived. The cluster cannot take
            /// back a connection a program has accepted.
            var closesUnreadConnectionsOnShutdown: Bool { self == .uvicorn }
        }

        /// A server's command line and `cluster run` flags for `port`, with any file it
        /// needs written into `directory`.
        static func invocation(_ server: Server, port: Int, directory: String) throws -> (command: [String], flags: [String]) {
            switch server {
            case .gunicorn:
                // gunicorn takes the sockets from LISTEN_FDS itself: no --bind. Its control
                // socket would be one path for every worker's gunicorn: off.
                return (["gunicorn", "--workers", "2", "--no-control-socket", "--graceful-timeout", "10",
                         "--chdir", servers, "wsgi_app:app"], [])
            case .uvicorn:
                return (["uvicorn", "--fd", "3", "--app-dir", servers, "asgi_app:app"], [])
            case .puma:
                // puma.rb: queue_requests false, or a graceful stop closes accepted
                // connections whose request has not arrived yet.
                return (["puma", "-C", "\(servers)/puma.rb", "--bind-to-activated-sockets", "only", "--workers", "2",
                         "\(servers)/config.ru"], [])
            case .nginx:
                let template = try String(contentsOfFile: "\(servers)/nginx.conf", encoding: .utf8)
                try template.replacingOccurrences(of: "LISTEN_ADDRESS", with: "127.0.0.1:\(port)")
                    .write(toFile: "\(directory)/nginx.conf", atomically: true, encoding: .utf8)
                // exec: nginx is the shell's pid, the pid its file is named after.
                return (["/bin/sh", "-c", "exec nginx -p \(directory) -c \(directory)/nginx.conf -e stderr -g \"pid \(directory)/nginx-$$.pid;\""],
                        ["--drain-signal", "QUIT", "--env", "NGINX=3;"])
            case .node:
                return (["node", "\(servers)/node_http.js"], [])
            case .go:
                let binary = "\(directory)/go_http"
                let (code, output) = try runToEnd(try #require(which("go")), ["build", "-o", binary, "\(servers)/go_http.go"],
                                                  environment: ["CGO_ENABLED": "0"], timeout: .seconds(120))
                guard code == 0 else { throw TestFailure.unexpected("go build failed (\(code)): \(output)") }
                return ([binary], [])
            }
        }

        /// Whether `server` can run here. Missing: skipped with a printed reason, or in CI a failure.
        static func available(_ server: Server, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
            requiredTool(server.executable, by: "RealServerTests (\(server))", sourceLocation: sourceLocation) != nil
        }

        /// A cluster of `server` on 127.0.0.1:`port`, with the directory its files live in and
        /// a record of every process seen in its tree, SIGKILLed when the test is done.
        fileprivate final class Cluster: Sendable {
            let running: CommandTests.Running
            let server: Server
            let reaper = Reaper()

            init(_ server: Server, port: Int, directory: String, workers: Int = 2, flags: [String] = []) async throws {
                self.server = server
                let (command, serverFlags) = try RealServerTests.invocation(server, port: port, directory: directory)
                let control = "\(directory)/control.sock"
                let process = try SpawnedProcess("cluster", ["run", "--listen", "tcp://127.0.0.1:\(port)", "--workers", String(workers),
                                                             "--control", control] + serverFlags + flags + ["--"] + command)
                running = CommandTests.Running(process: process, port: port, control: control)
                do {
                    try await process.waitForLine { $0.hasPrefix("[cluster] listening on tcp://127.0.0.1:\(port)") }
                } catch {
                    close()
                    throw error
                }
            }

            deinit { close() }

            /// SIGKILLs the primary and every process ever seen in its tree that still runs.
            func close() {
                reaper.track(running.process.pid)
                reaper.killAll()
                running.process.stop()
            }

            /// The workers' rows, asked on the control socket itself: polling with a `cluster
            /// status` process each time leaks a pipe per process in Foundation's `Process`.
            func status() throws -> [[String: Any]] { try controlStatus(running.control) }

            /// Waits until every worker is `ready` and returns the rows.
            func ready(workers: Int = 2, timeout: Duration = .seconds(30)) async throws -> [[String: Any]] {
                let rows = try await eventually(timeout: timeout) { () throws -> [[String: Any]] in
                    let rows = try status()
                    guard rows.count == workers, rows.allSatisfy({ $0["state"] as? String == "ready" }) else {
                        throw TestFailure.unexpected("\(server) was not ready within \(timeout): \(rows)")
                    }
                    return rows
                }
                reaper.track(running.process.pid)
                return rows
            }

            /// Waits until each of `workers` programs runs with all its own processes and the
            /// port answers, without asking for `ready` (that is another test's subject).
            func serving(workers: Int = 2, timeout: Duration = .seconds(30)) async throws -> [[String: Any]] {
                let rows = try await eventually(timeout: timeout) { () throws -> [[String: Any]] in
                    let rows = try status()
                    let programs = rows.compactMap { ($0["programPID"] as? Int).map(Int32.init) }
                    guard rows.count == workers, programs.count == workers,
                          programs.allSatisfy({ children(of: $0).count == server.children }) else {
                        throw TestFailure.unexpected("\(server) had not started every process within \(timeout): \(rows)")
                    }
                    let answer = try HTTP.get(port: running.port, timeout: .seconds(2))
                    guard answer.status == 200 else { throw TestFailure.unexpected("\(server) answered \(answer)") }
                    return rows
                }
                reaper.track(running.process.pid)
                return rows
            }
        }

        /// A fresh directory, removed by the caller.
        static func directory() throws -> String {
            let path = NSTemporaryDirectory() + "cluster-real-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            return path
        }

        // MARK: The checks

        @Test(arguments: Server.allCases)
        func isReadyOnlyWhenItAnswers(_ server: Server) async throws {
            guard Self.available(server) else { return }
            let directory = try Self.directory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let port = try freePort()
            // The app sleeps 3 s before it can answer (gunicorn and Puma: in each of their
            // workers, after the master is up and waiting on its own pipe).
            let delay = server.delaysItsBoot ? 3000 : 0
            let cluster = try await Cluster(server, port: port, directory: directory, flags: ["--env", "BOOT_DELAY_MS=\(delay)"])
            defer { cluster.close() }
            let started = ContinuousClock.now

            // A client polls the port with a new connection each time and notes its first 200.
            let firstAnswer = Mutex<Duration?>(nil)
            let stop = Atomic(false)
            let poller = Thread {
                while !stop.load(ordering: .relaxed) {
                    if let answer = try? HTTP.get(port: port, timeout: .seconds(1)), answer.status == 200 {
                        firstAnswer.withLock { $0 = ContinuousClock.now - started }
                        return
                    }
                    usleep(20_000)
                }
            }
            poller.start()
            defer { stop.store(true, ordering: .relaxed) }

            let rows = try await cluster.ready(timeout: .seconds(30))
            let ready = ContinuousClock.now - started
            // Ready means it answers now: each request gets its answer within 1 s.
            var answers: [String] = []
            for _ in 0..<4 {
                do {
                    let connection = try ClientConnection(port: port, timeout: 1)
                    let (outcome, response) = connection.get(keepAlive: false)
                    answers.append(response.map { "\($0.status)" } ?? "\(outcome)")
                } catch {
                    answers.append("\(error)")
                }
            }
            _ = try? await eventually(timeout: .seconds(5)) { () throws -> Void in
                guard firstAnswer.withLock({ $0 }) != nil else { throw TestFailure.timeout }
            }
            let first = firstAnswer.withLock { $0 }
            print("RealServerTests \(server): ready after \(ready), first 200 after \(first.map { "\($0)" } ?? "none"); requests at ready: \(answers)")
            #expect(answers.allSatisfy { $0 == "200" },
                    "\(server) was reported ready after \(ready) but did not answer within 1 s: \(answers) (rows: \(rows))")
            if delay > 0 {
                // The clock starts when the test reads the primary's "listening" line; a program may start a
                // little before the test reads that line: 250 ms of margin.
                #expect(ready >= .milliseconds(delay - 250),
                        "\(server) was reported ready after \(ready), before its app had booted (\(delay) ms)")
            }
        }

        @Test(arguments: Server.allCases)
        func killingTheProgramLeavesNoDescendantAndTheWorkerIsReplaced(_ server: Server) async throws {
            guard Self.available(server) else { return }
            let directory = try Self.directory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let cluster = try await Cluster(server, port: try freePort(), directory: directory)
            defer { cluster.close() }
            let rows = try await cluster.serving()
            let worker = try #require((rows[0]["pid"] as? Int).map(Int32.init))
            let program = try #require((rows[0]["programPID"] as? Int).map(Int32.init))
            // The worker and everything below it, taken before the kill.
            let tree = cluster.reaper.track(worker)
            #expect(tree.count == 2 + server.children, "worker, program and its \(server.children) processes: \(describe(tree))")

            kill(program, SIGKILL)
            let left = await survivors(of: tree, within: .seconds(10))
            print("RealServerTests \(server): kill -9 of the program: \(tree.count - left.count) of \(tree.count) processes gone within 10 s")
            #expect(left.isEmpty, "\(server): after kill -9 of the program (pid \(program)) these still run: \(describe(left))")

            let replaced = try await eventually(timeout: .seconds(30)) { () throws -> [[String: Any]] in
                let rows = try cluster.status()
                let programs = rows.compactMap { ($0["programPID"] as? Int).map(Int32.init) }
                guard rows.count == 2, programs.count == 2, !programs.contains(program),
                      programs.allSatisfy({ children(of: $0).count == server.children }) else {
                    throw TestFailure.unexpected("\(server) worker not replaced: \(rows)")
                }
                return rows
            }
            cluster.reaper.track(cluster.running.process.pid)
            #expect(replaced.contains { ($0["restarts"] as? Int ?? 0) >= 1 }, "\(replaced)")
            #expect(try HTTP.get(port: cluster.running.port).status == 200)
        }

        @Test(arguments: Server.allCases)
        func stopLeavesNoProcessAndTheSamePortServesAgain(_ server: Server) async throws {
            guard Self.available(server) else { return }
            let directory = try Self.directory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let port = try freePort()
            let cluster = try await Cluster(server, port: port, directory: directory)
            defer { cluster.close() }
            _ = try await cluster.serving()
            let tree = cluster.reaper.track(cluster.running.process.pid)
            // The primary, 2 workers, 2 programs and theirs.
            #expect(tree.count == 5 + 2 * server.children, "\(describe(tree))")

            let (code, output) = try cluster.running.cluster("stop")
            #expect(code == 0 && output.contains("draining"), "\(output)")
            #expect(try await cluster.running.process.waitForExit(timeout: .seconds(30)) == 0)
            let left = await survivors(of: tree, within: .seconds(5))
            print("RealServerTests \(server): cluster stop: \(tree.count - left.count) of \(tree.count) processes gone")
            #expect(left.isEmpty, "\(server): after cluster stop these still run: \(describe(left))")
            cluster.close()

            let again = try await Cluster(server, port: port, directory: directory)
            defer { again.close() }
            _ = try await again.serving()
            #expect(try HTTP.get(port: port).status == 200)
        }

        @Test(arguments: Server.allCases)
        func aReloadUnderLoadFailsNoRequest(_ server: Server) async throws {
            guard Self.available(server) else { return }
            let directory = try Self.directory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let cluster = try await Cluster(server, port: try freePort(), directory: directory)
            defer { cluster.close() }
            let before = try await cluster.ready()
            let outcomes = try await load(port: cluster.running.port, clients: 4, duration: .seconds(6)) {
                try await Task.sleep(for: .milliseconds(500))
                let (code, output) = try cluster.running.cluster("reload")
                #expect(code == 0 && output.hasPrefix("reload started"), "\(output)")
                try await cluster.running.process.waitForLine(timeout: .seconds(30)) {
                    $0.contains("reload complete: every worker is generation 2")
                }
                cluster.reaper.track(cluster.running.process.pid)
            }
            let served = outcomes[.ok(worker: "any")] ?? 0
            let failures = outcomes.filter { if case .ok = $0.key { false } else { true } }
            print("RealServerTests \(server): a reload under load: \(served) served, failures \(failures)")
            #expect(served > 50)
            if server.closesUnreadConnectionsOnShutdown {
                // Only resets (or closes before an answer), and only a handful: the
                // connections in its hands at TERM.
                let resets = (failures[.reset] ?? 0) + (failures[.endOfStream] ?? 0)
                #expect(resets == failures.values.reduce(0, +) && resets <= 8,
                        "\(server): failed requests during a reload beyond the connections it held at TERM: \(failures)")
            } else {
                #expect(failures.isEmpty, "\(server): failed requests during a reload: \(failures)")
            }
            // "reload complete" comes when every replacement is ready; the old programs may
            // still be finishing their last requests.
            let old = Set(before.compactMap { $0["programPID"] as? Int })
            _ = try await eventually(timeout: .seconds(30)) { () throws -> Void in
                let after = try cluster.status()
                guard after.count == 2, Set(after.compactMap { $0["programPID"] as? Int }).isDisjoint(with: old) else {
                    throw TestFailure.unexpected("not every program was replaced: \(before) -> \(after)")
                }
            }
        }

        @Test(arguments: Server.allCases.filter { $0.children > 0 })
        func statusMemoryCountsEveryProcessOfTheProgram(_ server: Server) async throws {
            guard Self.available(server) else { return }
            let directory = try Self.directory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let cluster = try await Cluster(server, port: try freePort(), directory: directory, workers: 1)
            defer { cluster.close() }
            let row = try await cluster.serving(workers: 1)[0]
            let worker = try #require((row["pid"] as? Int).map(Int32.init))
            let program = try #require((row["programPID"] as? Int).map(Int32.init))
            // The worker's memory is its own and its program's, every process of it. Heartbeats
            // come every 250 ms and memory moves a little between two readings: the status must
            // reach 90% of the sum of the VmRSS of the worker and everything below it.
            var last = ""
            let deadline = ContinuousClock.now + .seconds(10)
            var counted = false
            while ContinuousClock.now < deadline {
                let processes = processTree(of: worker).keys.sorted()
                let sum = processes.compactMap(residentKilobytes).reduce(0, +) * 1024
                let own = (residentKilobytes(worker) ?? 0) * 1024
                let main = (residentKilobytes(program) ?? 0) * 1024
                let reported = try cluster.status().first?["rssBytes"] as? Int ?? 0
                last = "status \(reported / 1024) kB; /proc: \(sum / 1024) kB in \(processes.count) processes (the worker \(own / 1024) kB, "
                    + "the program's main process \(main / 1024) kB, its \(processes.count - 2) others \((sum - own - main) / 1024) kB)"
                if processes.count == 2 + server.children, Double(reported) >= 0.9 * Double(sum) {
                    counted = true
                    break
                }
                try await Task.sleep(for: .milliseconds(300))
            }
            print("RealServerTests \(server): memory: \(last)")
            #expect(counted, "\(server): the status does not count every process of the program: \(last)")
        }
    }
}
