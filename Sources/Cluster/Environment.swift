import CClusterShims
#if canImport(Glibc)
import Glibc
#endif

extension Cluster {
    /// The CPUs this process may run on (its affinity mask, so `taskset` is honoured):
    /// the default number of workers, one per core.
    public static var availableCores: Int { Int(cluster_cpu_count()) }

    /// Reads the distribution strategy from the environment variable `name` (default
    /// `DISTRIBUTION`): `shared`, `reusePort`, `roundRobin`, `leastConnections` or `sticky`.
    /// Returns `defaultValue` when it is unset or empty; throws an error naming the
    /// variable, the value and the choices otherwise.
    public static func environmentDistribution(_ name: String = "DISTRIBUTION", default defaultValue: Distribution = .leastConnections) throws(ClusterError) -> Distribution {
        guard let text = environmentValue(name) else { return defaultValue }
        do {
            return try Distribution(parsing: text)
        } catch {
            throw ClusterError(.invalidConfiguration, "\(name)=\(text) is not a distribution; use one of \(Distribution.all.map(\.description).joined(separator: ", ")), or unset it for the default (\(defaultValue))")
        }
    }

    /// The environment variable `name`, or nil when it is unset or empty.
    public static func environmentValue(_ name: String) -> String? {
        guard let text = getenv(name).map({ String(cString: $0) }), !text.isEmpty else { return nil }
        return text
    }

    /// Reads an integer setting from the environment, such as `PORT` or `WORKERS`.
    ///
    /// Returns `defaultValue` when the variable is unset or empty; throws an error that
    /// names the variable, the value and the accepted range otherwise.
    public static func environmentInteger(_ name: String, default defaultValue: Int, in range: ClosedRange<Int>) throws(ClusterError) -> Int {
        guard let text = environmentValue(name) else { return defaultValue }
        guard let value = Int(text), range.contains(value) else {
            throw ClusterError(.invalidConfiguration, "\(name)=\(text) is not a whole number from \(range.lowerBound) to \(range.upperBound); unset it for the default (\(defaultValue))")
        }
        return value
    }
}
