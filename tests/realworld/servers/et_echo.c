/* An edge-triggered epoll echo server written the careful way.
 *
 * Facts from epoll(7) it relies on, and what they mean here:
 *   - EPOLLET reports a change, not a state: after an event, read() (and accept()) must be
 *     repeated until EAGAIN, or the rest waits for an edge that never comes. So every socket
 *     is non-blocking (accept4 with SOCK_NONBLOCK) and every read loop ends on EAGAIN.
 *   - EPOLLOUT under EPOLLET fires when the send buffer goes from full to not full. It is armed
 *     with EPOLL_CTL_MOD only while output is queued and disarmed once the queue is empty.
 *   - A peer that does not read must not make us buffer without limit: past OUT_CAP queued
 *     bytes we stop reading (the kernel's receive window then stops the peer) and resume
 *     reading, without waiting for a new edge, once EPOLLOUT lets the queue drain.
 *   - On EMFILE accept() fails but the connection stays in the backlog: a spare fd is given
 *     up to accept it and close it at once, so the backlog drains and nothing spins.
 *
 * Variants, compiled with -D (each one is a way real servers are written):
 *   READ_ONCE             one read() per event, the classic EPOLLET bug (READ_SIZE sets its
 *                         buffer, 4096 by default)
 *   EPOLLOUT_ALWAYS       nginx's way: EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET registered once per
 *                         connection and never modified (under EPOLLET this costs nothing)
 *   ACCEPT_ONCE           one accept() per listener event: under EPOLLET a second connection
 *                         that arrived in the same wakeup waits in the backlog
 *   BLOCKING_ACCEPTED     accepted sockets left blocking (accept4 without SOCK_NONBLOCK): the
 *                         read loop's last read() blocks instead of failing with EAGAIN, and
 *                         the whole loop waits in it
 *   CLOSE_ON_RDHUP        closes as soon as EPOLLRDHUP is reported, before reading: data that
 *                         came with the FIN is never read, so a half-closed client loses its echo
 *   LOOP_IN_THREAD        the event loop runs in a thread and main() ends with pthread_exit(),
 *                         a C idiom: the process lives on, but its main thread is a zombie, and
 *                         /proc/PID shows no fds, memory or sockets (only /proc/TID does)
 *
 * Usage: et_echo PORT
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef READ_SIZE
#define READ_SIZE 4096
#endif
#define OUT_CAP (256 * 1024)
#define MAX_EVENTS 256

struct conn {
    int fd;
    char *out;          /* queued echo: out[off..len) is unsent */
    size_t len, off, cap;
    int out_armed;      /* EPOLLOUT currently in the interest mask */
    int read_paused;    /* stopped reading at OUT_CAP: the kernel may still hold input */
    int peer_closed;    /* read() returned 0 */
};

static int epfd, listen_fd, spare_fd = -1;

static void die(const char *what) { perror(what); exit(EXIT_FAILURE); }

static void conn_close(struct conn *c)
{
    close(c->fd); /* the last reference: epoll drops the registration */
    free(c->out);
    free(c);
}

static size_t pending(const struct conn *c) { return c->len - c->off; }

static int queue(struct conn *c, const char *data, size_t n)
{
    if (c->off == c->len) c->off = c->len = 0;
    if (c->len + n > c->cap) {
        if (c->off > 0) { /* compact before growing */
            memmove(c->out, c->out + c->off, c->len - c->off);
            c->len -= c->off;
            c->off = 0;
        }
        if (c->len + n > c->cap) {
            size_t cap = c->cap ? c->cap : 16384;
            while (cap < c->len + n) cap *= 2;
            char *out = realloc(c->out, cap);
            if (!out) return -1;
            c->out = out;
            c->cap = cap;
        }
    }
    memcpy(c->out + c->len, data, n);
    c->len += n;
    return 0;
}

/* Send what is queued until done or EAGAIN. -1 when the connection is broken. */
static int flush(struct conn *c)
{
    while (pending(c) > 0) {
        ssize_t n = send(c->fd, c->out + c->off, pending(c), MSG_NOSIGNAL);
        if (n > 0) { c->off += n; continue; }
        if (n == -1 && errno == EINTR) continue;
        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        return -1; /* EPIPE, ECONNRESET: the peer is gone */
    }
    return 0;
}

