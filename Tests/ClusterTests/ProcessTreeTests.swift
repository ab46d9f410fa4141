@testable import Cluster
import Foundation
import Testing

/// `ProcessTree` against real processes: a shell with two children of its own.
@Suite struct ProcessTreeTests {
    @Test func statFieldsCountFromTheLastParenthesis() throws {
        // A command name may hold spaces and parentheses.
        let fields = try #require(Proc.statFields("42 (a (b) c) S 7 42 42 0 -1"))
        #expect(fields.prefix(3) == ["S", "7", "42"])
        #expect(Proc.statFields("no command here") == nil)
    }

    @Test func aShellsChildrenAreItsDescendantsAndAreKilledWithIt() async throws {
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/sh")
        // Two sleeps in the background, then the shell waits: a tree of three.
        shell.arguments = ["-c", "sleep 60 & sleep 60 & echo started; wait"]
        let output = Pipe()
        shell.standardOutput = output
        try shell.run()
        defer { if shell.isRunning { kill(shell.processIdentifier, SIGKILL) } }
        _ = output.fileHandleForReading.availableData // "started": both sleeps exist
        let root = shell.processIdentifier
        let below = ProcessTree.descendants(of: root)
        #expect(below.count == 2, "\(below)")
        #expect(ProcessTree.children(of: root).sorted() == below.sorted())

        let usage = try #require(ProcessTree.usage(of: root))
        #expect(usage.residentBytes > 0 && usage.cpuMicroseconds >= 0)
        #expect(ProcessTree.usage(of: -5) == nil)

        #expect(ProcessTree.killDescendants(of: root, within: .milliseconds(200)) == 2)
        // Dead: gone, or zombies until the shell reaps them.
        for pid in below {
            let stat = Proc.read("/proc/\(pid)/stat").flatMap(Proc.statFields)
            #expect(stat == nil || stat?.first == "Z", "\(pid) is still running: \(stat ?? [])")
        }
        kill(root, SIGKILL)
        shell.waitUntilExit()
    }
}
