import CClusterShims
#if canImport(Glibc)
import Glibc
#endif

/// What to start and what it inherits.
struct SpawnRequest {
    var executable: String
    /// argv, including argv[0].
    var arguments: [String]
    var environment: [String: String]
    var workingDirectory: String?
    /// The child's descriptor `target` is the parent's `source`; nothing else above 2 is passed.
    var descriptors: [(source: Int32, target: Int32)]
}

enum Spawn {
    /// Starts the process with posix_spawn; returns its pid and a pidfd for it.
    /// Call on the I/O thread: `PR_SET_PDEATHSIG` in the child follows this thread's life.
    static func start(_ request: SpawnRequest) throws(ClusterError) -> (pid: pid_t, pidfd: Int32) {
        var pid: pid_t = 0
        let sources = request.descriptors.map(\.source)
        let targets = request.descriptors.map(\.target)
        let argv = request.arguments.map { strdup($0) } + [nil]
        let envp = request.environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let error = sources.withUnsafeBufferPointer { sources in
            targets.withUnsafeBufferPointer { targets in
                cluster_spawn(request.executable, argv, envp, sources.baseAddress, targets.baseAddress,
                              Int32(sources.count), request.workingDirectory, &pid)
            }
        }
        guard error == 0 else {
            throw ClusterError(.systemCall("posix_spawn"), errno: error,
                               "cannot start '\(request.executable)'" + (error == ENOENT ? ": no such file; check the executable path" : ""))
        }
        do {
            return (pid, try Syscall.pidfdOpen(pid))
        } catch {
            // Without a pidfd we cannot reap it; do not leave it running unsupervised.
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
            throw error
        }
    }

    /// The environment this process started with (CLUSTER_* variables already removed).
    static func currentEnvironment() -> [String: String] {
        var result: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            if let equals = text.firstIndex(of: "=") {
                result[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            entry += 1
        }
        return result
    }

    /// The path of the running executable, so a replaced binary is picked up by new workers.
    static func currentExecutable() -> String {
        let link = Syscall.readLink("/proc/self/exe") ?? CommandLine.arguments[0]
        return link.hasSuffix(" (deleted)") ? String(link.dropLast(10)) : link
    }

    /// Numeric user and group ids for names or numbers.
    static func resolve(user: String?, group: String?) throws(ClusterError) -> (uid: uid_t?, gid: gid_t?) {
        var uid: uid_t?
        var gid: gid_t?
        if let user {
            if let number = uid_t(user) { uid = number } else if let entry = getpwnam(user) {
                uid = entry.pointee.pw_uid
                if group == nil { gid = entry.pointee.pw_gid }
            } else {
                throw ClusterError(.invalidConfiguration, "no user named '\(user)' exists; give a user name from /etc/passwd or a number")
            }
        }
        if let group {
            if let number = gid_t(group) { gid = number } else if let entry = getgrnam(group) {
                gid = entry.pointee.gr_gid
            } else {
                throw ClusterError(.invalidConfiguration, "no group named '\(group)' exists; give a group name from /etc/group or a number")
            }
        }
        return (uid, gid)
    }
}
