"""Level-triggered epoll echo server.

Facts about level-triggered epoll, then what they mean for this server:

- epoll_wait() reports an fd for as long as it is ready. Bytes left unread in a socket are
  reported again on the next wait, so one recv() per event is enough: re-notification does
  the rest, and a busy client cannot starve the others.
- The listener is the same: one accept() per event; a burst of connects is picked up over
  several waits.
- EPOLLOUT is reported whenever the send buffer has room, which is nearly always. Watching it
  on an idle connection would wake the loop for nothing, over and over (a busy loop), so it is
  in the interest set only while the connection's output buffer holds bytes.
- EPOLLIN stays reported while the peer's EOF is pending, so after recv() returns b"" the
  connection stops watching EPOLLIN.
- EPOLLERR and EPOLLHUP are always reported, asked for or not.
- recv() may come up short with bytes still queued (it stops at a TCP urgent mark, see
  common.configure_client): those bytes are reported on the next wait like any others, so
  nothing here depends on how much one recv() returns.
- An event is dispatched by fd number. A connection is closed only while handling its own
  event, and each fd appears once per batch, so no later event in a batch can name a
  socket closed earlier in it (the edge server's timer-driven sibling must take care).
- When accept() fails with EMFILE the connection stays in the backlog and the listener stays
  ready: a level-triggered loop would spin on it. The listener is unwatched (interest 0)
  until a connection closes or ACCEPT_RETRY_SECONDS pass.
- Level triggering tolerates blocking sockets, but one blocking recv() or send() stalls every
  client, so every socket is non-blocking all the same.
"""

from __future__ import annotations

import select
import time

from lab.servers.common import (
    ACCEPT_RETRY_SECONDS,
    ACCEPT_CLIENT_ERRNOS,
    FD_EXHAUSTION_ERRNOS,
    Connection,
    Counters,
    LoopSignals,
    ServerOptions,
    configure_client,
    event_log,
    flush,
    make_listener,
    peer_name,
    receive_buffer,
    recv_and_echo,
    run_until_signal,
)


class LevelServer:
    def __init__(self, options: ServerOptions) -> None:
        self.max_buffer = options.max_buffer
        self.counters = Counters()
        self.log = event_log(options)
        self.buffer = receive_buffer()
        self.connections: dict[int, Connection] = {}
        self.accept_paused_until: float | None = None
        self.running = True
        self.listener = make_listener(options.host, options.port, options.backlog)
        self.epoll = select.epoll()
        self.epoll.register(self.listener.fileno(), select.EPOLLIN)

    def totals(self) -> Counters:
        return self.counters

    def run(self, signals: LoopSignals) -> int:
        listen_fd = self.listener.fileno()
        self.epoll.register(signals.fd, select.EPOLLIN)
        while self.running:
            # Block until something is ready, or briefly while accepting is paused.
            timeout = ACCEPT_RETRY_SECONDS if self.accept_paused_until is not None else -1
            events = self.epoll.poll(timeout)
            self.counters.epoll_waits += 1
            self.counters.events += len(events)
            for fd, mask in events:
                if fd == listen_fd:
                    self.accept_one()
                elif (conn := self.connections.get(fd)) is not None:
                    self.on_connection_event(conn, mask)
                elif fd == signals.fd and signals.take():
                    self.running = False  # SIGINT or SIGTERM (SIGUSR1 wrote the counters)
            if self.accept_paused_until is not None and time.monotonic() >= self.accept_paused_until:
                self.epoll.modify(listen_fd, select.EPOLLIN)
                self.accept_paused_until = None
        return 0

    def accept_one(self) -> None:
        try:
            sock, address = self.listener.accept()
        except BlockingIOError:  # the client gave up between the event and accept()
            self.counters.eagain += 1
            return
        except OSError as error:
            if error.errno in FD_EXHAUSTION_ERRNOS:
                self.epoll.modify(self.listener.fileno(), 0)
                self.accept_paused_until = time.monotonic() + ACCEPT_RETRY_SECONDS
                self.counters.accept_paused += 1
                return
            if error.errno in ACCEPT_CLIENT_ERRNOS:
                return  # that client is gone; the next one in the queue is fine
            raise
        self.counters.accepts += 1
        configure_client(sock)
        conn = Connection(sock, sock.fileno(), peer_name(address), interest=select.EPOLLIN)
        try:
            self.epoll.register(conn.fd, conn.interest)
        except OSError:  # ENOMEM/ENOSPC (max_user_watches): refuse this client only
            sock.close()
            return
        self.connections[conn.fd] = conn
        self.counters.opened += 1
        if self.log:
            self.log.opened(conn.fd, conn.peer)

    def on_connection_event(self, conn: Connection, mask: int) -> None:
        if mask & select.EPOLLERR:  # a reset or an unreachable peer: recv() would only say so
            self.close(conn, "socket error")
            return
        try:
            if mask & select.EPOLLOUT:
                flush(conn, self.counters, self.log)
            if mask & (select.EPOLLIN | select.EPOLLHUP):
                self.receive(conn)
        except OSError as error:  # ECONNRESET, EPIPE: only this connection ends
            self.close(conn, error.strerror or "error")
            return
        if conn.peer_closed and not conn.outbuf:
            self.close(conn, "client closed")
            return
        # Read while there is room in the output buffer (bounded memory); watch EPOLLOUT only
        # while output is pending.
        wanted = 0
        if not conn.peer_closed and len(conn.outbuf) < self.max_buffer:
            wanted |= select.EPOLLIN
        if conn.outbuf:
            wanted |= select.EPOLLOUT
        if wanted != conn.interest:
            self.epoll.modify(conn.fd, wanted)
            conn.interest = wanted

    def receive(self, conn: Connection) -> None:
        """One recv() per event: if more is waiting, the next epoll_wait says so again."""
        recv_and_echo(conn, self.buffer, self.counters, self.log)

    def close(self, conn: Connection, reason: str) -> None:
        del self.connections[conn.fd]
        self.epoll.unregister(conn.fd)  # before close(): afterwards the fd number means nothing
        conn.sock.close()
        self.counters.closed += 1
        self.counters.bytes_dropped += len(conn.outbuf)
        if self.log:
            self.log.closed(conn.fd, reason)
        if self.accept_paused_until is not None:
            self.accept_paused_until = 0.0  # an fd is free again: resume accepting now

    def close_all(self) -> None:
        for conn in list(self.connections.values()):
            self.close(conn, "server exiting")
        self.epoll.close()
        self.listener.close()


def serve(options: ServerOptions) -> int:
    return run_until_signal("level", LevelServer(options), options)
