import Cluster
#if canImport(Glibc)
import Glibc
#endif

/// Where the control socket lives by default, and the checks that keep another local user
/// from putting a socket of their own there.
enum ControlPath {
    /// `$XDG_RUNTIME_DIR/cluster.sock` (the user's runtime directory, 0700 by the XDG
    /// spec), else `/tmp/cluster-UID/cluster.sock`: a directory of this user's, never a
    /// name in world-writable `/tmp` itself, where anyone could bind it first.
    static var defaultPath: String { defaultDirectory + "/cluster.sock" }

    /// The directory of ``defaultPath``.
    static var defaultDirectory: String { Cluster.environmentValue("XDG_RUNTIME_DIR") ?? fallbackDirectory }

    /// Where the default path lives without `XDG_RUNTIME_DIR`.
    private static var fallbackDirectory: String { "/tmp/cluster-\(getuid())" }

    /// Creates ``defaultDirectory`` (mode 0700) when it is `/tmp/cluster-UID` and missing,
    /// then checks that it is a directory (not a symbolic link) that this user owns and
    /// nobody else may write. Anything else is an error that says what to do.
    static func prepareDefaultDirectory() throws {
        let directory = defaultDirectory
        if directory == fallbackDirectory, mkdir(directory, 0o700) != 0, errno != EEXIST {
            throw CommandError("cannot create \(directory) for the control socket: \(String(cString: strerror(errno))); give --control PATH in a directory of yours")
        }
        var info = stat()
        guard lstat(directory, &info) == 0 else {
            throw CommandError("cannot use \(directory) for the control socket: \(String(cString: strerror(errno))); give --control PATH in a directory of yours")
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw CommandError("\(directory) is not a directory (it may be a symbolic link another user made), so the control socket is not put there; remove it, or give --control PATH in a directory of yours")
        }
        guard info.st_uid == getuid() else {
            throw CommandError("\(directory) belongs to uid \(info.st_uid), not to you (uid \(getuid())), so the control socket is not put there: another user could replace it; remove that directory, or give --control PATH in a directory of yours")
        }
        guard info.st_mode & 0o022 == 0 else {
            throw CommandError("\(directory) may be written by other users (mode \(String(info.st_mode & 0o777, radix: 8))), so the control socket is not put there; run chmod go-w \(directory), or give --control PATH in a directory of yours")
        }
    }
}
