"""Deliberately faulty echo servers: the grader's negative controls.

Usage: ``python tests/faulty/server.py --fault NAME --port {port}``; prints
``listening on HOST:PORT`` like the reference servers, exits 2 with a message on bad options.

Each fault is the reference server of one kind (lab/servers/) with ONE small override, so the
program differs from a 100/100 server in exactly one behaviour and the grader must not pass
exactly the checklist items that behaviour serves (one, or two where the behaviour has two
faces, as dropping what send() did not take also means never arming EPOLLOUT). ``et-as-level``
has no override at all: it is the edge-triggered reference graded as the level one. The table
``FAULTS`` says which items, with which outcome (FAIL, or PASS with remark for a practice the
assignment's letter does not want) and the words that name the cause;
tests/runner/test_faulty_grading.py grades every fault and checks it.

Why overrides of the references rather than separate little servers: a separate server would
differ in many small ways (buffer sizes, error paths, what it does on EOF), and any of them
could fail another item, so "fails exactly one item" would prove nothing. An override is also
short enough to read next to the fact it breaks.
"""

from __future__ import annotations

import argparse
import errno
import os
import select
import signal
import socket
import sys
from dataclasses import dataclass

from lab.servers.common import ServerOptions, flush, run_until_signal
from lab.servers import edge
from lab.servers.edge import EdgeServer
from lab.servers.graceful import GracefulServer
from lab.servers.oneshot import OneshotServer
from lab.servers.timeout import TimeoutServer
from lab.units import parse_duration

# -- edge-triggered faults --------------------------------------------------------------------

# A typical first attempt's buffer. Smaller than the 64 KiB burst the grader sends, so one read
# per event leaves bytes behind every time, whatever the timing of the TCP segments.
READ_ONCE_SIZE = 4096


class ReadsOnce(EdgeServer):
    """One recv() per event. Under EPOLLET the bytes left in the socket raise no new edge, so
    the rest of a burst waits for an event that never comes (breaks edge.drains)."""

    read_size = READ_ONCE_SIZE

    def receive(self, conn, mask):
        try:
            data = conn.sock.recv(self.read_size)
        except BlockingIOError:
            return
        if not data:
            conn.peer_closed = True
            return
        conn.outbuf += data
        flush(conn, self.counters, self.log)


class ReadsOnce64K(ReadsOnce):
    """One recv() of 64 KiB per event. A 64 KiB write arrives as at most two segments, each
    raising its own edge, so this passes a plain burst; with the server frozen while 256 KiB
    queue, the one edge it gets on waking reads 64 KiB and the rest waits (breaks edge.drains)."""

    read_size = 64 * 1024


