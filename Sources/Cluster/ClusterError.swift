#if canImport(Glibc)
import Glibc
#endif

/// An error from swift-cluster: what happened (`code`), to what (`context`), the operating
/// system's errno when a system call failed, and in `description` what to do about it.
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

        /// A system call failed; `errno` says why.
        public static func systemCall(_ name: String) -> Code { Code(storage: .systemCall(name)) }
        /// A message is larger than ``Channel/maximumMessageSize``.
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

    init(_ code: Code, errno: Int32? = nil, _ context: String) {
        self.code = code
        self.errno = errno
        self.context = context
    }

    public var description: String {
        var text = "\(code): \(context)"
        if let errno { text += " (errno \(errno): \(String(cString: strerror(errno))))" }
        return text
    }
}
