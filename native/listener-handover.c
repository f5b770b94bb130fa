/*
 * The guardian's side of the listener hand-over (`cloister-init relay --hand-over`; the wire
 * format is in docs/internals/init-protocol.md): takes the cloister's listening socket out of a
 * hand-over message, and checks that it is one before the guardian accepts on it.
 *
 * In C because node cannot receive a file descriptor over a unix socket outside its own
 * child-process channels, and a plain read() of the message would drop the descriptor.
 *
 * The sender runs inside the cloister, so the message is hostile until checked: exactly the magic
 * bytes, exactly one descriptor, and that descriptor a listening TCP socket bound to
 * 127.0.0.1:PORT. Anything else is closed, and the caller learns why.
 */
#define NAPI_VERSION 8
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <node_api.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "handover-wire.h"
#include "listener-handover.h"

static const char MAGIC[] = HANDOVER_MAGIC;
#define MAX_FDS 8 /* room to see (and close) more than the one descriptor a message may carry */

/* Closes every descriptor the message carried. */
static void close_all(const int *fds, int count)
{
    for (int i = 0; i < count; i++)
        close(fds[i]);
}

/* NULL when fd is a listening TCP socket bound to 127.0.0.1:port, else what it is not. */
static const char *not_the_listener(int fd, uint16_t port)
{
    int value = 0;
    socklen_t len = sizeof value;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &value, &len) < 0 || value != AF_INET)
        return "not an IPv4 socket";
    len = sizeof value;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &len) < 0 || value != SOCK_STREAM)
        return "not a stream socket";
    len = sizeof value;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &len) < 0 || !value)
        return "not listening";
    struct sockaddr_in sin;
    len = sizeof sin;
    if (getsockname(fd, (struct sockaddr *)&sin, &len) < 0 || sin.sin_family != AF_INET ||
        sin.sin_addr.s_addr != htonl(INADDR_LOOPBACK) || ntohs(sin.sin_port) != port)
        return "not bound to the cloister's proxy port on 127.0.0.1";
    return NULL;
}

/* Reads one hand-over message without waiting: the listener's fd, -1 when nothing has arrived
 * yet, or -2 with *why set when the message is not a valid hand-over. */
static int receive(int conn, uint16_t port, const char **why)
{
    char data[sizeof MAGIC];
    union {
        char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } control;
    struct iovec iov = { .iov_base = data, .iov_len = sizeof data };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf };
    ssize_t n;
    do
        n = recvmsg(conn, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return -1;

    int fds[MAX_FDS], count = 0;
    for (struct cmsghdr *cm = n < 0 ? NULL : CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        int carried = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < carried && count < MAX_FDS; i++)
            memcpy(&fds[count++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
    }
    if (n < 0)
        *why = strerror(errno);
    else if (n == 0)
        *why = "the connection closed without a message";
    else if ((size_t)n != sizeof MAGIC - 1 || memcmp(data, MAGIC, sizeof MAGIC - 1) != 0)
        *why = "the message is not a listener hand-over";
    else if (msg.msg_flags & MSG_CTRUNC)
        *why = "the message carried too many descriptors";
    else if (count != 1)
        *why = "the message must carry exactly one descriptor";
    else if ((*why = not_the_listener(fds[0], port)) == NULL)
        return fds[0];
    close_all(fds, count);
    return -2;
}

napi_value take_listener(napi_env env, napi_callback_info info)
{
    size_t argc = 2;
    napi_value args[2];
    int32_t conn = -1;
    uint32_t port = 0;
    napi_get_cb_info(env, info, &argc, args, NULL, NULL);
    if (argc < 2 || napi_get_value_int32(env, args[0], &conn) != napi_ok || napi_get_value_uint32(env, args[1], &port) != napi_ok ||
        conn < 0 || port == 0 || port > 65535)
        return napi_throw_type_error(env, NULL, "takeListener(connectionFd, port)"), NULL;
    const char *why = NULL;
    int fd = receive(conn, (uint16_t)port, &why);
    if (fd == -2)
        return napi_throw_error(env, NULL, why), NULL;
    napi_value result;
    if (fd == -1)
        napi_get_null(env, &result);
    else
        napi_create_int32(env, fd, &result);
    return result;
}
