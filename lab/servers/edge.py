"""Edge-triggered epoll echo server (EPOLLET).

Facts about edge-triggered epoll, then what they mean for this server:

- With EPOLLET, epoll_wait() reports an fd when its state changes (new bytes arrive, room
  frees up in the send buffer, a connection is queued), once. Bytes left unread are never
  reported again. So every handler drains to EAGAIN: accept() until EAGAIN, recv() until
  EAGAIN (or a short read, see receive()), send() until the buffer is empty or EAGAIN.
- Draining to EAGAIN needs non-blocking fds: the last recv() on a blocking socket would hang
  the whole loop instead of failing with EAGAIN.
- Anything that arrives after an event was handed out raises a new edge, even while the
  handler is still running, so stopping at EAGAIN loses nothing.
- epoll_ctl(EPOLL_CTL_MOD) re-checks readiness and queues an event at once if the fd is ready.
  That re-arms the listener after accept() failed with EMFILE: the pending connections raise
  no new edge by themselves.
- EPOLLOUT is in the interest set only while output is pending, and EPOLL_CTL_MOD runs only
  when the set really changes (it is a syscall; most events change nothing).
- EPOLLRDHUP reports the peer's FIN in the same event as the data before it, which is what
  makes the short-read shortcut safe.
"""

from __future__ import annotations

import select
import time

from lab.servers.common import (
    ACCEPT_RETRY_SECONDS,
    ACCEPT_CLIENT_ERRNOS,
    FD_EXHAUSTION_ERRNOS,
    RECV_SIZE,
    Connection,
    Counters,
    LoopSignals,
    ServerOptions,
    event_log,
    flush,
    make_listener,
    peer_name,
    recv_once,
    run_until_signal,
    take_input,
)

# Every connection always watches input and the peer's FIN, edge-triggered; EPOLLOUT is added
# while output is pending. Under EPOLLET an EPOLLIN left registered while reading is paused
# costs nothing: it is reported once, not on every wait.
CONNECTION_EVENTS = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
LISTENER_EVENTS = select.EPOLLIN | select.EPOLLET


