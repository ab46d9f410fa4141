/*
 * pingpong.c — the "C floor" for swift-cluster's channel benchmark.
 *
 * A parent and a forked child talk over an AF_UNIX SOCK_STREAM socketpair,
 * the same kind of transport a cluster IPC channel sits on. Nothing here
 * frames, encodes or allocates, so whatever our Swift channel or Node's
 * cluster IPC costs on top of these numbers is their own overhead.
 *
 *   ./pingpong roundtrip N   N timed 32-byte echoes (after 2000 warm-up)
 *   ./pingpong oneway N      child streams N 32-byte writes, parent counts
 *
 * Output: exactly one JSON line on stdout. Exit status non-zero on error or
 * if the run exceeds TIMEOUT_S seconds; the child is killed by pid either way.
 *
 * Build: cc -O2 -o pingpong pingpong.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MSG_SIZE 32
#define WARMUP 2000
#define TIMEOUT_S 60
#define STR_(x) #x
#define STR(x) STR_(x)

static pid_t child_pid = -1;

/* Never leave a child behind: every exit path of the parent goes through
 * here (or through the alarm handler, which does the same thing). */
static void die(const char *what) {
    if (what) perror(what);
    if (child_pid > 0) {
        kill(child_pid, SIGKILL);
        waitpid(child_pid, NULL, 0);
    }
    exit(1);
}

static void on_alarm(int sig) {
    (void)sig;
    /* Only async-signal-safe calls here. */
    static const char msg[] = "pingpong: timed out after " STR(TIMEOUT_S) " s\n";
    write(STDERR_FILENO, msg, sizeof msg - 1);
    if (child_pid > 0) kill(child_pid, SIGKILL);
    _exit(2);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A stream socket may hand back fewer bytes than asked for; a message is
 * only "received" once all of it has arrived. Returns 0 on EOF. */
static ssize_t read_full(int fd, void *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, (char *)buf + got, len - got);
        if (r == 0) return 0;
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static int write_full(int fd, const void *buf, size_t len) {
    size_t put = 0;
    while (put < len) {
        ssize_t w = write(fd, (const char *)buf + put, len - put);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        put += (size_t)w;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile; node-channel.js uses the same definition so the
 * two are comparable. */
static uint64_t percentile(const uint64_t *sorted, long n, double p) {
    long rank = (long)((p / 100.0) * (double)n + 0.999999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return sorted[rank - 1];
}

/* ---- child side ------------------------------------------------------- */

static void child_echo(int fd) {
    char buf[MSG_SIZE];
    for (;;) {
        ssize_t r = read_full(fd, buf, MSG_SIZE);
        if (r <= 0) _exit(r == 0 ? 0 : 1); /* parent closed: we're done */
        if (write_full(fd, buf, MSG_SIZE) < 0) _exit(1);
    }
}

static void child_stream(int fd, long n) {
    char buf[MSG_SIZE];
    memset(buf, 'x', sizeof buf);
    /* Wait for the parent's go byte so the timed window covers the whole
     * stream and not the fork/exec-free startup of this process. */
    char go;
    if (read_full(fd, &go, 1) != 1) _exit(1);
    for (long i = 0; i < n; i++) {
        /* One write() per message on purpose: that is what a naive channel
         * does, and it is the syscall cost we want in the floor. */
        if (write_full(fd, buf, MSG_SIZE) < 0) _exit(1);
    }
    _exit(0);
}

/* ---- parent side ------------------------------------------------------ */

static void run_roundtrip(int fd, long n) {
    uint64_t *samples = malloc(sizeof(uint64_t) * (size_t)n);
    if (!samples) die("malloc");
    char out[MSG_SIZE], in[MSG_SIZE];
    memset(out, 'p', sizeof out);

    for (long i = 0; i < WARMUP + n; i++) {
        uint64_t t0 = now_ns();
        if (write_full(fd, out, MSG_SIZE) < 0) die("write");
        ssize_t r = read_full(fd, in, MSG_SIZE);
        if (r <= 0) die(r == 0 ? NULL : "read");
        uint64_t t1 = now_ns();
        if (i >= WARMUP) samples[i - WARMUP] = t1 - t0;
    }

    qsort(samples, (size_t)n, sizeof *samples, cmp_u64);
    printf("{\"bench\":\"roundtrip\",\"impl\":\"c-floor\",\"p50_us\":%.1f,\"p99_us\":%.1f,\"n\":%ld}\n",
           percentile(samples, n, 50) / 1000.0, percentile(samples, n, 99) / 1000.0, n);
    free(samples);
}

static void run_oneway(int fd, long n) {
    /* Large reads: the reader should never be the bottleneck, so the number
     * reflects the writer's one-write-per-message cost. */
    static char buf[1 << 16];
    const uint64_t want = (uint64_t)n * MSG_SIZE;
    uint64_t got = 0;

    uint64_t t0 = now_ns();
    if (write_full(fd, "g", 1) < 0) die("write");
    while (got < want) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) die(r == 0 ? NULL : "read");
        got += (uint64_t)r;
    }
    uint64_t t1 = now_ns();

    double secs = (double)(t1 - t0) / 1e9;
    printf("{\"bench\":\"oneway\",\"impl\":\"c-floor\",\"msgs_per_s\":%.0f,\"n\":%ld}\n",
           (double)n / secs, n);
}

static void usage(void) {
    fprintf(stderr, "usage: pingpong roundtrip N | pingpong oneway N\n");
    exit(64);
}

int main(int argc, char **argv) {
    if (argc != 3) usage();
    int roundtrip = strcmp(argv[1], "roundtrip") == 0;
    if (!roundtrip && strcmp(argv[1], "oneway") != 0) usage();
    char *end;
    long n = strtol(argv[2], &end, 10);
    if (*end != '\0' || n < 1) usage();

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) die("socketpair");

    signal(SIGALRM, on_alarm);
    alarm(TIMEOUT_S);
    fflush(stdout);

    pid_t parent = getpid();
    child_pid = fork();
    if (child_pid < 0) die("fork");
    if (child_pid == 0) {
        child_pid = -1;
        /* If the parent is killed outright (SIGKILL, OOM), take the child
         * with it instead of leaving an orphan spinning on the socket. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        alarm(TIMEOUT_S); /* alarms are not inherited across fork */
        close(sv[0]);
        if (roundtrip) child_echo(sv[1]);
        else child_stream(sv[1], n);
        _exit(0);
    }
    close(sv[1]);

    if (roundtrip) run_roundtrip(sv[0], n);
    else run_oneway(sv[0], n);

    /* Closing our end makes the echo child see EOF and exit on its own;
     * the kill is the belt to that braces. */
    close(sv[0]);
    kill(child_pid, SIGKILL);
    int status;
    waitpid(child_pid, &status, 0);
    return 0;
}
