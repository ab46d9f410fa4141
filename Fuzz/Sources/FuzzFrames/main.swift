import CFuzzerDriver
import Glibc

// SwiftPM gives an executable its own `main`, so libFuzzer's driver is started from here.
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
    fuzzFrames(UnsafeBufferPointer(start: data, count: size))
    return 0
})
