"""The grader catches each deliberately faulty server (tests/faulty/server.py) on exactly the
checklist item its fault breaks, and passes it on the other items it is graded on.

Each case grades one fault with ``only`` a few items: the one it breaks, plus items whose
evidence comes from the same scenarios but that the fault must NOT disturb (for example
``epollout-always`` must still pass ``cleanup.idle_cpu``: under EPOLLET an armed EPOLLOUT does
not spin, so only the /proc mask can convict it). Items a fault cannot help breaking too are
left out and named in the case (a server that leaks fds cannot recover from fd exhaustion).
The bonus kinds are graded on a single item, so their controls are the reference servers
graded on the same item, which must pass it.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.runner.program import Program
from lab.runner.run import grade_program
from lab.runner.checklist import items_for, select_items
from lab.runner.program import BUILTIN_TIMING
from lab.process import ServerProcess

FAULTY_SERVER = Path(__file__).resolve().parents[1] / "faulty" / "server.py"


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
    only: tuple[str, ...]  # the items graded: the broken one and the ones that must pass
    slow: bool = False
    also_breaks: str = ""  # items left out of `only` because this fault necessarily breaks them


# Quick or slow by what one grade costs on 2 shared cores (see /tmp/handoff/runner-probes.md):
# a fault that stalls a client costs the step's whole deadline.
CASES = (
    Case("dies-on-reset", ("errors.peer_reset", "errors.abrupt_clients"),
         also_breaks="errors.fd_exhaustion, when its clients leave with echo unread (a reset)"),
    Case("epollout-always", ("edge.epollout_control", "edge.epollet", "cleanup.idle_cpu",
                             "cleanup.fds_released"), slow=True),
    Case("sigterm-kills", ("bonus.graceful_shutdown",)),
    Case("never-closes", ("cleanup.fds_released", "cleanup.concurrent_clients", "edge.epollet",
                          "edge.epollout_control"), slow=True,
         also_breaks="errors.fd_exhaustion (leaked fds never come back)"),
    Case("reads-once", ("edge.drains", "edge.epollet", "edge.epollout_control"), slow=True,
         also_breaks="edge.write_buffering and edge.nonblocking (their 10 MiB streams stall)"),
    Case("blocking-sockets", ("edge",), slow=True),
    Case("drops-partial-sends", ("edge.write_buffering", "edge.epollout_control", "edge.drains",
                                 "cleanup.bounded_memory"), slow=True,
         also_breaks="level.echoes when graded as level (the same SHA-256 evidence)"),
    Case("oneshot-never-rearmed", ("bonus.oneshot",), slow=True,
         also_breaks="cleanup.fds_released (a disarmed fd never sees its EOF)"),
    Case("timer-never-expires", ("bonus.timeout",), slow=True),
)


def _param(case: Case):
    return pytest.param(case, id=case.fault, marks=[pytest.mark.slow] if case.slow else [])


def _target(fault: str) -> Program:
    """The faulty server, configured like the runner configures the reference of its kind
    (a short idle timeout, a short drain timeout), so the two are graded alike."""
    kind = FAULTS[fault].kind
    args, timing = BUILTIN_TIMING.get(kind, ((), {}))
    argv = [sys.executable, str(FAULTY_SERVER), "--fault", fault, "--port", "{port}", *args]
    return Program.command(argv, kind=kind, name=fault, **timing)


def _scorecard(report) -> str:
    return "\n".join(
        f"{r.id}: {'PASS' if r.passed else 'FAIL'}: {r.evidence}" for r in report.results.values()
    )


def _graded_ids(kind: str, only: tuple[str, ...]) -> set[str]:
    return {item.id for item in select_items(items_for(kind), only)}


def test_every_fault_has_a_case_and_breaks_an_item_of_its_kind():
    assert {case.fault for case in CASES} == set(FAULTS)
    for case in CASES:
        kind = FAULTS[case.fault].kind
        assert FAULTS[case.fault].breaks in _graded_ids(kind, case.only), case
        for name in case.only:  # a name that selects nothing for this kind would test nothing
            assert _graded_ids(kind, (name,)), (case.fault, name)


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_faulty_server_fails_exactly_its_item(case, tmp_path):
    fault = FAULTS[case.fault]
    report = grade_program(_target(case.fault), only=case.only, results_dir=tmp_path)
    assert set(report.results) == _graded_ids(fault.kind, case.only)
    not_graded = f"\n(not graded, as the fault breaks them too: {case.also_breaks})"
    assert report.failed_ids() == {fault.breaks}, _scorecard(report) + not_graded
    failed = report.results[fault.breaks]
    assert failed.evidence and failed.hint, failed
    assert report.exit_status == 1  # a bonus-only run is held to its bonus items
    assert report.score == report.max_score - failed.points


BONUS_KINDS = sorted({FAULTS[case.fault].kind for case in CASES} - {"level", "edge"})


@pytest.mark.slow
@pytest.mark.parametrize("kind", BONUS_KINDS)
def test_reference_passes_the_bonus_item_its_faulty_twin_fails(kind, tmp_path):
    """The control: the same item, graded on the unmodified reference server, passes."""
    (broken,) = {f.breaks for f in FAULTS.values() if f.kind == kind}
    report = grade_program(Program.builtin(kind), only=(broken,), results_dir=tmp_path)
    assert report.failed_ids() == set(), _scorecard(report)
    assert report.passed_ids() == {broken}


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
