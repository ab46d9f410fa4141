/// Which listeners a worker may have the primary bind for it (a worker's
/// `listener(_:)` for an address the primary does not hold yet).
///
/// A worker is not trusted: left alone it could make the primary bind without end, or, when
/// the primary runs as root and the workers as another user (``PrimarySettings/user``),
/// bind privileged ports and create sockets where that user may not. Listeners the
/// primary already holds are always granted.
public struct ListenRequests: Sendable, Hashable {
    enum Mode: Sendable, Hashable {
        case upTo(Int)
        case configuredOnly
    }
    let mode: Mode

    /// Workers may have new listeners bound until the primary holds `limit` in all. With
    /// ``PrimarySettings/user`` set, a new TCP port below 1024 or a new Unix socket path is
    /// refused: the workers' user could not bind it itself.
    public static func upTo(_ limit: Int) -> ListenRequests { ListenRequests(mode: .upTo(max(0, limit))) }
    /// Workers get only the listeners the primary bound itself (``Primary/listen(_:distribution:)``).
    public static let configuredOnly = ListenRequests(mode: .configuredOnly)
    /// The default: up to 64 listeners.
    public static let `default` = upTo(64)

    /// Why a worker may not have `address` bound, given how many listeners the primary
    /// holds and whether workers run as another user; nil when it may.
    func refusal(of address: ListenAddress, holding count: Int, workersSwitchUser: Bool) -> String? {
        switch mode {
        case .configuredOnly:
            return "the primary grants only the listeners it was configured with, and \(address) is not one; bind it in the primary with listen(_:)"
        case .upTo(let limit):
            if count >= limit {
                return "the primary already holds \(count) listeners, the most workers may request (ListenRequests.upTo(\(limit)))"
            }
            guard workersSwitchUser else { return nil }
            if address.path != nil {
                return "workers run as another user and may not have the primary create a Unix socket at \(address); bind it in the primary with listen(_:)"
            }
            if let port = address.port, port > 0, port < 1024 {
                return "workers run as another user and may not have the primary bind privileged port \(port); bind it in the primary with listen(_:)"
            }
            return nil
        }
    }
}
