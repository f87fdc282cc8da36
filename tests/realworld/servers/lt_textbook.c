/* A level-triggered epoll echo server in the style of the epoll(7) man page example, the way
 * tutorials and first attempts write it: blocking sockets, one read() per event, a send()
 * loop that blocks until the whole chunk is written.
 *
 * Under level triggering this is correct for echo as long as every peer reads: bytes left in
 * a socket after one read() are reported again by the next epoll_wait(). Its weaknesses are
 * the usual ones, and the grader must name them:
 *   - a peer that stops reading blocks send(), and with it the whole loop (everyone waits);
 *   - accept() failing with EMFILE is printed and retried, but the listener stays readable,
 *     so the loop spins (and floods stderr) until an fd is freed.
 *
 * Variants, compiled with -D (each is a bug seen in real submissions):
 *   EXIT_ON_ACCEPT_ERROR  the man page's own `perror("accept"); exit(EXIT_FAILURE);`
 *   FORGET_CLOSE          on EOF the fd is removed from epoll but never closed: the socket
 *                         stays in CLOSE_WAIT and the fd leaks
 *
 * Usage: lt_textbook PORT
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 64
#define BUF_SIZE 4096

int main(int argc, char *argv[])
{
    struct epoll_event ev, events[MAX_EVENTS];
    struct sockaddr_in addr;
    int listen_sock, conn_sock, nfds, epollfd, one = 1;
    char buf[BUF_SIZE];

    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        exit(EXIT_FAILURE);
    }
    signal(SIGPIPE, SIG_IGN); /* a peer that went away must not kill us on send() */

    listen_sock = socket(AF_INET, SOCK_STREAM, 0);
    if (listen_sock == -1) { perror("socket"); exit(EXIT_FAILURE); }
    setsockopt(listen_sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons(atoi(argv[1]));
    if (bind(listen_sock, (struct sockaddr *)&addr, sizeof addr) == -1) { perror("bind"); exit(EXIT_FAILURE); }
    if (listen(listen_sock, SOMAXCONN) == -1) { perror("listen"); exit(EXIT_FAILURE); }
    printf("echo server listening on port %s\n", argv[1]);

    epollfd = epoll_create1(0);
    if (epollfd == -1) { perror("epoll_create1"); exit(EXIT_FAILURE); }
    ev.events = EPOLLIN;
    ev.data.fd = listen_sock;
    if (epoll_ctl(epollfd, EPOLL_CTL_ADD, listen_sock, &ev) == -1) { perror("epoll_ctl: listen_sock"); exit(EXIT_FAILURE); }

    for (;;) {
        nfds = epoll_wait(epollfd, events, MAX_EVENTS, -1);
        if (nfds == -1) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            exit(EXIT_FAILURE);
        }
        for (int n = 0; n < nfds; ++n) {
            if (events[n].data.fd == listen_sock) {
                conn_sock = accept(listen_sock, NULL, NULL);
                if (conn_sock == -1) {
                    perror("accept");
#ifdef EXIT_ON_ACCEPT_ERROR
                    exit(EXIT_FAILURE);
#else
                    continue;
#endif
                }
                ev.events = EPOLLIN;
                ev.data.fd = conn_sock;
                if (epoll_ctl(epollfd, EPOLL_CTL_ADD, conn_sock, &ev) == -1) {
                    perror("epoll_ctl: conn_sock");
                    close(conn_sock);
                }
                continue;
            }

            int fd = events[n].data.fd;
            ssize_t got = read(fd, buf, sizeof buf);
            if (got <= 0) {
                if (got == -1) perror("read");
#ifdef FORGET_CLOSE
                epoll_ctl(epollfd, EPOLL_CTL_DEL, fd, NULL);
#else
                close(fd); /* the last reference: epoll forgets it too */
#endif
                continue;
            }
            ssize_t off = 0;
            while (off < got) {
                ssize_t sent = send(fd, buf + off, got - off, 0);
                if (sent == -1) {
                    if (errno == EINTR) continue;
                    perror("send");
                    close(fd);
                    break;
                }
                off += sent;
            }
        }
    }
}
