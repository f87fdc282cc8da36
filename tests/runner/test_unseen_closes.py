"""Connections the server was never told are closed (the client's FIN never reached it) are
not the server's leak: counted from both ends of each connection in /proc/net/tcp."""

from __future__ import annotations

import os
import socket
from contextlib import ExitStack

import pytest

from lab.probes import TcpSocket
from lab.runner.evidence import count_unseen_closes, unseen_closes

PORT = 8080
TCP_REPAIR = 19  # linux/tcp.h: a socket in repair mode closes without a FIN or a reset


def row(local_port: int, remote_port: int, state: str = "ESTABLISHED", inode: int = 1) -> TcpSocket:
    return TcpSocket("127.0.0.1", local_port, "127.0.0.1", remote_port, state, 0, 0, inode)


def test_a_server_end_whose_client_end_is_gone_or_closing_is_unseen():
    server_ends = [row(PORT, 40001), row(PORT, 40002), row(PORT, 40003), row(PORT, 0, "LISTEN")]
    client_ends = [row(40001, PORT), row(40002, PORT, "TIME_WAIT", inode=0)]  # 40003: gone
    assert count_unseen_closes(server_ends, client_ends, PORT) == 2


def test_open_clients_and_closes_the_server_was_told_of_are_not_unseen():
    # Negative controls: an open client, and a CLOSE_WAIT (the FIN arrived: the server's leak).
    server_ends = [row(PORT, 40001), row(PORT, 40002, "CLOSE_WAIT")]
    client_ends = [row(40001, PORT), row(40002, PORT, "FIN_WAIT2")]
    assert count_unseen_closes(server_ends, client_ends, PORT) == 0
    # A client end on another server's port does not vouch for this one.
    assert count_unseen_closes([row(PORT, 40001)], [row(40001, PORT + 1)], PORT) == 1


def test_a_client_gone_without_a_fin_is_unseen_and_an_open_one_is_not():
    with ExitStack() as stack:
        listener = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
        port = listener.getsockname()[1]
        stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        stack.enter_context(listener.accept()[0])
        vanishing = socket.create_connection(("127.0.0.1", port), timeout=5)
        stack.enter_context(listener.accept()[0])
        assert unseen_closes(os.getpid(), port) == 0  # both clients open
        try:
            vanishing.setsockopt(socket.IPPROTO_TCP, TCP_REPAIR, 1)
        except PermissionError:
            vanishing.close()
            pytest.skip("TCP_REPAIR needs CAP_NET_ADMIN")
        vanishing.close()  # in repair mode: gone at once, and the server's end hears nothing
        assert unseen_closes(os.getpid(), port) == 1