static int update_interest(struct conn *c)
{
#ifdef EPOLLOUT_ALWAYS
    (void)c;
    return 0;
#else
    int want_out = pending(c) > 0;
    if (want_out == c->out_armed) return 0;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET | (want_out ? EPOLLOUT : 0),
                             .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) == -1) return -1;
    c->out_armed = want_out;
    return 0;
#endif
}

/* Read until EAGAIN (or until OUT_CAP bytes wait to be sent), echoing as we go. */
static int on_readable(struct conn *c)
{
    char buf[READ_SIZE];
    for (;;) {
        if (pending(c) >= OUT_CAP) { c->read_paused = 1; return 0; }
        ssize_t n = read(c->fd, buf, sizeof buf);
        if (n > 0) {
            if (queue(c, buf, n) == -1 || flush(c) == -1) return -1;
#ifdef READ_ONCE
            c->read_paused = 0;
            return 0;
#else
            continue;
#endif
        }
        if (n == 0) { c->peer_closed = 1; c->read_paused = 0; return 0; }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) { c->read_paused = 0; return 0; }
        return -1;
    }
}

static void on_client(struct conn *c, uint32_t events)
{
    if (events & EPOLLERR) { conn_close(c); return; }
#ifdef CLOSE_ON_RDHUP
    if (events & (EPOLLRDHUP | EPOLLHUP)) { conn_close(c); return; }
#endif
    if ((events & EPOLLOUT) && flush(c) == -1) { conn_close(c); return; }
    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) || (c->read_paused && pending(c) < OUT_CAP)) {
        if (!c->peer_closed && on_readable(c) == -1) { conn_close(c); return; }
    }
    if (c->peer_closed && pending(c) == 0) { conn_close(c); return; }
    if (update_interest(c) == -1) conn_close(c);
}

/* EMFILE/ENFILE: give up the spare fd, take one connection off the backlog and close it.
 * Returns 0 once the backlog is empty: accept() reserves the fd before it looks at the queue,
 * so at the limit it keeps failing with EMFILE and never reaches EAGAIN by itself. */
static int shed_one(void)
{
    close(spare_fd);
    int fd = accept(listen_fd, NULL, NULL);
    if (fd != -1) close(fd);
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd != -1;
}

static void on_listener(void)
{
    for (;;) {
#ifdef BLOCKING_ACCEPTED
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
#else
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
#endif
        if (fd == -1) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if ((errno == EMFILE || errno == ENFILE) && spare_fd != -1) {
                fprintf(stderr, "accept: %s, shedding a connection\n", strerror(errno));
                if (shed_one()) continue;
                return;
            }
            perror("accept4");
            return;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (!c) { close(fd); continue; }
        c->fd = fd;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = c};
#ifdef EPOLLOUT_ALWAYS
        ev.events |= EPOLLOUT;
        c->out_armed = 1;
#endif
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == -1) { perror("epoll_ctl ADD"); conn_close(c); continue; }
#ifdef ACCEPT_ONCE
        return;
#endif
    }
}

static void *serve(void *unused);

int main(int argc, char *argv[])
{
    if (argc != 2) { fprintf(stderr, "usage: %s PORT\n", argv[0]); return 2; }
    signal(SIGPIPE, SIG_IGN);
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd == -1) die("socket");
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
                               .sin_addr.s_addr = htonl(INADDR_ANY)};
    if (bind(listen_fd, (struct sockaddr *)&addr, sizeof addr) == -1) die("bind");
    if (listen(listen_fd, SOMAXCONN) == -1) die("listen");

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd == -1) die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL}; /* NULL: the listener */
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev) == -1) die("epoll_ctl listener");
    printf("listening on 0.0.0.0:%s\n", argv[1]);
    fflush(stdout);
#ifdef LOOP_IN_THREAD
    pthread_t loop;
    if (pthread_create(&loop, NULL, serve, NULL) != 0) die("pthread_create");
    pthread_exit(NULL);
#else
    serve(NULL);
#endif
}

static void *serve(void *unused)
{
    (void)unused;
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n == -1) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL) on_listener();
            else on_client(events[i].data.ptr, events[i].events);
        }
    }
    return NULL; /* never reached: the signature is pthread_create's */
}
