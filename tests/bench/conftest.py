"""Fixtures for the bench tests: the deliberately wrong echo server and the in-process CLI.

``wrong_echo(mode)`` starts tests/bench/wrong_echo.py through ServerProcess (stopped at
teardown); ``bench([...])`` runs ``lab bench ...`` in this process with its report under
tmp_path and returns (exit status, stdout, stderr).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from lab.cli import main
from lab.process import ServerProcess

WRONG_ECHO = Path(__file__).with_name("wrong_echo.py")

# Capability, decided once: the --strace test needs strace and the right to ptrace.
HAVE_STRACE = shutil.which("strace") is not None


@pytest.fixture
def wrong_echo(tmp_path):
    started: list[ServerProcess] = []

    def start(mode: str) -> ServerProcess:
        server = ServerProcess([sys.executable, str(WRONG_ECHO), mode], log_dir=tmp_path / f"wrong-{mode}",
                               ready_timeout=10)
        started.append(server)
        server.start()
        server.wait_listening()
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def bench(tmp_path, capsys):
    def run(*argv: str) -> tuple[int, str, str]:
        status = main(["bench", *argv, "--results", str(tmp_path / "results")])
        out, err = capsys.readouterr()
        return status, out, err

    return run


def report_dir(tmp_path: Path) -> Path:
    [directory] = (tmp_path / "results").iterdir()
    return directory
