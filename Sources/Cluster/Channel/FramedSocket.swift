/// The sending half of a framed socket, shared by both ends of every link between the
/// primary and a worker (``Channel``, ``HandoffLink``): frames queue as chunks and go out
/// with `sendmsg`, each frame's descriptors with its first byte. What the socket does not
/// take stays queued for the next ``flush(to:)``. Its owner keeps it behind a lock.
struct FrameWriter {
    private struct Chunk {
        var bytes: [UInt8]
        var offset = 0
        /// Sent with the chunk's first byte, then closed if owned (copies), or left to
        /// their owner if lent.
        var descriptors: [Int32]
        var ownsDescriptors = true
        /// A frame queued ahead of the others (``append(_:descriptors:owned:urgent:)``).
        var urgent = false
    }

    /// Small frames share a chunk (one `sendmsg`) up to this size; no more, so an urgent
    /// frame waits behind at most this much of a chunk already being written.
    static let chunkLimit = 256 << 10

    private var chunks: [Chunk] = []
    /// Bytes queued and not yet written.
    private(set) var pendingBytes = 0

    var isEmpty: Bool { chunks.isEmpty }

    /// Queues `frame` with `descriptors` (the frame's, or copies of them): closed once sent
    /// when `owned`, else left to their owner. An `urgent` frame goes ahead of every queued
    /// frame not yet begun (after earlier urgent ones).
    mutating func append(_ frame: Frame, descriptors: [Int32], owned: Bool = true, urgent: Bool = false) {
        if urgent {
            var index = chunks.first.map { $0.offset > 0 ? 1 : 0 } ?? 0
            while index < chunks.count, chunks[index].urgent { index += 1 }
            var bytes: [UInt8] = []
            frame.encode(into: &bytes)
            chunks.insert(Chunk(bytes: bytes, descriptors: descriptors, ownsDescriptors: owned, urgent: true), at: index)
        } else if descriptors.isEmpty, let last = chunks.last, !last.urgent, last.offset == 0,
                  last.bytes.count < FrameWriter.chunkLimit {
            frame.encode(into: &chunks[chunks.count - 1].bytes)
        } else {
            var bytes: [UInt8] = []
            frame.encode(into: &bytes)
            chunks.append(Chunk(bytes: bytes, descriptors: descriptors, ownsDescriptors: owned))
        }
        pendingBytes += Frame.headerSize + frame.payload.count
    }

    /// Writes what `fd` takes without blocking. Returns whether any byte went out, and
    /// whether bytes remain because the socket is full. Throws when the peer is gone
    /// (EPIPE, ECONNRESET), after emptying the queue.
    mutating func flush(to fd: Int32) throws(ClusterError) -> (wrote: Bool, blocked: Bool) {
        var wrote = false
        while let chunk = chunks.first {
            let result = chunk.bytes.withUnsafeBytes { raw in
                Result { () throws(ClusterError) in
                    try Syscall.send(fd, UnsafeRawBufferPointer(rebasing: raw[chunk.offset...]),
                                     fds: chunk.offset == 0 ? chunk.descriptors : [])
                }
            }
            let sent: Int?
            do throws(ClusterError) {
                sent = try result.get()
            } catch {
                discard()
                throw error
            }
            guard let sent else { return (wrote, true) }
            if chunk.offset == 0 && !chunk.descriptors.isEmpty {
                if chunk.ownsDescriptors { chunk.descriptors.forEach(Syscall.close) }
                chunks[0].descriptors = []
            }
            wrote = wrote || sent > 0
            chunks[0].offset += sent
            pendingBytes -= sent
            if chunks[0].offset == chunks[0].bytes.count { chunks.removeFirst() }
        }
        return (wrote, false)
    }

    /// Empties the queue, closing the descriptors it owns that were not sent.
    mutating func discard() {
        for chunk in chunks where chunk.offset == 0 && chunk.ownsDescriptors { chunk.descriptors.forEach(Syscall.close) }
        chunks.removeAll()
        pendingBytes = 0
    }
}

/// The receiving half of a framed socket, shared by both ends of every link: `recvmsg`
/// into a buffer, descriptors attached, and whole frames out of the decoder. Its owner
/// confines it to one thread at a time.
struct FrameReader {
    private var decoder: FrameDecoder
    private var received: [Int32] = []

    init(maximumPayload: Int) {
        decoder = FrameDecoder(maximumPayload: maximumPayload)
    }

    /// Reads once from `fd` into `buffer` and decodes it. Returns the bytes read (0 at end
    /// of file), or nil when nothing waits.
    mutating func read(from fd: Int32, into buffer: UnsafeMutableRawBufferPointer) throws(ClusterError) -> Int? {
        var truncated = false
        let count: Int?
        do {
            count = try Syscall.receive(fd, into: buffer, fds: &received, truncated: &truncated)
        } catch {
            received.forEach(Syscall.close)
            received.removeAll()
            throw error
        }
        guard let count, count > 0 else {
            // None come without a byte; never leak one. (Usually empty: the buffer is kept.)
            received.forEach(Syscall.close)
            received.removeAll(keepingCapacity: true)
            return count
        }
        decoder.append(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), descriptors: received, truncated: truncated)
        received.removeAll(keepingCapacity: true)
        return count
    }

    /// The next whole frame read, if any; throws when the peer broke the framing.
    mutating func next() throws(ClusterError) -> Frame? {
        try decoder.next()
    }

    /// Descriptors received for frames that never completed: the closer's to close.
    mutating func takeUnclaimedDescriptors() -> [Int32] {
        decoder.takeUnclaimedDescriptors()
    }
}
