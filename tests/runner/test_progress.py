"""Progress: a rewritten line on a terminal, one plain line per step elsewhere."""

from __future__ import annotations

import io

from lab.runner.progress import Progress
from lab.runner.scenario import parse_scenario

TWO_STEPS = """description = "two steps"
[[steps]]
action = "connect"
group = "one"
clients = 1
[[steps]]
action = "echo"
group = "one"
size = "64KiB"
"""


def show_two_steps(progress: Progress) -> None:
    scenario = parse_scenario(TWO_STEPS, "burst-then-wait.toml")
    progress.begin_program("edge", "srv {port}")
    for step in scenario.steps:
        progress(scenario, step, 1)
    progress.done()


def test_plain_lines_without_a_terminal():
    stream = io.StringIO()
    show_two_steps(Progress(stream, tty=False))
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[edge] srv {port}"
    assert lines[1].startswith("[edge] burst-then-wait step 1/2: connect one (1 connections open, ")
    assert lines[2].startswith("[edge] burst-then-wait step 2/2: echo one")
    assert "\r" not in stream.getvalue()


def test_one_rewritten_line_on_a_terminal():
    stream = io.StringIO()
    show_two_steps(Progress(stream, tty=True))
    text = stream.getvalue()
    assert text.count("\r\x1b[K") == 4  # program line, two steps, the final erase
    assert text.endswith("\r\x1b[K")