class OneAcceptListener:
    """A listener whose accept() works once per wakeup and then reports EAGAIN."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.used = False

    def accept(self):
        if self.used:
            raise BlockingIOError(errno.EAGAIN, "one accept() per wakeup")
        self.used = True
        return self.listener.accept()

    def __getattr__(self, name: str):
        return getattr(self.listener, name)


class AcceptsOnce(EdgeServer):
    """One accept() per listener event. Under EPOLLET two connections that arrive together
    raise one edge: the second waits in the backlog until a third arrives (breaks
    edge.drains, which asks that the listener be drained to EAGAIN too)."""

    def accept_all(self):
        listener = self.listener
        self.listener = OneAcceptListener(listener)
        try:
            super().accept_all()
        finally:
            self.listener = listener


class ClosesOnHangup(EdgeServer):
    """EPOLLRDHUP (the peer's FIN) closes the connection before the bytes that came with it
    are read and echoed (breaks errors.abrupt_clients: a half-closed client loses its echo
    whenever data and FIN reach the server in one wakeup)."""

    def on_connection_event(self, conn, mask):
        if mask & (select.EPOLLRDHUP | select.EPOLLHUP):
            self.close(conn, "peer hung up")
            return
        super().on_connection_event(conn, mask)


class NoBackpressure(EdgeServer):
    """The output buffer grows without limit and reading never pauses, like an asyncio
    Protocol that calls transport.write() without pause_writing() (breaks
    cleanup.bounded_memory: a reader that stalls makes it hold everything sent)."""

    def __init__(self, options):
        super().__init__(options)
        self.max_buffer = 1 << 62


class DontWaitSocket:
    """An accepted socket left in blocking mode (no O_NONBLOCK in its fdinfo) whose recv()
    and send() pass MSG_DONTWAIT, so the loop never hangs and behaves exactly like the
    reference. Only the kernel's view of the fd can tell the difference."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)  # clears O_NONBLOCK, which the reference set after accept()
        self.sock = sock

    def recv(self, size: int) -> bytes:
        return self.sock.recv(size, socket.MSG_DONTWAIT)

    def recv_into(self, buffer) -> int:
        return self.sock.recv_into(buffer, 0, socket.MSG_DONTWAIT)

    def send(self, data) -> int:
        return self.sock.send(data, socket.MSG_DONTWAIT)

    def __getattr__(self, name: str):
        return getattr(self.sock, name)  # close(), fileno(), shutdown() unchanged


class BlockingSockets(EdgeServer):
    """Accepted sockets stay blocking (breaks edge.nonblocking, and only that: see
    DontWaitSocket)."""

    def connection_opened(self, conn):
        conn.sock = DontWaitSocket(conn.sock)


class NeverCloses(EdgeServer):
    """On EOF or error the connection leaves the epoll set but its fd is never closed: the
    fd count grows and each socket sits in CLOSE_WAIT (breaks cleanup.fds_released)."""

    def __init__(self, options):
        super().__init__(options)
        # Keep the socket objects alive: a collected Python socket closes its fd.
        self.leaked: list[socket.socket] = []

    def close(self, conn, reason):
        del self.connections[conn.fd]
        self.epoll.unregister(conn.fd)  # no close(): the fd and its socket leak
        self.leaked.append(conn.sock)


class EpolloutAlwaysArmed(EdgeServer):
    """Every connection is registered for EPOLLOUT from accept() on, output pending or not
    (breaks edge.epollout_control). Under EPOLLET an armed EPOLLOUT is reported once, not on
    every wait, so the loop does not spin: cleanup.idle_cpu still passes, which is why the
    grader reads the mask from /proc."""

    def __init__(self, options):
        # The reference registers connections with edge.CONNECTION_EVENTS and calls
        # EPOLL_CTL_MOD only when "CONNECTION_EVENTS | EPOLLOUT-if-pending" differs from the
        # registration. With EPOLLOUT in the constant it never differs: one registration, no
        # MOD ever. (Re-adding EPOLLOUT with a MOD after each event instead would spin: a MOD
        # re-checks readiness and queues a fresh EPOLLOUT event for a writable socket.)
        edge.CONNECTION_EVENTS |= select.EPOLLOUT
        super().__init__(options)


class DropsPartialSends(EdgeServer):
    """Whatever send() did not take is thrown away instead of being buffered until EPOLLOUT,
    so EPOLLOUT is never armed (breaks edge.write_buffering: a 10 MiB echo arrives short and
    its SHA-256 differs; and edge.epollout_control: output waited with no EPOLLOUT)."""

    def receive(self, conn, mask):
        super().receive(conn, mask)
        conn.outbuf.clear()


# The reasons the reference gives when it closes a connection the peer reset: EPOLLERR (the
# reset seen by epoll) and ECONNRESET/EPIPE (seen by recv()/send()).
RESET_REASONS = frozenset({"socket error", os.strerror(errno.ECONNRESET), os.strerror(errno.EPIPE)})


class DiesOnReset(EdgeServer):
    """A connection reset by its peer is not caught: the exception ends the whole server
    (breaks errors.peer_reset; a client that closes normally is still fine)."""

    def close(self, conn, reason):
        if reason in RESET_REASONS:
            raise ConnectionResetError(errno.ECONNRESET, f"fd {conn.fd}: {reason} (not handled)")
        super().close(conn, reason)


# -- bonus faults -----------------------------------------------------------------------------


class NoRearmEpoll:
    """An epoll whose EPOLL_CTL_MOD is skipped for every fd but the listener."""

    def __init__(self, epoll: select.epoll, listener_fd: int) -> None:
        self.epoll = epoll
        self.listener_fd = listener_fd

    def modify(self, fd: int, eventmask: int) -> None:
        if fd == self.listener_fd:
            self.epoll.modify(fd, eventmask)

    def __getattr__(self, name: str):
        return getattr(self.epoll, name)


class OneshotNeverRearmed(OneshotServer):
    """A client fd is never re-armed after its EPOLLONESHOT event fired, so each connection is
    served once and then ignored (breaks bonus.oneshot: the second message gets no echo)."""

    def __init__(self, options):
        super().__init__(options)
        self.epoll = NoRearmEpoll(self.epoll, self.listener.fileno())


class TimerNeverExpires(TimeoutServer):
    """The timerfd ticks and is read, but no idle connection is ever closed (breaks
    bonus.timeout)."""

    def close_idle(self, now):
        pass


class SigtermKills(GracefulServer):
    """The signalfd exists and watches SIGTERM, but the signal is not blocked, so SIGTERM's
    default action kills the process at once: streams in flight are cut and the exit status is
    -SIGTERM (breaks bonus.graceful_shutdown). The classic mistake: a signalfd receives only
    blocked signals."""

    def run(self, signals):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        return super().run(signals)


class DropsEchoOnSigterm(GracefulServer):
    """On SIGTERM the pending echo is thrown away before the drain: the clients get a clean
    EOF, but not every byte the server had read (breaks bonus.graceful_shutdown)."""

    def on_exit_signal(self, signum):
        self.drop_pending_echo()
        super().on_exit_signal(signum)

    def begin_drain(self):
        super().begin_drain()
        self.drop_pending_echo()  # also what the drain's first reads queued

    def drop_pending_echo(self):
        for conn in self.connections.values():
            conn.outbuf.clear()


class ClosesWithUnreadInput(GracefulServer):
    """After SIGTERM it stops reading and, once a connection's output is flushed, closes it
    with whatever the client sent meanwhile still unread: the kernel answers with a RST, which
    can destroy echo still in flight (breaks bonus.graceful_shutdown)."""

    def receive(self, conn, mask):
        if not self.draining:
            super().receive(conn, mask)

    def finish_if_flushed(self, conn):
        if not conn.outbuf:
            self.close(conn, "drained")


# -- the table ------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class Fault:
    kind: str  # the kind the grader judges it as (usually the reference it is built on)
    server: type
    breaks: tuple[str, ...]  # the checklist items it must not pass, and no other
    cause: str  # words the broken items' evidence or hint must contain: the cause named
    outcome: str = "FAIL"  # what those items get: "FAIL", or "PASS with remark" (fails --strict)

    @property
    def why(self) -> str:
        return " ".join(self.server.__doc__.split())


FAULTS: dict[str, Fault] = {
    "reads-once": Fault("edge", ReadsOnce, ("edge.drains",), "then nothing"),
    "reads-64k-once": Fault("edge", ReadsOnce64K, ("edge.drains",), "then nothing"),
    "accepts-once": Fault("edge", AcceptsOnce, ("edge.drains",), "never accepted"),
    "closes-on-hangup": Fault("edge", ClosesOnHangup, ("errors.abrupt_clients",),
                              "0/28 bytes echoed after the FIN"),
    "no-backpressure": Fault("edge", NoBackpressure, ("cleanup.bounded_memory",), "the server held"),
    "blocking-sockets": Fault("edge", BlockingSockets, ("edge.nonblocking",), "without O_NONBLOCK"),
    "never-closes": Fault("edge", NeverCloses, ("cleanup.fds_released",), "CLOSE_WAIT"),
    "epollout-always": Fault("edge", EpolloutAlwaysArmed, ("edge.epollout_control",),
                             "registered for EPOLLOUT", outcome="PASS with remark"),
    "drops-partial-sends": Fault("edge", DropsPartialSends, ("edge.write_buffering", "edge.epollout_control"),
                                 "NOT watching EPOLLOUT"),
    "dies-on-reset": Fault("edge", DiesOnReset, ("errors.peer_reset",), "could not even connect"),
    "et-as-level": Fault("level", EdgeServer, ("level.epoll_created",), "with EPOLLET"),
    "oneshot-never-rearmed": Fault("oneshot", OneshotNeverRearmed, ("bonus.oneshot",), "never re-armed"),
    "timer-never-expires": Fault("timeout", TimerNeverExpires, ("bonus.timeout",), "none closed"),
    "sigterm-kills": Fault("graceful", SigtermKills, ("bonus.graceful_shutdown",), "was killed by SIGTERM"),
    "drops-echo-on-sigterm": Fault("graceful", DropsEchoOnSigterm, ("bonus.graceful_shutdown",),
                                   "flush every output buffer"),
    "closes-with-unread-input": Fault("graceful", ClosesWithUnreadInput, ("bonus.graceful_shutdown",),
                                      "reset"),
}


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    defaults = ServerOptions()
    parser = argparse.ArgumentParser(
        description="Run a reference echo server with one deliberate fault.",
        epilog="faults:\n" + "\n".join(
            f"  {name}: {fault.kind}, breaks {', '.join(fault.breaks)}" for name, fault in FAULTS.items()
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--fault", required=True, choices=FAULTS)
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tick", type=_duration, default=defaults.tick)
    parser.add_argument("--idle-timeout", type=_duration, default=defaults.idle_timeout)
    parser.add_argument("--drain-timeout", type=_duration, default=defaults.drain_timeout)
    args = parser.parse_args(argv)
    fault = FAULTS[args.fault]
    options = ServerOptions(
        host=args.host,
        port=args.port,
        tick=args.tick,
        idle_timeout=args.idle_timeout,
        drain_timeout=args.drain_timeout,
    )
    print(f"fault {args.fault}: {fault.why}", file=sys.stderr, flush=True)
    return run_until_signal(fault.kind, fault.server(options), options)


if __name__ == "__main__":
    sys.exit(main())
