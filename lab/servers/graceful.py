"""Edge-triggered echo server that shuts down gracefully on SIGINT/SIGTERM via a signalfd.

Facts about signalfd, then what they mean for this server:

- A signalfd receives only signals that are blocked; an unblocked signal runs its normal
  disposition first (for SIGTERM: death). So SIGINT and SIGTERM are blocked with
  pthread_sigmask before the signalfd exists, and before anything else can go wrong.
- The signalfd is an fd like the sockets: the signal is one more event from the same
  epoll_wait, handled between two events, never in the middle of a send().
- read() returns one 128-byte signalfd_siginfo per pending signal.

The shutdown, and why each step:
1. Unregister and close the listener: new connects are refused at once (ECONNREFUSED), not
   left hanging in a backlog nobody will accept.
2. Stop echoing: what arrives from now on is read and thrown away. It is read, not left in the
   socket, because close() on a socket with unread bytes sends a RST, and a RST can destroy
   echo still on its way to the client.
3. Flush every output buffer, then shutdown(SHUT_WR): the client receives everything the
   server had received, then EOF. The server closes when the client closes its side.
4. Exit 0 when the last connection is gone, or when --drain-timeout runs out (the rest are
   closed). A second signal exits at once, with status 128 + signal number.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import time

from lab import linux
from lab.servers.common import Connection, LoopSignals, ServerOptions, recv_once, run_until_signal
from lab.servers.edge import EdgeServer

SHUTDOWN_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class GracefulServer(EdgeServer):
    def __init__(self, options: ServerOptions) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, SHUTDOWN_SIGNALS)
        super().__init__(options)
        self.drain_timeout = options.drain_timeout
        self.drain_deadline: float | None = None
        self.exit_status = 0
        self.write_side_closed: set[int] = set()
        self.signal_fd = linux.signalfd(SHUTDOWN_SIGNALS)
        self.epoll.register(self.signal_fd, select.EPOLLIN)

    @property
    def draining(self) -> bool:
        return self.drain_deadline is not None

    def on_control_event(self, fd: int, mask: int) -> None:
        if fd != self.signal_fd:
            return
        try:
            received = linux.signalfd_read(self.signal_fd)
        except BlockingIOError:
            return
        for signum in received:
            if self.draining:
                print(f"second {signum.name}: exiting now, {len(self.connections)} connection(s) "
                      "not drained", file=sys.stderr, flush=True)
                self.exit_status = 128 + signum
                self.running = False
                return
            self.begin_drain(signum)

    def begin_drain(self, signum: signal.Signals) -> None:
        self.drain_deadline = time.monotonic() + self.drain_timeout
        self.epoll.unregister(self.listener.fileno())
        self.listener.close()
        if self.log:
            self.log.note(f"{signum.name}: draining {len(self.connections)} connection(s)")
        for conn in list(self.connections.values()):
            self.finish_if_flushed(conn)
        self.running = bool(self.connections)

    def receive(self, conn: Connection, mask: int) -> None:
        if not self.draining:
            super().receive(conn, mask)
            return
        # Read and discard to EAGAIN (edge-triggered) or EOF.
        while (data := recv_once(conn, self.counters)) is not None:
            self.counters.bytes_discarded += len(data)

    def on_connection_event(self, conn: Connection, mask: int) -> None:
        super().on_connection_event(conn, mask)
        if self.draining and conn.fd in self.connections:
            self.finish_if_flushed(conn)

    def finish_if_flushed(self, conn: Connection) -> None:
        """Once nothing is pending, send EOF; the client's close ends the connection."""
        if conn.outbuf or conn.fd in self.write_side_closed:
            return
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError as error:
            self.close(conn, error.strerror or "error")
            return
        self.write_side_closed.add(conn.fd)

    def connection_closed(self, conn: Connection) -> None:
        self.write_side_closed.discard(conn.fd)
        if self.draining and not self.connections:
            self.running = False

    def poll_timeout(self) -> float:
        if self.draining:
            return max(0.0, self.drain_deadline - time.monotonic())
        return super().poll_timeout()

    def after_events(self) -> None:
        if not self.draining:
            super().after_events()
        elif time.monotonic() >= self.drain_deadline and self.connections:
            print(f"drain timeout ({self.drain_timeout:g} s): closing {len(self.connections)} "
                  "connection(s) with output pending", file=sys.stderr, flush=True)
            self.running = False

    def run(self, signals: LoopSignals) -> int:
        super().run(signals)  # SIGINT and SIGTERM are blocked: they come from the signalfd
        return self.exit_status

    def close_all(self) -> None:
        super().close_all()
        os.close(self.signal_fd)


def serve(options: ServerOptions) -> int:
    return run_until_signal("graceful", GracefulServer(options), options)
