"""The client bookkeeping: the pattern, the echo comparison, latencies (no sockets), and the
loop's deadline (one socketpair)."""

from __future__ import annotations

import socket
import time

from lab.runner.clients import CAUGHT_UP, PATTERN, Client, pattern_bytes, pump


def test_pattern_bytes_wrap_around():
    tail = pattern_bytes(len(PATTERN) - 3, 6)
    assert tail == PATTERN[-3:] + PATTERN[:3]
    assert pattern_bytes(len(PATTERN) + 5, 4) == PATTERN[5:9]


def test_random_blocks_hold_every_byte_value():
    # faults.toml echoes 4 KiB of the pattern as its "all 256 byte values" client
    assert len(set(pattern_bytes((0 + 1) * 104729, 4096))) == 256


def test_echo_is_compared_byte_for_byte():
    client = Client(0, None)
    client.on_sent(b"hello world")
    client.on_received(b"hello", now=1.0)
    assert client.mismatch_at is None and client.expect == b" world"
    client.on_received(b" wXrld", now=2.0)
    assert client.mismatch_at == 7
    assert client.echoed == 11 and not client.expect


def test_extra_bytes_count_as_a_mismatch():
    client = Client(0, None)
    client.on_sent(b"ab")
    client.on_received(b"abc", now=1.0)
    assert client.mismatch_at == 2


def test_streams_are_queued_in_chunks_and_differ_per_client():
    first, second = Client(0, None), Client(1, None)
    for client in (first, second):
        client.queue_stream(100_000)
        client.fill_outbox(now=0.0)
    assert len(first.outbox) == 64 * 1024 and first.stream_left == 100_000 - 64 * 1024
    assert first.outbox != second.outbox


def test_one_message_in_flight_and_its_latency():
    client = Client(0, None)
    client.messages.extend([b"one\n", b"two\n"])
    client.fill_outbox(now=1.0)
    assert client.outbox == b"one\n"
    client.on_sent(bytes(client.outbox))
    client.outbox.clear()
    client.fill_outbox(now=1.1)
    assert client.outbox == b""  # the second waits for the first echo
    client.on_received(b"one\n", now=1.25)
    assert client.messages_done == 1 and abs(client.worst_latency - 0.25) < 1e-9
    client.fill_outbox(now=1.3)
    assert client.outbox == b"two\n"


def test_pump_gives_up_at_its_deadline_when_nothing_echoes():
    """A peer that reads nothing and echoes nothing: the loop ends by its deadline."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        client = Client(0, ours)
        client.messages.append(b"anyone there?\n")
        ended_by = pump([client], time.monotonic() + 0.2, CAUGHT_UP)
        assert ended_by == "deadline"
        assert client.sent == 14 and client.echoed == 0 and not client.caught_up
        theirs.sendall(theirs.recv(64))  # now echo it: the same loop completes
        assert pump([client], time.monotonic() + 5, CAUGHT_UP) == "done"
        assert client.caught_up and client.mismatch_at is None
        client.sock = None  # closed by the with-block, not by the client


def test_a_steady_sender_waits_for_its_rate():
    client = Client(0, None)
    client.queue_stream(1024 * 1024, rate=64 * 1024, now=10.0)
    assert client.throttled(10.0)  # nothing is due at the start
    assert not client.throttled(10.5)  # 32 KiB due
    for _ in range(100):  # what _write() does: send a chunk, take the next one if due
        client.fill_outbox(10.5)
        if not client.outbox:
            break
        client.on_sent(bytes(client.outbox))
        client.outbox.clear()
    assert client.sent == 32 * 1024
    assert client.throttled(10.5) and not client.throttled(11.0)


def test_a_stalled_push_forgets_what_was_not_taken():
    client = Client(0, None)
    client.queue_stream(100_000)
    client.fill_outbox(0.0)
    assert client.drop_unsent() == 100_000
    assert not client.has_output
