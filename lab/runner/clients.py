"""The clients: many non-blocking sockets driven by one epoll loop with a deadline, connected to
the address the server listens on (``ServerProcess.host``: 127.0.0.1, or ::1 for a server bound
to IPv6 loopback only).

Every client keeps what it sent but has not yet seen echoed (``expect``), so each received
byte is compared with the byte sent at the same position, and SHA-256 digests of both
directions are kept for the scorecard. Streams are generated on demand from a fixed random
pattern (so 10 MiB per client costs no memory up front and a reordering shows as a mismatch).

Facts this module relies on:
- A non-blocking connect() returns EINPROGRESS; the socket becomes writable when the handshake
  ends, and SO_ERROR then says whether it succeeded. The handshake completes in the kernel
  even if the server never calls accept() (the connection waits in its backlog).
- recv() returning b"" is the peer's FIN; ECONNRESET is its RST. Either ends the client.
- send() on a non-blocking socket takes what fits in the send buffer and raises
  BlockingIOError (EAGAIN) when nothing fits; EPIPE/ECONNRESET when the peer is gone.

Every loop here is bounded by a deadline: a server that stalls makes a step end with what was
measured so far, never hang the runner.
"""

from __future__ import annotations

import errno
import hashlib
import random
import selectors
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass, field

HOST = "127.0.0.1"
RECV_SIZE = 256 * 1024
SEND_CHUNK = 64 * 1024
# A steady sender sends small chunks, so bytes keep arriving between any two of the server's reads.
RATED_CHUNK = 8 * 1024
# A pattern length that is not a power of two, so chunk boundaries drift through it and a
# block echoed twice or out of order never lines up with what was expected.
PATTERN = random.Random(0x5EED).randbytes((1 << 20) + 7)
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST

CAUGHT_UP, SENT, EOF = "caught_up", "sent", "eof"  # what pump() waits for
# A loop ends early once no byte has moved either way (and no connection ended) for this
# long: a stalled server is failed in seconds, not after a whole stream's deadline.
STALL_SECONDS = 5.0
RATE_TICK = 0.005  # how often a steady sender is offered its next chunk


def pattern_bytes(position: int, count: int) -> bytes:
    """``count`` bytes of the endless pattern from ``position`` on."""
    start = position % len(PATTERN)
    chunk = PATTERN[start : start + count]
    while len(chunk) < count:
        chunk += PATTERN[: count - len(chunk)]
    return chunk


def errno_name(error: OSError) -> str:
    return errno.errorcode.get(error.errno or 0, type(error).__name__)


