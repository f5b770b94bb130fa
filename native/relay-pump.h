/*
 * relay-pump: moves bytes both ways between the two stream sockets of a connection, for an epoll
 * loop that is not part of it. Used by the cloister's bridge (`cloister-init relay`: the TCP port
 * inside a cloister -> the guardian's unix socket) and by the guardian's tunnel relay (relay.node:
 * the cloister's connection -> the origin), so both pass bytes, half-closes and back-pressure the
 * same way.
 *
 * The loop registers each end once, edge-triggered, for input and output (relay_register), hands
 * every event to relay_note, and calls relay_pump for each connection an event touched. An event
 * only records that a socket became readable or writable (can_read / can_write); relay_pump does
 * the work, so the cost per event stays constant whatever the number of connections, and a socket
 * that reports HUP or ERR forever (as level-triggered epoll would) cannot make a loop spin.
 *
 * Memory: bytes are read into one scratch buffer shared by every connection of the process and
 * written straight on. Only what the receiving socket does not take at once is copied into a
 * per-direction buffer (at most one read, RELAY_CHUNK bytes), and while that buffer holds anything
 * the sending side is not read: that is the back-pressure. An idle connection costs one small
 * struct and its two sockets. Because of the shared buffer, one thread per process pumps.
 *
 * Why read/write and not splice() through pipes: with 64 KiB pipes splice measured only ~10%
 * faster here (1 MiB pipes: ~1.5x, about the speed of TCP loopback itself), and pipes are charged
 * to the user's host-wide pipe quota (fs.pipe-user-pages-soft, ~1000 default pipes), which the
 * relays of many cloisters would use up, leaving every new pipe of that user a single page.
 *
 * Build: compiled into each program that uses it (scripts/build-native.mjs).
 */
#ifndef CLOISTER_RELAY_PUMP_H
#define CLOISTER_RELAY_PUMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RELAY_CHUNK 65536 /* one read; also the most a direction ever buffers */

/* The two ends of a connection: the client's (whose unread input is read off before closing, so
 * it gets a FIN and not a reset) and the server's. */
enum { RELAY_CLIENT = 0, RELAY_SERVER = 1 };

struct relay_end {
    int fd;
    uint8_t side;     /* RELAY_CLIENT or RELAY_SERVER: its index in relay_conn.end */
    bool can_read;    /* edge-triggered readiness not used up yet (cleared on EAGAIN only) */
    bool can_write;
    bool rd_eof;      /* nothing more will be read from this socket (EOF, or an error) */
    bool wr_shut;     /* shutdown(SHUT_WR) has been sent to it */
    bool peer_gone;   /* its peer takes no more data: the direction into this socket is over */
    uint32_t pend_off, pend_len;
    char *pend;       /* read from the other socket (or given at the start), not yet taken by this one */
    uint64_t sent;    /* bytes this socket has taken */
};

struct relay_conn {
    struct relay_end end[2];  /* first member: an end finds its connection from end - side */
    struct relay_conn *next;  /* link in the loop's ready list */
    bool queued;              /* in the ready list */
    bool failed;              /* a socket was reset (what the other side sent is still delivered) */
    bool out_of_memory;       /* a direction could not keep its bytes: the connection is over */
};

enum relay_state {
    RELAY_WAIT, /* nothing more to do until an event */
    RELAY_MORE, /* out of rounds with work left: pump again after the others had their turn */
    RELAY_DONE, /* both directions finished, or the connection cannot be served: release it */
};

/* Both fds become the connection's, closed by relay_release (-1: not there yet). Every send and
 * receive is MSG_DONTWAIT, so they need not be in non-blocking mode. */
void relay_conn_init(struct relay_conn *c, int client_fd, int server_fd);

/* Gives `dst` bytes to send before anything relayed to it. False when out of memory. */
bool relay_preload(struct relay_end *dst, const void *bytes, size_t len);

/* Adds an end to the epoll set `ep`, edge-triggered, its events carrying the end itself. */
bool relay_register(int ep, struct relay_end *e);

/* Records what one epoll event says about its end. The caller then pumps that end's connection. */
void relay_note(struct relay_end *e, uint32_t events);

struct relay_conn *relay_conn_of(struct relay_end *e);

/* Puts c on the loop's ready list (once): the list of connections to pump before the next wait. */
void relay_queue(struct relay_conn **ready, struct relay_conn *c);

/* Does what the connection's sockets allow now. */
enum relay_state relay_pump(struct relay_conn *c);

/* Closes both sockets (after reading off the client's unread input, into the shared buffer: so
 * only on the pumping thread) and frees what is buffered; the struct itself stays the caller's. */
void relay_release(struct relay_conn *c);

#endif
