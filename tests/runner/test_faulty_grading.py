"""The grader catches each deliberately faulty server (tests/faulty/server.py) on exactly the
checklist items its fault breaks, with the outcome and the cause the table names, and passes
it on the other items it is graded on.

Quick tier: each fault graded once on the items it breaks only (``only``), which runs the
fewest scenarios. Slow tier: the same grade ten times (every run must give the same outcome and
cause: the races the fault lives on are fixed by the grader, not left to luck), and once with
control items, whose evidence comes from the same scenarios but which the fault must NOT
disturb (for example ``epollout-always`` must still pass ``cleanup.idle_cpu``: under EPOLLET
an armed EPOLLOUT does not spin). Items a fault cannot help breaking too are left out and
named in the case. The bonus kinds are graded on a single item, so their controls are the
reference servers graded on the same item, which must pass it.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.runner.checklist import items_for, select_items
from lab.runner.grading import Outcome
from lab.runner.program import BUILTIN_TIMING, Program
from lab.runner.run import grade_program, grade_submission
from lab.runner.submission import load_submission
from lab.process import ServerProcess

FAULTY_SERVER = Path(__file__).resolve().parents[1] / "faulty" / "server.py"
REPEAT = 10


def _load_faults() -> dict:
    """The FAULTS table of tests/faulty/server.py (a script, not a package)."""
    spec = importlib.util.spec_from_file_location("faulty_server", FAULTY_SERVER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module.FAULTS


FAULTS = _load_faults()


@dataclass(slots=True, frozen=True)
class Case:
    fault: str
    controls: tuple[str, ...] = ()  # slow tier: items (or sections) graded too, which must pass
    also_breaks: str = ""  # items left out of `controls` because this fault necessarily breaks them
    quick: bool = True  # graded once in the quick tier too (False: its scenarios take too long)


CASES = (
    Case("dies-on-reset", ("errors.abrupt_clients",),
         also_breaks="errors.fd_exhaustion, when its clients leave with echo unread (a reset)"),
    Case("epollout-always", ("edge.epollet", "cleanup.idle_cpu", "cleanup.fds_released"), quick=False),
    Case("sigterm-kills"),
    Case("never-closes", ("cleanup.concurrent_clients", "edge.epollet", "edge.epollout_control"),
         also_breaks="errors.fd_exhaustion (leaked fds never come back)", quick=False),
    Case("reads-once", ("edge.epollet",), quick=False,
         also_breaks="edge.write_buffering and edge.nonblocking (their 10 MiB streams stall); "
                     "edge.epollout_control is NOT EXERCISED (too little is read for output to wait)"),
    Case("reads-64k-once", ("edge.epollet",),
         also_breaks="edge.write_buffering (the end of a stream can be left unread)"),
    Case("accepts-once", ("edge.epollet",),
         also_breaks="cleanup.concurrent_clients and the others of burst-connects (the last of "
                     "1,000 connects waits in the backlog)"),
    Case("closes-on-hangup", ("errors.peer_reset",)),
    Case("no-backpressure", ("edge.write_buffering", "edge.epollout_control")),
    Case("blocking-sockets", ("edge",), quick=False),
    Case("drops-partial-sends", ("edge.drains", "cleanup.bounded_memory"),
         also_breaks="level.echoes when graded as level (the same SHA-256 evidence)", quick=False),
    Case("et-as-level", ("level",)),
    Case("oneshot-never-rearmed", also_breaks="cleanup.fds_released (a disarmed fd never sees its EOF)",
         quick=False),
    Case("timer-never-expires", quick=False),
    Case("drops-echo-on-sigterm"),
    Case("closes-with-unread-input"),
)
CASE_BY_FAULT = {case.fault: case for case in CASES}


def _target(fault: str) -> Program:
    """The faulty server, configured like the runner configures the reference of its kind
    (a short idle timeout, a short drain timeout), so the two are graded alike."""
    kind = FAULTS[fault].kind
    args, timing = BUILTIN_TIMING.get(kind, ((), {}))
    argv = [sys.executable, str(FAULTY_SERVER), "--fault", fault, "--port", "{port}", *args]
    return Program.command(argv, kind=kind, name=fault, **timing)


def _scorecard(report) -> str:
    return "\n".join(f"{r.id}: {r.outcome.value}: {r.evidence} (hint: {r.hint or r.remark})"
                     for r in report.results.values())


def _graded_ids(kind: str, only: tuple[str, ...]) -> set[str]:
    return {item.id for item in select_items(items_for(kind), only)}


def _check_broken(report, fault) -> None:
    """The broken items got the fault's outcome, and their words name its cause."""
    outcome = Outcome(fault.outcome)
    got = {item_id: report.results[item_id].outcome for item_id in fault.breaks}
    assert got == dict.fromkeys(fault.breaks, outcome), _scorecard(report)
    words = " ".join(f"{r.evidence} {r.hint} {r.remark}" for r in map(report.results.get, fault.breaks))
    assert fault.cause in words, _scorecard(report)
    for item_id in fault.breaks:
        result = report.results[item_id]
        assert result.hint or result.remark, result


