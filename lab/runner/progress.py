"""Live progress on stderr: one rewritten line on a terminal, plain lines elsewhere.

On a TTY the line is redrawn in place (``\\r`` and erase-to-end-of-line) for every step; in CI
or ``docker logs`` each step is a line of its own, so the log reads top to bottom.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from lab.runner.scenario import Scenario, Step


class Progress:
    def __init__(self, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.started = time.monotonic()
        self.program = ""

    def begin_program(self, program: str, command: str) -> None:
        self.program = program
        self._line(f"[{program}] {command}", final=True)

    def __call__(self, scenario: Scenario, step: Step, clients: int) -> None:
        elapsed = time.monotonic() - self.started
        self._line(
            f"[{self.program}] {scenario.name} step {step.index}/{len(scenario.steps)}: "
            f"{step.describe()} ({clients:,} connections open, {elapsed:.1f} s)"
        )

    def note(self, text: str) -> None:
        self._line(f"[{self.program}] {text}" if self.program else text, final=True)

    def done(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def _line(self, text: str, final: bool = False) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
