"""``lab grade`` of a class: many submissions, each graded on its own, one class report.

The unit of work is one submission graded by ``lab grade FILE`` in a process of its own: in a
sandbox container (``lab.sandbox``) when a Docker engine is reachable, natively otherwise. A
submission that fails to parse, crashes the grader, runs out of memory or time scores 0 with
that reason, and the others go on. Each grade leaves its results folder under
``<class folder>/submissions/<student>/``; the class report (``class_report``) is built from
those folders alone, which is also what ``lab grade --merge`` does with folders graded elsewhere.

How many at once: a grade keeps about two cores busy at its peak (1,000 clients bursting at
the server, the runner reading /proc), and several items judge CPU time and latency. Grades
that compete for cores would measure each other, so the default is one grade per two usable
cores (``sandbox.default_jobs``): one on a 2-core machine.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from lab.errors import UsageError
from lab.files import write_atomically
from lab.runner.checklist import CHECKLIST, select_items
from lab.runner.class_report import SubmissionRecord, class_csv, class_data, class_html, class_json, class_markdown
from lab.runner.grading import ItemResult, Outcome
from lab.runner.report import RunDirectory, RunReport, results_json, safe_name, scorecard_markdown

SUBMISSION_FILE = "submission.toml"
SANDBOX_FILE = "sandbox.json"  # beside results.json: how the sandbox ended, its limits
LOG_FILE = "grade.log"
NATIVE_KILL_GRACE = 5.0
WAKE_SECONDS = 1.0


@dataclass(slots=True, frozen=True)
class Entry:
    """One submission to grade: who, and the file (None: the student's folder has none)."""

    name: str
    file: Path | None
    problem: str | None = None  # why it cannot be graded at all


def discover(paths: Sequence[Path]) -> list[Entry]:
    """The submissions the paths name: a submission file; a folder holding ``submission.toml``
    (named after the folder); or a folder of such folders, one per student (a student folder
    without the file is listed, to score 0, not skipped). Names must be unique."""
    entries: list[Entry] = []
    for path in paths:
        if path.is_file():
            entries.append(Entry(_file_name(path), path.resolve()))
        elif (path / SUBMISSION_FILE).is_file():
            entries.append(Entry(path.resolve().name, (path / SUBMISSION_FILE).resolve()))
        elif path.is_dir():
            students = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
            if not students:
                files = " (for its .toml files: lab grade FOLDER/*.toml)" if any(path.glob("*.toml")) else ""
                raise UsageError(f"{path}: no {SUBMISSION_FILE} here and no student folders in it{files}")
            for folder in students:
                file = folder / SUBMISSION_FILE
                if file.is_file():
                    entries.append(Entry(folder.name, file.resolve()))
                else:
                    entries.append(Entry(folder.name, None, f"no {SUBMISSION_FILE} in {folder}"))
        else:
            raise UsageError(f"{path}: no such submission file or folder")
    _check_unique(entries)
    return entries


def _file_name(path: Path) -> str:
    """A file's student: its ``name`` field, else the file's stem; a file that does not
    parse is still named (by its stem) so it can score 0 with the reason. (Read as plain
    TOML: the checks are the grade's, in its sandbox.)"""
    try:
        name = tomllib.loads(path.read_text(encoding="utf-8")).get("name")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return path.stem
    return name if isinstance(name, str) and name.strip() else path.stem


def builds_with_zig(entries: Sequence[Entry]) -> bool:
    """Whether a submission's build step runs ``zig``: the class then needs the image with Zig.
    (Read as plain TOML, like the names: a file that does not parse fails in its sandbox.)"""
    for entry in entries:
        if entry.file is None:
            continue
        try:
            build = tomllib.loads(entry.file.read_text(encoding="utf-8")).get("build")
            program = shlex.split(build)[0] if isinstance(build, str) else ""
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ValueError, IndexError):
            continue
        if PurePosixPath(program).name == "zig":
            return True
    return False