def test_every_fault_has_a_case_and_breaks_items_of_its_kind():
    assert set(CASE_BY_FAULT) == set(FAULTS)
    for case in CASES:
        fault = FAULTS[case.fault]
        assert set(fault.breaks) <= _graded_ids(fault.kind, fault.breaks), case
        assert fault.outcome in {o.value for o in Outcome if o is not Outcome.PASS}
        for name in case.controls:  # a name that selects nothing for this kind would test nothing
            assert _graded_ids(fault.kind, (name,)), (case.fault, name)


@pytest.mark.parametrize("case", [pytest.param(case, id=case.fault, marks=[] if case.quick else [pytest.mark.slow])
                                  for case in CASES])
def test_faulty_server_gets_its_outcome_and_cause(case, tmp_path):
    fault = FAULTS[case.fault]
    report = grade_program(_target(case.fault), only=fault.breaks, results_dir=tmp_path)
    assert set(report.results) == set(fault.breaks)
    _check_broken(report, fault)


@pytest.mark.slow
@pytest.mark.parametrize("fault_name", sorted(FAULTS))
def test_faulty_server_gets_the_same_verdict_every_time(fault_name, tmp_path):
    """Ten runs, ten identical outcomes with the cause named: no flaky verdict."""
    fault = FAULTS[fault_name]
    for run in range(REPEAT):
        report = grade_program(_target(fault_name), only=fault.breaks, results_dir=tmp_path / str(run))
        _check_broken(report, fault)


@pytest.mark.slow
@pytest.mark.parametrize("case", [case for case in CASES if case.controls], ids=lambda case: case.fault)
def test_faulty_server_passes_its_controls(case, tmp_path):
    fault = FAULTS[case.fault]
    only = (*fault.breaks, *case.controls)
    report = grade_program(_target(case.fault), only=only, results_dir=tmp_path)
    assert set(report.results) == _graded_ids(fault.kind, only)
    not_graded = f"\n(not graded, as the fault breaks them too: {case.also_breaks})"
    broken = set(fault.breaks)
    assert {i for i, r in report.results.items() if r.outcome is not Outcome.PASS} == broken, \
        _scorecard(report) + not_graded
    _check_broken(report, fault)


BONUS_ITEMS = sorted({item for f in FAULTS.values() if f.kind not in ("level", "edge") for item in f.breaks})


@pytest.mark.slow
@pytest.mark.parametrize("item_id", BONUS_ITEMS)
def test_reference_passes_the_bonus_item_its_faulty_twins_fail(item_id, tmp_path):
    """The control: the same item, graded on the unmodified reference server, passes."""
    (kind,) = {f.kind for f in FAULTS.values() if item_id in f.breaks}
    report = grade_program(Program.builtin(kind), only=(item_id,), results_dir=tmp_path)
    assert report.failed_ids() == set(), _scorecard(report)
    assert report.passed_ids() == {item_id}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_every_faulty_server_starts_and_echoes_a_line(fault, tmp_path):
    """Quick guard for the overrides: they hook into the reference servers, so a refactor
    there shows up here in seconds instead of in the slow grading tier."""
    argv = [sys.executable, str(FAULTY_SERVER), "--fault", fault, "--port", "0"]
    with ServerProcess(argv, log_dir=tmp_path) as server:
        with socket.create_connection((server.host, server.port), timeout=10) as client:
            client.sendall(b"hello, epoll!\n")
            echoed = b""
            while not echoed.endswith(b"\n"):  # the socket timeout is the deadline
                chunk = client.recv(64)
                assert chunk, f"EOF after {echoed!r}"
                echoed += chunk
            assert echoed == b"hello, epoll!\n"
        assert server.wait(0) is None, server.stderr_text()
    assert f"fault {fault}:" in server.stderr_text()


def test_faulty_server_rejects_an_unknown_fault_with_status_2():
    result = subprocess.run(
        [sys.executable, str(FAULTY_SERVER), "--fault", "no-such-fault", "--port", "0"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr and "Traceback" not in result.stderr


FAULTY_BENCHMARK = FAULTY_SERVER.with_name("benchmark.py")


@pytest.mark.slow
def test_a_benchmark_that_only_prints_fails_every_time(tmp_path):
    """tests/faulty/benchmark.py --fault prints-only: "1 req/s" and no connection, ten times
    over (the quick tier's test_cli grades it once, beside the honest client)."""
    (tmp_path / "PERFORMANCE.md").write_text("| mode | req/s |\n|---|---|\n| edge | 1 |\n")
    path = tmp_path / "sub.toml"
    path.write_text(
        f'[edge]\ncmd = "{sys.executable} -m lab serve edge --port {{port}}"\n'
        f'[benchmark]\ncmd = "{sys.executable} {FAULTY_BENCHMARK} {{host}} {{port}} {{connections}} '
        '{requests} --fault prints-only"\n'
    )
    for run in range(REPEAT):
        report = grade_submission(load_submission(path), only=("bonus.benchmark",), results_dir=tmp_path / str(run))
        result = report.results["bonus.benchmark"]
        assert result.outcome is Outcome.FAIL, result.evidence
        assert "the lab saw no connection to the server" in result.evidence
