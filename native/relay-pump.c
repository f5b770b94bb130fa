/* The byte pump shared by cloister-init's relay and the guardian's relay.node; see relay-pump.h. */
#include "relay-pump.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define RELAY_ROUNDS 8  /* read/write rounds per connection per turn: fairness between them */
#define RELAY_DISCARD 4 /* reads of unread client input thrown away before closing */

/* Shared by every connection: data passes through here on its way from one socket to the other. */
static char relay_scratch[RELAY_CHUNK];

_Static_assert(offsetof(struct relay_conn, end) == 0, "relay_conn_of() relies on end[] coming first");

struct relay_conn *relay_conn_of(struct relay_end *e)
{
    return (struct relay_conn *)(void *)(e - e->side);
}

void relay_queue(struct relay_conn **ready, struct relay_conn *c)
{
    if (c->queued)
        return;
    c->queued = true;
    c->next = *ready;
    *ready = c;
}

void relay_conn_init(struct relay_conn *c, int client_fd, int server_fd)
{
    memset(c, 0, sizeof *c);
    c->end[RELAY_CLIENT].fd = client_fd;
    c->end[RELAY_SERVER].fd = server_fd;
    c->end[RELAY_SERVER].side = RELAY_SERVER;
}

static void relay_drop_pending(struct relay_end *e)
{
    free(e->pend);
    e->pend = NULL;
    e->pend_off = e->pend_len = 0;
}

bool relay_preload(struct relay_end *dst, const void *bytes, size_t len)
{
    if (len == 0)
        return true;
    if (dst->pend_len > 0 || len > UINT32_MAX || !(dst->pend = malloc(len)))
        return false;
    memcpy(dst->pend, bytes, len);
    dst->pend_len = (uint32_t)len;
    return true;
}

/* The socket's peer will not read again: whatever was on its way there is dropped. */
static void relay_lose_peer(struct relay_end *e)
{
    e->peer_gone = true;
    relay_drop_pending(e);
}

/* Writes what the socket takes now. 0 means nothing was taken: either it is full (can_write is
 * cleared; the next EPOLLOUT edge sets it again) or its peer is gone (peer_gone is set). */
static size_t relay_send(struct relay_end *dst, const char *p, size_t len)
{
    for (;;) {
        ssize_t n = send(dst->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) {
            dst->sent += (uint64_t)n;
            return (size_t)n;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            dst->can_write = false;
        } else {
            relay_lose_peer(dst); /* EPIPE, ECONNRESET: the reader is gone */
            relay_conn_of(dst)->failed = true;
        }
        return 0;
    }
}

/* Moves bytes one way, src -> dst, as far as the two sockets allow without waiting. Returns true
 * if anything changed (so another round may do more), false if this direction must wait for an
 * event. */
static bool relay_move(struct relay_end *src, struct relay_end *dst)
{
    if (dst->peer_gone)
        return false; /* this direction is over; src is no longer read */

    /* Leftovers first: src stays unread until dst has taken them. */
    if (dst->pend_len > 0) {
        if (!dst->can_write)
            return false;
        size_t n = relay_send(dst, dst->pend + dst->pend_off, dst->pend_len);
        if (n == 0)
            return dst->peer_gone;
        dst->pend_off += (uint32_t)n;
        dst->pend_len -= (uint32_t)n;
        if (dst->pend_len > 0)
            return true; /* the next round finds out whether it is full (EAGAIN) */
        relay_drop_pending(dst);
    }

    if (src->rd_eof) {
        /* Everything src sent has been delivered: pass the half-close on. ENOTCONN (peer already
         * gone) changes nothing, so the result is ignored. */
        if (dst->wr_shut)
            return false;
        shutdown(dst->fd, SHUT_WR);
        dst->wr_shut = true;
        return true;
    }
    if (!src->can_read)
        return false;

    ssize_t got = recv(src->fd, relay_scratch, sizeof relay_scratch, MSG_DONTWAIT);
    if (got < 0) {
        if (errno == EINTR)
            return true;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            src->can_read = false;
            return false;
        }
        /* A reset: the socket is dead both ways. What src sent before it still gets delivered,
         * followed by a plain end-of-stream, since there is no way to forward a reset. */
        src->rd_eof = true;
        relay_lose_peer(src);
        relay_conn_of(src)->failed = true;
        return true;
    }
    if (got == 0) {
        src->rd_eof = true;
        return true;
    }
    size_t sent = dst->can_write ? relay_send(dst, relay_scratch, (size_t)got) : 0;
    if (dst->peer_gone || sent == (size_t)got)
        return true;
    if (!relay_preload(dst, relay_scratch + sent, (size_t)got - sent))
        relay_conn_of(dst)->out_of_memory = true; /* bytes it cannot keep: nothing to go on with */
    return true;
}

/* A direction is finished when its destination's reader is gone, or when the source has ended
 * and the end has been passed on. */
static bool relay_way_done(const struct relay_end *src, const struct relay_end *dst)
{
    return dst->peer_gone || (src->rd_eof && dst->pend_len == 0 && dst->wr_shut);
}

enum relay_state relay_pump(struct relay_conn *c)
{
    struct relay_end *client = &c->end[RELAY_CLIENT], *server = &c->end[RELAY_SERVER];
    bool more = true;
    for (int round = 0; more && !c->out_of_memory && round < RELAY_ROUNDS; round++) {
        bool up = relay_move(client, server);
        bool down = relay_move(server, client);
        more = up || down;
    }
    if (c->out_of_memory || (relay_way_done(client, server) && relay_way_done(server, client)))
        return RELAY_DONE;
    return more ? RELAY_MORE : RELAY_WAIT;
}

void relay_note(struct relay_end *e, uint32_t events)
{
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        e->can_read = true; /* at EOF or on an error, recv says which */
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        e->can_write = true;
    /* HUP before we shut our own sending side down means the peer closed completely (a guardian
     * ending an idle connection, a client reset): the direction into this socket is over even if
     * the other side never sends again. */
    if ((events & EPOLLHUP) && !e->wr_shut)
        relay_lose_peer(e);
}

bool relay_register(int ep, struct relay_end *e)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = e };
    return epoll_ctl(ep, EPOLL_CTL_ADD, e->fd, &ev) == 0;
}

void relay_release(struct relay_conn *c)
{
    /* close() on a TCP socket with unread input sends a reset, and a reset makes the kernel throw
     * away what is still queued for the client (e.g. the guardian's last reply). Reading off what
     * the client sent (it can no longer go anywhere) lets close() send a normal FIN instead. */
    struct relay_end *client = &c->end[RELAY_CLIENT];
    if (!client->rd_eof && client->fd >= 0)
        for (int i = 0; i < RELAY_DISCARD; i++)
            if (recv(client->fd, relay_scratch, sizeof relay_scratch, MSG_DONTWAIT) <= 0)
                break;
    for (int s = 0; s < 2; s++) {
        if (c->end[s].fd >= 0)
            close(c->end[s].fd); /* closing also removes it from the epoll set */
        c->end[s].fd = -1;
        relay_drop_pending(&c->end[s]);
    }
}
