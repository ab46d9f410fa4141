// The "node" scenario: Node's `net.createServer` test server, for comparing disconnect,
// kill and states with Node's cluster. Each worker accepts raw TCP connections, writes
// "hi\n", echoes every line back, and holds each connection until its client closes it.
// The primary reports every event with the worker's state read when it handles it, and
// takes commands on standard input:
//   disconnect ID [SECONDS]  worker.disconnect(timeout:), no timeout unless given
//   tell ID WORD             sends WORD to the worker: disconnect, kill, destroy, exit CODE
//   disconnect-all           primary.disconnect(), then reports "disconnected-all"
// With RELEASE_FILE set, a worker whose connections have all closed after a drain stays
// up until that file exists (a Node worker kept alive by a timer), so the primary's view
// between 'disconnect' and 'exit' can be observed.
import Cluster
import Foundation
import Synchronization

func runNodePrimary(_ primary: Primary) async throws {
    let events = primary.events
    let distribution = try Cluster.environmentDistribution(default: .roundRobin)
    try await primary.listen(.tcp(host: "127.0.0.1", port: 0), distribution: distribution)
    Thread.detachNewThread { readNodeCommands(primary) }
    for _ in 0..<(Int(environment["WORKERS"] ?? "1") ?? 1) { try await primary.fork() }
    for await event in events {
        var fields = describe(event)
        let worker = event.worker
        fields["state"] = worker.state.description
        fields["isConnected"] = worker.isConnected
        fields["isDead"] = worker.isDead
        fields["exitedAfterDisconnect"] = worker.exitedAfterDisconnect
        emit(fields)
    }
}

func readNodeCommands(_ primary: Primary) {
    while let line = readLine() {
        let words = line.split(separator: " ").map(String.init)
        let worker = words.count > 1 ? Int(words[1]).flatMap { primary.workers[$0] } : nil
        switch words.first ?? "" {
        case "disconnect":
            worker?.disconnect(timeout: words.count > 2 ? Int(words[2]).map { .seconds($0) } : nil)
        case "tell":
            guard let worker else { continue }
            let word = words.dropFirst(2).joined(separator: " ")
            Task { try? await worker.send(bytes: Array(word.utf8)) }
        case "disconnect-all":
            Task {
                await primary.disconnect()
                emit(["event": "disconnected-all"])
            }
        default:
            emit(["error": "unknown command \(line)"])
        }
    }
}

func runNodeWorker(_ worker: ClusterWorker) async throws {
    let open = OpenConnections()
    let listener = try await worker.listener(.tcp(host: "127.0.0.1", port: 0))
    let acceptor = try worker.accept(on: listener) { connection in
        open.count.add(1, ordering: .relaxed)
        worker.countConnection(opened: true)
        Thread.detachNewThread {
            let fd = connection.descriptor
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
            _ = "hi\n".withCString { write(fd, $0, 3) }
            var buffer = [UInt8](repeating: 0, count: 256)
            while case let count = read(fd, &buffer, buffer.count), count > 0 {
                _ = write(fd, buffer, count)
            }
            close(fd)
            connection.closed()
            open.count.subtract(1, ordering: .relaxed)
            worker.countConnection(opened: false)
        }
    }
    worker.onMessage { message in
        let words = message.string.split(separator: " ")
        emit(["event": "worker-told", "id": worker.id, "word": message.string, "isConnected": worker.isConnected])
        switch words.first ?? "" {
        case "disconnect": worker.disconnect()
        case "kill": worker.kill()
        case "destroy": worker.destroy()
        case "exit": exit(Int32(words.dropFirst().first ?? "1") ?? 1)
        default: break
        }
    }
    await worker.drainRequested()
    emit(["event": "worker-draining", "id": worker.id, "isConnected": worker.isConnected])
    await acceptor.stopAndWait()
    while open.count.load(ordering: .relaxed) > 0 { try await Task.sleep(for: .milliseconds(5)) }
    if let release = environment["RELEASE_FILE"] {
        // Until the channel has closed (it closes once no connection is left), then until
        // the test releases this worker.
        let deadline = ContinuousClock.now + .seconds(30)
        while worker.isConnected, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        emit(["event": "worker-lingers", "id": worker.id, "isConnected": worker.isConnected])
        while !FileManager.default.fileExists(atPath: release), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}

/// The worker's open connections, shared by the threads that serve them.
final class OpenConnections: Sendable {
    let count = Atomic<Int>(0)
}
