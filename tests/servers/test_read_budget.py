"""The edge server's read budget, driven without a kernel: a client that never runs dry.

A real client cannot be made to send faster than the server reads on demand, so these tests
hand the server a stand-in socket whose recv_into() always fills the buffer and whose send()
takes everything: without a budget, receive() would never return.
"""

from __future__ import annotations

import select

import pytest

from lab.servers.common import RECV_SIZE, Connection, ServerOptions
from lab.servers.edge import CONNECTION_EVENTS, READS_PER_TURN, EdgeServer
from lab.servers.graceful import GracefulServer


class EndlessSocket:
    """recv_into() fills the buffer every time, until ``dry_after`` reads (then EAGAIN)."""

    def __init__(self, dry_after: int | None = None) -> None:
        self.reads = 0
        self.dry_after = dry_after

    def recv_into(self, buffer) -> int:
        if self.dry_after is not None and self.reads >= self.dry_after:
            raise BlockingIOError
        self.reads += 1
        return len(buffer)

    def send(self, data) -> int:
        return len(data)


@pytest.fixture
def server_of():
    made = []

    def make(kind: type) -> EdgeServer:
        server = kind(ServerOptions(port=0))
        made.append(server)
        return server

    yield make
    for server in made:
        server.epoll.close()
        server.listener.close()


def connection(sock: EndlessSocket) -> Connection:
    # Registered as the edge server registers it, so a turn changes nothing in the epoll.
    return Connection(sock, fd=-1, peer="stand-in", interest=CONNECTION_EVENTS)


def test_a_client_that_never_runs_dry_gets_one_budget_then_waits_its_turn(server_of):
    server = server_of(EdgeServer)
    sock = EndlessSocket()
    conn = connection(sock)
    server.connections[conn.fd] = conn
    server.receive(conn, select.EPOLLIN)
    assert sock.reads == READS_PER_TURN
    assert server.ready == [conn]  # revisited after the batch: no new edge will come
    assert server.counters.bytes_in == server.counters.bytes_out == READS_PER_TURN * RECV_SIZE
    server.revisit_ready()
    assert sock.reads == 2 * READS_PER_TURN
    assert server.ready == [conn]


def test_negative_control_a_client_that_runs_dry_is_not_revisited(server_of):
    server = server_of(EdgeServer)
    sock = EndlessSocket(dry_after=3)
    conn = connection(sock)
    server.receive(conn, select.EPOLLIN)
    assert sock.reads == 3
    assert server.ready == []


def test_a_closed_connection_on_the_ready_list_is_skipped(server_of):
    server = server_of(EdgeServer)
    sock = EndlessSocket()
    conn = connection(sock)
    server.receive(conn, select.EPOLLIN)  # not in server.connections: as if closed since
    server.revisit_ready()
    assert sock.reads == READS_PER_TURN
    assert server.ready == []


def test_graceful_discards_a_budget_at_a_time_while_draining(server_of):
    """The drain's read-and-discard loop yields too, so the loop gets back to its deadline."""
    server = server_of(GracefulServer)
    server.drain_deadline = 0.0  # draining
    sock = EndlessSocket()
    conn = connection(sock)
    server.receive(conn, select.EPOLLIN)
    assert sock.reads == READS_PER_TURN
    assert server.counters.bytes_discarded == READS_PER_TURN * RECV_SIZE
    assert server.ready == [conn]
