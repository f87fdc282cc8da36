"""lab/process.py: starting a program under test, knowing when it listens, always stopping it.

The programs here are tiny Python one-liners, so each behaviour (exits early, never listens,
ignores SIGTERM, leaves a child behind) is exactly the one under test.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from lab import probes
from lab.errors import UsageError, describe_exit
from lab.host import free_port
from lab.process import ServerProcess, StartError, dial_address, read_stats, request_stats
from lab.runner import evidence


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


def test_a_foreign_listener_on_the_given_port_does_not_count_as_ready(listening_socket):
    """Another program already listens on the port: the one started never will, and the
    error says the port is taken instead of grading the other program."""
    port = listening_socket.getsockname()[1]
    server = ServerProcess(python("import time; time.sleep(60)"), port=port, ready_timeout=0.5)
    with pytest.raises(StartError, match=f"did not listen on 127.0.0.1:{port} within 0.5 s.*"
                                         f"port {port} is already in use"):
        with server:
            pass


def test_a_program_that_exits_with_eaddrinuse_is_reported_as_such(listening_socket):
    port = listening_socket.getsockname()[1]
    program = python(f"import socket; socket.create_server(('127.0.0.1', {port}))")
    with pytest.raises(StartError, match=f"exited with status 1 before listening; port {port} "
                                         "is already in use") as raised:
        with ServerProcess(program, port=port):
            pass
    assert "Address already in use" in str(raised.value)


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


# -- the server inside its process tree ------------------------------------------------------

def _sh(command: str) -> list[str]:
    return ["sh", "-c", command]


def _python_line(code: str) -> str:
    """``code`` as one ``python -c`` word for a shell command line."""
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(textwrap.dedent(code))}"


def _holds_listener(pid: int, port: int) -> bool:
    listening = {s.inode for s in probes.tcp_sockets(pid, port=port) if s.state == "LISTEN"}
    return bool(probes.socket_inodes(pid) & listening)


def _gone(pid: int) -> bool:
    try:
        return probes.proc_stat(pid).dead
    except probes.ProcessGone:
        return True


def test_a_shell_wrapper_that_does_not_exec_leads_to_the_server_it_started(tmp_path):
    """``sh -c 'server; true'`` forks the server and waits: the server is the child, and it
    (not the shell) is probed and signalled."""
    # Exits 3 on SIGTERM: whether its status is read from its zombie or passed on by the shell
    # (`exit "$?"`), it is 3, so a 3 proves the signal reached the server and not the shell.
    exits_3 = "import signal, sys; signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))\n" + textwrap.dedent(LISTENER)
    with ServerProcess(_sh(f'{_python_line(exits_3)}; exit "$?"'), log_dir=tmp_path) as server:
        assert server.pid != server.root_pid
        assert _holds_listener(server.pid, server.port) and not _holds_listener(server.root_pid, server.port)
        assert set(server.tree_pids()) == {server.root_pid, server.pid}
        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 3
        assert server.process.wait(10) == 3
    assert not server.running()


def test_a_wrapper_on_a_fixed_port_is_ready_once_its_child_listens(tmp_path):
    port = free_port()
    child = f"import socket, time; s = socket.create_server(('127.0.0.1', {port})); time.sleep(60)"
    with ServerProcess(_sh(f"{_python_line(child)}; true"), port=port, log_dir=tmp_path) as server:
        assert server.pid != server.root_pid and _holds_listener(server.pid, port)
        server_pid, root_pid = server.pid, server.root_pid
    assert _gone(server_pid) and _gone(root_pid)


# Forks twice with a setsid() between (the classic daemon), the daemon listens, the launcher
# and the middle process exit at once: nothing of it is left in the started process's tree.
DAEMON = """
    import os, socket, time
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    listener = socket.create_server(("127.0.0.1", 0))
    print("listening on 127.0.0.1:%d" % listener.getsockname()[1], flush=True)
    time.sleep(60)
"""


def test_a_daemonizing_launcher_is_still_found_and_killed(tmp_path):
    with ServerProcess(python(DAEMON), log_dir=tmp_path) as server:
        assert server.process.wait(10) == 0  # the launcher is gone
        daemon = server.pid
        assert daemon != server.root_pid and _holds_listener(daemon, server.port)
        assert server.tree_pids() == [daemon] and server.running()
    assert _gone(daemon), "the daemon outlived stop()"


# The server is a child its parent never waits for: once it exits it is a zombie.
NEGLECTFUL_PARENT = """
    import os, signal, socket, time
    if os.fork() == 0:
        listener = socket.create_server(("127.0.0.1", 0))
        print("listening on 127.0.0.1:%d" % listener.getsockname()[1], flush=True)
        signal.signal(signal.SIGUSR1, lambda *_: os.abort())
        time.sleep(60)
    time.sleep(60)
"""


def test_a_zombie_server_is_dead_and_its_signal_is_named(tmp_path):
    with ServerProcess(python(NEGLECTFUL_PARENT), log_dir=tmp_path) as server:
        assert server.running()
        server.send_signal(signal.SIGUSR1)
        status = server.wait(10)
        assert status == -signal.SIGABRT and not server.running()
        assert describe_exit(status) == "was killed by SIGABRT"
        assert evidence.snapshot(server.pid, server.port) == {"alive": False}  # not "0 fds"
        assert server.process.poll() is None  # the parent lives on; only the server died


# The server ends its main thread with pthread_exit() while another thread lives on (a C
# idiom): /proc/PID shows a zombie with no fds and no memory, but the process serves on.
MAIN_THREAD_EXITS = """
    import ctypes, socket, threading, time
    listener = socket.create_server(("127.0.0.1", 0))
    print("listening on 127.0.0.1:%d" % listener.getsockname()[1], flush=True)
    threading.Thread(target=time.sleep, args=(60,)).start()
    ctypes.CDLL(None).pthread_exit(None)
