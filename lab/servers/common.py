"""What the servers share that is not epoll.

The listening socket, the setup of an accepted socket, the per-connection record, the read
and echo with its output buffer, the counters and the verbose event log, and the signals as a
signalfd. Every epoll call stays in the server modules themselves: nothing here registers,
modifies or waits on an epoll instance.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from lab import linux
from lab.errors import UsageError

RECV_SIZE = 64 * 1024

# accept() fails with these when the process or the system is out of fds or memory. The pending
# connection stays in the backlog, so the listener stays readable: a server must stop watching
# it for a while instead of spinning (asyncio's selector_events.py makes the same choice).
FD_EXHAUSTION_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_RETRY_SECONDS = 0.1
# accept() reports these for one client that is already gone or refused (accept(2): Linux
# passes pending network errors on); the next connection in the queue is fine. Any other
# error (EBADF, EINVAL) is a bug in the server and is not retried.
ACCEPT_CLIENT_ERRNOS = frozenset({
    errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENETDOWN, errno.ENOPROTOOPT,
    errno.EHOSTDOWN, errno.ENONET, errno.EHOSTUNREACH, errno.EOPNOTSUPP, errno.ENETUNREACH,
})


@dataclass(slots=True)
class ServerOptions:
    """What ``lab serve`` passes to a server; each server reads the fields it needs."""

    host: str = "127.0.0.1"
    port: int = 8080
    verbose: bool = False
    max_buffer: int = 1024 * 1024
    stats_file: Path | None = None
    backlog: int = 4096
    threads: int = 4
    tick: float = 1.0
    idle_timeout: float = 5.0
    drain_timeout: float = 10.0


@dataclass(slots=True)
class Counters:
    """What a server did, written as JSON on exit and on SIGUSR1 (the benchmark reads it)."""

    epoll_waits: int = 0
    events: int = 0
    accepts: int = 0
    recv_calls: int = 0
    send_calls: int = 0
    eagain: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    bytes_discarded: int = 0  # graceful: read after the shutdown signal, never echoed
    # Received but never echoed because the connection closed first (a reset, the drain
    # timeout, the server's exit): always bytes_in == bytes_out + bytes_dropped + pending.
    bytes_dropped: int = 0
    opened: int = 0
    closed: int = 0
    timeouts: int = 0
    accept_paused: int = 0

    @classmethod
    def total(cls, parts: list[Counters]) -> Counters:
        """The sum of per-thread counters (threads never share one: += is not atomic)."""
        return cls(**{f.name: sum(getattr(part, f.name) for part in parts) for f in fields(cls)})


@dataclass(slots=True, eq=False)
class Connection:
    """One client. ``outbuf`` holds what was received but not yet sent back."""

    sock: socket.socket
    fd: int
    peer: str
    outbuf: bytearray = field(default_factory=bytearray)
    # The events the fd is registered for now, so epoll_ctl(MOD) runs only when they change.
    interest: int = 0
    # recv() returned b"": the client shut down its write side; echo what is pending, then close.
    peer_closed: bool = False
    last_active: float = 0.0
    # edge: the event masks of the turns it still owes this connection (0: not on the ready list)
    revisit_mask: int = 0


def make_listener(host: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking TCP listener with SO_REUSEADDR (so a restart does not wait out TIME_WAIT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        listener = socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as error:
        raise UsageError(
            f"cannot listen on {host}:{port}: {error.strerror} "
            "(pick another --port, or --port 0 for a free one)"
        ) from error
    listener.setblocking(False)
    return listener


def announce(listener: socket.socket) -> None:
    """The one line the runner and the tests wait for: the server accepts connections now."""
    host, port = listener.getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)


def configure_client(sock: socket.socket) -> None:
    """Make an accepted socket non-blocking (accept() does not pass O_NONBLOCK on from the
    listener) and keep TCP urgent data in the stream.

    Urgent data (send(MSG_OOB)): by default the kernel takes the urgent byte out of the
    stream, so an echo server would silently drop it. With SO_OOBINLINE it stays in place and
    is echoed like any other byte; the servers echo every byte they are sent. Either way
    recv() stops short at the urgent mark, with more bytes queued behind it: see the
    short-read rule in lab/servers/edge.py.
    """
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)


def peer_name(address: tuple) -> str:
    return f"{address[0]}:{address[1]}"


def receive_buffer() -> memoryview:
    """A buffer for recv_into(), one per thread, reused for every read: recv() would allocate
    RECV_SIZE bytes for each call and shrink them to what came."""
    return memoryview(bytearray(RECV_SIZE))


def recv_and_echo(conn: Connection, buffer: memoryview, counters: Counters,
                  log: EventLog | None) -> int:
    """One recv_into(``buffer``), and the echo of what came: sent at once while nothing is
    queued before it (straight from the buffer, no copy), else queued behind it in
    ``conn.outbuf``; so is whatever part the socket does not take (EPOLLOUT says when).

    Returns the number of bytes read: 0 when the socket would block (EAGAIN) or the peer has
    shut down its side (``conn.peer_closed`` is set then). Other OSErrors (ECONNRESET,
    EPIPE) go to the caller, which closes the connection.
    """
    counters.recv_calls += 1
    try:
        count = conn.sock.recv_into(buffer)
    except BlockingIOError:  # EAGAIN: nothing more for now
        counters.eagain += 1
        return 0
    if not count:
        conn.peer_closed = True
        return 0
    counters.bytes_in += count
    if log:
        log.received(conn.fd, count)
    data = buffer[:count]
    if conn.outbuf:  # behind bytes still queued: keep the order
        conn.outbuf += data
        flush(conn, counters, log)
        return count
    counters.send_calls += 1
    try:
        sent = conn.sock.send(data)
    except BlockingIOError:  # EAGAIN: the send buffer is full
        counters.eagain += 1
        sent = 0
    except OSError:  # ECONNRESET, EPIPE: the caller closes; these bytes are never echoed
        counters.bytes_dropped += count
        raise
    counters.bytes_out += sent
    if log and sent:
        log.sent(conn.fd, sent)
    if sent < count:
        conn.outbuf += data[sent:]  # copied: the buffer is reused by the next read
    return count


def flush(conn: Connection, counters: Counters, log: EventLog | None) -> None:
    """Send from ``conn.outbuf`` until it is empty or the socket's send buffer is full.

    Raises OSError (ECONNRESET, EPIPE, ...) for the caller to close the connection.
    """
    while conn.outbuf:
        counters.send_calls += 1
        try:
            sent = conn.sock.send(conn.outbuf)
        except BlockingIOError:  # EAGAIN: the send buffer is full; EPOLLOUT will say when not
            counters.eagain += 1
            return
        counters.bytes_out += sent
        if log:
            log.sent(conn.fd, sent)
        # bytearray deletes from the front in O(1): it only moves its start.
        del conn.outbuf[:sent]
        if conn.outbuf:
            # A short send means the send buffer is full now: the next send would only fail
            # with EAGAIN. The kernel marked the socket "no space" and will signal EPOLLOUT
            # (a fresh edge under EPOLLET too) once the peer's ACKs free room.
            return


class EventLog:
    """``--verbose``: the assignment's expected log lines. Off by default, as printing a line
    per event costs more than the event itself."""

    def __init__(self, stream=sys.stdout) -> None:
        self.stream = stream

    def _line(self, text: str) -> None:
        # One write per line: print() writes the text and the newline separately, and lines
        # from the oneshot server's threads would run into each other.
        self.stream.write(text + "\n")
        self.stream.flush()

    def opened(self, fd: int, peer: str) -> None:
        self._line(f"new connection: fd={fd} from {peer}")

    def received(self, fd: int, count: int) -> None:
        self._line(f"fd={fd}: received {count} bytes")

    def sent(self, fd: int, count: int) -> None:
        self._line(f"fd={fd}: sent {count} bytes")

    def closed(self, fd: int, reason: str) -> None:
        self._line(f"fd={fd}: connection closed ({reason})")

    def note(self, text: str) -> None:
        self._line(text)


def event_log(options: ServerOptions) -> EventLog | None:
    return EventLog() if options.verbose else None


class StatsWriter:
    """Writes the counters as one JSON object: to ``--stats-file`` (replaced atomically, so a
    reader never sees half a file) or as a line on stderr. Each write numbers its snapshot."""

    def __init__(self, kind: str, collect: Callable[[], Counters], path: Path | None) -> None:
        self.kind = kind
        self.collect = collect
        self.path = Path(path) if path else None
        self.snapshot = 0

    def write(self) -> None:
        self.snapshot += 1
        record = {"server": self.kind, "pid": os.getpid(), "snapshot": self.snapshot}
        record.update(asdict(self.collect()))
        text = json.dumps(record, sort_keys=True)
        if self.path is None:
            print(text, file=sys.stderr, flush=True)
            return
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(text + "\n")
        os.replace(partial, self.path)


class LoopSignals:
    """SIGINT, SIGTERM and SIGUSR1 as events on a signalfd, read by the loop like any socket.

    Facts about signals, then what they mean for the servers:

    - A Python signal handler runs between two bytecodes, and only once the main thread runs
      bytecode again. A signal that arrives after the loop last looked at a handler's flag
      but before epoll_wait() puts the thread to sleep runs its handler only when the wait
      ends, which for an idle server is never (issue 8; tests/servers/test_races.py forces it).
    - A blocked signal is not delivered at all: it stays pending in the kernel. A signalfd is
      readable while a signal from its set is pending, so in the epoll interest list it ends
      any epoll_wait(), even one entered a moment after the signal came.
    - A signalfd receives only signals that are blocked, or their normal disposition runs
      first (for SIGTERM: death). So the three are blocked before the signalfd is made, in
      the main thread; threads started afterwards inherit the mask.
    - read() returns one 128-byte signalfd_siginfo per pending signal (lab.linux).

    So no handler ever runs: a signal is one more event, handled between two others, never in
    the middle of a send(), and a counters snapshot is always consistent. Cleanup runs with the
    signals still blocked, so a second signal cannot cut it short.
    """

    HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)

    def __init__(self, stats: StatsWriter) -> None:
        self.stats = stats
        signal.pthread_sigmask(signal.SIG_BLOCK, self.HANDLED)
        self.fd = linux.signalfd(set(self.HANDLED))

    def take(self) -> list[signal.Signals]:
        """Read the pending signals: write the counters for a SIGUSR1, return the exit
        signals (SIGINT, SIGTERM) in the order the kernel gives them."""
        try:
            received = linux.signalfd_read(self.fd)
        except BlockingIOError:  # another thread read them first (oneshot), or none left
            return []
        if signal.SIGUSR1 in received:
            self.stats.write()
        return [signum for signum in received if signum != signal.SIGUSR1]

    def close(self) -> None:
        os.close(self.fd)


def run_until_signal(kind: str, server, options: ServerOptions) -> int:
    """Announce, run ``server.run(signals)`` until it returns (on SIGINT/SIGTERM), close
    everything, write the counters. ``server`` has ``listener``, ``run(LoopSignals) -> int``,
    ``close_all()`` and ``totals() -> Counters``."""
    stats = StatsWriter(kind, server.totals, options.stats_file)
    signals = LoopSignals(stats)
    announce(server.listener)
    try:
        return server.run(signals)
    finally:
        # The signals are still blocked: one arriving now waits in the kernel, unread.
        server.close_all()
        stats.write()
        signals.close()
