"""The servers under adversarial timing (issue 8): each race forced, not hoped for.

A server frozen with SIGSTOP handles nothing, while the kernel keeps accepting connections,
queueing bytes and queueing signals for it. So "freeze, queue, resume" puts every input of a
race in the SAME epoll_wait, in an order the test chooses. What the kernel has queued is
checked in /proc before the server resumes (``queued_at_server``), because loopback delivery
may be deferred to a softirq thread on a loaded machine.

A signal that lands in the last instant before epoll_wait() cannot be timed from outside at
all: ``signal_before_wait`` preloads a 10-line C shim that sends it from inside the
epoll_wait() call, just before the real one (skipped where no C compiler is found).
"""

from __future__ import annotations

import shutil
import signal
import socket
import struct
import subprocess
import time

import pytest

from lab import probes
from lab.servers import KINDS

from .clients import counters_reach, echo, payload, recv_exactly, recv_until_eof, wait_until

PROMPT_EXIT = 5.0
LOOPS = ("level", "edge", "timeout", "graceful")  # one thread, one epoll_wait loop


def queued_at_server(server, client: socket.socket, size: int) -> None:
    """Wait until the server's end of ``client``'s connection holds ``size`` unread bytes
    (in an accepted socket or one still in the accept backlog)."""
    client_port = client.getsockname()[1]

    def queued() -> bool:
        return any(s.remote_port == client_port and s.rx_queue >= size
                   for s in probes.tcp_sockets(server.pid, port=server.address[1]))

    wait_until(queued, 5.0, f"{size} bytes queued at the server for client port {client_port}")


@pytest.fixture
def frozen():
    """``with frozen(server):`` stops the server for the block and always resumes it."""
    class Freezer:
        def __init__(self, server) -> None:
            self.server = server

        def __enter__(self):
            self.server.process.send_signal(signal.SIGSTOP)
            wait_until(lambda: set(probes.thread_states(self.server.pid)) == {"T"}, 5.0,
                       "every thread of the server to be stopped")
            return self.server

        def __exit__(self, *exc_info: object) -> None:
            self.server.process.send_signal(signal.SIGCONT)

    return Freezer


# -- 1. urgent data --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_urgent_byte_in_the_middle_of_queued_input_is_echoed_with_the_rest(serve, clients,
                                                                            frozen, kind):
    """recv() stops at the urgent mark, so the first read comes up short with 1,000 bytes
    still queued behind the mark: a server that takes a short read for "drained" waits for an
    edge that never comes. The servers set SO_OOBINLINE: the urgent byte is echoed in place."""
    server = serve(kind)
    sock = clients.connect(server.address)
    assert echo(sock, b"warm-up\n") == b"warm-up\n"
    before, after = payload(1000, seed=80), payload(1000, seed=81)
    with frozen(server):
        sock.sendall(before)
        sock.send(b"!", socket.MSG_OOB)
        sock.sendall(after)
        queued_at_server(server, sock, 2001)
    assert recv_exactly(sock, 2001, timeout=5.0) == before + b"!" + after


# -- 2. graceful keeps what the kernel took --------------------------------------------------


def test_graceful_echoes_bytes_queued_before_it_handled_the_signal(serve, clients, frozen):
    """SIGTERM first, then 39 bytes, all while the server is frozen: the kernel took the
    bytes before the server saw the signal, so they are echoed, then EOF."""
    server = serve("graceful")
    sock = clients.connect(server.address)
    assert echo(sock, b"warm-up\n") == b"warm-up\n"
    data = payload(39, seed=82)
    with frozen(server):
        server.process.send_signal(signal.SIGTERM)
        sock.sendall(data)
        queued_at_server(server, sock, len(data))
    assert recv_until_eof(sock, timeout=PROMPT_EXIT) == data
    sock.close()
    assert server.process.wait(PROMPT_EXIT) == 0
    final = server.final_stats()
    assert final["bytes_in"] == final["bytes_out"] == 8 + len(data)
    assert final["bytes_discarded"] == 0


def test_graceful_serves_a_connection_still_in_the_accept_backlog(serve, clients, frozen):
    """The kernel completed the handshake and queued 39 bytes, but the server never accepted
    the connection before SIGTERM: it is accepted and served, not reset."""
    server = serve("graceful")
    data = payload(39, seed=83)
    with frozen(server):
        server.process.send_signal(signal.SIGTERM)
        sock = clients.connect(server.address)
        sock.sendall(data)
        queued_at_server(server, sock, len(data))
    try:
        echoed = recv_until_eof(sock, timeout=PROMPT_EXIT)
    except ConnectionResetError:
        pytest.fail("the connection in the accept backlog was reset")
    assert echoed == data
    sock.close()
    assert server.process.wait(PROMPT_EXIT) == 0
    assert server.final_stats()["bytes_out"] == len(data)


def test_graceful_discards_what_arrives_after_the_drain_began(serve, clients):
    """Negative control for the two above: bytes sent once the drain is under way (the
    listener is closed by then) are read and thrown away, not echoed."""
    server = serve("graceful")
    sock = clients.connect(server.address)
    assert echo(sock, b"warm-up\n") == b"warm-up\n"
    server.process.send_signal(signal.SIGTERM)
    assert recv_until_eof(sock, timeout=PROMPT_EXIT) == b""  # the drain sent EOF
    sock.sendall(b"too late\n")
    sock.close()
    assert server.process.wait(PROMPT_EXIT) == 0
    assert server.final_stats()["bytes_out"] == 8


