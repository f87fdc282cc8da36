"""What the bench measures: the lab's servers, the baselines, any command; and how it watches
them while the client runs.

Targets are data (:data:`TARGETS`): a name, the command that starts it, and whether it keeps
the lab's counters (``--stats-file`` + SIGUSR1). Every target is started fresh for each
measured run with :class:`lab.process.ServerProcess`, which also stops it whatever happens.

What the bench reads from a running target, and where from:

- CPU time: exact on-CPU nanoseconds from ``/proc/PID/task/*/schedstat`` (every thread),
  sampled right before and right after the measured window; and the user/system split from
  ``/proc/PID/stat`` through :func:`lab.probes.cpu_times`. The kernel attributes whole clock
  ticks (10 ms at the usual 100 Hz) to user or system mode by sampling, so the split is a
  proportion estimated from a few hundred samples per second, while the total is exact.
- resident memory: ``/proc/PID/status`` (:func:`lab.probes.rss_bytes`), read after the measured
  window while every connection is still open.
- the lab servers' own counters (epoll_wait calls, events, recv/send calls, EAGAINs), asked for
  with SIGUSR1 before and after the window; the difference is what the window cost.
- with ``--strace``: ``strace -c -f -p PID`` attached for the measured window only, the
  independent syscall count the assignment suggests. ptrace slows every syscall down a lot, so
  a traced run's timing is never mixed with the untraced repeats.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lab import probes
from lab.bench.pinning import running_on
from lab.errors import UsageError, describe_exit
from lab.host import free_port
from lab.process import ServerProcess, request_stats

PYTHON = sys.executable
STRACE_ATTACH_TIMEOUT = 10.0


@dataclass(slots=True, frozen=True)
class Target:
    name: str
    argv: tuple[str, ...]  # "{port}" and "{stats_file}" are filled in at start
    counters: bool = False  # speaks the lab's --stats-file / SIGUSR1 protocol
    fixed_port: bool = False  # the bench picks the port ({port} in a --cmd)
    needs_module: str | None = None  # skipped, with a note, when this import fails


def _lab_server(kind: str) -> Target:
    return Target(kind, (PYTHON, "-m", "lab", "serve", kind, "--port", "0",
                         "--stats-file", "{stats_file}"), counters=True)


def _baseline(kind: str, module: str | None = None) -> Target:
    return Target(kind, (PYTHON, "-m", "lab.bench.baselines", kind, "--port", "0"), needs_module=module)


TARGETS = {
    target.name: target
    for target in (
        _lab_server("level"),
        _lab_server("edge"),
        _lab_server("oneshot"),
        _baseline("asyncio-streams"),
        _baseline("asyncio-protocol"),
        _baseline("uvloop", module="uvloop"),
    )
}


def parse_target_names(text: str) -> list[str]:
    """``"level,edge"`` -> ["level", "edge"]; ``"all"`` -> every target; UsageError otherwise."""
    names = [word.strip() for word in text.split(",") if word.strip()]
    if names == ["all"]:
        return list(TARGETS)
    unknown = [name for name in names if name not in TARGETS]
    if unknown or not names:
        raise UsageError(f"unknown --target {', '.join(unknown) or repr(text)}: choose from "
                         f"{', '.join(TARGETS)} or all")
    if len(set(names)) != len(names):
        raise UsageError(f"--target names a server twice: {text}")
    return names


COMMAND_NAME = re.compile(r"^(?P<name>[A-Za-z][\w.+-]*)=(?P<command>.*)$", re.DOTALL)


def command_target(text: str, taken: set[str]) -> Target:
    """A ``--cmd`` target: ``[NAME=]COMMAND`` with ``{port}`` in it. Without a NAME it is
    named after its program (``srv``, ``srv#2``, ...). No shell runs it, so the bench watches
    the program itself (a wrapper script should ``exec`` its server)."""
    match = COMMAND_NAME.match(text.strip())
    name, command = (match["name"], match["command"]) if match else (None, text)
    try:
        argv = tuple(shlex.split(command))
    except ValueError as error:
        raise UsageError(f"--cmd {text!r}: {error}") from None
    if not argv:
        raise UsageError("--cmd needs a command, e.g. --cmd 'mine=./server --port {port}'")
    if not any("{port}" in word for word in argv):
        raise UsageError(f"--cmd {text!r} has no {{port}}: the bench must tell the server where to listen")
    if name is not None:
        if name in taken or name in TARGETS:
            raise UsageError(f"--cmd name {name!r} is already taken")
        return Target(name, argv, fixed_port=True)
    base = Path(argv[0]).name
    name, number = base, 2
    while name in taken:
        name, number = f"{base}#{number}", number + 1
    return Target(name, argv, fixed_port=True)


def unavailable(target: Target) -> str | None:
    """Why ``target`` cannot run here (a missing optional module), or None."""
    if target.needs_module:
        try:
            __import__(target.needs_module)
        except ImportError:
            return f"{target.name} skipped: {target.needs_module} is not installed (pip install 'epoll-lab[uvloop]')"
    return None


@dataclass(slots=True, frozen=True)
class Snapshot:
    cpu: probes.CpuTimes  # tick-sampled user/system seconds
    runtime: float | None  # exact on-CPU seconds of all threads (None without schedstat)
    counters: dict | None


def parse_schedstat(text: str) -> float:
    """Seconds on the CPU from a ``schedstat`` line: "run_ns wait_ns timeslices"."""
    return int(text.split()[0]) / 1e9


def runtime_seconds(pid: int) -> float | None:
    """Exact on-CPU seconds of every thread of ``pid`` so far, or None without schedstat.
    A thread that exits between listing and reading takes its time with it: the server's
    threads live as long as it does, so that does not happen inside a window."""
    total, found = 0.0, False
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        raise probes.ProcessGone(pid, f"/proc/{pid}/task") from None
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += parse_schedstat(f.read())
                found = True
        except FileNotFoundError:
            continue
    return total if found else None


class RunningTarget:
    """A started target. Context manager: the process is stopped and its files removed."""

    def __init__(self, target: Target, host: str = "127.0.0.1", ready_timeout: float = 15.0,
                 cpus: tuple[int, ...] | None = None) -> None:
        self.target = target
        self.cpus = cpus  # --pin: the server's CPUs, inherited by all its threads and children
        self._dir = tempfile.TemporaryDirectory(prefix=f"lab-bench-{target.name.replace('/', '_')}-")
        self.stats_file = Path(self._dir.name) / "stats.json"
        port = free_port(host) if target.fixed_port else None
        argv = [word.replace("{port}", str(port)).replace("{stats_file}", str(self.stats_file))
                for word in target.argv]
        self.server = ServerProcess(argv, port=port, host=host, log_dir=Path(self._dir.name) / "logs",
                                    ready_timeout=ready_timeout)

    def __enter__(self) -> RunningTarget:
        try:
            with running_on(self.cpus):  # fork + exec inherit the mask: see pinning.py
                self.server.start()
            self.server.wait_listening()
        except BaseException:
            self.server.close()
            self._dir.cleanup()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.close()
        self._dir.cleanup()

    @property
    def address(self) -> tuple[str, int]:
        return self.server.host, self.server.port

    def snapshot(self) -> Snapshot:
        counters = request_stats(self.server, self.stats_file) if self.target.counters else None
        return Snapshot(probes.cpu_times(self.server.pid), runtime_seconds(self.server.pid), counters)

    def rss_bytes(self) -> int:
        return probes.rss_bytes(probes.live_task(self.server.pid))

    def check_alive(self) -> None:
        status = self.server.wait(0)
        if status is not None:
            raise UsageError(f"{self.target.name} {describe_exit(status)} during the run; "
                             f"stderr ends: {self.server.stderr_text()[-500:]}")


# -- strace ----------------------------------------------------------------------------------

STRACE_LINE = re.compile(
    r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(?P<calls>\d+)\s+(?:(?P<errors>\d+)\s+)?(?P<name>\w+)\s*$"
)


def parse_strace_summary(text: str) -> dict[str, dict[str, int]]:
    """``strace -c`` output -> {syscall: {"calls": N, "errors": E}}, without the total line."""
    table = {}
    for line in text.splitlines():
        match = STRACE_LINE.match(line)
        if match and match["name"] != "total":
            table[match["name"]] = {"calls": int(match["calls"]), "errors": int(match["errors"] or 0)}
    return table


class StraceAttach:
    """``strace -c -f -p PID`` for as long as the block runs; ``counts`` afterwards."""

    def __init__(self, pid: int) -> None:
        if shutil.which("strace") is None:
            raise UsageError("--strace needs strace (apt-get install strace)")
        self.pid = pid
        self._dir = tempfile.TemporaryDirectory(prefix="lab-bench-strace-")
        self.output = Path(self._dir.name) / "strace.txt"
        self.counts: dict[str, dict[str, int]] = {}
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> StraceAttach:
        self.process = subprocess.Popen(
            ["strace", "-c", "-f", "-p", str(self.pid), "-o", str(self.output)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        try:
            self._wait_attached()
        except BaseException:
            self._stop()
            self._dir.cleanup()
            raise
        return self

    def _wait_attached(self) -> None:
        # strace says "Process N attached" on stderr once ptrace holds the process.
        # poll(), not select(): with thousands of connections open the pipe's fd is > 1023.
        deadline = time.monotonic() + STRACE_ATTACH_TIMEOUT
        said = b""
        waiter = select.poll()
        waiter.register(self.process.stderr, select.POLLIN)
        while b"attached" not in said:
            left = deadline - time.monotonic()
            if left <= 0 or self.process.poll() is not None:
                raise UsageError(f"strace could not attach to {self.pid}: "
                                 f"{said.decode(errors='replace').strip() or 'no answer'}")
            if waiter.poll(left * 1000):
                said += self.process.stderr.read1(4096)

    def _stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # detach and write the summary
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process:
            self.process.stderr.close()

    def __exit__(self, *exc_info: object) -> None:
        self._stop()
        try:
            self.counts = parse_strace_summary(self.output.read_text())
        except FileNotFoundError:
            self.counts = {}
        self._dir.cleanup()
