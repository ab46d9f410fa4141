// The program the integration tests spawn: a primary and its workers, one scenario per
// first argument. The primary reports events as JSON lines on standard output and takes
// commands on standard input ("disconnect ID", "kill ID SIGNAL", "fork").
import Cluster
import ClusterNIO
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// `serve`'s listener: LISTEN (`tcp://0.0.0.0:0?proxy=v2`, say) or 0.0.0.0:`port`.
func fixtureListenAddress(port: Int) throws -> ListenAddress {
    try ProcessInfo.processInfo.environment["LISTEN"].map { text throws in try ListenAddress(parsing: text) } ?? .tcp(host: "0.0.0.0", port: port)
}

func emit(_ fields: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}

func describe(_ event: ClusterEvent) -> [String: Any] {
    let worker = event.worker
    var fields: [String: Any] = ["id": worker.id, "pid": Int(worker.pid), "slot": worker.slot]
    switch event {
    case .fork: fields["event"] = "fork"
    case .online: fields["event"] = "online"
    case .listening(_, let address):
        fields["event"] = "listening"
        fields["address"] = address.description
        fields["port"] = address.port ?? -1
    case .message(_, let message):
        fields["event"] = "message"
        fields["text"] = message.string
    case .ready: fields["event"] = "ready"
    case .disconnect: fields["event"] = "disconnect"
    case .exit(let worker, let status):
        fields["event"] = "exit"
        fields["status"] = status.description
        fields["signal"] = status.signal?.description ?? NSNull()
        fields["code"] = status.code.map { Int($0) } ?? NSNull()
        fields["exitedAfterDisconnect"] = worker.exitedAfterDisconnect
    }
    return fields
}

let scenario = CommandLine.arguments.dropFirst().first ?? "serve"
let environment = ProcessInfo.processInfo.environment

// MARK: Primary

