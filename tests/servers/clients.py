"""Echo clients for the server tests: blocking ones for one exchange, non-blocking ones for many.

Every function here owns the sockets it opens (closed in ``finally``) or works on a socket the
caller owns, and every wait has a deadline: a server that stops answering fails the test with
a message saying what was missing, it never hangs it.

Discussion: a client that first sends everything and only then reads deadlocks against a
CORRECT server once the payload exceeds what the socket buffers hold (the server stops reading
while its output to us is stuck). ``Streams`` therefore sends and receives at the same time,
from one selector loop, for any number of connections.
"""

from __future__ import annotations

import errno
import hashlib
import random
import select
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

RECV_SIZE = 256 * 1024

# What the peer's abortive close looks like to a client that still sends or reads.
RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE})
QUIET = 0.5  # a send buffer that stays full this long means the server stopped reading
SMALL_BUFFER = 64 * 1024  # a client socket buffer that TCP auto-tuning will not grow


def more_than_kernel_buffers() -> int:
    """A byte count that the kernel alone cannot absorb between a client that never reads
    and the server: the server's socket buffers at their largest (tcp_rmem and tcp_wmem
    maxima, which auto-tuning may reach) plus 16 MiB. A client that gets all of it sent has
    a server that keeps reading into its own memory."""
    largest = [int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
               for name in ("tcp_rmem", "tcp_wmem")]
    return sum(largest) + 16 * 1024 * 1024


