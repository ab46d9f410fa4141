import Foundation
import Synchronization
import Vapor

/// The `Date` header's value (RFC 1123), formatted at most once a second, as Vapor's own
/// server caches it.
final class ResponseDate: Sendable {
    private let cache = Mutex<(second: Int, text: String)>((-1, ""))

    /// The current time, such as `Sun, 06 Nov 1994 08:49:37 GMT`.
    var now: String {
        let second = Int(Date().timeIntervalSince1970)
        return cache.withLock { cache in
            if cache.second != second { cache = (second, Date(timeIntervalSince1970: Double(second)).rfc1123) }
            return cache.text
        }
    }
}
