import Foundation
import Glibc
import Testing

extension IntegrationTests {
    /// Disconnecting, killing and a worker's states, held against Node's cluster. Each test
    /// quotes what Node 20 printed for the same scenario: a `require('cluster')` script whose
    /// workers run `net.createServer((s) => { s.write('hi'); s.on('data', () => {});
    /// s.on('end', () => s.end()) }).listen(0)`, with a client that holds a connection open,
    /// times in milliseconds from the start. The fixture's "node" scenario is that server.
    @Suite(.timeLimit(.minutes(2)))
    struct NodeDisconnectTests {
        /// Node (`w.disconnect()` in the primary at 1295 ms, the held client ends at 2828 ms):
        ///
        ///     1295 disconnect() called; state listening isConnected true
        ///     2828 closing the held client
        ///     2933 disconnect event: state disconnected isConnected false isDead false eAD true
        ///     2964 exit event: state dead code 0 signal null eAD true
        ///
        /// and with a worker kept alive by a timer after its channel closed:
        ///
        ///     960 client ends
        ///     969 disconnect: state disconnected isConnected false isDead false
        ///     1978 exit: state dead 0 null eAD true
        ///
        /// No deadline: the worker lives as long as its last connection.
        @Test func disconnectWaitsForTheLastConnectionWithoutADeadline() async throws {
            let release = NSTemporaryDirectory() + "node-disconnect-\(UUID().uuidString)"
            defer { unlink(release) }
            let primary = try SpawnedProcess("ClusterFixture", ["node"], environment: ["RELEASE_FILE": release])
            defer { primary.stop() }
            let listening = try await primary.waitForEvent(["event": "listening", "id": "1"])
            primary.adopt(Int32(listening["pid"] as! Int))
            #expect(listening["isConnected"] as? Bool == true)
            let client = try LineClient(port: listening["port"] as! Int)
            #expect(client.readLine() == "hi")

            primary.send("disconnect 1")
            let draining = try await primary.waitForEvent(["event": "worker-draining", "id": "1"])
            #expect(draining["isConnected"] as? Bool == true, "the channel stays open while a connection is held")
            // Past the 10 s a disconnect used to allow, with a margin: the worker still
            // serves, and the channel is still open (a message reaches it).
            try await Task.sleep(for: .seconds(11))
            #expect(client.echo("still here") == "still here")
            primary.send("tell 1 noop")
            let told = try await primary.waitForEvent(["event": "worker-told", "id": "1", "word": "noop"])
            #expect(told["isConnected"] as? Bool == true)
            #expect(primary.events(["event": "disconnect"]).isEmpty, "no 'disconnect' while the worker holds a connection")
            #expect(primary.events(["event": "exit"]).isEmpty, "no deadline: \(primary.output)")

            client.end()
            #expect(client.readsEndOfFile())
            let disconnect = try await primary.waitForEvent(["event": "disconnect", "id": "1"])
            #expect(disconnect["state"] as? String == "disconnected")
            #expect(disconnect["isConnected"] as? Bool == false)
            #expect(disconnect["isDead"] as? Bool == false)
            #expect(disconnect["exitedAfterDisconnect"] as? Bool == true)
            let lingering = try await primary.waitForEvent(["event": "worker-lingers", "id": "1"])
            #expect(lingering["isConnected"] as? Bool == false, "the worker sees its channel closed too")
            #expect(primary.events(["event": "exit"]).isEmpty, "the worker lives on after its channel closed")

            #expect(FileManager.default.createFile(atPath: release, contents: nil))
            let exit = try await primary.waitForEvent(["event": "exit", "id": "1"])
            #expect(exit["state"] as? String == "dead")
            #expect(exit["code"] as? Int == 0)
            #expect(exit["signal"] is NSNull)
            #expect(exit["exitedAfterDisconnect"] as? Bool == true)
            #expect(exit["isConnected"] as? Bool == false)
            expectOrder(primary, ["disconnect", "exit"], worker: 1)
        }

        /// Node has no deadline; here one stays available. With it, a worker that still holds
        /// a connection is SIGKILLed when it passes, and 'disconnect' still comes before 'exit'.
        @Test func disconnectWithATimeoutKillsAfterIt() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["node"])
            defer { primary.stop() }
            let listening = try await primary.waitForEvent(["event": "listening", "id": "1"])
            primary.adopt(Int32(listening["pid"] as! Int))
            let client = try LineClient(port: listening["port"] as! Int)
            #expect(client.readLine() == "hi")

