"""Submission files for ``lab grade``: one command per program of the assignment.

A submission is a TOML file; relative paths and commands run from the folder it is in::

    name = "alice"
    build = "zig build -Doptimize=ReleaseSafe"  # optional, run once before grading
    [level]                     # level_triggered_epoll
    cmd = "./zig-out/bin/level_triggered_epoll {port}"
    [edge]                      # edge_triggered_epoll
    cmd = "./zig-out/bin/edge_triggered_epoll {port}"
    [oneshot]                   # oneshot_epoll
    cmd = "./zig-out/bin/oneshot_epoll {port}"
    [timeout]                   # timeout_epoll
    cmd = "./zig-out/bin/timeout_epoll {port}"
    idle_timeout = "5s"         # what the server closes idle connections after
    tick = "1s"                 # how often its timerfd fires
    [signal]                    # signal_epoll
    cmd = "./zig-out/bin/signal_epoll {port}"
    drain_timeout = "10s"       # the longest it drains after SIGTERM
    [benchmark]                 # benchmark_epoll
    cmd = "./zig-out/bin/benchmark_epoll {host} {port} {connections} {requests}"
    server = "edge"             # the program it is run against (default edge)
    connections = 100           # default 100 ({results}: a folder for its own files)
    requests = 100              # requests per connection, default 100
    report = "PERFORMANCE.md"   # must hold a results table (default PERFORMANCE.md)
    timeout = "120s"

Every program may also set ``port = 8080`` when it cannot take ``{port}``, and
``ready_timeout = "30s"`` when it needs longer than 15 s to start listening (``lab grade
--ready-timeout`` changes that default; a program that sets its own keeps it). ``build`` runs in
the file's folder before grading (see ``lab.runner.build``: ``zig`` comes from PATH or from
the ``ziglang`` package). A program left
out scores 0 on its items, with that reason. Without a file, ``reference()`` is our own
submission: the five reference servers and ``lab bench``.
"""

from __future__ import annotations

import glob
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from lab.errors import UsageError
from lab.runner.build import BuildStep
from lab.runner.checklist import KINDS
from lab.runner.program import Program, split_command
from lab.units import parse_duration

# Section name in the file -> server kind (the assignment calls the graceful one signal_epoll).
PROGRAM_SECTIONS = {"level": "level", "edge": "edge", "oneshot": "oneshot", "timeout": "timeout",
                    "signal": "graceful"}
SERVER_FIELDS = {"cmd", "port", "idle_timeout", "tick", "drain_timeout", "ready_timeout"}
BENCHMARK_FIELDS = {"cmd", "server", "connections", "requests", "report", "timeout"}


class SubmissionError(UsageError):
    """A submission file that cannot be graded; the message names the file, section and field."""


@dataclass(slots=True, frozen=True)
class BenchmarkSpec:
    """The benchmark client and what it is run with. ``argv`` may hold {host}, {port},
    {connections}, {requests} and {results} (a folder for the benchmark's own files);
    ``report`` may hold {results} and a ``*`` pattern (see ``report_in``)."""

    argv: tuple[str, ...]
    server: str = "edge"
    connections: int = 100
    requests: int = 100
    report: Path = Path("PERFORMANCE.md")
    timeout: float = 120.0
    cwd: str | None = None

    def argv_for(self, host: str, port: int, results: Path) -> list[str]:
        values = {"host": host, "port": str(port), "connections": str(self.connections),
                  "requests": str(self.requests), "results": str(results)}
        words = []
        for word in self.argv:
            for key, value in values.items():
                word = word.replace("{" + key + "}", value)
            words.append(word)
        return words

    def report_in(self, results: Path) -> Path:
        """The report to read once the client has run with ``results`` as its folder: the
        last match when ``report`` is a pattern (or the pattern itself when none matches)."""
        report = Path(str(self.report).replace("{results}", str(results)))
        if "*" not in str(report):
            return report
        matches = sorted(glob.glob(str(report)))
        return Path(matches[-1]) if matches else report


@dataclass(slots=True, frozen=True)
class Submission:
    name: str
    programs: dict[str, Program]  # kind -> target
    benchmark: BenchmarkSpec | None
    build: BuildStep | None = None


def parse_submission(text: str, path: Path, *, ready_timeout: float | None = None) -> Submission:
    """Parse and check a submission file's text; errors name the file, section and field.
    ``ready_timeout``: for the programs whose section sets none (default 15 s)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SubmissionError(f"{path}: not valid TOML: {error}") from None
    return submission_from_data(data, path, ready_timeout=ready_timeout)


def submission_from_data(data: dict, path: Path, *, ready_timeout: float | None = None) -> Submission:
    """Check a submission file's parsed TOML (any tables, arrays and values TOML can hold)."""
    base = path.resolve().parent
    known = {"name", "build", *PROGRAM_SECTIONS, "benchmark"}
    for key in data:
        if key not in known:
            raise SubmissionError(f"{path}: unknown section {key!r}; known: {', '.join(sorted(known))}")
    programs = {}
    for section, kind in PROGRAM_SECTIONS.items():
        if section in data:
            programs[kind] = _server(path, section, kind, data[section], base, ready_timeout)
    benchmark = _benchmark(path, data["benchmark"], base) if "benchmark" in data else None
    if not programs and benchmark is None:
        raise SubmissionError(f"{path}: names no program; add [level], [edge], ... sections with cmd = '...'")
    build = _build(path, data["build"], base) if "build" in data else None
    return Submission(_name(path, data.get("name", path.stem)), programs, benchmark, build)


