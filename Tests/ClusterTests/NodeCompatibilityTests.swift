@testable import Cluster
import Glibc
import Testing

/// The pure parts of Node's semantics: errno names, the typed failure that crosses the
/// channel, cumulative settings, and the lifecycle a late subscriber is shown.
@Suite struct NodeCompatibilityTests {
    // MARK: Errors

    @Test func errnoNamesAreLinuxsAsNodeSpellsThem() {
        // Node's err.code for these errnos (libuv's names).
        #expect(ClusterError.errnoName(EADDRINUSE) == "EADDRINUSE")
        #expect(ClusterError.errnoName(EACCES) == "EACCES")
        #expect(ClusterError.errnoName(EADDRNOTAVAIL) == "EADDRNOTAVAIL")
        #expect(ClusterError.errnoName(ECONNREFUSED) == "ECONNREFUSED")
        #expect(ClusterError.errnoName(EAGAIN) == "EAGAIN")
        #expect(ClusterError.errnoName(EWOULDBLOCK) == "EAGAIN")
        #expect(ClusterError.errnoName(EMFILE) == "EMFILE")
        #expect(ClusterError.errnoName(EHWPOISON) == "EHWPOISON")
        for unnamed: Int32 in [0, -98, 41, 58, 134, 4095, .max] { #expect(ClusterError.errnoName(unnamed) == nil) }
        let error = ClusterError(.invalidAddress, errno: EADDRINUSE, systemCall: "bind", address: .tcp(port: 8000), "cannot bind")
        #expect(error.errnoName == "EADDRINUSE")
        #expect(error.systemCall == "bind")
        #expect(error.port == 8000)
        #expect(ClusterError(.systemCall("listen"), errno: EINVAL, "refused").systemCall == "listen")
        #expect(ClusterError(.timeout, "late").systemCall == nil)
        #expect(ClusterError(.timeout, "late").errnoName == nil)
    }

    @Test func aListenFailureCrossesTheChannelWithItsFields() {
        let address = ListenAddress.tcp(host: "127.0.0.1", port: 44045)
        let original = ClusterError(.invalidAddress, errno: EADDRINUSE, systemCall: "bind", address: address,
                                    "cannot bind tcp://127.0.0.1:44045")
        let received = RemoteFailure.error(from: RemoteFailure(original).payload)
        #expect(received.code == .invalidAddress)
        #expect(received.errno == EADDRINUSE)
        #expect(received.errnoName == "EADDRINUSE")
        #expect(received.systemCall == "bind")
        #expect(received.address == address)
        #expect(received.port == 44045)
        #expect(received.context == "the peer failed the request: cannot bind tcp://127.0.0.1:44045")

        // A system call's own code keeps its name.
        let call = RemoteFailure.error(from: RemoteFailure(ClusterError(.systemCall("socket"), errno: EMFILE, "refused")).payload)
        #expect(call.code == .systemCall("socket"))
        #expect(call.errnoName == "EMFILE")
    }

    @Test func failuresFromOtherPeersStillRead() {
        // An older primary, or an application's fail(_:), sends text.
        let text = RemoteFailure.error(from: Array("remote error: cannot bind (errno 98: Address already in use)".utf8))
        #expect(text.code == .remoteError)
        #expect(text.errno == nil)
        #expect(text.context == "the peer failed the request: remote error: cannot bind (errno 98: Address already in use)")
        // Byte for byte, even a combining mark that joins the prefix's last space.
        let combining: [UInt8] = [0xdb, 0xa3, 0x5c, 0x09]
        #expect(Array(RemoteFailure.error(from: combining).context.utf8) == Array("the peer failed the request: ".utf8) + combining)
        // Text that only looks like JSON.
        #expect(RemoteFailure.error(from: Array("{not json".utf8)).context == "the peer failed the request: {not json")
        #expect(RemoteFailure.error(from: Array(#"{"reason":"busy"}"#.utf8)).code == .remoteError)
        // A newer peer: fields and a code this runtime does not know are ignored.
        let newer = RemoteFailure.error(from: Array(#"{"clusterError":"x","code":"quota","errno":98,"hint":"later"}"#.utf8))
        #expect(newer.code == .remoteError)
        #expect(newer.errno == 98)
        #expect(newer.context == "the peer failed the request: x")
        // Only the text is required; a bad errno or address is dropped, not trusted.
        let minimal = RemoteFailure.error(from: Array(#"{"clusterError":"x"}"#.utf8))
        #expect(minimal.errno == nil && minimal.systemCall == nil && minimal.address == nil)
        let lying = RemoteFailure.error(from: Array(#"{"clusterError":"x","errno":-5,"address":"nowhere","code":"systemCall"}"#.utf8))
        #expect(lying.errno == nil && lying.address == nil && lying.code == .remoteError)
    }

    // MARK: Settings

    @Test func setupChangesOnlyWhatItNames() {
        // Node 20: setupPrimary({ args: ['a'], silent: true }), then ({ cwd: '/tmp' }), then
        // ({ args: ['b'] }) → {"args":["b"],…,"silent":true,"cwd":"/tmp"}.
        var settings = PrimarySettings()
        settings = settings.merging(PrimarySettings(arguments: ["a"], output: .prefixed))
        settings = settings.merging(PrimarySettings(workingDirectory: "/tmp"))
        settings = settings.merging(PrimarySettings(arguments: ["b"]))
        #expect(settings.arguments == ["b"])
        #expect(settings.output == .prefixed)
        #expect(settings.workingDirectory == "/tmp")
        #expect(settings.distribution == .leastConnections)

        // Naming a default value still names it; nil in the initializer names nothing
        // (Node: setupPrimary() changes nothing).
        settings = settings.merging(PrimarySettings(user: nil, output: .inherit))
        #expect(settings.output == .inherit)
        #expect(settings.workingDirectory == "/tmp")
        settings = settings.merging(PrimarySettings())
        #expect(settings.arguments == ["b"])

        // Assigning names a setting, nil included (Node: setupPrimary({ silent: undefined })).
        var changes = PrimarySettings()
        changes.workingDirectory = nil
        changes.balanceConnections = false
        changes.environment["A"] = "1"
        settings = settings.merging(changes)
        #expect(settings.workingDirectory == nil)
        #expect(settings.balanceConnections == false)
        #expect(settings.environment == ["A": "1"])
        #expect(settings.arguments == ["b"])
    }

    @Test func effectiveSettingsFillInTheExecutableAndNameNothing() {
        let stored = PrimarySettings(user: "web")
        let effective = stored.effective(executable: "/srv/app", arguments: ["serve"])
        #expect(effective.executable == "/srv/app")
        #expect(effective.arguments == ["serve"])
        #expect(effective.user == "web")
        #expect(effective.named.isEmpty)
        // Set ones are kept, not replaced by the defaults.
        let set = PrimarySettings(executable: "/bin/worker", arguments: []).effective(executable: "/srv/app", arguments: ["serve"])
        #expect(set.executable == "/bin/worker")
        #expect(set.arguments == [])
        // Editing the effective value and merging it changes only what was edited: the
        // executable stays "the primary's own, looked up at each fork".
        var edited = effective
        edited.group = "staff"
        let merged = stored.merging(edited)
        #expect(merged.executable == nil)
        #expect(merged.arguments == nil)
        #expect(merged.group == "staff")
        #expect(merged.user == "web")
    }

    // MARK: Events

    @Test func lifecyclesKeepLiveWorkersInOrderAndForgetTheDead() throws {
        let (one, two) = (try worker(1), try worker(2))
        var lifecycles = Lifecycles()
        var sequence: UInt64 = 0
        func record(_ event: ClusterEvent) {
            sequence += 1
            lifecycles.record(event, sequence: sequence)
        }
        record(.fork(one))
        record(.fork(two))
        record(.online(two))
        record(.online(one))
        record(.message(one, ClusterMessage(bytes: [1], descriptors: [])))
        record(.listening(one, .tcp(port: 80)))
        record(.ready(one))
        record(.disconnect(one))
        #expect(lifecycles.replay.map { name($0.event) } == ["fork 1", "fork 2", "online 2", "online 1", "listening 1", "ready 1", "disconnect 1"])
        record(.exit(two, .exited(0)))
        #expect(lifecycles.replay.map { name($0.event) } == ["fork 1", "online 1", "listening 1", "ready 1", "disconnect 1"])
        // An event after the exit does not bring the worker back.
        record(.disconnect(two))
        #expect(lifecycles.workers == [1])
        // Bounded: a worker that reports listening without end is kept to a handful.
        for port in 0..<1000 { record(.listening(one, .tcp(port: port))) }
        #expect(lifecycles.replay.count == ClusterEvents.replayedPerWorker)
        record(.exit(one, .exited(0)))
        #expect(lifecycles.replay.isEmpty)
    }

    @Test func aNewSubscriberSeesThePastLifecycleBeforeNewEvents() async throws {
        let (one, two) = (try worker(1), try worker(2))
        let hub = EventHub()
        // Nobody subscribed yet: lifecycle events are kept, a message is held.
        hub.publish(.fork(one))
        hub.publish(.online(one))
        hub.publish(.message(one, ClusterMessage(bytes: [1], descriptors: [])), from: one.channel)
        hub.publish(.fork(two))
        hub.publish(.exit(two, .exited(0)))
        hub.publish(.listening(one, .tcp(port: 80)))
        let first = hub.subscribe()
        hub.publish(.disconnect(one))
        // A second subscriber: the lifecycle again, not the message (the first one took it).
        let second = hub.subscribe()
        hub.publish(.exit(one, .exited(0)))
        let third = hub.subscribe()
        let three = try worker(3)
        hub.publish(.fork(three))

        #expect(await names(first, count: 7) == ["fork 1", "online 1", "message 1", "listening 1", "disconnect 1", "exit 1", "fork 3"])
        #expect(await names(second, count: 6) == ["fork 1", "online 1", "listening 1", "disconnect 1", "exit 1", "fork 3"])
        #expect(await names(third, count: 1) == ["fork 3"])
    }

    private func names(_ events: ClusterEvents, count: Int) async -> [String] {
        var seen: [String] = []
        for await event in events {
            seen.append(name(event))
            if seen.count == count { break }
        }
        return seen
    }

    private func name(_ event: ClusterEvent) -> String {
        let kind = switch event {
        case .fork: "fork"
        case .online: "online"
        case .listening: "listening"
        case .ready: "ready"
        case .message: "message"
        case .disconnect: "disconnect"
        case .exit: "exit"
        }
        return "\(kind) \(event.worker.id)"
    }

    /// A worker object with a channel of its own and no process behind it.
    private func worker(_ id: Int) throws -> Worker {
        let (mine, theirs) = try Syscall.socketPair()
        Syscall.close(theirs)
        return Worker(id: id, pid: 0, slot: id - 1, pidfd: -1, channel: Channel(fd: mine), loop: .shared)
    }
}
