/*
 * cloister-init: the keeper (host side, parent of bwrap), the init (PID 1 inside the sandbox) and
 * the network relay (a service of init) of one cloister.
 *
 * The contract, wire protocol included, is docs/internals/init-protocol.md; keep the two in step.
 * This is C rather than Node because one of each runs per cloister and together they must cost
 * well under 1 MiB of proportional memory. Hence: no stdio buffers, no threads, no allocation in
 * the idle loops, nothing but libc.
 *
 * Layout:
 *   utilities ... messages, numbers, fds, signals, time, growable buffers
 *   keep ........ `cloister-init keep`: limits, the listen socket at fd 3, fork PROGRAM, wait
 *   init ........ `cloister-init init`: services, reaping, accepting connections
 *   session ..... one forked handler per connection: REQUEST, spawn, relay, EXIT
 *   relay ....... `cloister-init relay`: the in-sandbox TCP port -> guardian unix socket bridge,
 *                 started by init as a service; one epoll loop for every connection
 *
 * Build: cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror (scripts/build-native.mjs).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "handover-wire.h"
#include "relay-pump.h"

extern char **environ;

#define EXIT_SETUP 125          /* cloister-init itself failed; nothing was executed */
#define LISTEN_FD 3             /* where the keeper puts the listen socket and init finds it */
#define MAX_PAYLOAD (1u << 20)  /* largest frame payload accepted from a client */
#define HDR_LEN 5               /* u8 type + u32 length */
#define READ_CHUNK 65536        /* one read of command output becomes at most one frame */
#define OUT_HIGH (256u << 10)   /* stop reading command output while this much awaits the client */
#define STDIN_HIGH (256u << 10) /* stop reading the client while this much stdin awaits the command */
#define DRAIN_MS 200            /* after the command exits, how long output may pause before EXIT */
#define HANGUP_GRACE_MS 2000    /* SIGHUP -> SIGKILL delay when the client disconnects */
#define RESTART_MS 1000         /* minimum gap between two starts of one service */
#define RELAY_BACKLOG 1024    /* TCP accept queue (capped by net.core.somaxconn) */
#define TCP_LISTEN_FD 4         /* where `init --tcp-listen` leaves the bound port for the relay */
#define LIFELINE_MIN_FD 5       /* the lowest fd `--lifeline-fd` may name: 0-4 have owners of their own */
#define ERROR_FLUSH_MS 1000     /* how long an ERROR frame may take to reach a client */
#define LINGER_MS 1000          /* after the last frame, how long to wait for the client to close */

enum frame_type {
    F_REQUEST = 0x01,
    F_STDIN = 0x02,
    F_STDIN_EOF = 0x03,
    F_RESIZE = 0x04,
    F_SIGNAL = 0x05,
    F_STARTED = 0x81,
    F_STDOUT = 0x82,
    F_STDERR = 0x83,
    F_ERROR = 0x84,
    F_EXIT = 0x85,
};

/* ================================================================================== utilities */

/* Removed by fatal() so a failed keeper leaves no socket file behind. */
static const char *g_unlink_on_fatal;
/* A session's command; its process group is killed if the handler runs out of memory. */
static pid_t g_kill_on_oom;

/* write() all of buf to a blocking fd, riding out EINTR and short writes. */
static bool write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* The other half of the exec-error pipe (close-on-exec, written by a child only when its exec
 * fails): closes our write end, waits for exec or an errno, and returns that errno, or 0 when the
 * program is running. */
static int exec_error(int ep[2])
{
    close(ep[1]);
    int err = 0;
    ssize_t n;
    while ((n = read(ep[0], &err, sizeof err)) < 0 && errno == EINTR)
        ;
    close(ep[0]);
    return n == (ssize_t)sizeof err ? err : 0;
}

/* "cloister-init: <what>[: <strerror>]\n" on stderr, in a single write so that lines from
 * several processes sharing stderr don't interleave. */
static void vreport(int err, const char *fmt, va_list ap)
{
    char what[512], line[768];
    if (vsnprintf(what, sizeof what, fmt, ap) < 0)
        what[0] = '\0';
    int n = err ? snprintf(line, sizeof line, "cloister-init: %s: %s\n", what, strerror(err))
                : snprintf(line, sizeof line, "cloister-init: %s\n", what);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line) { /* truncated: still end the line */
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    write_all(STDERR_FILENO, line, (size_t)n);
}

static void report(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(err, fmt, ap);
    va_end(ap);
}

/* A set-up failure: one line on stderr, exit 125. */
static _Noreturn void fatal(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static _Noreturn void fatal(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(err, fmt, ap);
    va_end(ap);
    if (g_unlink_on_fatal)
        unlink(g_unlink_on_fatal);
    _exit(EXIT_SETUP);
}

/* Strict decimal parse: the whole string, within [min, max]. */
static bool parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static bool fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Make sure fds 0-2 are open (on /dev/null if need be), so that no pipe or socket we create
 * later lands on a standard fd and gets clobbered by a dup2(). */
static void ensure_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (!fd_is_open(fd) && open("/dev/null", O_RDWR) < 0)
            fatal(errno, "open /dev/null");
}

/* Close every fd >= low. close_range() needs Linux 5.9; before that, walk /proc/self/fd; without
 * /proc, fall back to a loop bounded by RLIMIT_NOFILE (capped so a huge limit can't stall us). */
static void close_fds_from(int low)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)low, ~0U, 0U) == 0)
        return;
#endif
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            long fd;
            if (parse_long(e->d_name, low, INT_MAX, &fd) && fd != dirfd(d))
                close((int)fd);
        }
        closedir(d);
        return;
    }
    long max = 65536;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)max)
        max = (long)rl.rlim_cur;
    for (long fd = low; fd < max; fd++)
        close((int)fd);
}

/* Give an about-to-exec child default dispositions and an empty mask: ignored or blocked signals
 * survive exec, and the command must not inherit our SIGPIPE=ignore or blocked SIGCHLD. */
static void reset_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &sa, NULL); /* EINVAL for libc-reserved signals: harmless */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* A byte queue: data lives in p[start, end). Consuming is O(1); space is reclaimed lazily. */
struct buf {
    uint8_t *p;
    size_t start, end, cap;
};

static size_t buf_size(const struct buf *b)
{
    return b->end - b->start;
}

static uint8_t *buf_data(const struct buf *b)
{
    return b->p + b->start;
}

static void buf_consume(struct buf *b, size_t n)
{
    b->start += n;
    if (b->start == b->end)
        b->start = b->end = 0;
}

static void buf_clear(struct buf *b)
{
    b->start = b->end = 0;
}

/* Room for `extra` more bytes at the end. Sizes here are bounded by the caps above, so there is
 * no overflow to fear; running out of memory ends the session (and its command). */
static void buf_reserve(struct buf *b, size_t extra)
{
    if (b->cap - b->end >= extra)
        return;
    if (b->start > 0) {
        memmove(b->p, b->p + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
        if (b->cap - b->end >= extra)
            return;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->end < extra)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
        if (g_kill_on_oom > 0)
            kill(-g_kill_on_oom, SIGKILL);
        _exit(1);
    }
    b->p = p;
    b->cap = cap;
}

static void buf_append(struct buf *b, const void *data, size_t len)
{
    buf_reserve(b, len);
    memcpy(b->p + b->end, data, len);
    b->end += len;
}

/* Queue one frame. */
static void put_frame(struct buf *b, uint8_t type, const void *payload, size_t len)
{
    uint8_t hdr[HDR_LEN];
    hdr[0] = type;
    put_le32(hdr + 1, (uint32_t)len);
    buf_append(b, hdr, HDR_LEN);
    if (len)
        buf_append(b, payload, len);
}

static void put_u32_frame(struct buf *b, uint8_t type, uint32_t v)
{
    uint8_t p[4];
    put_le32(p, v);
    put_frame(b, type, p, sizeof p);
}

/* ======================================================================================= keep */

struct keep_opts {
    const char *listen;
    const char *mark; /* an abstract socket name held for the keeper's life (src/sandbox/project-marks.ts) */
    const char **cgroups;
    size_t ncgroups;
    const char **rlimits; /* validated "NAME=N" strings */
    size_t nrlimits;
    long oom_score_adj;
    bool has_oom_score_adj;
    long nice;
    bool has_nice;
    bool die_with_parent;
    bool setsid;
    int status_fd; /* -1: none */
    int program_fd; /* -1: none; else PROGRAM comes from here (see keep_read_program) */
    int lifeline_fd; /* -1: none; else where PROGRAM finds the read end of the lifeline (keep_lifeline) */
    char **program;
};

static const struct {
    const char *name;
    int resource;
} rlimit_names[] = {
    { "nproc", RLIMIT_NPROC }, { "nofile", RLIMIT_NOFILE }, { "as", RLIMIT_AS },
    { "fsize", RLIMIT_FSIZE }, { "core", RLIMIT_CORE },
};