def load_submission(path: Path, *, ready_timeout: float | None = None) -> Submission:
    """Read and check a submission file (see :func:`parse_submission`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SubmissionError(f"{path}: cannot read the submission: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise SubmissionError(f"{path}: not UTF-8 text (byte {error.start}): is it a submission file?") from None
    except ValueError:  # a NUL byte in the path
        raise SubmissionError(f"{str(path)!r}: not a file name (it holds a NUL byte)") from None
    return parse_submission(text, path, ready_timeout=ready_timeout)


MAX_NAME = 100  # it becomes part of the results folder's name


def _name(path: Path, value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise SubmissionError(f"{path}: field 'name': expected a non-empty string of at most {MAX_NAME} "
                              f"characters (the student's name), got {value!r}")
    return value


def _table(path: Path, section: str, value: object, fields: set[str]) -> dict:
    where = f"{path}: [{section}]"
    if not isinstance(value, dict):
        raise SubmissionError(f"{where}: must be a table with cmd = '...'")
    for key in value:
        if key not in fields:
            raise SubmissionError(f"{where}: unknown field {key!r}; known: {', '.join(sorted(fields))}")
    if not isinstance(value.get("cmd"), str) or not value["cmd"].strip():
        raise SubmissionError(f"{where}: field 'cmd': the command line to run, e.g. cmd = './server {{port}}'")
    return value


def _seconds(path: Path, section: str, table: dict, name: str) -> float | None:
    if name not in table:
        return None
    try:
        return parse_duration(table[name])
    except ValueError as error:
        raise SubmissionError(f"{path}: [{section}] field {name!r}: {error}") from None


def _text(path: Path, section: str, table: dict, name: str, default: str) -> str:
    value = table.get(name, default)
    if not isinstance(value, str) or not value.strip():
        raise SubmissionError(f"{path}: [{section}] field {name!r}: expected a non-empty string, got {value!r}")
    return value


def _whole(path: Path, section: str, table: dict, name: str, default: int) -> int:
    value = table.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SubmissionError(f"{path}: [{section}] field {name!r}: expected a whole number >= 1, got {value!r}")
    return value


def _server(path: Path, section: str, kind: str, value: object, base: Path,
            default_ready_timeout: float | None) -> Program:
    table = _table(path, section, value, SERVER_FIELDS)
    port = _whole(path, section, table, "port", 0) if "port" in table else None
    idle_timeout = _seconds(path, section, table, "idle_timeout")
    tick = _seconds(path, section, table, "tick")
    drain_timeout = _seconds(path, section, table, "drain_timeout")
    ready_timeout = _seconds(path, section, table, "ready_timeout")
    if ready_timeout is None:  # the file's own value wins over the command line's default
        ready_timeout = default_ready_timeout
    try:
        return Program.command(table["cmd"], kind=kind, name=section, port=port, cwd=base,
                              idle_timeout=idle_timeout, tick=tick, drain_timeout=drain_timeout,
                              ready_timeout=ready_timeout)
    except UsageError as error:
        raise SubmissionError(f"{path}: [{section}]: {error}") from None


def _build(path: Path, value: object, base: Path) -> BuildStep:
    if not isinstance(value, str) or not value.strip():
        raise SubmissionError(f"{path}: field 'build': the command that builds the programs, "
                              "e.g. build = 'zig build -Doptimize=ReleaseSafe'")
    try:
        return BuildStep(split_command(value), base)
    except UsageError as error:
        raise SubmissionError(f"{path}: field 'build': {error}") from None


def _benchmark(path: Path, value: object, base: Path) -> BenchmarkSpec:
    table = _table(path, "benchmark", value, BENCHMARK_FIELDS)
    server = table.get("server", "edge")
    server_kind = PROGRAM_SECTIONS.get(server) if isinstance(server, str) else None
    if server_kind is None:
        known = ", ".join(PROGRAM_SECTIONS)
        raise SubmissionError(f"{path}: [benchmark] field 'server': one of {known}, got {server!r}")
    timeout = _seconds(path, "benchmark", table, "timeout")
    try:
        argv = split_command(table["cmd"])
    except UsageError as error:
        raise SubmissionError(f"{path}: [benchmark] field 'cmd': {error}") from None
    return BenchmarkSpec(
        argv=argv,
        server=server_kind,
        connections=_whole(path, "benchmark", table, "connections", 100),
        requests=_whole(path, "benchmark", table, "requests", 100),
        report=base / _text(path, "benchmark", table, "report", "PERFORMANCE.md"),
        timeout=timeout if timeout is not None else 120.0,
        cwd=str(base),
    )


def reference(ready_timeout: float | None = None) -> Submission:
    """Our own submission: the five reference servers and ``lab bench`` against the edge one
    (each server allowed ``ready_timeout`` seconds to listen, default 15).
    Its report is the one ``lab bench`` writes for this very run (``bench.md``, a results
    table), so the reference grades the same wherever the lab is installed."""
    programs = {kind: Program.builtin(kind) for kind in KINDS}
    if ready_timeout is not None:
        programs = {kind: program.with_ready_timeout(ready_timeout) for kind, program in programs.items()}
    bench = BenchmarkSpec(
        argv=(sys.executable, "-m", "lab", "bench", "{host}", "{port}", "{connections}", "{requests}",
              "--results", "{results}", "--no-plots"),
        server="edge",
        report=Path("{results}/bench-*/bench.md"),
    )
    return Submission("reference", programs, bench)
