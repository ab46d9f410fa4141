/*
 * epollpong.c — the C floor's echo, but with each side waiting the way swift-cluster's
 * I/O thread waits. It answers "how much of swift-cluster's round trip is the shape of
 * its event loop, and how much is the Swift code on top?" with no Swift at all.
 *
 * Both ends: non-blocking AF_UNIX SOCK_STREAM socketpair registered in an epoll set
 * (EPOLLIN|EPOLLRDHUP, level-triggered); to receive, epoll_wait(timeout) then
 * recvmsg(MSG_DONTWAIT|MSG_CMSG_CLOEXEC) with a 64-descriptor control buffer, as
 * cluster_recvmsg does; to send, one sendmsg(MSG_DONTWAIT|MSG_NOSIGNAL) of a
 * 52-byte frame (swift-cluster's 20-byte header + the 32-byte payload).
 *
 *   ./epollpong roundtrip N [TIMEOUT_MS [DRAIN [SPIN_US]]]
 *
 *   TIMEOUT_MS  the parent's epoll_wait timeout: -1 sleeps with no timer; swift-cluster's
 *               primary passes the time to its next timer (each request arms a 5 s
 *               timeout), so the kernel arms an hrtimer on every sleep. Default 5000.
 *               The child, like a swift-cluster worker with no timers, always waits
 *               with -1.
 *   DRAIN       1: after a read, read again until EAGAIN, as swift-cluster's
 *               readAvailable does (one more recvmsg per message). Default 1.
 *   SPIN_US     poll with epoll_wait(0) for up to this long before sleeping. Default 0.
 *               Not something swift-cluster does; shows what spinning would buy.
 *
 * Prints one JSON line like pingpong.c (nearest-rank p50/p99 over N round trips after
 * 2000 warm-up ones). Exits non-zero after 60 s; the child is killed by pid.
 *
 * Build: cc -O2 -o epollpong epollpong.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FRAME 52
#define WARMUP 2000
#define TIMEOUT_S 60

static pid_t child_pid = -1;
static int timeout_ms = 5000, drain = 1, spin_us = 0;
static int is_child = 0;
static char rbuf[256 << 10];

static void die(const char *what) {
    if (what) perror(what);
    if (child_pid > 0) { kill(child_pid, SIGKILL); waitpid(child_pid, NULL, 0); }
    exit(1);
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "epollpong: timed out after 60 s\n";
    (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
    if (child_pid > 0) kill(child_pid, SIGKILL);
    _exit(2);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t percentile(const uint64_t *sorted, long n, double p) {
    long rank = (long)((p / 100.0) * (double)n + 0.999999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}

/* Waits for one whole frame the way the I/O thread does. Returns 0 on EOF. */
static int receive_frame(int ep, int fd) {
    size_t got = 0;
    for (;;) {
        struct epoll_event ev;
        int n = 0;
        if (spin_us > 0) {
            uint64_t end = now_ns() + (uint64_t)spin_us * 1000u;
            while ((n = epoll_wait(ep, &ev, 1, 0)) == 0 && now_ns() < end) {}
        }
        if (n == 0) n = epoll_wait(ep, &ev, 1, is_child ? -1 : timeout_ms);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        if (n <= 0) continue;
        for (;;) {
            char control[CMSG_SPACE(sizeof(int) * 64)];
            struct iovec iov = { rbuf, sizeof rbuf };
            struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1,
                                .msg_control = control, .msg_controllen = sizeof control };
            ssize_t r = recvmsg(fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
            if (r < 0) {
                if (errno == EAGAIN || errno == EINTR) break;
                return 0;
            }
            if (r == 0) return 0;
            got += (size_t)r;
            if (got >= FRAME && !drain) return 1;
        }
        if (got >= FRAME) return 1;
    }
}

static int send_frame(int fd) {
    static char frame[FRAME];
    struct iovec iov = { frame, FRAME };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
    return sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) == FRAME ? 0 : -1;
}

static int watch(int fd) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.fd = fd };
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    return ep;
}

int main(int argc, char **argv) {
    if (argc < 3 || strcmp(argv[1], "roundtrip") != 0) {
        fprintf(stderr, "usage: epollpong roundtrip N [TIMEOUT_MS [DRAIN [SPIN_US]]]\n");
        return 64;
    }
    long n = strtol(argv[2], NULL, 10);
    if (n < 1) return 64;
    if (argc > 3) timeout_ms = atoi(argv[3]);
    if (argc > 4) drain = atoi(argv[4]);
    if (argc > 5) spin_us = atoi(argv[5]);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) die("socketpair");
    signal(SIGALRM, on_alarm);
    alarm(TIMEOUT_S);
    fflush(stdout);

    pid_t parent = getpid();
    child_pid = fork();
    if (child_pid < 0) die("fork");
    if (child_pid == 0) {
        child_pid = -1;
        is_child = 1;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        alarm(TIMEOUT_S);
        close(sv[0]);
        int ep = watch(sv[1]);
        while (receive_frame(ep, sv[1]))
            if (send_frame(sv[1]) < 0) _exit(1);
        _exit(0);
    }
    close(sv[1]);
    int ep = watch(sv[0]);

    uint64_t *samples = malloc(sizeof(uint64_t) * (size_t)n);
    if (!samples) die("malloc");
    for (long i = 0; i < WARMUP + n; i++) {
        uint64_t t0 = now_ns();
        if (send_frame(sv[0]) < 0) die("sendmsg");
        if (!receive_frame(ep, sv[0])) die(NULL);
        uint64_t t1 = now_ns();
        if (i >= WARMUP) samples[i - WARMUP] = t1 - t0;
    }
    qsort(samples, (size_t)n, sizeof *samples, cmp_u64);
    printf("{\"bench\":\"roundtrip\",\"impl\":\"c-epoll\",\"p50_us\":%.1f,\"p99_us\":%.1f,\"n\":%ld,"
           "\"timeout_ms\":%d,\"drain\":%d,\"spin_us\":%d}\n",
           percentile(samples, n, 50) / 1000.0, percentile(samples, n, 99) / 1000.0, n,
           timeout_ms, drain, spin_us);
    free(samples);
    close(sv[0]);
    kill(child_pid, SIGKILL);
    waitpid(child_pid, NULL, 0);
    return 0;
}
