"""The runner cleans up after itself: Ctrl-C, SIGTERM or SIGKILL in the middle of a run, or a
target that never listens, ends with the target's process group killed and no results folder
left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.runner.program import Program
from lab.runner.run import grade_program
from lab.process import StartError


class InterruptAt:
    """A progress sink that presses Ctrl-C when a given step begins."""

    def __init__(self, scenario: str, step: int) -> None:
        self.where = (scenario, step)

    def begin_program(self, program: str, command: str) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def done(self) -> None:
        pass

    def __call__(self, scenario, step, clients: int) -> None:
        if (scenario.name, step.index) == self.where:
            raise KeyboardInterrupt


def processes_mentioning(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:  # it exited while we looked
            continue
    return found


def test_ctrl_c_mid_run_kills_the_target_and_writes_nothing(tmp_path):
    marker = str(tmp_path / "stats-marker.json")  # unique to this test's server command line
    target = Program.command([sys.executable, "-m", "lab", "serve", "edge", "--port", "{port}",
                             "--stats-file", marker], kind="edge")
    results = tmp_path / "results"
    with pytest.raises(KeyboardInterrupt):
        grade_program(target, only=("edge.drains",), results_dir=results,
                     progress=InterruptAt("burst-then-wait", 2))
    assert processes_mentioning(marker) == []
    assert list(results.iterdir()) == []  # the partial folder is gone too


def test_a_target_that_never_listens_is_stopped_at_its_deadline(tmp_path):
    marker = str(tmp_path / "silent-marker")
    target = Program.command([sys.executable, "-c", "import time, sys; time.sleep(60)", "{port}", marker],
                            kind="level", ready_timeout=0.5)
    with pytest.raises(StartError, match=r"did not listen on 127\.0\.0\.1:\d+ within 0\.5 s"):
        grade_program(target, only=("level.echoes",), results_dir=tmp_path / "results")
    assert processes_mentioning(marker) == []
    assert list((tmp_path / "results").iterdir()) == []


def running(pid: int) -> bool:
    """True while pid exists and has not exited (a zombie, dead but not yet reaped, has)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:g} s")
        time.sleep(0.02)  # poll interval of the deadline loop
    return found


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGTERM, 143), (signal.SIGKILL, -signal.SIGKILL)],
                         ids=["SIGTERM", "SIGKILL"])
def test_a_killed_lab_run_leaves_no_process_behind(tmp_path, signum, status):
    # SIGTERM (CI cancelling, `timeout`) unwinds like Ctrl-C; SIGKILL gives Python no chance,
    # and the kernel ends the server (PR_SET_PDEATHSIG). Either way: nothing left within 1 s.
    marker = str(tmp_path / "stray-marker.json")
    server = f"{sys.executable} -m lab serve edge --port {{port}} --stats-file {marker}"
    runner = subprocess.Popen([sys.executable, "-m", "lab", "run", "--cmd", server, "--as", "edge",
                               "--only", "edge", "--results", str(tmp_path / "results")],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        started = wait_for(lambda: [pid for pid in processes_mentioning(marker) if pid != runner.pid],
                           30.0, "server started by lab run")
        runner.send_signal(signum)
        assert runner.wait(timeout=30) == status
        assert wait_for(lambda: processes_mentioning(marker) == [], 1.0, "end of every process") is True
        assert [pid for pid in started if running(pid)] == []
        if signum == signal.SIGTERM:
            assert "terminated" in runner.stderr.read().decode()
            assert list((tmp_path / "results").iterdir()) == []  # no half-written run folder
    finally:
        runner.kill()
        runner.wait()
        runner.stderr.close()
        for pid in processes_mentioning(marker):
            os.kill(pid, signal.SIGKILL)