# -- 4. an fd number reused within one batch ------------------------------------------------


def test_a_stale_event_for_a_closed_fd_does_not_reach_the_client_that_reuses_it(serve, clients,
                                                                                  frozen):
    """One epoll_wait batch, in this order: the timer (it closes idle client A, fd N), the
    listener (accept() may hand out N again, to client B), then A's reset (EPOLLERR for the
    old N). Dispatched by fd number, the stale EPOLLERR would close B. B must get its echo."""
    idle_timeout, tick = 0.5, 0.1
    server = serve("timeout", "--idle-timeout", f"{idle_timeout}s", "--tick", f"{tick}s")
    doomed = clients.connect(server.address)
    assert echo(doomed, b"soon idle\n") == b"soon idle\n"
    last_heard = time.monotonic()  # the server's last event on it was a little earlier
    (timer_fd,) = [entry.fd for entry in probes.fds_of_kind(server.pid, probes.TIMERFD)]
    with frozen(server):
        # The timer is ready first. A timerfd counts one expiry until it is read.
        wait_until(lambda: probes.timerfd_info(server.pid, timer_fd).ticks >= 1, 5.0,
                   "the timer to expire while frozen")
        # Idleness is measured on the clock when the server resumes: A must be past the
        # timeout by then. A wait on the clock itself, the condition under test.
        wait_until(lambda: time.monotonic() - last_heard > 2 * idle_timeout, 5.0,
                   "client A to be idle for twice the timeout")
        newcomer = clients.connect(server.address)  # the listener is ready second
        newcomer.sendall(b"still served\n")
        queued_at_server(server, newcomer, 13)
        doomed_port = doomed.getsockname()[1]
        doomed.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        doomed.close()  # a RST: A's socket is ready third, with EPOLLERR
        wait_until(lambda: not any(s.remote_port == doomed_port
                                   for s in probes.tcp_sockets(server.pid, port=server.address[1])),
                   5.0, "the reset to reach the server")
    assert recv_exactly(newcomer, 13, timeout=PROMPT_EXIT) == b"still served\n"
    counters_reach(server, {"timeouts": 1, "opened": 2, "closed": 1})


# -- 3. no signal is lost --------------------------------------------------------------------

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

/* Send LAB_SIGNAL (a number) to this process inside the first epoll_wait() call: after the
   server's last look at its flags, before the kernel puts it to sleep. */
int epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout) {
    static int (*real)(int, struct epoll_event *, int, int);
    static int sent;
    if (!real) real = (int (*)(int, struct epoll_event *, int, int))dlsym(RTLD_NEXT, "epoll_wait");
    const char *signum = getenv("LAB_SIGNAL");
    if (signum && !__atomic_exchange_n(&sent, 1, __ATOMIC_SEQ_CST)) kill(getpid(), atoi(signum));
    return real(epfd, events, maxevents, timeout);
}
"""


@pytest.fixture(scope="session")
def signal_before_wait(tmp_path_factory) -> str:
    """Path of the compiled shim (an LD_PRELOAD library); skips without a C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the epoll_wait shim")
    folder = tmp_path_factory.mktemp("shim")
    (folder / "shim.c").write_text(SHIM)
    library = folder / "signal_before_wait.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", "-o", str(library), str(folder / "shim.c"),
                    "-ldl"], check=True, capture_output=True, timeout=60)
    return str(library)


@pytest.mark.parametrize("kind", KINDS)
def test_a_signal_just_before_epoll_wait_still_ends_the_wait(serve, signal_before_wait, kind):
    """An idle server: nothing but the signal can wake it. A loop that learns of signals from
    a handler's flag checks the flag, then blocks, and never sees this one."""
    env = {"LD_PRELOAD": signal_before_wait, "LAB_SIGNAL": str(int(signal.SIGTERM))}
    slow_tick = ["--tick", "3600s"] if kind == "timeout" else []  # no timer to wake it either
    server = serve(kind, *slow_tick, env=env)
    status = server.process.wait(PROMPT_EXIT)
    assert status == 0, f"still running {PROMPT_EXIT:g} s after SIGTERM" if status is None else status
    assert server.final_stats() is not None, "no counters written on the way out"


def test_negative_control_the_shim_does_nothing_without_a_signal_number(serve, signal_before_wait):
    server = serve("edge", env={"LD_PRELOAD": signal_before_wait})
    assert server.process.wait(0.5) is None


@pytest.mark.parametrize("kind", KINDS)
def test_two_exit_signals_at_once_leave_a_clean_exit(serve, clients, frozen, kind):
    """SIGINT and SIGTERM land together (queued while frozen): whichever the server takes as
    the first, the second arrives while it cleans up. Cleanup must still close every
    connection and write the counters, without a traceback (the ``serve`` fixture fails on
    one). Graceful takes the second as "exit now" (128 + its number)."""
    server = serve(kind)
    sock = clients.connect(server.address)
    assert echo(sock, b"hello\n") == b"hello\n"
    with frozen(server):
        server.process.send_signal(signal.SIGINT)
        server.process.send_signal(signal.SIGTERM)
    status = server.process.wait(PROMPT_EXIT)
    assert status is not None, f"still running {PROMPT_EXIT:g} s after SIGINT and SIGTERM"
    final = server.final_stats()
    assert final is not None, "no counters written on the way out"
    assert final["opened"] == final["closed"] == 1
    allowed = {0, 128 + signal.SIGINT, 128 + signal.SIGTERM} if kind == "graceful" else {0}
    assert status in allowed
