/*
 * tunnel-relay.node: the guardian's relay for admitted CONNECT and SOCKS tunnels, a Node-API addon.
 * It also exports takeListener (listener-handover.c), the other native step of a cloister's
 * network path, so the guardian loads one addon.
 *
 * Once the guardian has judged a tunnel and connected to the checked address, its bytes need no
 * more decisions: node would only copy them, and on this 2-core machine a copy in JavaScript cost
 * ~85 µs of guardian CPU per small message each way and kept the guardian ~90% busy during a
 * large download (docs/benchmarks.md). Here one thread of the guardian process moves them with the
 * same byte pump as the cloister's own bridge (relay-pump.h), and JavaScript hears only the end.
 *
 * JavaScript side: src/guardian/proxy/native-relay.ts. The API:
 *   init(onEnd)            once per process; onEnd(id, bytesUp, bytesDown, end) is called on the
 *                          JS thread when a tunnel is over; end is "closed", "error", "idle" or "cut"
 *   start(clientFd, serverFd, idleMs, earlyUp?, earlyDown?) -> id
 *                          duplicates both fds (the caller then closes its own), sends earlyUp to
 *                          the server and earlyDown to the client before anything relayed
 *   cut(id)                ends a tunnel now (its cloister stopped); onEnd still reports it
 *
 * Threads: every function above runs on the JS thread and only hands work over (a locked list and
 * an eventfd); the relay thread alone touches sockets and tunnel state.
 */
#define NAPI_VERSION 8
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "listener-handover.h"
#include "relay-pump.h"

#define EVENTS 256
#define SWEEP_MIN_MS 10   /* idle checks happen every idle timeout / 4, within these bounds */
#define SWEEP_MAX_MS 1000

enum ending { END_CLOSED, END_ERROR, END_IDLE, END_CUT };
static const char *const ENDING_NAMES[] = { "closed", "error", "idle", "cut" };

struct tunnel {
    struct relay_conn conn;     /* first member: an epoll event's end leads here (relay_conn_of) */
    uint32_t id;
    int64_t idle_ms;
    int64_t last_active_ms;
    uint64_t moved;             /* bytes sent both ways when last looked at: change means activity */
    bool ended;                 /* reported and released; freed when it leaves the ready list */
    struct tunnel *prev, *next; /* the live list (relay thread), or the start list (under the lock) */
};

struct cut_request {
    uint32_t id;
    struct cut_request *next;
};

struct ended_tunnel {
    uint32_t id;
    uint64_t up, down;
    enum ending end;
};

/* Shared between the JS thread and the relay thread: only under `lock`. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct tunnel *to_start;
static struct cut_request *to_cut;
static bool stopping;

/* Set once by init() on the JS thread, before the relay thread exists. */
static int ep = -1, wake_fd = -1;
static pthread_t thread;
static napi_threadsafe_function on_end;

/* JS thread only. */
static uint32_t last_id;

