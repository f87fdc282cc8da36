"""The load client: one epoll loop that drives many connections to an echo server.

It has to be cheap per request, because on a small machine the client shares the CPU with the
server it measures. What that means here, and why each choice was made:

- Level-triggered epoll, EPOLLIN only. A client reads exactly the reply it waits for, so there
  is never anything left to drain; EPOLLOUT is watched only for a request the send buffer had
  no room for (rare: a request is small, and one is in flight per connection).
- Payloads are built before the clock starts and never copied: each connection owns two
  request variants (``pair``) and alternates them, so a server that echoes another
  connection's bytes, or an old request again, fails the comparison.
- A reply is checked with one ``==`` against the expected bytes. ``os.read`` asks for one byte
  MORE than the reply, so an over-long reply is caught by the same comparison; a short read is
  kept and completed by the next event (TCP may split a reply anywhere).
- The clock is read once per ``epoll_wait`` wake-up for arrivals and once per send. A latency
  is "from the write() of the request to the epoll_wait() that reported its reply".
- State lives in a small slotted record per connection, found by fd in a list, not a dict.

Workloads: ``pingpong`` (N connections x M requests, or for ``duration`` seconds, closed-loop,
optionally pipelined or open-loop at ``rate``), ``stream`` (each connection sends ``stream_bytes`` and reads them back,
verified), ``connect`` (a burst of N connects, each proven by one echo, then closed). The
connection set-up and the warm-up happen in :meth:`LoadClient.prepare`, outside the measured
window; :meth:`LoadClient.measure` is the measured part.

Every failure is a :class:`~lab.bench.workload.BenchFailure` naming the connection and what
was wrong: a benchmark that counted a wrong reply as a fast one would measure nothing.
"""

from __future__ import annotations

import errno
import heapq
import math
import os
import random
import select
import socket
import time
from dataclasses import dataclass, replace

from lab.bench.limits import bind_source
from lab.bench.stats import OpenLoopSchedule
from lab.bench.workload import BenchFailure, Measurement, Workload, describe_mismatch, request_pairs

# The loop wakes at least this often while waiting, to notice a stalled server.
POLL_SECONDS = 0.25
# Connections opened at once while setting up (not measured): more than the listen backlog
# would only make the kernel drop SYNs and retry them a second later.
CONNECT_WAVE = 1024
# A SYN dropped because the server's accept queue is full is retried after 1, 3, 7, 15, 31 and
# 63 s: on a busy machine a slow accept loop costs that long without being broken.
CONNECT_PATIENCE = 65.0
CONNECT_RETRY_SECONDS = 5.0
STREAM_CHUNK = 64 * 1024
# "No request limit" for a timed run (-d): far more batches than any run can send.
UNTIL_STOPPED = 2**62


@dataclass(slots=True, eq=False)
class Conn:
    sock: socket.socket
    fd: int
    index: int  # global connection number (across worker processes)
    pair: tuple[bytes, bytes] = (b"", b"")
    expected: bytes = b""
    got: bytes = b""  # the first part of a reply TCP delivered in pieces
    left: int = 0  # batches still to complete
    sent_at: float = 0.0
    unsent: bytes = b""  # the tail of a request the send buffer had no room for
    done: int = 0  # stream: bytes verified back; open loop: requests completed
    sent: int = 0  # stream: bytes written