@dataclass(slots=True, eq=False)
class Client:
    """One connection and what went through it."""

    index: int
    sock: socket.socket | None
    outbox: bytearray = field(default_factory=bytearray)  # queued, not yet taken by send()
    messages: deque = field(default_factory=deque)  # next messages, one at a time
    stream_left: int = 0  # pattern bytes still to send
    stream_position: int = 0
    expect: bytearray = field(default_factory=bytearray)  # sent, not yet echoed
    sent: int = 0
    echoed: int = 0
    sent_hash: object = field(default_factory=hashlib.sha256)
    echo_hash: object = field(default_factory=hashlib.sha256)
    mismatch_at: int | None = None
    eof: bool = False
    write_shut: bool = False
    error: str | None = None
    message_started: float | None = None
    worst_latency: float = 0.0
    messages_done: int = 0
    last_active: float = 0.0
    ended_at: float | None = None  # when EOF or an error ended it
    rate: int | None = None  # stream bytes per second at most (a steady sender), or as fast as taken
    rate_started: float = 0.0
    rate_base: int = 0  # bytes sent before the steady stream began
    last_sent_at: float = 0.0  # the last time send() took bytes
    last_received_at: float = 0.0  # the last time recv() returned bytes

    @property
    def ended(self) -> bool:
        return self.eof or self.error is not None

    @property
    def has_output(self) -> bool:
        return bool(self.outbox or self.stream_left)

    @property
    def caught_up(self) -> bool:
        return not self.has_output and not self.messages and not self.expect

    def queue_stream(self, size: int, rate: int | None = None, now: float = 0.0) -> None:
        if not self.stream_left:
            self.stream_position = self.index * 7919  # each client its own part of the pattern
        self.stream_left += size
        self.rate, self.rate_started, self.rate_base = rate, now, self.sent

    def throttled(self, now: float) -> bool:
        """A steady sender that is ahead of its rate waits, even with bytes to send."""
        if self.rate is None or not self.stream_left or self.outbox:
            return False
        return self.sent - self.rate_base >= self.rate * (now - self.rate_started)

    def drop_unsent(self) -> int:
        """Forget what is queued but not yet taken by send(); return how many bytes that was."""
        dropped = len(self.outbox) + self.stream_left
        self.outbox.clear()
        self.stream_left = 0
        return dropped

    def fill_outbox(self, now: float) -> None:
        """Move the next message or stream chunk into the outbox when it is empty."""
        if self.outbox:
            return
        if self.stream_left:
            if self.throttled(now):
                return
            count = min(SEND_CHUNK if self.rate is None else RATED_CHUNK, self.stream_left)
            self.outbox += pattern_bytes(self.stream_position, count)
            self.stream_position += count
            self.stream_left -= count
        elif self.messages and not self.expect:
            # One message in flight at a time: the next waits for the echo of this one.
            self.outbox += self.messages.popleft()
            self.message_started = now

    def on_sent(self, data: bytes | bytearray) -> None:
        self.sent_hash.update(data)
        self.expect += data
        self.sent += len(data)

    def on_received(self, data: bytes, now: float) -> None:
        expected = self.expect[: len(data)]
        if self.mismatch_at is None and data != expected:
            offset = next((i for i, (a, b) in enumerate(zip(data, expected)) if a != b), len(expected))
            self.mismatch_at = self.echoed + offset
        self.echo_hash.update(data)
        self.echoed += len(data)
        del self.expect[: len(data)]
        self.last_active = self.last_received_at = now
        if not self.expect and self.message_started is not None and not self.outbox:
            self.worst_latency = max(self.worst_latency, now - self.message_started)
            self.messages_done += 1
            self.message_started = None

    def end(self, now: float, error: str | None = None) -> None:
        if error is None:
            self.eof = True
        elif self.error is None:
            self.error = error
        if self.ended_at is None:
            self.ended_at = now

    def close(self, how: str = "close") -> None:
        if self.sock is None:
            return
        if how == "reset":
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        self.sock.close()
        self.sock = None


