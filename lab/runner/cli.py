"""``lab run`` and ``lab grade``: the scenario runner and the checklist grader on the command line.

``lab run`` grades one program (a reference server with ``--target KIND``, or any command
with ``--cmd '... {port}' --as KIND``) on the items of its kind; ``lab grade`` grades a whole
submission (or, without a file, our own reference servers and benchmark). Both print the
scorecard, write ``results/<stamp>-<name>/`` and exit 0 when every mandatory item graded
passed, 1 otherwise, 2 on a usage or scenario error.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from lab.errors import UsageError
from lab.runner.checklist import CHECKLIST, KINDS
from lab.units import parse_duration


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


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
        description="Run the scenarios against one server and grade it on the checklist items of its kind.",
        epilog="example: lab run --cmd './zig-out/bin/edge_triggered_epoll {port}' --as edge",
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
    run.add_argument("--ready-timeout", type=_duration, metavar="DURATION",
                     help="how long the program may take to start listening (default 15s)")
    _common(run)
    run.set_defaults(handler=run_command)

    grade = subparsers.add_parser(
        "grade",
        help="grade a submission (default: our reference servers, which must score 100)",
        description="Grade every program of a submission file on the whole checklist. Without a "
                    "file: our five reference servers and our benchmark.",
    )
    grade.add_argument("submission", nargs="?", type=Path, metavar="SUBMISSION.toml",
                       help="the submission file (see lab/runner/submission.py for its fields)")
    _common(grade)
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
    from lab.runner.progress import Progress
    from lab.runner.run import grade_program, load_scenarios

    if args.list:
        print(listing(load_scenarios(args.scenarios)))
        return 0
    report = grade_program(_target(args), args.only, results_dir=args.results, progress=Progress(),
                          scenarios=args.scenarios, junit=args.junit, strict=args.strict, repeat=args.repeat)
    return _print(report)


def grade_command(args: argparse.Namespace) -> int:
    from lab.runner.progress import Progress
    from lab.runner.run import grade_submission
    from lab.runner.submission import load_submission, reference

    submission = load_submission(args.submission) if args.submission else reference()
    report = grade_submission(submission, args.only, results_dir=args.results, progress=Progress(),
                              junit=args.junit, strict=args.strict, repeat=args.repeat)
    return _print(report)


def _print(report) -> int:
    from lab.runner.report import terminal_table

    print(terminal_table(report))
    print(f"results: {report.run_dir}")
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