class LoadClient:
    """Connections ``indices`` (global numbers) of one workload against one server. Use as a
    context manager: every socket and the epoll fd are closed when the block ends."""

    def __init__(self, address: tuple, family: int, workload: Workload, indices: range,
                 sources: list[str] | None = None) -> None:
        self.address = address
        self.family = family
        self.workload = workload
        self.indices = indices
        self.sources = sources
        self.epoll = select.epoll()
        self.conns: list[Conn] = []
        self.table: list[Conn | None] = []
        self.where = f"{address[0]}:{address[1]}"

    def __enter__(self) -> LoadClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for conn in self.conns:
            conn.sock.close()
        self.conns = []
        self.table = []
        self.epoll.close()

    # -- phases ------------------------------------------------------------------------
    def prepare(self) -> None:
        """Everything before the measured window: connect, then warm up."""
        w = self.workload
        if w.kind == "connect":
            few = min(8, w.connections)
            warm = LoadClient(self.address, self.family, replace(w, connections=few), range(few), self.sources)
            with warm:
                warm.measure()
            return
        self._connect_all()
        if w.kind == "pingpong":
            pairs = request_pairs(w.connections, w.size, w.pipeline)
            for conn in self.conns:
                conn.pair = pairs[conn.index % len(pairs)]
            if w.warmup:
                self._closed_loop(w.warmup, [])

    def measure(self, start_at: float | None = None) -> Measurement:
        """The measured window. ``start_at`` (perf_counter) lines several workers up."""
        w = self.workload
        if start_at is not None:
            delay = start_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # a synchronised start, not a wait for an event
        cpu_before, exact_before = os.times(), time.process_time()
        latencies: list[float] = []
        started = time.perf_counter()
        if w.kind == "pingpong":
            if w.rate:
                self._open_loop(w.requests, latencies, OpenLoopSchedule(started, w.rate, w.connections))
                batches = len(self.conns) * w.requests
            elif w.duration:
                batches = self._closed_loop(UNTIL_STOPPED, latencies, stop_at=started + w.duration)
            else:
                batches = self._closed_loop(w.requests, latencies)
            count = batches * w.pipeline
            echoed = count * w.size
        elif w.kind == "stream":
            self._stream(w.stream_bytes)
            count, echoed = 0, len(self.conns) * w.stream_bytes
        else:
            count = self._connect_burst(latencies)
            echoed = count * w.size
        finished = time.perf_counter()
        cpu_after, exact_after = os.times(), time.process_time()
        return Measurement(started, finished, count, echoed, latencies, cpu_after.user - cpu_before.user,
                           cpu_after.system - cpu_before.system, exact_after - exact_before)

    # -- connections -------------------------------------------------------------------
    def _new_socket(self, index: int) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            # Requests are complete when written: never hold one back waiting for an ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.sources:
                bind_source(sock, self.sources[index % len(self.sources)])
            status = sock.connect_ex(self.address)
        except BaseException:
            sock.close()
            raise
        if status not in (0, errno.EINPROGRESS):
            sock.close()
            raise self._connect_error(status)
        return sock

    def _connect_error(self, status: int) -> BenchFailure:
        if status == errno.ECONNREFUSED:
            return BenchFailure(f"nothing listens on {self.where} (connection refused)")
        if status == errno.EADDRNOTAVAIL:
            return BenchFailure(
                f"out of source ports connecting to {self.where} (EADDRNOTAVAIL): too many "
                "connections, or TIME_WAIT left by an earlier run; wait a minute or use fewer"
            )
        return BenchFailure(f"cannot connect to {self.where}: {os.strerror(status)}")

    def _connect_all(self) -> None:
        """Open every connection, at most CONNECT_WAVE at a time; then watch EPOLLIN only.

        A connect still unanswered after CONNECT_RETRY_SECONDS is dropped and started again
        on a fresh socket, and so from a fresh source port. Why: after hundreds of thousands
        of loopback connections within minutes, a few dozen connects out of 10,000 stayed
        unanswered for over a minute on this lab's machine (Linux 6.18), against servers that
        kept accepting the others; the cause was not pinned down. The set-up is not measured,
        so a retry changes no result."""
        indices = list(self.indices)
        patience = max(self.workload.timeout, CONNECT_PATIENCE)
        for first in range(0, len(indices), CONNECT_WAVE):
            pending: dict[int, tuple[socket.socket, int, float]] = {}  # fd -> (socket, index, retry at)
            try:
                for index in indices[first:first + CONNECT_WAVE]:
                    self._start_connect(index, pending)
                deadline = time.monotonic() + patience
                while pending:
                    now = time.monotonic()
                    if now > deadline:
                        raise BenchFailure(f"{len(pending)} connects to {self.where} did not complete within "
                                           f"{patience:g} s: its accept queue stayed full (is it accepting?)")
                    for fd, _mask in self.epoll.poll(POLL_SECONDS):
                        if fd not in pending:  # an earlier, connected one: EOF or bytes nobody asked for
                            raise BenchFailure(f"{self.where} closed or wrote on a connection before "
                                               "it was sent anything")
                        sock, index, _ = pending.pop(fd)
                        status = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if status:
                            sock.close()
                            raise self._connect_error(status)
                        self.epoll.modify(fd, select.EPOLLIN)
                        self.conns.append(Conn(sock, fd, index))
                    for fd, (sock, index, retry_at) in list(pending.items()):
                        if retry_at < now:
                            del pending[fd]
                            sock.close()  # close() also removes it from the epoll set
                            self._start_connect(index, pending)
            finally:
                for sock, _, _ in pending.values():
                    sock.close()
        self.table = [None] * (max((c.fd for c in self.conns), default=0) + 1)
        for conn in self.conns:
            self.table[conn.fd] = conn

    def _start_connect(self, index: int, pending: dict) -> None:
        sock = self._new_socket(index)
        pending[sock.fileno()] = (sock, index, time.monotonic() + CONNECT_RETRY_SECONDS)
        self.epoll.register(sock.fileno(), select.EPOLLOUT)

    # -- ping-pong ---------------------------------------------------------------------
    def _closed_loop(self, batches: int, latencies: list[float], stop_at: float = math.inf) -> int:
        """Each connection sends a batch, waits for its verified echo, sends the next, until
        it has done ``batches`` or the clock passed ``stop_at``; returns the batches done."""
        # The hot path: bound names in locals, one list lookup per event, one comparison.
        table, read, write, clock = self.table, os.read, os.write, time.perf_counter
        poll, record, epollin = self.epoll.poll, latencies.append, select.EPOLLIN
        want = len(self.conns[0].pair[0]) + 1 if self.conns else 1
        active = len(self.conns)
        for conn in self.conns:
            conn.left = batches
            conn.expected = conn.pair[batches & 1]
            self._send(conn, conn.expected)
        last_progress = clock()
        fd = -1
        try:
            while active:
                events = poll(POLL_SECONDS)
                now = clock()
                if not events:
                    self._check_stall(now - last_progress, active)
                    continue
                last_progress = now
                for fd, mask in events:
                    conn = table[fd]
                    if mask != epollin and not self._other_event(conn, mask):
                        continue
                    data = read(fd, want)
                    if conn.got:
                        data = conn.got + data
                    if data != conn.expected:
                        self._partial_reply(conn, data, batches - conn.left + 1)
                        continue
                    record(now - conn.sent_at)
                    conn.got = b""
                    left = conn.left - 1
                    conn.left = left
                    if left and now < stop_at:
                        payload = conn.pair[left & 1]
                        conn.expected = payload
                        conn.sent_at = clock()
                        try:
                            sent = write(fd, payload)
                        except BlockingIOError:
                            sent = 0
                        if sent != len(payload):
                            self._short_write(conn, payload, sent)
                    else:
                        active -= 1
        except OSError as error:  # ECONNRESET, EPIPE: the server dropped a connection
            raise self._dropped(table[fd] if 0 <= fd < len(table) else None, error) from None
        return sum(batches - conn.left for conn in self.conns)

    def _open_loop(self, requests: int, latencies: list[float], schedule: OpenLoopSchedule) -> None:
        """Requests go out on ``schedule`` (at most one in flight per connection); each
        latency counts from when its request was due, so a slow reply that delays the next
        request is charged to that one too (no coordinated omission)."""
        table, read, clock, poll, record = self.table, os.read, time.perf_counter, self.epoll.poll, latencies.append
        epollin = select.EPOLLIN
        want = len(self.conns[0].pair[0]) + 1 if self.conns else 1
        waiting = [(schedule.due(conn.index, 0), conn.fd) for conn in self.conns]
        heapq.heapify(waiting)
        in_flight, active = 0, len(self.conns)
        for conn in self.conns:
            conn.done = 0
        last_progress = clock()
        fd = -1
        try:
            while active:
                now = clock()
                while waiting and waiting[0][0] <= now:
                    _due, due_fd = heapq.heappop(waiting)
                    conn = table[due_fd]
                    conn.expected = conn.pair[conn.done & 1]
                    self._send(conn, conn.expected)
                    in_flight += 1
                timeout = min(POLL_SECONDS, max(0.0, waiting[0][0] - now)) if waiting else POLL_SECONDS
                events = poll(timeout)
                now = clock()
                if not events:
                    if in_flight:
                        self._check_stall(now - last_progress, in_flight)
                    else:
                        last_progress = now
                    continue
                last_progress = now
                for fd, mask in events:
                    conn = table[fd]
                    if mask != epollin and not self._other_event(conn, mask):
                        continue
                    data = read(fd, want)
                    if conn.got:
                        data = conn.got + data
                    if data != conn.expected:
                        self._partial_reply(conn, data, conn.done + 1)
                        continue
                    conn.got = b""
                    record(schedule.latency(conn.index, conn.done, now))
                    conn.done += 1
                    in_flight -= 1
                    if conn.done == requests:
                        active -= 1
                    else:
                        heapq.heappush(waiting, (schedule.due(conn.index, conn.done), fd))
        except OSError as error:
            raise self._dropped(table[fd] if 0 <= fd < len(table) else None, error) from None

    def _send(self, conn: Conn, payload: bytes) -> None:
        conn.sent_at = time.perf_counter()
        try:
            sent = os.write(conn.fd, payload)
        except BlockingIOError:
            sent = 0
        if sent != len(payload):
            self._short_write(conn, payload, sent)

    def _short_write(self, conn: Conn, payload: bytes, sent: int) -> None:
        conn.unsent = payload[sent:]
        self.epoll.modify(conn.fd, select.EPOLLIN | select.EPOLLOUT)

    def _other_event(self, conn: Conn, mask: int) -> bool:
        """EPOLLOUT (room for an unsent tail), EPOLLERR or EPOLLHUP. True if there is
        something to read (an error or EOF shows up on the read itself)."""
        if mask & select.EPOLLOUT and conn.unsent:
            try:
                sent = os.write(conn.fd, conn.unsent)
            except BlockingIOError:
                sent = 0
            conn.unsent = conn.unsent[sent:]
            if not conn.unsent:
                self.epoll.modify(conn.fd, select.EPOLLIN)
        return bool(mask & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP))

    def _partial_reply(self, conn: Conn, data: bytes, request: int) -> None:
        """Keep the first piece of a reply TCP split; anything else is a failure."""
        if data and len(data) < len(conn.expected) and conn.expected.startswith(data):
            conn.got = data
            return
        if not data:
            raise BenchFailure(f"{self.where} closed connection {conn.index} while request "
                               f"{request} waited for its reply")
        raise BenchFailure(f"wrong reply from {self.where} on connection {conn.index}, request "
                           f"{request}: {describe_mismatch(conn.expected, data)}")

    def _dropped(self, conn: Conn | None, error: OSError) -> BenchFailure:
        which = f"connection {conn.index}" if conn else "a connection"
        return BenchFailure(f"{self.where} dropped {which}: {error.strerror or error}")

    def _check_stall(self, quiet_for: float, waiting: int) -> None:
        if quiet_for > self.workload.timeout:
            raise BenchFailure(f"{self.where} sent nothing for {quiet_for:.0f} s while "
                               f"{waiting} connection(s) waited for a reply (stalled server?)")

    # -- stream ------------------------------------------------------------------------
    def _stream(self, total: int) -> None:
        """Every connection writes ``total`` bytes of a random pattern (shifted per
        connection) while reading the echo back and checking it against the pattern."""
        pattern = random.Random(2).randbytes(STREAM_CHUNK)
        doubled = memoryview(pattern + pattern)  # any window of <= CHUNK bytes is a slice
        shift = {conn.fd: conn.index * 4099 % STREAM_CHUNK for conn in self.conns}
        for conn in self.conns:
            conn.sent = conn.done = 0
            self.epoll.modify(conn.fd, select.EPOLLIN | select.EPOLLOUT)
        active, last_progress = len(self.conns), time.monotonic()
        fd = -1
        try:
            while active:
                events = self.epoll.poll(POLL_SECONDS)
                now = time.monotonic()
                if not events:
                    self._check_stall(now - last_progress, active)
                    continue
                last_progress = now
                for fd, mask in events:
                    conn = self.table[fd]
                    if mask & select.EPOLLOUT and conn.sent < total:
                        start = (shift[fd] + conn.sent) % STREAM_CHUNK
                        try:
                            conn.sent += os.write(fd, doubled[start:start + min(STREAM_CHUNK, total - conn.sent)])
                        except BlockingIOError:
                            pass
                        if conn.sent == total:
                            self.epoll.modify(fd, select.EPOLLIN)
                    if not mask & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                        continue
                    data = os.read(fd, min(STREAM_CHUNK, total - conn.done + 1))
                    start = (shift[fd] + conn.done) % STREAM_CHUNK
                    if not data or conn.done + len(data) > total or data != doubled[start:start + len(data)]:
                        self._stream_failure(conn, data, total, doubled[start:start + len(data)])
                    conn.done += len(data)
                    if conn.done == total:
                        self.epoll.unregister(fd)
                        active -= 1
        except OSError as error:
            raise self._dropped(self.table[fd] if 0 <= fd < len(self.table) else None, error) from None

    def _stream_failure(self, conn: Conn, data: bytes, total: int, expected: memoryview) -> None:
        if not data:
            raise BenchFailure(f"{self.where} closed stream connection {conn.index} after echoing "
                               f"{conn.done} of {total} bytes")
        if conn.done + len(data) > total:
            raise BenchFailure(f"{self.where} echoed more than the {total} bytes sent on "
                               f"connection {conn.index}")
        raise BenchFailure(f"wrong bytes from {self.where} on stream connection {conn.index} at "
                           f"offset {conn.done}: {describe_mismatch(bytes(expected), data)}")

    # -- connect burst -----------------------------------------------------------------
    def _connect_burst(self, latencies: list[float]) -> int:
        """Start every connect at once; each counts when its one echo came back. Latency is
        from socket() to that echo."""
        ping = request_pairs(1, self.workload.size, 1)[0][0]
        started: dict[int, float] = {}
        pending: dict[int, socket.socket] = {}
        got: dict[int, bytes] = {}  # the first part of an echo TCP split
        try:
            for index in self.indices:
                t0 = time.perf_counter()
                sock = self._new_socket(index)
                pending[sock.fileno()] = sock
                started[sock.fileno()] = t0
                self.epoll.register(sock.fileno(), select.EPOLLOUT)
            deadline = time.monotonic() + self.workload.timeout
            completed = 0
            while pending:
                if time.monotonic() > deadline:
                    raise BenchFailure(f"{len(pending)} of {len(self.indices)} connections to "
                                       f"{self.where} did not echo within {self.workload.timeout:g} s")
                events = self.epoll.poll(POLL_SECONDS)
                now = time.perf_counter()
                for fd, mask in events:
                    sock = pending[fd]
                    if mask & select.EPOLLOUT:  # the handshake finished (or failed)
                        status = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                        if status:
                            raise self._connect_error(status)
                        sock.send(ping)
                        self.epoll.modify(fd, select.EPOLLIN)
                        continue
                    data = got.pop(fd, b"") + sock.recv(len(ping) + 1)
                    if data != ping:
                        if data and len(data) < len(ping) and ping.startswith(data):
                            got[fd] = data
                            continue
                        if not data:
                            raise BenchFailure(f"{self.where} closed a new connection before echoing")
                        raise BenchFailure(f"wrong echo from {self.where} on a new connection: "
                                           f"{describe_mismatch(ping, data)}")
                    latencies.append(now - started[fd])
                    self.epoll.unregister(fd)
                    del pending[fd]
                    sock.close()
                    completed += 1
            return completed
        except OSError as error:
            raise BenchFailure(f"connect burst to {self.where} failed: {error.strerror or error}") from None
        finally:
            for sock in pending.values():
                sock.close()
