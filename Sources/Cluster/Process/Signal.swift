#if canImport(Glibc)
import Glibc
#endif

/// A POSIX signal, printed by name (`SIGKILL`), as Node reports `signal` in `'exit'`.
public struct Signal: Hashable, Sendable, CustomStringConvertible {
    /// The signal number.
    public let rawValue: Int32

    /// A signal by number.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    public static let hangup = Signal(rawValue: SIGHUP)
    public static let interrupt = Signal(rawValue: SIGINT)
    public static let quit = Signal(rawValue: SIGQUIT)
    public static let abort = Signal(rawValue: SIGABRT)
    public static let kill = Signal(rawValue: SIGKILL)
    public static let segmentationFault = Signal(rawValue: SIGSEGV)
    public static let terminate = Signal(rawValue: SIGTERM)
    public static let user1 = Signal(rawValue: SIGUSR1)
    public static let user2 = Signal(rawValue: SIGUSR2)
    public static let trap = Signal(rawValue: SIGTRAP)
    public static let illegalInstruction = Signal(rawValue: SIGILL)
    public static let busError = Signal(rawValue: SIGBUS)

    static let names: [Int32: String] = [
        SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
        SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGUSR1: "SIGUSR1",
        SIGSEGV: "SIGSEGV", SIGUSR2: "SIGUSR2", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM",
        SIGCHLD: "SIGCHLD", SIGCONT: "SIGCONT", SIGSTOP: "SIGSTOP", SIGTSTP: "SIGTSTP", SIGTTIN: "SIGTTIN",
        SIGTTOU: "SIGTTOU", SIGXCPU: "SIGXCPU", SIGXFSZ: "SIGXFSZ", SIGSYS: "SIGSYS",
    ]

    /// A signal by name, with or without the `SIG` prefix, case-insensitive, or by number.
    public init?(name: String) {
        if let number = Int32(name), number > 0, number < 65 { self.init(rawValue: number); return }
        let upper = name.uppercased()
        let wanted = upper.hasPrefix("SIG") ? upper : "SIG" + upper
        guard let entry = Signal.names.first(where: { $0.value == wanted }) else { return nil }
        self.init(rawValue: entry.key)
    }

    /// The signal's name, such as `SIGKILL`, or `signal 42` for one without a name.
    public var description: String { Signal.names[rawValue] ?? "signal \(rawValue)" }
}

/// How a process ended: it exited with a code, or a signal killed it.
public enum ExitStatus: Hashable, Sendable, CustomStringConvertible {
    /// The process called exit with this code.
    case exited(Int32)
    /// A signal ended the process.
    case signaled(Signal)

    /// The exit code, when the process exited.
    public var code: Int32? { if case .exited(let code) = self { code } else { nil } }
    /// The signal, when one ended the process.
    public var signal: Signal? { if case .signaled(let signal) = self { signal } else { nil } }

    public var description: String {
        switch self {
        case .exited(let code): "exit code \(code)"
        case .signaled(let signal): "signal \(signal.rawValue) (\(signal))"
        }
    }
}