/* Split "NAME=N" into a resource and a value; false if either part is invalid. */
static bool parse_rlimit(const char *spec, int *resource, rlim_t *value)
{
    const char *eq = strchr(spec, '=');
    if (!eq || eq[1] < '0' || eq[1] > '9') /* strtoull would accept "-1" or " 1" */
        return false;
    for (size_t i = 0; i < sizeof rlimit_names / sizeof rlimit_names[0]; i++) {
        if (strlen(rlimit_names[i].name) == (size_t)(eq - spec) && !strncmp(spec, rlimit_names[i].name, (size_t)(eq - spec))) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(eq + 1, &end, 10);
            if (errno || *end)
                return false;
            *resource = rlimit_names[i].resource;
            *value = (rlim_t)v;
            return true;
        }
    }
    return false;
}

static void keep_parse(int argc, char **argv, struct keep_opts *o)
{
    memset(o, 0, sizeof *o);
    o->status_fd = -1;
    o->program_fd = -1;
    o->lifeline_fd = -1;
    o->cgroups = calloc((size_t)argc, sizeof *o->cgroups);
    o->rlimits = calloc((size_t)argc, sizeof *o->rlimits);
    if (!o->cgroups || !o->rlimits)
        fatal(ENOMEM, "keep");

    int i = 2;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        if (!strcmp(a, "--die-with-parent")) {
            o->die_with_parent = true;
            continue;
        }
        if (!strcmp(a, "--setsid")) {
            o->setsid = true;
            continue;
        }
        bool known = !strcmp(a, "--listen") || !strcmp(a, "--mark") || !strcmp(a, "--cgroup") || !strcmp(a, "--oom-score-adj") ||
                     !strcmp(a, "--nice") || !strcmp(a, "--rlimit") || !strcmp(a, "--status-fd") ||
                     !strcmp(a, "--program-fd") || !strcmp(a, "--lifeline-fd");
        if (!known)
            fatal(EINVAL, "keep: unknown option '%s'", a);
        if (i + 1 >= argc)
            fatal(EINVAL, "keep: %s needs a value", a);
        const char *v = argv[++i];
        long n;
        int res;
        rlim_t lim;
        if (!strcmp(a, "--listen")) {
            o->listen = v;
        } else if (!strcmp(a, "--mark")) {
            o->mark = v;
        } else if (!strcmp(a, "--cgroup")) {
            o->cgroups[o->ncgroups++] = v;
        } else if (!strcmp(a, "--rlimit")) {
            if (!parse_rlimit(v, &res, &lim))
                fatal(EINVAL, "keep: --rlimit '%s' (want nproc|nofile|as|fsize|core=N)", v);
            o->rlimits[o->nrlimits++] = v;
        } else if (!strcmp(a, "--oom-score-adj")) {
            if (!parse_long(v, -1000, 1000, &o->oom_score_adj))
                fatal(EINVAL, "keep: --oom-score-adj '%s'", v);
            o->has_oom_score_adj = true;
        } else if (!strcmp(a, "--nice")) {
            if (!parse_long(v, -20, 19, &o->nice))
                fatal(EINVAL, "keep: --nice '%s'", v);
            o->has_nice = true;
        } else if (!strcmp(a, "--lifeline-fd")) {
            if (!parse_long(v, LIFELINE_MIN_FD, INT_MAX, &n))
                fatal(EINVAL, "keep: --lifeline-fd '%s' (want a number from %d)", v, LIFELINE_MIN_FD);
            o->lifeline_fd = (int)n;
        } else if (!strcmp(a, "--program-fd")) {
            if (!parse_long(v, 0, INT_MAX, &n))
                fatal(EINVAL, "keep: --program-fd '%s'", v);
            o->program_fd = (int)n;
        } else { /* --status-fd */
            if (!parse_long(v, 0, INT_MAX, &n))
                fatal(EINVAL, "keep: --status-fd '%s'", v);
            o->status_fd = (int)n;
        }
    }
    if (o->program_fd >= 0) {
        if (i < argc)
            fatal(EINVAL, "keep: --program-fd and '-- PROGRAM' both given");
        return;
    }
    if (i >= argc)
        fatal(EINVAL, "keep: missing '-- PROGRAM [ARGS...]' (or --program-fd)");
    o->program = argv + i;
}

#define MAX_PROGRAM_BYTES (4u << 20) /* a bwrap argv with a few thousand mounts fits */

/*
 * `--program-fd N`: PROGRAM and its arguments, each NUL-terminated, read from fd N to its end. The
 * engine starts the keeper before it has planned the sandbox, so that joining the cgroups (the
 * first cgroup v1 migration waits ~15 ms for an RCU grace period) overlaps with that work. EOF
 * with nothing read is how the engine calls a launch off: the keeper exits without running anything.
 */
static char **keep_read_program(int fd)
{
    struct buf b = { 0 };
    for (;;) {
        buf_reserve(&b, 65536);
        ssize_t n = read(fd, b.p + b.end, b.cap - b.end);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fatal(errno, "keep: --program-fd %d", fd);
        if (n == 0)
            break;
        b.end += (size_t)n;
        if (buf_size(&b) > MAX_PROGRAM_BYTES)
            fatal(E2BIG, "keep: --program-fd %d", fd);
    }
    close(fd);
    size_t len = buf_size(&b);
    if (len == 0)
        fatal(ECANCELED, "keep: no program on --program-fd (the launch was called off)");
    if (b.p[len - 1] != '\0')
        fatal(EINVAL, "keep: --program-fd: the last argument is not NUL-terminated");
    size_t count = 0;
    for (size_t i = 0; i < len; i++)
        count += b.p[i] == '\0';
    char **argv = calloc(count + 1, sizeof *argv);
    if (!argv)
        fatal(ENOMEM, "keep");
    char *p = (char *)b.p;
    for (size_t k = 0; k < count; k++) {
        argv[k] = p;
        p += strlen(p) + 1;
    }
    return argv;
}

/* Write a short string to a file that must accept it whole (cgroup.procs, oom_score_adj). */
static void write_file(const char *path, const char *text, const char *what)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || !write_all(fd, text, strlen(text)))
        fatal(errno, "%s: %s", what, path);
    close(fd);
}

static void keep_join_cgroup(const char *dir)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/cgroup.procs", dir) >= (int)sizeof path)
        fatal(ENAMETOOLONG, "join cgroup %s", dir);
    write_file(path, "0\n", "join cgroup");
}

/* Binds the abstract unix socket name `name` and keeps it until the keeper exits, however it exits:
 * other processes learn from /proc/net/unix that this cloister runs. Not inherited by PROGRAM. */
static void keep_mark(const char *name)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    size_t len = strlen(name);
    if (len == 0 || len >= sizeof sa.sun_path - 1)
        fatal(EINVAL, "--mark '%s' (want 1 to %zu bytes)", name, sizeof sa.sun_path - 2);
    memcpy(sa.sun_path + 1, name, len); /* sun_path[0] = 0: the abstract namespace */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fatal(errno, "socket");
    if (bind(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len)) < 0)
        fatal(errno, "--mark %s", name);
}

/* Create the listening socket and put it at fd 3, inheritable, for PROGRAM (bwrap, then init). */
static void keep_listen(const char *path)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path)
        fatal(ENAMETOOLONG, "--listen %s", path);
    memcpy(sa.sun_path, path, strlen(path));

    /* fd 3 is the one slot we overwrite; anything the caller put there (other than the status fd,
     * already moved away) would silently vanish, e.g. bwrap's --seccomp fd. Refuse instead. */
    if (fd_is_open(LISTEN_FD))
        fatal(EBUSY, "--listen: fd %d is already open (it is reserved for the listen socket)", LISTEN_FD);

    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            fatal(EEXIST, "--listen %s exists and is not a socket", path);
        if (unlink(path) < 0)
            fatal(errno, "unlink %s", path);
    } else if (errno != ENOENT) {
        fatal(errno, "stat %s", path);
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        fatal(errno, "socket");
    mode_t old = umask(0177); /* mode 0600 from birth: no window where others may connect */
    int r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    int err = errno;
    umask(old);
    if (r < 0)
        fatal(err, "bind %s", path);
    g_unlink_on_fatal = path;
    if (listen(fd, 128) < 0)
        fatal(errno, "listen %s", path);
    if (fd == LISTEN_FD) {
        if (fcntl(fd, F_SETFD, 0) < 0)
            fatal(errno, "fcntl");
    } else {
        if (dup2(fd, LISTEN_FD) < 0) /* dup2 leaves the new fd without FD_CLOEXEC */
            fatal(errno, "dup2");
        close(fd);
    }
}

/* Move the status fd to a private FD_CLOEXEC copy: it is ours to report on, not PROGRAM's, and
 * it may sit on fd 3 where the listen socket goes. Returns the copy. */