def connect_clients(count: int, port: int, deadline: float, first_index: int = 0,
                    host: str = HOST) -> tuple[list[Client], list[str]]:
    """Open ``count`` connections at once to ``host`` (an IPv4 or IPv6 address); return the
    connected clients and one error name per failure (refused, timed out, ...)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    pending: dict[int, Client] = {}
    connected: list[Client] = []
    failures: list[str] = []
    with selectors.DefaultSelector() as selector:
        for index in range(first_index, first_index + count):
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError as error:  # our own fd limit: counts as a failure, not a crash
                failures.append(errno_name(error))
                continue
            sock.setblocking(False)
            code = sock.connect_ex((host, port))
            if code not in (0, errno.EINPROGRESS):
                failures.append(errno.errorcode.get(code, str(code)))
                sock.close()
                continue
            client = Client(index, sock)
            pending[sock.fileno()] = client
            selector.register(sock, selectors.EVENT_WRITE, client)
        while pending and (remaining := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(min(remaining, 0.5)):
                client = key.data
                selector.unregister(client.sock)
                del pending[client.sock.fileno()]
                code = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    failures.append(errno.errorcode.get(code, str(code)))
                    client.close()
                else:
                    client.last_active = time.monotonic()
                    connected.append(client)
        for client in pending.values():  # the handshake never finished before the deadline
            failures.append("ETIMEDOUT")
            client.close()
    connected.sort(key=lambda c: c.index)
    return connected, failures


def pump(clients: list[Client], deadline: float, goal: str = CAUGHT_UP, *, on_tick=None,
         stall: float = STALL_SECONDS) -> str:
    """Send what each client has queued and read its echo until ``goal`` holds for every
    client ("done"), the deadline passes ("deadline") or nothing moved for ``stall`` seconds
    ("stalled"). Goals: CAUGHT_UP (all sent and echoed), SENT (all sent, nothing read: a
    reader that stalls on purpose), EOF (until the server closes). ``on_tick()`` runs
    between waits (a signal sent mid-stream)."""
    steady = any(client.rate is not None for client in clients)
    with _Loop(goal) as loop:
        for client in clients:
            loop.update(client)
        last_progress = time.monotonic()
        while True:
            if on_tick is not None:
                on_tick()
            if all(loop.done(client) for client in clients):
                return "done"
            now = time.monotonic()
            if steady:  # a throttled sender's turn comes with time, not with an event
                for client in clients:
                    loop.update(client)
                    if client.throttled(now):
                        last_progress = now  # waiting for its rate is not a stall
            if now >= deadline or not loop.wanted:
                return "deadline"
            if now - last_progress > stall:
                return "stalled"
            wait = min(deadline - now, RATE_TICK if steady else 0.1, stall)
            for key, events in loop.selector.select(wait):
                if loop.serve(key.data, events):
                    last_progress = time.monotonic()


class _Loop:
    """One selector over the clients of a pump(), each registered for exactly the events it
    needs now: writable while it has something to send, readable unless the goal is SENT."""

    def __init__(self, goal: str) -> None:
        self.goal = goal
        self.selector = selectors.DefaultSelector()
        self.wanted: dict[Client, int] = {}

    def __enter__(self) -> _Loop:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.selector.close()

    def interest(self, client: Client) -> int:
        if client.sock is None or client.ended:
            return 0
        events = selectors.EVENT_READ if self.goal != SENT else 0
        wants_to_send = client.has_output and not client.throttled(time.monotonic())
        if wants_to_send or (client.messages and not client.expect):
            events |= selectors.EVENT_WRITE
        return events

    def update(self, client: Client) -> None:
        events, old = self.interest(client), self.wanted.get(client, 0)
        if events == old:
            return
        if not events:
            self.selector.unregister(client.sock)
            del self.wanted[client]
            return
        if old:
            self.selector.modify(client.sock, events, client)
        else:
            self.selector.register(client.sock, events, client)
        self.wanted[client] = events

    def done(self, client: Client) -> bool:
        if client.ended or client.sock is None:
            return True
        if self.goal == SENT:
            return not client.has_output
        if self.goal == EOF:
            return False
        return client.caught_up

    def serve(self, client: Client, events: int) -> bool:
        """Handle one ready client; True if a byte moved or the connection ended."""
        now = time.monotonic()
        moved = client.sent + client.echoed
        if events & selectors.EVENT_READ:
            _read(client, now)
        if events & selectors.EVENT_WRITE and not client.ended:
            _write(client, now)
        self.update(client)  # an ended client is unregistered here
        return client.sent + client.echoed != moved or client.ended


def _read(client: Client, now: float) -> None:
    try:
        data = client.sock.recv(RECV_SIZE)
    except (BlockingIOError, InterruptedError):
        return
    except OSError as error:  # ECONNRESET: the server reset the connection
        client.end(now, errno_name(error))
        return
    if not data:
        client.end(now)
        return
    client.on_received(data, now)


def _write(client: Client, now: float) -> None:
    client.fill_outbox(now)
    while client.outbox:
        try:
            count = client.sock.send(client.outbox)
        except (BlockingIOError, InterruptedError):  # send buffer full: wait for writable
            return
        except OSError as error:  # EPIPE / ECONNRESET: the server is gone
            client.end(now, errno_name(error))
            return
        client.on_sent(client.outbox[:count])
        del client.outbox[:count]
        client.last_active = client.last_sent_at = now
        client.fill_outbox(now)


def reset_after_eof(clients: list[Client], wait: float) -> list[Client]:
    """Send one more chunk on each connection that has seen the server's EOF, and return those
    the server then reset. A server that shut down its side but still reads takes the bytes;
    one that closed its socket answers with a RST, which sets SO_ERROR (EPIPE after a FIN)."""
    probed = [c for c in clients if c.eof and c.error is None and c.sock is not None]
    for client in probed:
        try:
            client.sock.send(pattern_bytes(client.stream_position, RATED_CHUNK))
        except (BlockingIOError, InterruptedError):
            continue
        except OSError as error:
            client.error = errno_name(error)
    deadline = time.monotonic() + wait
    reset: list[Client] = []
    while True:
        for client in probed:
            if client not in reset and client.error is None:
                code = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    client.error = errno.errorcode.get(code, str(code))
            if client.error is not None and client not in reset:
                reset.append(client)
        if len(reset) == len(probed) or time.monotonic() >= deadline:
            return reset
        time.sleep(0.01)  # a RST on loopback comes within microseconds; this bounds the wait


def shut_write(client: Client) -> None:
    """Half-close: send FIN, keep reading."""
    if client.sock is not None and not client.write_shut:
        try:
            client.sock.shutdown(socket.SHUT_WR)
        except OSError as error:  # ENOTCONN: the server already reset it
            client.end(time.monotonic(), errno_name(error))
        client.write_shut = True
