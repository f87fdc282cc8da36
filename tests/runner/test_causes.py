"""Servers nobody here wrote look like these: a launcher in front, a daemon, a crash, blocking
sockets. The grader must grade the server behind a wrapper or a daemonizing launcher exactly as
it grades the server run directly (and leave nothing running), and must name the first cause on
every item a cause breaks (tests/faulty/causes.py): the right line and the right hint.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import pytest

from lab import probes
from lab.runner.program import Program
from lab.runner.run import grade_program

FAULTY = Path(__file__).resolve().parents[1] / "faulty"


def _load_causes() -> dict:
    spec = importlib.util.spec_from_file_location("faulty_causes", FAULTY / "causes.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module.CAUSES


CAUSES = _load_causes()
REFERENCE = [sys.executable, "-m", "lab", "serve"]


def _scorecard(report) -> str:
    return "\n".join(f"{r.id}: {r.outcome.value}: {r.evidence} [cause {r.cause}] hint: {r.hint}"
                     for r in report.results.values())


def _ports_listened(run_dir: Path) -> set[int]:
    """The ports the servers announced in a run's logs."""
    return {int(port) for log in run_dir.rglob("stdout.txt")
            for port in re.findall(r"listening on \S+:(\d+)", log.read_text())}


def _still_listening(ports: set[int]) -> set[int]:
    return {s.local_port for s in probes.tcp_sockets() if s.state == "LISTEN" and s.local_port in ports}


# Items read from /proc (fds, epoll registrations, O_NONBLOCK) plus one echo: a grader that
# probes the launcher sees no socket and no epoll and fails them.
PROC_ITEMS = ("edge.nonblocking", "edge.epollet", "cleanup.concurrent_clients")


@pytest.mark.parametrize("launch", [
    # tests/test_process.py checks the same in seconds; the grade costs a 1,000-client burst.
    pytest.param(lambda argv: ["sh", "-c", f"{shlex.join(argv)}; true"], id="sh-c-without-exec",
                 marks=pytest.mark.slow),
    pytest.param(lambda argv: [sys.executable, str(FAULTY / "daemonize.py"), *argv], id="daemonizing-launcher"),
])
def test_a_server_behind_a_launcher_is_graded_as_itself_and_stopped(launch, tmp_path):
    program = Program.command(launch([*REFERENCE, "edge", "--port", "{port}"]), kind="edge", name="launched")
    report = grade_program(program, only=PROC_ITEMS, results_dir=tmp_path)
    assert report.failed_ids() == set(), _scorecard(report)
    loaded = report.observations["edge"]["burst-connects"]["loaded"]
    assert loaded["epoll_fds"] == 1 and loaded["clients_et"] == 1000
    ports = _ports_listened(report.run_dir)
    assert ports and not _still_listening(ports), "the server outlived its grade"


def test_a_wrapper_passes_sigterm_on_to_the_server_it_runs(tmp_path):
    argv = ["sh", "-c", shlex.join([*REFERENCE, "graceful", "--port", "{port}", "--drain-timeout", "5s"])
            + '; exit "$?"']
    program = Program.command(argv, kind="graceful", name="wrapped", drain_timeout=5.0)
    report = grade_program(program, only=("bonus.graceful_shutdown",), results_dir=tmp_path)
    assert report.failed_ids() == set(), _scorecard(report)


def _cause_target(name: str) -> Program:
    argv = [sys.executable, str(FAULTY / "causes.py"), "--fault", name, "--port", "{port}"]
    return Program.command(argv, kind=CAUSES[name].kind, name=name)


# For each cause: words its line or hint must hold, and the wrong cause it must not be given.
NAMED = {
    "unregister-after-close": ("OSError: [Errno 9] Bad file descriptor", "ran out of fds"),
    "blocking-accepted": ("O_NONBLOCK", "cap the per-connection output buffer"),
}


# blocking-accepted waits out a stalled echo (about 7 s): the slow tier's rounds below cover
# it, so the quick tier stays under a minute.
QUICK_CAUSES = sorted(set(CAUSES) - {"blocking-accepted"})


@pytest.mark.parametrize("name", QUICK_CAUSES)
def test_a_fault_is_named_by_its_first_cause(name, tmp_path):
    report = grade_program(_cause_target(name), only=(CAUSES[name].shown_on,), results_dir=tmp_path)
    _assert_named(name, report)


def _assert_named(name: str, report) -> None:
    fault = CAUSES[name]
    result = report.results[fault.shown_on]
    assert not result.passed and result.cause == fault.cause, _scorecard(report)
    assert result.cause_line in result.evidence
    said, never = NAMED[name]
    assert said in result.cause_line + result.hint, _scorecard(report)
    assert never not in result.evidence + result.hint, _scorecard(report)


def test_every_cause_fault_has_its_words():
    assert set(NAMED) == set(CAUSES)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CAUSES))
def test_a_cause_is_named_on_every_round(name, tmp_path):
    fault = CAUSES[name]
    report = grade_program(_cause_target(name), only=(fault.shown_on,), results_dir=tmp_path, repeat=3)
    result = report.results[fault.shown_on]
    assert not result.flaky and result.runs == ("FAIL",) * 3, _scorecard(report)
    _assert_named(name, report)
