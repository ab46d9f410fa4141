import CClusterShims
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Resource limits set on every worker as it starts (soft and hard alike), so one worker
/// cannot exhaust the host: a leak hits its own address-space limit, a runaway its CPU limit.
public struct ResourceLimits: Sendable, Hashable {
    /// Open descriptors (`RLIMIT_NOFILE`).
    public var openFiles: Int?
    /// Address space in bytes (`RLIMIT_AS`); allocations beyond it fail.
    public var addressSpace: Int?
    /// CPU seconds (`RLIMIT_CPU`); the kernel sends SIGXCPU, then SIGKILL.
    public var cpuSeconds: Int?

    /// Limits; nil leaves the primary's own.
    public init(openFiles: Int? = nil, addressSpace: Int? = nil, cpuSeconds: Int? = nil) {
        self.openFiles = openFiles
        self.addressSpace = addressSpace
        self.cpuSeconds = cpuSeconds
    }

    /// Sets the limits on `pid` (just spawned). A limit the kernel refuses is logged, and the
    /// worker runs with the primary's.
    func apply(to pid: Int32, logger: Logger) {
        let limits: [(String, Int32, Int?)] = [
            ("open files", Int32(RLIMIT_NOFILE.rawValue), openFiles),
            ("address space", Int32(RLIMIT_AS.rawValue), addressSpace),
            ("CPU seconds", Int32(RLIMIT_CPU.rawValue), cpuSeconds),
        ]
        for (name, resource, value) in limits {
            guard let value else { continue }
            if cluster_set_limit(pid, resource, UInt64(max(0, value))) != 0 {
                logger.error("could not limit \(name) of pid \(pid) to \(value): \(String(cString: strerror(errno))); it runs with the primary's limit")
            }
        }
    }
}