static int keep_take_status_fd(int fd)
{
    if (!fd_is_open(fd))
        fatal(EBADF, "--status-fd %d", fd);
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, LISTEN_FD + 1);
    if (copy < 0)
        fatal(errno, "--status-fd %d", fd);
    if (fd > 2) /* 0-2 belong to PROGRAM too */
        close(fd);
    return copy;
}

/*
 * `--lifeline-fd N`: a pipe whose read end goes to PROGRAM at fd N (bwrap passes it on to init, the
 * sandbox's PID 1) and whose only write end stays here. When the keeper dies, however it dies, the
 * pipe hangs up and init ends the cloister. bwrap's own parent-death signal is not enough: a keeper
 * killed while bwrap is still setting up can take bwrap down before bwrap's child has armed its
 * parent-death signal (bubblewrap 0.8 does not check for that), and that child, PID 1 to be, would
 * live on orphaned; without cgroups nothing else would find it. The write end (FD_CLOEXEC: PROGRAM
 * never holds it) is never closed: it ends with the keeper, and that is its message.
 */
static void keep_lifeline(int fd)
{
    if (fd_is_open(fd))
        fatal(EBUSY, "--lifeline-fd: fd %d is already open", fd);
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        fatal(errno, "--lifeline-fd: pipe");
    /* Either end may have landed on fd N itself (it was the lowest free one): the write end goes
     * above N first, then the read end onto N without FD_CLOEXEC. */
    if (fcntl(p[1], F_DUPFD_CLOEXEC, fd + 1) < 0)
        fatal(errno, "--lifeline-fd: fcntl");
    close(p[1]);
    if (p[0] == fd ? fcntl(fd, F_SETFD, 0) < 0 : dup2(p[0], fd) < 0)
        fatal(errno, "--lifeline-fd: fd %d", fd);
    if (p[0] != fd)
        close(p[0]);
}

static void keep_apply_limits(const struct keep_opts *o)
{
    for (size_t i = 0; i < o->ncgroups; i++)
        keep_join_cgroup(o->cgroups[i]);
    if (o->has_oom_score_adj) {
        char v[16];
        snprintf(v, sizeof v, "%ld\n", o->oom_score_adj);
        write_file("/proc/self/oom_score_adj", v, "--oom-score-adj");
    }
    if (o->has_nice && setpriority(PRIO_PROCESS, 0, (int)o->nice) < 0)
        fatal(errno, "--nice %ld", o->nice);
    for (size_t i = 0; i < o->nrlimits; i++) {
        int res = 0;
        rlim_t v = 0;
        parse_rlimit(o->rlimits[i], &res, &v); /* validated while parsing */
        struct rlimit rl = { v, v };
        if (setrlimit(res, &rl) < 0)
            fatal(errno, "--rlimit %s", o->rlimits[i]);
    }
}

static int wait_status_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return EXIT_SETUP;
}

static int keep_main(int argc, char **argv)
{
    pid_t parent = getppid();
    struct keep_opts o;
    keep_parse(argc, argv, &o);

    /* Forwarded signals and SIGCHLD are taken synchronously with sigwaitinfo(); blocking them
     * this early also means a SIGTERM during set-up can't leave a stray socket file. SIGPIPE is
     * blocked so a vanished status reader gives EPIPE, not death. SIGCHLD must not be ignored,
     * or the child's exit status would be discarded. */
    sigset_t waitset, blockset, oldmask;
    sigemptyset(&waitset);
    sigaddset(&waitset, SIGTERM);
    sigaddset(&waitset, SIGINT);
    sigaddset(&waitset, SIGHUP);
    sigaddset(&waitset, SIGCHLD);
    blockset = waitset;
    sigaddset(&blockset, SIGPIPE);
    sigprocmask(SIG_BLOCK, &blockset, &oldmask);
    signal(SIGCHLD, SIG_DFL);

    ensure_std_fds();
    /* Already leading a session (e.g. spawned detached) is as good as becoming one. */
    if (o.setsid && setsid() < 0 && getsid(0) != getpid())
        fatal(errno, "setsid");
    if (o.die_with_parent) {
        /* Out of the caller's process group (bwrap, forked below, goes with it): Ctrl-C at a
         * terminal, timeout(1) and CI runners signal the whole group, and the keeper and bwrap
         * dying of it first made `cloister run` report "the cloister is gone" (exit 125) instead
         * of stopping it in order (exit 130/143). The caller's death still takes the keeper. */
        if (setpgid(0, 0) < 0)
            fatal(errno, "setpgid");
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
            fatal(errno, "prctl(PR_SET_PDEATHSIG)");
        if (getppid() != parent)
            fatal(ESRCH, "--die-with-parent: the parent is already gone");
    }
    /* First, while fd N is still free: the status fd's private copy goes to the lowest free fd. */
    if (o.lifeline_fd >= 0)
        keep_lifeline(o.lifeline_fd);
    int status = o.status_fd >= 0 ? keep_take_status_fd(o.status_fd) : -1;
    if (o.listen)
        keep_listen(o.listen);
    if (o.mark)
        keep_mark(o.mark);
    keep_apply_limits(&o);
    if (o.program_fd >= 0)
        o.program = keep_read_program(o.program_fd);

    /* A FD_CLOEXEC pipe tells us whether exec worked: EOF means yes, an errno means no. */
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) < 0)
        fatal(errno, "pipe");
    pid_t child = fork();
    if (child < 0)
        fatal(errno, "fork");
    if (child == 0) {
        sigprocmask(SIG_SETMASK, &oldmask, NULL);
        execvp(o.program[0], o.program);
        int err = errno;
        write_all(ep[1], &err, sizeof err);
        _exit(EXIT_SETUP);
    }
    if (o.listen)
        close(LISTEN_FD); /* only the sandbox holds it now: when it dies, clients see it */
    if (o.lifeline_fd >= 0)
        close(o.lifeline_fd); /* the read end is PROGRAM's */
    int err = exec_error(ep);
    if (err) {
        waitpid(child, NULL, 0);
        fatal(err, "exec %s", o.program[0]);
    }
    g_unlink_on_fatal = NULL;

    if (status >= 0) {
        char line[32];
        int len = snprintf(line, sizeof line, "started %d\n", (int)child);
        write_all(status, line, (size_t)len); /* a reader that left doesn't concern us */
        close(status);
    }

    for (;;) {
        int sig = sigwaitinfo(&waitset, NULL);
        if (sig < 0)
            continue; /* EINTR (e.g. after SIGSTOP/SIGCONT) */
        if (sig != SIGCHLD) {
            kill(child, sig);
            continue;
        }
        int st;
        pid_t r;
        while ((r = waitpid(child, &st, WNOHANG)) < 0 && errno == EINTR)
            ;
        if (r == child)
            _exit(wait_status_code(st));
    }
}

/* ==================================================================================== session */

/* A decoded REQUEST. The strings point into `blob`, a private copy of the payload. */
struct request {
    bool tty;
    bool err_pipe; /* tty mode with the command's stderr on a pipe of its own (STDERR frames) */
    uint16_t rows, cols;
    char *cwd;
    char **argv;
    char **env;
    char *blob;
};

struct session {
    int sock;   /* the client connection, non-blocking */
    int sfd;    /* signalfd for SIGCHLD */
    bool tty;   /* tty mode: in_fd == out_fd == the PTY master; err_fd is -1 unless rq->err_pipe */
    int in_fd;  /* where STDIN payloads go */
    int out_fd; /* STDOUT source */
    int err_fd; /* STDERR source */
    pid_t pid;  /* the command, also its process group and session id; 0 until spawned */
    /* The command is left an unreaped zombie until the handler is done, so its pid (and process
     * group id) can't be recycled while we may still signal -pid. */
    bool exited;
    int exit_code;
    bool stdin_eof;         /* STDIN_EOF seen: close stdin once to_cmd has drained */
    int64_t drain_deadline; /* after exit: when to stop waiting for more output */
    struct buf in;          /* bytes from the client, not yet decoded */
    struct buf to_cmd;      /* STDIN bytes not yet written to the command */
    struct buf out;         /* frames not yet sent to the client */
};

