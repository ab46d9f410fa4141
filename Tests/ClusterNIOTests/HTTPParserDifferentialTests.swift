@testable import ClusterNIO
import NIOCore
import NIOEmbedded
import NIOHTTP1
import Testing

/// The lean path (``LeanHTTPHandler``) judges malformed and smuggling requests as
/// SwiftNIO's own parser (llhttp) does, and judges the ones it parses itself without it.
@Suite struct HTTPParserDifferentialTests {
    /// Small limits, so oversized cases stay small.
    static let limits = HTTPServerLimits(maxHeaderBytes: 4096, maxBodyBytes: 1024)

    /// A request of the corpus; `lean` when the lean parser must decide it itself.
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var bytes: [UInt8]
        var lean: Bool
        var testDescription: String { name }

        init(_ name: String, _ text: String, lean: Bool = true) {
            self.name = name
            self.bytes = Array(text.utf8)
            self.lean = lean
        }

        init(_ name: String, bytes: [UInt8], lean: Bool = true) {
            self.name = name
            self.bytes = bytes
            self.lean = lean
        }
    }

    static let valid: [Case] = [
        Case("a GET", "GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        Case("a POST with a body", "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"),
        Case("three pipelined requests", String(repeating: "GET /x HTTP/1.1\r\nHost: a\r\n\r\n", count: 3)),
        Case("HTTP/1.0", "GET / HTTP/1.0\r\n\r\n"),
        Case("a value with obs-text", bytes: Array("GET / HTTP/1.1\r\nX-Name: caf".utf8) + [0xC3, 0xA9] + Array("\r\n\r\n".utf8)),
        Case("whitespace around a value", "GET / HTTP/1.1\r\nHost:  a \t\r\n\r\n"),
        Case("a Content-Length with leading zeros", "POST / HTTP/1.1\r\nContent-Length: 005\r\n\r\nhello"),
        Case("a Content-Length after a tab", "POST / HTTP/1.1\r\nContent-Length:\t3\r\n\r\nabc"),
        Case("Connection: close, then bytes the server ignores", "GET / HTTP/1.1\r\nConnection: close\r\n\r\nGARBAGE\r\n\r\n"),
        Case("a chunked body", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", lean: false),
        Case("OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", lean: false),
        Case("an absolute-form target", "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", lean: false),
        Case("Expect: 100-continue", "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", lean: false),
        Case("HTTP/1.0 keep-alive and close: close wins", "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
        Case("HTTP/1.0 keep-alive and close, handed over", "OPTIONS * HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n", lean: false),
        Case("Proxy-Connection: close", "GET / HTTP/1.1\r\nProxy-Connection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n", lean: false),
        Case("HTTP/1.0 Proxy-Connection: keep-alive", "GET / HTTP/1.0\r\nProxy-Connection: keep-alive\r\n\r\nGET / HTTP/1.1\r\n\r\n", lean: false),
        Case("a body at the limit", "POST / HTTP/1.1\r\nContent-Length: 1024\r\n\r\n" + String(repeating: "b", count: 1024)),
    ]

    static let invalid: [Case] = [
        Case("two equal Content-Lengths", "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
        Case("two different Content-Lengths", "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 37\r\n\r\nhello"),
        Case("Content-Length +37", "POST / HTTP/1.1\r\nContent-Length: +37\r\n\r\n"),
        Case("Content-Length -1", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
        Case("Content-Length 3 7", "POST / HTTP/1.1\r\nContent-Length: 3 7\r\n\r\n"),
        Case("Content-Length 0x10", "POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n"),
        Case("an empty Content-Length", "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n"),
        Case("a Content-Length of only a tab", "POST / HTTP/1.1\r\nContent-Length: \t\r\n\r\n"),
        Case("an empty Content-Length, judged at the next line's first byte", "POST / HTTP/1.1\r\nContent-Length:\r\n\r"),
        Case("a Content-Length of only a tab, after a GET, the head unfinished",
             "GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: \t\r\n\r"),
        Case("a Content-Length with a trailing space", "POST / HTTP/1.1\r\nContent-Length: 3 \r\nHost: a\r\n\r\nabc"),
        Case("a Content-Length with a trailing tab", "POST / HTTP/1.1\r\nContent-Length: 3\t\r\n\r\nabc"),
        Case("a Content-Length list", "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello"),
        Case("Content-Length then Transfer-Encoding", "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", lean: false),
        Case("Transfer-Encoding then Content-Length", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", lean: false),
        Case("Transfer-Encoding not ending in chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", lean: false),
        Case("an obs-fold", "GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n"),
        Case("whitespace after the request line", "GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
        Case("bare LF line ends", "GET / HTTP/1.1\nHost: a\n\n"),
        Case("a bare LF after a header", "GET / HTTP/1.1\r\nHost: a\n\r\n"),
        Case("a bare LF ending the head", "GET / HTTP/1.1\r\nHost: a\r\n\n"),
        Case("a CR without LF", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"),
        Case("a space before the colon", "POST / HTTP/1.1\r\nContent-Length : 37\r\n\r\n"),
        Case("a tab before the colon", "POST / HTTP/1.1\r\nContent-Length\t: 5\r\n\r\nhello"),
        Case("NUL in a value", bytes: Array("GET / HTTP/1.1\r\nX-A: a".utf8) + [0] + Array("b\r\n\r\n".utf8)),
        Case("a control character in a value", bytes: Array("GET / HTTP/1.1\r\nX-A: a".utf8) + [1] + Array("b\r\n\r\n".utf8)),
        Case("DEL in a value", bytes: Array("GET / HTTP/1.1\r\nX-A: a".utf8) + [0x7F] + Array("\r\n\r\n".utf8)),
        Case("NUL in the target", bytes: Array("GET /a".utf8) + [0] + Array(" HTTP/1.1\r\n\r\n".utf8)),
        Case("a control character in the target", bytes: Array("GET /a".utf8) + [0x1F] + Array(" HTTP/1.1\r\n\r\n".utf8)),
        Case("an empty header name", "GET / HTTP/1.1\r\n: a\r\n\r\n"),
        Case("a header name with a separator", "GET / HTTP/1.1\r\nX(A): a\r\n\r\n"),
        Case("an invalid chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", lean: false),
        Case("a signed chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n", lean: false),
        Case("an overflowing chunk size", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n", lean: false),
        Case("chunk data without its CRLF", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", lean: false),
        Case("an oversized header", "GET / HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 8192) + "\r\n\r\n"),
        Case("too many headers", "GET / HTTP/1.1\r\n" + String(repeating: "X-Header: 0123456789abcdef\r\n", count: 400) + "\r\n"),
        Case("a body over the limit", "POST / HTTP/1.1\r\nContent-Length: 1025\r\n\r\n"),
        Case("a chunked body over the limit", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
             + String(repeating: "100\r\n" + String(repeating: "c", count: 256) + "\r\n", count: 5) + "0\r\n\r\n", lean: false),
        Case("a lowercase method", "get / HTTP/1.1\r\n\r\n", lean: false),
        Case("garbage after a valid request", "GET / HTTP/1.1\r\nHost: a\r\n\r\nNOT HTTP\r\n\r\n", lean: false),
    ]

    @Test(arguments: valid + invalid)
    func theLeanPathJudgesARequestAsSwiftNIOsParserDoes(_ request: Case) throws {
        let expected = HTTPDifferential.reference([request.bytes], limits: Self.limits)
        let (verdict, channel) = HTTPDifferential.lean([request.bytes], limits: Self.limits)
        #expect(verdict == expected, "lean: \(verdict); SwiftNIO: \(expected)")
        if request.lean {
            #expect(throws: ChannelPipelineError.notFound, "the lean parser decides this one itself") {
                try channel.pipeline.syncOperations.handler(type: HTTPResponderHandler.self)
            }
        }
        if verdict.rejected {
            #expect(!channel.isActive, "a rejected request's connection is closed at once")
        }
        HTTPDifferential.close(channel)
        let (byteByByte, second) = HTTPDifferential.lean(request.bytes.map { [$0] }, limits: Self.limits)
        HTTPDifferential.close(second)
        #expect(byteByByte == verdict, "read a byte at a time: \(byteByByte)")
    }

    @Test func theCorpusHasBothVerdicts() {
        #expect(Self.valid.allSatisfy { !HTTPDifferential.reference([$0.bytes], limits: Self.limits).rejected })
        #expect(Self.invalid.allSatisfy { HTTPDifferential.reference([$0.bytes], limits: Self.limits).rejected })
    }
}
