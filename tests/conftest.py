"""Fixtures shared by every test module: the servers under test and the sockets that talk to them.

Each fixture owns what it opens. ``serve`` starts ``python -m lab serve KIND --port 0`` in its
own session through ``lab.process.ServerProcess`` and always stops it (its process group is
killed if SIGTERM is not enough); ``clients`` hands out client sockets and closes every one of
them at teardown, so a test that fails half-way leaks nothing (``filterwarnings = error`` would
turn a leaked socket into a failure anyway). Servers bind port 0 and report the port they got,
which keeps the tests safe under ``pytest -n auto``.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.process import ServerProcess, read_stats, request_stats

# How long any single step may take before the test fails instead of hanging. Generous: the
# quick tier shares two cores with other developers' tests.
STEP_TIMEOUT = 10.0


@dataclass(slots=True)
class LabServer:
    """A running ``lab serve KIND`` process and where it writes its counters."""

    kind: str
    process: ServerProcess
    stats_file: Path | None

    @property
    def address(self) -> tuple[str, int]:
        return (self.process.host, self.process.port)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stats(self) -> dict:
        """A fresh counters snapshot (SIGUSR1, then wait for the file to be replaced)."""
        assert self.stats_file is not None, "start the server with stats=True"
        return request_stats(self.process, self.stats_file, timeout=STEP_TIMEOUT)

    def final_stats(self) -> dict | None:
        """The counters the server wrote last (after it exited: its final ones)."""
        assert self.stats_file is not None, "start the server with stats=True"
        return read_stats(self.stats_file)

    def running(self) -> bool:
        return self.process.process.poll() is None


@pytest.fixture
def serve(tmp_path):
    """Factory: ``serve("edge", "--max-buffer", "64KiB", nofile=32, stats=True, env={...})``
    starts a lab server on a free port (``env`` added to ours) and returns a LabServer once it
    prints ``listening on HOST:PORT``.

    Every server is stopped at teardown, and a server that printed a Python traceback fails
    the test: no client behaviour may crash a server's loop."""
    started: list[LabServer] = []

    def start(kind: str, *options: str, nofile: int | None = None, stats: bool = True,
              env: dict[str, str] | None = None) -> LabServer:
        log_dir = tmp_path / f"{kind}-{len(started)}"
        stats_file = log_dir / "stats.json" if stats else None
        argv = [sys.executable, "-m", "lab", "serve", kind, "--port", "0"]
        if stats_file is not None:
            argv += ["--stats-file", str(stats_file)]
        process = ServerProcess([*argv, *options], log_dir=log_dir, nofile=nofile,
                                env={**os.environ, **env} if env else None,
                                ready_timeout=STEP_TIMEOUT)
        server = LabServer(kind, process, stats_file)
        started.append(server)
        process.start()
        process.wait_listening()
        return server

    yield start
    crashed = []
    for server in started:
        server.process.close()
        if "Traceback" in server.process.stderr_text():
            crashed.append(f"{server.kind}: {server.process.stderr_text()[-4000:]}")
    if crashed:
        pytest.fail("a server printed a traceback:\n" + "\n".join(crashed))


class Clients:
    """Client sockets for one test; ``close_all`` (run at teardown) closes every one."""

    def __init__(self) -> None:
        self._sockets: list[socket.socket] = []

    def connect(
        self,
        address: tuple[str, int],
        *,
        timeout: float = STEP_TIMEOUT,
        rcvbuf: int | None = None,
        sndbuf: int | None = None,
    ) -> socket.socket:
        """A blocking client socket whose every call fails after ``timeout`` seconds.

        ``rcvbuf``/``sndbuf`` are set before connect(), so the kernel uses them for the TCP
        window instead of auto-tuning it (how a test makes a client that reads little)."""
        sock = self.adopt(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sock.settimeout(timeout)
        sock.connect(address)
        return sock

    def adopt(self, sock: socket.socket) -> socket.socket:
        """Take ownership of a socket made elsewhere: it is closed at teardown too."""
        self._sockets.append(sock)
        return sock

    def close_all(self) -> None:
        for sock in self._sockets:
            sock.close()  # closing a closed socket is a no-op
        self._sockets.clear()


@pytest.fixture
def clients():
    owner = Clients()
    yield owner
    owner.close_all()


@pytest.fixture
def fd_limit():
    """Raise this process's RLIMIT_NOFILE soft limit to the hard limit for one test (servers
    started meanwhile inherit it) and return it; skip when even that is too low for the
    1,000-client tests. The only place that decides this capability."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    needed = 1000 + 64  # 1,000 clients plus what pytest and the interpreter hold
    if raised < needed:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}: cannot open 1,000 clients")
    resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
    yield raised
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def listening_socket():
    """A socket of the test's own, listening on a free port of 127.0.0.1 (for "port already in
    use" and readiness tests); closed at teardown."""
    with contextlib.closing(socket.create_server(("127.0.0.1", 0))) as sock:
        yield sock


@pytest.fixture(scope="session")
def ipv6_loopback():
    """Skip unless ::1 can be bound (a kernel or container without IPv6). The only place that
    decides this capability."""
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            pass
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here: {error.strerror}")