/* Send what the socket takes now. False when the client has gone. */
static bool sock_flush(struct session *s)
{
    while (buf_size(&s->out) > 0) {
        ssize_t n = send(s->sock, buf_data(&s->out), buf_size(&s->out), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            buf_consume(&s->out, (size_t)n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        } else {
            return false;
        }
    }
    return true;
}

/* Block until everything queued is sent, discarding whatever else the client sends meanwhile
 * (unread input would turn our close into a connection reset). timeout_ms < 0: no limit.
 * False if the client went away or time ran out. */
static bool sock_drain(struct session *s, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    bool readable = true;
    for (;;) {
        if (!sock_flush(s))
            return false;
        if (buf_size(&s->out) == 0)
            return true;
        int wait = -1;
        if (timeout_ms >= 0) {
            int64_t left = deadline - now_ms();
            if (left <= 0)
                return false;
            wait = (int)left;
        }
        struct pollfd p = { s->sock, (short)(POLLOUT | (readable ? POLLIN : 0)), 0 };
        if (poll(&p, 1, wait) < 0)
            continue;
        if (p.revents & POLLIN) {
            char junk[4096];
            ssize_t n = recv(s->sock, junk, sizeof junk, MSG_DONTWAIT);
            if (n == 0)
                readable = false; /* half-closed: they may still read */
            else if (n < 0 && errno != EINTR && errno != EAGAIN)
                return false;
        } else if (p.revents & (POLLHUP | POLLERR)) {
            return false;
        }
    }
}

/* After the last frame: half-close, then wait (briefly) for the client to close its side,
 * discarding what it still sends. Closing at once would turn a keystroke or resize the client
 * sent just before seeing EXIT into EPIPE on its side, and a client that dies of EPIPE may never
 * read the frames we sent (Node discards them); unread input here would also reset the
 * connection. */
static void sock_linger(struct session *s)
{
    shutdown(s->sock, SHUT_WR);
    int64_t deadline = now_ms() + LINGER_MS;
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return;
        struct pollfd p = { s->sock, POLLIN, 0 };
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return;
        char junk[4096];
        ssize_t n = recv(s->sock, junk, sizeof junk, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK))
            return;
    }
}

/* The client is gone (or broke the protocol) while the command may still run: hang up on its
 * process group as a terminal would, and make sure 2 s later. Never returns. */
static _Noreturn void session_hangup(struct session *s)
{
    close_fd(&s->sock);
    if (s->in_fd != s->out_fd)
        close_fd(&s->in_fd);
    close_fd(&s->out_fd); /* in tty mode this hangs up the PTY: SIGHUP to its session */
    close_fd(&s->err_fd);
    if (s->pid > 0) {
        kill(-s->pid, SIGHUP);
        kill(-s->pid, SIGCONT); /* a stopped group would never see the SIGHUP */
        sleep_ms(HANGUP_GRACE_MS);
        kill(-s->pid, SIGKILL);
        waitpid(s->pid, NULL, 0);
    }
    _exit(0);
}

/* Tell the client what went wrong and close, taking the command (if any) down with it. */
static _Noreturn void session_error(struct session *s, const char *msg)
{
    put_frame(&s->out, F_ERROR, msg, strlen(msg));
    if (sock_drain(s, ERROR_FLUSH_MS))
        sock_linger(s);
    session_hangup(s);
}

static _Noreturn void session_protocol_error(struct session *s, const char *why)
{
    char msg[256];
    snprintf(msg, sizeof msg, "protocol error: %s", why);
    session_error(s, msg);
}

static _Noreturn void session_setup_error(struct session *s, const char *what, int err)
{
    char msg[256];
    snprintf(msg, sizeof msg, "cannot start the command: %s: %s", what, strerror(err));
    session_error(s, msg);
}

/* Look at the frame at the front of s->in. Returns 1 when it is complete (*type, *len set),
 * 0 when more bytes are needed, -1 on a protocol error, which the header alone reveals: we
 * never buffer a payload we would reject. */
static int frame_peek(const struct session *s, uint8_t *type, uint32_t *len, char *why, size_t whylen)
{
    if (buf_size(&s->in) < HDR_LEN)
        return 0;
    const uint8_t *h = buf_data(&s->in);
    *type = h[0];
    *len = get_le32(h + 1);
    if (*type < F_REQUEST || *type > F_SIGNAL) {
        snprintf(why, whylen, "unknown frame type 0x%02x", *type);
        return -1;
    }
    if (*len > MAX_PAYLOAD) {
        snprintf(why, whylen, "frame of %u bytes exceeds the %u-byte limit", *len, MAX_PAYLOAD);
        return -1;
    }
    return buf_size(&s->in) - HDR_LEN >= *len ? 1 : 0;
}

/* Read what the client sent into s->in. False when the client has gone. */
static bool sock_read(struct session *s)
{
    buf_reserve(&s->in, READ_CHUNK);
    ssize_t n = recv(s->sock, s->in.p + s->in.end, READ_CHUNK, MSG_DONTWAIT);
    if (n > 0) {
        s->in.end += (size_t)n;
        return true;
    }
    return n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Decode a REQUEST payload. Every count and string is checked against the payload's bounds:
 * the peer may be hostile. Returns NULL or what is wrong. */
static const char *parse_request(const uint8_t *p, uint32_t len, struct request *rq)
{
    if (len < 13)
        return "REQUEST shorter than its 13-byte header";
    if (p[0] > 2)
        return "REQUEST terminal mode is not 0, 1 or 2";
    rq->tty = p[0] != 0;
    rq->err_pipe = p[0] == 2;
    rq->rows = get_le16(p + 1);
    rq->cols = get_le16(p + 3);
    uint32_t argc = get_le32(p + 5), envc = get_le32(p + 9);
    if (argc < 1)
        return "REQUEST argc is 0";
    /* Each string takes at least its NUL: more strings than bytes can't be right. */
    uint64_t nstr = 1 + (uint64_t)argc + envc;
    size_t body = len - 13;
    if (nstr > body)
        return "REQUEST counts exceed its length";

    rq->blob = malloc(body);
    rq->argv = calloc((size_t)argc + 1, sizeof(char *));
    rq->env = calloc((size_t)envc + 1, sizeof(char *));
    if (!rq->blob || !rq->argv || !rq->env)
        return "out of memory";
    memcpy(rq->blob, p + 13, body);

    char *cur = rq->blob, *end = rq->blob + body;
    for (uint64_t i = 0; i < nstr; i++) {
        char *nul = memchr(cur, '\0', (size_t)(end - cur));
        if (!nul)
            return "REQUEST string not NUL-terminated";
        if (i == 0)
            rq->cwd = cur;
        else if (i <= argc)
            rq->argv[i - 1] = cur;
        else
            rq->env[i - 1 - argc] = cur;
        cur = nul + 1;
    }
    if (cur != end)
        return "REQUEST has trailing bytes";
    return NULL;
}

/* Wait for the first frame, which must be a well-formed REQUEST. */
static void session_read_request(struct session *s, struct request *rq)
{
    char why[128];
    for (;;) {
        uint8_t type = 0;
        uint32_t len = 0;
        int r = frame_peek(s, &type, &len, why, sizeof why);
        if (r < 0)
            session_protocol_error(s, why);
        if (buf_size(&s->in) >= HDR_LEN && type != F_REQUEST)
            session_protocol_error(s, "the first frame must be REQUEST");
        if (r > 0) {
            const char *bad = parse_request(buf_data(&s->in) + HDR_LEN, len, rq);
            if (bad)
                session_protocol_error(s, bad);
            buf_consume(&s->in, HDR_LEN + len);
            return;
        }
        struct pollfd p = { s->sock, POLLIN, 0 };
        if (poll(&p, 1, -1) < 0)
            continue;
        if (!sock_read(s))
            _exit(0); /* left before asking for anything */
    }
}

/* In the forked child: report errno through the exec-status pipe and give up. */
static _Noreturn void child_fail(int errfd, int err)
{
    write_all(errfd, &err, sizeof err);
    _exit(127);
}

/* In the forked child: become the command described by rq, with fds 0-2 from fd[]. */
static _Noreturn void exec_command(const struct request *rq, const int fd[3], int errfd)
{
    if (setsid() < 0)
        child_fail(errfd, errno);
    if (rq->tty && ioctl(fd[0], TIOCSCTTY, 0) < 0)
        child_fail(errfd, errno);
    for (int i = 0; i < 3; i++) /* all fd[i] >= 3: ensure_std_fds() kept 0-2 taken */
        if (dup2(fd[i], i) < 0)
            child_fail(errfd, errno);
    if (chdir(rq->cwd) < 0)
        child_fail(errfd, -errno); /* negative: the working directory failed, not the program */
    /* Park the status pipe at 3 (close-on-exec) and close everything above it. */
    if (errfd != 3) {
        if (dup3(errfd, 3, O_CLOEXEC) < 0)
            child_fail(errfd, errno);
        errfd = 3;
    }
    close_fds_from(4);
    reset_signals();
    environ = rq->env; /* execvp searches the PATH of the requested environment */
    execvp(rq->argv[0], rq->argv);
    child_fail(errfd, errno);
}

/* A pipe for the command's stderr: its read end becomes s->err_fd, its write end the command's fd 2. */
static void open_err_pipe(struct session *s, int child_fd[3])
{
    int err[2];
    if (pipe2(err, O_CLOEXEC) < 0)
        session_setup_error(s, "pipe", errno);
    s->err_fd = err[0];
    set_nonblock(s->err_fd); /* our end only: each end is its own open file description */
    child_fd[2] = err[1];
}

static void open_pty(struct session *s, const struct request *rq, int child_fd[3])
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0)
        session_setup_error(s, "posix_openpt", errno);
    s->in_fd = s->out_fd = m;
    char name[128];
    int err;
    if (grantpt(m) < 0 || unlockpt(m) < 0)
        session_setup_error(s, "unlockpt", errno);
    if ((err = ptsname_r(m, name, sizeof name)) != 0)
        session_setup_error(s, "ptsname", err);
    /* We open the slave before forking so that the master never sees a moment with no slave
     * open (which reads as a hangup); the child makes it its controlling terminal. */
    int sl = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (sl < 0)
        session_setup_error(s, name, errno);
    struct winsize ws = { .ws_row = rq->rows, .ws_col = rq->cols };
    ioctl(m, TIOCSWINSZ, &ws);
    set_nonblock(m);
    child_fd[0] = child_fd[1] = child_fd[2] = sl;
    if (rq->err_pipe) /* the user redirected their stderr: keep the command's apart from the terminal */
        open_err_pipe(s, child_fd);
}

