"""A submission's build step: ``build = "zig build -Doptimize=ReleaseSafe"``, run once from the
submission's folder before anything is graded.

``zig`` is looked up on PATH first, then taken from PyPI's ``ziglang`` package
(``pip install -e '.[zig]'``) as ``python -m ziglang``, so a venv with the lab's ``zig`` extra
needs no other download. A build command that cannot be found at all is a usage error (exit
2: the machine lacks a tool, the submission is not at fault). A build that runs and fails is
a failed grade: every item fails with that reason and the compiler's first error line, and its
whole output is kept in the results folder as ``build-output.txt``, its last lines also shown
on the terminal.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lab.errors import UsageError
from lab.executable import start_error

BUILD_TIMEOUT = 900.0  # a first Zig build compiles the standard library: minutes on a busy machine
OUTPUT_FILE = "build-output.txt"
TAIL_LINES = 12
ERROR_LINE_CHARS = 300
# The image with Zig holds a global cache pre-built at image build time (`zig build` of
# `zig init`'s project): the build runner, compiler_rt and the standard library's ZIR, which
# every submission's build needs. Measured on examples/zig, it halves a cold build's CPU time
# (230 s to 113 s) and its memory peak (790 MiB to 375 MiB, the build runner's compile).
ZIG_CACHE_SEED_ENV = "LAB_ZIG_CACHE_SEED"
ZIG_EXTRA_HINT = "pip install -e '.[zig]' (PyPI's ziglang, pinned in pyproject.toml)"


@dataclass(slots=True, frozen=True)
class BuildStep:
    """The build command as written, and the folder it runs in."""

    argv: tuple[str, ...]
    cwd: Path
    timeout: float = BUILD_TIMEOUT

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


@dataclass(slots=True, frozen=True)
class BuildResult:
    command: str
    status: int | None  # None: it did not finish within the timeout
    seconds: float
    output: str
    limits: str | None = None  # what the sandbox's limits did meanwhile ("killed: out of memory ...")

    @property
    def ok(self) -> bool:
        return self.status == 0

    def summary(self) -> str:
        """One line: what ran and how it ended."""
        if self.status is None:
            ended = "did not finish within its timeout"
        elif self.status == 0:
            ended = "succeeded"
        else:
            ended = f"failed with exit status {self.status}"
        limits = f" ({self.limits})" if self.limits else ""
        return f"the build `{self.command}` {ended} after {self.seconds:.1f} s{limits}"

    def first_error(self) -> str:
        """The compiler's first error line (zig, gcc, clang and rustc all write ``error:``), else
        the output's last line: what a failed build's items name as the cause."""
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        named = next((line for line in lines if "error:" in line), lines[-1] if lines else "")
        return named[:ERROR_LINE_CHARS]

    def reason(self) -> str:
        """The summary, and for a failed build its first error."""
        error = "" if self.ok else self.first_error()
        return f"{self.summary()}: {error}" if error else self.summary()

    def tail(self, lines: int = TAIL_LINES) -> str:
        return "\n".join(self.output.rstrip().splitlines()[-lines:])

    def to_json(self) -> dict:
        return {"command": self.command, "status": self.status, "seconds": round(self.seconds, 1),
                "output": OUTPUT_FILE}


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def resolve_command(argv: tuple[str, ...] | list[str], which=None, has_module=None) -> list[str]:
    """The argv to run: ``zig`` from PATH, else ``python -m ziglang``. Raises UsageError naming
    the missing tool and how to get it. ``which`` and ``has_module`` default to shutil.which
    and ``installed``."""
    which, has_module = which or shutil.which, has_module or installed
    program, *rest = argv
    if "/" in program or which(program) is not None:
        return list(argv)
    if program == "zig":
        if has_module("ziglang"):
            return [sys.executable, "-m", "ziglang", *rest]
        raise UsageError(f"the build needs `zig`: it is not on PATH and the Python package ziglang "
                         f"is not installed; {ZIG_EXTRA_HINT}")
    raise UsageError(f"the build command `{shlex.join(argv)}` cannot run: {program} is not on PATH")


def seed_zig_cache(environ=os.environ) -> str | None:
    """Copy the image's pre-built Zig cache (LAB_ZIG_CACHE_SEED) to ZIG_GLOBAL_CACHE_DIR when
    both are set and the latter does not exist yet: Zig writes in its cache, and a sandbox's
    root is read-only, so the cache is a copy on the tmpfs. Returns a line for the build's
    output, or None when there was nothing to do."""
    seed, cache = environ.get(ZIG_CACHE_SEED_ENV), environ.get("ZIG_GLOBAL_CACHE_DIR")
    if not seed or not cache or not Path(seed).is_dir() or Path(cache).exists():
        return None
    try:
        shutil.copytree(seed, cache, symlinks=True)
    except (OSError, shutil.Error) as error:  # a full tmpfs: the build then starts cold
        shutil.rmtree(cache, ignore_errors=True)
        return f"(the pre-built Zig cache {seed} could not be copied to {cache}: {error}; building cold)"
    return f"(Zig's global cache {cache} starts as a copy of the image's pre-built {seed})"


def run_build(step: BuildStep, argv: list[str], output_path: Path) -> BuildResult:
    """Run the resolved ``argv`` in the submission's folder; its output goes to ``output_path``."""
    started = time.monotonic()
    with output_path.open("w+", encoding="utf-8", errors="replace") as output:
        output.write(f"$ {step.command}\n(run as {shlex.join(argv)} in {step.cwd})\n")
        seeded = seed_zig_cache() if Path(step.argv[0]).name == "zig" else None
        if seeded:
            output.write(seeded + "\n")
        output.flush()
        try:
            done = subprocess.run(argv, cwd=step.cwd, stdin=subprocess.DEVNULL, stdout=output,
                                  stderr=subprocess.STDOUT, timeout=step.timeout)
            status = done.returncode
        except subprocess.TimeoutExpired:  # subprocess.run killed it already
            status = None
        except OSError as error:
            raise UsageError(f"the build command `{step.command}` cannot run: "
                             f"{start_error(error, argv[0], step.cwd)}") from None
        output.seek(0)
        text = output.read()
    return BuildResult(step.command, status, time.monotonic() - started, text)