func runPrimary(_ primary: Primary) async throws {
    if let user = environment["FIXTURE_USER"] { primary.setup(PrimarySettings(user: user, output: .prefixed)) }
    let events = primary.events
    switch scenario {
    case "supervised":
        try await runSupervisedPrimary(primary)
    case "turns":
        try await runTurnsPrimary(primary, events)
    case "listenError", "setup", "lateSubscriber":
        try await runNodeSemanticsPrimary(primary, events)
    case "serve":
        let count = Int(environment["WORKERS"] ?? "2") ?? 2
        let port = Int(environment["PORT"] ?? "0") ?? 0
        // Shared unless told: the spawn tests look for the inherited listener at fd 4.
        let distribution = try Cluster.environmentDistribution(default: .shared)
        // 0.0.0.0, so sticky tests can connect from many loopback addresses.
        try await primary.listen(try fixtureListenAddress(port: port), distribution: distribution)
        Thread.detachNewThread { readCommands(primary) }
        for _ in 0..<count { try await primary.fork() }
        for await event in events {
            if case .message = event { continue }
            emit(describe(event))
            if case .exit = event, environment["RESTART"] == "1" { try await primary.fork() }
        }
    case "messages":
        let count = Int(CommandLine.arguments.dropFirst(2).first ?? "100000") ?? 100_000
        let worker = try await primary.fork()
        for index in 0..<count { try await worker.send(bytes: withUnsafeBytes(of: UInt64(index).littleEndian, Array.init)) }
        var expected: UInt64 = 0
        var inOrder = true
        var workerReport = ""
        for await event in events {
            guard case .message(_, let message) = event else { continue }
            if message.bytes.count == 8 {
                let value = message.bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
                if value != expected { inOrder = false }
                expected += 1
            } else {
                workerReport = message.string
                break
            }
        }
        emit(["result": "messages", "toPrimary": Int(expected), "toPrimaryInOrder": inOrder, "worker": workerReport])
        worker.kill(.kill)
    case "descriptor":
        let worker = try await primary.fork()
        var fds: [Int32] = [0, 0]
        _ = pipe(&fds)
        try await worker.send(bytes: Array("pipe".utf8), descriptors: [fds[1]])
        close(fds[1])
        let readByPrimary = readAll(fds[0])
        var fromWorker = ""
        for await event in events {
            if case .message(_, let message) = event, let fd = message.descriptors.first {
                fromWorker = readAll(fd)
                break
            }
        }
        emit(["result": "descriptor", "primaryRead": readByPrimary, "fromWorkerRead": fromWorker])
        worker.kill(.kill)
    case "oversized":
        let worker = try await primary.fork()
        var primaryError = ""
        do {
            try await worker.send(bytes: [UInt8](repeating: 0, count: (64 << 20) + 1))
        } catch {
            primaryError = "\(error.code): \(error.context)"
        }
        var workerError = ""
        for await event in events {
            if case .message(_, let message) = event { workerError = message.string; break }
        }
        let reply = try await worker.request(bytes: Array("still there?".utf8), timeout: .seconds(5))
        emit(["result": "oversized", "primaryError": primaryError, "workerError": workerError, "afterwards": reply.string])
        worker.kill(.kill)
    case "malformed":
        let liar = try await primary.fork(environment: ["FIXTURE_ROLE": "liar"])
        var exit = ""
        for await event in events {
            if case .exit(let worker, let status) = event, worker.id == liar.id { exit = status.signal?.description ?? status.description; break }
        }
        let honest = try await primary.fork()
        let reply = try await honest.request(bytes: Array("still there?".utf8), timeout: .seconds(5))
        emit(["result": "malformed", "liarExit": exit, "afterwards": reply.string])
        honest.kill(.kill)
    case "mesh":
        let first = try await primary.fork()
        let second = try await primary.fork()
        var online = 0
        for await event in events {
            if case .online = event { online += 1 }
            if online == 2 { break }
        }
        try await primary.broadcast(["greeting": "hello, workers"])
        var heard: [String] = []
        for await event in events {
            guard case .message(let worker, let message) = event else { continue }
            heard.append("worker \(worker.id): \(message.string)")
            if heard.count == 3 { break }
        }
        var timeout = ""
        do {
            _ = try await first.request(bytes: Array("ignore".utf8), timeout: .milliseconds(200))
        } catch {
            timeout = "\(error.code): \(error.context)"
        }
        emit(["result": "mesh", "heard": heard.sorted(), "timeout": timeout])
        first.kill(.kill)
        second.kill(.kill)
    case "handler":
        let worker = try await primary.fork()
        // Sent at once: most arrive before the worker installs its handler.
        for index in 0..<1000 { try await worker.send(bytes: withUnsafeBytes(of: UInt64(index).littleEndian, Array.init)) }
        let reply = try await worker.request(bytes: Array("report".utf8), timeout: .seconds(10))
        emit(["result": "handler", "report": reply.string])
        worker.kill(.kill)
    case "bootstrap":
        // A ServerBootstrap accepts on a socket of its own: reusePort (shared is refused).
        let distribution = try Distribution(parsing: CommandLine.arguments.dropFirst(2).first ?? "reusePort")
        try await primary.listen(.tcp(host: "127.0.0.1", port: 0), distribution: distribution)
        _ = try await primary.fork()
        for await event in events { emit(describe(event)) }
    case "farewell":
        _ = try await primary.fork()
        var received = 0
        for await event in events {
            if case .message = event { received += 1 }
            if case .exit(_, let status) = event {
                emit(["result": "farewell", "receivedBeforeExit": received, "status": status.description])
                break
            }
        }
    case "listeners":
        let socketPath = environment["SOCKET_PATH"] ?? "/tmp/cluster-fixture.sock"
        Thread.detachNewThread { readCommands(primary) }
        _ = try await primary.fork(environment: ["SOCKET_PATH": socketPath])
        for await event in events { emit(describe(event)) }
    case "node":
        try await runNodePrimary(primary)
    default:
        emit(["error": "unknown scenario \(scenario)"])
    }
}

func readCommands(_ primary: Primary) {
    while let line = readLine() {
        let words = line.split(separator: " ").map(String.init)
        guard let command = words.first else { continue }
        let worker = words.count > 1 ? Int(words[1]).flatMap { primary.workers[$0] } : nil
        switch command {
        case "disconnect": worker?.disconnect(timeout: .seconds(Int(words.count > 2 ? words[2] : "10") ?? 10))
        case "kill": worker?.kill(Signal(name: words.count > 2 ? words[2] : "SIGTERM") ?? .terminate)
        case "fork": Task { try await primary.fork() }
        default: emit(["error": "unknown command \(line)"])
        }
    }
}

func readAll(_ fd: Int32) -> String {
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(fd, &buffer, buffer.count)
        if n <= 0 { break }
        bytes += buffer[0..<n]
    }
    close(fd)
    return String(decoding: bytes, as: UTF8.self)
}

// MARK: Worker