static void open_pipes(struct session *s, int child_fd[3])
{
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0)
        session_setup_error(s, "pipe", errno);
    s->in_fd = in[1];
    s->out_fd = out[0];
    set_nonblock(s->in_fd); /* our ends only: each end is its own open file description */
    set_nonblock(s->out_fd);
    child_fd[0] = in[0];
    child_fd[1] = out[1];
    open_err_pipe(s, child_fd);
}

/* Fork and exec the command; send STARTED, or the failure message and EXIT 126/127. */
static void session_spawn(struct session *s, const struct request *rq)
{
    int child_fd[3];
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) < 0)
        session_setup_error(s, "pipe", errno);
    if (rq->tty)
        open_pty(s, rq, child_fd);
    else
        open_pipes(s, child_fd);

    pid_t pid = fork();
    if (pid < 0)
        session_setup_error(s, "fork", errno);
    if (pid == 0)
        exec_command(rq, child_fd, ep[1]);
    s->pid = g_kill_on_oom = pid;
    close(child_fd[0]);
    if (!rq->tty)
        close(child_fd[1]);
    if (child_fd[2] != child_fd[0])
        close(child_fd[2]);
    int err = exec_error(ep);
    if (err) {
        /* A working directory that is not there is the caller's mistake (cloister's 125), not the program's. */
        const bool in_dir = err < 0;
        const char *what = in_dir ? rq->cwd : rq->argv[0], *reason = strerror(in_dir ? -err : err);
        size_t len = strlen(what) + strlen(reason) + 64;
        char *msg = malloc(len);
        if (!msg)
            _exit(1);
        int m = in_dir ? snprintf(msg, len, "cloister: cannot enter the working directory '%s': %s\n", what, reason)
                       : snprintf(msg, len, "cloister: cannot run '%s': %s\n", what, reason);
        put_frame(&s->out, s->err_fd < 0 ? F_STDOUT : F_STDERR, msg, (size_t)m);
        put_u32_frame(&s->out, F_EXIT, in_dir ? 125 : err == ENOENT ? 127 : 126);
        if (sock_drain(s, -1))
            sock_linger(s);
        waitpid(pid, NULL, 0);
        _exit(0);
    }
    put_u32_frame(&s->out, F_STARTED, (uint32_t)pid);
}

/* Close the command's stdin (pipe mode). In tty mode the master is also the output: keep it. */
static void close_stdin(struct session *s)
{
    buf_clear(&s->to_cmd);
    if (s->in_fd == s->out_fd)
        s->in_fd = -1;
    else
        close_fd(&s->in_fd);
}

/* SIGCHLD arrived: has the command exited? Observe without reaping (see struct session). */
static void session_check_exit(struct session *s)
{
    struct signalfd_siginfo ssi;
    while (read(s->sfd, &ssi, sizeof ssi) > 0)
        ; /* drain; waitid() below is the source of truth */
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)s->pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid != s->pid)
        return;
    s->exited = true;
    s->exit_code = si.si_code == CLD_EXITED ? (si.si_status & 0xff) : 128 + si.si_status;
    s->drain_deadline = now_ms() + DRAIN_MS;
    if (!s->tty)
        close_stdin(s); /* nobody left to read it */
}

/* One read from a command output fd, queued as one frame. EOF (EIO from a PTY master whose
 * slave is closed everywhere) closes the fd. */
static void relay_output(struct session *s, int *fd, uint8_t type)
{
    buf_reserve(&s->out, HDR_LEN + READ_CHUNK);
    uint8_t *frame = s->out.p + s->out.end;
    ssize_t n = read(*fd, frame + HDR_LEN, READ_CHUNK);
    if (n > 0) {
        frame[0] = type;
        put_le32(frame + 1, (uint32_t)n);
        s->out.end += HDR_LEN + (size_t)n;
        if (s->exited)
            s->drain_deadline = now_ms() + DRAIN_MS;
        return;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (*fd == s->in_fd) { /* tty mode: no more typing into a dead terminal */
        buf_clear(&s->to_cmd);
        s->in_fd = -1;
    }
    close_fd(fd);
}

/* Write pending STDIN bytes to the command. */
static void write_stdin(struct session *s)
{
    while (buf_size(&s->to_cmd) > 0 && s->in_fd >= 0) {
        ssize_t n = write(s->in_fd, buf_data(&s->to_cmd), buf_size(&s->to_cmd));
        if (n > 0) {
            buf_consume(&s->to_cmd, (size_t)n);
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else { /* EPIPE: the command closed its stdin; what's left can't be delivered */
            if (s->tty)
                buf_clear(&s->to_cmd);
            else
                close_stdin(s);
            return;
        }
    }
    if (s->stdin_eof && !s->tty && s->in_fd >= 0 && buf_size(&s->to_cmd) == 0)
        close_stdin(s);
}

/* Act on one client frame after REQUEST. */
static void handle_frame(struct session *s, uint8_t type, const uint8_t *p, uint32_t len)
{
    switch (type) {
    case F_STDIN:
        if (s->in_fd >= 0 && !s->stdin_eof)
            buf_append(&s->to_cmd, p, len);
        break;
    case F_STDIN_EOF:
        if (len != 0)
            session_protocol_error(s, "STDIN_EOF carries a payload");
        if (!s->tty) /* a terminal has no EOF of its own; the client sends ^D if it wants one */
            s->stdin_eof = true;
        break;
    case F_RESIZE:
        if (len != 4)
            session_protocol_error(s, "RESIZE payload is not 4 bytes");
        if (s->tty && s->out_fd >= 0) {
            struct winsize ws = { .ws_row = get_le16(p), .ws_col = get_le16(p + 2) };
            ioctl(s->out_fd, TIOCSWINSZ, &ws); /* the kernel sends SIGWINCH */
        }
        break;
    case F_SIGNAL:
        if (len != 1)
            session_protocol_error(s, "SIGNAL payload is not 1 byte");
        kill(-s->pid, p[0]); /* safe even after exit: the unreaped zombie pins the group id */
        break;
    default: /* F_REQUEST: frame_peek() lets only client types through */
        session_protocol_error(s, "REQUEST sent twice");
    }
}

/* Decode and act on buffered client frames, unless the command is behind on its stdin. */
static void handle_frames(struct session *s)
{
    char why[128];
    while (buf_size(&s->to_cmd) < STDIN_HIGH) {
        uint8_t type;
        uint32_t len;
        int r = frame_peek(s, &type, &len, why, sizeof why);
        if (r < 0)
            session_protocol_error(s, why);
        if (r == 0)
            break;
        handle_frame(s, type, buf_data(&s->in) + HDR_LEN, len);
        buf_consume(&s->in, HDR_LEN + len);
    }
    write_stdin(s); /* also closes stdin after STDIN_EOF once everything is written */
}

/* Relay between client and command until the command has exited and its output has reached
 * EOF, or paused for DRAIN_MS (background processes may hold the pipes open). */
static void session_relay(struct session *s)
{
    for (;;) {
        handle_frames(s);
        int64_t now = now_ms();
        int timeout = -1;
        bool want_out = buf_size(&s->out) < OUT_HIGH;
        if (s->exited) {
            if (s->out_fd < 0 && s->err_fd < 0)
                return;
            if (!want_out) /* the pause is the client's, not the command's */
                s->drain_deadline = now + DRAIN_MS;
            if (now >= s->drain_deadline)
                return;
            timeout = (int)(s->drain_deadline - now);
        }

        /* fds we have no interest in stay out of the set: poll would report their hangups
         * regardless and we'd spin */
        struct pollfd p[5];
        int n = 0, i_sig = -1, i_out = -1, i_err = -1, i_in = -1;
        bool read_sock = buf_size(&s->to_cmd) < STDIN_HIGH && buf_size(&s->in) < HDR_LEN + MAX_PAYLOAD;
        bool want_in = buf_size(&s->to_cmd) > 0 && s->in_fd >= 0;
        int i_sock = n;
        p[n++] = (struct pollfd){ s->sock, (short)((read_sock ? POLLIN : 0) | (buf_size(&s->out) ? POLLOUT : 0)), 0 };
        if (!s->exited) {
            i_sig = n;
            p[n++] = (struct pollfd){ s->sfd, POLLIN, 0 };
        }
        if (s->out_fd >= 0 && (want_out || (want_in && s->tty))) {
            i_out = n;
            p[n++] = (struct pollfd){ s->out_fd, (short)((want_out ? POLLIN : 0) | (want_in && s->tty ? POLLOUT : 0)), 0 };
            if (s->tty)
                i_in = i_out;
        }
        if (s->err_fd >= 0 && want_out) {
            i_err = n;
            p[n++] = (struct pollfd){ s->err_fd, POLLIN, 0 };
        }
        if (want_in && !s->tty) {
            i_in = n;
            p[n++] = (struct pollfd){ s->in_fd, POLLOUT, 0 };
        }

        if (poll(p, (nfds_t)n, timeout) < 0)
            continue;

        if (i_sig >= 0 && p[i_sig].revents)
            session_check_exit(s);
        if (i_out >= 0 && want_out && (p[i_out].revents & (POLLIN | POLLHUP | POLLERR)))
            relay_output(s, &s->out_fd, F_STDOUT);
        if (i_err >= 0 && (p[i_err].revents & (POLLIN | POLLHUP | POLLERR)))
            relay_output(s, &s->err_fd, F_STDERR);
        if (i_in >= 0 && p[i_in].revents)
            write_stdin(s);

        short rs = p[i_sock].revents;
        if ((rs & POLLOUT) && !sock_flush(s))
            session_hangup(s);
        if (read_sock && (rs & (POLLIN | POLLHUP | POLLERR))) {
            if (!sock_read(s))
                session_hangup(s);
        } else if (rs & (POLLHUP | POLLERR)) {
            session_hangup(s);
        }
    }
}

/* A forked handler serving one connection from REQUEST to EXIT. Never returns. */
static _Noreturn void session_main(int sock)
{
    struct session s;
    memset(&s, 0, sizeof s);
    s.sock = sock;
    s.in_fd = s.out_fd = s.err_fd = -1;

    /* SIGCHLD is still blocked from init; take it through our own signalfd. */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    s.sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s.sfd < 0)
        session_setup_error(&s, "signalfd", errno);

    struct request rq;
    memset(&rq, 0, sizeof rq);
    session_read_request(&s, &rq);
    s.tty = rq.tty;
    session_spawn(&s, &rq);
    session_relay(&s);

    put_u32_frame(&s.out, F_EXIT, (uint32_t)s.exit_code);
    if (!sock_drain(&s, -1))
        session_hangup(&s); /* background processes may remain in the group */
    sock_linger(&s);
    close(s.sock);
    waitpid(s.pid, NULL, 0);
    _exit(0);
}

/* ======================================================================================= init */

struct service {
    char **argv;
    pid_t pid; /* 0: not running */
    int64_t started_at;
};

/* Listen on 127.0.0.1:PORT and leave the socket at TCP_LISTEN_FD for services to inherit (the
 * relay takes it with `relay --fd`). Bound by init before it serves anything, so the port accepts
 * from the first command on: a service started a moment later would race the first connection.
 * The socket outlives service restarts, so a restarted relay finds it still bound. */
static bool tcp_listen_bound;

static void init_tcp_listen(const char *port_text)
{
    long port;
    if (!parse_long(port_text, 1, 65535, &port))
        fatal(EINVAL, "init: --tcp-listen needs a port, got '%s'", port_text);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0 || listen(fd, RELAY_BACKLOG) < 0)
        fatal(errno, "init: cannot listen on 127.0.0.1:%ld", port);
    if (fd == TCP_LISTEN_FD) { /* the lowest free fd often is 4 already */
        if (fcntl(fd, F_SETFD, 0) < 0)
            fatal(errno, "init: fcntl fd %d", fd);
    } else {
        if (dup2(fd, TCP_LISTEN_FD) < 0) /* dup2 clears close-on-exec: services inherit it */
            fatal(errno, "init: dup2 to fd %d", TCP_LISTEN_FD);
        close(fd);
    }
    tcp_listen_bound = true;
}

