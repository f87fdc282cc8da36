"""``lab grade`` of a class natively (``--no-sandbox``): real grades, in the slow tier. One
submission's failure never stops the others, and a grade past the wall-clock limit is
stopped with everything it started."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from lab.cli import main

pytestmark = pytest.mark.slow
PYTHON = sys.executable


def write_student(root: Path, name: str, toml: str, files: dict[str, str] | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "submission.toml").write_text(toml)
    for file, text in (files or {}).items():
        (folder / file).write_text(text)
    return folder


def class_json(results: Path) -> dict:
    (folder,) = results.iterdir()
    return json.loads((folder / "class.json").read_text())


def test_a_broken_submission_does_not_stop_the_others(tmp_path, capsys):
    students = tmp_path / "class"
    write_student(students, "good", f'[level]\ncmd = "{PYTHON} -m lab serve level --port {{port}}"\n')
    write_student(students, "typo", '[level]\ncmdd = "./server {port}"\n')
    write_student(students, "silent", '[level]\ncmd = "./no-such-server {port}"\n')
    status = main(["grade", str(students), "--no-sandbox", "--jobs", "2", "--only", "level.epoll_created",
                   "--results", str(tmp_path / "out")])
    assert status == 1  # typo could not be graded
    by_name = {s["name"]: s for s in class_json(tmp_path / "out")["submissions"]}
    assert (by_name["good"]["score"], by_name["good"]["status"]) == (4, "graded")
    assert (by_name["silent"]["score"], by_name["silent"]["status"]) == (0, "graded")
    assert "No such file" in by_name["silent"]["items"]["level.epoll_created"]["evidence"]
    assert by_name["typo"]["status"] == "not graded"
    assert "unknown field 'cmdd'" in by_name["typo"]["reason"]
    assert "warning: --no-sandbox" in capsys.readouterr().err


def running_commands_with(token: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if token in cmdline:
            found.append(cmdline)
    return found


def test_a_grade_past_the_wall_clock_limit_is_stopped_with_its_server(tmp_path):
    students = tmp_path / "class"
    folder = students / "sleeper"
    script = folder / "never-listens.sh"
    write_student(students, "sleeper", f'[level]\ncmd = "sh {script} {{port}}"\n', {"never-listens.sh": "sleep 600\n"})
    status = main(["grade", str(students), "--no-sandbox", "--only", "level.epoll_created", "--time-limit", "2s",
                   "--results", str(tmp_path / "out")])
    assert status == 1
    (sleeper,) = class_json(tmp_path / "out")["submissions"]
    assert sleeper["reason"] == "killed: still running after 2 s (the wall-clock limit)"
    assert running_commands_with(str(script)) == []
