import CClusterShims
#if canImport(Glibc)
import Glibc
#endif

/// The host's idle CPU fraction between one call of ``sample()`` and the next.
struct HostIdleSampler {
    private var last: (total: UInt64, idle: UInt64)?

    /// The fraction (0...1) of all CPUs' time spent idle since the previous sample; nil
    /// on the first call or when /proc/stat cannot be read.
    mutating func sample() -> Double? {
        guard let now = Host.cpuTimes() else { return nil }
        defer { last = now }
        guard let last, now.total > last.total else { return nil }
        return Double(now.idle &- last.idle) / Double(now.total - last.total)
    }
}

/// Figures about the machine, from /proc.
enum Host {
    /// `MemAvailable` from /proc/meminfo, in bytes; nil when it cannot be read.
    static func memoryAvailable() -> Int? {
        guard let text = read("/proc/meminfo") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let fields = line.split(separator: " ")
            return fields.count >= 2 ? Int(fields[1]).map { $0 * 1024 } : nil
        }
        return nil
    }

    /// The 1-minute load average; 0 when it cannot be read.
    static func loadAverage() -> Double {
        read("/proc/loadavg").flatMap { $0.split(separator: " ").first }.flatMap { Double($0) } ?? 0
    }

    /// The host's CPU time so far, from the first line of /proc/stat: all of it and the
    /// idle part (idle and iowait), in clock ticks; nil when it cannot be read.
    static func cpuTimes() -> (total: UInt64, idle: UInt64)? {
        guard let line = read("/proc/stat")?.split(separator: "\n").first, line.hasPrefix("cpu ") else { return nil }
        let ticks = line.split(separator: " ").dropFirst().prefix(8).compactMap { UInt64($0) }
        guard ticks.count >= 5 else { return nil }
        return (ticks.reduce(0, +), ticks[3] + ticks[4])
    }

    /// The soft limit on open descriptors (`RLIMIT_NOFILE`); nil when unlimited or unknown.
    static var openFileLimit: Int? {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return nil }
        return Int(clamping: limit.rlim_cur)
    }

    /// The whole text of a small file such as one under /proc, or nil when it cannot be read.
    static func read(_ path: String) -> String? {
        guard let file = fopen(path, "re") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count <= 0 { break }
            bytes += buffer[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