/* The keeper's end of the lifeline (`--lifeline-fd`, see keep_lifeline); -1 without one. */
static int g_lifeline_fd = -1;

static void init_lifeline(const char *fd_text)
{
    long fd;
    if (!parse_long(fd_text, LIFELINE_MIN_FD, INT_MAX, &fd))
        fatal(EINVAL, "init: --lifeline-fd '%s' (want a number from %d)", fd_text, LIFELINE_MIN_FD);
    /* Commands and services never get it; a session handler's inherited copy is harmless. */
    if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0)
        fatal(errno, "init: --lifeline-fd %ld", fd);
    g_lifeline_fd = (int)fd;
}

/* The cloister's process limit where no cgroup gives one. RLIMIT_NPROC is counted per user
 * namespace and checked at every level up to the host's, each against the limit its creator had
 * when the namespace was made: set by the keeper (before bwrap made ours), it capped the host
 * user's whole process count, not the cloister's. Set here, inside, it counts the cloister's own. */
static void init_nproc(const char *text)
{
    long n;
    if (!parse_long(text, 1, INT_MAX, &n))
        fatal(EINVAL, "init: --nproc '%s' (want a positive number)", text);
    struct rlimit rl = { (rlim_t)n, (rlim_t)n };
    if (setrlimit(RLIMIT_NPROC, &rl) < 0)
        fatal(errno, "init: --nproc %ld", n);
}

/* Parse "[--lifeline-fd N] [--tcp-listen PORT] [--nproc N] -- A B ;; C D" (options in any order): services
 * split in place, each ";;" becoming the NULL ending the argv before it. Returns the count. */
static size_t init_parse(int argc, char **argv, struct service **out)
{
    *out = NULL;
    int first = 2;
    for (; argc > first + 1; first += 2) {
        if (strcmp(argv[first], "--tcp-listen") == 0)
            init_tcp_listen(argv[first + 1]);
        else if (strcmp(argv[first], "--lifeline-fd") == 0)
            init_lifeline(argv[first + 1]);
        else if (strcmp(argv[first], "--nproc") == 0)
            init_nproc(argv[first + 1]);
        else
            break;
    }
    if (argc <= first)
        return 0;
    if (strcmp(argv[first], "--") != 0)
        fatal(EINVAL, "init: unknown argument '%s'", argv[first]);
    struct service *sv = calloc((size_t)argc, sizeof *sv);
    if (!sv)
        fatal(ENOMEM, "init");
    size_t n = 0;
    int start = first + 1;
    for (int i = start; i <= argc; i++) {
        if (i < argc && strcmp(argv[i], ";;") != 0)
            continue;
        if (i == start)
            fatal(EINVAL, "init: empty service command");
        argv[i] = NULL; /* argv[argc] is NULL already */
        sv[n++].argv = argv + start;
        start = i + 1;
    }
    *out = sv;
    return n;
}

static void start_service(struct service *sv)
{
    sv->started_at = now_ms();
    pid_t pid = fork();
    if (pid == 0) {
        setsid(); /* out of init's process group: signals meant for init don't reach it */
        /* No output to the host's log either: stdout and stderr are init's, a file outside the
         * project, and a service is dumpable for a moment after exec (a command inside could kill it,
         * wait for init to start it again, and take the file through /proc/PID/fd). init reports
         * how a service ended instead (init_reap). */
        int null = open("/dev/null", O_RDWR);
        if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0) {
            report(errno, "service %s: /dev/null", sv->argv[0]);
            _exit(127);
        }
        /* Services inherit the port init bound for them (fd 4), and nothing else. */
        close(LISTEN_FD);
        close_fds_from(tcp_listen_bound ? TCP_LISTEN_FD + 1 : LISTEN_FD);
        reset_signals();
        execvp(sv->argv[0], sv->argv);
        report(errno, "service %s", sv->argv[0]);
        _exit(127);
    }
    if (pid < 0)
        report(errno, "fork for service %s", sv->argv[0]);
    sv->pid = pid > 0 ? pid : 0;
}

/* Reap every child that has exited (we may be PID 1: orphans land here) and note dead services. */
static void init_reap(int sfd, struct service *sv, size_t nsv)
{
    struct signalfd_siginfo ssi;
    while (read(sfd, &ssi, sizeof ssi) > 0)
        ;
    pid_t pid;
    int status;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        for (size_t i = 0; i < nsv; i++)
            if (sv[i].pid == pid) {
                sv[i].pid = 0;
                if (WIFSIGNALED(status))
                    report(0, "service %s was killed by signal %d", sv[i].argv[0], WTERMSIG(status));
                else
                    report(0, "service %s exited with status %d", sv[i].argv[0], WEXITSTATUS(status));
            }
}

