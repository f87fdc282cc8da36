"""What a measured run is and what it saw, and the request bytes it sends: plain data and
pure helpers, no sockets (the loops that use them are in ``client``).

Request bytes are random, made before the clock starts, and come in PAIRS: a connection
alternates the two variants, so a server that echoes an old request again (or another
connection's request) fails the comparison even though the bytes are "plausible".
"""

from __future__ import annotations

import random
from dataclasses import dataclass

WORKLOADS = ("pingpong", "stream", "connect")
# Memory allowed for preallocated request bytes; past it, connections share request pairs.
PAYLOAD_BUDGET = 64 * 1024 * 1024


class BenchFailure(Exception):
    """The run failed: a wrong reply, a server that closed, stalled or never listened."""


@dataclass(slots=True)
class Workload:
    """What one measured run does. ``requests`` and ``warmup`` count per connection;
    ``rate`` (open loop) counts for the whole client. With ``duration`` (seconds) a closed-loop
    ping-pong ignores ``requests``: every connection keeps sending until the time is up, and
    the window ends when the replies then in flight are in (as wrk's ``-d``)."""

    kind: str
    connections: int
    requests: int = 100
    size: int = 64
    pipeline: int = 1
    rate: float | None = None
    warmup: int = 1
    stream_bytes: int = 10 * 1024 * 1024
    timeout: float = 30.0
    duration: float | None = None


@dataclass(slots=True)
class Measurement:
    """What a client saw in the measured window. ``started``/``finished`` are
    ``time.perf_counter()`` (CLOCK_MONOTONIC: comparable across the worker processes)."""

    started: float
    finished: float
    requests: int  # verified replies (pingpong) or completed connections (connect)
    bytes_echoed: int  # bytes verified coming back
    latencies: list[float]  # seconds; per pipelined batch (all its requests share it)
    cpu_user: float  # tick-sampled (10 ms ticks): use for the user/system split
    cpu_system: float
    cpu_total: float  # exact (CLOCK_PROCESS_CPUTIME_ID)


def request_pairs(connections: int, size: int, pipeline: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    """Distinct random request pairs (one batch of ``pipeline`` requests each), as many as
    ``PAYLOAD_BUDGET`` allows, at most one per connection. Connection ``i`` uses entry
    ``i % len(result)``."""
    batch = size * pipeline
    count = max(1, min(connections, PAYLOAD_BUDGET // (2 * batch)))
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        first, second = rng.randbytes(size), rng.randbytes(size)
        if first == second:  # only possible for 1-byte requests: make the variants differ
            second = bytes([first[0] ^ 0xFF])
        pairs.append((first * pipeline, second * pipeline))
    return pairs


def describe_mismatch(expected: bytes, got: bytes) -> str:
    """Where two byte strings first differ, with a short excerpt of both."""
    at = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b), min(len(expected), len(got)))
    lo = max(0, at - 8)
    return (
        f"expected {len(expected)} bytes, got {len(got)} bytes; first difference at byte {at}: "
        f"expected {expected[lo:at + 16]!r}, got {got[lo:at + 16]!r}"
    )


