"""A crowd of clients that hold their connections for a while and misbehave on a schedule.

``Soak(address, count, hold).run()`` opens ``count`` connections and keeps them for ``hold``
seconds. Every client has a role, taken in turn from ``ROLES`` (the mix, as data):

- ``talker``: a 32-byte message every TALK_EVERY seconds, each echo awaited;
- ``half-close``: at a random moment sends 4 KiB and shuts its write side: the echo, then EOF;
- ``reset``: at a random moment sends 8 KiB, waits for the echo, sends 64 KiB more and
  resets the connection at once (SO_LINGER 0), leaving echo pending at the server;
- ``slow-reader``: sends 64 KiB through a 4 KiB receive window and reads nothing until a
  random moment in the second half of the hold;
- ``urgent``: at a random moment sends 500 bytes, one MSG_OOB byte and 500 bytes (the server
  keeps urgent data inline: all 1,001 come back), then talks.

At the end of the hold every client still open waits for its last echo and closes. Each client
checks that what came back is exactly what it sent, in order; ``problems`` lists the ones that
did not. One selector loop drives them all, and every wait has a deadline.
"""

from __future__ import annotations

import errno
import heapq
import random
import selectors
import socket
import struct
import time
from dataclasses import dataclass, field

from .clients import RESET_ERRNOS, payload

TALK_EVERY = 10.0
CONNECT_BATCH = 500  # connects in flight at once: well under the listener's backlog
ROLES = ("talker",) * 5 + ("half-close", "reset", "slow-reader", "urgent", "talker")
SLOW_READER_WINDOW = 4096
BLOB = payload(64 * 1024, seed=90)


@dataclass(slots=True, eq=False)
class Client:
    number: int
    role: str
    sock: socket.socket
    due: float = 0.0  # when its next scheduled action runs
    out: bytearray = field(default_factory=bytearray)  # to send
    expected: bytearray = field(default_factory=bytearray)  # everything sent, in order
    received: bytearray = field(default_factory=bytearray)
    reading: bool = True
    done: bool = False  # closed by us (after its echo, or deliberately reset)
    problem: str | None = None

    @property
    def echo_complete(self) -> bool:
        return len(self.received) == len(self.expected)


