import CClusterShims
import Cluster
import Foundation
import Synchronization

/// Everything a worker's program starts ends with it.
///
/// A program may start processes of its own (gunicorn's and nginx's workers, a shell's
/// commands) and may die before them; left alone they would be reparented to init and go
/// on serving on the cluster's socket after a crash, a drain or `cluster stop`. Three
/// layers keep them inside the worker:
/// - **A subreaper per worker.** The worker is a child subreaper, so every orphan below it
///   becomes its child, and the process tree of `/proc` is the program's whole tree. When
///   the program ends, for whatever reason, the worker kills what is left
///   (``ProcessTree/killDescendants(of:within:)``) before it ends the same way.
/// - **The worker's own end.** A worker told to end by a signal (TERM, INT, HUP, QUIT)
///   kills the tree first. The primary's death is one of them: the primary starts these
///   workers with `CLUSTER_DEATH_SIGNAL=15`, so the kernel's parent-death signal is TERM
///   instead of the SIGKILL library workers get.
/// - **The primary.** A worker that is SIGKILLed (a drain or boot deadline) cannot clean
///   up: its program gets SIGKILL from the kernel (`PR_SET_PDEATHSIG`), and the primary,
///   seeing the worker gone, kills the program's process group, which the program's own
///   workers belong to unless they left it (``ProgramGroups``).
enum TreeGuard {
    /// Signals that end this worker after it killed its tree.
    static let endingSignals: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT]

    /// Makes this worker the subreaper of its program's tree and makes every ending signal
    /// (the primary's death among them) kill the tree first.
    static func install() throws {
        guard cluster_become_subreaper() == 0 else {
            throw CommandError("cannot become the subreaper of the program's processes: \(String(cString: strerror(errno)))")
        }
        var ends: [Int32] = [0, 0]
        guard pipe(&ends) == 0 else {
            throw CommandError("cannot make the worker's signal pipe: \(String(cString: strerror(errno)))")
        }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        for signal in endingSignals { _ = cluster_signal_forward(signal, ends[1]) }
        Thread.detachNewThread { [read = ends[0]] in
            var signal: UInt8 = 0
            while Glibc.read(read, &signal, 1) < 0 && errno == EINTR {}
            ProcessTree.killDescendants(of: getpid())
            ProgramWorker.exit(like: Int32(signal)) // the wait status of a death by that signal
        }
    }

    /// Waits for `program`, this worker's child, reaping the orphans that come to this
    /// worker meanwhile; then kills what is left of the tree and returns the program's
    /// wait status.
    static func wait(for program: Int32) -> Int32 {
        var status: Int32 = 0
        while true {
            let reaped = waitpid(-1, &status, 0)
            if reaped == program { break }
            if reaped < 0 && errno != EINTR { break } // ECHILD: nothing left to wait for
        }
        let killed = ProcessTree.killDescendants(of: getpid())
        if killed > 0 { say("the program (pid \(program)) ended and left \(killed) \(killed == 1 ? "process" : "processes"); killed") }
        return status
    }
}

/// The primary's record of each worker's program: for `status` and `signal`, and to kill
/// the program's process group when the worker ends without having done it (SIGKILLed at
/// a deadline).
final class ProgramGroups: Sendable {
    private let programs = Mutex<[Int: Int32]>([:])

    /// Worker `worker` runs `program`, the leader of its own process group.
    func record(_ program: Int32, of worker: Int) { programs.withLock { $0[worker] = program } }

    /// The program worker `worker` runs, while it runs.
    func program(of worker: Int) -> Int32? { programs.withLock { $0[worker] } }

    /// Worker `worker` has ended: SIGKILL to whatever is left in its program's group.
    func ended(_ worker: Int) {
        guard let program = programs.withLock({ $0.removeValue(forKey: worker) }) else { return }
        Self.killGroup(program)
    }

    /// The primary ends: SIGKILL to every program group still recorded.
    func endAll() {
        for program in programs.withLock({ $0.values }) { Self.killGroup(program) }
    }

    private static func killGroup(_ program: Int32) {
        // A program's pid is its group's id (it starts in a session of its own). The group
        // outlives the program while any member lives; when none does, this is ESRCH.
        guard program > 1 else { return }
        kill(-program, SIGKILL)
    }
}
