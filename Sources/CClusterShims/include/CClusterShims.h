// C shims for swift-cluster: the few things Swift cannot import from Glibc
// (CMSG macros, variadic syscalls, posix_spawn extensions, a load-time hook).
// Every function returns -1 and leaves errno set on failure unless stated otherwise.
#ifndef CCLUSTER_SHIMS_H
#define CCLUSTER_SHIMS_H

#include <stddef.h>
#include <sys/types.h>
// Re-exported for Swift: Glibc's module does not carry these.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netdb.h>
#include <pwd.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/resource.h>

/// Sends `len` bytes from `buf` on the socket `sock`, attaching `nfds` descriptors with
/// SCM_RIGHTS when `nfds > 0`. Non-blocking and SIGPIPE-free (MSG_DONTWAIT | MSG_NOSIGNAL).
/// Returns the number of bytes sent.
ssize_t cluster_sendmsg(int sock, const void *buf, size_t len, const int *fds, int nfds);

/// Receives up to `len` bytes into `buf` from `sock` without blocking, collecting up to
/// `maxfds` attached descriptors (received close-on-exec) into `fds`. `*nfds` is set to the
/// number collected; `*truncated` to 1 when the kernel dropped descriptors (MSG_CTRUNC).
/// Returns the number of bytes received, 0 at end of file.
ssize_t cluster_recvmsg(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds, int *truncated);

/// Accepts a connection as a close-on-exec, non-blocking descriptor (accept4).
int cluster_accept(int sock);
/// accept4 as above, also writing the client's address into `peer`.
int cluster_accept_peer(int sock, struct sockaddr_storage *peer);
/// How many bytes any process holding the TCP connection `sock` has read from it: all it
/// received (TCP_INFO's tcpi_bytes_received) less what waits unread (FIONREAD). A byte
/// arriving meanwhile can only make it more, never less. -1 when the kernel cannot say
/// (not a TCP socket, or a kernel before 4.1).
long long cluster_tcp_bytes_read(int sock);

/// Creates a close-on-exec, non-blocking pipe (pipe2).
int cluster_pipe(int fds[2]);

/// Opens a pidfd for `pid` (pidfd_open, Linux 5.3).
int cluster_pidfd_open(pid_t pid);

/// Sends `sig` to the process behind `pidfd` (pidfd_send_signal): no pid-reuse race.
int cluster_pidfd_send_signal(int pidfd, int sig);

/// Reaps the exited process behind `pidfd` without blocking (waitid P_PIDFD, WEXITED|WNOHANG).
/// Returns 1 and sets `*code` (CLD_EXITED, CLD_KILLED, CLD_DUMPED) and `*status` (exit code
/// or signal number) when it was reaped, 0 when it is still running, -1 on error.
int cluster_pidfd_reap(int pidfd, int *code, int *status);

/// Spawns `path` with `argv` and `envp` through posix_spawn (never fork()).
/// The child's descriptor `dst_fds[i]` is the parent's `src_fds[i]`; every other descriptor
/// above 2 that is not a target is closed in the child, whatever its close-on-exec flag.
/// Descriptors 0-2 are inherited unless they are targets. The signal mask is emptied and
/// every signal's disposition reset to default. `cwd` may be NULL.
/// Returns 0 and sets `*pid`, or an errno value (errno itself is not used).
int cluster_spawn(const char *path, char *const argv[], char *const envp[],
                  const int *src_fds, const int *dst_fds, int nfds,
                  const char *cwd, pid_t *pid);

/// The value a CLUSTER_* environment variable had when this process started, or NULL.
/// A load-time constructor reads these and removes them from the environment, so that
/// programs a worker spawns do not mistake themselves for workers (as Node does with
/// NODE_UNIQUE_ID). The service manager's NOTIFY_SOCKET, LISTEN_PID, LISTEN_FDS and
/// LISTEN_FDNAMES are saved and removed the same way. In a worker the same constructor, before main, drops to
/// CLUSTER_GID/CLUSTER_UID when set, asks for SIGKILL when the primary dies
/// (PR_SET_PDEATHSIG) and exits at once if the primary is already gone.
const char *cluster_startup_env(const char *name);

/// The number of CPUs this process may run on (sched_getaffinity), at least 1.
int cluster_cpu_count(void);

/// The resident set size of this process in bytes, from /proc/self/statm; -1 on error.
long cluster_self_rss(void);

/// From now on `sig` is caught and its number written, as one byte, to `fd` (a
/// non-blocking pipe): the async-signal-safe half of turning signals into events. Returns 0.
int cluster_signal_forward(int sig, int fd);

/// Restores the default disposition of `sig`. Returns 0.
int cluster_signal_default(int sig);

/// The resident set size of process `pid` in bytes (from /proc/PID/statm), or -1.
long cluster_process_rss(pid_t pid);

/// Makes this process a child subreaper (PR_SET_CHILD_SUBREAPER): every orphan below it
/// becomes its child instead of init's. Returns 0, or -1 with errno.
int cluster_become_subreaper(void);

/// Sets the signal this process gets when the thread that started it ends
/// (PR_SET_PDEATHSIG). Returns 0, or -1 with errno.
int cluster_set_death_signal(int sig);

/// Starts a program that is not a swift-cluster worker, as systemd starts a socket-activated
/// service: fork, then in the child PR_SET_PDEATHSIG (it dies with this process), its pid
/// written into `pid_entry` (an `envp` entry "LISTEN_PID=" with room for the digits; may be
/// NULL), descriptor `src_fds[i]` at `dst_fds[i]` and nothing else above 2, every signal at
/// its default, a new session, then execve(`path`). Returns 0 or an errno.
int cluster_spawn_program(const char *path, char *const argv[], char *const envp[], char *pid_entry,
                          const int *src_fds, const int *dst_fds, int nfds, pid_t *pid);

/// The user id of the process at the other end of Unix socket `sock` (SO_PEERCRED), or -1.
long cluster_peer_uid(int sock);

/// Sets the soft and hard limit of `resource` for process `pid` (prlimit(2)).
int cluster_set_limit(pid_t pid, int resource, unsigned long long value);

/// Reaps, without blocking, every child of this process whose pid is not in `keep` (the
/// `nkeep` pids the caller reaps itself): what PID 1 must do for orphans. Returns how
/// many it reaped.
int cluster_reap_others(const pid_t *keep, int nkeep);

#endif
