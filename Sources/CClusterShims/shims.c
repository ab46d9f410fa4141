#define _GNU_SOURCE
#include "CClusterShims.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/ioctl.h>
#include <linux/tcp.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define CLUSTER_MAX_FDS 64

ssize_t cluster_sendmsg(int sock, const void *buf, size_t len, const int *fds, int nfds) {
    // Without descriptors, send() skips copying and checking a msghdr.
    if (nfds == 0) return send(sock, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    char control[CMSG_SPACE(sizeof(int) * CLUSTER_MAX_FDS)];
    if (nfds > 0) {
        if (nfds > CLUSTER_MAX_FDS) { errno = EINVAL; return -1; }
        memset(control, 0, sizeof(control));
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
    }
    return sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
}

ssize_t cluster_recvmsg(int sock, void *buf, size_t len, int *fds, int maxfds, int *nfds, int *truncated) {
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    char control[CMSG_SPACE(sizeof(int) * CLUSTER_MAX_FDS)];
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
                          .msg_control = control, .msg_controllen = sizeof(control) };
    *nfds = 0;
    *truncated = 0;
    ssize_t n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) return n;
    if (msg.msg_flags & MSG_CTRUNC) *truncated = 1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int count = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        int *received = (int *)CMSG_DATA(c);
        for (int i = 0; i < count; i++) {
            if (*nfds < maxfds) fds[(*nfds)++] = received[i];
            else { close(received[i]); *truncated = 1; }
        }
    }
    return n;
}

int cluster_accept(int sock) {
    return accept4(sock, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
}

int cluster_accept_peer(int sock, struct sockaddr_storage *peer) {
    socklen_t length = sizeof(*peer);
    return accept4(sock, (struct sockaddr *)peer, &length, SOCK_CLOEXEC | SOCK_NONBLOCK);
}

int cluster_pipe(int fds[2]) {
    return pipe2(fds, O_CLOEXEC | O_NONBLOCK);
}

int cluster_pidfd_open(pid_t pid) {
    return (int)syscall(SYS_pidfd_open, pid, 0);
}

int cluster_pidfd_send_signal(int pidfd, int sig) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0);
}

int cluster_pidfd_reap(int pidfd, int *code, int *status) {
    siginfo_t info;
    memset(&info, 0, sizeof(info));
    if (waitid((idtype_t)P_PIDFD, (id_t)pidfd, &info, WEXITED | WNOHANG) < 0) return -1;
    if (info.si_pid == 0) return 0;
    *code = info.si_code;
    *status = info.si_status;
    return 1;
}

int cluster_spawn(const char *path, char *const argv[], char *const envp[],
                  const int *src_fds, const int *dst_fds, int nfds,
                  const char *cwd, pid_t *pid) {
    int highest = 2;
    for (int i = 0; i < nfds; i++) if (dst_fds[i] > highest) highest = dst_fds[i];

    // Copy every source above every target first: dup2-ing in place would clobber a
    // source that is also another mapping's target, and dup2(fd, fd) would keep CLOEXEC.
    int copies[CLUSTER_MAX_FDS];
    if (nfds > CLUSTER_MAX_FDS) return EINVAL;
    int made = 0, err = 0;
    for (; made < nfds; made++) {
        copies[made] = fcntl(src_fds[made], F_DUPFD_CLOEXEC, highest + 1);
        if (copies[made] < 0) { err = errno; goto close_copies; }
    }

    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    if ((err = posix_spawn_file_actions_init(&actions)) != 0) goto close_copies;
    if ((err = posix_spawnattr_init(&attr)) != 0) goto destroy_actions;

    for (int i = 0; i < nfds && err == 0; i++)
        err = posix_spawn_file_actions_adddup2(&actions, copies[i], dst_fds[i]);
    // Whatever the parent left open, close-on-exec or not, stops here.
    if (err == 0) err = posix_spawn_file_actions_addclosefrom_np(&actions, highest + 1);
    if (err == 0 && cwd != NULL) err = posix_spawn_file_actions_addchdir_np(&actions, cwd);

    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    if (err == 0) err = posix_spawnattr_setsigmask(&attr, &none);
    if (err == 0) err = posix_spawnattr_setsigdefault(&attr, &all);
    if (err == 0) err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (err == 0) err = posix_spawn(pid, path, &actions, &attr, argv, envp);

    posix_spawnattr_destroy(&attr);
destroy_actions:
    posix_spawn_file_actions_destroy(&actions);
close_copies:
    for (int i = 0; i < made; i++) close(copies[i]);
    return err;
}