def _check_unique(entries: list[Entry]) -> None:
    seen: dict[str, Entry] = {}
    for entry in entries:
        if entry.name in seen:
            raise UsageError(f"two submissions are named {entry.name!r} ({seen[entry.name].file} and "
                             f"{entry.file}); give each a different name = '...' or folder")
        seen[entry.name] = entry


def copy_submission(file: Path, work_dir: Path) -> Path:
    """Copy the submission's folder to ``work_dir/submission/`` and return the copied file: it
    then builds and runs there, and its own folder is never written. Symlinks are copied as
    links. (A folder of its own: ``work_dir`` may be a shared tmpfs whose mode is not ours.)"""
    source, copy = file.resolve().parent, (work_dir / "submission").resolve()
    if copy == source or source in copy.parents:
        raise UsageError(f"--copy-to {work_dir} is inside the submission's folder {source}: pick a folder outside it")
    try:
        shutil.copytree(source, copy, symlinks=True)
    except (OSError, shutil.Error) as error:
        raise UsageError(f"cannot copy the submission {source} to {copy}: {error}") from None
    return copy / file.name


# -- grading one submission, natively or in a sandbox ----------------------------------------

def failed_run(name: str, only: Sequence[str], reason: str, results_dir: Path, sandbox: dict) -> Path:
    """A results folder for a submission that was not graded: every selected item 0, with the
    reason as its evidence, so the gradebook has its row and says why."""
    results = {
        item.id: ItemResult(id=item.id, section=item.section, points=item.points, title=item.title,
                            outcome=Outcome.FAIL, evidence=f"not graded: {reason}", hint=reason)
        for item in select_items(CHECKLIST, tuple(only))
    }
    report = RunReport(name=name, programs={}, results=results,
                       started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    with RunDirectory(results_dir, name) as run_dir:
        run_dir.write("results.json", results_json(report))
        run_dir.write("scorecard.md", scorecard_markdown(report))
        run_dir.write(SANDBOX_FILE, json.dumps(sandbox, indent=2) + "\n")
        return run_dir.commit()


def finished_run(results_dir: Path) -> Path | None:
    """The run folder a grade left under results_dir (the newest, should there be several).
    A grader killed mid-run leaves its folder half-written and hidden: it is removed."""
    for partial in results_dir.glob(".*.partial-*"):
        shutil.rmtree(partial, ignore_errors=True)
    runs = sorted(p for p in results_dir.glob("*/results.json"))
    return runs[-1].parent if runs else None


def grade_natively(entry: Entry, results_dir: Path, only: Sequence[str], seconds: float,
                   stop: threading.Event, extra: Sequence[str] = ()) -> tuple[Path | None, dict]:
    """``lab grade FILE`` in a process (and session) of its own, as the calling user; ``extra``:
    more of its options (``--strict``, ``--repeat N``)."""
    argv = [sys.executable, "-m", "lab", "grade", str(entry.file), "--name", entry.name,
            "--results", str(results_dir), *[word for item in only for word in ("--only", item)], *extra]
    with (results_dir / LOG_FILE).open("wb") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        deadline = time.monotonic() + seconds
        status = None
        while status is None and not stop.is_set() and time.monotonic() < deadline:
            try:
                status = process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        if status is None:
            # SIGINT, not SIGTERM: it is a KeyboardInterrupt to the grader, which then stops
            # the servers it started (each in a session of its own, out of reach of killpg).
            _signal_group(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=NATIVE_KILL_GRACE)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
    end: dict = {"kind": "native", "exit_status": status}
    run = finished_run(results_dir)
    if run is None:
        if stop.is_set():
            end["reason"] = "not graded: interrupted"
        elif status is None:
            end["reason"] = f"killed: still running after {seconds:g} s (the wall-clock limit)"
        else:
            tail = (results_dir / LOG_FILE).read_text(errors="replace").strip().splitlines()[-1:]
            end["reason"] = f"not graded: {tail[0] if tail else f'lab grade exited with status {status}'}"
    return run, end


def native_grader(only: Sequence[str], seconds: float, extra: Sequence[str] = ()):
    """Grade each submission natively, with a wall-clock limit."""
    def grade_one(entry: Entry, results_dir: Path, stop: threading.Event) -> tuple[Path | None, dict]:
        return grade_natively(entry, results_dir, only, seconds, stop, extra)
    return grade_one


def sandboxed_grader(client, image: str, limits, only: Sequence[str], extra: Sequence[str] = ()):
    """Grade each submission in a sandbox container of ``image`` (see ``lab.sandbox``)."""
    from lab import sandbox

    posix = hasattr(os, "getuid")  # not on Windows
    user = sandbox.sandbox_user(os.getuid() if posix else None, os.getgid() if posix else None)

    def grade_one(entry: Entry, results_dir: Path, stop: threading.Event) -> tuple[Path | None, dict]:
        sandbox.prepare_results_dir(results_dir, user)
        plan = sandbox.plan_sandbox(entry.file, results_dir.resolve(), only, limits, name=entry.name,
                                    image=image, user=user, container=sandbox.container_name(entry.name),
                                    extra=extra)
        end = sandbox.run_sandboxed(client, plan, limits, stop)
        (results_dir / LOG_FILE).write_text(end.log, encoding="utf-8")
        run = finished_run(results_dir)
        reason, notes = sandbox.explain_end(end, limits, graded=run is not None)
        return run, {"kind": "sandbox", "image": image, "exit_status": end.status, "oom_killed": end.oom_killed,
                     "timed_out": end.timed_out, "reason": reason, "notes": notes}
    return grade_one


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass(slots=True)
class ClassGrade:
    """One class run: what to grade, how, and where its folder is."""

    entries: list[Entry]
    only: tuple[str, ...]
    folder: Path
    jobs: int
    grade_one: Callable[[Entry, Path, threading.Event], tuple[Path | None, dict]]
    sandbox: dict | None  # the sandbox's kind, image and limits, for the report; None: native
    log: Callable[[str], None] = print
    records: list[SubmissionRecord] = field(default_factory=list)  # the grades done so far

    def run(self) -> list[SubmissionRecord]:
        """Grade every entry, ``jobs`` at once; one's failure never stops the others. On an
        interrupt, running grades are stopped (their containers and processes removed), and
        ``records`` holds those that were done."""
        stop = threading.Event()
        records = self.records
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.jobs) as pool:
            pending = {pool.submit(self._grade, entry, stop) for entry in self.entries}
            try:
                while pending:
                    # A timeout, so that a signal a worker thread happened to receive is still
                    # handled here within a second.
                    finished, pending = concurrent.futures.wait(
                        pending, timeout=WAKE_SECONDS, return_when=concurrent.futures.FIRST_COMPLETED)
                    for future in finished:
                        records.append(future.result())
                        self._log_done(records[-1], len(self.entries))
            except BaseException:  # Ctrl-C, SIGTERM: stop the running grades, then go
                stop.set()
                self.log("stopping the running grades (their containers and processes are removed)")
                _shut_down_shielded(pool)
                # Those done meanwhile (the interrupted ones say so); those never begun are not.
                records += [future.result() for future in pending
                            if not future.cancelled() and future.exception() is None]
                raise
        return records

    def _log_done(self, record: SubmissionRecord, total: int) -> None:
        results = record.results
        why = f" ({record.sandbox['reason']})" if record.sandbox.get("reason") else ""
        self.log(f"[{len(self.records)}/{total}] {record.name}: "
                 f"{results.get('score', 0)}/{results.get('max_score', 0)}{why}")

    def _grade(self, entry: Entry, stop: threading.Event) -> SubmissionRecord:
        results_dir = self.folder / "submissions" / safe_name(entry.name)
        results_dir.mkdir(parents=True, exist_ok=True)
        run, end = None, {"kind": "sandbox" if self.sandbox else "native"}
        if entry.problem is not None:
            end["reason"] = f"not graded: {entry.problem}"
        elif not stop.is_set():
            try:
                run, end = self.grade_one(entry, results_dir, stop)
            # The one boundary where any error is caught: it belongs to this submission, and
            # the class must go on. It is recorded, with its type, as the reason.
            except Exception as error:  # noqa: BLE001
                end["reason"] = f"not graded: {type(error).__name__}: {error}"
        else:
            end["reason"] = "not graded: interrupted"
        if self.sandbox is not None:
            end["limits"] = self.sandbox["limits"]
        if run is None:
            end["reason"] = end.get("reason") or "not graded: the grader left no results"
            run = failed_run(entry.name, self.only, end["reason"], results_dir, end)
        else:
            (run / SANDBOX_FILE).write_text(json.dumps(end, indent=2) + "\n", encoding="utf-8")
        return load_record(run, self.folder)


