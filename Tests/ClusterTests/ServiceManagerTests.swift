@testable import Cluster
import Testing

/// What the service manager is told, and when (sd_notify): the pure half.
@Suite struct ServiceStatusTests {
    typealias Snapshot = ServiceStatus.Snapshot

    static func state(serving: Int, desired: Int = 2, reloading: Int? = nil, stopping: Bool = false) -> Snapshot {
        Snapshot(serving: serving, desired: desired, reloading: reloading, stopping: stopping, degraded: nil, lastReloadFailure: nil)
    }

    /// The `KEY=` parts of a message, without the STATUS line.
    static func keys(_ lines: [String]) -> [String] {
        lines.filter { !$0.hasPrefix("STATUS=") }.map { $0.hasPrefix("MONOTONIC_USEC=") ? "MONOTONIC_USEC" : $0 }
    }

    @Test func readyOnceEveryDesiredWorkerIsReadyThenReloadingAndReadyAgainThenStopping() {
        var status = ServiceStatus(startedByUpgrade: false)
        #expect(status.update(Self.state(serving: 0), monotonicMicroseconds: 1) == ["STATUS=0 of 2 workers ready"])
        #expect(status.update(Self.state(serving: 1), monotonicMicroseconds: 1) == ["STATUS=1 of 2 workers ready"])
        #expect(Self.keys(status.update(Self.state(serving: 2), monotonicMicroseconds: 1)) == ["READY=1"])
        #expect(status.update(Self.state(serving: 2), monotonicMicroseconds: 1).isEmpty, "nothing changed, nothing said")

        let reload = status.update(Self.state(serving: 2, reloading: 1), monotonicMicroseconds: 42)
        #expect(reload == ["RELOADING=1", "MONOTONIC_USEC=42", "STATUS=2 of 2 workers ready; reloading to generation 1"])
        #expect(Self.keys(status.update(Self.state(serving: 3, reloading: 1), monotonicMicroseconds: 43)).isEmpty,
                "one RELOADING=1 per reload, however the workers change meanwhile")
        #expect(Self.keys(status.update(Self.state(serving: 2, reloading: 2), monotonicMicroseconds: 44)).isEmpty,
                "a queued reload continues the one under way")
        #expect(Self.keys(status.update(Self.state(serving: 2), monotonicMicroseconds: 45)) == ["READY=1"])

        #expect(status.update(Self.state(serving: 2, stopping: true), monotonicMicroseconds: 46) == ["STOPPING=1", "STATUS=stopping: draining the workers"])
        #expect(status.update(Self.state(serving: 0, stopping: true), monotonicMicroseconds: 47).isEmpty)
    }

    @Test func aReloadBeforeTheServiceIsReadyIsPartOfStartingAndAFailedOneEndsWithReady() {
        var status = ServiceStatus(startedByUpgrade: false)
        #expect(Self.keys(status.update(Self.state(serving: 1, reloading: 1), monotonicMicroseconds: 1)).isEmpty)
        #expect(Self.keys(status.update(Self.state(serving: 2), monotonicMicroseconds: 2)) == ["READY=1"])
        #expect(Self.keys(status.update(Self.state(serving: 2, reloading: 2), monotonicMicroseconds: 3)) == ["RELOADING=1", "MONOTONIC_USEC"])
        var failed = Self.state(serving: 2)
        failed.lastReloadFailure = "worker 5 exited (exit code 1) before it was ready"
        let end = status.update(failed, monotonicMicroseconds: 4)
        #expect(end == ["READY=1", "STATUS=2 of 2 workers ready; last reload failed: worker 5 exited (exit code 1) before it was ready"])
    }

    @Test func aHotUpgradesNewPrimaryIsSilentUntilItTakesOverAndTheOldOneAfterItHandsOver() {
        var new = ServiceStatus(startedByUpgrade: true)
        #expect(new.update(Self.state(serving: 2), monotonicMicroseconds: 1).isEmpty)
        #expect(new.tookOver(pid: 4242, state: Self.state(serving: 2)) == ["MAINPID=4242", "READY=1", "STATUS=2 of 2 workers ready"])
        #expect(Self.keys(new.update(Self.state(serving: 2, stopping: true), monotonicMicroseconds: 2)) == ["STOPPING=1"])

        var old = ServiceStatus(startedByUpgrade: false)
        #expect(Self.keys(old.update(Self.state(serving: 2), monotonicMicroseconds: 1)) == ["READY=1"])
        old.handedOver()
        #expect(old.update(Self.state(serving: 2, stopping: true), monotonicMicroseconds: 2).isEmpty,
                "the old primary's drain is not the service stopping")
    }
}

/// The sockets a service manager passes (sd_listen_fds): which are this process's, and by
/// which name.
@Suite struct InheritedSocketsTests {
    @Test func socketsArePassedFromDescriptorThreeWithTheirNames() {
        let sockets = InheritedSockets(pid: 77, listenPID: "77", count: "3", names: "web:admin")
        #expect(sockets.passed.map(\.descriptor) == [3, 4, 5])
        #expect(sockets.passed.map(\.name) == ["web", "admin", "unknown"])
        #expect(sockets.ignored == nil)
    }

    @Test func anotherProcesssOrAMalformedCountIsIgnoredAndSaysWhy() {
        #expect(InheritedSockets(pid: 77, listenPID: "78", count: "1", names: nil).ignored?.contains("LISTEN_PID (78) is not this process (77)") == true)
        #expect(InheritedSockets(pid: 77, listenPID: "77", count: "-1", names: nil).ignored?.contains("not a count") == true)
        #expect(InheritedSockets(pid: 77, listenPID: "77", count: "99999", names: nil).passed.isEmpty)
        #expect(InheritedSockets(pid: 77, listenPID: nil, count: nil, names: nil).ignored == nil)
    }

    @Test(arguments: [
        (ListenAddress.inherited(named: "api"), "no passed socket is named 'api' (LISTEN_FDNAMES: web:admin)"),
        (.inherited(descriptor: 9), "passed descriptors 3 to 4, not 9"),
    ])
    func anAddressNoPassedSocketMatchesSaysWhatWasPassed(address: ListenAddress, message: String) {
        let sockets = InheritedSockets(pid: 77, listenPID: "77", count: "2", names: "web:admin")
        guard case .inherited(let socket) = address.kind else { Issue.record("not inherited"); return }
        #expect { try sockets.take(socket, for: address) } throws: { error in
            (error as? ClusterError)?.context.contains(message) == true
        }
    }

    @Test func withoutPassedSocketsTheErrorSaysHowToPassThem() {
        let sockets = InheritedSockets(pid: 77, listenPID: nil, count: nil, names: nil)
        #expect { try sockets.take(.name("web"), for: .inherited(named: "web")) } throws: { error in
            (error as? ClusterError)?.context.contains("LISTEN_FDS is not set") == true
        }
    }
}
