"""Fuzzing ``lab``'s argument handling: random command lines built from the real options
(taken from the parser itself, so a new option is fuzzed as soon as it exists) with right,
nearly right and junk values, run in-process through ``lab.cli.main``.

Property: the answer is exit status 2 with a message on stderr, or a clean run (0; 1 for a
grade that failed; 4 for a bench whose gate failed), never a traceback (exit status 3, the
lab's internal error, fails the property). So that no server, benchmark or container ever
starts, the parts that would start one are replaced for this module: the runner's ``_observe``
(which runs the scenarios) records nothing, each server's ``serve`` returns at once, ``lab
bench``'s measurement (``run_plan``) measures nothing, and a class's grader grades no
submission, in a Docker engine that is there or not (drawn per example) and never called.
Everything around them (parsing, validation, loading submissions and baselines, checking and
writing the results folders, the class's sandbox limits and report) runs for real, in a
temporary working folder.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json

import pytest
from hypothesis import strategies as st

from fuzzing import PLAUSIBLE, PROFILES, check
from lab import container
from lab.bench import cli as bench_cli
from lab.bench import session as bench_session
from lab.bench import platform_info, plots
from lab.cli import build_parser, main
from lab.errors import UsageError
from lab.runner import classroom
from lab.runner import run as runner_run
from lab.runner.scenario import shipped_scenarios
from lab.servers import edge, graceful, level, oneshot, timeout


class Engine:
    """The Docker engine a class would be graded in: reachable or not, drawn per example."""

    reachable = False

    @classmethod
    def connect(cls) -> object:
        if not cls.reachable:
            raise UsageError("no Docker engine (fuzzing)")
        return cls


@pytest.fixture(scope="module", autouse=True)
def nothing_starts():
    def grade_nothing(entry, results_dir, stop):
        return None, {"kind": "native", "reason": "not graded: fuzzing"}

    platform = platform_info.collect()  # once: it reads /proc and runs nothing
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runner_run, "_observe", lambda *args, **kwargs: {})
        # A class grades each submission in a container or a process of its own: neither starts.
        patch.setattr(container, "connect", Engine.connect)
        patch.setattr(container, "ensure_image", lambda client, log=None, *, zig=False: "epoll-lab:fuzzing")
        patch.setattr(classroom, "native_grader", lambda *args, **kwargs: grade_nothing)
        patch.setattr(classroom, "sandboxed_grader", lambda *args, **kwargs: grade_nothing)
        for server in (level, edge, oneshot, timeout, graceful):
            patch.setattr(server, "serve", lambda options: 0)
        # The bench measures nothing (no server starts, no result), then judges and reports.
        patch.setattr(bench_session, "run_plan", lambda plan, progress, runs: None)
        patch.setattr(platform_info, "collect", lambda: platform)
        patch.setattr(plots, "available", lambda: False)
        yield


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (subparsers,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(subparsers.choices)


SUBCOMMANDS = _subcommands()
# Paths stay inside the test's working folder: relative, no "..", but otherwise anything,
# including names of files that exist, folders, a file used as a folder, and a NUL byte.
# Only the files read (scenarios, a submission) may also be the shipped scenarios folder.
PATHS = st.one_of(
    st.sampled_from(["results", "out/deeper", "good.toml", "broken.toml", "sub.toml", "a-file", "a-file/x.xml",
                     ".", "", "missing.toml", "a\0b"]),
    st.text(max_size=10).filter(lambda text: not text.startswith(("/", "~", "-")) and ".." not in text),
)
PATHS_BY_DEST = {
    "results": PATHS, "junit": PATHS, "stats_file": PATHS,
    "scenarios": st.one_of(PATHS, st.just(str(shipped_scenarios()))), "submission": PATHS,
    "merge": st.one_of(PATHS, st.just("a-class")), "copy_to": PATHS,
    "baseline": st.one_of(PATHS, st.sampled_from(["old.json", "corrupt.json", "bench-old"])),
}
JUNK = st.one_of(PLAUSIBLE.map(str), st.text(max_size=12))
DURATIONS = ["500ms", "1s", "0.9999999999", "0", "0s", "nan", "inf", "-1s", "2d", "1e9", "0.0000000001"]
COUNTS = ["1", "2", "100", "0", "-5", "1e3", "1_000", "99999999999999999999"]
SIZES = ["64", "4KiB", "1MiB", "0", "2TiB", "1.5b", "-1"]
# What a person would type for each option (by its dest): right, nearly right and wrong.
TYPICAL = {
    "port": ["0", "8080", "65535", "65536", "-1", "http"],
    "host": ["127.0.0.1", "::1", "[::1]", "localhost", "0.0.0.0", ""],
    "only": ["edge.drains", "level.echoes", "errors", "level", "edge.drain"],
    "cmd": ["./srv {port}", "./srv", "mine=./srv {port}", "./srv '{port}", "./srv {port} \\"],
    "target": ["level", "edge", "level,edge", "all", "uvloop", "nope"],
    "workload": ["pingpong", "stream", "pingpong,stream", "nope"],
    "connections": ["100", "100,1000", "0", ""], "requests": ["10", "10,20", "-1"],
    "positional_connections": COUNTS, "positional_requests": COUNTS,
    "rate": ["1000", "0", "nan", "inf", "-5"],
    **dict.fromkeys(["tick", "idle_timeout", "drain_timeout", "ready_timeout", "timeout"], DURATIONS),
    **dict.fromkeys(["max_buffer", "size", "stream_size"], SIZES),
    **dict.fromkeys(["backlog", "threads", "pipeline", "warmup", "stream_connections", "repeat", "workers",
                     "jobs", "pids"], COUNTS),
    **dict.fromkeys(["memory", "file_size"], [*SIZES, "1GiB", "64MiB"]),
    "time_limit": DURATIONS, "cpus": ["2", "0.5", "0", "-1", "nan", "inf", "two"],
    "name": ["alice", "", "../x", "a/b", "Zoë"],
    "threshold": ["p99<5ms", "req_per_s>50000", "edge:server_us_per_req<10", "p99=5", "nope<1", "p99<5kb"],
    "max_regression": ["10%", "10", "0%", "100%", "-5%", "ten"],
}


def _value(action: argparse.Action):
    if action.dest in PATHS_BY_DEST:
        return PATHS_BY_DEST[action.dest]
    if action.choices:
        typical = st.sampled_from(sorted(map(str, action.choices)))
    elif action.dest in TYPICAL:
        typical = st.sampled_from(TYPICAL[action.dest])
    else:
        return JUNK
    return st.one_of(typical, typical, typical, JUNK)  # mostly what people type, sometimes junk


def _chunk(draw, action: argparse.Action) -> list[str]:
    """One option with its value, or one positional value."""
    if not action.option_strings:
        return [draw(_value(action))]
    words = [draw(st.sampled_from(action.option_strings))]
    return words + [draw(_value(action))] if action.nargs != 0 else words


@st.composite
def command_lines(draw, name: str) -> list[str]:
    """Options and positionals of ``name`` in any order, most with values people type."""
    actions = [a for a in SUBCOMMANDS[name]._actions if not isinstance(a, argparse._HelpAction)]
    options = [a for a in actions if a.option_strings]
    chunks = [_chunk(draw, action) for action in draw(st.lists(st.sampled_from(options), max_size=4))]
    for action in (a for a in actions if not a.option_strings):
        # Mostly as many values as the parser wants, sometimes one less or one more.
        wanted = {None: 1, "?": draw(st.integers(0, 1))}.get(action.nargs, draw(st.integers(0, 2)))
        count = draw(st.sampled_from([wanted, wanted, wanted, max(0, wanted - 1), wanted + 1]))
        chunks += [_chunk(draw, action) for _ in range(count)]
    if draw(st.integers(0, 4)) == 0:
        chunks.append([draw(JUNK)])
    return [name, *[word for chunk in draw(st.permutations(chunks)) for word in chunk]]


# Command lines that work (as in the README), to be changed by one or two options: reaches
# the checks behind the parser far more often than random lines do.
WORKING = {
    "run": [["--target", "edge", "--only", "edge.drains"], ["--cmd", "./srv {port}", "--as", "edge"],
            ["--list"], ["good.toml", "--target", "level"], ["--target", "timeout", "--junit", "j.xml"]],
    "grade": [[], ["sub.toml", "--only", "edge"], ["--only", "errors", "--results", "out"],
              ["sub.toml", "good.toml", "--jobs", "2"], [".", "--no-sandbox"], ["--merge", "results"],
              ["sub.toml", "--name", "alice", "--copy-to", "work"],
              # A class: a folder of student folders, or several files, with its options.
              ["a-class", "--jobs", "2", "--memory", "512MiB", "--pids", "64"],
              ["sub.toml", "good-sub.toml", "--no-sandbox", "--time-limit", "5min"],
              ["a-class", "--sandbox", "--cpus", "1.5", "--file-size", "8MiB", "--results", "out"],
              ["--merge", "results", "--results", "out"], ["sub.toml", "--sandbox"]],
    "serve": [["timeout", "--tick", "250ms"], ["level", "--port", "0"], ["graceful", "--drain-timeout", "5s"]],
    "bench": [["127.0.0.1", "8080"], ["--target", "level,edge", "-c", "10"], ["--cmd", "mine=./srv {port}"],
              ["--target", "edge", "--baseline", "old.json", "--results", "out"],
              ["127.0.0.1", "8080", "--threshold", "p99<5ms", "--no-plots"]],
}


@st.composite
def nearly_working_command_lines(draw, name: str) -> list[str]:
    options = [a for a in SUBCOMMANDS[name]._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
    words = [name, *draw(st.sampled_from(WORKING[name]))]
    for action in draw(st.lists(st.sampled_from(options), max_size=2)):  # none: the line as it works
        words += _chunk(draw, action)  # a repeated option: the last value wins
    return words


SCENARIO = 'description = "d"\n[[steps]]\naction = "probe"\nsave = "p"\n'
BASELINE = [{"target": "edge", "workload": "pingpong", "connections": 100, "size": 64, "pipeline": 1,
             "mode": "closed-loop", "req_per_s": 50_000.0, "req_per_s_spread": {"relative": 0.05}}]


def _write_files(folder) -> None:
    """What the command lines name: scenarios, submissions, a class, baselines, a plain file."""
    (folder / "good.toml").write_text(SCENARIO)
    (folder / "broken.toml").write_text(SCENARIO.replace('"probe"', '["probe"]'))
    (folder / "sub.toml").write_text('[edge]\ncmd = "./edge {port}"\n')
    (folder / "good-sub.toml").write_text('name = "bob"\n[level]\ncmd = "./level {port}"\nready_timeout = "1s"\n')
    for student in ("alice", "bob"):
        (folder / "a-class" / student).mkdir(parents=True)
        (folder / "a-class" / student / "submission.toml").write_text('[edge]\ncmd = "./edge {port}"\n')
    (folder / "old.json").write_text(json.dumps(BASELINE))
    (folder / "corrupt.json").write_text(json.dumps([{**BASELINE[0], "req_per_s": "fast"}]))
    (folder / "bench-old").mkdir()
    (folder / "bench-old" / "bench.json").write_text(json.dumps(BASELINE))
    (folder / "a-file").write_text("")


@pytest.mark.parametrize("subcommand", sorted(SUBCOMMANDS))
@pytest.mark.parametrize("profile", PROFILES)
def test_any_command_line_is_a_message_and_status_2_or_a_clean_run(profile, subcommand, tmp_path):
    _write_files(tmp_path)
    clean = (0, 1, 2, 4) if subcommand == "bench" else (0, 1, 2)  # bench: 4, a failed gate

    with contextlib.chdir(tmp_path):  # every path the command lines name is in here
        # Twice as many nearly working lines as random ones: they get past the parser.
        nearly_working = nearly_working_command_lines(subcommand)
        @check(profile, st.one_of(command_lines(subcommand), nearly_working, nearly_working), st.booleans())
        def prop(argv, engine_reachable):
            Engine.reachable = engine_reachable
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    status = main(argv)
                except SystemExit as leaving:  # argparse: its own errors, --help, --version
                    status = leaving.code or 0
            assert status in clean, (argv, status, err.getvalue())
            if status == 2:
                assert err.getvalue().strip(), argv
            assert "Traceback" not in err.getvalue()
