public import NIOCore

/// Entry points for the fuzz targets in `Fuzz/` and the differential tests, which may be
/// built in release mode where `@testable` is unavailable. Not API: no stability promised.
@_spi(Fuzzing) public enum HTTPFuzzing {
    /// The handler `ClusterWorker.serveHTTP(_:group:maxConnections:limits:responder:)`
    /// puts first on each connection, which parses requests itself or hands them to
    /// SwiftNIO's HTTP/1 pipeline.
    public static func leanHandler(limits: HTTPServerLimits, responder: @escaping ClusterHTTPResponder) -> any ChannelHandler {
        LeanHTTPHandler(limits: limits, responder: responder)
    }
}