            let asked = ContinuousClock.now
            primary.send("disconnect 1 1")
            let exit = try await primary.waitForEvent(["event": "exit", "id": "1"])
            let elapsed = ContinuousClock.now - asked
            #expect(exit["signal"] as? String == "SIGKILL")
            #expect(exit["exitedAfterDisconnect"] as? Bool == true)
            #expect(exit["state"] as? String == "dead")
            // Asked 1 s; the line reaches the primary after the clock here started.
            #expect(elapsed >= .milliseconds(900), "killed after \(elapsed), before its deadline")
            expectOrder(primary, ["disconnect", "exit"], worker: 1)
            #expect(client.readsEndOfFile(), "the held connection ends with the process")
        }

        /// Node (`cluster.worker.disconnect()` in the worker at 2038 ms, the client ends at
        /// 3253 ms):
        ///
        ///     2038 message {"before":"disconnect","isConnected":true,"state":"listening"}
        ///     3253 client ends
        ///     3291 disconnect event: state disconnected isConnected false isDead false eAD true
        ///     3341 exit event: state dead code 0 signal null eAD true
        @Test func workerDisconnectIsAnIntendedExitAfterItsLastConnection() async throws {
            let release = NSTemporaryDirectory() + "node-disconnect-\(UUID().uuidString)"
            defer { unlink(release) }
            let primary = try SpawnedProcess("ClusterFixture", ["node"], environment: ["RELEASE_FILE": release])
            defer { primary.stop() }
            let listening = try await primary.waitForEvent(["event": "listening", "id": "1"])
            primary.adopt(Int32(listening["pid"] as! Int))
            let client = try LineClient(port: listening["port"] as! Int)
            #expect(client.readLine() == "hi")

            primary.send("tell 1 disconnect")
            let told = try await primary.waitForEvent(["event": "worker-told", "id": "1", "word": "disconnect"])
            #expect(told["isConnected"] as? Bool == true)
            try await primary.waitForEvent(["event": "worker-draining", "id": "1"])
            // Still connected while the connection is held: a message reaches the worker.
            #expect(client.echo("still here") == "still here")
            primary.send("tell 1 noop")
            try await primary.waitForEvent(["event": "worker-told", "id": "1", "word": "noop"])
            #expect(primary.events(["event": "disconnect"]).isEmpty)

            client.end()
            #expect(client.readsEndOfFile())
            let disconnect = try await primary.waitForEvent(["event": "disconnect", "id": "1"])
            #expect(disconnect["state"] as? String == "disconnected")
            #expect(disconnect["isConnected"] as? Bool == false)
            #expect(disconnect["isDead"] as? Bool == false)
            #expect(disconnect["exitedAfterDisconnect"] as? Bool == true)
            try await primary.waitForEvent(["event": "worker-lingers", "id": "1"])

            #expect(FileManager.default.createFile(atPath: release, contents: nil))
            let exit = try await primary.waitForEvent(["event": "exit", "id": "1"])
            #expect(exit["state"] as? String == "dead")
            #expect(exit["code"] as? Int == 0)
            #expect(exit["signal"] is NSNull)
            #expect(exit["exitedAfterDisconnect"] as? Bool == true)
            expectOrder(primary, ["disconnect", "exit"], worker: 1)
        }

        /// Node (`cluster.worker.kill()` in the worker; `kill('SIGKILL')` and `destroy()`
        /// print the same: the signal is ignored in a worker):
        ///
        ///     1956 message {"before":"kill","isConnected":true,"state":"listening"}
        ///     1976 disconnect event: state disconnected isConnected false isDead false eAD true
        ///     2129 held client closed
        ///     2163 exit event: state dead code 0 signal null eAD true
        @Test(arguments: ["kill", "destroy"])
        func workerKillEndsItAtOnceAsAnIntendedExit(_ word: String) async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["node"])
            defer { primary.stop() }
            let listening = try await primary.waitForEvent(["event": "listening", "id": "1"])
            primary.adopt(Int32(listening["pid"] as! Int))
            let client = try LineClient(port: listening["port"] as! Int)
            #expect(client.readLine() == "hi")

            primary.send("tell 1 \(word)")
            let exit = try await primary.waitForEvent(["event": "exit", "id": "1"])
            #expect(exit["code"] as? Int == 0)
            #expect(exit["signal"] is NSNull)
            #expect(exit["exitedAfterDisconnect"] as? Bool == true)
            #expect(exit["state"] as? String == "dead")
            expectOrder(primary, ["disconnect", "exit"], worker: 1)
            #expect(client.readsEndOfFile(), "the held connection ends with the process")
        }

        /// Node (`process.exit(3)` in the worker): not intended.
        ///
        ///     988 disconnect event: state disconnected isConnected false isDead false eAD false
        ///     989 exit event: state dead code 3 signal null eAD false
        @Test func exitingOnItsOwnIsNotIntended() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["node"])
            defer { primary.stop() }
            let listening = try await primary.waitForEvent(["event": "listening", "id": "1"])
            primary.adopt(Int32(listening["pid"] as! Int))

            primary.send("tell 1 exit 3")
            let exit = try await primary.waitForEvent(["event": "exit", "id": "1"])
            #expect(exit["code"] as? Int == 3)
            #expect(exit["exitedAfterDisconnect"] as? Bool == false)
            let disconnect = try #require(primary.events(["event": "disconnect", "id": "1"]).first)
            #expect(disconnect["exitedAfterDisconnect"] as? Bool == false)
            expectOrder(primary, ["disconnect", "exit"], worker: 1)
        }

        /// Node (`cluster.disconnect()` at 721 ms with two workers, one holding a client until
        /// 1749 ms; the same with `SCHED_NONE`):
        ///
        ///     721 cluster.disconnect()
        ///     745 disconnect 2 disconnected
        ///     753 exit 2 dead 0 null true
        ///     1046 new client error ECONNREFUSED
        ///     1749 held client ends
        ///     1758 disconnect 1 disconnected
        ///     1777 exit 1 dead 0 null true
        ///
        /// A client that connects after the disconnect is refused, while the worker that
        /// holds a connection still serves it; a connection that does get in (before a
        /// draining worker has closed its copy of a socket) is answered or ended, never left
        /// hanging.
        @Test(arguments: ["roundRobin", "leastConnections", "shared", "reusePort"])
        func primaryDisconnectClosesTheListeners(_ distribution: String) async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["node"], environment: ["WORKERS": "2", "DISTRIBUTION": distribution])
            defer { primary.stop() }
            let listening = try await primary.waitForEvents(["event": "listening"], count: 2)
            listening.forEach { primary.adopt(Int32($0["pid"] as! Int)) }
            let port = listening[0]["port"] as! Int
            let held = try LineClient(port: port)
            #expect(held.readLine() == "hi")

            primary.send("disconnect-all")
            let deadline = ContinuousClock.now + .seconds(10)
            var refused = false
            while !refused, ContinuousClock.now < deadline {
                do {
                    let late = try LineClient(port: port, timeout: 5)
                    // It got in before the last copy of the socket closed: served, or ended.
                    let answer = late.readLine()
                    #expect(answer == "hi" || (answer == nil && !late.timedOut), "a late connection was left hanging")
                    try await Task.sleep(for: .milliseconds(5))
                } catch Outcome.refused {
                    refused = true
                }
            }
            #expect(refused, "new clients are refused after primary.disconnect()")
            #expect(held.echo("still served") == "still served", "the held connection is still served")
            #expect(primary.events(["event": "disconnected-all"]).isEmpty, "disconnect() waits for the worker holding a connection")

            held.end()
            try await primary.waitForEvent(["event": "disconnected-all"])
            // The fixture prints events from a subscription of its own: wait for its lines.
            let exits = try await primary.waitForEvents(["event": "exit"], count: 2)
            #expect(exits.count == 2)
            #expect(exits.allSatisfy { $0["code"] as? Int == 0 && $0["exitedAfterDisconnect"] as? Bool == true }, "\(exits)")
            #expect(primary.events(["event": "disconnect"]).count == 2)
            for id in [1, 2] { expectOrder(primary, ["disconnect", "exit"], worker: id) }
            #expect(throws: Outcome.refused) { try LineClient(port: port) }
        }

        /// Every event in `names` for worker `id` appears once, in that order.
        private func expectOrder(_ process: SpawnedProcess, _ names: [String], worker id: Int,
                                 sourceLocation: SourceLocation = #_sourceLocation) {
            let seen = process.output.compactMap(SpawnedProcess.json)
                .filter { $0["id"] as? Int == id }
                .compactMap { $0["event"] as? String }
                .filter(names.contains)
            #expect(seen == names, "worker \(id)'s events", sourceLocation: sourceLocation)
        }
    }
}

