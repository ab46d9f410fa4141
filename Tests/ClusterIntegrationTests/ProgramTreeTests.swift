import Foundation
import Testing

extension IntegrationTests {
    /// `cluster run` with a program that is a process tree, as gunicorn, nginx and Puma
    /// are: readiness looks at the whole tree and never counts a wait on something else;
    /// the tree's memory is the worker's; and no process of the tree outlives its worker,
    /// whichever of them dies. Python's standard library plays the program
    /// (Programs/python_server.py), so these run wherever the suite does.
    @Suite(.timeLimit(.minutes(2)))
    struct ProgramTreeTests {
        static let server = "\(CommandTests.programs)/python_server.py"

        /// Every process below `pid`, from /proc.
        static func tree(below pid: Int32) -> [Int32] {
            var found: [Int32] = []
            var next = [pid]
            while let parent = next.popLast() {
                let below = children(of: parent)
                found += below
                next += below
            }
            return found
        }

        static func alive(_ pid: Int32) -> Bool {
            guard let state = processState(pid) else { return false }
            return state != "Z" // a zombie is dead; only its parent's wait is missing
        }

        @Test func aProgramWaitingInSelectOnItsOwnPipeIsNotReady() async throws {
            // For 2 s the program waits in select() on a pipe of its own, as a master waits
            // for its workers: that is not waiting for connections.
            let started = ContinuousClock.now
            let cluster = try await CommandTests.start(["python3", Self.server], workers: 1,
                                                       ["--env", "BOOT_DELAY_MS=2000", "--env", "BOOT_WAIT=select"], waitForReady: false)
            defer { cluster.process.stop() }
            _ = try await eventually(timeout: .seconds(20)) { () throws -> Void in
                guard try cluster.status().first?["state"] as? String == "ready" else { throw TestFailure.unexpected("not ready") }
            }
            let ready = ContinuousClock.now - started
            print("cluster run: a program that waits 2 s in select() on a pipe was ready after \(ready)")
            #expect(ready >= .milliseconds(1900), "ready while the program still waited on its pipe")
            #expect(try HTTP.get(port: cluster.port).status == 200)
        }

        @Test func aMasterWhoseChildServesIsReadyCountsItsChildAndTakesItAlongWhenKilled() async throws {
            let cluster = try await CommandTests.start(["python3", Self.server], workers: 1, ["--env", "FORK=1"], waitForReady: false)
            defer { cluster.process.stop() }
            let forked = try await cluster.process.waitForLine(timeout: .seconds(20)) { $0.contains("python master") && $0.contains(" forked ") }
            let child = try #require(forked.firstMatch(of: /forked (\d+)/).flatMap { Int32($0.1) }, "\(forked)")
            // Ready, although the master itself only ever waits on its own pipe.
            let row = try await eventually(timeout: .seconds(20)) { () throws -> [String: Any] in
                guard let row = try cluster.status().first, row["state"] as? String == "ready" else { throw TestFailure.unexpected("not ready") }
                return row
            }
            #expect(try HTTP.get(port: cluster.port).status == 200)
            let master = try #require((row["programPID"] as? Int).map { Int32($0) })
            #expect(Self.tree(below: master) == [child])

            // The worker's memory includes the child's (a heartbeat later).
            let programs = (residentKilobytes(master) ?? 0) + (residentKilobytes(child) ?? 0)
            _ = try await eventually(timeout: .seconds(10)) { () throws -> Void in
                let reported = (try cluster.status().first?["rssBytes"] as? Int ?? 0) / 1024
                guard reported >= programs * 9 / 10 else {
                    throw TestFailure.unexpected("status says \(reported) KiB; the master and its child hold \(programs) KiB")
                }
            }

            // kill -9 of the master: its child does not go on serving on the cluster's socket.
            kill(master, SIGKILL)
            _ = try await eventually(timeout: .seconds(10)) { () throws -> Void in
                guard !Self.alive(child) else { throw TestFailure.unexpected("the child \(child) outlived its master") }
            }
            try await cluster.process.waitForLine(timeout: .seconds(10)) { $0.contains("ended and left 1 process; killed") }
        }

        @Test func whenThePrimaryIsKilledNoProcessOfAnyTreeIsLeftAndThePortIsFree() async throws {
            let cluster = try await CommandTests.start(["python3", Self.server], workers: 2, ["--env", "FORK=1"])
            defer { cluster.process.stop() }
            let (_, output) = try cluster.cluster("status", "--json")
            let status = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
            let primary = try #require((status["primaryPID"] as? Int).map { Int32($0) })
            let everything = Self.tree(below: primary)
            #expect(everything.count == 6, "two workers, each with a master and its child: \(everything)")
            kill(primary, SIGKILL)
            _ = try await eventually(timeout: .seconds(10)) { () throws -> Void in
                let left = everything.filter(Self.alive)
                guard left.isEmpty else { throw TestFailure.unexpected("still alive after the primary's death: \(left)") }
            }
            // Nothing holds the port: a new cluster binds it and serves.
            let again = try SpawnedProcess("cluster", ["run", "--listen", "tcp://127.0.0.1:\(cluster.port)", "--workers", "1",
                                                       "--control", cluster.control + ".2", "--", "python3", Self.server])
            defer { again.stop() }
            try await again.waitForLine(timeout: .seconds(10)) { $0.hasPrefix("[cluster] listening on tcp://127.0.0.1:\(cluster.port)") }
            _ = try await eventually(timeout: .seconds(20)) { try HTTP.get(port: cluster.port) }
        }
    }
}
