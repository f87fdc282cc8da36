"""The runner cleans up after itself: Ctrl-C in the middle of a run, or a target that never
listens, ends with the target's process group killed and no results folder left behind."""

from __future__ import annotations

import os
import sys
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