/// A line-oriented client of the "node" fixture's echo server.
private final class LineClient {
    private let connection: ClientConnection
    /// Whether the last read waited out the receive timeout (the server neither answered
    /// nor ended the connection).
    private(set) var timedOut = false

    init(port: Int, timeout: Int = 10) throws(Outcome) {
        connection = try ClientConnection(port: port, timeout: timeout)
    }

    /// The next line, or nil at end of file, on an error or after the receive timeout.
    func readLine() -> String? {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let count = recv(connection.fd, &byte, 1, 0)
            guard count == 1 else {
                timedOut = count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
                return nil
            }
            if byte == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
    }

    /// Sends `text` as a line and returns the line echoed back.
    func echo(_ text: String) -> String? {
        let line = Array((text + "\n").utf8)
        guard send(connection.fd, line, line.count, Int32(MSG_NOSIGNAL)) == line.count else { return nil }
        return readLine()
    }

    /// Ends the client's side, as Node's `socket.end()`.
    func end() { shutdown(connection.fd, Int32(SHUT_WR)) }

    /// True when the server ends the connection (end of file or reset) within the timeout.
    func readsEndOfFile() -> Bool {
        var byte: UInt8 = 0
        let count = recv(connection.fd, &byte, 1, 0)
        return count == 0 || (count < 0 && errno == ECONNRESET)
    }
}
