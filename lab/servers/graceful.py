"""Edge-triggered echo server that shuts down gracefully on SIGINT/SIGTERM.

The signals come from the signalfd every server reads (common.LoopSignals); what differs is
what this one does about them. Facts it relies on, then what they mean:

- A byte the kernel has acknowledged is, for the client's TCP, delivered: the client will not
  send it again. That includes bytes on a connection still in the accept backlog (the kernel
  completed the handshake) and bytes that arrived after the signal was sent but before the
  server acted on it. FIONREAD tells how many a socket holds.
- close() on a socket with unread bytes sends a RST, and a RST can destroy echo still on its
  way to the client; closing a listener resets the connections in its backlog.
- shutdown(SHUT_WR) queues a FIN behind everything already sent: the client receives all the
  echo, then EOF, and the connection stays open for reading until the client closes.

The shutdown, and why each step:
1. After the batch in which the signal came (so no fd is created mid-batch, see edge.py):
   accept the backlog, then take from each connection the bytes the kernel holds for it at
   that moment (FIONREAD), to be echoed. Nothing the kernel took before the server acted on
   the signal is lost. This one read ignores the output cap; the kernel's receive buffer
   bounds it.
2. Close the listener: new connects are refused at once (ECONNREFUSED). A handshake that
   completes between the last accept() and the close is reset: the one window left.
3. Stop echoing: what arrives from now on is read and thrown away (``bytes_discarded``),
   with the edge server's read budget, so a client that keeps sending cannot keep the loop
   from the deadline. It is read, not left in the socket, because of the RST above.
4. Flush every output buffer, then shutdown(SHUT_WR). The server closes when the client
   closes its side.
5. Exit 0 when the last connection is gone, or when --drain-timeout runs out (the rest are
   closed). A second signal exits at once, with status 128 + signal number.
"""

from __future__ import annotations

import select
import signal
import socket
import sys
import time

from lab import linux
from lab.servers.common import (
    Connection,
    LoopSignals,
    ServerOptions,
    recv_and_echo,
    run_until_signal,
)
from lab.servers.edge import READS_PER_TURN, EdgeServer


class GracefulServer(EdgeServer):
    def __init__(self, options: ServerOptions) -> None:
        super().__init__(options)
        self.drain_timeout = options.drain_timeout
        self.shutdown_signal: signal.Signals | None = None
        self.drain_deadline: float | None = None
        self.exit_status = 0
        self.write_side_closed: set[int] = set()

    @property
    def draining(self) -> bool:
        return self.drain_deadline is not None

    def on_exit_signal(self, signum: signal.Signals) -> None:
        if self.shutdown_signal is None:
            self.shutdown_signal = signum  # the drain begins after this batch
            return
        print(f"second {signum.name}: exiting now, {len(self.connections)} connection(s) "
              "not drained", file=sys.stderr, flush=True)
        self.exit_status = 128 + signum
        self.running = False

    def after_events(self) -> None:
        if self.draining:
            if time.monotonic() >= self.drain_deadline and self.connections:
                print(f"drain timeout ({self.drain_timeout:g} s): closing {len(self.connections)} "
                      "connection(s) with output pending", file=sys.stderr, flush=True)
                self.running = False
            return
        super().after_events()
        if self.shutdown_signal is not None and self.running:
            self.begin_drain()

    def begin_drain(self) -> None:
        self.drain_deadline = time.monotonic() + self.drain_timeout
        self.accept_all()  # the backlog (step 1); a client refused for lack of fds is reset
        self.epoll.unregister(self.listener.fileno())
        self.listener.close()
        self.accept_paused_until = None
        if self.log:
            self.log.note(f"{self.shutdown_signal.name}: draining "
                          f"{len(self.connections)} connection(s)")
        for conn in list(self.connections.values()):
            try:
                # Thousands of full receive buffers take time: none past the deadline.
                if time.monotonic() < self.drain_deadline:
                    self.take_queued_input(conn)
            except OSError as error:  # ECONNRESET: only this connection ends
                self.close(conn, error.strerror or "error")
                continue
            # Its next turn (right after this batch) flushes, discards, sends EOF or closes.
            self.revisit_later(conn, select.EPOLLIN)
        if not self.connections:
            self.running = False

    def take_queued_input(self, conn: Connection) -> None:
        """Echo the bytes the kernel holds for ``conn`` right now (step 1)."""
        queued = linux.unread_bytes(conn.fd)
        while queued > 0 and (count := recv_and_echo(conn, self.buffer, self.counters, self.log)):
            queued -= count

    def receive(self, conn: Connection, mask: int) -> None:
        if not self.draining:
            super().receive(conn, mask)
            return
        # Read and discard to EAGAIN or EOF, a budget at a time (step 3).
        for _ in range(READS_PER_TURN):
            self.counters.recv_calls += 1
            try:
                count = conn.sock.recv_into(self.buffer)
            except BlockingIOError:  # EAGAIN: drained for now
                self.counters.eagain += 1
                return
            if not count:
                conn.peer_closed = True
                return
            self.counters.bytes_discarded += count
        self.revisit_later(conn, mask)

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

    def run(self, signals: LoopSignals) -> int:
        super().run(signals)
        return self.exit_status


def serve(options: ServerOptions) -> int:
    return run_until_signal("graceful", GracefulServer(options), options)
