/*
 * hostexec: run a command on the host from inside a cloister, once the policy or a human allows
 * it, with its stdout and stderr streamed back live and its exit status passed through.
 *
 * The client half of the hostexec wire protocol; the contract is the header comment of
 * src/guardian/hostexec/wire.ts, keep the two in step. This is C because a sandbox may have no
 * shell, curl, jq or node; it needs nothing but libc.
 *
 * Flow: parse CLOISTER_PROXY, encode the request, connect, send magic + R frame, then one poll
 * loop over the socket and a self-pipe fed by the signal handler, until the X frame.
 *
 * Build: cc -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror (scripts/build-native.mjs).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define EXIT_OWN_FAILURE 125    /* hostexec itself failed; the command may not have run */
#define EXIT_CANCELLED 130      /* 128 + SIGINT, what a shell shows for an interrupted command */
#define EXIT_BROKEN_PIPE 141    /* 128 + SIGPIPE, what a shell shows for a reader that left */
#define HDR_LEN 5               /* u8 type + u32 length, big endian */
#define MAX_REQUEST (1u << 20)  /* largest R payload the guardian accepts */
#define MAX_REPLY (16u << 20)   /* largest guardian frame payload we accept */
#define TOKEN_LEN 64
#define JSON_DEPTH 32           /* nesting we follow while skipping values nobody asked for */

static const uint8_t MAGIC[4] = { 0xC7, 'H', 'X', 0x01 };

static const char HELP[] =
    "Usage: hostexec [--] COMMAND [ARGUMENT...]\n"
    "\n"
    "Runs COMMAND with its arguments on the host, outside this sandbox, in the project\n"
    "directory, once the cloister's policy or a human allows it. Its stdout and stderr are\n"
    "streamed back here as they come; stdin is not forwarded. While a human decides,\n"
    "hostexec says so on stderr and waits. Ctrl-C cancels (a second Ctrl-C leaves at once).\n"
    "\n"
    "Exit status:\n"
    "  0-255  the command's own exit status, or the one the guardian gives with its reason\n"
    "         when it refuses or stops the command\n"
    "  2      usage: no command, an argument that is not UTF-8, a command line too long\n"
    "  125    hostexec itself failed: no guardian to talk to, connection lost, protocol error\n"
    "  130    cancelled (Ctrl-C, SIGTERM or SIGHUP)\n"
    "  141    stdout was closed (e.g. `hostexec CMD | head -1`); the command is cancelled\n";

/* ================================================================================== utilities */

/* Write every byte of iov to fd: rides out EINTR and short writes, and waits out EAGAIN for an
 * fd some other process set non-blocking (a shared terminal or pipe). */
static bool writev_all(int fd, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        ssize_t n = writev(fd, iov, cnt);
        if (n < 0) {
            struct pollfd p = { fd, POLLOUT, 0 };
            if (errno == EAGAIN)
                poll(&p, 1, -1); /* whatever it says, the next writev tells */
            else if (errno != EINTR)
                return false;
            continue;
        }
        for (; cnt > 0 && (size_t)n >= iov->iov_len; iov++, cnt--)
            n -= (ssize_t)iov->iov_len;
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return true;
}

static bool write_all(int fd, const void *buf, size_t len)
{
    struct iovec v = { (void *)buf, len };
    return writev_all(fd, &v, 1);
}

/* "hostexec: <text>\n" on stderr in one go, so it doesn't interleave with the command's. */
static void say(const char *text, size_t len)
{
    struct iovec v[3] = { { "hostexec: ", 10 }, { (void *)text, len }, { "\n", 1 } };
    writev_all(STDERR_FILENO, v, 3);
}

