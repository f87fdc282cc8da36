"""What the servers share that is not epoll.

The listening socket, the per-connection record and its output buffer, the counters and the
verbose event log, the exit signals. Every epoll call stays in the server modules themselves:
nothing here registers, modifies or waits on an epoll instance.
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


class ServerExit(Exception):
    """Raised by the SIGINT/SIGTERM handler (see LoopSignals) to leave the event loop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


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


def peer_name(address: tuple) -> str:
    return f"{address[0]}:{address[1]}"


def recv_once(conn: Connection, counters: Counters) -> bytes | None:
    """One recv(): the bytes, or None when the socket would block (EAGAIN) or the peer has
    shut down its side (``conn.peer_closed`` is set then). Other OSErrors (ECONNRESET) go to
    the caller, which closes the connection."""
    counters.recv_calls += 1
    try:
        data = conn.sock.recv(RECV_SIZE)
    except BlockingIOError:  # EAGAIN: nothing more for now
        counters.eagain += 1
        return None
    if not data:
        conn.peer_closed = True
        return None
    return data


def take_input(conn: Connection, data: bytes, counters: Counters, log: EventLog | None) -> None:
    """Queue received bytes for the echo."""
    counters.bytes_in += len(data)
    if log:
        log.received(conn.fd, len(data))
    conn.outbuf += data


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
    """SIGINT, SIGTERM and SIGUSR1 act between two events, never in the middle of one.

    A Python signal handler runs between two bytecodes of the main thread. Raising there while
    the loop blocks in epoll_wait() is safe and ends the wait at once; raising anywhere else
    could cut a send() from its bookkeeping, and a counters snapshot taken there could count
    bytes received but not yet counted as sent. So the handlers act at once only while the loop
    says it is ``waiting``; otherwise they leave a flag that the loop reads before its next wait.
    """

    HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)

    def __init__(self, stats: StatsWriter) -> None:
        self.stats = stats
        self.waiting = False
        self.exit_requested = False
        self.stats_due = False
        signal.signal(signal.SIGINT, self._on_exit_signal)
        signal.signal(signal.SIGTERM, self._on_exit_signal)
        signal.signal(signal.SIGUSR1, self._on_stats_signal)

    def enter_wait(self) -> None:
        """Call right before epoll_wait(); ``waiting`` is set first so no signal is missed."""
        self.waiting = True
        if self.stats_due:
            self.stats_due = False
            self.stats.write()

    def _on_exit_signal(self, signum: int, frame: object) -> None:
        if self.waiting:
            raise ServerExit(signum)
        self.exit_requested = True

    def _on_stats_signal(self, signum: int, frame: object) -> None:
        if self.waiting:
            self.stats.write()
        else:
            self.stats_due = True


def run_until_signal(kind: str, server, options: ServerOptions) -> int:
    """Announce, run ``server.run(signals)`` until SIGINT/SIGTERM, close everything, write the
    counters. ``server`` has ``listener``, ``run(LoopSignals) -> int``, ``close_all()`` and
    ``totals() -> Counters``."""
    stats = StatsWriter(kind, server.totals, options.stats_file)
    signals = LoopSignals(stats)
    announce(server.listener)
    try:
        status = server.run(signals)
    except ServerExit:
        status = 0
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second signal must not interrupt the cleanup
            signal.signal(signum, signal.SIG_IGN)
        server.close_all()
        stats.write()
    return status
