"""What a server tells about itself: counters on SIGUSR1, the --verbose log, its threads."""

from __future__ import annotations

import re

import pytest

from lab import probes
from lab.servers import KINDS

from .clients import counters_reach, echo, wait_until

COUNTER_NAMES = {
    "server", "pid", "snapshot", "epoll_waits", "events", "accepts", "recv_calls", "send_calls",
    "eagain", "bytes_in", "bytes_out", "bytes_discarded", "bytes_dropped", "opened", "closed",
    "timeouts", "accept_paused",
}  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
def test_sigusr1_gives_a_fresh_snapshot_whose_counters_follow_the_traffic(serve, clients, kind):
    server = serve(kind)
    before = server.stats()
    assert COUNTER_NAMES <= before.keys()
    assert (before["server"], before["pid"]) == (kind, server.pid)
    sock = clients.connect(server.address)
    message = b"x" * 1000
    assert echo(sock, message) == message
    # counters_reach: the first snapshot may not have counted the last send() yet.
    deltas = {"accepts": 1, "opened": 1, "bytes_in": 1000, "bytes_out": 1000}
    after = counters_reach(server, {name: before[name] + delta for name, delta in deltas.items()})
    assert after["snapshot"] > before["snapshot"]
    for name in ("epoll_waits", "events", "recv_calls", "send_calls"):
        assert after[name] > before[name], name
    sock.close()
    counters_reach(server, {"closed": before["closed"] + 1})


@pytest.mark.parametrize("kind", KINDS)
def test_verbose_logs_open_receive_send_and_close_with_fd_and_address(serve, clients, kind):
    server = serve(kind, "--verbose")
    sock = clients.connect(server.address)
    client_port = sock.getsockname()[1]
    assert echo(sock, b"hello\n") == b"hello\n"
    sock.close()
    wait_until(lambda: "closed" in server.process.stdout_text(), 5.0, "a 'closed' line in the log")
    log = server.process.stdout_text()
    opened = re.search(rf"new connection.*?fd=(\d+).*127\.0\.0\.1:{client_port}\b", log)
    assert opened, f"no 'new connection' line with fd and address in:\n{log}"
    fd = opened.group(1)
    for event in (r"received 6 bytes", r"sent 6 bytes", r"connection closed"):
        assert re.search(rf"fd={fd}\b.*{event}", log), f"no '{event}' line for fd {fd} in:\n{log}"


@pytest.mark.parametrize(("kind", "options", "threads"), [
    ("level", [], 1),
    ("edge", [], 1),
    ("timeout", [], 1),
    ("graceful", [], 1),
    ("oneshot", ["--threads", "6"], 1 + 6),
])
def test_threads_in_proc_match_the_design(serve, kind, options, threads):
    """Single-threaded loops show one task; oneshot shows its pool besides the main thread
    (the two must differ, or the probe would not tell them apart)."""
    server = serve(kind, *options)
    # Waiting: a server may start its workers just after it announced that it listens.
    wait_until(lambda: probes.thread_count(server.pid) == threads, 5.0,
               f"the server to run exactly {threads} thread(s)")