static void say_fmt(int err, const char *fmt, va_list ap)
{
    char what[768], line[1024];
    if (vsnprintf(what, sizeof what, fmt, ap) < 0)
        what[0] = '\0';
    int n = err ? snprintf(line, sizeof line, "%s: %s", what, strerror(err)) : snprintf(line, sizeof line, "%s", what);
    if (n >= 0)
        say(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

/* One line on stderr ("…: <strerror>" when err is set), then exit with code. */
static _Noreturn void die(int code, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static _Noreturn void die(int code, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say_fmt(err, fmt, ap);
    va_end(ap);
    _exit(code);
}

/* Make sure fds 0-2 are open, so the socket can't land on fd 1 and receive the command's output. */
static void open_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF && open("/dev/null", O_RDWR) < 0)
            die(EXIT_OWN_FAILURE, errno, "open /dev/null");
}

/* A growable byte string. Running out of memory is the end of hostexec. */
struct buf {
    char *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const void *data, size_t len)
{
    if (b->cap - b->len < len) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < len)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            die(EXIT_OWN_FAILURE, ENOMEM, "encoding the request");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* ======================================================================= CLOISTER_PROXY */

/* The guardian's address and our token, from http://USER:TOKEN@HOST:PORT[/] where HOST is an
 * IPv4 literal or localhost. Returns NULL, or what is wrong (never quoting the token). */
static const char *parse_proxy(const char *url, struct sockaddr_in *addr, char token[TOKEN_LEN + 1])
{
    static const char scheme[] = "http://";
    if (strncmp(url, scheme, sizeof scheme - 1))
        return "it does not start with http://";
    const char *user = url + sizeof scheme - 1;
    const char *at = strchr(user, '@');
    const char *colon = at ? memchr(user, ':', (size_t)(at - user)) : NULL;
    if (!colon || memchr(user, '/', (size_t)(colon - user)))
        return "it has no USER:TOKEN@ part";
    const char *tok = colon + 1;
    if (at - tok != TOKEN_LEN || strspn(tok, "0123456789abcdefABCDEF") < TOKEN_LEN)
        return "its token is not 64 hexadecimal digits";
    memcpy(token, tok, TOKEN_LEN);
    token[TOKEN_LEN] = '\0';

    const char *host = at + 1;
    const char *port = strchr(host, ':');
    char name[16];
    if (!port || (size_t)(port - host) >= sizeof name)
        return "it has no HOST:PORT after the @, with HOST an IPv4 address or localhost";
    memcpy(name, host, (size_t)(port - host));
    name[port - host] = '\0';
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    if (!strcmp(name, "localhost"))
        addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (inet_pton(AF_INET, name, &addr->sin_addr) != 1)
        return "its host is not an IPv4 address or localhost";

    size_t digits = strspn(++port, "0123456789");
    long n = digits >= 1 && digits <= 5 ? strtol(port, NULL, 10) : 0;
    if (n < 1 || n > 65535 || (port[digits] && strcmp(port + digits, "/")))
        return "its port is not a number in 1..65535 at the end";
    addr->sin_port = htons((uint16_t)n);
    return NULL;
}

/* ========================================================================== the request */

/* Length of the valid UTF-8 sequence (not ASCII) starting at p, or 0. Rejects what a strict
 * decoder (the guardian's) rejects: overlong forms, surrogates, code points past U+10FFFF. */
static size_t utf8_len(const uint8_t *p)
{
    size_t n;
    uint32_t cp, min;
    if (p[0] >= 0xC2 && p[0] <= 0xDF)
        n = 2, cp = p[0] & 0x1F, min = 0x80;
    else if ((p[0] & 0xF0) == 0xE0)
        n = 3, cp = p[0] & 0x0F, min = 0x800;
    else if (p[0] >= 0xF0 && p[0] <= 0xF4)
        n = 4, cp = p[0] & 0x07, min = 0x10000;
    else
        return 0;
    for (size_t i = 1; i < n; i++) { /* a NUL fails the test, so we never read past the string */
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    return cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) ? 0 : n;
}

/* Append s as a JSON string. If s is not UTF-8, append nothing and return the offset of the
 * first bad byte; otherwise return -1. */
static ptrdiff_t json_string(struct buf *b, const char *s)
{
    size_t start = b->len;
    const uint8_t *p = (const uint8_t *)s;
    buf_add(b, "\"", 1);
    while (*p) {
        size_t n = *p < 0x80 ? 1 : utf8_len(p);
        if (!n) {
            b->len = start;
            return (const char *)p - s;
        }
        if (*p == '"' || *p == '\\') {
            buf_add(b, "\\", 1);
            buf_add(b, p, 1);
        } else if (*p < 0x20) {
            char esc[7];
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            buf_add(b, esc, 6);
        } else {
            buf_add(b, p, n);
        }
        p += n;
    }
    buf_add(b, "\"", 1);
    return -1;
}

/* Magic, then the R frame: {"token":…,"argv":[…],"cwd":…}. Exits 2 for an argument JSON can't
 * carry or a request over the limit. */
static void encode_request(struct buf *b, const char *token, char **argv)
{
    buf_add(b, MAGIC, sizeof MAGIC);
    buf_add(b, "R\0\0\0\0", HDR_LEN); /* the length is filled in below */
    buf_str(b, "{\"token\":");
    json_string(b, token);
    buf_str(b, ",\"argv\":[");
    for (int i = 0; argv[i]; i++) {
        if (i > 0)
            buf_add(b, ",", 1);
        ptrdiff_t bad = json_string(b, argv[i]);
        if (bad >= 0) {
            char which[32];
            snprintf(which, sizeof which, i ? "argument %d" : "the command name", i);
            die(EXIT_USAGE, 0, "%s is not valid UTF-8 (byte 0x%02x at offset %td); only text can be passed", which,
                (unsigned char)argv[i][bad], bad);
        }
    }
    buf_str(b, "],\"cwd\":");
    /* Informational only: an unknown or non-UTF-8 directory is sent as "". */
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd) || json_string(b, cwd) >= 0)
        buf_str(b, "\"\"");
    buf_add(b, "}", 1);

    size_t len = b->len - sizeof MAGIC - HDR_LEN;
    if (len > MAX_REQUEST)
        die(EXIT_USAGE, 0, "the command line is too long: it makes a request of %zu bytes, the limit is %u", len,
            MAX_REQUEST);
    for (int i = 0; i < 4; i++)
        b->p[sizeof MAGIC + 1 + i] = (char)(len >> (24 - 8 * i));
}