// ---- Load-time worker bootstrap -------------------------------------------------------

#define CLUSTER_MAX_SAVED 32
static char *saved_env[CLUSTER_MAX_SAVED];
static int saved_count;

/// The service manager's variables (sd_notify(3), sd_listen_fds(3)): they describe this
/// process only, so they are saved and removed like CLUSTER_* ones, and no worker or
/// program inherits them by accident.
static int is_service_manager_variable(const char *entry) {
    static const char *const names[] = {"NOTIFY_SOCKET=", "LISTEN_PID=", "LISTEN_FDS=", "LISTEN_FDNAMES="};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strncmp(entry, names[i], strlen(names[i])) == 0) return 1;
    }
    return 0;
}

const char *cluster_startup_env(const char *name) {
    size_t len = strlen(name);
    for (int i = 0; i < saved_count; i++) {
        if (strncmp(saved_env[i], name, len) == 0 && saved_env[i][len] == '=')
            return saved_env[i] + len + 1;
    }
    return NULL;
}

static void bootstrap_fail(const char *what) {
    char message[256];
    int n = snprintf(message, sizeof(message),
                     "cluster worker bootstrap: %s failed: %s\n", what, strerror(errno));
    if (n > 0) { ssize_t ignored = write(2, message, (size_t)n); (void)ignored; }
    _exit(78); // EX_CONFIG: the worker could not start as configured.
}

__attribute__((constructor))
static void cluster_bootstrap(int argc, char **argv, char **envp) {
    (void)argc; (void)argv; (void)envp;
    extern char **environ;
    // Save and remove every CLUSTER_* variable (and the service manager's) before anything
    // else reads the environment.
    for (char **e = environ; e != NULL && *e != NULL; e++) {
        if ((strncmp(*e, "CLUSTER_", 8) == 0 || is_service_manager_variable(*e)) && saved_count < CLUSTER_MAX_SAVED)
            saved_env[saved_count++] = strdup(*e);
    }
    for (int i = 0; i < saved_count; i++) {
        char name[128];
        size_t len = strcspn(saved_env[i], "=");
        if (len >= sizeof(name)) continue;
        memcpy(name, saved_env[i], len);
        name[len] = 0;
        unsetenv(name);
    }
    if (cluster_startup_env("CLUSTER_WORKER_ID") == NULL) return;

    const char *gid = cluster_startup_env("CLUSTER_GID");
    const char *uid = cluster_startup_env("CLUSTER_UID");
    if (gid != NULL) {
        if (setgroups(0, NULL) != 0) bootstrap_fail("setgroups");
        if (setgid((gid_t)strtoul(gid, NULL, 10)) != 0) bootstrap_fail("setgid");
    }
    if (uid != NULL && setuid((uid_t)strtoul(uid, NULL, 10)) != 0) bootstrap_fail("setuid");

    // After the credential change: changing credentials clears the parent-death signal.
    // SIGKILL, or the signal the primary names (the `cluster` command's workers take TERM,
    // to kill their program's processes first). Set here, on the main thread: the setting
    // is per thread, and the kernel sends every thread's.
    int death = SIGKILL;
    const char *named = cluster_startup_env("CLUSTER_DEATH_SIGNAL");
    if (named != NULL) {
        long value = strtol(named, NULL, 10);
        if (value > 0 && value < 65) death = (int)value;
    }
    if (prctl(PR_SET_PDEATHSIG, death) != 0) bootstrap_fail("prctl(PR_SET_PDEATHSIG)");
    const char *primary = cluster_startup_env("CLUSTER_PRIMARY_PID");
    if (primary != NULL && getppid() != (pid_t)strtol(primary, NULL, 10)) _exit(0);
}

long cluster_self_rss(void) {
    return cluster_process_rss(getpid());
}

int cluster_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
    int count = CPU_COUNT(&set);
    return count > 0 ? count : 1;
}

static volatile sig_atomic_t forward_fd[65];

static void forward_signal(int sig) {
    int saved = errno;
    if (sig > 0 && sig < 65 && forward_fd[sig] > 0) {
        unsigned char byte = (unsigned char)sig;
        (void)write(forward_fd[sig], &byte, 1);
    }
    errno = saved;
}

int cluster_signal_forward(int sig, int fd) {
    if (sig <= 0 || sig >= 65) { errno = EINVAL; return -1; }
    forward_fd[sig] = fd;
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = forward_signal;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(sig, &action, NULL) != 0) return -1;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    return pthread_sigmask(SIG_UNBLOCK, &set, NULL) == 0 ? 0 : -1;
}

