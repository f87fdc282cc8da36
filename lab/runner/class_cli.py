"""``lab grade`` of a class and ``lab grade --merge``: the command-line side of ``classroom``.

Where the class goes: ``<--results>/<stamp>-class-<title>/``, holding ``submissions/<student>/``
(each grade's results folder and log) and the class report, ``class.{json,csv,md,html}``.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from lab.errors import UsageError
from lab.runner.checklist import CHECKLIST, select_items
from lab.runner.report import run_dir_name


def grade_class_command(args: argparse.Namespace) -> int:
    from lab.runner import classroom
    from lab.sandbox import default_jobs

    if args.merge is not None:
        if args.submission:
            raise UsageError("--merge builds a report from results folders; grade submissions in another run")
        return _merge(args)
    if args.junit is not None:
        raise UsageError("--junit is for one submission; a class gets class.json, class.csv, class.md, class.html")
    for flag, value in (("--copy-to", args.copy_to), ("--name", args.name)):
        if value is not None:
            raise UsageError(f"{flag} is for one submission (each sandbox runs it); a class names each by its folder")
    if args.ready_timeout is not None:
        raise UsageError("--ready-timeout is for one submission; in a class, set ready_timeout = '30s' in the "
                         "sections of the submission files whose programs start slowly")
    select_items(CHECKLIST, tuple(args.only))  # a wrong --only is one message, not one per student
    entries = classroom.discover(args.submission)
    if len(args.submission) == 1:
        only_path = args.submission[0].resolve()
        title = only_path.stem if only_path.is_file() else only_path.name
    else:
        title = "class"
    jobs = args.jobs or default_jobs()
    sandbox, grade_one = _how_to_grade(args, zig=classroom.builds_with_zig(entries))
    folder = _class_folder(args.results, title)
    where = f"in sandbox containers of {sandbox['image']}" if sandbox else "natively"
    print(f"grading {len(entries)} submission(s) {where}, {jobs} at a time, into {folder}", flush=True)
    grade = classroom.ClassGrade(entries, tuple(args.only), folder, jobs, grade_one, sandbox,
                                 log=lambda line: print(line, flush=True))
    try:
        records = grade.run()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM raised as lab.cli.Terminated
        if grade.records:
            classroom.write_class_report(grade.records, folder, title=title, sandbox=sandbox)
            print(f"interrupted: {folder / 'class.html'} holds the {len(grade.records)} of {len(entries)} "
                  "submissions graded so far", flush=True)
        raise
    data = classroom.write_class_report(records, folder, title=title, sandbox=sandbox)
    _summary(data, folder)
    return 0 if all(s["status"] == "graded" for s in data["submissions"]) else 1


def _how_to_grade(args: argparse.Namespace, *, zig: bool):
    """(the sandbox's description for the report, or None; the function grading one entry).
    ``zig``: a submission builds with zig, so the sandboxes use the image with Zig."""
    from lab import container
    from lab.runner import classroom
    from lab.sandbox import SandboxLimits

    if args.sandbox is not False:
        try:
            client = container.connect()
        except UsageError as error:
            if args.sandbox:
                raise UsageError(f"--sandbox: {error}") from None
            _warn(f"no Docker engine to sandbox the submissions ({error})")
        else:
            limits = SandboxLimits(memory=args.memory, pids=args.pids, cpus=args.cpus,
                                   seconds=args.time_limit, nofile=container.nofile_limit(),
                                   file_size=args.file_size)
            image = container.ensure_image(client, zig=zig)
            description = {"kind": "docker", "image": image, "limits": limits.words()}
            return description, classroom.sandboxed_grader(client, image, limits, args.only, _grade_options(args))
    else:
        _warn("--no-sandbox")
    if sys.platform != "linux":
        raise UsageError(f"epoll is Linux-only: on {sys.platform} each submission is graded in a container, "
                         "so a class needs a reachable Docker engine (Docker Desktop)")
    return None, classroom.native_grader(args.only, args.time_limit, _grade_options(args))


def _grade_options(args: argparse.Namespace) -> list[str]:
    """The options each submission's ``lab grade`` gets besides ``--only``."""
    return ["--strict"] * bool(args.strict) + (["--repeat", str(args.repeat)] if args.repeat > 1 else [])


def _warn(why: str) -> None:
    print(f"warning: {why}: the submissions' programs run natively as {getpass.getuser()}, with your "
          "rights on your files and your network, and no memory or process limit. Grade only code "
          "you trust this way.", file=sys.stderr, flush=True)


def _class_folder(results: Path, title: str) -> Path:
    if "\0" in str(results):
        raise UsageError(f"--results {str(results)!r}: not a folder name (it holds a NUL byte)")
    base = run_dir_name(f"class-{title}")
    for suffix in range(1, 1000):
        folder = results / (base if suffix == 1 else f"{base}-{suffix}")
        try:
            folder.mkdir(parents=True)
            return folder.resolve()
        except FileExistsError:
            continue
        except OSError as error:
            raise UsageError(f"cannot write results under {results}: {error.strerror}; "
                             "pick another --results") from None
    raise UsageError(f"{results}: too many class folders named {base}")


def _merge(args: argparse.Namespace) -> int:
    from lab.runner import classroom

    runs = classroom.find_runs(args.merge)
    folder = _class_folder(args.results, "merged")
    records, notes = classroom.merge_records([classroom.load_record(run, folder) for run in runs])
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    data = classroom.write_class_report(records, folder, title="merged", sandbox=_common_sandbox(records))
    _summary(data, folder)
    return 0


def _common_sandbox(records) -> dict | None:
    """The sandbox the merged grades share, for the report: None when none was sandboxed."""
    seen = {(r.sandbox.get("image"), tuple(r.sandbox.get("limits", {}).items()))
            for r in records if r.sandbox.get("kind") == "sandbox"}
    if not seen:
        return None
    if len(seen) > 1:
        return {"kind": "docker", "image": "several", "limits": {"differ": "see each submission's sandbox.json"}}
    image, limits = seen.pop()
    return {"kind": "docker", "image": image, "limits": dict(limits)}


def _summary(data: dict, folder: Path) -> None:
    from tabulate import tabulate

    rows = [[s["name"], f"{s['score']}/{s['max_score']}", s["reason"] or ""] for s in data["submissions"]]
    print(tabulate(rows, headers=["student", "score", "not graded because"]))
    print(f"class report: {folder / 'class.html'} (and class.json, class.csv, class.md)")