def _shut_down_shielded(pool: concurrent.futures.ThreadPoolExecutor) -> None:
    """Wait for the running grades to stop (each notices ``stop`` within a second or so), even
    through a second Ctrl-C: leaving early would leave their containers running."""
    while True:
        try:
            pool.shutdown(wait=True, cancel_futures=True)
            return
        except KeyboardInterrupt:
            continue


# -- records and the class report ------------------------------------------------------------


def load_record(run_dir: Path, report_dir: Path) -> SubmissionRecord:
    """A results folder as the class report sees it; the link is relative to the report."""
    try:
        results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise UsageError(f"{run_dir}: cannot read results.json: {error}") from None
    sandbox: dict = {}
    if (run_dir / SANDBOX_FILE).is_file():
        try:
            sandbox = json.loads((run_dir / SANDBOX_FILE).read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            sandbox = {"notes": [f"{SANDBOX_FILE} is not valid JSON"]}
    link = Path(os.path.relpath(run_dir.resolve(), report_dir.resolve())).as_posix()
    return SubmissionRecord(results.get("name", run_dir.name), results, link, sandbox)


def find_runs(paths: Sequence[Path]) -> list[Path]:
    """Every results folder (a folder holding results.json) at or under the paths."""
    runs: list[Path] = []
    for path in paths:
        if (path / "results.json").is_file():
            runs.append(path)
        elif path.is_dir():
            found = sorted(p.parent for p in path.rglob("results.json") if not p.parent.name.startswith("."))
            if not found:
                raise UsageError(f"{path}: no results.json in it or under it; give results folders of lab grade")
            runs += found
        else:
            raise UsageError(f"{path}: no such results folder")
    return list(dict.fromkeys(run.resolve() for run in runs))


def merge_records(records: Sequence[SubmissionRecord]) -> tuple[list[SubmissionRecord], list[str]]:
    """One record per student: the newest grade (by its start time) wins, and each one
    dropped is named in a note."""
    newest: dict[str, SubmissionRecord] = {}
    notes = []
    for record in sorted(records, key=lambda r: r.results.get("started", "")):
        if record.name in newest:
            notes.append(f"{record.name}: {newest[record.name].link} replaced by the newer {record.link}")
        newest[record.name] = record
    return list(newest.values()), notes


def write_class_report(records: Sequence[SubmissionRecord], folder: Path, *, title: str,
                       sandbox: dict | None) -> dict:
    """class.json, class.csv, class.md and class.html in folder; returns the data."""
    generated = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    data = class_data(records, title=title, generated=generated, sandbox=sandbox)
    for name, text, encoding in (("class.json", class_json(data), "utf-8"),
                                 ("class.csv", class_csv(data), "utf-8-sig"),
                                 ("class.md", class_markdown(data), "utf-8"),
                                 ("class.html", class_html(data), "utf-8")):
        write_atomically(folder / name, text, encoding=encoding, newline="")  # the CSV keeps its CRLFs
    return data
