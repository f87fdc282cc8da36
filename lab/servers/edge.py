"""Edge-triggered epoll echo server (EPOLLET).

Facts about edge-triggered epoll, then what they mean for this server:

- With EPOLLET, epoll_wait() reports an fd when its state changes (new bytes arrive, room
  frees up in the send buffer, a connection is queued), once. Bytes left unread are never
  reported again. So a handler reads until EAGAIN (accept() too), until a short read says the
  queue is empty (below), or until its turn is over (the read budget, below), and then the
  connection is revisited without waiting for an edge.
- Draining to EAGAIN needs non-blocking fds: the last recv() on a blocking socket would hang
  the whole loop instead of failing with EAGAIN.
- Anything that arrives after an event was handed out raises a new edge, even while the
  handler is still running, so stopping at EAGAIN loses nothing.
- A short read (fewer bytes than asked for) means the receive queue was empty at that
  instant, and saves the recv() that would only fail with EAGAIN: one syscall per request in
  a ping-pong. Two exceptions, both visible in the event: the peer's FIN is queued
  (EPOLLRDHUP; it raises no new edge, so read on to see EOF), and TCP urgent data is pending
  (EPOLLPRI; recv() stops short at the urgent mark with bytes queued behind it, see
  common.configure_client).
- Read budget: a client that sends as fast as the server reads would keep a read-to-EAGAIN
  loop going forever, starving the other connections, the timer and the signals. So each
  connection gets READS_PER_TURN recv() calls per wakeup (READS_PER_TURN x RECV_SIZE bytes).
  One that uses them all goes on the ``ready`` list: the bytes it still has raise no new
  edge, so it is revisited after the batch, and epoll_wait() does not block (timeout 0)
  while the list is not empty, so the others' events come in between.
- An fd number names a socket only until close(): accept() may hand the same number out at
  once, and an event harvested for the old socket in the same batch would then reach the new
  client (a stale EPOLLERR would close it; the timeout server's timer closes fds in the middle
  of a batch). epoll's data field could carry a per-connection token, but Python's
  select.epoll stores only the fd. So no fd is created while a batch is being dispatched:
  the listener's event is noted and accept() runs after the batch. An event for a socket
  closed earlier in the batch finds no connection and is dropped.
- epoll_ctl(EPOLL_CTL_MOD) re-checks readiness and queues an event at once if the fd is ready.
  That re-arms the listener after accept() failed with EMFILE: the pending connections raise
  no new edge by themselves.
- EPOLLOUT is in the interest set only while output is pending, and EPOLL_CTL_MOD runs only
  when the set really changes (it is a syscall; most events change nothing).
"""

from __future__ import annotations

import select
import signal
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
    configure_client,
    event_log,
    flush,
    make_listener,
    peer_name,
    receive_buffer,
    recv_and_echo,
    run_until_signal,
)

# Every connection always watches input, the peer's FIN and urgent data, edge-triggered;
# EPOLLOUT is added while output is pending. Under EPOLLET an EPOLLIN left registered while
# reading is paused costs nothing: it is reported once, not on every wait.
CONNECTION_EVENTS = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLPRI | select.EPOLLET
LISTENER_EVENTS = select.EPOLLIN | select.EPOLLET
# A short read proves the queue empty unless one of these is in the event (see above).
MORE_BEHIND_A_SHORT_READ = select.EPOLLRDHUP | select.EPOLLPRI
READS_PER_TURN = 16


class EdgeServer:
    """The edge-triggered loop. The timeout and graceful servers extend it through
    ``on_control_event`` (their own fds in the same epoll), ``on_exit_signal``,
    ``on_connection_event``, ``after_events``, ``poll_timeout`` and the ``connection_*``
    hooks."""

    def __init__(self, options: ServerOptions) -> None:
        self.max_buffer = options.max_buffer
        self.counters = Counters()
        self.log = event_log(options)
        self.buffer = receive_buffer()
        self.connections: dict[int, Connection] = {}
        self.ready: list[Connection] = []  # spent their read budget with input left
        self.accept_paused_until: float | None = None
        self.running = True
        self.listener = make_listener(options.host, options.port, options.backlog)
        self.epoll = select.epoll()
        self.epoll.register(self.listener.fileno(), LISTENER_EVENTS)

    def totals(self) -> Counters:
        return self.counters

    def run(self, signals: LoopSignals) -> int:
        self.epoll.register(signals.fd, select.EPOLLIN)
        while self.running:
            events = self.epoll.poll(0 if self.ready else self.poll_timeout())
            self.counters.epoll_waits += 1
            self.counters.events += len(events)
            accept_due = False
            for fd, mask in events:
                if (conn := self.connections.get(fd)) is not None:
                    self.on_connection_event(conn, mask)
                elif fd == self.listener.fileno():  # -1 once graceful shutdown closed it
                    accept_due = True  # after the batch: no fd number is reused within it
                elif fd == signals.fd:
                    for signum in signals.take():
                        self.on_exit_signal(signum)
                else:
                    self.on_control_event(fd, mask)
            if self.ready:
                self.revisit_ready()
            if accept_due:
                self.accept_all()
            self.after_events()
        return 0

    def on_exit_signal(self, signum: signal.Signals) -> None:
        self.running = False

    def revisit_ready(self) -> None:
        """Give the connections that spent their read budget another turn."""
        ready, self.ready = self.ready, []
        for conn in ready:
            mask, conn.revisit_mask = conn.revisit_mask, 0
            if self.connections.get(conn.fd) is conn:  # not closed (and its fd reused) since
                self.on_connection_event(conn, mask)

    def revisit_later(self, conn: Connection, mask: int) -> None:
        if not conn.revisit_mask:
            self.ready.append(conn)
        conn.revisit_mask |= mask

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
        """An event on an fd that is neither the listener nor a client (none here), or a
        stale one for a client closed earlier in the batch (dropped)."""

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
            configure_client(sock)
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
        """Read and echo until EAGAIN, EOF, a short read, the output cap or the read budget."""
        reads_left = READS_PER_TURN  # a countdown: a range() per event costs more than a read
        while reads_left:
            reads_left -= 1
            if len(conn.outbuf) >= self.max_buffer:
                # Output cap reached: the rest stays in the kernel, and TCP flow control slows
                # the client down until a flush makes room (see on_connection_event).
                return
            count = recv_and_echo(conn, self.buffer, self.counters, self.log)
            if not count:  # EAGAIN (drained: the next byte to arrive is a new edge) or EOF
                return
            if count < RECV_SIZE and not mask & MORE_BEHIND_A_SHORT_READ:
                return  # the queue was empty (see the facts above)
        self.revisit_later(conn, mask)

    def close(self, conn: Connection, reason: str) -> None:
        del self.connections[conn.fd]
        self.epoll.unregister(conn.fd)  # before close(): afterwards the fd number means nothing
        conn.sock.close()
        self.counters.closed += 1
        self.counters.bytes_dropped += len(conn.outbuf)
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

    def connection_closed(self, conn: Connection) -> None:
        pass


def serve(options: ServerOptions) -> int:
    return run_until_signal("edge", EdgeServer(options), options)
