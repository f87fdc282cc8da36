"""Echo correctness: the assignment's own tests (one line, 1,000 clients, 10 MiB) and more.

The quick tier runs every cheap case on every server and one representative of each heavy one
(edge: the assignment runs its 1,000-client and 10 MiB tests against the edge server); the slow
tier runs the heavy cases on all five.
"""

from __future__ import annotations

import pytest

from lab.servers import KINDS

from .clients import SMALL_BUFFER, Streams, connect_many, counters_reach, echo, payload, sha256

MiB = 1024 * 1024


def heavy(kinds_in_quick_tier: list[str]) -> list:
    """Every kind, the ones not in ``kinds_in_quick_tier`` marked slow."""
    return [kind if kind in kinds_in_quick_tier else pytest.param(kind, marks=pytest.mark.slow)
            for kind in KINDS]


@pytest.mark.parametrize("kind", KINDS)
def test_one_line_is_echoed(serve, clients, kind):
    server = serve(kind)
    sock = clients.connect(server.address)
    assert echo(sock, b"Hello, epoll!\n") == b"Hello, epoll!\n"
    # The readiness line is the only thing a quiet server prints.
    assert server.process.stdout_text() == f"listening on 127.0.0.1:{server.address[1]}\n"


@pytest.mark.parametrize("kind", KINDS)
def test_burst_of_64_kib_comes_back_whole_while_the_client_waits(serve, kind):
    """One 64 KiB send, then nothing: an edge server that reads once per event keeps the rest
    in its socket forever, because no new byte arrives to raise another edge."""
    server = serve(kind)
    data = payload(64 * 1024, seed=1)
    with Streams(server.address, [data], chunk=len(data)) as streams:
        streams.pump(timeout=5.0)
        (stream,) = streams.streams
        assert stream.echoed_exactly(), stream.describe()


@pytest.mark.parametrize("rcvbuf", [None, SMALL_BUFFER], ids=["autotuned-window", "small-window"])
@pytest.mark.parametrize("kind", heavy(["edge"]))
def test_10_mib_round_trips_of_several_clients_at_once_keep_their_sha256(serve, kind, rcvbuf):
    """The assignment's ``dd | nc`` test, three clients at once. With a small receive window
    the server's sends come up short and it must buffer the rest until EPOLLOUT."""
    server = serve(kind)
    sent = [payload(10 * MiB, seed=seed) for seed in range(3)]
    with Streams(server.address, sent, rcvbuf=rcvbuf) as streams:
        streams.pump(timeout=60.0)
        for data, stream in zip(sent, streams.streams):
            assert stream.ended == "complete", stream.describe()
            assert sha256(stream.received) == sha256(data), stream.describe()


@pytest.mark.parametrize("kind", heavy(["edge"]))
def test_1000_concurrent_clients_each_get_their_own_line(serve, fd_limit, kind):
    server = serve(kind)
    problems = connect_many(server.address, 1000, timeout=60.0)
    assert not problems, f"{len(problems)} clients failed, e.g. {sorted(problems.items())[:5]}"
    counters_reach(server, {"accepts": 1000, "opened": 1000, "closed": 1000})


@pytest.mark.parametrize("threads", [1, 4])
def test_oneshot_keeps_the_bytes_of_each_of_many_interleaved_clients_in_order(serve, threads):
    """Small sends from 40 clients interleave at the server; with several threads, an fd
    handled by two threads at once (a missing EPOLLONESHOT or re-arm race) would reorder."""
    server = serve("oneshot", "--threads", str(threads))
    sent = [payload(64 * 1024, seed=100 + i) for i in range(40)]
    with Streams(server.address, sent, chunk=97) as streams:
        streams.pump(timeout=30.0)
        for i, stream in enumerate(streams.streams):
            assert stream.echoed_exactly(), f"client {i}: {stream.describe()}"