/* ========================================================================== reply JSON */

/* A cursor over one P or X payload. Strings are decoded in place: an escape never decodes to
 * more bytes than it takes, so the writer can't overtake the reader. */
struct json {
    char *p, *end;
};

static void j_space(struct json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool j_char(struct json *j, char c)
{
    j_space(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    return false;
}

static bool j_hex4(struct json *j, uint32_t *v)
{
    if (j->end - j->p < 4)
        return false;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *j->p++;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return false;
        *v = *v << 4 | (uint32_t)d;
    }
    return true;
}

static size_t put_utf8(char *w, uint32_t cp)
{
    if (cp < 0x80) {
        w[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        w[0] = (char)(0xC0 | cp >> 6);
        w[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        w[0] = (char)(0xE0 | cp >> 12);
        w[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        w[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    w[0] = (char)(0xF0 | cp >> 18);
    w[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    w[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    w[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The code point of a \u escape whose "\u" is consumed, pairing surrogates; a lone one is U+FFFD. */
static bool j_escape_u(struct json *j, uint32_t *cp)
{
    if (!j_hex4(j, cp))
        return false;
    if (*cp >= 0xD800 && *cp <= 0xDBFF && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
        struct json low = { j->p + 2, j->end };
        uint32_t lo;
        if (j_hex4(&low, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
            *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
            j->p = low.p;
        }
    }
    if (*cp >= 0xD800 && *cp <= 0xDFFF)
        *cp = 0xFFFD;
    return true;
}

static bool j_string(struct json *j, char **out, size_t *len)
{
    if (!j_char(j, '"'))
        return false;
    char *w = *out = j->p;
    while (j->p < j->end) {
        unsigned char c = (unsigned char)*j->p++;
        if (c == '"') {
            *len = (size_t)(w - *out);
            return true;
        }
        if (c < 0x20)
            return false;
        if (c != '\\') {
            *w++ = (char)c;
            continue;
        }
        if (j->p == j->end)
            return false;
        uint32_t cp;
        switch (c = (unsigned char)*j->p++) {
        case '"': case '\\': case '/': cp = c; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (!j_escape_u(j, &cp))
                return false;
            break;
        default:
            return false;
        }
        w += put_utf8(w, cp);
    }
    return false;
}

static size_t j_digits(struct json *j)
{
    char *start = j->p;
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
        j->p++;
    return (size_t)(j->p - start);
}

/* A number by JSON's grammar (strtod alone would take hex, inf and nan). The payload is
 * NUL-terminated, so strtod can't run off its end. */
static bool j_number(struct json *j, double *v)
{
    j_space(j);
    char *start = j->p;
    if (j->p < j->end && *j->p == '-')
        j->p++;
    size_t int_digits = j_digits(j);
    if (!int_digits || (int_digits > 1 && j->p[-(ptrdiff_t)int_digits] == '0'))
        return false;
    if (j->p < j->end && *j->p == '.' && (j->p++, !j_digits(j)))
        return false;
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
            j->p++;
        if (!j_digits(j))
            return false;
    }
    char *end;
    *v = strtod(start, &end);
    return end == j->p;
}

static bool j_literal(struct json *j, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n))
        return false;
    j->p += n;
    return true;
}

/* Any value, checked and thrown away. */
static bool j_skip(struct json *j, int depth)
{
    char *s;
    size_t n;
    double d;
    j_space(j);
    if (j->p == j->end || depth > JSON_DEPTH)
        return false;
    char close = *j->p == '{' ? '}' : *j->p == '[' ? ']' : 0;
    if (!close) {
        return *j->p == '"' ? j_string(j, &s, &n)
               : (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')) ? j_number(j, &d)
               : j_literal(j, "true") || j_literal(j, "false") || j_literal(j, "null");
    }
    j->p++;
    if (j_char(j, close))
        return true;
    do {
        if (close == '}' && !(j_string(j, &s, &n) && j_char(j, ':')))
            return false;
        if (!j_skip(j, depth + 1))
            return false;
    } while (j_char(j, ','));
    return j_char(j, close);
}

/* The fields hostexec reads from a P or X object; the others are skipped. */
struct reply {
    char *message;
    size_t message_len;
    bool has_message, has_exit_code;
    double exit_code;
};

static bool key_is(const char *key, size_t len, const char *name)
{
    return len == strlen(name) && !memcmp(key, name, len);
}

static bool parse_reply(char *json, size_t len, struct reply *r)
{
    struct json j = { json, json + len };
    memset(r, 0, sizeof *r);
    if (!j_char(&j, '{'))
        return false;
    if (!j_char(&j, '}')) {
        do {
            char *key;
            size_t key_len;
            if (!j_string(&j, &key, &key_len) || !j_char(&j, ':'))
                return false;
            bool ok = key_is(key, key_len, "message")    ? (r->has_message = j_string(&j, &r->message, &r->message_len))
                      : key_is(key, key_len, "exitCode") ? (r->has_exit_code = j_number(&j, &r->exit_code))
                                                         : j_skip(&j, 1);
            if (!ok)
                return false;
        } while (j_char(&j, ','));
        if (!j_char(&j, '}'))
            return false;
    }
    j_space(&j);
    return j.p == j.end;
}

/* ============================================================================== session */

static volatile sig_atomic_t g_signalled;
static int g_signal_pipe = -1; /* write end of the self-pipe */

/* The first signal wakes the loop, which cancels; a second one means "now". */
static void on_signal(int sig)
{
    (void)sig;
    if (g_signalled)
        _exit(EXIT_CANCELLED);
    g_signalled = 1;
    int saved = errno;
    ssize_t r = write(g_signal_pipe, "", 1);
    (void)r; /* the pipe can't be full: one byte, written once */
    errno = saved;
}

struct session {
    int sock;
    bool cancelled; /* C frame sent */
    int stdout_err; /* why writing stdout failed; its output is dropped from then on */
    int send_err;   /* why sending the request failed (the guardian may still explain in an X) */
    /* the frame being received */
    uint8_t hdr[HDR_LEN];
    size_t hdr_fill;
    bool in_payload;
    uint8_t type;
    uint32_t left;
    char *json; /* P and X payloads are collected here (NUL-terminated) */
    size_t json_len;
};

static void cancel(struct session *s)
{
    static const uint8_t frame[HDR_LEN] = { 'C', 0, 0, 0, 0 };
    if (s->cancelled)
        return;
    s->cancelled = true;
    write_all(s->sock, frame, sizeof frame); /* if the guardian is gone, reading shows it */
}

static void start_frame(struct session *s)
{
    s->type = s->hdr[0];
    s->left = (uint32_t)s->hdr[1] << 24 | (uint32_t)s->hdr[2] << 16 | (uint32_t)s->hdr[3] << 8 | s->hdr[4];
    if (!memchr("POEX", s->type, 4))
        die(EXIT_OWN_FAILURE, 0, "protocol error: unexpected frame type 0x%02x from the guardian", s->type);
    if (s->left > MAX_REPLY)
        die(EXIT_OWN_FAILURE, 0, "protocol error: a frame of %u bytes from the guardian exceeds the %u-byte limit", s->left,
            MAX_REPLY);
    if (s->type == 'P' || s->type == 'X') {
        s->json = malloc((size_t)s->left + 1);
        if (!s->json)
            die(EXIT_OWN_FAILURE, ENOMEM, "receiving a message from the guardian");
        s->json_len = 0;
    }
    s->in_payload = true;
}

static void end_frame(struct session *s)
{
    s->in_payload = false;
    if (s->type != 'P' && s->type != 'X')
        return;
    struct reply r;
    s->json[s->json_len] = '\0';
    bool ok = parse_reply(s->json, s->json_len, &r);
    if (s->type == 'P') {
        if (!ok || !r.has_message)
            die(EXIT_OWN_FAILURE, 0, "protocol error: malformed pending notice from the guardian");
        say(r.message, r.message_len);
        free(s->json);
        s->json = NULL;
        return;
    }
    if (!ok || !r.has_exit_code)
        die(EXIT_OWN_FAILURE, 0, "protocol error: malformed exit status from the guardian");
    if (s->stdout_err == EPIPE) /* a reader that left wants no epilogue, just SIGPIPE's status */
        _exit(EXIT_BROKEN_PIPE);
    if (s->stdout_err)
        die(EXIT_OWN_FAILURE, s->stdout_err, "writing to stdout");
    if (r.has_message && r.message_len)
        say(r.message, r.message_len);
    _exit(r.exit_code <= 0 ? 0 : r.exit_code >= 255 ? 255 : (int)r.exit_code);
}

/* Feed received bytes through the frame parser; output payloads go out as they arrive. */
static void consume(struct session *s, const uint8_t *p, size_t n)
{
    while (n > 0) {
        size_t k;
        if (!s->in_payload) {
            k = HDR_LEN - s->hdr_fill < n ? HDR_LEN - s->hdr_fill : n;
            memcpy(s->hdr + s->hdr_fill, p, k);
            s->hdr_fill += k;
            if (s->hdr_fill == HDR_LEN) {
                s->hdr_fill = 0;
                start_frame(s);
            }
        } else {
            k = s->left < n ? s->left : n;
            if (s->type == 'O') {
                if (!s->stdout_err && !write_all(STDOUT_FILENO, p, k)) {
                    s->stdout_err = errno;
                    cancel(s); /* nobody will read the rest */
                }
            } else if (s->type == 'E') {
                write_all(STDERR_FILENO, p, k); /* nowhere to report a failure to */
            } else {
                memcpy(s->json + s->json_len, p, k);
                s->json_len += k;
            }
            s->left -= (uint32_t)k;
        }
        p += k;
        n -= k;
        if (s->in_payload && s->left == 0)
            end_frame(s);
    }
}

/* Route SIGINT, SIGTERM and SIGHUP to a self-pipe; returns its read end. */
static int install_signals(void)
{
    int sp[2];
    if (pipe2(sp, O_CLOEXEC | O_NONBLOCK) < 0)
        die(EXIT_OWN_FAILURE, errno, "pipe");
    g_signal_pipe = sp[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    const int sigs[] = { SIGINT, SIGTERM, SIGHUP };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaddset(&sa.sa_mask, sigs[i]); /* so the handler never runs nested */
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
    return sp[0];
}

static _Noreturn void run(struct session *s, int signal_fd)
{
    static uint8_t buf[65536];
    for (;;) {
        struct pollfd p[2] = { { s->sock, POLLIN, 0 }, { signal_fd, POLLIN, 0 } };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            die(EXIT_OWN_FAILURE, errno, "poll");
        }
        if (p[1].revents) {
            char drain[8];
            while (read(signal_fd, drain, sizeof drain) > 0)
                ;
            cancel(s);
        }
        if (!p[0].revents)
            continue;
        ssize_t n = read(s->sock, buf, sizeof buf);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            die(EXIT_OWN_FAILURE, errno, "lost the connection to the guardian");
        if (n == 0 && s->send_err)
            die(EXIT_OWN_FAILURE, s->send_err, "sending the request to the guardian");
        if (n == 0)
            die(EXIT_OWN_FAILURE, 0, "the guardian closed the connection %s",
                s->in_payload || s->hdr_fill ? "in the middle of a frame" : "before the command finished");
        consume(s, buf, (size_t)n);
    }
}

int main(int argc, char **argv)
{
    open_std_fds();
    signal(SIGPIPE, SIG_IGN); /* a closed stdout or socket shows up as EPIPE instead */

    int first = 1;
    if (argc > 1 && !strcmp(argv[1], "--")) {
        first = 2;
    } else if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        return write_all(STDOUT_FILENO, HELP, sizeof HELP - 1) ? 0 : EXIT_OWN_FAILURE;
    } else if (argc > 1 && !strcmp(argv[1], "--version")) {
        return write_all(STDOUT_FILENO, "hostexec (cloister) 1\n", 22) ? 0 : EXIT_OWN_FAILURE;
    } else if (argc > 1 && argv[1][0] == '-' && argv[1][1]) {
        die(EXIT_USAGE, 0, "unknown option '%s' (put -- before a command that starts with -; see hostexec --help)", argv[1]);
    }
    if (first >= argc)
        die(EXIT_USAGE, 0, "no command given\nUsage: hostexec [--] COMMAND [ARGUMENT...] (see hostexec --help)");

    const char *url = getenv("CLOISTER_PROXY");
    if (!url || !*url)
        die(EXIT_OWN_FAILURE, 0, "not inside a cloister with network access (CLOISTER_PROXY is not set)");
    struct sockaddr_in addr;
    char token[TOKEN_LEN + 1];
    const char *bad = parse_proxy(url, &addr, token);
    if (bad)
        die(EXIT_OWN_FAILURE, 0, "CLOISTER_PROXY is malformed: %s (expected http://USER:TOKEN@127.0.0.1:PORT)", bad);

    struct buf request = { 0 };
    encode_request(&request, token, argv + first);

    char where[INET_ADDRSTRLEN + 8];
    inet_ntop(AF_INET, &addr.sin_addr, where, INET_ADDRSTRLEN);
    snprintf(where + strlen(where), 8, ":%u", ntohs(addr.sin_port));
    struct session s = { .sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) };
    if (s.sock < 0)
        die(EXIT_OWN_FAILURE, errno, "socket");
    /* Until the request is out, a signal simply kills us: a closed connection is a cancel too. */
    if (connect(s.sock, (struct sockaddr *)&addr, sizeof addr) < 0)
        die(EXIT_OWN_FAILURE, errno, "cannot reach the guardian at %s", where);
    if (!write_all(s.sock, request.p, request.len))
        s.send_err = errno;
    free(request.p);

    run(&s, install_signals());
}
