"""Start a server under test, know when it listens, and always stop it.

Used by the tests, the scenario runner and the benchmark alike. The server runs in its own
session (so its whole process group can be signalled and killed), with stdout and stderr going
to files that outlive it. It counts as ready when it prints ``listening on HOST:PORT`` (the
lab's servers do) or, for any other program, when its known port accepts a connection.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from lab.errors import UsageError

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

    # -- life cycle --------------------------------------------------------------------
    def start(self) -> ServerProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        nofile = self.nofile

        def lower_fd_limit() -> None:  # runs in the child between fork and exec
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

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
                    preexec_fn=lower_fd_limit if nofile else None,
                )
            except OSError as error:
                raise StartError(f"cannot start {self.command!r}: {error.strerror}") from error
        return self

    def wait_listening(self) -> tuple[str, int]:
        """Block until the server listens; return (host, port). Raise StartError naming the
        cause (exited with status N, or silent past the deadline) and the end of its stderr."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + self.ready_timeout
        while True:
            match = LISTENING_LINE.search(self.stdout_text())
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                return self.host, self.port
            if self.port is not None and _accepts(self.host, self.port):
                return self.host, self.port
            if self.process.poll() is not None:
                raise StartError(
                    f"{self.command!r} exited with status {self.process.returncode} before "
                    f"listening{self._stderr_tail()}"
                )
            if time.monotonic() > deadline:
                where = f"on {self.host}:{self.port}" if self.port else "(no 'listening on HOST:PORT' line)"
                raise StartError(
                    f"{self.command!r} did not listen {where} within {self.ready_timeout:g} s; "
                    f"check that it binds the port it is given{self._stderr_tail()}"
                )
            try:  # sleeps, but wakes at once if the program exits
                self.process.wait(timeout=POLL_INTERVAL)
            except subprocess.TimeoutExpired:
                pass

    def send_signal(self, signum: int) -> None:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signum)

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

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


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