func runWorker(_ worker: ClusterWorker) async throws {
    switch scenario {
    case "supervised":
        try await runSupervisedWorker(worker)
    case "listenError", "setup", "lateSubscriber":
        try await runNodeSemanticsWorker(worker)
    case "node":
        try await runNodeWorker(worker)
    case "serve", "turns":
        emit(["event": "started", "id": worker.id, "pid": Int(getpid())])
        // HOSTILE=ATTACK: worker HOSTILE_ID (default 1) becomes HOSTILE_SCRIPT, which
        // speaks the channel protocol past the runtime and lies.
        if let attack = environment["HOSTILE"], let script = environment["HOSTILE_SCRIPT"],
           Int(environment["HOSTILE_ID"] ?? "1") == worker.id {
            _ = fcntl(3, F_SETFD, 0) // the channel stays open across exec
            let arguments = ["/usr/bin/env", "python3", script, attack]
            var argv = arguments.map { strdup($0) } + [nil]
            execv("/usr/bin/env", &argv)
            fatalError("cannot run \(script): errno \(errno)")
        }
        let limit = environment["MAX_CONNECTIONS"].flatMap(Int.init)
        if let client = environment["STALL_CLIENT"] {
            try await serveStalling(worker, on: try fixtureListenAddress(port: Int(environment["PORT"] ?? "0") ?? 0),
                                    whenAdopting: client)
            return
        }
        // SLOW_WORKER=ID: that worker spends SLOW_MS (default 2) of CPU on every request,
        // blocking its event loop, so benchmarks can show how each strategy copes.
        let slow = environment["SLOW_WORKER"].flatMap(Int.init) == worker.id
        let slowFor = Duration.milliseconds(Int(environment["SLOW_MS"] ?? "2") ?? 2)
        try await worker.serveHTTP(try fixtureListenAddress(port: Int(environment["PORT"] ?? "0") ?? 0), maxConnections: limit,
                                   accept: try fixtureAcceptMode()) { request, loop in
            if slow {
                let until = ContinuousClock.now + slowFor
                while ContinuousClock.now < until {}
            }
            let components = URLComponents(string: request.head.uri)
            let body = "worker \(worker.id) pid \(getpid())\n"
            if components?.path == "/client" {
                // The client as the worker sees it: behind a PROXY protocol listener, the
                // one the header named.
                let client = request.clientAddress?.ipAddress ?? "none"
                return loop.makeSucceededFuture(ClusterHTTPResponse(body: "worker \(worker.id) client \(client)\n"))
            }
            if components?.path == "/slow" {
                emit(["event": "request", "path": "/slow", "id": worker.id])
                let milliseconds = Int64(components?.queryItems?.first { $0.name == "ms" }?.value ?? "1000") ?? 1000
                return loop.scheduleTask(in: .milliseconds(milliseconds)) { ClusterHTTPResponse(body: "slow " + body) }.futureResult
            }
            return loop.makeSucceededFuture(ClusterHTTPResponse(body: body))
        }
    case "messages":
        let count = Int(CommandLine.arguments.dropFirst(2).first ?? "100000") ?? 100_000
        var expected: UInt64 = 0
        var inOrder = true
        for await message in worker.messages {
            let value = message.bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
            if value != expected { inOrder = false }
            expected += 1
            if expected == count { break }
        }
        for index in 0..<count { try await worker.send(bytes: withUnsafeBytes(of: UInt64(index).littleEndian, Array.init)) }
        try await worker.send(bytes: Array("worker received \(expected) in order: \(inOrder)".utf8))
        try await Task.sleep(for: .seconds(30))
    case "descriptor":
        for await message in worker.messages {
            guard let fd = message.descriptors.first else { continue }
            let text = "written by worker \(worker.id)"
            _ = text.withCString { write(fd, $0, strlen($0)) }
            close(fd)
            break
        }
        var fds: [Int32] = [0, 0]
        _ = pipe(&fds)
        let text = "sent by worker \(worker.id)"
        _ = text.withCString { write(fds[1], $0, strlen($0)) }
        close(fds[1])
        try await worker.send(bytes: Array("here".utf8), descriptors: [fds[0]])
        close(fds[0])
        try await Task.sleep(for: .seconds(30))
    case "oversized":
        do {
            try await worker.send(bytes: [UInt8](repeating: 0, count: (64 << 20) + 1))
            try await worker.send(bytes: Array("no error".utf8))
        } catch {
            try await worker.send(bytes: Array("\(error.code): \(error.context)".utf8))
        }
        try await answerRequests(worker)
    case "malformed":
        if environment["FIXTURE_ROLE"] == "liar" {
            // A frame of an unknown kind, written past the runtime, straight to the channel.
            var frame = [UInt8](repeating: 0, count: 20)
            frame[4] = 99
            _ = write(3, &frame, frame.count)
            try await Task.sleep(for: .seconds(30))
        }
        try await answerRequests(worker)
    case "mesh":
        for await message in worker.messages {
            if message.string == "ignore" { continue }
            if let from = message.fromWorker {
                try await worker.send(bytes: Array("got '\(message.string)' from worker \(from)".utf8))
                continue
            }
            try await worker.send(bytes: Array("got \(message.string)".utf8))
            if worker.id == 1 { try await worker.send(toWorker: 2, bytes: Array("ping".utf8)) }
        }
    case "handler":
        try await Task.sleep(for: .milliseconds(200))
        let seen = Mutex((count: 0, inOrder: true))
        worker.onMessage { message in
            guard !message.expectsReply else {
                let (count, inOrder) = seen.withLock { ($0.count, $0.inOrder) }
                try? message.replyNow(bytes: Array("handled \(count) in order: \(inOrder)".utf8))
                return
            }
            let value = message.bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
            seen.withLock { state in
                if value != UInt64(state.count) { state.inOrder = false }
                state.count += 1
            }
        }
        try await Task.sleep(for: .seconds(30))
    case "bootstrap":
        let server: any Channel
        do {
            server = try await worker.bind(
            ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.backlog, value: 16)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(IdentityHandler(body: "bootstrapped\n"))
                    }
                },
            to: .tcp(host: "127.0.0.1", port: 0))
        } catch {
            emit(["event": "bindFailed", "error": "\(error)"])
            exit(1)
        }
        try await server.closeFuture.get()
    case "farewell":
        // Queue about 3 MiB, far more than the socket buffer holds (under the 4 MiB
        // high watermark, so sendNow never refuses), then leave at once.
        for index in 0..<15_000 { try worker.sendNow(bytes: Array("farewell \(index) ".utf8) + [UInt8](repeating: 0, count: 200)) }
        exit(0)
    case "listeners":
        let respond: ClusterHTTPResponder = { request, loop in
            loop.makeSucceededFuture(ClusterHTTPResponse(body: "worker \(worker.id) on \(request.head.uri)\n"))
        }
        async let unix: Void = worker.serveHTTP(.unix(environment["SOCKET_PATH"]!), responder: respond)
        async let ipv6: Void = worker.serveHTTP(.tcp(host: "::1", port: 0), responder: respond)
        _ = try await (unix, ipv6)
    default:
        break
    }
}

