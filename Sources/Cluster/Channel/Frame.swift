/// One unit on the wire between a primary and a worker.
///
/// Layout, little-endian, 20-byte header then the payload:
///
/// | bytes | field |
/// |---|---|
/// | 0..<4 | payload length |
/// | 4 | kind |
/// | 5 | number of descriptors attached to this frame (sent with its first byte) |
/// | 6..<8 | reserved, zero |
/// | 8..<12 | peer: the other worker's id for worker-to-worker messages, else 0 |
/// | 12..<20 | correlation: a request's id, echoed by its reply; 0 otherwise |
struct Frame: Sendable, Equatable {
    enum Kind: UInt8, Sendable {
        /// An application message.
        case message = 1
        /// An application message that expects a reply with the same correlation.
        case request = 2
        /// The answer to a request.
        case reply = 3
        /// A request's failure, its payload a UTF-8 reason.
        case failure = 4
        /// The runtime's own messages (online, listening, disconnect, listen requests).
        case control = 5
        /// A connection handed to a worker, and the worker's answers (``Handoff``).
        case handoff = 6
    }

    static let headerSize = 20
    static let maximumDescriptors = 64

    var kind: Kind
    var peer: UInt32 = 0
    var correlation: UInt64 = 0
    var payload: [UInt8]
    var descriptors: [Int32] = []
    /// Descriptors the frame announced that the kernel dropped because the receiver's
    /// table was full (only a handoff may arrive short; its connections are declined).
    var missingDescriptors = 0

    /// Appends the header and payload to `buffer`.
    func encode(into buffer: inout [UInt8]) {
        // No reserveCapacity: it would grow a batch buffer to the exact size on every
        // frame, copying the batch each time; append grows geometrically.
        withUnsafeTemporaryAllocation(byteCount: Frame.headerSize, alignment: 8) { header in
            header.storeBytes(of: UInt32(payload.count).littleEndian, toByteOffset: 0, as: UInt32.self)
            header.storeBytes(of: kind.rawValue, toByteOffset: 4, as: UInt8.self)
            header.storeBytes(of: UInt8(descriptors.count), toByteOffset: 5, as: UInt8.self)
            header.storeBytes(of: UInt16(0), toByteOffset: 6, as: UInt16.self)
            header.storeBytes(of: peer.littleEndian, toByteOffset: 8, as: UInt32.self)
            header.storeBytes(of: correlation.littleEndian, toByteOffset: 12, as: UInt64.self)
            buffer.append(contentsOf: UnsafeRawBufferPointer(header))
        }
        buffer.append(contentsOf: payload)
    }
}

/// Cuts a byte stream into frames and checks each one. Pure: no I/O, tested alone.
struct FrameDecoder {
    /// The largest payload accepted; a larger length in a header is a protocol error.
    let maximumPayload: Int
    private var buffer: [UInt8] = []
    private var start = 0
    /// Descriptors received but not yet claimed by a frame, in arrival order.
    private(set) var descriptors: [Int32] = []
    /// The kernel dropped descriptors: the next frame that announces some may lack them.
    private var dropped = false

    init(maximumPayload: Int) { self.maximumPayload = maximumPayload }

    /// Bytes buffered but not yet part of a returned frame.
    var bufferedByteCount: Int { buffer.count - start }

