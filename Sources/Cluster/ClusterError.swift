#if canImport(Glibc)
import Glibc
#endif

/// An error from swift-cluster: what happened (`code`), to what (`context`), the operating
/// system's errno when a system call failed, and in `description` what to do about it.
///
/// A failed system call carries what Node puts on its errors: `errno` (Node's `err.errno`,
/// here positive as Linux gives it: 98 where Node says -98), ``errnoName`` (Node's
/// `err.code`, "EADDRINUSE"), ``systemCall`` (`err.syscall`, "bind") and, for a listener,
/// ``address`` (`err.address` and `err.port`). A worker's `listener(_:)` that the primary
/// could not bind gets them too, across the channel:
///
/// ```swift
/// do {
///     _ = try await worker.listener(.tcp(port: 8000))
/// } catch let error where error.errnoName == "EADDRINUSE" {   // or error.errno == EADDRINUSE
///     print("port \(error.port ?? 0) is taken (\(error.systemCall ?? "?"))")
/// }
/// ```
public struct ClusterError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, as a value a program can switch over.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Storage: Hashable, Sendable {
            case systemCall(String)
            case messageTooLarge
            case malformedFrame
            case channelClosed
            case channelFull
            case timeout
            case remoteError
            case notAWorker
            case notThePrimary
            case noSuchWorker
            case invalidAddress
            case invalidConfiguration
            case decoding
        }
        let storage: Storage

        init(storage: Storage) { self.storage = storage }

        /// A system call failed; `errno` says why.
        public static func systemCall(_ name: String) -> Code { Code(storage: .systemCall(name)) }
        /// A message is larger than the channel allows (64 MiB).
        public static let messageTooLarge = Code(storage: .messageTooLarge)
        /// The peer sent bytes that are not a valid frame.
        public static let malformedFrame = Code(storage: .malformedFrame)
        /// The channel to the peer is closed: it exited or disconnected.
        public static let channelClosed = Code(storage: .channelClosed)
        /// The outgoing queue is full and the caller asked not to wait.
        public static let channelFull = Code(storage: .channelFull)
        /// A request got no reply in time.
        public static let timeout = Code(storage: .timeout)
        /// The peer answered a request with an error.
        public static let remoteError = Code(storage: .remoteError)
        /// A worker-only API was used in the primary.
        public static let notAWorker = Code(storage: .notAWorker)
        /// A primary-only API was used in a worker.
        public static let notThePrimary = Code(storage: .notThePrimary)
        /// No live worker has that id.
        public static let noSuchWorker = Code(storage: .noSuchWorker)
        /// A listen address could not be parsed or bound.
        public static let invalidAddress = Code(storage: .invalidAddress)
        /// An option or environment variable has a value that cannot work.
        public static let invalidConfiguration = Code(storage: .invalidConfiguration)
        /// A message could not be decoded as the requested type.
        public static let decoding = Code(storage: .decoding)

        /// The code's name, as it crosses the channel ("invalidAddress"); a system call's is
        /// "systemCall" (its name travels apart).
        var name: String {
            switch storage {
            case .systemCall: "systemCall"
            case .messageTooLarge: "messageTooLarge"
            case .malformedFrame: "malformedFrame"
            case .channelClosed: "channelClosed"
            case .channelFull: "channelFull"
            case .timeout: "timeout"
            case .remoteError: "remoteError"
            case .notAWorker: "notAWorker"
            case .notThePrimary: "notThePrimary"
            case .noSuchWorker: "noSuchWorker"
            case .invalidAddress: "invalidAddress"
            case .invalidConfiguration: "invalidConfiguration"
            case .decoding: "decoding"
            }
        }

        /// The code `name` names, with `systemCall` for a system call's; nil for a name this
        /// runtime does not know (a newer peer's).
        init?(name: String, systemCall: String?) {
            let all: [Code] = [.messageTooLarge, .malformedFrame, .channelClosed, .channelFull, .timeout, .remoteError,
                               .notAWorker, .notThePrimary, .noSuchWorker, .invalidAddress, .invalidConfiguration, .decoding]
            if name == "systemCall" {
                guard let systemCall else { return nil }
                self = .systemCall(systemCall)
            } else if let code = all.first(where: { $0.name == name }) {
                self = code
            } else {
                return nil
            }
        }

        public var description: String {
            switch storage {
            case .systemCall(let name): "\(name) failed"
            case .messageTooLarge: "message too large"
            case .malformedFrame: "malformed frame"
            case .channelClosed: "channel closed"
            case .channelFull: "channel full"
            case .timeout: "timed out"
            case .remoteError: "remote error"
            case .notAWorker: "not a worker"
            case .notThePrimary: "not the primary"
            case .noSuchWorker: "no such worker"
            case .invalidAddress: "invalid address"
            case .invalidConfiguration: "invalid configuration"
            case .decoding: "decoding failed"
            }
        }
    }

    /// What went wrong.
    public let code: Code
    /// The errno of the failed system call, when there was one.
    public let errno: Int32?
    /// What it happened to, and what to do about it.
    public let context: String
    /// The listener the failure concerns, when there is one (Node's `err.address` and
    /// `err.port`): the address a `bind` was refused.
    public let address: ListenAddress?
    private let call: String?

    package init(_ code: Code, errno: Int32? = nil, systemCall: String? = nil, address: ListenAddress? = nil, _ context: String) {
        self.code = code
        self.errno = errno
        self.call = systemCall
        self.address = address
        self.context = context
    }

    /// The system call that failed (Node's `err.syscall`): "bind", "listen", "socket", …;
    /// nil when the error did not come from one.
    public var systemCall: String? {
        if let call { return call }
        if case .systemCall(let name) = code.storage { return name }
        return nil
    }

    /// The symbolic name of ``errno`` (Node's `err.code`): "EADDRINUSE", "EACCES", …; nil
    /// without an errno or for a number Linux does not name.
    public var errnoName: String? { errno.flatMap(ClusterError.errnoName) }

    /// The port of ``address`` (Node's `err.port`), for a TCP listener.
    public var port: Int? { address?.port }

    /// The same error about `address` (kept when it already names one).
    func about(_ address: ListenAddress) -> ClusterError {
        ClusterError(code, errno: errno, systemCall: call, address: self.address ?? address, context)
    }

    /// Linux's symbolic name for `number` ("EADDRINUSE" for 98), as libuv and Node spell it;
    /// nil for a number Linux does not name.
    public static func errnoName(_ number: Int32) -> String? {
        guard number > 0, Int(number) < errnoNames.count, !errnoNames[Int(number)].isEmpty else { return nil }
        return errnoNames[Int(number)]
    }

    /// Linux's errno names by number (asm-generic; EWOULDBLOCK is EAGAIN, EDEADLOCK is EDEADLK).
    private static let errnoNames: [String] = [
        "", "EPERM", "ENOENT", "ESRCH", "EINTR", "EIO", "ENXIO", "E2BIG", "ENOEXEC", "EBADF", "ECHILD",
        "EAGAIN", "ENOMEM", "EACCES", "EFAULT", "ENOTBLK", "EBUSY", "EEXIST", "EXDEV", "ENODEV", "ENOTDIR",
        "EISDIR", "EINVAL", "ENFILE", "EMFILE", "ENOTTY", "ETXTBSY", "EFBIG", "ENOSPC", "ESPIPE", "EROFS",
        "EMLINK", "EPIPE", "EDOM", "ERANGE", "EDEADLK", "ENAMETOOLONG", "ENOLCK", "ENOSYS", "ENOTEMPTY",
        "ELOOP", "", "ENOMSG", "EIDRM", "ECHRNG", "EL2NSYNC", "EL3HLT", "EL3RST", "ELNRNG", "EUNATCH",
        "ENOCSI", "EL2HLT", "EBADE", "EBADR", "EXFULL", "ENOANO", "EBADRQC", "EBADSLT", "", "EBFONT",
        "ENOSTR", "ENODATA", "ETIME", "ENOSR", "ENONET", "ENOPKG", "EREMOTE", "ENOLINK", "EADV", "ESRMNT",
        "ECOMM", "EPROTO", "EMULTIHOP", "EDOTDOT", "EBADMSG", "EOVERFLOW", "ENOTUNIQ", "EBADFD", "EREMCHG",
        "ELIBACC", "ELIBBAD", "ELIBSCN", "ELIBMAX", "ELIBEXEC", "EILSEQ", "ERESTART", "ESTRPIPE", "EUSERS",
        "ENOTSOCK", "EDESTADDRREQ", "EMSGSIZE", "EPROTOTYPE", "ENOPROTOOPT", "EPROTONOSUPPORT",
        "ESOCKTNOSUPPORT", "EOPNOTSUPP", "EPFNOSUPPORT", "EAFNOSUPPORT", "EADDRINUSE", "EADDRNOTAVAIL",
        "ENETDOWN", "ENETUNREACH", "ENETRESET", "ECONNABORTED", "ECONNRESET", "ENOBUFS", "EISCONN",
        "ENOTCONN", "ESHUTDOWN", "ETOOMANYREFS", "ETIMEDOUT", "ECONNREFUSED", "EHOSTDOWN", "EHOSTUNREACH",
        "EALREADY", "EINPROGRESS", "ESTALE", "EUCLEAN", "ENOTNAM", "ENAVAIL", "EISNAM", "EREMOTEIO", "EDQUOT",
        "ENOMEDIUM", "EMEDIUMTYPE", "ECANCELED", "ENOKEY", "EKEYEXPIRED", "EKEYREVOKED", "EKEYREJECTED",
        "EOWNERDEAD", "ENOTRECOVERABLE", "ERFKILL", "EHWPOISON",
    ]

    public var description: String {
        var text = "\(code): \(context)"
        if let errno { text += " (errno \(errno): \(String(cString: strerror(errno))))" }
        return text
    }
}
