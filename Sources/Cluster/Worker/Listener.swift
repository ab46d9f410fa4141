/// A listening socket the primary owns and this worker accepts on.
public struct Listener: Sendable, CustomStringConvertible {
    /// The address the worker asked for.
    public let address: ListenAddress
    /// The address bound (the chosen port when the request said port 0).
    public let boundAddress: ListenAddress
    /// The descriptor; the runtime owns it. An adopter that closes what it adopts (SwiftNIO
    /// does) should adopt ``duplicateDescriptor()`` instead.
    public let descriptor: Int32

    /// A new close-on-exec descriptor for the same socket, owned by the caller.
    public func duplicateDescriptor() throws(ClusterError) -> Int32 {
        try Syscall.duplicate(descriptor)
    }

    public var description: String { "\(boundAddress) (fd \(descriptor))" }
}