/* Relay thread only. */
static struct tunnel *live;
static struct relay_conn *ready;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void wake(void)
{
    uint64_t one = 1;
    while (write(wake_fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

/* ====================================================================== the relay thread */

/* How often the idle sweep looks at a tunnel with this timeout: a quarter of it, within bounds. */
static int64_t sweep_gap(int64_t idle_ms)
{
    int64_t gap = idle_ms / 4;
    return gap < SWEEP_MIN_MS ? SWEEP_MIN_MS : gap > SWEEP_MAX_MS ? SWEEP_MAX_MS : gap;
}

/* Reports a tunnel's end to JavaScript and lets go of its sockets. The struct is freed here, or
 * by the ready list's walk when it is still in that list. */
static void finish(struct tunnel *t, enum ending end)
{
    struct ended_tunnel *report = malloc(sizeof *report);
    if (report) {
        *report = (struct ended_tunnel){ t->id, t->conn.end[RELAY_SERVER].sent, t->conn.end[RELAY_CLIENT].sent, end };
        /* Blocking calls are not allowed off the JS thread; an unbounded queue never refuses. */
        if (napi_call_threadsafe_function(on_end, report, napi_tsfn_nonblocking) != napi_ok)
            free(report);
    }
    for (int s = 0; s < 2; s++)
        if (t->conn.end[s].fd >= 0)
            epoll_ctl(ep, EPOLL_CTL_DEL, t->conn.end[s].fd, NULL); /* the fd may have twins elsewhere */
    relay_release(&t->conn);
    t->ended = true;
    if (t->prev)
        t->prev->next = t->next;
    else
        live = t->next;
    if (t->next)
        t->next->prev = t->prev;
    if (!t->conn.queued)
        free(t);
}

static void take_started(int64_t now, int64_t *next_sweep)
{
    pthread_mutex_lock(&lock);
    struct tunnel *list = to_start;
    to_start = NULL;
    pthread_mutex_unlock(&lock);
    while (list) {
        struct tunnel *t = list;
        list = t->next;
        t->prev = NULL;
        t->next = live;
        if (live)
            live->prev = t;
        live = t;
        t->last_active_ms = now;
        int64_t due = now + sweep_gap(t->idle_ms);
        if (due < *next_sweep)
            *next_sweep = due;
        /* Registering reports each socket's current state once: that starts the pump. */
        if (!relay_register(ep, &t->conn.end[RELAY_CLIENT]) || !relay_register(ep, &t->conn.end[RELAY_SERVER]))
            finish(t, END_ERROR);
    }
}

static void take_cuts(void)
{
    pthread_mutex_lock(&lock);
    struct cut_request *list = to_cut;
    to_cut = NULL;
    pthread_mutex_unlock(&lock);
    while (list) {
        struct cut_request *r = list;
        list = r->next;
        for (struct tunnel *t = live; t; t = t->next)
            if (t->id == r->id) {
                finish(t, END_CUT);
                break;
            }
        free(r);
    }
}

/* Ends the tunnels nothing went through for their idle timeout; returns when to look again. */
static int64_t sweep_idle(int64_t now)
{
    int64_t gap = SWEEP_MAX_MS;
    for (struct tunnel *t = live, *next; t; t = next) {
        next = t->next;
        if (now - t->last_active_ms >= t->idle_ms) {
            finish(t, END_IDLE);
            continue;
        }
        int64_t own = sweep_gap(t->idle_ms);
        if (own < gap)
            gap = own;
    }
    return now + gap;
}

static void pump_ready(int64_t now)
{
    struct relay_conn *todo = ready;
    ready = NULL;
    while (todo) {
        struct relay_conn *c = todo;
        todo = c->next;
        c->next = NULL;
        c->queued = false;
        struct tunnel *t = (struct tunnel *)(void *)c;
        if (t->ended) {
            free(t);
            continue;
        }
        enum relay_state state = relay_pump(c);
        uint64_t moved = c->end[0].sent + c->end[1].sent;
        if (moved != t->moved) {
            t->moved = moved;
            t->last_active_ms = now;
        }
        if (state == RELAY_DONE)
            finish(t, c->failed || c->out_of_memory ? END_ERROR : END_CLOSED);
        else if (state == RELAY_MORE)
            relay_queue(&ready, c);
    }
}

static void *relay_thread(void *unused)
{
    (void)unused;
    struct epoll_event events[EVENTS];
    int64_t next_sweep = now_ms() + SWEEP_MAX_MS;
    for (;;) {
        int64_t now = now_ms();
        int timeout = ready ? 0 : next_sweep > now ? (int)(next_sweep - now) : 0;
        int n = epoll_wait(ep, events, EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            perror("cloister guardian: tunnel relay: epoll_wait");
            abort(); /* a relay that cannot wait would spin; the guardian restarts and cloisters reconnect */
        }
        bool woken = false;
        /* First only note what each event says; the work is done below, once per tunnel. */
        for (int i = 0; i < n; i++) {
            struct relay_end *e = events[i].data.ptr;
            if (!e) {
                woken = true;
                continue;
            }
            relay_note(e, events[i].events);
            relay_queue(&ready, relay_conn_of(e));
        }
        now = now_ms();
        if (woken) {
            uint64_t count;
            while (read(wake_fd, &count, sizeof count) < 0 && errno == EINTR)
                ;
            pthread_mutex_lock(&lock);
            bool stop = stopping;
            pthread_mutex_unlock(&lock);
            if (stop)
                break;
            take_started(now, &next_sweep);
            take_cuts();
        }
        pump_ready(now);
        if (now >= next_sweep)
            next_sweep = sweep_idle(now);
    }
    /* The process is going away: close everything, report nothing. */
    while (live) {
        struct tunnel *t = live;
        live = t->next;
        relay_release(&t->conn);
        if (!t->conn.queued)
            free(t); /* the queued ones are freed with the ready list, below */
    }
    for (struct relay_conn *c = ready, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    return NULL;
}

/* ====================================================================== the JS thread */

static napi_value throw_errno(napi_env env, int err, const char *what)
{
    char message[256];
    snprintf(message, sizeof message, "tunnel relay: %s: %s", what, strerror(err));
    napi_throw_error(env, NULL, message);
    return NULL;
}

/* Delivers one ended tunnel to onEnd(id, bytesUp, bytesDown, end) on the JS thread. */
static void call_on_end(napi_env env, napi_value callback, void *context, void *data)
{
    (void)context;
    struct ended_tunnel *report = data;
    if (env && callback) {
        napi_value args[4], global;
        napi_create_uint32(env, report->id, &args[0]);
        napi_create_double(env, (double)report->up, &args[1]);
        napi_create_double(env, (double)report->down, &args[2]);
        napi_create_string_utf8(env, ENDING_NAMES[report->end], NAPI_AUTO_LENGTH, &args[3]);
        napi_get_global(env, &global);
        napi_call_function(env, global, callback, 4, args, NULL);
    }
    free(report);
}

static void stop_thread(void *unused)
{
    (void)unused;
    pthread_mutex_lock(&lock);
    stopping = true;
    pthread_mutex_unlock(&lock);
    wake();
    pthread_join(thread, NULL);
}

static napi_value init(napi_env env, napi_callback_info info)
{
    size_t argc = 1;
    napi_value callback;
    napi_valuetype type;
    napi_get_cb_info(env, info, &argc, &callback, NULL, NULL);
    if (argc < 1 || napi_typeof(env, callback, &type) != napi_ok || type != napi_function)
        return napi_throw_type_error(env, NULL, "tunnel relay: init(onEnd) takes a function"), NULL;
    if (ep >= 0)
        return napi_throw_error(env, NULL, "tunnel relay: init() was called already"), NULL;

    napi_value name;
    napi_create_string_utf8(env, "cloister tunnel relay", NAPI_AUTO_LENGTH, &name);
    if (napi_create_threadsafe_function(env, callback, NULL, name, 0, 1, NULL, NULL, NULL, call_on_end, &on_end) != napi_ok)
        return napi_throw_error(env, NULL, "tunnel relay: cannot create the completion channel"), NULL;
    /* The tunnels' own sockets are not node's any more: whatever keeps the guardian running (its
     * servers) keeps this alive too, and a process with nothing else to do may exit. */
    napi_unref_threadsafe_function(env, on_end);

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return throw_errno(env, errno, "epoll_create1");
    wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    if (wake_fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, wake_fd, &ev) < 0)
        return throw_errno(env, errno, "eventfd");
    int err = pthread_create(&thread, NULL, relay_thread, NULL);
    if (err)
        return throw_errno(env, err, "pthread_create");
    napi_add_env_cleanup_hook(env, stop_thread, NULL);
    return NULL;
}

/* An optional Buffer argument: its bytes, or none for undefined/null. False if it is something else. */
static bool optional_bytes(napi_env env, napi_value value, void **data, size_t *len)
{
    napi_valuetype type;
    bool is_buffer = false;
    *data = NULL;
    *len = 0;
    if (napi_typeof(env, value, &type) != napi_ok)
        return false;
    if (type == napi_undefined || type == napi_null)
        return true;
    return napi_is_buffer(env, value, &is_buffer) == napi_ok && is_buffer && napi_get_buffer_info(env, value, data, len) == napi_ok;
}

static napi_value start(napi_env env, napi_callback_info info)
{
    size_t argc = 5;
    napi_value args[5];
    napi_get_cb_info(env, info, &argc, args, NULL, NULL);
    int32_t client_fd = -1, server_fd = -1;
    int64_t idle_ms = 0;
    void *early_up, *early_down;
    size_t up_len, down_len;
    if (ep < 0)
        return napi_throw_error(env, NULL, "tunnel relay: start() before init()"), NULL;
    if (argc < 3 || napi_get_value_int32(env, args[0], &client_fd) != napi_ok || napi_get_value_int32(env, args[1], &server_fd) != napi_ok ||
        napi_get_value_int64(env, args[2], &idle_ms) != napi_ok || client_fd < 0 || server_fd < 0 || idle_ms <= 0 ||
        !optional_bytes(env, argc > 3 ? args[3] : NULL, &early_up, &up_len) || !optional_bytes(env, argc > 4 ? args[4] : NULL, &early_down, &down_len))
        return napi_throw_type_error(env, NULL, "tunnel relay: start(clientFd, serverFd, idleMs > 0, earlyUp?, earlyDown?)"), NULL;

    struct tunnel *t = calloc(1, sizeof *t);
    if (!t)
        return throw_errno(env, ENOMEM, "start");
    /* Duplicates above the standard fds, closed on exec: the caller closes its own right after. */
    int client = fcntl(client_fd, F_DUPFD_CLOEXEC, 3);
    int server = client < 0 ? -1 : fcntl(server_fd, F_DUPFD_CLOEXEC, 3);
    relay_conn_init(&t->conn, client, server);
    if (server < 0 || !relay_preload(&t->conn.end[RELAY_SERVER], early_up, up_len) || !relay_preload(&t->conn.end[RELAY_CLIENT], early_down, down_len)) {
        int err = server < 0 ? errno : ENOMEM;
        /* Not relay_release: it reads into the pump's buffer, which only the relay thread may touch. */
        for (int s = 0; s < 2; s++) {
            if (t->conn.end[s].fd >= 0)
                close(t->conn.end[s].fd);
            free(t->conn.end[s].pend);
        }
        free(t);
        return throw_errno(env, err, "start");
    }
    t->idle_ms = idle_ms;
    t->id = ++last_id ? last_id : ++last_id; /* 0 is never an id */

    pthread_mutex_lock(&lock);
    t->next = to_start;
    to_start = t;
    pthread_mutex_unlock(&lock);
    wake();
    napi_value id;
    napi_create_uint32(env, t->id, &id);
    return id;
}

static napi_value cut(napi_env env, napi_callback_info info)
{
    size_t argc = 1;
    napi_value arg;
    uint32_t id;
    napi_get_cb_info(env, info, &argc, &arg, NULL, NULL);
    if (argc < 1 || napi_get_value_uint32(env, arg, &id) != napi_ok)
        return napi_throw_type_error(env, NULL, "tunnel relay: cut(id)"), NULL;
    struct cut_request *r = malloc(sizeof *r);
    if (!r)
        return throw_errno(env, ENOMEM, "cut");
    r->id = id;
    pthread_mutex_lock(&lock);
    r->next = to_cut;
    to_cut = r;
    pthread_mutex_unlock(&lock);
    wake();
    return NULL;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */)
{
    const napi_property_descriptor functions[] = {
        { "init", NULL, init, NULL, NULL, NULL, napi_enumerable, NULL },
        { "start", NULL, start, NULL, NULL, NULL, napi_enumerable, NULL },
        { "cut", NULL, cut, NULL, NULL, NULL, napi_enumerable, NULL },
        { "takeListener", NULL, take_listener, NULL, NULL, NULL, napi_enumerable, NULL },
    };
    napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
    return exports;
}