func answerRequests(_ worker: ClusterWorker) async throws {
    for await message in worker.messages where message.expectsReply {
        try await message.reply(bytes: Array("yes, worker \(worker.id)".utf8))
    }
}

switch Cluster.role {
case .primary(let primary): try await runPrimary(primary)
case .worker(let worker): try await runWorker(worker)
}

/// STALL_CLIENT=ADDRESS: serves HTTP (`worker ID pid PID`, then close), but the first
/// worker that takes a connection from ADDRESS (the one that creates the file STALL_MARK)
/// blocks its event loop for good right after taking it, before reading it, and says so
/// (`stalled`): a worker stuck with connections it never read, for the crash tests.
func serveStalling(_ worker: ClusterWorker, on address: ListenAddress, whenAdopting client: String) async throws {
    let mark = environment["STALL_MARK"] ?? "/tmp/cluster-fixture-stall-\(getppid())"
    try await worker.serve(address, accept: try fixtureAcceptMode()) { channel in
        if channel.remoteAddress?.ipAddress == client, open(mark, O_CREAT | O_EXCL | O_WRONLY, 0o600) >= 0 {
            // After the taking in progress (handoffs answered, accepts done), before any read.
            channel.eventLoop.execute {
                emit(["event": "stalled", "id": worker.id, "pid": Int(getpid())])
                while true { pause() }
            }
        }
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.configureHTTPServerPipeline()
            try channel.pipeline.syncOperations.addHandler(IdentityHandler(body: "worker \(worker.id) pid \(getpid())\n"))
        }
    }
}

/// Answers every request with `body` and closes (a bare NIO handler).
final class IdentityHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let body: String

    init(body: String) { self.body = body }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        let buffer = ByteBuffer(string: body)
        let head = HTTPResponseHead(version: .http1_1, status: .ok, headers: ["Content-Length": "\(buffer.readableBytes)", "Connection": "close"])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}

/// The accept mode a worker serves with: `ACCEPT_MODE` (automatic, eventLoop, runtime).
func fixtureAcceptMode() throws -> AcceptMode {
    try AcceptMode(parsing: environment["ACCEPT_MODE"] ?? "automatic")
}
