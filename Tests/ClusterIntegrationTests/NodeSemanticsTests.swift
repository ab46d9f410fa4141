import Foundation
import Testing

extension IntegrationTests {
    /// What a Node developer expects behind the names README.md maps: each test quotes what
    /// Node 20 did with `require('cluster')` in the same situation, and holds real processes
    /// (the fixture's listenError, setup and lateSubscriber scenarios) to it.
    @Suite(.timeLimit(.minutes(2)))
    struct NodeSemanticsTests {
        /// Node 20, a worker's `net.createServer().listen(port, '127.0.0.1')` on a port
        /// another process holds, its 'error' event:
        ///     {"message":"bind EADDRINUSE 127.0.0.1:44045","code":"EADDRINUSE","errno":-98,
        ///      "syscall":"bind","address":"127.0.0.1","port":44045}
        /// and `listen(port)` (every address): `"address":null,"port":44777`, the rest the same.
        /// Here errno is Linux's own, positive (98), and its name is `errnoName`; the address
        /// without a host is 0.0.0.0, the address actually asked for.
        @Test func aWorkersListenErrorCarriesErrnoSystemCallAndAddress() async throws {
            let (blocker, busy) = try listeningSocket()
            defer { close(blocker) }
            let primary = try SpawnedProcess("ClusterFixture", ["listenError"], environment: ["BUSY_PORT": String(busy)])
            defer { primary.stop() }
            try await primary.waitForEvent(["result": "listenError"])

            let errors = primary.events(["event": "listenError"])
            try #require(errors.count == 2, "one error per address asked for: \(primary.output)")
            for (error, host) in zip(errors, ["127.0.0.1", "0.0.0.0"]) {
                #expect(error["errno"] as? Int == Int(EADDRINUSE), "\(error)")
                #expect(error["errnoName"] as? String == "EADDRINUSE")
                #expect(error["systemCall"] as? String == "bind")
                #expect(error["host"] as? String == host)
                #expect(error["port"] as? Int == busy)
                #expect(error["code"] as? String == "invalid address", "the primary's own code crosses the channel")
                #expect((error["description"] as? String)?.contains("Address already in use") == true)
            }
            // The primary's own listen fails with the same fields.
            let own = try #require(primary.events(["event": "primaryListenError"]).first)
            #expect(own["errno"] as? Int == Int(EADDRINUSE))
            #expect(own["errnoName"] as? String == "EADDRINUSE")
            #expect(own["systemCall"] as? String == "bind")
            #expect(own["host"] as? String == "127.0.0.1")
            #expect(own["port"] as? Int == busy)
        }

        /// Node 20, `cluster.settings` after successive `setupPrimary` calls in a script run
        /// as `node setup.js`:
        ///     before {}
        ///     setupPrimary({ args: ['a'], silent: true })
        ///       {"args":["a"],"exec":"/tmp/nodeapi/setup.js","execArgv":[],"silent":true}
        ///     setupPrimary({ cwd: '/tmp' })
        ///       {"args":["a"],"exec":"/tmp/nodeapi/setup.js","execArgv":[],"silent":true,"cwd":"/tmp"}
        ///     setupPrimary({ args: ['b'] })
        ///       {"args":["b"],"exec":"/tmp/nodeapi/setup.js","execArgv":[],"silent":true,"cwd":"/tmp"}
        ///     setupPrimary({ silent: undefined })   → silent gone; setupPrimary() → unchanged
        /// and after a bare `cluster.fork()` in `node settings2.js x y`:
        ///     {"args":["x","y"],"exec":"/tmp/nodeapi/settings2.js","execArgv":[],"silent":false}
        /// Calls add up, and `settings` shows the effective values with `exec` the program itself.
        @Test func setupIsCumulativeAndSettingsShowTheEffectiveValues() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["setup"])
            defer { primary.stop() }
            let reset = try await primary.waitForEvent(["event": "settings", "step": "reset"])
            let fixture = URL(fileURLWithPath: SpawnedProcess.product("ClusterFixture")).resolvingSymlinksInPath().path

            let defaults = try #require(primary.events(["event": "settings", "step": "defaults"]).first)
            #expect(defaults["executable"] as? String == fixture, "the binary workers run: \(defaults)")
            #expect(defaults["arguments"] as? [String] == ["setup"])
            #expect(defaults["workingDirectory"] is NSNull)
            #expect(defaults["distribution"] as? String == "leastConnections")

            // setup(arguments:distribution:), then setup(workingDirectory:), then
            // setup { $0.environment[...] = ... }: each kept what the ones before set.
            let cumulative = try #require(primary.events(["event": "settings", "step": "cumulative"]).first)
            #expect(cumulative["arguments"] as? [String] == ["setup", "from-first-call"])
            #expect(cumulative["distribution"] as? String == "roundRobin")
            #expect(cumulative["workingDirectory"] as? String == "/tmp")
            #expect(cumulative["environment"] as? [String: String] == ["FIXTURE_GREETING": "hello"])
            #expect(cumulative["executable"] as? String == fixture)

            // And the worker was started with all three.
            let worker = try #require(primary.events(["event": "setupWorker"]).first)
            #expect(worker["cwd"] as? String == "/tmp")
            #expect(worker["arguments"] as? [String] == ["setup", "from-first-call"])
            #expect(worker["greeting"] as? String == "hello")

            // setup { $0.workingDirectory = nil } puts that one back, nothing else.
            #expect(reset["workingDirectory"] is NSNull)
            #expect(reset["arguments"] as? [String] == ["setup", "from-first-call"])
            #expect(reset["distribution"] as? String == "roundRobin")
        }

        /// Node 20, handlers added on the line after `const w = cluster.fork()` (the worker
        /// listens, then the primary disconnects it):
        ///     handlers added right after fork() saw fork, online, listening, disconnect, exit
        /// Here a subscription made after `fork()` returned sees the same; one made after the
        /// worker listens sees its past lifecycle first (fork, online, listening), then the
        /// rest; a worker that exited before it subscribed is not shown at all.
        @Test func aLateSubscriberSeesEveryLifecycleEventOfEveryLiveWorker() async throws {
            let primary = try SpawnedProcess("ClusterFixture", ["lateSubscriber"])
            defer { primary.stop() }
            let result = try await primary.waitForEvent(["result": "lateSubscriber"])
            let immediate = try #require(result["immediate"] as? [String])
            let late = try #require(result["late"] as? [String])

            func of(_ id: Int, in events: [String]) -> [String] {
                events.filter { $0.hasSuffix(" \(id)") }.map { String($0.split(separator: " ")[0]) }
            }
            #expect(of(1, in: immediate) == ["fork", "online", "listening", "disconnect", "exit"], "\(immediate)")
            // Node 20, a worker SIGKILLed once listening: fork, online, listening, disconnect, exit
            #expect(of(2, in: immediate) == ["fork", "online", "listening", "disconnect", "exit"], "\(immediate)")
            #expect(late == ["fork 1", "online 1", "listening 1", "disconnect 1", "exit 1"],
                    "worker 1 replayed in order, worker 2 (exited) not at all: \(late)")
        }
    }
}

/// A TCP socket listening on 127.0.0.1 at a port the kernel chose: the port is in use.
private func listeningSocket() throws -> (fd: Int32, port: Int) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw TestFailure.unexpected("socket: errno \(errno)") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard ok else {
        close(fd)
        throw TestFailure.unexpected("bind/listen on 127.0.0.1: errno \(errno)")
    }
    return (fd, Int(UInt16(bigEndian: address.sin_port)))
}