class EdgeServer:
    """The edge-triggered loop. The timeout and graceful servers extend it through
    ``on_control_event`` (their own fds in the same epoll), ``after_events``,
    ``poll_timeout`` and the ``connection_*`` hooks."""

    def __init__(self, options: ServerOptions) -> None:
        self.max_buffer = options.max_buffer
        self.counters = Counters()
        self.log = event_log(options)
        self.connections: dict[int, Connection] = {}
        self.accept_paused_until: float | None = None
        self.running = True
        self.listener = make_listener(options.host, options.port, options.backlog)
        self.epoll = select.epoll()
        self.epoll.register(self.listener.fileno(), LISTENER_EVENTS)

    def totals(self) -> Counters:
        return self.counters

    def run(self, signals: LoopSignals) -> int:
        while self.running and not signals.exit_requested:
            signals.enter_wait()
            events = self.epoll.poll(self.poll_timeout())
            signals.waiting = False
            self.counters.epoll_waits += 1
            self.counters.events += len(events)
            for fd, mask in events:
                if (conn := self.connections.get(fd)) is not None:
                    self.on_connection_event(conn, mask)
                elif fd == self.listener.fileno():  # -1 once graceful shutdown closed it
                    self.accept_all()
                else:
                    self.on_control_event(fd, mask)
            self.after_events()
        return 0

    def after_events(self) -> None:
        """Work due after each batch of events: here, resuming a paused accept."""
        if self.accept_paused_until is not None and time.monotonic() >= self.accept_paused_until:
            # Re-arm: the MOD re-checks the listener and queues an event for the pending
            # connections, which would otherwise never raise a new edge.
            self.accept_paused_until = None
            self.epoll.modify(self.listener.fileno(), LISTENER_EVENTS)

    def poll_timeout(self) -> float:
        return ACCEPT_RETRY_SECONDS if self.accept_paused_until is not None else -1

    def on_control_event(self, fd: int, mask: int) -> None:
        """An event on an fd that is neither the listener nor a client (none here)."""

    def accept_all(self) -> None:
        while True:
            try:
                sock, address = self.listener.accept()
            except BlockingIOError:  # EAGAIN: the queue is empty; the next connect is a new edge
                self.counters.eagain += 1
                return
            except OSError as error:
                if error.errno in FD_EXHAUSTION_ERRNOS:
                    # Out of fds. The rest wait in the backlog; retry after a close or a pause.
                    self.accept_paused_until = time.monotonic() + ACCEPT_RETRY_SECONDS
                    self.counters.accept_paused += 1
                    return
                if error.errno in ACCEPT_CLIENT_ERRNOS:
                    continue  # that client is gone; the next one in the queue is fine
                raise
            self.counters.accepts += 1
            sock.setblocking(False)  # accept() does not pass O_NONBLOCK on from the listener
            conn = Connection(sock, sock.fileno(), peer_name(address), interest=CONNECTION_EVENTS)
            try:
                self.epoll.register(conn.fd, conn.interest)
            except OSError:  # ENOMEM/ENOSPC (max_user_watches): refuse this client only
                sock.close()
                continue
            self.connections[conn.fd] = conn
            self.counters.opened += 1
            if self.log:
                self.log.opened(conn.fd, conn.peer)
            self.connection_opened(conn)

    def on_connection_event(self, conn: Connection, mask: int) -> None:
        if mask & select.EPOLLERR:  # a reset or an unreachable peer: recv() would only say so
            self.close(conn, "socket error")
            return
        self.connection_active(conn)
        try:
            if conn.outbuf:
                flush(conn, self.counters, self.log)
            # Read on every event, EPOLLOUT included: bytes left unread when the output cap
            # paused reading raise no new edge, so room freed by a flush must restart it.
            if not conn.peer_closed:
                self.receive(conn, mask)
        except OSError as error:  # ECONNRESET, EPIPE: only this connection ends
            self.close(conn, error.strerror or "error")
            return
        if conn.peer_closed and not conn.outbuf:
            self.close(conn, "client closed")
            return
        wanted = CONNECTION_EVENTS | (select.EPOLLOUT if conn.outbuf else 0)
        if wanted != conn.interest:
            self.epoll.modify(conn.fd, wanted)
            conn.interest = wanted

    def receive(self, conn: Connection, mask: int) -> None:
        """Read and echo until EAGAIN, EOF, a short read, or the output cap."""
        while len(conn.outbuf) < self.max_buffer:
            data = recv_once(conn, self.counters)
            if data is None:  # EAGAIN (drained: the next byte to arrive is a new edge) or EOF
                return
            take_input(conn, data, self.counters, self.log)
            flush(conn, self.counters, self.log)
            if len(data) < RECV_SIZE and not mask & select.EPOLLRDHUP:
                # A short read emptied the receive queue at that instant, and whatever arrives
                # later raises a new edge: the recv() that would only fail with EAGAIN is saved.
                # Not so when the FIN is already in (EPOLLRDHUP): it raises no new edge, so read
                # on to see EOF.
                return
        # Output cap reached: the rest stays in the kernel, and TCP flow control slows the
        # client down until a flush makes room (see on_connection_event).

    def close(self, conn: Connection, reason: str) -> None:
        del self.connections[conn.fd]
        self.epoll.unregister(conn.fd)  # before close(): afterwards the fd number means nothing
        conn.sock.close()
        self.counters.closed += 1
        if self.log:
            self.log.closed(conn.fd, reason)
        self.connection_closed(conn)
        if self.accept_paused_until is not None:
            self.accept_paused_until = 0.0  # an fd is free again: re-arm the listener now

    def close_all(self) -> None:
        for conn in list(self.connections.values()):
            self.close(conn, "server exiting")
        self.epoll.close()
        self.listener.close()

    # Hooks for the servers built on this one; no-ops here.
    def connection_opened(self, conn: Connection) -> None:
        pass

    def connection_active(self, conn: Connection) -> None:
        pass

    def connection_closed(self, conn: Connection) -> None:
        pass


def serve(options: ServerOptions) -> int:
    return run_until_signal("edge", EdgeServer(options), options)
