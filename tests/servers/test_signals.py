"""Ending a server: SIGINT/SIGTERM exit 0 promptly and cleanly; graceful drains first.

The ``serve`` fixture fails any test whose server printed a traceback, so "cleanly" is checked
for every test here without a line of its own.
"""

from __future__ import annotations

import errno
import json
import signal
import socket

import pytest

from lab.servers import KINDS

from .clients import (
    SMALL_BUFFER,
    Streams,
    echo,
    first_difference,
    is_closed_by_peer,
    more_than_kernel_buffers,
    payload,
    recv_until_eof,
    stuff_until_blocked,
    wait_until,
)

MiB = 1024 * 1024
PROMPT_EXIT = 5.0


def refuses(address: tuple[str, int]) -> bool:
    """A connect to ``address`` is refused right now (nothing listens there)."""
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(address) == errno.ECONNREFUSED


def stall(server, clients, seed: int) -> tuple[socket.socket, bytes]:
    """A client that sends until the server stops reading and reads nothing itself: the
    server is left holding echo it cannot send (more than the kernel buffers take), so a
    drain cannot finish until this client reads. Returns the socket and the bytes sent."""
    sock = clients.connect(server.address, rcvbuf=SMALL_BUFFER)
    data = payload(more_than_kernel_buffers(), seed=seed)
    sent = stuff_until_blocked(sock, data, timeout=20.0)
    assert sent < len(data), "the server never stopped reading"
    return sock, data[:sent]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("kind", KINDS)
def test_signal_exits_0_promptly_with_clients_connected(serve, clients, kind, signum):
    """The client closes when it sees EOF, as nc does: graceful waits for that, the others
    close it on their way out."""
    server = serve(kind)
    sock = clients.connect(server.address)
    assert echo(sock, b"hello\n") == b"hello\n"
    server.process.send_signal(signum)
    assert is_closed_by_peer(sock, PROMPT_EXIT), "the connection stayed open after the signal"
    sock.close()
    assert server.process.wait(PROMPT_EXIT) == 0
    assert server.final_stats()["opened"] == 1  # the counters are written on the way out


@pytest.mark.parametrize("kind", KINDS)
def test_signal_and_a_connect_in_the_same_wait_still_exit_0(serve, clients, kind):
    """Stopped with SIGSTOP, the server gets SIGTERM and a new connection (the kernel
    completes it into the backlog); on SIGCONT both are ready in one epoll_wait. Whatever
    order it handles them in, it must not touch the listener after closing it."""
    server = serve(kind)
    server.process.send_signal(signal.SIGSTOP)
    server.process.send_signal(signal.SIGTERM)
    late = clients.connect(server.address)
    server.process.send_signal(signal.SIGCONT)
    if is_closed_by_peer(late, PROMPT_EXIT):  # graceful may accept it and drain it first
        late.close()
    assert server.process.wait(PROMPT_EXIT) == 0


def test_counters_go_to_stderr_as_one_json_line_without_a_stats_file(serve):
    server = serve("edge", stats=False)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(PROMPT_EXIT) == 0
    (line,) = server.process.stderr_text().splitlines()
    assert json.loads(line)["server"] == "edge"


def test_graceful_sigterm_mid_stream_loses_no_byte_it_received(serve):
    """Three 10 MiB streams, SIGTERM once each has 1 MiB back. Each client must then receive
    a prefix of what it sent and nothing else, and together everything the server read:
    stopping reads no byte without echoing it."""
    server = serve("graceful")
    sent = [payload(10 * MiB, seed=20 + i) for i in range(3)]
    with Streams(server.address, sent) as streams:
        streams.pump(timeout=30.0, until=lambda: streams.each_received(MiB))
        server.process.send_signal(signal.SIGTERM)
        streams.pump(timeout=30.0)  # until each stream completes, sees EOF or a reset
        for stream in streams.streams:
            assert stream.is_prefix_echo(), stream.describe()
            assert stream.ended in ("complete", "eof"), stream.describe()
        echoed = sum(len(s.received) for s in streams.streams)
    assert server.process.wait(PROMPT_EXIT) == 0  # it exits once the clients have closed
    final = server.final_stats()
    assert final["bytes_out"] == final["bytes_in"] == echoed


def test_graceful_refuses_new_connects_while_it_drains(serve, clients):
    """New connects are refused while the server is still alive, draining echo to a client
    that does not read yet. Once it reads, it gets all its echo and EOF; the server exits 0."""
    server = serve("graceful")
    stalled, data = stall(server, clients, seed=30)
    server.process.send_signal(signal.SIGTERM)
    wait_until(lambda: refuses(server.address), 5.0, "new connects to be refused")
    assert server.running(), "the server exited with echo still pending"
    echoed = recv_until_eof(stalled, timeout=20.0)
    stalled.close()
    assert server.process.wait(PROMPT_EXIT) == 0
    final = server.final_stats()
    assert len(echoed) == final["bytes_in"] == final["bytes_out"]
    assert echoed == data[: len(echoed)], first_difference(data, echoed)


def test_graceful_second_signal_exits_at_once(serve, clients):
    server = serve("graceful", "--drain-timeout", "60s")
    stall(server, clients, seed=31)
    server.process.send_signal(signal.SIGTERM)
    wait_until(lambda: refuses(server.address), 5.0, "the drain to begin")
    server.process.send_signal(signal.SIGTERM)
    status = server.process.wait(PROMPT_EXIT)
    assert status is not None, "a second SIGTERM did not end the drain"
    assert status == 128 + signal.SIGTERM  # documented in lab/servers/graceful.py


def test_graceful_drain_timeout_ends_a_drain_that_cannot_finish(serve, clients):
    server = serve("graceful", "--drain-timeout", "500ms")
    stall(server, clients, seed=32)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(PROMPT_EXIT) == 0
    assert "drain timeout" in server.process.stderr_text()
