// Scenarios that hold the library to Node's `cluster` behaviour (NodeSemanticsTests):
//
// "listenError": BUSY_PORT is a port another process listens on (127.0.0.1). The worker
//   asks for it twice, on 127.0.0.1 and on every address, and prints each error's fields
//   ({"event":"listenError",...}); the primary tries it itself and prints its own
//   ({"event":"primaryListenError",...}).
// "setup": the primary calls setup three times, each naming one setting, and prints
//   `settings` before and after ({"event":"settings",...}); then forks a worker, which
//   prints its working directory, arguments and FIXTURE_GREETING ({"event":"setupWorker",...}).
// "lateSubscriber": worker 1 is forked and only then subscribed to; worker 2 is forked,
//   killed, and has exited before a third subscription starts; then worker 1 disconnects.
//   Prints what each subscription saw ({"result":"lateSubscriber",...}).
import Cluster
import ClusterNIO
import Foundation
import NIOCore

private func joined(_ first: [String: Any], _ second: [String: Any]) -> [String: Any] {
    first.merging(second) { $1 }
}

private func fields(of error: ClusterError) -> [String: Any] {
    [
        "code": "\(error.code)",
        "errno": error.errno.map { Int($0) } ?? NSNull(),
        "errnoName": error.errnoName ?? NSNull(),
        "systemCall": error.systemCall ?? NSNull(),
        "address": error.address?.description ?? NSNull(),
        "host": error.address?.host ?? NSNull(),
        "port": error.port ?? NSNull(),
        "description": error.description,
    ]
}

private func fields(of settings: PrimarySettings) -> [String: Any] {
    [
        "executable": settings.executable ?? NSNull(),
        "arguments": settings.arguments ?? NSNull(),
        "workingDirectory": settings.workingDirectory ?? NSNull(),
        "environment": settings.environment,
        "distribution": "\(settings.distribution)",
        "disconnectTimeout": "\(settings.disconnectTimeout)",
        "user": settings.user ?? NSNull(),
    ]
}

/// The event's name and worker, "fork 1"; nil for messages and `ready`, which Node has not.
private func nodeEvent(_ event: ClusterEvent) -> String? {
    switch event {
    case .fork(let worker): "fork \(worker.id)"
    case .online(let worker): "online \(worker.id)"
    case .listening(let worker, _): "listening \(worker.id)"
    case .disconnect(let worker): "disconnect \(worker.id)"
    case .exit(let worker, _): "exit \(worker.id)"
    case .message, .ready: nil
    }
}

func runNodeSemanticsPrimary(_ primary: Primary, _ events: ClusterEvents) async throws {
    switch scenario {
    case "listenError":
        let busy = Int(environment["BUSY_PORT"] ?? "") ?? 0
        do {
            try await primary.listen(.tcp(host: "127.0.0.1", port: busy))
            emit(["event": "primaryListenError", "error": "none"])
        } catch {
            emit(joined(["event": "primaryListenError"], fields(of: error)))
        }
        let worker = try await primary.fork(environment: ["BUSY_PORT": String(busy)])
        for await event in events {
            if case .exit(let exited, _) = event, exited.id == worker.id { break }
        }
        emit(["result": "listenError"])
    case "setup":
        emit(joined(["event": "settings", "step": "defaults"], fields(of: primary.settings)))
        primary.setup(PrimarySettings(arguments: ["setup", "from-first-call"], distribution: .roundRobin))
        primary.setup(PrimarySettings(workingDirectory: "/tmp"))
        primary.setup { $0.environment["FIXTURE_GREETING"] = "hello" }
        emit(joined(["event": "settings", "step": "cumulative"], fields(of: primary.settings)))
        let worker = try await primary.fork()
        for await event in events {
            if case .exit(let exited, _) = event, exited.id == worker.id { break }
        }
        // Back to a default: the closure form assigns it.
        primary.setup { $0.workingDirectory = nil }
        emit(joined(["event": "settings", "step": "reset"], fields(of: primary.settings)))
    case "lateSubscriber":
        let first = try await primary.fork()
        let immediate = primary.events // right after fork(), as Node's handlers are added
        let second = try await primary.fork()
        var listening: Set<Int> = []
        for await event in events {
            if case .listening(let worker, _) = event { listening.insert(worker.id) }
            if listening == [first.id, second.id] { break }
        }
        second.kill(.kill)
        for await event in events {
            if case .exit(let worker, _) = event, worker.id == second.id { break }
        }
        let late = primary.events // after worker 1 listens and worker 2 has exited
        first.disconnect(timeout: .seconds(10))
        func collect(_ events: ClusterEvents) async -> [String] {
            var seen: [String] = []
            for await event in events {
                if let name = nodeEvent(event) { seen.append(name) }
                if case .exit(let worker, _) = event, worker.id == first.id { break }
            }
            return seen
        }
        async let fromImmediate = collect(immediate)
        async let fromLate = collect(late)
        emit(["result": "lateSubscriber", "immediate": await fromImmediate, "late": await fromLate])
    default:
        emit(["error": "unknown scenario \(scenario)"])
    }
}

func runNodeSemanticsWorker(_ worker: ClusterWorker) async throws {
    switch scenario {
    case "listenError":
        let busy = Int(environment["BUSY_PORT"] ?? "") ?? 0
        for address in [ListenAddress.tcp(host: "127.0.0.1", port: busy), .tcp(port: busy)] {
            do {
                _ = try await worker.listener(address)
                emit(["event": "listenError", "asked": address.description, "error": "none"])
            } catch {
                emit(joined(["event": "listenError", "asked": address.description], fields(of: error)))
            }
        }
    case "setup":
        emit(["event": "setupWorker", "cwd": FileManager.default.currentDirectoryPath,
              "arguments": Array(CommandLine.arguments.dropFirst()),
              "greeting": environment["FIXTURE_GREETING"] ?? NSNull()])
    case "lateSubscriber":
        try await worker.serveHTTP(.tcp(host: "127.0.0.1", port: 0)) { _, loop in
            loop.makeSucceededFuture(ClusterHTTPResponse(body: "worker \(worker.id)\n"))
        }
    default:
        break
    }
}
