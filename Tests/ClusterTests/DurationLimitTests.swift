@testable import Cluster
import Foundation
import Synchronization
import Testing

/// Any `Duration` the library is given becomes a timer or a deadline without a trap: too
/// long saturates, negative is zero. And a Unix listener takes only a stale socket's path.
@Suite struct DurationLimitTests {
    static let huge = Duration(secondsComponent: .max, attosecondsComponent: 999_999_999_999_999_999)
    static let hugeNegative = Duration(secondsComponent: .min, attosecondsComponent: 0)

    @Test func conversionsSaturateAtTheirLimitsAndNeverTrap() {
        #expect(Duration.milliseconds(1500).saturatingNanoseconds == 1_500_000_000)
        #expect(Duration.milliseconds(1500).saturatingMicroseconds == 1_500_000)
        #expect(Duration.microseconds(1500).saturatingMilliseconds == 2, "a wait rounds up, never to a busy poll")
        #expect(Self.huge.saturatingNanoseconds == .max)
        #expect(Self.huge.saturatingMicroseconds == .max)
        #expect(Self.huge.saturatingMilliseconds == .max)
        #expect(Duration.seconds(9_000_000_000_000).saturatingNanoseconds == .max, "9e12 s is past UInt64 nanoseconds")
        #expect(Self.hugeNegative.saturatingNanoseconds == 0)
        #expect(Self.hugeNegative.saturatingMicroseconds == 0)
        #expect(Self.hugeNegative.saturatingMilliseconds == 0)
        #expect(Self.huge.asTimerDelay == .distantFuture)
        #expect(Self.hugeNegative.asTimerDelay == .zero)
        #expect(Duration.seconds(30).asTimerDelay == .seconds(30))
        #expect(ContinuousClock.now + Self.huge.asTimerDelay > ContinuousClock.now + .seconds(3_000_000_000))
    }

    @Test func aTimerOfAnAbsurdDelayIsArmedWithoutATrapAndLeavesShorterTimersFiring() async throws {
        let loop = IOLoop.shared
        let never = loop.schedule(after: Self.huge) { Issue.record("a timer of Int64.max seconds fired") }
        let negative = Mutex(false)
        loop.schedule(after: Self.hugeNegative) { negative.withLock { $0 = true } }
        let fired = Mutex(false)
        loop.schedule(after: .milliseconds(20)) { fired.withLock { $0 = true } }
        let deadline = ContinuousClock.now + .seconds(10)
        while !(fired.withLock { $0 } && negative.withLock { $0 }), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(5))
        }
        loop.cancelTimer(never)
        #expect(fired.withLock { $0 }, "a 20 ms timer armed after an endless one fired")
        #expect(negative.withLock { $0 }, "a negative delay fires at once")
    }
}

/// `Socket.removeStaleSocket`, which every Unix listener and the control socket go through.
@Suite struct StaleSocketTests {
    static func path(_ name: String) -> String {
        NSTemporaryDirectory() + "stale-\(getpid())-\(name)-\(UInt32.random(in: 0...UInt32.max)).sock"
    }

    /// A Unix socket bound at `path` by the library: listening (live), or closed at once
    /// (a stale file: closing a socket leaves its file).
    static func bindSocket(_ path: String, listening: Bool) throws -> Int32 {
        let (fd, _) = try Socket.listen(.unix(path))
        if !listening { close(fd) }
        return fd
    }

    static func inode(_ path: String) -> UInt? {
        var info = stat()
        return lstat(path, &info) == 0 ? UInt(info.st_ino) : nil
    }

    @Test func aStaleSocketIsRemovedAndNothingAtThePathIsFine() throws {
        let path = Self.path("stale")
        _ = try Self.bindSocket(path, listening: false)
        #expect(Self.inode(path) != nil)
        try Socket.removeStaleSocket(at: path, for: "the test")
        #expect(Self.inode(path) == nil, "the stale socket file is gone")
        try Socket.removeStaleSocket(at: path, for: "the test")
    }

    @Test func aLiveSocketARegularFileAndADirectoryAreLeftAsTheyAreWithAnError() throws {
        let live = Self.path("live")
        let fd = try Self.bindSocket(live, listening: true)
        defer { close(fd); unlink(live) }
        let liveInode = Self.inode(live)
        #expect { try Socket.removeStaleSocket(at: live, for: "the test") } throws: { error in
            "\(error)".contains("a process is listening on the socket \(live); it is left as it is")
        }
        #expect(Self.inode(live) == liveInode)

        let file = Self.path("file")
        try "keep me".write(toFile: file, atomically: false, encoding: .utf8)
        defer { unlink(file) }
        #expect { try Socket.removeStaleSocket(at: file, for: "the test") } throws: { error in
            "\(error)".contains("\(file) is a regular file, not a socket; it is left as it is")
        }
        #expect(try String(contentsOfFile: file, encoding: .utf8) == "keep me")

        #expect { try Socket.removeStaleSocket(at: NSTemporaryDirectory(), for: "the test") } throws: { error in
            "\(error)".contains("is a directory")
        }
    }

    @Test func aUnixListenerTakesAStalePathButNotALiveOne() throws {
        let path = Self.path("listener")
        _ = try Self.bindSocket(path, listening: false)
        let (fd, _) = try Socket.listen(.unix(path))
        defer { close(fd); unlink(path) }
        #expect { try Socket.listen(.unix(path)) } throws: { error in
            "\(error)".contains("a process is listening on the socket \(path)")
        }
    }
}
