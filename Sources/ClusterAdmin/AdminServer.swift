public import Cluster
import ClusterNIO
import Metrics
public import NIOCore
import NIOHTTP1
public import Prometheus

/// The primary's admin listener, for operators and orchestrators:
///
/// - `GET /metrics`: every metric in the Prometheus text format (the cluster's own,
///   which the primary and a `Supervisor` publish every second, any the primary's program
///   records through swift-metrics, and what workers record once they bootstrapped
///   `ClusterWorker.bootstrapMetrics()`, labelled by slot);
/// - `GET /healthz`: 200 while the primary runs;
/// - `GET /readyz`: 200 when at least one worker is ready to serve, 503 otherwise, and 503
///   `not ready: draining` from the moment the cluster begins to drain (SIGTERM, a stop,
///   `Primary.disconnect(timeout:)`; see `Primary.isDraining`), while the connections
///   already open are still served: an orchestrator takes the instance out of its load
///   balancer before they close. With a `Supervisor` given, a degraded cluster (workers
///   keep failing to boot while others serve) still answers 200 while any worker serves,
///   and the body says `degraded:` and why; the metric `cluster_degraded` is 1 meanwhile.
///
/// ```swift
/// let registry = AdminServer.bootstrapMetrics()        // once, before anything records
/// let admin = try await AdminServer.start(on: .tcp(host: "127.0.0.1", port: 9090),
///                                         primary: primary, supervisor: supervisor, registry: registry)
/// ```
public enum AdminServer {
    /// Makes swift-metrics record into a new Prometheus registry and returns it. Call once
    /// per process, before any metric is created (swift-metrics allows one bootstrap).
    public static func bootstrapMetrics() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }

    /// Serves the admin endpoints on `address` in the background. Close the returned
    /// channel to stop; its `localAddress` has the port chosen for port 0. Pass the
    /// `supervisor` for `/readyz` to report a degraded cluster.
    public static func start(on address: ListenAddress, primary: Primary, supervisor: Supervisor? = nil,
                             registry: PrometheusCollectorRegistry) async throws -> any Channel {
        try await StandaloneHTTPServer.bind(address) { request, loop in
            loop.makeSucceededFuture(respond(to: request, primary: primary, supervisor: supervisor, registry: registry))
        }
    }

    static func respond(to request: ClusterHTTPRequest, primary: Primary, supervisor: Supervisor?,
                        registry: PrometheusCollectorRegistry) -> ClusterHTTPResponse {
        let path = request.head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? "/"
        guard request.head.method == .GET || request.head.method == .HEAD else {
            return ClusterHTTPResponse(status: .methodNotAllowed, body: "only GET and HEAD\n")
        }
        switch path {
        case "/metrics":
            let buffer = ByteBuffer(string: primary.metricsExposition(mergingWorkersInto: registry.emitToString()))
            return ClusterHTTPResponse(headers: ["Content-Type": "text/plain; version=0.0.4; charset=utf-8"], body: buffer)
        case "/healthz":
            return ClusterHTTPResponse(body: "ok\n")
        case "/readyz":
            guard !primary.isDraining else {
                return ClusterHTTPResponse(status: .serviceUnavailable, body: "not ready: draining\n")
            }
            let ready = primary.workers.values.filter { $0.state == .listening }.count
            let degraded = supervisor?.degradation.map { "degraded: \($0)\n" } ?? ""
            return ready > 0
                ? ClusterHTTPResponse(body: "ready: \(ready) workers\n" + degraded)
                : ClusterHTTPResponse(status: .serviceUnavailable, body: "not ready: no worker is ready to serve\n" + degraded)
        default:
            return ClusterHTTPResponse(status: .notFound, body: "not found: try /metrics, /healthz or /readyz\n")
        }
    }
}

extension AdminServer {
    /// For the examples: when the environment variable `ADMIN_PORT` is set, bootstraps
    /// metrics and serves the admin endpoints on that port (all interfaces; `ADMIN_HOST`
    /// overrides). Returns the channel, or nil when the variable is not set.
    @discardableResult
    public static func startFromEnvironment(primary: Primary, supervisor: Supervisor? = nil) async throws -> (any Channel)? {
        guard Cluster.environmentValue("ADMIN_PORT") != nil else { return nil }
        let port = try Cluster.environmentInteger("ADMIN_PORT", default: 0, in: 0...65535)
        let host = Cluster.environmentValue("ADMIN_HOST") ?? "0.0.0.0"
        return try await start(on: .tcp(host: host, port: port), primary: primary, supervisor: supervisor,
                               registry: bootstrapMetrics())
    }
}