class Soak:
    def __init__(self, address: tuple[str, int], count: int, hold: float, seed: int = 0) -> None:
        self.address = address
        self.count = count
        self.hold = hold
        self.random = random.Random(seed)
        self.selector = selectors.DefaultSelector()
        self.clients: list[Client] = []
        self.schedule: list[tuple[float, int]] = []  # (due, client number), a heap
        self.sent_total = 0
        self.at_risk = 0  # sent just before a reset: the server may never read it

    # -- the run ------------------------------------------------------------------------
    def run(self, deadline: float) -> None:
        """Connect, hold, finish; fails (AssertionError) if ``deadline`` seconds are not
        enough. Always closes every socket."""
        give_up = time.monotonic() + deadline
        try:
            self._connect_all(give_up)
            start = time.monotonic()
            for client in self.clients:
                self._plan(client, start)
            self._loop(until=start + self.hold, give_up=give_up)
            self._wind_down()
            self._loop(until=None, give_up=give_up)
        finally:
            self.close()

    def _wind_down(self) -> None:
        """The hold is over: every client reads, and closes once its echo is complete (a
        half-close once it saw EOF, an armed reset once it has reset)."""
        for client in self.clients:
            if client.done:
                continue
            client.due = float("inf")
            client.reading = True
            self._update(client)
            if self._may_close(client):
                self._finish(client)

    @staticmethod
    def _may_close(client: Client) -> bool:
        return (client.echo_complete and not client.out
                and client.role not in ("half-close-sent", "reset-armed"))

    def close(self) -> None:
        self.selector.close()
        for client in self.clients:
            client.sock.close()

    @property
    def problems(self) -> dict[int, str]:
        return {c.number: c.problem for c in self.clients if c.problem}

    # -- connecting ---------------------------------------------------------------------
    def _connect_all(self, give_up: float) -> None:
        for first in range(0, self.count, CONNECT_BATCH):
            pending = {}
            for number in range(first, min(first + CONNECT_BATCH, self.count)):
                role = ROLES[number % len(ROLES)]
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                client = Client(number, role, sock)
                self.clients.append(client)
                if role == "slow-reader":  # before connect(): the window is agreed on then
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SLOW_READER_WINDOW)
                sock.setblocking(False)
                code = sock.connect_ex(self.address)
                if code not in (0, errno.EINPROGRESS):
                    raise AssertionError(f"client {number}: connect: {errno.errorcode[code]}")
                pending[sock] = client
                self.selector.register(sock, selectors.EVENT_WRITE, client)
            while pending:
                if time.monotonic() > give_up:
                    raise AssertionError(f"{len(pending)} connects unfinished at the deadline")
                for key, _ in self.selector.select(0.5):
                    client = key.data
                    code = client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code:
                        raise AssertionError(f"client {client.number}: connect: "
                                             f"{errno.errorcode.get(code, code)}")
                    del pending[client.sock]
                    self.selector.modify(client.sock, selectors.EVENT_READ, client)

    def _plan(self, client: Client, start: float) -> None:
        if client.role == "talker":
            client.due = start + self.random.uniform(0, TALK_EVERY)
        elif client.role == "slow-reader":
            self._queue(client, BLOB)
            client.reading = False
            client.due = start + self.random.uniform(self.hold / 2, self.hold * 0.8)
        else:
            client.due = start + self.random.uniform(0, self.hold * 0.7)
        heapq.heappush(self.schedule, (client.due, client.number))

    # -- the loop -----------------------------------------------------------------------
    def _loop(self, until: float | None, give_up: float) -> None:
        """Run actions as they fall due and move bytes until ``until`` (the hold) or, with
        None, until every client is done."""
        while True:
            now = time.monotonic()
            if until is not None and now >= until:
                return
            if until is None and all(c.done for c in self.clients):
                return
            if now > give_up:
                unfinished = [c for c in self.clients if not c.done]
                sample = "; ".join(f"{c.number} {c.role}: sent {len(c.expected)}, got "
                                   f"{len(c.received)}" for c in unfinished[:5])
                raise AssertionError(f"{len(unfinished)} clients unfinished: {sample}")
            while self.schedule and self.schedule[0][0] <= now:
                due, number = heapq.heappop(self.schedule)
                client = self.clients[number]
                if client.due == due and not client.done:
                    self._act(client, now)
            wait = 0.5 if not self.schedule else max(0.0, min(0.5, self.schedule[0][0] - now))
            for key, events in self.selector.select(wait):
                client = key.data
                if events & selectors.EVENT_WRITE:
                    self._send(client)
                if events & selectors.EVENT_READ and not client.done:
                    self._receive(client)

    def _act(self, client: Client, now: float) -> None:
        if client.role in ("talker", "urgent-done"):
            if client.echo_complete:  # one message in flight at a time
                self._queue(client, f"{client.number:>10} talks {now:16.3f}\n".encode()[:32])
            self._again(client, now + TALK_EVERY)
        elif client.role == "half-close":
            self._queue(client, BLOB[:4096])
            client.role = "half-close-sent"  # shut down once the 4 KiB are out (_send)
        elif client.role == "reset":
            self._queue(client, BLOB[:8192])
            client.role = "reset-armed"  # resets once the echo is back (_receive)
        elif client.role == "slow-reader":
            client.reading = True
            self._update(client)
        elif client.role == "urgent":
            self._send_urgent(client)
            client.role = "urgent-done"
            self._again(client, now + TALK_EVERY)

    def _again(self, client: Client, due: float) -> None:
        client.due = due
        heapq.heappush(self.schedule, (due, client.number))

    def _queue(self, client: Client, data: bytes) -> None:
        client.out += data
        client.expected += data
        self.sent_total += len(data)
        self._update(client)

    def _send_urgent(self, client: Client) -> None:
        """500 bytes, the urgent byte, 500 bytes: three send()s into an idle socket (a few
        bytes each, the send buffer takes them at once)."""
        before, after = BLOB[:500], BLOB[500:1000]
        for data, flags in ((before, 0), (b"!", socket.MSG_OOB), (after, 0)):
            sent = client.sock.send(data, flags)
            assert sent == len(data), f"client {client.number}: short send to an idle socket"
            client.expected += data
            self.sent_total += len(data)

    def _update(self, client: Client) -> None:
        """Watch the client's socket for what it waits for now (nothing: unregistered)."""
        events = (selectors.EVENT_READ if client.reading else 0) | (
            selectors.EVENT_WRITE if client.out else 0)
        registered = client.sock in self.selector.get_map()
        if events and registered:
            self.selector.modify(client.sock, events, client)
        elif events:
            self.selector.register(client.sock, events, client)
        elif registered:
            self.selector.unregister(client.sock)

    def _send(self, client: Client) -> None:
        try:
            sent = client.sock.send(client.out)
        except BlockingIOError:
            return
        except OSError as error:
            self._fail(client, f"send: {errno.errorcode.get(error.errno, error.errno)}")
            return
        del client.out[:sent]
        if not client.out:
            if client.role == "half-close-sent":
                client.sock.shutdown(socket.SHUT_WR)
            self._update(client)

    def _receive(self, client: Client) -> None:
        try:
            data = client.sock.recv(256 * 1024)
        except BlockingIOError:
            return
        except OSError as error:
            if error.errno in RESET_ERRNOS:
                self._fail(client, "reset by the server")
                return
            raise
        if not data:
            if client.role == "half-close-sent" and client.echo_complete:
                self._finish(client)
            else:
                self._fail(client, f"EOF after {len(client.received)} of {len(client.expected)}")
            return
        start = len(client.received)
        client.received += data
        if client.received != client.expected[: len(client.received)]:
            self._fail(client, f"echo differs from byte {start} on")
            return
        if client.echo_complete and client.role == "reset-armed":
            self._reset(client)
        elif client.due == float("inf") and self._may_close(client):
            self._finish(client)

    def _reset(self, client: Client) -> None:
        """64 KiB more, then a RST at once: the server is left holding unsent echo."""
        try:
            sent = client.sock.send(BLOB)
        except BlockingIOError:
            sent = 0
        self.sent_total += sent
        self.at_risk += sent
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._finish(client)

    def _finish(self, client: Client) -> None:
        client.done = True
        if client.sock in self.selector.get_map():
            self.selector.unregister(client.sock)
        client.sock.close()

    def _fail(self, client: Client, problem: str) -> None:
        client.problem = problem
        self._finish(client)