/* Best effort when no handler could be forked. */
static void send_error_now(int sock, const char *msg)
{
    uint8_t frame[HDR_LEN + 128];
    size_t len = strlen(msg);
    if (len > 128)
        len = 128;
    frame[0] = F_ERROR;
    put_le32(frame + 1, (uint32_t)len);
    memcpy(frame + HDR_LEN, msg, len);
    while (send(sock, frame, HDR_LEN + len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno == EINTR)
        ;
}

/* Accept pending connections, forking a handler for each. Returns false when accepting should
 * pause (out of fds or memory: the connection stays queued and poll would report it at once). */
static bool init_accept(int sfd)
{
    for (int i = 0; i < 64; i++) {
        int c = accept4(LISTEN_FD, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK;
        }
        pid_t pid = fork();
        if (pid == 0) {
            close(LISTEN_FD);
            close(sfd);
            session_main(c);
        }
        if (pid < 0)
            send_error_now(c, "cloister init: cannot fork a session handler");
        close(c);
    }
    return true;
}

static int init_main(int argc, char **argv)
{
    struct service *sv;
    size_t nsv = init_parse(argc, argv, &sv);

    ensure_std_fds();
    int acc = 0;
    socklen_t acclen = sizeof acc;
    if (getsockopt(LISTEN_FD, SOL_SOCKET, SO_ACCEPTCONN, &acc, &acclen) < 0)
        fatal(errno, "init: fd %d is not the listen socket", LISTEN_FD);
    if (!acc)
        fatal(EINVAL, "init: fd %d is not a listening socket", LISTEN_FD);
    if (fcntl(LISTEN_FD, F_SETFD, FD_CLOEXEC) < 0 || set_nonblock(LISTEN_FD) < 0)
        fatal(errno, "init: fcntl fd %d", LISTEN_FD);
    /* Commands in the sandbox run as our uid: they must not ptrace us (we hold the socket). */
    if (prctl(PR_SET_DUMPABLE, 0) < 0)
        fatal(errno, "prctl(PR_SET_DUMPABLE)");
    /* As PID 1 orphans come to us anyway; elsewhere (tests, bwrap without --as-pid-1) this makes
     * them, so nothing started through us escapes our reaping. Best effort. */
    if (getpid() != 1)
        prctl(PR_SET_CHILD_SUBREAPER, 1);

    signal(SIGPIPE, SIG_IGN); /* a vanished client shows up as EPIPE instead */
    signal(SIGCHLD, SIG_DFL); /* ignoring it would auto-reap and lose exit statuses */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0)
        fatal(errno, "init: signalfd");

    int64_t now = now_ms();
    for (size_t i = 0; i < nsv; i++)
        sv[i].started_at = now - RESTART_MS; /* due at once */
    int64_t accept_paused_until = 0;

    for (;;) {
        now = now_ms();
        int timeout = -1;
        for (size_t i = 0; i < nsv; i++) {
            if (sv[i].pid != 0)
                continue;
            int64_t due = sv[i].started_at + RESTART_MS;
            if (now >= due) {
                start_service(&sv[i]);
                due = now + RESTART_MS; /* in case the fork failed */
            }
            if (sv[i].pid == 0 && (timeout < 0 || due - now < timeout))
                timeout = (int)(due - now);
        }
        /* The lifeline is polled for nothing but its hang-up (poll skips it at -1); the listen
         * socket comes last, so that a pause in accepting can leave it out. */
        struct pollfd p[3] = { { sfd, POLLIN, 0 }, { g_lifeline_fd, 0, 0 }, { LISTEN_FD, POLLIN, 0 } };
        nfds_t np = 3;
        if (accept_paused_until > now) {
            np = 2;
            int left = (int)(accept_paused_until - now);
            if (timeout < 0 || left < timeout)
                timeout = left;
        }
        if (poll(p, np, timeout) < 0)
            continue;
        if (p[1].revents) {
            /* The keeper is gone. As PID 1, our exit ends every process of the cloister. */
            report(0, "init: the keeper is gone; ending the cloister");
            _exit(EXIT_SETUP);
        }
        if (p[0].revents)
            init_reap(sfd, sv, nsv);
        if (np > 2 && p[2].revents && !init_accept(sfd))
            accept_paused_until = now_ms() + 100;
    }
}

/* ====================================================================================== relay */

/*
 * `cloister-init relay PORT PATH`: the cloister's network bridge. Listens on 127.0.0.1:PORT and,
 * for every TCP connection, connects a fresh unix stream socket to PATH (the guardian's socket for
 * this cloister) and copies bytes both ways until both directions are finished: one process, one
 * thread, one epoll set, with the byte pump of relay-pump.h (the guardian's tunnels use the same).
 *
 * With `--hand-over SOCKET`, the relay first offers its listening socket to the guardian: it sends
 * the fd over SOCKET, and once the guardian answers that it accepts on it, the relay stops
 * accepting, so connections reach the guardian directly, without this hop (a copy each way, ~75 µs
 * per round trip here). The hand-over connection stays open as the guardian's lifeline: when it
 * ends (the guardian exited, crashed, or refused), the relay accepts again and offers the socket
 * anew every RELAY_HANDOVER_RETRY_MS. The wire format is in docs/internals/init-protocol.md.
 */

#define RELAY_EVENTS 256      /* epoll events taken per wait */
#define RELAY_ACCEPTS 64      /* connections accepted per wake-up; the listener is level-triggered */
#define RELAY_RETRY_MS 5      /* gap between connect attempts while the guardian's backlog is full */
#define RELAY_PAUSE_MS 100    /* accepting pauses this long when out of fds or memory */
#define RELAY_HANDOVER_RETRY_MS 1000 /* gap between offers of the listener while none is taken */


/* epoll tags of the two sockets that are not a connection's ends (those carry the end itself) */
static char listener_tag, handover_tag;

struct relay {
    int ep;
    int lsock;
    struct sockaddr_un addr;
    socklen_t addrlen;
    bool listening;            /* the listener is in the epoll set with EPOLLIN */
    int64_t paused_until;      /* no accepting before this (fd or memory exhaustion) */
    struct relay_conn *ready;  /* connections with work left: pumped before the next wait */
    struct relay_conn *waiting; /* accepted, but the guardian's backlog was full: connect again */
    int64_t retry_at;
    struct sockaddr_un handover_addr; /* empty path: no hand-over */
    socklen_t handover_addrlen;
    int handover_fd;           /* the connection the listener was offered over; -1: none */
    bool handed_over;          /* the guardian accepts on the listener, so this relay does not */
    int64_t handover_at;       /* the next offer, while handover_fd is -1 */
};

static void relay_close(struct relay_conn *c)
{
    relay_release(c);
    free(c);
}

enum relay_connect_result { RC_DONE, RC_LATER, RC_FAILED };

/* Connects the guardian side of c, fresh each time: the guardian may have restarted and made a
 * new socket at the same path since the last connection. For a unix socket a non-blocking
 * connect either completes at once or fails; EAGAIN means the listener's backlog is full, and
 * the same socket may try again later. */
static enum relay_connect_result relay_connect(struct relay *r, struct relay_conn *c)
{
    struct relay_end *unx = &c->end[RELAY_SERVER];
    if (unx->fd < 0) {
        unx->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (unx->fd < 0)
            return errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM ? RC_LATER : RC_FAILED;
    }
    while (connect(unx->fd, (struct sockaddr *)&r->addr, r->addrlen) < 0) {
        if (errno == EINTR)
            continue;
        return errno == EAGAIN ? RC_LATER : RC_FAILED; /* ENOENT, ECONNREFUSED: guardian down */
    }
    if (!relay_register(r->ep, &c->end[RELAY_CLIENT]) || !relay_register(r->ep, unx))
        return RC_FAILED;
    /* Both sockets are ready to be written; the ADD queued an event for each, which starts the pump. */
    return RC_DONE;
}

/* While the guardian's backlog is full, one accepted connection waits here and accepting stops:
 * the TCP backlog keeps the others, in order, and nothing is dropped during a burst. */
static void relay_retry_connect(struct relay *r, int64_t now)
{
    if (!r->waiting || now < r->retry_at)
        return;
    switch (relay_connect(r, r->waiting)) {
    case RC_LATER:
        r->retry_at = now + RELAY_RETRY_MS;
        return;
    case RC_FAILED:
        relay_close(r->waiting); /* the client sees its connection closed */
        break;
    case RC_DONE:
        break;
    }
    r->waiting = NULL;
}

static void relay_accept(struct relay *r)
{
    for (int i = 0; i < RELAY_ACCEPTS && !r->waiting; i++) {
        int fd = accept4(r->lsock, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPERM)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) /* EMFILE, ENFILE, ENOBUFS, ENOMEM */
                r->paused_until = now_ms() + RELAY_PAUSE_MS;
            return;
        }
        /* Small writes (a CONNECT line, a TLS handshake record) must not wait for Nagle. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct relay_conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            r->paused_until = now_ms() + RELAY_PAUSE_MS;
            return;
        }
        relay_conn_init(c, fd, -1);
        switch (relay_connect(r, c)) {
        case RC_DONE:
            break;
        case RC_FAILED: /* guardian down: the client sees its connection closed */
            relay_close(c);
            break;
        case RC_LATER:
            r->waiting = c;
            r->retry_at = now_ms() + RELAY_RETRY_MS;
            break;
        }
    }
}

