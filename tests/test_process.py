"""lab/process.py: starting a program under test, knowing when it listens, always stopping it.

The programs here are tiny Python one-liners, so each behaviour (exits early, never listens,
ignores SIGTERM, leaves a child behind) is exactly the one under test.
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from lab.errors import UsageError
from lab.process import ServerProcess, StartError, dial_address, read_stats, request_stats


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


# Prints the readiness line for a real listening socket, then sleeps until killed.
LISTENER = """
    import socket, time
    listener = socket.create_server(("127.0.0.1", 0))
    print("listening on 127.0.0.1:%d" % listener.getsockname()[1], flush=True)
    time.sleep(60)
"""


def test_ready_once_the_listening_line_names_the_port(tmp_path, clients):
    with ServerProcess(python(LISTENER), log_dir=tmp_path) as server:
        assert server.host == "127.0.0.1" and server.port > 0
        clients.connect((server.host, server.port))
        assert (tmp_path / "stdout.txt").read_text().startswith("listening on")
    assert server.process.poll() is not None  # stopped when the block ended


def test_ready_once_a_given_port_accepts_even_without_the_line(listening_socket):
    port = listening_socket.getsockname()[1]
    with ServerProcess(python("import time; time.sleep(60)"), port=port) as server:
        assert server.port == port


def test_a_program_that_exits_before_listening_is_a_target_error_naming_status_and_stderr():
    program = python("""
        import sys
        print("cannot open config.toml", file=sys.stderr)
        sys.exit(3)
    """)
    with pytest.raises(StartError, match="exited with status 3 before listening") as raised:
        with ServerProcess(program):
            pass
    assert "cannot open config.toml" in str(raised.value)
    assert isinstance(raised.value, UsageError)  # the CLI turns it into a message and status 2


def test_a_program_that_never_listens_is_a_target_error_and_is_killed():
    server = ServerProcess(python("import time; time.sleep(60)"), ready_timeout=0.5)
    with pytest.raises(StartError, match=r"did not listen \(no 'listening on HOST:PORT' line\) "
                                          r"within 0\.5 s"):
        with server:
            pass
    assert server.process.poll() is not None


def test_a_program_silent_on_its_given_port_is_a_target_error_naming_the_port(listening_socket):
    # The port of a socket that listened and closed again: nothing accepts there now.
    port = listening_socket.getsockname()[1]
    listening_socket.close()
    server = ServerProcess(python("import time; time.sleep(60)"), port=port, ready_timeout=0.5)
    with pytest.raises(StartError, match=f"did not listen on 127.0.0.1:{port} within 0.5 s"):
        with server:
            pass


def test_a_program_that_cannot_be_started_is_a_target_error(tmp_path):
    with pytest.raises(StartError, match="cannot start"):
        with ServerProcess([str(tmp_path / "no-such-program")]):
            pass


def test_stop_kills_the_whole_group_even_when_sigterm_is_ignored(tmp_path):
    """The program and the child it started both ignore SIGTERM: stop() must SIGKILL the
    process group, so neither outlives the test. The child holds the write end of a FIFO
    whose read end is ours: EOF on it means the child is dead (a dead process holds no fd)."""
    fifo = tmp_path / "child-alive"
    os.mkfifo(fifo)
    child = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
             "f = open(sys.argv[1], 'w'); f.write('alive\\n'); f.flush(); time.sleep(60)")
    program = python(f"""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        subprocess.Popen([sys.executable, "-c", {child!r}, {str(fifo)!r}])
        print("listening on 127.0.0.1:9", flush=True)
        time.sleep(60)
    """)
    # O_NONBLOCK: opening the read end does not wait for the child to open the write end.
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    with open(reader, "rb") as alive, ServerProcess(program) as server:
        poller = select.poll()
        poller.register(alive, select.POLLIN)
        assert poller.poll(10_000), "the child never opened its end of the FIFO"
        assert alive.read() == b"alive\n"
        assert not poller.poll(0), "the child died before stop()"
        assert server.stop(timeout=0.5) == -signal.SIGKILL
        assert server.stop() == -signal.SIGKILL  # a second stop() is harmless
        assert poller.poll(5_000) and alive.read() == b"", "the child outlived stop()"


def test_nofile_sets_the_programs_fd_limit(tmp_path):
    program = python("""
        import resource, time
        print("limits %d %d" % resource.getrlimit(resource.RLIMIT_NOFILE), flush=True)
        print("listening on 127.0.0.1:9", flush=True)
        time.sleep(60)
    """)
    with ServerProcess(program, nofile=48) as server:
        assert "limits 48 48" in server.stdout_text()


# Writes counters like a lab server: on SIGUSR1, atomically, with a growing snapshot number.
STATS_WRITER = """
    import json, os, signal, sys, time
    path, snapshot = sys.argv[1], 0
    def write(*_):
        global snapshot
        snapshot += 1
        with open(path + ".partial", "w") as f:
            json.dump({"snapshot": snapshot, "bytes_in": 10 * snapshot}, f)
        os.replace(path + ".partial", path)
    signal.signal(signal.SIGUSR1, write)
    write()
    print("listening on 127.0.0.1:9", flush=True)
    while True:
        time.sleep(60)
