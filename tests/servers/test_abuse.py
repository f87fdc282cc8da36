"""Clients that misbehave: they stop reading, half-close, reset, or exhaust the server's fds.

Each test says what a correct server must do and checks it from outside: the echo bytes, the
server's memory and fds in /proc (``lab.probes``), and that it still serves a fresh client.
Where a check could pass without the server doing anything (memory that never grew, fds that
were never taken), a negative control shows that the same probe does see the change.
"""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from lab import probes
from lab.servers import KINDS

from .clients import (
    QUIET,
    SMALL_BUFFER,
    Streams,
    connect_many,
    counters_reach,
    echo,
    more_than_kernel_buffers,
    payload,
    recv_exactly,
    sha256,
    stuff_until_blocked,
    wait_until,
)

MiB = 1024 * 1024


def slow_reader_growth(serve, clients, kind: str, max_buffer: str) -> tuple[int, int, int]:
    """A client sends more than the kernel buffers can hold and reads nothing; meanwhile a
    second client must get prompt echoes. Then the slow reader reads, and all it sent must
    come back intact. Returns (bytes offered, bytes the server took in while the slow reader
    did not read, the server's RSS growth meanwhile)."""
    server = serve(kind, "--max-buffer", max_buffer)
    lively = clients.connect(server.address, timeout=2.0)
    echo(lively, b"warm-up\n")  # buffers and code paths exist before the baseline
    baseline = probes.rss_bytes(server.pid)
    slow = clients.connect(server.address, rcvbuf=SMALL_BUFFER, sndbuf=SMALL_BUFFER)
    data = payload(more_than_kernel_buffers(), seed=7)
    sent = stuff_until_blocked(slow, data, timeout=30.0)
    growth = probes.rss_bytes(server.pid) - baseline
    for i in range(5):  # the loop still serves others: each echo within 2 s (lively's timeout)
        assert echo(lively, f"ping {i}\n".encode(), timeout=2.0) == f"ping {i}\n".encode()
    echoed = recv_exactly(slow, sent, timeout=30.0)
    assert sha256(echoed) == sha256(data[:sent]), "the slow reader's echo was corrupted"
    return len(data), sent, growth


@pytest.mark.parametrize("kind", KINDS)
def test_slow_reader_is_paused_at_the_output_cap_and_memory_stays_bounded(serve, clients, kind):
    offered, sent, growth = slow_reader_growth(serve, clients, kind, max_buffer="1MiB")
    assert sent < offered, "the server never stopped reading a client that reads nothing"
    assert growth < 8 * MiB, f"server RSS grew by {growth / MiB:.1f} MiB with a 1 MiB cap"


def test_negative_control_rss_probe_sees_an_uncapped_buffer_grow(serve, clients):
    """The same slow reader against a cap larger than the stream: the server buffers it all,
    and the RSS probe must see that (otherwise the bounded-memory test proves nothing)."""
    offered, sent, growth = slow_reader_growth(serve, clients, "edge", max_buffer="1GiB")
    assert sent == offered
    assert growth > 8 * MiB, f"RSS grew {growth / MiB:.1f} MiB with {sent / MiB:.0f} MiB taken in"


@pytest.mark.parametrize("kind", KINDS)
def test_half_close_gets_all_pending_echo_then_eof(serve, kind):
    """shutdown(SHUT_WR) after 8 MiB sent through a 64 KiB receive window: when the FIN
    arrives, MiBs of echo are still pending (more than the server's socket buffer holds, so
    some in the server itself); it must send them all, then close."""
    server = serve(kind)
    data = payload(8 * MiB, seed=3)
    with Streams(server.address, [data], half_close=True, rcvbuf=SMALL_BUFFER) as streams:
        streams.pump(timeout=20.0)
        (stream,) = streams.streams
        assert stream.echoed_exactly(), stream.describe()  # complete = every byte, then EOF


@pytest.mark.parametrize("kind", KINDS)
def test_reset_mid_stream_closes_only_that_connection(serve, clients, kind):
    server = serve(kind)
    bystander = clients.connect(server.address)
    assert echo(bystander, b"before\n") == b"before\n"
    idle_fds = probes.fd_count(server.pid)
    victim = clients.connect(server.address, rcvbuf=SMALL_BUFFER)
    # Echo left pending on both sides when the reset comes.
    stuff_until_blocked(victim, payload(4 * MiB, seed=4), timeout=10.0)
    assert probes.fd_count(server.pid) == idle_fds + 1  # the server holds the victim's socket
    # SO_LINGER with a zero timeout: close() sends a RST instead of a FIN.
    victim.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    victim.close()
    wait_until(lambda: probes.fd_count(server.pid) == idle_fds, 5.0,
               "the server to close the reset connection")
    assert echo(bystander, b"after\n") == b"after\n"
    fresh = clients.connect(server.address)
    assert echo(fresh, b"fresh\n") == b"fresh\n"
    assert server.running()
    # Echo still in the server when the reset came is counted as dropped: every byte it read
    # is accounted for (what its kernel send buffer held is lost without a count). Oneshot's
    # workers count after their send() returns, so its snapshot may lag by the last echo:
    # asked again, it settles.
    def accounted() -> bool:
        stats = server.stats()
        return stats["bytes_in"] == stats["bytes_out"] + stats["bytes_dropped"]

    wait_until(accounted, 5.0, "bytes_in == bytes_out + bytes_dropped in the counters")