/* The listener is in the epoll set only while accepting makes sense: not while an accepted
 * connection waits for the guardian, nor during a pause after fd or memory exhaustion (the
 * pending connection would be reported again at once, and the loop would spin). */
static void relay_update_listener(struct relay *r, int64_t now)
{
    bool want = !r->waiting && now >= r->paused_until && !r->handed_over;
    if (want == r->listening)
        return;
    struct epoll_event ev = { .events = want ? EPOLLIN : 0, .data.ptr = &listener_tag };
    if (epoll_ctl(r->ep, EPOLL_CTL_MOD, r->lsock, &ev) == 0)
        r->listening = want;
}

static int relay_timeout(const struct relay *r, int64_t now)
{
    if (r->ready)
        return 0;
    int64_t due = -1;
    if (r->waiting)
        due = r->retry_at;
    if (now < r->paused_until && (due < 0 || r->paused_until < due))
        due = r->paused_until;
    if (r->handover_addrlen && r->handover_fd < 0 && (due < 0 || r->handover_at < due))
        due = r->handover_at;
    if (due < 0)
        return -1;
    return due > now ? (int)(due - now) : 0;
}

/* Offers the listening socket to the guardian, when due: one connect and one sendmsg, both
 * immediate on a unix socket. Any failure (the guardian is not up yet, or is an older one without
 * the hand-over socket) leaves the relay accepting, and the offer is made again later. */
static void handover_offer(struct relay *r, int64_t now)
{
    if (!r->handover_addrlen || r->handover_fd >= 0 || now < r->handover_at)
        return;
    r->handover_at = now + RELAY_HANDOVER_RETRY_MS;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct iovec iov = { .iov_base = (void *)HANDOVER_MAGIC, .iov_len = sizeof HANDOVER_MAGIC - 1 };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &r->lsock, sizeof(int));
    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.ptr = &handover_tag };
    if (connect(fd, (struct sockaddr *)&r->handover_addr, r->handover_addrlen) < 0 ||
        sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)iov.iov_len || epoll_ctl(r->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        close(fd);
        return;
    }
    r->handover_fd = fd;
}

/* The guardian answered on the hand-over connection, or the connection ended. */
static void handover_answer(struct relay *r, int64_t now)
{
    char answer;
    ssize_t n = recv(r->handover_fd, &answer, 1, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n == 1 && answer == HANDOVER_TAKEN && !r->handed_over) {
        r->handed_over = true; /* relay_update_listener stops accepting */
        return;
    }
    /* The end (or an answer that makes no sense): the guardian no longer accepts for us. */
    epoll_ctl(r->ep, EPOLL_CTL_DEL, r->handover_fd, NULL);
    close(r->handover_fd);
    r->handover_fd = -1;
    r->handed_over = false;
    r->handover_at = now + RELAY_HANDOVER_RETRY_MS;
}

/* Fills in an AF_UNIX address; exits on a path that is not absolute (so a misplaced option is not
 * taken for one) or does not fit. */
static socklen_t relay_unix_addr(struct sockaddr_un *addr, const char *path)
{
    size_t plen = strlen(path);
    if (path[0] != '/')
        fatal(EINVAL, "relay: socket paths must be absolute, got '%s'", path);
    if (plen >= sizeof addr->sun_path)
        fatal(ENAMETOOLONG, "relay: %s", path);
    addr->sun_family = AF_UNIX;
    memcpy(addr->sun_path, path, plen + 1);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + 1);
}

static void relay_listen(struct relay *r, long port)
{
    r->lsock = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (r->lsock < 0)
        fatal(errno, "relay: socket");
    int one = 1;
    if (setsockopt(r->lsock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        fatal(errno, "relay: SO_REUSEADDR");
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(r->lsock, (struct sockaddr *)&sin, sizeof sin) < 0)
        fatal(errno, "relay: cannot listen on 127.0.0.1:%ld", port);
    if (listen(r->lsock, RELAY_BACKLOG) < 0)
        fatal(errno, "relay: cannot listen on 127.0.0.1:%ld", port);
}

/* `relay --fd N`: the listening socket was bound by whoever started us (init --tcp-listen). */
static void relay_adopt(struct relay *r, long fd)
{
    int acc = 0;
    socklen_t acclen = sizeof acc;
    if (getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &acclen) < 0 || !acc)
        fatal(EINVAL, "relay: fd %ld is not a listening socket", fd);
    if (fcntl((int)fd, F_SETFD, FD_CLOEXEC) < 0 || set_nonblock((int)fd) < 0)
        fatal(errno, "relay: fcntl fd %ld", fd);
    r->lsock = (int)fd;
}

#define RELAY_USAGE "usage: cloister-init relay {PORT | --fd N} [--hand-over SOCKET] UNIX_SOCKET_PATH"

static int relay_main(int argc, char **argv)
{
    long port = 0, fd = -1;
    const char *handover = NULL;
    int i = 2;
    if (i + 1 < argc && strcmp(argv[i], "--fd") == 0) {
        if (!parse_long(argv[i + 1], 3, INT_MAX, &fd))
            fatal(EINVAL, RELAY_USAGE);
        i += 2;
    } else if (i < argc && parse_long(argv[i], 1, 65535, &port)) {
        i += 1;
    } else {
        fatal(EINVAL, RELAY_USAGE);
    }
    if (i + 1 < argc && strcmp(argv[i], "--hand-over") == 0) {
        handover = argv[i + 1];
        i += 2;
    }
    if (i + 1 != argc)
        fatal(EINVAL, RELAY_USAGE);
    struct relay r = { .ep = -1, .lsock = -1, .handover_fd = -1 };
    r.addrlen = relay_unix_addr(&r.addr, argv[i]);
    if (handover)
        r.handover_addrlen = relay_unix_addr(&r.handover_addr, handover);

    ensure_std_fds();
    /* As init: commands in the sandbox run as our uid, and exec reset what init had set. Without
     * this they could ptrace us, or take our fds through /proc/PID/fd or pidfd_getfd: the guardian's
     * socket, and our stdout, the host's cloister.log (a file outside the project). */
    if (prctl(PR_SET_DUMPABLE, 0) < 0)
        fatal(errno, "prctl(PR_SET_DUMPABLE)");
    signal(SIGPIPE, SIG_IGN); /* sends use MSG_NOSIGNAL; this covers anything else */
    /* Each connection holds two fds; the soft limit (often 1024) would cap us near 500. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    if (fd >= 0)
        relay_adopt(&r, fd);
    else
        relay_listen(&r, port);
    r.ep = epoll_create1(EPOLL_CLOEXEC);
    if (r.ep < 0)
        fatal(errno, "relay: epoll_create1");
    struct epoll_event lev = { .events = EPOLLIN, .data.ptr = &listener_tag };
    if (epoll_ctl(r.ep, EPOLL_CTL_ADD, r.lsock, &lev) < 0)
        fatal(errno, "relay: epoll_ctl");
    r.listening = true;

    struct epoll_event evs[RELAY_EVENTS];
    for (;;) {
        int64_t now = now_ms();
        handover_offer(&r, now);
        relay_update_listener(&r, now);
        int n = epoll_wait(r.ep, evs, RELAY_EVENTS, relay_timeout(&r, now));
        if (n < 0 && errno != EINTR)
            fatal(errno, "relay: epoll_wait");
        /* First only note what each event says; the work is done below, once per connection. */
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (tag == &listener_tag) {
                relay_accept(&r);
                continue;
            }
            if (tag == &handover_tag) {
                handover_answer(&r, now_ms());
                continue;
            }
            struct relay_end *e = tag;
            relay_note(e, evs[i].events);
            relay_queue(&r.ready, relay_conn_of(e));
        }
        now = now_ms();
        relay_retry_connect(&r, now);
        struct relay_conn *todo = r.ready;
        r.ready = NULL;
        while (todo) {
            struct relay_conn *c = todo;
            todo = c->next;
            c->next = NULL;
            c->queued = false;
            switch (relay_pump(c)) {
            case RELAY_DONE:
                relay_close(c);
                break;
            case RELAY_MORE:
                relay_queue(&r.ready, c);
                break;
            case RELAY_WAIT:
                break;
            }
        }
    }
}

/* ======================================================================================= main */

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "keep"))
        return keep_main(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "init"))
        return init_main(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "relay"))
        return relay_main(argc, argv);
    fatal(EINVAL, "usage: cloister-init keep [OPTIONS] -- PROGRAM [ARGS...] | cloister-init init [-- SERVICE [;; SERVICE]...]"
                  " | cloister-init relay {PORT | --fd N} [--hand-over SOCKET] UNIX_SOCKET_PATH");
}
