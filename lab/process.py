"""Start a server under test, know when it listens, and always stop it.

Used by the tests, the scenario runner and the benchmark alike. The server runs in its own
session (so its whole process group can be signalled and killed), with stdout and stderr going
to files that outlive it. It counts as ready when it prints ``listening on HOST:PORT`` (the
lab's servers do) or, for any other program, when its known port accepts a connection.

A server never outlives the process that started it: ``stop()`` ends it on every way out of
Python (an exception, Ctrl-C, SIGTERM turned into an exception by the CLI), and for the ways
Python never sees (SIGKILL, a crash) the child asks the kernel for SIGKILL when its parent
dies (``PR_SET_PDEATHSIG``, set between fork and exec).

Clients must connect to the address the server listens on: a server bound to ``::1`` only is
not reachable at 127.0.0.1. So ``host`` becomes that address once the server is ready: the
announced one, or the one /proc/PID/net/tcp and tcp6 list as LISTEN on its port (a wildcard
bind, 0.0.0.0 or ``::``, is reached through loopback of the same family). When /proc shows no
listener (a port published from another network namespace), 127.0.0.1 is tried as before.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lab import cgroup, probes
from lab.errors import UsageError
from lab.executable import start_error
from lab.units import format_size

LISTENING_LINE = re.compile(r"listening on (\S+):(\d+)")
POLL_INTERVAL = 0.02


class StartError(UsageError):
    """The program under test could not be started or never listened."""


class ServerProcess:
    """One server process. Use as a context manager: it is ready inside the block and
    stopped (its process group killed if need be) when the block ends, whatever happens."""

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
        self._limits_at_start = cgroup.CgroupCounters()

    # -- life cycle --------------------------------------------------------------------
    def start(self) -> ServerProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._limits_at_start = cgroup.read_counters()
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            try:
                self.process = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    env=self.env,
                    cwd=self.cwd,
                    start_new_session=True,
                    preexec_fn=child_setup(self.nofile),
                )
            except OSError as error:
                reason = start_error(error, self.argv[0], self.cwd)
                raise StartError(f"cannot start {self.command!r}: {reason}") from error
            except subprocess.SubprocessError as error:  # only child_setup runs in the child
                import resource

                raise StartError(
                    f"cannot start {self.command!r}: setting its open-file limit to {self.nofile} failed "
                    f"(above the hard limit {resource.getrlimit(resource.RLIMIT_NOFILE)[1]}?)"
                ) from error
        return self

    def wait_listening(self) -> tuple[str, int]:
        """Block until the server listens; return (host, port). Raise StartError naming the
        cause (exited with status N, or silent past the deadline) and the end of its stderr."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + self.ready_timeout
        while True:
            match = LISTENING_LINE.search(self.stdout_text())
            if match:
                self.port = int(match.group(2))
                self.host = dial_address([match.group(1)]) or self._listener_address() or self.host
                return self.host, self.port
            if self.port is not None:
                host = self._listener_address() or self.host
                if _accepts(host, self.port):
                    self.host = host
                    return self.host, self.port
            if self.process.poll() is not None:
                cause = self.exit_cause()
                raise StartError(
                    f"{self.command!r} exited with status {self.process.returncode}"
                    f"{f' ({cause})' if cause else ''} before listening{self._stderr_tail()}"
                )
            if time.monotonic() > deadline:
                where = f"on {self.host}:{self.port}" if self.port else "(no 'listening on HOST:PORT' line)"
                cause = self.exit_cause()
                raise StartError(
                    f"{self.command!r} did not listen {where} within {self.ready_timeout:g} s"
                    f"{f' ({cause})' if cause else ''}; check that it binds the port it is given"
                    f"{self._stderr_tail()}"
                )
            try:  # sleeps, but wakes at once if the program exits
                self.process.wait(timeout=POLL_INTERVAL)
            except subprocess.TimeoutExpired:
                pass

    def exit_cause(self) -> str | None:
        """What a limit of the cgroup (a sandbox's memory or pids limit) did to the program
        since it started, in words ("killed: out of memory (limit 1 GiB)"), or None."""
        import resource

        assert self.process is not None
        returncode = self.process.poll()
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]  # what the program inherited
        if returncode == -signal.SIGXFSZ and limit != resource.RLIM_INFINITY:
            return f"killed: it wrote a file past the file size limit ({format_size(limit)})"
        return cgroup.kill_cause(self._limits_at_start, cgroup.read_counters(), returncode)

    def send_signal(self, signum: int) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def freeze(self) -> None:
        """SIGSTOP the process group: the kernel keeps queueing for it (connections in the
        backlog, bytes and FINs in socket buffers, signals) until ``thaw``."""
        self._signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_group(signal.SIGCONT)

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None if still running after ``timeout`` seconds."""
        assert self.process is not None
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL to the whole group after ``timeout``; returns the exit status.
        Safe to call more than once and on a process that already exited."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self._signal_group(signal.SIGTERM)
            if self.wait(timeout) is None:
                self._signal_group(signal.SIGKILL)
                self.process.wait()
        self._signal_group(signal.SIGKILL)  # children the program may have left behind
        return self.process.returncode

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

    # -- what it said ------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def command(self) -> str:
        return " ".join(self.argv)

    def stdout_text(self) -> str:
        return _read_text(self.stdout_path)

    def stderr_text(self) -> str:
        return _read_text(self.stderr_path)

    def _stderr_tail(self, lines: int = 5) -> str:
        tail = self.stderr_text().strip().splitlines()[-lines:]
        return "; stderr ends: " + " | ".join(tail) if tail else ""

    def _listener_address(self) -> str | None:
        """Where to connect to reach the LISTEN socket on our port, from /proc (None if
        there is none in the server's network namespace)."""
        try:
            sockets = probes.tcp_sockets(self.pid, port=self.port)
        except (probes.ProcessGone, ValueError):
            return None
        return dial_address([s.local_host for s in sockets if s.state == "LISTEN"])

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
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
