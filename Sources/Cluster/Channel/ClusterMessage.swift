import ClusterJSON
import Synchronization

/// A message received over a channel: bytes, any descriptors that came with it, and a way
/// to answer when the sender used `request`.
public struct ClusterMessage: Sendable {
    /// The payload.
    public let bytes: [UInt8]
    /// For a message a worker sent to another worker through the primary: the sender's id.
    public let fromWorker: Int?
    let replier: Replier?
    private let attached: AttachedDescriptors?

    init(bytes: [UInt8], descriptors: [Int32], fromWorker: Int? = nil, replier: Replier? = nil,
         budget: DescriptorBudget? = nil) {
        self.bytes = bytes
        self.fromWorker = fromWorker
        self.replier = replier
        attached = descriptors.isEmpty ? nil : AttachedDescriptors(descriptors, budget: budget)
    }

    /// Descriptors attached by the sender, received close-on-exec. Reading this property
    /// makes them yours: close them when done. Descriptors of a message that nobody reads
    /// this property of are closed when the last copy of the message goes, so a message
    /// an app ignores leaks nothing.
    public var descriptors: [Int32] { attached?.take() ?? [] }

    /// How many descriptors came with the message, without taking them.
    public var descriptorCount: Int { attached?.count ?? 0 }

    /// The payload as UTF-8 text.
    public var string: String { String(decoding: bytes, as: UTF8.self) }

    /// Decodes the payload, which the sender encoded with `send(_:)` (JSON).
    public func decode<T: Decodable>(_ type: T.Type = T.self) throws(ClusterError) -> T {
        do {
            return try MessageJSON.decode(T.self, from: bytes)
        } catch {
            throw ClusterError(.decoding, "cannot decode a \(bytes.count)-byte message as \(T.self): \(error)")
        }
    }

    /// Whether the sender is waiting for `reply`.
    public var expectsReply: Bool { replier != nil }

    /// Answers a request with raw bytes (and descriptors).
    public func reply(bytes: [UInt8], descriptors: [Int32] = []) async throws(ClusterError) {
        guard let replier else {
            throw ClusterError(.invalidConfiguration, "this message is not a request; only a message sent with request(...) can be replied to")
        }
        try await replier.channel.send(Frame(kind: .reply, correlation: replier.correlation, payload: bytes, descriptors: descriptors))
    }

    /// Answers a request without waiting (from an event loop or a message handler); throws
    /// ``ClusterError/Code/channelFull`` when the requester is behind by more than a few MiB.
    public func replyNow(bytes: [UInt8], descriptors: [Int32] = []) throws(ClusterError) {
        guard let replier else {
            throw ClusterError(.invalidConfiguration, "this message is not a request; only a message sent with request(...) can be replied to")
        }
        try replier.channel.sendNow(Frame(kind: .reply, correlation: replier.correlation, payload: bytes, descriptors: descriptors))
    }

    /// Answers a request with a value encoded as JSON.
    public func reply<T: Encodable>(_ value: T, descriptors: [Int32] = []) async throws(ClusterError) {
        try await reply(bytes: try MessageCodec.encode(value), descriptors: descriptors)
    }

    /// Answers a request with an error; the requester's `request` throws ``ClusterError/Code/remoteError``.
    public func fail(_ reason: String) async throws(ClusterError) {
        guard let replier else { return }
        try await replier.channel.send(Frame(kind: .failure, correlation: replier.correlation, payload: Array(reason.utf8)))
    }
}

/// Where a reply goes.
struct Replier: Sendable {
    let channel: Channel
    let correlation: UInt64
}

/// The seam between the runtime and its message codec: JSON, as Node's `process.send` uses
/// by default, through `MessageJSON` (the `ClusterJSON` target). Nothing else in `Cluster`
/// sees the codec.
enum MessageCodec {
    static func encode<T: Encodable>(_ value: T) throws(ClusterError) -> [UInt8] {
        do {
            return try MessageJSON.encode(value)
        } catch {
            throw ClusterError(.invalidConfiguration, "cannot encode a \(T.self) as JSON: \(error)")
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws(ClusterError) -> T {
        do {
            return try MessageJSON.decode(T.self, from: bytes)
        } catch {
            throw ClusterError(.decoding, "cannot decode \(T.self): \(error)")
        }
    }
}

/// The descriptors of one received message: closed when the message goes, unless someone
/// took them through ``ClusterMessage/descriptors``.
final class AttachedDescriptors: Sendable {
    private let descriptors: [Int32]
    private let taken = Atomic(false)
    private let budget: DescriptorBudget?

    init(_ descriptors: [Int32], budget: DescriptorBudget?) {
        self.descriptors = descriptors
        self.budget = budget
    }

    var count: Int { descriptors.count }

    func take() -> [Int32] {
        if !taken.exchange(true, ordering: .acquiringAndReleasing) { budget?.release(descriptors.count) }
        return descriptors
    }

    deinit {
        guard !taken.load(ordering: .acquiring) else { return }
        descriptors.forEach(Syscall.close)
        budget?.release(descriptors.count)
    }
}

/// How many descriptors one sender has attached to messages that no one has taken or
/// dropped yet. Above ``perWorker`` the primary stops reading that sender's channel until
/// the app takes or drops them, so a worker cannot fill the primary's descriptor table.
final class DescriptorBudget: Sendable {
    /// The most a worker may have waiting in the primary before its channel waits: 256
    /// (four messages with the most descriptors a frame may carry), a quarter of the usual
    /// soft limit of 1024.
    static let perWorker = 256

    private let held = Atomic(0)
    private let resume: @Sendable () -> Void

    /// `resume` is called when the count falls back to half the limit after going over it.
    init(resume: @escaping @Sendable () -> Void) {
        self.resume = resume
    }

    /// Counts `count` more; false when that is over the limit (pause the sender).
    func reserve(_ count: Int) -> Bool {
        held.add(count, ordering: .relaxed).newValue <= DescriptorBudget.perWorker
    }

    func release(_ count: Int) {
        let (before, after) = (held.subtract(count, ordering: .relaxed).oldValue, held.load(ordering: .relaxed))
        if before > DescriptorBudget.perWorker / 2, after <= DescriptorBudget.perWorker / 2 { resume() }
    }

    /// Descriptors held now.
    var count: Int { held.load(ordering: .relaxed) }
}
