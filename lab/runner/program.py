"""What is under test: one of our reference servers or any program, and how to start it.

A target is a command line in which ``{port}`` stands for the port to listen on. Our servers
get ``--port 0`` and announce the port they got (``listening on HOST:PORT``), so parallel runs
never collide. Any other program gets a port the kernel just handed out, and counts as ready
when a process of its tree listens there (``lab.process``: no connection is made, and another
program's listener does not count); if it exits before listening (the port was taken in the
meantime, a rare race with parallel runs) it is started again on a fresh port, twice at most.
A fixed ``--port`` is used as given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from lab.errors import UsageError
from lab.host import free_port
from lab.runner.checklist import KINDS
from lab.process import ServerProcess, StartError

PORT = "{port}"
FREE_PORT_ATTEMPTS = 3

# Our servers, tuned so a full grade takes seconds: a short idle timeout with a tick well
# under it, and a drain timeout the scenario can wait for.
BUILTIN_TIMING = {
    "timeout": (("--idle-timeout", "1s", "--tick", "250ms"), {"idle_timeout": 1.0, "tick": 0.25}),
    "graceful": (("--drain-timeout", "5s"), {"drain_timeout": 5.0}),
}


@dataclass(slots=True, frozen=True)
class Program:
    """A program to grade. ``kind`` says which checklist items apply (level, edge, oneshot,
    timeout, graceful); ``idle_timeout``, ``tick`` and ``drain_timeout`` are what the program
    was configured with, in seconds, for the timeout and graceful scenarios."""

    kind: str
    argv: tuple[str, ...]
    name: str
    port: int | None = None
    idle_timeout: float = 5.0
    tick: float = 1.0  # how often it checks for idle connections (its timerfd period)
    drain_timeout: float = 10.0
    cwd: str | None = None
    announces_port: bool = False  # prints "listening on HOST:PORT", so it can take port 0
    ready_timeout: float = 15.0  # how long it may take to start listening

    @classmethod
    def builtin(cls, kind: str, extra_args: tuple[str, ...] | list[str] = ()) -> Program:
        """Our reference server of that kind, as ``python -m lab serve KIND --port 0``."""
        _check_kind(kind)
        args, timing = BUILTIN_TIMING.get(kind, ((), {}))
        argv = (sys.executable, "-m", "lab", "serve", kind, "--port", PORT, *args, *extra_args)
        return cls(kind, argv, name=kind, announces_port=True, **timing)

    @classmethod
    def command(
        cls,
        command: str | list[str] | tuple[str, ...],
        *,
        kind: str,
        name: str | None = None,
        port: int | None = None,
        idle_timeout: float | None = None,
        tick: float | None = None,
        drain_timeout: float | None = None,
        cwd: str | Path | None = None,
        ready_timeout: float | None = None,
    ) -> Program:
        """Any program. ``command`` is an argv list or one shell-like string; it must contain
        ``{port}`` unless ``port`` fixes the port it listens on."""
        _check_kind(kind)
        argv = split_command(command)
        if port is None and not any(PORT in word for word in argv):
            raise UsageError(
                f"the command {shlex.join(argv)!r} has no {PORT}: put {PORT} where the program "
                "takes its port, or give --port N for a program with a fixed port"
            )
        if port is not None and not 1 <= port <= 65535:
            raise UsageError(f"--port must be from 1 to 65535, got {port}")
        timing = {}
        if ready_timeout is not None:
            timing["ready_timeout"] = _more_than_zero("the ready timeout", ready_timeout)
        if idle_timeout is not None:
            timing["idle_timeout"] = _more_than_zero("the idle timeout", idle_timeout)
        if tick is not None:
            timing["tick"] = _more_than_zero("the tick", tick)
        if drain_timeout is not None:
            timing["drain_timeout"] = float(drain_timeout)
        return cls(kind, argv, name=name or kind, port=port, cwd=str(cwd) if cwd else None, **timing)

    def with_ready_timeout(self, seconds: float) -> Program:
        """The same program, allowed ``seconds`` to start listening."""
        return dataclasses.replace(self, ready_timeout=_more_than_zero("the ready timeout", seconds))

    def argv_for(self, port: int) -> list[str]:
        return [word.replace(PORT, str(port)) for word in self.argv]

    @contextlib.contextmanager
    def running(self, log_dir: Path, nofile: int | None = None) -> Iterator[ServerProcess]:
        """Start the program, yield it listening, and stop it (its whole process tree) when
        the block ends, however it ends. Raises StartError when it cannot start or never
        listens."""
        server = self._start(log_dir, nofile)
        try:
            yield server
        finally:
            server.close()

    def _start(self, log_dir: Path, nofile: int | None) -> ServerProcess:
        attempts = 1 if (self.port or self.announces_port) else FREE_PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self.port or (0 if self.announces_port else free_port())
            server = ServerProcess(
                self.argv_for(port),
                port=port or None,
                log_dir=log_dir,
                nofile=nofile,
                cwd=self.cwd,
                ready_timeout=self.ready_timeout,
            )
            try:
                server.start()
                server.wait_listening()
                return server
            except StartError:
                exited = server.process is not None and server.process.poll() is not None
                server.close()
                if not exited or attempt == attempts:
                    raise
            except BaseException:
                server.close()
                raise
        raise AssertionError("unreachable: the last attempt raises")


def split_command(command: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The argv of a command given as one shell-like string or as a list; UsageError when it
    is empty, its quotes do not close, or a word holds a NUL byte (exec cannot pass one)."""
    try:
        argv = tuple(shlex.split(command) if isinstance(command, str) else command)
    except ValueError as error:  # shlex: "No closing quotation", "No escaped character"
        raise UsageError(f"cannot split the command {command!r} into words: {error}") from None
    if not argv:
        raise UsageError("the target command is empty")
    if any("\0" in word for word in argv):
        raise UsageError(f"the command {command!r} holds a NUL byte, which no program can receive")
    return argv


def _more_than_zero(what: str, seconds: float) -> float:
    """A period the scenarios divide or wait by: 0 s (or NaN) would make no sense of them."""
    if not seconds > 0:
        raise UsageError(f"{what} must be longer than 0 s, got {seconds:g} s")
    return float(seconds)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise UsageError(f"unknown server kind {kind!r}; one of {', '.join(KINDS)}")