    /// Adds what one read returned; `truncated` when the kernel dropped descriptors
    /// (`Syscall.receive`).
    mutating func append(_ bytes: UnsafeRawBufferPointer, descriptors newDescriptors: [Int32], truncated: Bool = false) {
        if truncated { dropped = true }
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeSubrange(0..<start)
            start = 0
        }
        buffer.append(contentsOf: bytes)
        descriptors.append(contentsOf: newDescriptors)
    }

    /// The next complete frame, nil when more bytes are needed, or an error naming what is
    /// wrong with the stream (after which the stream cannot be trusted).
    mutating func next() throws(ClusterError) -> Frame? {
        let available = buffer.count - start
        guard available >= Frame.headerSize else {
            // Descriptors come with their frame's first byte: with no frame begun, none
            // may be waiting; with one begun, no more than a frame may carry.
            try checkUnclaimed(atMost: available == 0 ? 0 : Frame.maximumDescriptors)
            return nil
        }
        let header = buffer.withUnsafeBytes { UnsafeRawBufferPointer(rebasing: $0[start..<start + Frame.headerSize]) }
        let length = Int(UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 0, as: UInt32.self)))
        let rawKind = header[4]
        let descriptorCount = Int(header[5])
        let reserved = UInt16(littleEndian: header.loadUnaligned(fromByteOffset: 6, as: UInt16.self))
        let peer = UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        let correlation = UInt64(littleEndian: header.loadUnaligned(fromByteOffset: 12, as: UInt64.self))

        guard let kind = Frame.Kind(rawValue: rawKind) else {
            throw ClusterError(.malformedFrame, "unknown frame kind \(rawKind)")
        }
        guard reserved == 0 else {
            throw ClusterError(.malformedFrame, "reserved header bytes are \(reserved), not 0")
        }
        guard length <= maximumPayload else {
            throw ClusterError(.malformedFrame, "a frame announces \(length) bytes; the limit is \(maximumPayload)")
        }
        guard descriptorCount <= Frame.maximumDescriptors else {
            throw ClusterError(.malformedFrame, "a frame announces \(descriptorCount) descriptors; the limit is \(Frame.maximumDescriptors)")
        }
        guard available >= Frame.headerSize + length else {
            try checkUnclaimed(atMost: descriptorCount)
            return nil
        }
        // The kernel delivers descriptors no later than the first byte of their frame; it
        // drops the last ones when the receiver's table is full, which only a handoff
        // survives (its connections are declined and go to another worker).
        var missing = 0
        if descriptors.count < descriptorCount {
            guard dropped, kind == .handoff else {
                throw ClusterError(.malformedFrame, "a frame announces \(descriptorCount) descriptors but \(descriptors.count) arrived")
            }
            missing = descriptorCount - descriptors.count
        }
        if descriptorCount > 0 { dropped = false }
        let payloadStart = start + Frame.headerSize
        let payload = Array(buffer[payloadStart..<payloadStart + length])
        start = payloadStart + length
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        }
        var attached: [Int32] = []
        if descriptorCount > 0 {
            attached = Array(descriptors.prefix(descriptorCount - missing))
            descriptors.removeFirst(descriptorCount - missing)
        }
        return Frame(kind: kind, peer: peer, correlation: correlation, payload: payload, descriptors: attached,
                     missingDescriptors: missing)
    }

    /// Throws when more descriptors wait than the frame under way announces: a peer that
    /// sends descriptors no frame claims would otherwise fill the receiver's table.
    private func checkUnclaimed(atMost allowed: Int) throws(ClusterError) {
        guard descriptors.count > allowed else { return }
        throw ClusterError(.malformedFrame, "\(descriptors.count) descriptors arrived that no frame announces (at most \(allowed) may wait)")
    }

    /// Hands over descriptors that no frame claimed, so the owner can close them.
    mutating func takeUnclaimedDescriptors() -> [Int32] {
        defer { descriptors.removeAll() }
        return descriptors
    }
}

/// The frame decoder for the fuzz target in `Fuzz/`, which may be built in release mode
/// where `@testable` is unavailable. Not API: no stability promised.
@_spi(Fuzzing) public enum FrameFuzzing {
    /// What the decoder made of a stream.
    public struct Decoded {
        /// Each frame it returned, encoded again (header and payload).
        public var frames: [[UInt8]]
        /// The descriptors each frame claimed, in order.
        public var claimed: [[Int32]]
        /// The descriptors no frame claimed, which the channel closes.
        public var unclaimed: [Int32]
        /// The error that stopped the stream, if one did.
        public var error: (any Error)?
    }

    /// Reads `bytes` as the channel does, `readSize` bytes at a time, with `descriptors`
    /// (numbers only: nothing is opened or closed) arriving with the first read, taking
    /// every frame after each read, with payloads of at most `maximumPayload` bytes.
    public static func decode(_ bytes: [UInt8], readSize: Int, descriptors: [Int32], maximumPayload: Int) -> Decoded {
        var decoder = FrameDecoder(maximumPayload: maximumPayload)
        var result = Decoded(frames: [], claimed: [], unclaimed: [], error: nil)
        var offset = 0
        repeat {
            let end = min(bytes.count, offset + max(1, readSize))
            bytes[offset..<end].withUnsafeBytes { decoder.append($0, descriptors: offset == 0 ? descriptors : []) }
            offset = end
            do {
                while let frame = try decoder.next() {
                    var encoded: [UInt8] = []
                    frame.encode(into: &encoded)
                    result.frames.append(encoded)
                    result.claimed.append(frame.descriptors)
                }
            } catch {
                result.error = error
                break
            }
        } while offset < bytes.count
        result.unclaimed = decoder.takeUnclaimedDescriptors()
        return result
    }
}
