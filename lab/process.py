"""Start a server under test, know when it listens, find it in its process tree, always stop it.

Used by the tests, the scenario runner and the benchmark alike. The program runs in its own
session, with stdout and stderr captured (the first and last MiB of each, see lab/capture.py;
stdout line-buffered through ``stdbuf -oL`` when present, so a C server's log survives a kill).

The process started is often not the server: ``sh -c``, ``make run``, ``go run``, a prefork
master or a launcher that daemonizes stands in between. So the server is the process of the
started TREE that holds the listening socket (its inode, from /proc/net/tcp, among the tree's
socket fds), and ``pid`` names it. The tree is every process below the one started, plus the
daemons that escaped it: the grader makes itself a child subreaper, so a double-forked daemon
becomes the grader's own child, recognised by a token in its environment. Stopping signals the
whole tree (and the session and process group), so nothing is left behind.

The program counts as ready when it prints ``listening on HOST:PORT`` (the lab's servers do)
or, for any other program, when a process of its tree listens on its known port: read from
/proc, without a connection (which would show in the server's idle fds), and never fooled by
another program already listening there.

A server never outlives the process that started it: ``stop()`` ends it on every way out of
Python (an exception, Ctrl-C, SIGTERM turned into an exception by the CLI), and for the ways
Python never sees (SIGKILL, a crash) the child asks the kernel for SIGKILL when its parent
dies (``PR_SET_PDEATHSIG``, set between fork and exec).

Clients must connect to the address the server listens on: a server bound to ``::1`` only is
not reachable at 127.0.0.1. So ``host`` becomes that address once the server is ready: the
announced one, or the one its LISTEN socket has in /proc/net/tcp and tcp6 (a wildcard bind,
0.0.0.0 or ``::``, is reached through loopback of the same family). Two cases are ready when the
port accepts a connection instead, as the grader cannot see the listener's owner: no listener
in this network namespace at all (a port published from a container), or one that appeared
after the program started without being in its tree (a proxy such as docker-proxy).
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lab import cgroup, probes
from lab.capture import CappedCapture
from lab.errors import STATUS_UNKNOWN, UsageError, describe_exit
from lab.executable import start_error
from lab.units import format_size

LISTENING_LINE = re.compile(r"listening on (\S+):(\d+)")
POLL_INTERVAL = 0.02
# A wrapper (``sh -c 'server; true'``) exits right after the server it waits for; its status is
# taken as the server's when the server's own was collected by the wrapper.
WRAPPER_EXIT_GRACE = 1.0
# A listener outside the tree is tried (by connecting) only this long after the start, so the
# tree's own listener, which shows in /proc at once, is found without a connection.
UNSEEN_LISTENER_GRACE = 1.0
TOKEN_VARIABLE = "LAB_TARGET_TOKEN"
# A thread in uninterruptible sleep (D) stops only when it leaves it; past this, go on.
FREEZE_TIMEOUT = 2.0
# Thread states that run no more code: stopped, stopped by a tracer, exited.
STOPPED_STATES = frozenset("TtZX")
_tokens = itertools.count(1)
_subreaper = False


class StartError(UsageError):
    """The program under test could not be started or never listened."""


def become_subreaper() -> None:
    """Make this process the child subreaper of everything it starts (once): orphans below it
    (a daemon's double fork) are re-parented here instead of to init, so they stay findable."""
    global _subreaper
    if not _subreaper:
        from lab import linux  # Linux-only: loaded when a process is started

        linux.set_child_subreaper()
        _subreaper = True


def line_buffered(argv: list[str], cwd: str | Path | None) -> list[str]:
    """``stdbuf -oL argv...`` when stdbuf exists and the program is a native ELF executable:
    stdbuf works on C stdio, and put in front of anything else (a missing program, a binary
    for another system, a script with a broken #! line) it would turn the kernel's clear
    refusal into an exit status 127."""
    from lab.executable import describe, host_arch, read_header

    stdbuf = shutil.which("stdbuf")
    program = argv[0]
    path = os.path.join(cwd or ".", program) if "/" in program else shutil.which(program)
    header = read_header(path) if path and os.access(path, os.X_OK) else None
    native = header is not None and (found := describe(header)).format == "elf" and found.arch == host_arch()
    return [stdbuf, "-oL", *argv] if stdbuf and native else list(argv)


class ServerProcess:
    """One server under test. Use as a context manager: it is ready inside the block and
    stopped (its whole tree killed if need be) when the block ends, whatever happens."""

    def __init__(
        self,
        argv: list[str],
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        log_dir: Path | None = None,
        nofile: int | None = None,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        ready_timeout: float = 15.0,
    ) -> None:
        self.argv = list(argv)
        self.host = host
        self.port = port
        self.nofile = nofile
        self.env = env
        self.cwd = cwd
        self.ready_timeout = ready_timeout
        self._tempdir = None if log_dir else tempfile.TemporaryDirectory(prefix="lab-target-")
        self.log_dir = Path(log_dir or self._tempdir.name)
        self.stdout_path = self.log_dir / "stdout.txt"
        self.stderr_path = self.log_dir / "stderr.txt"
        self.process: subprocess.Popen | None = None
        self.token = f"{os.getpid()}-{next(_tokens)}-{secrets.token_hex(4)}"
        self.server_pid: int | None = None  # the listener's owner, once found
        self._server_status: int | None = None
        self._seen: set[int] = set()  # every pid ever found in the tree
        self._sessions: set[int] = set()  # and the sessions they were in
        self._captures: dict[str, CappedCapture] = {}
        self._listeners_before: set[int] = set()
        self._started_at = 0.0
        self._limits_at_start = cgroup.CgroupCounters()

    # -- life cycle --------------------------------------------------------------------
    def start(self) -> ServerProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        become_subreaper()
        # Whatever listens on a fixed port before the program starts is not the program.
        self._listeners_before = {s.inode for s in self._listeners(self.port)} if self.port else set()
        self._started_at = time.monotonic()
        self._limits_at_start = cgroup.read_counters()
        env = dict(os.environ if self.env is None else self.env)
        env[TOKEN_VARIABLE] = self.token
        # stdbuf works by LD_PRELOAD, and AddressSanitizer refuses to start unless its runtime
        # comes first: a server built with -fsanitize=address must still run.
        env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"), "verify_asan_link_order=0"]))
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        try:
            self.process = subprocess.Popen(
                line_buffered(self.argv, self.cwd),
                stdin=subprocess.DEVNULL,
                stdout=out_write,
                stderr=err_write,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=child_setup(self.nofile),
            )
        except OSError as error:
            for fd in (out_read, err_read):
                os.close(fd)
            reason = start_error(error, self.argv[0], self.cwd)
            raise StartError(f"cannot start {self.command!r}: {reason}") from error
        except subprocess.SubprocessError as error:  # only child_setup runs in the child
            import resource

            for fd in (out_read, err_read):
                os.close(fd)
            raise StartError(
                f"cannot start {self.command!r}: setting its open-file limit to {self.nofile} failed "
                f"(above the hard limit {resource.getrlimit(resource.RLIMIT_NOFILE)[1]}?)"
            ) from error
        finally:
            os.close(out_write)
            os.close(err_write)
        self._captures = {"stdout": CappedCapture(out_read, self.stdout_path),
                          "stderr": CappedCapture(err_read, self.stderr_path)}
        return self

    def wait_listening(self) -> tuple[str, int]:
        """Block until the server listens; return (host, port). Raise StartError naming the
        cause (exited with status N, the port held by another program, or silent past the
        deadline) and the end of its stderr."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + self.ready_timeout
        gone_once = False
        while True:
            match = LISTENING_LINE.search(self.stdout_text())
            if match:
                self.port = int(match.group(2))
                listeners = self._listeners(self.port)
                found = self._listener_owner(self.port, listeners)
                self.server_pid, hosts = found or (self.process.pid, [])
                self.host = (dial_address([match.group(1)]) or dial_address(hosts)
                             or dial_address([s.local_host for s in listeners]) or self.host)
                return self.host, self.port
            if self.port is not None:
                # One reading for both questions: a listener in it is already held by its
                # owner's fd (socket() comes before listen()), so "not in the tree" is no race.
                listeners = self._listeners(self.port)
                if found := self._listener_owner(self.port, listeners):
                    self.server_pid, hosts = found
                    self.host = dial_address(hosts) or self.host
                    return self.host, self.port
                if self._unseen_listener_accepts(listeners):
                    return self.host, self.port
            # A daemon's middle process may be between its exit and the daemon's adoption
            # for one scan: only a second empty scan in a row means the whole tree is gone.
            if self.process.poll() is not None and not self.tree_pids():
                if gone_once:
                    cause = self.exit_cause()
                    raise StartError(
                        f"{self.command!r} {describe_exit(self.process.returncode)}"
                        f"{f' ({cause})' if cause else ''} before listening"
                        f"{self._foreign_listener()}{self._stderr_tail()}"
                    )
                gone_once = True
            else:
                gone_once = False
            if time.monotonic() > deadline:
                where = f"on {self.host}:{self.port}" if self.port else "(no 'listening on HOST:PORT' line)"
                cause = self.exit_cause()
                raise StartError(
                    f"{self.command!r} did not listen {where} within {self.ready_timeout:g} s"
                    f"{f' ({cause})' if cause else ''}; check that it binds the port it is given"
                    f"{self._foreign_listener()}{self._stderr_tail()}"
                )
            if self.process.returncode is not None:  # a daemon's launcher exited: wait for it
                time.sleep(POLL_INTERVAL)
                continue
            try:  # sleeps, but wakes at once if the program exits
                self.process.wait(timeout=POLL_INTERVAL)
            except subprocess.TimeoutExpired:
                pass

    def exit_cause(self) -> str | None:
        """What a limit of the cgroup (a sandbox's memory or pids limit) did to the program
        since it started, in words ("killed: out of memory (limit 1 GiB)"), or None."""
        import resource

        assert self.process is not None
        returncode = self.poll()  # the server's, which may not be the process started
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]  # what the program inherited
        if returncode == -signal.SIGXFSZ and limit != resource.RLIM_INFINITY:
            return f"killed: it wrote a file past the file size limit ({format_size(limit)})"
        return cgroup.kill_cause(self._limits_at_start, cgroup.read_counters(), returncode)

    def send_signal(self, signum: int) -> None:
        """Signal the server (the listener's owner), not its launcher."""
        assert self.process is not None
        if self.pid == self.process.pid:
            if self.process.poll() is None:
                self.process.send_signal(signum)
        elif self.running():
            _kill(self.pid, signum)

    def freeze(self) -> bool:
        """SIGSTOP the whole tree: the kernel keeps queueing for it (connections in the
        backlog, bytes and FINs in socket buffers, signals) until ``thaw``. Waits until every
        thread has stopped: SIGSTOP takes effect when a thread next runs, and a thread woken
        in epoll_wait() by it still returns the events that arrived before it got the CPU.
        False when some thread was still running after FREEZE_TIMEOUT."""
        pids = self.tree_pids()
        self._signal_group(signal.SIGSTOP, pids)
        deadline = time.monotonic() + FREEZE_TIMEOUT
        while not all(_stopped(pid) for pid in pids):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True

    def thaw(self) -> None:
        self._signal_group(signal.SIGCONT)

    def running(self) -> bool:
        """Whether the server still runs (a zombie does not)."""
        return self.poll() is None

    def poll(self) -> int | None:
        """The server's exit status once it is dead (as subprocess gives it: -N for killed by
        signal N), None while it runs."""
        assert self.process is not None
        if self.pid == self.process.pid:
            return self.process.poll()
        if self._server_status is not None:
            return self._server_status
        self._reap_adopted()
        if self._server_status is not None:
            return self._server_status
        try:
            stat = probes.proc_stat(self.pid)
        except probes.ProcessGone:
            stat = None
        if stat is not None and not stat.dead:
            return None
        if stat is not None and stat.exit_code is not None and stat.ppid != os.getpid():
            self._server_status = os.waitstatus_to_exitcode(stat.exit_code)  # caught before its parent reaped it
        else:  # its parent (a wrapper) collected the status: the wrapper's exit passes it on
            try:
                self._server_status = self.process.wait(WRAPPER_EXIT_GRACE)
            except subprocess.TimeoutExpired:
                self._server_status = STATUS_UNKNOWN
        return self._server_status

    def wait(self, timeout: float) -> int | None:
        """The server's exit status, or None if still running after ``timeout`` seconds."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while (status := self.poll()) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if self.pid == self.process.pid:
                try:
                    return self.process.wait(timeout=left)
                except subprocess.TimeoutExpired:
                    return None
            time.sleep(min(POLL_INTERVAL, left))
        return status

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM to the server and its whole tree, then SIGKILL after ``timeout``; returns
        the server's exit status. Safe to call more than once and on a process that exited."""
        if self.process is None:
            return 0
        # Each scan of the tree reads every process's stat: one scan serves the signals after it.
        if pids := self.tree_pids():
            self._signal_group(signal.SIGTERM, pids)
            self._signal_group(signal.SIGCONT, pids)  # a server frozen by a scenario must see it
            deadline = time.monotonic() + timeout
            while (pids := self.tree_pids()) and time.monotonic() < deadline:
                time.sleep(POLL_INTERVAL)
        for _ in range(10):  # children forked while we kill are killed next round
            self._signal_group(signal.SIGKILL, pids)
            if not (pids := self.tree_pids()):
                break
            time.sleep(POLL_INTERVAL)
        self.process.wait()
        self._reap_adopted()
        status = self.poll()
        for capture in self._captures.values():
            capture.close()
        return status

    def close(self) -> None:
        self.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> ServerProcess:
        try:
            self.start()
            self.wait_listening()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the tree --------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        """The server: the process of the tree that owns the listening socket (the started
        process itself until the listener is found)."""
        assert self.process is not None
        return self.server_pid or self.process.pid

    @property
    def root_pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def tree_pids(self) -> list[int]:
        """The live processes of the tree: the one started, everything below it, and the
        daemons that left it (adopted by this subreaper, carrying this server's token)."""
        assert self.process is not None
        table = probes.process_table()
        me, entry = os.getpid(), f"{TOKEN_VARIABLE}={self.token}"
        adopted = [pid for pid, stat in table.items()
                   if stat.ppid == me and pid != self.process.pid and not stat.dead
                   and (pid in self._seen or probes.environ_has(pid, entry))]
        tree = probes.descendants(table, [self.process.pid, *adopted])
        self._seen |= tree
        self._sessions |= {table[pid].session for pid in tree}
        # Adopted processes that already exited (a daemon's middle process) are remembered
        # by their session, so _reap_adopted() collects them instead of leaving zombies.
        self._seen |= {pid for pid, stat in table.items()
                       if stat.ppid == me and stat.dead and stat.session in self._sessions}
        return sorted(pid for pid in tree if not table[pid].dead)

    def _listeners(self, port: int) -> list[probes.TcpSocket]:
        """The LISTEN sockets on ``port`` in this network namespace (the program's too)."""
        try:
            return [s for s in probes.tcp_sockets(os.getpid(), port=port) if s.state == "LISTEN" and s.inode]
        except (probes.ProcessGone, probes.ProbeFormatError):
            return []

    def _listener_owner(self, port: int, seen: list[probes.TcpSocket] | None = None) -> tuple[int, list[str]] | None:
        """The tree's process holding a socket that listens on ``port`` (of the listeners
        ``seen``, else read now), and the addresses its listeners are bound to; of several
        holders (a prefork server), the first that watches the listener in an epoll set."""
        listeners = {s.inode: s.local_host for s in (self._listeners(port) if seen is None else seen)}
        if not listeners:
            return None
        holders, watching = [], []
        for pid in self.tree_pids():
            try:
                view = probes.live_task(pid)  # a main thread may have left the others to serve
                held = probes.socket_inodes(view) & listeners.keys()
                if held:
                    holders.append((pid, held))
                    registrations = probes.epoll_registrations(view).values()
                    if any(target.inode in held for targets in registrations for target in targets):
                        watching.append((pid, held))
            except (probes.ProcessGone, probes.ProbeFormatError):
                continue
        if not (watching or holders):
            return None
        pid, held = (watching or holders)[0]
        return pid, [listeners[inode] for inode in held]

    def _unseen_listener_accepts(self, listeners: list[probes.TcpSocket]) -> bool:
        """Ready although none of ``listeners`` is in the tree: there is none at all in this
        network namespace (a port published from a container), or a new one that was not there
        when the program started (a proxy it asked for). One there before is another program's."""
        new = [s.local_host for s in listeners if s.inode not in self._listeners_before]
        if listeners and not new or time.monotonic() < self._started_at + UNSEEN_LISTENER_GRACE:
            return False
        host = dial_address(new) or self.host
        if not _accepts(host, self.port):
            return False
        if found := self._listener_owner(self.port):  # it was the tree's, listening just now
            self.server_pid, hosts = found
            host = dial_address(hosts) or host
        self.host = host
        return True

    def _foreign_listener(self) -> str:
        """Why a fixed port may never become ours: another program listens there."""
        if self.port is None or not self._listeners(self.port):
            return ""
        return (f"; port {self.port} is already in use (EADDRINUSE): another program, not this "
                f"command, listens on it; stop it or grade with another --port")

    def _signal_group(self, signum: int, pids: list[int] | None = None) -> None:
        """Signal the whole tree (``pids`` if just scanned), and the process group for members
        we may have missed."""
        for pid in self.tree_pids() if pids is None else pids:
            _kill(pid, signum)
        try:
            os.killpg(self.process.pid, signum)  # the session's group, members we missed
        except (ProcessLookupError, PermissionError):
            pass

    def _reap_adopted(self) -> None:
        """Collect the exit status of the tree's processes that became our children (the
        launcher having exited), so none is left a zombie and the server's status is known."""
        me = os.getpid()
        for pid in sorted(self._seen - {self.process.pid}):
            try:
                if probes.proc_stat(pid).ppid != me:
                    continue
                reaped, status = os.waitpid(pid, os.WNOHANG)
            except (probes.ProcessGone, ChildProcessError):
                continue
            if reaped and pid == self.server_pid:
                self._server_status = os.waitstatus_to_exitcode(status)

    # -- what it said ------------------------------------------------------------------
    @property
    def command(self) -> str:
        return " ".join(self.argv)

    def stdout_text(self) -> str:
        return self._text("stdout", self.stdout_path)

    def stderr_text(self) -> str:
        return self._text("stderr", self.stderr_path)

    def _text(self, stream: str, path: Path) -> str:
        capture = self._captures.get(stream)
        return capture.text() if capture is not None else _read_text(path)

    def _stderr_tail(self, lines: int = 5) -> str:
        tail = self.stderr_text().strip().splitlines()[-lines:]
        return "; stderr ends: " + " | ".join(tail) if tail else ""


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def child_setup(nofile: int | None = None) -> Callable[[], None]:
    """What a child of the lab does between fork and exec: die with its parent and, with
    ``nofile``, run under that open-file limit. (Linux-only modules load here, when a
    process is started, never on a host that only hands commands to the container.)"""
    import resource

    from lab import linux

    parent = os.getpid()

    def in_child() -> None:
        linux.set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the prctl: nobody will signal us
            os.kill(os.getpid(), signal.SIGKILL)
        if nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    return in_child


def request_stats(server: ServerProcess, stats_file: Path, timeout: float = 10.0) -> dict:
    """Ask a lab server (started with ``--stats-file``) for its counters with SIGUSR1 and
    return the fresh snapshot. Each snapshot carries a ``snapshot`` number, so an old file is
    never mistaken for the answer."""
    previous = read_stats(stats_file)
    before = previous.get("snapshot", 0) if previous else 0
    server.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = read_stats(stats_file)
        if stats and stats.get("snapshot", 0) > before:
            return stats
        if server.wait(POLL_INTERVAL) is not None:
            break
    raise TimeoutError(f"no fresh counters in {stats_file} within {timeout:g} s of SIGUSR1")


def read_stats(stats_file: Path) -> dict | None:
    """The last counters a lab server wrote (it replaces the file atomically), or None."""
    try:
        return json.loads(Path(stats_file).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def dial_address(listen_hosts: list[str]) -> str | None:
    """The address a client connects to, given the addresses a server listens on (IPv4 first,
    as before IPv6 was graded): a wildcard becomes the loopback address of its family, an
    IPv4-mapped one (``::ffff:127.0.0.1``) its IPv4 address. Host names are skipped: None
    when no address is left."""
    addresses = []
    for text in listen_hosts:
        try:
            address = ipaddress.ip_address(text.strip("[]"))
        except ValueError:
            continue
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_unspecified:
            address = ipaddress.ip_address("127.0.0.1" if address.version == 4 else "::1")
        addresses.append(address)
    addresses.sort(key=lambda address: address.version)
    return str(addresses[0]) if addresses else None


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _stopped(pid: int) -> bool:
    """Whether no thread of ``pid`` runs any more (or it is gone)."""
    try:
        return set(probes.thread_states(pid)) <= STOPPED_STATES
    except probes.ProcessGone:
        return True