int cluster_signal_default(int sig) {
    if (sig <= 0 || sig >= 65) { errno = EINVAL; return -1; }
    forward_fd[sig] = 0;
    return signal(sig, SIG_DFL) == SIG_ERR ? -1 : 0;
}

long cluster_process_rss(pid_t pid) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
    FILE *f = fopen(path, "re");
    if (f == NULL) return -1;
    long pages = 0, resident = 0;
    int n = fscanf(f, "%ld %ld", &pages, &resident);
    fclose(f);
    if (n != 2) return -1;
    return resident * sysconf(_SC_PAGESIZE);
}

int cluster_set_limit(pid_t pid, int resource, unsigned long long value) {
    struct rlimit limit = { .rlim_cur = (rlim_t)value, .rlim_max = (rlim_t)value };
    return prlimit(pid, (__rlimit_resource_t)resource, &limit, NULL);
}

int cluster_reap_others(const pid_t *keep, int nkeep) {
    int reaped = 0;
    char path[64];
    DIR *tasks = opendir("/proc/self/task");
    if (tasks == NULL) return 0;
    struct dirent *task;
    while ((task = readdir(tasks)) != NULL) {
        if (task->d_name[0] == '.') continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/children", task->d_name);
        FILE *f = fopen(path, "re");
        if (f == NULL) continue;
        int child;
        while (fscanf(f, "%d", &child) == 1) {
            int ours = 0;
            for (int i = 0; i < nkeep; i++) if (keep[i] == child) { ours = 1; break; }
            if (ours) continue;
            int status;
            if (waitpid(child, &status, WNOHANG) == child) reaped++;
        }
        fclose(f);
    }
    closedir(tasks);
    return reaped;
}

/// Writes `value` in decimal at `out` (async-signal-safe); returns the end.
static char *write_decimal(char *out, long value) {
    char digits[24];
    int count = 0;
    do { digits[count++] = (char)('0' + value % 10); value /= 10; } while (value > 0);
    while (count > 0) *out++ = digits[--count];
    *out = 0;
    return out;
}

int cluster_become_subreaper(void) {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

int cluster_set_death_signal(int sig) {
    return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0);
}

int cluster_spawn_program(const char *path, char *const argv[], char *const envp[], char *pid_entry,
                          const int *src_fds, const int *dst_fds, int nfds, pid_t *pid) {
    int highest = 2;
    for (int i = 0; i < nfds; i++) if (dst_fds[i] > highest) highest = dst_fds[i];
    if (nfds > CLUSTER_MAX_FDS) return EINVAL;
    int copies[CLUSTER_MAX_FDS];
    int made = 0, err = 0;
    for (; made < nfds; made++) {
        copies[made] = fcntl(src_fds[made], F_DUPFD_CLOEXEC, highest + 1);
        if (copies[made] < 0) { err = errno; goto close_copies; }
    }
    pid_t parent = getpid();
    pid_t child = fork();
    if (child < 0) { err = errno; goto close_copies; }
    if (child == 0) {
        // Only async-signal-safe calls from here to exec.
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(127);
        if (pid_entry != NULL) write_decimal(pid_entry + strlen("LISTEN_PID="), (long)getpid());
        for (int i = 0; i < nfds; i++) if (dup2(copies[i], dst_fds[i]) < 0) _exit(127);
        syscall(SYS_close_range, (unsigned)(highest + 1), ~0U, 0);
        struct sigaction action;
        memset(&action, 0, sizeof(action));
        action.sa_handler = SIG_DFL;
        for (int sig = 1; sig < 65; sig++) (void)sigaction(sig, &action, NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        setsid();
        execve(path, argv, envp);
        _exit(127);
    }
    *pid = child;
close_copies:
    for (int i = 0; i < made; i++) close(copies[i]);
    return err;
}

long cluster_peer_uid(int sock) {
    struct ucred credentials;
    socklen_t length = sizeof(credentials);
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &credentials, &length) != 0) return -1;
    return (long)credentials.uid;
}

long long cluster_tcp_bytes_read(int sock) {
    // What waits first, then what came: a byte arriving in between counts as read, never
    // the other way round (a connection read from must not pass for an unread one).
    int queued = 0;
    if (ioctl(sock, FIONREAD, &queued) != 0) return -1;
    struct tcp_info info;
    memset(&info, 0, sizeof info);
    socklen_t length = sizeof info;
    if (getsockopt(sock, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) return -1;
    if (length < offsetof(struct tcp_info, tcpi_bytes_received) + sizeof info.tcpi_bytes_received) return -1;
    return (long long)info.tcpi_bytes_received - queued;
}