"""


def test_request_stats_waits_for_a_fresh_snapshot(tmp_path):
    stats_file = tmp_path / "stats.json"
    with ServerProcess([*python(STATS_WRITER), str(stats_file)]) as server:
        assert read_stats(stats_file) == {"snapshot": 1, "bytes_in": 10}
        assert request_stats(server, stats_file) == {"snapshot": 2, "bytes_in": 20}
        assert request_stats(server, stats_file)["snapshot"] == 3


def test_request_stats_fails_when_no_fresh_snapshot_comes(tmp_path):
    stats_file = tmp_path / "stats.json"
    stats_file.write_text(json.dumps({"snapshot": 5}))
    program = python("""
        import signal, time
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        print("listening on 127.0.0.1:9", flush=True)
        time.sleep(60)
    """)
    with ServerProcess(program) as server:
        with pytest.raises(TimeoutError, match="no fresh counters"):
            request_stats(server, stats_file, timeout=0.3)


@pytest.mark.parametrize("content", [None, "", '{"snapshot": 1, "bytes'])
def test_read_stats_is_none_for_a_missing_or_unfinished_file(tmp_path, content):
    stats_file = tmp_path / "stats.json"
    if content is not None:
        stats_file.write_text(content)
    assert read_stats(stats_file) is None


# A parent that starts LISTENER (through ServerProcess, or a plain Popen for the control),
# prints the child's pid, then waits to be killed.
ORPHANING_PARENT = """
    import subprocess, sys, time
    from lab.process import ServerProcess
    listener = sys.argv[1]
    if sys.argv[2] == "server-process":
        child = ServerProcess([sys.executable, "-c", listener]).start().process
    else:
        child = subprocess.Popen([sys.executable, "-c", listener], start_new_session=True,
                                 stdout=subprocess.DEVNULL)
    print(child.pid, flush=True)
    time.sleep(60)
"""


def _alive(pid: int) -> bool:
    """True while pid exists and is not a zombie (an orphan is reaped by init at once)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize(("how", "survives"), [("server-process", False), ("plain-popen", True)])
def test_a_sigkilled_parent_takes_its_server_with_it(how, survives):
    # plain-popen is the negative control: without PR_SET_PDEATHSIG the orphan lives on.
    parent = subprocess.Popen([*python(ORPHANING_PARENT), textwrap.dedent(LISTENER), how],
                              stdout=subprocess.PIPE, text=True)
    child = None
    try:
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 1.0
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)  # poll interval of the 1 s deadline above
        assert _alive(child) == survives
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
        if child is not None and _alive(child):
            os.kill(child, signal.SIGKILL)


def test_a_binary_for_another_system_names_the_target_to_build_for(tmp_path):
    program = tmp_path / "server"
    program.write_bytes(struct.pack("<II", 0xFEEDFACF, 0x0100000C) + bytes(24))  # Mach-O, arm64
    program.chmod(0o755)
    with pytest.raises(StartError, match=r"Exec format error: it is a macOS \(Mach-O\) executable "
                                          r"for aarch64.*zig build -Dtarget=\w+-linux"):
        with ServerProcess([str(program), "8080"]):
            pass


@pytest.mark.parametrize(
    ("listening", "dial"),
    [
        (["127.0.0.1"], "127.0.0.1"),
        (["0.0.0.0"], "127.0.0.1"),
        (["::1"], "::1"),
        (["[::1]"], "::1"),
        (["::"], "::1"),  # dual-stack or not, ::1 reaches it
        (["::ffff:127.0.0.2"], "127.0.0.2"),
        (["::1", "127.0.0.1"], "127.0.0.1"),  # IPv4 first, as before IPv6 was graded
        (["localhost"], None),  # a name is not an address: /proc is asked instead
        ([], None),
    ],
)
def test_clients_dial_the_address_the_server_listens_on(listening, dial):
    assert dial_address(listening) == dial
