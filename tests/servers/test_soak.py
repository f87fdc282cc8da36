"""The soak (issue 8): 10,000 connections held for a minute against each server, with the mix
of faults in soak.py (resets, half-closes, slow readers, urgent data); then the server must be
back where it started. Slow tier; under ``pytest -n auto`` the five servers soak in parallel.

"Where it started" is measured after a warm-up: the same crowd for a few seconds first. The
first 10,000 connections grow what a long-running server keeps at its working size (Python's
allocator arenas, the connection table, the kernel's socket slabs charged to nobody), and a
server is not leaking if it keeps that. After the warm-up the fd count, RSS and counters are
the baseline; after the soak, the fds are back to the count the server had when idle, no
socket is left in CLOSE_WAIT, RSS is within 10 % of the baseline, and the counters account for
every byte: all read bytes were echoed or dropped with a reset connection.
"""

from __future__ import annotations

import pytest

from lab import probes
from lab.servers import KINDS

from .clients import wait_until
from .soak import Soak

CONNECTIONS = 10_000
HOLD = 60.0
WARM_UP_HOLD = 5.0
SETTLE = 30.0  # for the server to close 10,000 connections on a loaded machine
RSS_SLACK = 0.10


def settled(server, idle_fds: int, opened: int) -> dict:
    """Wait until the server is idle again: its idle fd count, no socket but the listener,
    and counters that have seen every connection close. Returns that counters snapshot."""
    wait_until(lambda: probes.fd_count(server.pid) == idle_fds, SETTLE,
               f"the fd count back to its idle {idle_fds}")
    held = probes.sockets_of_process(server.pid, port=server.address[1])
    assert probes.tcp_states(held.values()) == {"LISTEN": 1}, "sockets left (CLOSE_WAIT?)"

    def snapshot_if_closed() -> dict | None:
        stats = server.stats()
        return stats if stats["opened"] == stats["closed"] == opened else None

    return wait_until(snapshot_if_closed, SETTLE, f"counters with {opened} opened and closed")


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_10000_connections_held_a_minute_with_faults_leave_the_server_as_it_was(serve, fd_limit,
                                                                               kind):
    if fd_limit < CONNECTIONS + 500:
        pytest.skip(f"RLIMIT_NOFILE {fd_limit} is too low for {CONNECTIONS} clients")
    # --idle-timeout: the timeout server must hold the talkers (one message each 10 s).
    server = serve(kind, "--idle-timeout", "600s")
    idle_fds = probes.fd_count(server.pid)

    warm_up = Soak(server.address, CONNECTIONS, hold=WARM_UP_HOLD, seed=1)
    warm_up.run(deadline=WARM_UP_HOLD + 120)
    assert not warm_up.problems, f"warm-up: {sorted(warm_up.problems.items())[:5]}"
    before = settled(server, idle_fds, opened=CONNECTIONS)
    rss_before = probes.rss_bytes(server.pid)

    soak = Soak(server.address, CONNECTIONS, hold=HOLD, seed=2)
    soak.run(deadline=HOLD + 180)
    assert not soak.problems, f"{len(soak.problems)} clients: {sorted(soak.problems.items())[:5]}"
    after = settled(server, idle_fds, opened=2 * CONNECTIONS)
    rss_after = probes.rss_bytes(server.pid)

    delta = {name: after[name] - before[name]
             for name in ("accepts", "bytes_in", "bytes_out", "bytes_dropped")}
    assert delta["accepts"] == CONNECTIONS
    echoed = sum(len(client.received) for client in soak.clients)
    # Every client got back exactly what it expected (no problems), so:
    assert delta["bytes_in"] == delta["bytes_out"] + delta["bytes_dropped"], delta
    assert echoed <= delta["bytes_out"], delta
    assert echoed <= delta["bytes_in"] <= echoed + soak.at_risk, (delta, echoed, soak.at_risk)
    assert rss_after <= rss_before * (1 + RSS_SLACK), (
        f"RSS {rss_before / 2**20:.1f} MiB after the warm-up, {rss_after / 2**20:.1f} MiB after "
        "the soak")