@pytest.mark.parametrize("kind", KINDS)
def test_fd_exhaustion_is_survived_and_accepting_resumes(serve, clients, kind):
    """RLIMIT_NOFILE 32 and 60 clients: accept() fails with EMFILE while the rest wait in the
    backlog. The server must neither die nor spin, keep serving the clients it has, and accept
    again once fds are free (under EPOLLET the listener raises no new edge by itself)."""
    nofile = 32
    server = serve(kind, nofile=nofile)
    idle_fds = probes.fd_count(server.pid)
    crowd = [clients.connect(server.address) for _ in range(60)]
    # Negative control: the server really ran out (it took every fd it could).
    wait_until(lambda: probes.fd_count(server.pid) >= nofile - 4, 5.0,
               f"the server to use up its {nofile} fds")
    before = probes.cpu_times(server.pid)
    assert echo(crowd[0], b"first in\n") == b"first in\n"
    time.sleep(QUIET)  # an interval to measure CPU over, not a wait for an event
    burnt = (probes.cpu_times(server.pid) - before).total
    # A server that retries a failing accept() at once (the listener stays readable) burns a
    # whole core; pausing accepts costs a few milliseconds.
    assert burnt < QUIET / 5, f"{burnt:.2f} s of CPU in {QUIET} s while out of fds: it spins"
    assert server.running()
    for sock in crowd:
        sock.close()
    wait_until(lambda: probes.fd_count(server.pid) == idle_fds, 10.0,
               "the server to close the crowd's connections and accept the rest")
    newcomer = clients.connect(server.address)
    assert echo(newcomer, b"newcomer\n") == b"newcomer\n"
    assert server.stats()["accept_paused"] >= 1


@pytest.mark.parametrize("kind", KINDS)
def test_fds_return_to_idle_and_no_close_wait_remains_after_clients_leave(serve, clients, kind):
    server = serve(kind)
    idle_fds = probes.fd_count(server.pid)
    crowd = [clients.connect(server.address) for _ in range(20)]
    for i, sock in enumerate(crowd):
        assert echo(sock, f"client {i}\n".encode()) == f"client {i}\n".encode()
    # Negative control: the probes see the 20 connections while they are open.
    assert probes.fd_count(server.pid) == idle_fds + 20
    held = probes.sockets_of_process(server.pid, port=server.address[1])
    assert probes.tcp_states(held.values()) == {"LISTEN": 1, "ESTABLISHED": 20}
    for sock in crowd:
        sock.close()
    wait_until(lambda: probes.fd_count(server.pid) == idle_fds, 5.0,
               f"fd count back to its idle {idle_fds}")
    # A socket in CLOSE_WAIT is one the server has not closed, so it always holds an fd.
    held = probes.sockets_of_process(server.pid, port=server.address[1])
    assert probes.tcp_states(held.values()) == {"LISTEN": 1}
    counters_reach(server, {"opened": 20, "closed": 20})


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_5000_connections_in_waves_leave_no_fd_behind(serve, fd_limit, kind):
    """Five waves of 1,000 clients: per-connection state that is never released (an fd, a
    registration, an entry in a table) would show as a count that does not come back."""
    server = serve(kind)
    idle_fds = probes.fd_count(server.pid)
    for wave in range(5):
        problems = connect_many(server.address, 1000, timeout=60.0)
        assert not problems, f"wave {wave}: {sorted(problems.items())[:5]}"
    wait_until(lambda: probes.fd_count(server.pid) == idle_fds, 10.0,
               f"fd count back to its idle {idle_fds}")
    counters_reach(server, {"accepts": 5000, "opened": 5000, "closed": 5000})


def test_negative_control_close_wait_probe_sees_a_socket_left_open(clients, listening_socket):
    """Our own accepted socket, its peer gone and never closed by us, is in CLOSE_WAIT: the
    probe the cleanup test relies on must report it."""
    client = clients.connect(listening_socket.getsockname())
    accepted = clients.adopt(listening_socket.accept()[0])
    client.close()
    port = listening_socket.getsockname()[1]

    def close_wait_seen() -> bool:
        held = probes.sockets_of_process(os.getpid(), port=port)
        return probes.tcp_states(held.values()).get("CLOSE_WAIT") == 1

    wait_until(close_wait_seen, 5.0, "our unclosed socket to show as CLOSE_WAIT")
    accepted.close()
