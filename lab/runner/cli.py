"""``lab run`` and ``lab grade``: the scenario runner and the checklist grader on the command line.

``lab run`` grades one program (a reference server with ``--target KIND``, or any command
with ``--cmd '... {port}' --as KIND``) on the items of its kind; ``lab grade`` grades a whole
submission (or, without a file, our own reference servers and benchmark). Both print the
scorecard, write ``results/<stamp>-<name>/`` and exit 0 when every mandatory item graded
passed, 1 otherwise, 2 on a usage or scenario error.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
from pathlib import Path

from lab.arguments import argument_type, positive_int
from lab.errors import UsageError
from lab.host import host_path
from lab.runner.checklist import CHECKLIST, KINDS
from lab.sandbox import SandboxLimits, default_jobs
from lab.units import parse_duration, parse_size

SANDBOX_DEFAULTS = SandboxLimits()


_duration, _size = argument_type(parse_duration), argument_type(parse_size)


def _ready_timeout(text: str) -> float:
    seconds = _duration(text)
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"the ready timeout must be longer than 0 s, got {text!r}")
    return seconds


def _path(text: str) -> Path:
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"{text!r}: not a file name (it holds a NUL byte)")
    return Path(text)


def _size_of_at_least(minimum: str):
    least = parse_size(minimum)

    def size(text: str) -> int:
        value = _size(text)
        if value < least:
            raise argparse.ArgumentTypeError(f"at least {minimum}, got {text!r}")
        return value
    return size


def _cpus(text: str) -> float:
    try:
        cpus = float(text)
    except ValueError:
        cpus = 0.0
    if not cpus > 0:
        raise argparse.ArgumentTypeError(f"a number of cores > 0 such as 2 or 1.5, got {text!r}")
    return cpus


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 1 to 65535, got {text!r}")
    return int(text)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", default=[], metavar="ID_OR_SECTION",
                        help="grade only this item or section (repeatable), e.g. edge.drains or errors")
    parser.add_argument("--results", type=Path, default=Path("results"), metavar="DIR",
                        help="put the run folder under DIR (default results)")
    parser.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML here")
    parser.add_argument("--strict", action="store_true",
                        help="grade the assignment's letter: a PASS with remark counts as a FAIL")
    parser.add_argument("--repeat", type=_repeat, default=1, metavar="N",
                        help="grade N times; an item whose outcome changes is FLAKY and the run exits 1")


def _repeat(text: str) -> int:
    from lab.runner.stability import MAX_REPEAT

    if not text.isdigit() or not 1 <= int(text) <= MAX_REPEAT:
        raise argparse.ArgumentTypeError(f"a number of runs from 1 to {MAX_REPEAT}, got {text!r}")
    return int(text)


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run",
        help="run scenarios against one server and grade it",
        description="Run the scenarios against one server and grade it on the checklist items\n"
                    "of its kind.",
        epilog="example: lab run --cmd './zig-out/bin/edge_triggered_epoll {port}' --as edge\n\n"
               "exit status: 0 when every mandatory item graded passed, else 1; 2 usage (a bad\n"
               "option or scenario file, a program that never listens); 3 internal error (a bug\n"
               "in the lab).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("scenarios", nargs="*", metavar="SCENARIO_OR_DIR",
                     help="scenario files or folders (default: the shipped scenarios/)")
    what = run.add_mutually_exclusive_group()
    what.add_argument("--target", choices=KINDS, help="one of our reference servers")
    what.add_argument("--cmd", metavar="'COMMAND {port}'", help="any program; {port} becomes a free port")
    what.add_argument("--list", action="store_true", help="list scenarios and checklist items, run nothing")
    run.add_argument("--as", dest="kind", choices=KINDS, help="with --cmd: which kind of server it is")
    run.add_argument("--port", type=_port, help="with --cmd: the fixed port the program listens on")
    run.add_argument("--idle-timeout", type=_duration, metavar="DURATION",
                     help="with --cmd --as timeout: the program's idle timeout (default 5s)")
    run.add_argument("--tick", type=_duration, metavar="DURATION",
                     help="with --cmd --as timeout: how often it checks for idle connections (default 1s)")
    run.add_argument("--drain-timeout", type=_duration, metavar="DURATION",
                     help="with --cmd --as graceful: its longest drain after SIGTERM (default 10s)")
    run.add_argument("--ready-timeout", type=_ready_timeout, metavar="DURATION",
                     help="how long the program may take to start listening (default 15s)")
    _common(run)
    # --list reads files and prints; it needs no epoll, so it runs on any host.
    run.set_defaults(handler=run_command, runs_anywhere=lambda args: args.list)

    grade = subparsers.add_parser(
        "grade",
        help="grade a submission or a whole class (default: our reference servers, which must score 100)",
        description="Grade every program of a submission file on the whole checklist. Without a "
                    "file: our five reference servers and our benchmark. Given a folder of student "
                    "folders (each with a submission.toml), several files, or --sandbox: grade a "
                    "class, each submission in a sandbox container when a Docker engine is "
                    "reachable, and write class.json, class.csv, class.md and class.html.",
        epilog="exit status: one submission: 0 when every mandatory item passed, else 1. A class: "
               "0 when every submission was graded (whatever its score), 1 when one could not be. "
               "2: usage (a bad option or submission file). 3: internal error (a bug in the lab).",
    )
    grade.add_argument("submission", nargs="*", type=Path, metavar="SUBMISSION",
                       help="a submission file (its fields: README, 'Grade your own server'), a "
                            "folder with a submission.toml, or a folder of student folders")
    _common(grade)
    grade.add_argument("--ready-timeout", type=_ready_timeout, metavar="DURATION",
                       help="one submission, or the reference servers: how long each program may take "
                            "to start listening (default 15s); a program whose section in the submission "
                            "file sets ready_timeout keeps its own")
    klass = grade.add_argument_group("grading a class")
    klass.add_argument("--jobs", type=positive_int, metavar="N",
                       help="grade N submissions at once (default: one per two usable cores, "
                            f"here {default_jobs()}: a grade keeps about two cores busy, and "
                            "grades that compete for cores skew each other's CPU and timing evidence)")
    sandbox = klass.add_mutually_exclusive_group()
    sandbox.add_argument("--sandbox", dest="sandbox", action="store_true", default=None,
                         help="grade in sandbox containers, or fail (default: when a Docker engine "
                              "is reachable); with one file, grade it as a class of one. The image is "
                              "LAB_IMAGE (epoll-lab:latest), or, when a submission's build runs zig, "
                              "LAB_ZIG_IMAGE (epoll-lab:zig, with Zig); either is built from this "
                              "checkout when missing or stale")
    sandbox.add_argument("--no-sandbox", dest="sandbox", action="store_false",
                         help="run the submissions natively, as you: only for code you trust")
    klass.add_argument("--memory", type=_size_of_at_least("64MiB"), default=SANDBOX_DEFAULTS.memory,
                       metavar="SIZE",
                       help="sandbox memory limit, swap and tmpfs included (default 1GiB)")
    klass.add_argument("--pids", type=positive_int, default=SANDBOX_DEFAULTS.pids, metavar="N",
                       help=f"sandbox limit on processes and threads (default {SANDBOX_DEFAULTS.pids})")
    klass.add_argument("--cpus", type=_cpus, default=SANDBOX_DEFAULTS.cpus, metavar="N",
                       help=f"sandbox CPU limit, in cores (default {SANDBOX_DEFAULTS.cpus:g})")
    klass.add_argument("--file-size", type=_size_of_at_least("1MiB"), default=SANDBOX_DEFAULTS.file_size,
                       metavar="SIZE",
                       help="sandbox limit on the size of any one file written, logs included (default 64MiB)")
    klass.add_argument("--time-limit", type=_duration, default=SANDBOX_DEFAULTS.seconds, metavar="DURATION",
                       help="wall-clock limit per submission, its build included (default 15min)")
    klass.add_argument("--merge", nargs="+", type=_path, metavar="RESULTS",
                       help="grade nothing: merge results folders (graded anywhere) into one class report")
    klass.add_argument("--name", metavar="STUDENT",
                       help="with one submission: the name its results carry (default: its name "
                            "field, else the file's name); a class names each by its folder")
    klass.add_argument("--copy-to", type=_path, metavar="DIR",
                       help="grade a copy of the submission's folder made in DIR (the sandbox's "
                            "work area), so the folder itself is never written")
    grade.set_defaults(handler=grade_command)


def _target(args: argparse.Namespace):
    from lab.runner.program import Program

    if args.cmd is not None:
        if args.kind is None:
            raise UsageError("--cmd needs --as KIND (level, edge, oneshot, timeout or graceful)")
        return Program.command(args.cmd, kind=args.kind, port=args.port, idle_timeout=args.idle_timeout,
                              tick=args.tick, drain_timeout=args.drain_timeout, cwd=Path.cwd(),
                              ready_timeout=args.ready_timeout)
    if args.target is None:
        raise UsageError("say what to run against: --target KIND, or --cmd 'COMMAND {port}' --as KIND (or --list)")
    for flag, value in (("--as", args.kind), ("--port", args.port), ("--idle-timeout", args.idle_timeout),
                        ("--tick", args.tick), ("--drain-timeout", args.drain_timeout)):
        if value is not None:
            raise UsageError(f"{flag} goes with --cmd, not with --target")
    program = Program.builtin(args.target)
    return program if args.ready_timeout is None else program.with_ready_timeout(args.ready_timeout)


def run_command(args: argparse.Namespace) -> int:
    from lab.runner.scenario import load_scenarios

    if args.list:
        print(listing(load_scenarios(args.scenarios)))
        return 0
    from lab.runner.progress import Progress
    from lab.runner.run import grade_program

    report = grade_program(_target(args), args.only, results_dir=args.results, progress=Progress(),
                          scenarios=args.scenarios, junit=args.junit, strict=args.strict, repeat=args.repeat)
    return _print(report)


def grades_a_class(args: argparse.Namespace) -> bool:
    """``lab grade`` of several submissions, a folder of them, ``--sandbox`` or ``--merge``:
    work for the host (it starts a container per submission), on any operating system."""
    return args.command == "grade" and (
        args.merge is not None or len(args.submission) > 1 or bool(args.sandbox)
        or any(path.is_dir() for path in args.submission))


def grade_command(args: argparse.Namespace) -> int:
    if grades_a_class(args):
        from lab.runner.class_cli import grade_class_command

        return grade_class_command(args)

    from lab.runner.progress import Progress
    from lab.runner.run import grade_submission
    from lab.runner.submission import load_submission, reference
    for flag, value in (("--jobs", args.jobs), ("--no-sandbox", args.sandbox is False and "set")):
        if value:
            raise UsageError(f"{flag} is for grading a class: give a folder of submissions or several files")
    if args.submission:
        file = args.submission[0]
        if args.copy_to is not None:
            from lab.runner.classroom import copy_submission

            file = copy_submission(file, args.copy_to)
        submission = load_submission(file, ready_timeout=args.ready_timeout)
        if args.name:
            submission = dataclasses.replace(submission, name=args.name)
    elif args.copy_to is not None or args.name:
        raise UsageError("--copy-to and --name need a submission file")
    else:
        submission = reference(args.ready_timeout)
    report = grade_submission(submission, args.only, results_dir=args.results, progress=Progress(),
                              junit=args.junit, strict=args.strict, repeat=args.repeat)
    return _print(report)


def _print(report) -> int:
    from lab.runner.report import terminal_table

    print(terminal_table(report))
    print(f"results: {host_path(report.run_dir)}")
    sys.stdout.flush()
    return report.exit_status


def listing(scenarios: dict) -> str:
    """``lab run --list``: every scenario, every checklist item and the step actions a
    scenario file can use; nothing runs."""
    from tabulate import tabulate

    from lab.runner.scenario import ACTIONS

    feeds = {name: [item.id for item in CHECKLIST if name in item.scenarios] for name in scenarios}
    scenario_rows = [
        [name, scenario.max_clients, textwrap.shorten(scenario.description, 70), ", ".join(feeds[name]) or "-"]
        for name, scenario in scenarios.items()
    ]
    item_rows = [
        [item.id, item.points, "/".join(item.kinds), item.title, ", ".join(item.scenarios) or "(benchmark client)"]
        for item in CHECKLIST
    ]
    action_rows = [
        [name, ", ".join(action.required), ", ".join(action.optional), textwrap.fill(action.summary, 60)]
        for name, action in ACTIONS.items()
    ]
    return "\n\n".join([
        tabulate(scenario_rows, headers=["scenario", "clients", "what it does", "feeds"]),
        tabulate(item_rows, headers=["item", "points", "programs", "checks that", "scenarios"]),
        tabulate(OUTCOME_LEGEND, headers=["outcome", "scores", "means"]),
        tabulate(action_rows, headers=["step action", "fields", "optional fields", "what it does"]),
    ])


# What each outcome on a scorecard means (``lab run --list`` prints it; the README says the same).
OUTCOME_LEGEND = [
    ["PASS", "yes", "the behaviour was exercised and is right"],
    ["PASS with remark", "yes", "right on the merits but not the assignment's letter; the remark says "
                                "what the letter expects (--strict: a FAIL)"],
    ["FAIL", "no", "exercised and wrong; the cause line names what went wrong first, the hint what to fix"],
    ["NOT EXERCISED", "no", "the scenario never reached the behaviour, so nothing was proven; it says why"],
    ["FLAKY: ...", "its worst", "--repeat N: the outcome changed between runs (the run exits 1)"],
]
