"""Grading a class without grading anything: discovery, the copy, records, merge, the CLI's
class paths (``--merge``, usage errors). Real class grades are in the slow and container tiers."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import docker  # noqa: F401  (imported on the real platform, before a test fakes darwin)
import pytest

from lab.cli import main
from lab.errors import UsageError
from lab.runner import classroom
from lab.sandbox import default_jobs

LEVEL = '[level]\ncmd = "python3 -m lab serve level --port {port}"\n'


def student(root: Path, name: str, text: str | None = LEVEL) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    if text is not None:
        (folder / "submission.toml").write_text(text)
    return folder


def run_folder(root: Path, name: str, *, started: str, passed: bool, sandbox: dict | None = None) -> Path:
    """A results folder as ``lab grade`` leaves it (only the files the class report reads)."""
    folder = root / f"{started[:4]}-{name}"
    folder.mkdir(parents=True)
    points = 4 if passed else 0
    results = {"name": name, "started": started, "score": points, "max_score": 4,
               "items": [{"id": "level.accepts", "section": "level", "points": 4, "title": "t", "passed": passed,
                          "awarded": points, "evidence": "measured", "hint": ""}]}
    (folder / "results.json").write_text(json.dumps(results))
    if sandbox is not None:
        (folder / classroom.SANDBOX_FILE).write_text(json.dumps(sandbox))
    return folder


@pytest.mark.parametrize(("cores", "jobs"), [(1, 1), (2, 1), (3, 1), (4, 2), (64, 32)])
def test_default_jobs_is_one_grade_per_two_cores(cores, jobs):
    assert default_jobs(cores) == jobs


def test_a_folder_of_student_folders_names_each_by_its_folder(tmp_path):
    student(tmp_path, "bob")
    student(tmp_path, "alice", 'name = "not-alice"\n' + LEVEL)
    student(tmp_path, "carol", None)
    student(tmp_path, ".git", None)
    entries = classroom.discover([tmp_path])
    assert [(e.name, e.file and e.file.parent.name, e.problem is not None) for e in entries] == [
        ("alice", "alice", False), ("bob", "bob", False), ("carol", None, True)]
    assert "no submission.toml" in entries[2].problem


@pytest.mark.parametrize(("builds", "needs_zig"), [
    (['build = "zig build -Doptimize=ReleaseSafe"\n'], True),
    (['build = "/usr/local/bin/zig build"\n', None], True),
    (['build = "make"\n', ""], False),
    (['build = "zigzag"\n', 'build = [1'], False),  # not zig; a file that does not parse
], ids=["zig", "zig-by-path", "make", "neither"])
def test_a_class_needs_zig_when_a_build_step_runs_it(tmp_path, builds, needs_zig):
    for number, build in enumerate(builds):
        student(tmp_path, f"s{number}", None if build is None else build + LEVEL)
    assert classroom.builds_with_zig(classroom.discover([tmp_path])) is needs_zig


def test_files_are_named_by_their_name_field_or_stem(tmp_path):
    (tmp_path / "a.toml").write_text('name = "amy"\n' + LEVEL)
    (tmp_path / "b.toml").write_text("not toml [")
    entries = classroom.discover([tmp_path / "a.toml", tmp_path / "b.toml", student(tmp_path, "cy")])
    assert [e.name for e in entries] == ["amy", "b", "cy"]


def test_two_submissions_with_one_name_are_refused(tmp_path):
    (tmp_path / "x.toml").write_text('name = "bob"\n' + LEVEL)
    with pytest.raises(UsageError, match="two submissions are named 'bob'"):
        classroom.discover([tmp_path / "x.toml", student(tmp_path, "bob")])


@pytest.mark.parametrize("layout", ["missing", "empty"])
def test_a_folder_with_nothing_to_grade_is_a_usage_error(tmp_path, layout):
    path = tmp_path / "class"
    if layout == "empty":
        path.mkdir()
    with pytest.raises(UsageError, match="class"):
        classroom.discover([path])


def test_the_copy_is_graded_and_the_submission_folder_is_untouched(tmp_path):
    folder = student(tmp_path, "alice")
    (folder / "server.sh").write_text("#!/bin/sh\n")
    (folder / "server.sh").chmod(0o755)
    (folder / "link").symlink_to("/etc/passwd")
    before = sorted(p.name for p in folder.iterdir())
    copied = classroom.copy_submission(folder / "submission.toml", tmp_path / "work")
    assert copied == tmp_path / "work" / "submission" / "submission.toml"
    assert (copied.parent / "server.sh").stat().st_mode & 0o111
    assert (copied.parent / "link").is_symlink()  # copied as a link, not the host's file
    (copied.parent / "made-by-the-server").write_text("x")
    assert sorted(p.name for p in folder.iterdir()) == before


def test_a_failed_run_scores_every_selected_item_zero_with_the_reason(tmp_path):
    run = classroom.failed_run("bob", ["level"], "killed: out of memory (limit 1 GiB)", tmp_path, {"reason": "r"})
    results = json.loads((run / "results.json").read_text())
    assert results["name"] == "bob" and results["score"] == 0 and results["max_score"] == 20
    assert all("out of memory" in item["evidence"] for item in results["items"])
    assert json.loads((run / classroom.SANDBOX_FILE).read_text()) == {"reason": "r"}


def test_merge_finds_results_anywhere_and_keeps_each_students_newest(tmp_path):
    old = run_folder(tmp_path / "machine-a", "amy", started="2026-01-01T00:00:00+00:00", passed=False)
    new = run_folder(tmp_path / "machine-b" / "deep", "amy", started="2026-01-02T00:00:00+00:00", passed=True)
    ben = run_folder(tmp_path / "machine-b", "ben", started="2026-01-01T00:00:00+00:00", passed=False)
    runs = classroom.find_runs([tmp_path / "machine-a", tmp_path / "machine-b"])
    assert sorted(runs) == sorted([old, new, ben])
    records, notes = classroom.merge_records([classroom.load_record(run, tmp_path) for run in runs])
    assert {r.name: r.results["score"] for r in records} == {"amy": 4, "ben": 0}
    assert len(notes) == 1 and "amy" in notes[0]
    assert next(r for r in records if r.name == "amy").link == "machine-b/deep/2026-amy"


def test_lab_grade_merge_writes_the_four_reports(tmp_path, capsys):
    limits = {"memory": "1 GiB"}
    run_folder(tmp_path / "a", "amy", started="2026-01-01", passed=True,
               sandbox={"kind": "sandbox", "image": "img", "limits": limits, "reason": None, "notes": []})
    run_folder(tmp_path / "b", "ben", started="2026-01-01", passed=False,
               sandbox={"kind": "sandbox", "image": "img", "limits": limits, "reason": "killed: out of memory"})
    status = main(["grade", "--merge", str(tmp_path / "a"), str(tmp_path / "b"), "--results", str(tmp_path / "out")])
    assert status == 0
    (folder,) = (tmp_path / "out").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["class.csv", "class.html", "class.json", "class.md"]
    data = json.loads((folder / "class.json").read_text())
    assert [(s["name"], s["score"], s["status"]) for s in data["submissions"]] == [
        ("amy", 4, "graded"), ("ben", 0, "not graded")]
    assert data["sandbox"] == {"kind": "docker", "image": "img", "limits": limits}
    assert (folder / data["submissions"][0]["results"] / "results.json").is_file()
    assert (folder / "class.csv").read_bytes().startswith(b"\xef\xbb\xbf")  # utf-8-sig, for Excel
    assert "class.html" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["grade", "{tmp}/x.toml", "--merge", "{tmp}"], "--merge builds a report"),
        (["grade", "--merge", "{tmp}/nothing"], "no such results folder"),
        (["grade", "--merge", "{tmp}"], "no results.json"),
        (["grade", "{tmp}/x.toml", "--jobs", "2"], "--jobs is for grading a class"),
        (["grade", "{tmp}/x.toml", "{tmp}/x.toml", "--junit", "j.xml"], "--junit is for one submission"),
        (["grade", "{tmp}", "--name", "bob", "--no-sandbox"], "--name is for one submission"),
        (["grade", "--copy-to", "{tmp}/w"], "need a submission file"),
        (["grade", "{tmp}", "--only", "level.nope", "--no-sandbox"], "level.nope"),
        (["grade", "{tmp}", "{tmp}/x.toml", "--no-sandbox"], "lab grade FOLDER/*.toml"),
    ],
)
def test_class_usage_errors_are_messages_and_status_2(tmp_path, capsys, argv, message):
    (tmp_path / "x.toml").write_text(LEVEL)
    assert main([word.replace("{tmp}", str(tmp_path)) for word in argv]) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_jobs_must_be_a_whole_number(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["grade", "--jobs", "0", "x"])
    assert exit_info.value.code == 2
    assert "whole number" in capsys.readouterr().err


@pytest.fixture
def no_engine(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)


def test_sandbox_demanded_without_an_engine_is_a_usage_error(no_engine, tmp_path, capsys):
    student(tmp_path / "class", "carol", None)
    assert main(["grade", str(tmp_path / "class"), "--sandbox", "--results", str(tmp_path / "out")]) == 2
    assert "--sandbox: cannot reach a Docker engine" in capsys.readouterr().err


def test_without_an_engine_a_class_is_graded_natively_with_a_warning(no_engine, tmp_path, capsys):
    # carol has no submission.toml, so nothing runs: the class report still lists her.
    student(tmp_path / "class", "carol", None)
    assert main(["grade", str(tmp_path / "class"), "--results", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert "warning: no Docker engine" in captured.err and "only code you trust" in captured.err
    (folder,) = (tmp_path / "out").iterdir()
    data = json.loads((folder / "class.json").read_text())
    assert data["sandbox"] is None
    assert [(s["name"], s["status"]) for s in data["submissions"]] == [("carol", "not graded")]
    assert "carol" in (folder / "class.csv").read_text(encoding="utf-8-sig")


def test_an_interrupt_stops_the_running_grade_and_keeps_the_finished_ones(tmp_path):
    """Ctrl-C while b is graded: b is told to stop (and its grader waited for); a and b are
    kept for the partial report, c never starts."""
    entries = [classroom.Entry(name, tmp_path / f"{name}.toml") for name in ("a", "b", "c")]
    started = []

    def grade_one(entry, results_dir, stop):
        started.append(entry.name)
        if entry.name == "b":
            os.kill(os.getpid(), signal.SIGINT)  # as a terminal's Ctrl-C does
            assert stop.wait(10), "the grade was not told to stop"
        return None, {"reason": f"{entry.name} done"}

    lines = []
    grade = classroom.ClassGrade(entries, ("level.accepts",), tmp_path, 1, grade_one, None, log=lines.append)
    with pytest.raises(KeyboardInterrupt):
        grade.run()
    assert started == ["a", "b"]
    assert sorted(record.name for record in grade.records) == ["a", "b"]
    assert any("stopping the running grades" in line for line in lines)


def test_a_copy_inside_the_submission_folder_is_refused(tmp_path):
    folder = student(tmp_path, "alice")
    with pytest.raises(UsageError, match="inside the submission's folder"):
        classroom.copy_submission(folder / "submission.toml", folder / "work")
    assert sorted(p.name for p in folder.iterdir()) == ["submission.toml"]


@pytest.mark.parametrize(("flag", "message"), [
    ("--sandbox", "--sandbox: cannot reach a Docker engine"),
    ("--no-sandbox", "on darwin each submission is graded in a container"),
])
def test_without_epoll_a_class_is_still_graded_from_the_host(no_engine, monkeypatch, tmp_path, capsys, flag, message):
    """On macOS or Windows, a class is not sent into one container: the host starts one per
    submission, so it needs an engine, and says so."""
    student(tmp_path / "class", "carol")
    monkeypatch.setattr(sys, "platform", "darwin")
    assert main(["grade", str(tmp_path / "class"), flag, "--results", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert message in error and "runs every command in its container" not in error
