/// A message received over a channel: bytes, any descriptors that came with it, and a way
/// to answer when the sender used `request`.
public struct ClusterMessage: Sendable {
    /// The payload.
    public let bytes: [UInt8]
    /// Descriptors attached by the sender, received close-on-exec. They are yours: close
    /// them when done.
    public let descriptors: [Int32]
    /// For a message a worker sent to another worker through the primary: the sender's id.
    public let fromWorker: Int?
    let replier: Replier?

    init(bytes: [UInt8], descriptors: [Int32], fromWorker: Int? = nil, replier: Replier? = nil) {
        self.bytes = bytes
        self.descriptors = descriptors
        self.fromWorker = fromWorker
        self.replier = replier
    }

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

/// JSON, as Node's `process.send` uses by default, through ``MessageJSON``.
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