"""


def test_a_server_whose_main_thread_exited_alone_runs_and_is_read_through_another(tmp_path):
    with ServerProcess(python(MAIN_THREAD_EXITS), log_dir=tmp_path) as server:
        pid = server.pid
        assert _within(5, lambda: probes.proc_stat(pid).state == "Z")
        assert server.running() and server.tree_pids() == [pid]
        snapshot = evidence.snapshot(pid, server.port)
        assert snapshot["alive"] and snapshot["sockets"] == 1 and snapshot["rss"] > 0, snapshot
        assert snapshot["tcp"] == {"LISTEN": 1}
        assert evidence.fd_count(pid) >= 4  # stdin, stdout, stderr and the listener
    assert _gone(pid), "stop() left it running"


def test_a_stream_past_its_cap_keeps_the_first_and_last_mib(tmp_path):
    """A program that floods stderr leaves 2 MiB and a line saying how much was cut."""
    flood = """
        import sys
        sys.stderr.write("FIRST" + "x" * (5 << 20) + "LAST")
        sys.stderr.flush()
        print("listening on 127.0.0.1:9", flush=True)
        import time; time.sleep(60)
    """
    with ServerProcess(python(flood), log_dir=tmp_path) as server:
        pass
    text = (tmp_path / "stderr.txt").read_text()
    assert text.startswith("FIRST") and text.endswith("LAST")
    assert f"{(5 << 20) + 9 - (2 << 20):,} bytes cut" in text
    assert len(text) < (2 << 20) + 200
    assert server.stderr_text().endswith("LAST")


def test_stdout_is_line_buffered_so_a_killed_programs_lines_survive(tmp_path):
    """A C-style program (stdio full buffering into a pipe) killed by SIGKILL: with
    ``stdbuf -oL`` its lines were written out as they were printed."""
    if not shutil.which("stdbuf") or not shutil.which("awk"):
        pytest.skip("needs stdbuf and awk")
    # awk's print goes through C stdio: fully buffered into a pipe unless stdbuf says otherwise.
    program = ["sh", "-c", "echo | awk '{ print \"listening on 127.0.0.1:9\"; print \"c log line\"; "
               "system(\"kill -9 $PPID; sleep 60\") }'; sleep 60"]
    with ServerProcess(program, log_dir=tmp_path) as server:
        assert "c log line" in server.stdout_text()


# A prefork server: the master listens and forks workers that watch the listener in their own
# epoll sets; the master only waits. It announces itself once both workers are registered.
PREFORK = """
    import os, select, socket, time
    listener = socket.create_server(("127.0.0.1", 0))
    ready_read, ready_write = os.pipe()
    for _ in range(2):
        if os.fork() == 0:
            epoll = select.epoll()
            epoll.register(listener.fileno(), select.EPOLLIN)
            os.write(ready_write, b"r")
            time.sleep(60)
    assert os.read(ready_read, 1) and os.read(ready_read, 1)
    print("listening on 127.0.0.1:%d" % listener.getsockname()[1], flush=True)
    time.sleep(60)
"""


def test_of_a_prefork_server_the_worker_that_watches_the_listener_is_probed(tmp_path):
    with ServerProcess(python(PREFORK), log_dir=tmp_path) as server:
        tree = server.tree_pids()
        assert len(tree) == 3 and server.pid != server.root_pid and server.pid in tree
        assert probes.proc_stat(server.pid).ppid == server.root_pid
        assert probes.epoll_registrations(server.pid), "the master holds no epoll: not the one probed"
    assert all(_gone(pid) for pid in tree)


def test_a_server_built_with_addresssanitizer_starts_under_stdbuf(tmp_path):
    """stdbuf preloads a library; ASan aborts unless its runtime comes first, unless told not
    to check. Without that, a student's -fsanitize=address build would never start."""
    if not shutil.which("stdbuf") or not shutil.which("gcc"):
        pytest.skip("needs stdbuf and gcc")
    source = tmp_path / "server.c"
    source.write_text('#include <stdio.h>\n#include <unistd.h>\n'
                      'int main(void) { printf("listening on 127.0.0.1:9\\n"); sleep(60); return 0; }\n')
    built = subprocess.run(["gcc", "-fsanitize=address", "-o", str(tmp_path / "server"), str(source)],
                           capture_output=True, text=True, timeout=120)
    if built.returncode != 0:
        pytest.skip(f"no AddressSanitizer here: {built.stderr[-200:]}")
    with ServerProcess([str(tmp_path / "server")], log_dir=tmp_path / "logs") as server:
        assert server.running() and "ASan runtime" not in server.stderr_text()


def test_freeze_stops_the_whole_tree_and_thaw_resumes_it(tmp_path):
    with ServerProcess(_sh(f"{_python_line(LISTENER)}; true"), log_dir=tmp_path) as server:
        tree = server.tree_pids()
        assert server.freeze()  # it returns once every thread has stopped, not when kill() does
        assert all(set(probes.thread_states(pid)) == {"T"} for pid in tree)
        assert _within(5, lambda: all(probes.proc_stat(pid).state == "T" for pid in tree))
        assert server.running()  # stopped is not dead
        server.thaw()
        assert _within(5, lambda: all(probes.proc_stat(pid).state != "T" for pid in tree))


def _within(seconds: float, condition) -> bool:
    """Whether ``condition()`` holds within ``seconds`` (signals are delivered asynchronously)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


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