def payload(size: int, seed: int = 0) -> bytes:
    """``size`` pseudo-random bytes: a server that reorders, drops or repeats a chunk changes
    the SHA-256, which a payload of zeros (the assignment's ``dd if=/dev/zero``) would not."""
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.02):
    """Poll ``predicate`` until it returns something truthy (returned) or fail after
    ``timeout`` seconds saying ``what`` did not happen. For facts only /proc can tell (an fd
    count, a thread count): there is no event to wait on for those."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"within {timeout:g} s: {what}")
        time.sleep(interval)


def counters_reach(server, expected: dict[str, int], timeout: float = 5.0) -> dict:
    """Ask for counters (SIGUSR1) until every name in ``expected`` has its value; return that
    snapshot. Waiting, because the server learns of some things after the test has moved on
    (a client's close is an event it has yet to handle)."""

    def snapshot_if_reached() -> dict | None:
        stats = server.stats()
        return stats if all(stats[name] == value for name, value in expected.items()) else None

    return wait_until(snapshot_if_reached, timeout, f"counters {expected}")


def recv_exactly(sock: socket.socket, size: int, timeout: float) -> bytes:
    """Read exactly ``size`` bytes, failing on EOF or after ``timeout`` seconds overall."""
    deadline = time.monotonic() + timeout
    chunks, got = [], 0
    while got < size:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"got {got} of {size} echoed bytes within {timeout:g} s")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(min(RECV_SIZE, size - got))
        except TimeoutError:
            raise AssertionError(f"got {got} of {size} echoed bytes within {timeout:g} s") from None
        if not chunk:
            raise AssertionError(f"EOF after {got} of {size} echoed bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_until_eof(sock: socket.socket, timeout: float) -> bytes:
    """Everything up to the server's FIN; fails if no EOF comes within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            read = sum(map(len, chunks))
            raise AssertionError(f"no EOF within {timeout:g} s ({read} bytes read)")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(RECV_SIZE)
        except TimeoutError:
            continue  # the loop's deadline check reports it
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def echo(sock: socket.socket, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` and return the same number of bytes read back (small messages only: a
    large payload needs ``Streams``)."""
    sock.sendall(data)
    return recv_exactly(sock, len(data), timeout)


def stuff_until_blocked(sock: socket.socket, data: bytes, timeout: float) -> int:
    """Send from ``data`` without reading anything back until the socket stays unwritable for
    QUIET seconds (the server has stopped reading) or all of it is sent. Returns bytes sent."""
    previous_timeout = sock.gettimeout()
    sock.setblocking(False)
    sent, deadline = 0, time.monotonic() + timeout
    try:
        while sent < len(data) and time.monotonic() < deadline:
            if not wait_for(sock, select.POLLOUT, QUIET):
                break
            try:
                sent += sock.send(data[sent : sent + RECV_SIZE])
            except BlockingIOError:
                continue
    finally:
        sock.settimeout(previous_timeout)
    return sent


def wait_for(sock: socket.socket, event: int, timeout: float) -> bool:
    """Whether ``sock`` becomes ready for ``event`` (select.POLLIN or POLLOUT) within
    ``timeout`` seconds. poll(), not select(): select() cannot take fds above 1023."""
    poller = select.poll()
    poller.register(sock, event)
    return bool(poller.poll(timeout * 1000))


def is_closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True if the server closed this (idle) connection within ``timeout`` seconds: EOF or a
    reset. False if it stayed open and silent. Unexpected data fails the test."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(1)
    except TimeoutError:
        return False
    except OSError as error:
        if error.errno in RESET_ERRNOS:
            return True
        raise
    assert data == b"", f"unexpected data on an idle connection: {data!r}"
    return True


def first_difference(expected: bytes, got: bytes) -> str:
    """Where two byte strings part, for messages (never let pytest diff 10 MiB)."""
    block = 4096
    for start in range(0, min(len(expected), len(got)), block):
        if expected[start : start + block] != got[start : start + block]:
            offset = next(i for i in range(start, start + block) if expected[i] != got[i])
            return f"byte {offset} differs ({expected[offset]:#x} sent, {got[offset]:#x} echoed)"
    return f"{len(got)} bytes echoed of {len(expected)} sent"


# -- many connections at once --------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Stream:
    """One client connection streaming ``payload`` and collecting what comes back.

    ``ended`` says why reading stopped: "complete" (all of the payload came back), "eof" (the
    server closed), "reset" (ECONNRESET); None while still running."""

    sock: socket.socket
    payload: bytes
    chunk: int
    half_close: bool
    sent: int = 0
    received: bytearray = field(default_factory=bytearray)
    sending: bool = True
    ended: str | None = None
    send_error: str | None = None

    def is_prefix_echo(self) -> bool:
        """Everything received is the start of what was sent, and nothing else."""
        return self.payload[: len(self.received)] == self.received

    def echoed_exactly(self) -> bool:
        """The whole payload came back, byte for byte, and nothing more."""
        return self.ended == "complete" and self.received == self.payload

    def describe(self) -> str:
        return (f"sent {self.sent}/{len(self.payload)}, received {len(self.received)} "
                f"({first_difference(self.payload, self.received)}), ended {self.ended}, "
                f"send error {self.send_error}")


class Streams:
    """Several echo clients streaming at once from one selector loop; a context manager
    that closes every socket.

    ``half_close=True``: after the last byte, shutdown(SHUT_WR) and read until the server's
    EOF (the stream is not "complete" until then). ``chunk`` bounds each send(), so small
    chunks make the clients' bytes interleave at the server. ``rcvbuf`` fixes the clients'
    receive buffer (and so the TCP window): a small one makes the server's send() come up
    short and fail with EAGAIN, which auto-tuned loopback buffers of many MiB rarely do."""

    def __init__(
        self,
        address: tuple[str, int],
        payloads: list[bytes],
        *,
        chunk: int = 256 * 1024,
        half_close: bool = False,
        rcvbuf: int | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.selector = selectors.DefaultSelector()
        self.streams: list[Stream] = []
        try:
            for data in payloads:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                stream = Stream(sock, data, chunk, half_close)
                self.streams.append(stream)
                if rcvbuf is not None:  # before connect(): the window is agreed on then
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
                sock.settimeout(connect_timeout)
                sock.connect(address)
                sock.setblocking(False)
                self.selector.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, stream)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Streams:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.selector.close()
        for stream in self.streams:
            stream.sock.close()

    def each_received(self, size: int) -> bool:
        """Every stream has had at least ``size`` bytes echoed."""
        return all(len(stream.received) >= size for stream in self.streams)

    def pump(self, timeout: float, until: Callable[[], bool] | None = None) -> None:
        """Send and receive until every stream has ended (or ``until()`` is true); fail
        after ``timeout`` seconds, saying how far each stream got."""
        deadline = time.monotonic() + timeout
        while not (until and until()) and any(s.ended is None for s in self.streams):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                report = "; ".join(s.describe() for s in self.streams)
                raise AssertionError(f"streams unfinished after {timeout:g} s: {report}")
            for key, events in self.selector.select(min(remaining, 0.5)):
                stream = key.data
                if events & selectors.EVENT_WRITE and stream.sending:
                    self._send(stream)
                if events & selectors.EVENT_READ and stream.ended is None:
                    self._receive(stream)

    def _send(self, stream: Stream) -> None:
        try:
            chunk = stream.payload[stream.sent : stream.sent + stream.chunk]
            stream.sent += stream.sock.send(chunk)
        except BlockingIOError:  # EAGAIN: the send buffer filled since select() said writable
            return
        except OSError as error:
            if error.errno not in RESET_ERRNOS:
                raise
            stream.send_error = errno.errorcode[error.errno]  # the server closed; keep reading
            self._stop_sending(stream)
            return
        if stream.sent == len(stream.payload):
            if stream.half_close:
                stream.sock.shutdown(socket.SHUT_WR)
            self._stop_sending(stream)

    def _stop_sending(self, stream: Stream) -> None:
        stream.sending = False
        self.selector.modify(stream.sock, selectors.EVENT_READ, stream)

    def _receive(self, stream: Stream) -> None:
        try:
            data = stream.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError as error:
            if error.errno not in RESET_ERRNOS:
                raise
            self._end(stream, "reset")
            return
        if not data:
            self._end(stream, "eof")
            return
        stream.received += data
        if len(stream.received) == len(stream.payload) and not stream.half_close:
            self._end(stream, "complete")

    def _end(self, stream: Stream, why: str) -> None:
        if why == "eof" and stream.half_close and len(stream.received) == len(stream.payload):
            why = "complete"
        stream.ended = why
        self.selector.unregister(stream.sock)


def connect_many(address: tuple[str, int], count: int, timeout: float) -> dict[int, str]:
    """The assignment's ``for i in {1..1000}; do echo "Client $i" | nc ...; done``: open
    ``count`` non-blocking connections at once, send ``Client i\\n`` on each as soon as it is
    connected, read the echo and close. Returns ``{i: problem}`` for every client that did not
    get its own line back (empty when all did); fails only on the overall deadline."""
    selector = selectors.DefaultSelector()
    socks: dict[int, socket.socket] = {}
    replies: dict[int, bytearray] = {}
    problems: dict[int, str] = {}
    try:
        for i in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks[i] = sock
            sock.setblocking(False)
            code = sock.connect_ex(address)
            if code not in (0, errno.EINPROGRESS):
                problems[i] = f"connect: {errno.errorcode.get(code, code)}"
                continue
            selector.register(sock, selectors.EVENT_WRITE, i)
        deadline = time.monotonic() + timeout
        pending = count - len(problems)
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{pending} of {count} clients got no full echo within {timeout:g} s")
            for key, _ in selector.select(min(remaining, 0.5)):
                i, sock = key.data, key.fileobj
                message = f"Client {i}\n".encode()
                if key.events == selectors.EVENT_WRITE:  # the connect finished, or failed
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code:
                        problems[i] = f"connect: {errno.errorcode.get(code, code)}"
                    else:
                        sock.send(message)  # a few bytes into an empty send buffer
                        replies[i] = bytearray()
                        selector.modify(sock, selectors.EVENT_READ, i)
                        continue
                else:
                    try:
                        data = sock.recv(RECV_SIZE)
                    except ConnectionResetError:
                        data, problems[i] = b"", "reset by the server"
                    replies[i] += data
                    if data and len(replies[i]) < len(message):
                        continue
                    if i not in problems and bytes(replies[i]) != message:
                        problems[i] = f"echoed {bytes(replies[i])!r}"
                selector.unregister(sock)
                sock.close()
                pending -= 1
        return problems
    finally:
        selector.close()
        for sock in socks.values():
            sock.close()
