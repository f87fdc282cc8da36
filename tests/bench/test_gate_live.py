"""The CI gate against real servers: a server that regressed (tests/bench/wrong_echo.py
``slow``: 1 ms of sleep per event, so at most 1,000 replies a second) fails it with exit
status 4 and the failing line; the same server without the fault passes the same gate.

The limits sit far from both sides so that a loaded machine cannot flip a verdict: the slow
server cannot exceed 1,000 req/s whatever the load, and the correct one, at 100 connections,
answers several times faster than that even on two busy cores. Its req/s still varies by up to
2x between runs seconds apart at a load average of 27 on this lab's two cores, and fell to
4,900 req/s while the whole quick tier ran: hence a baseline limit of 70 % (a 3.3x drop), between
the two, and not the 10 % a quiet CI runner would use."""

from __future__ import annotations

import json
import sys

import pytest

from lab.cli import main

from .conftest import WRONG_ECHO

LOAD = ("-c", "100", "-n", "10", "--no-plots")


def server(mode: str) -> str:
    """The same --cmd name for both modes, so a baseline of one matches the other."""
    return f"srv={sys.executable} {WRONG_ECHO} {mode} {{port}}"


def bench(capsys, results, *argv: str) -> tuple[int, str, str]:
    status = main(["bench", *argv, "--results", str(results)])
    out, err = capsys.readouterr()
    return status, out, err


def test_a_threshold_fails_on_a_server_that_regressed(capsys, tmp_path):
    status, out, err = bench(capsys, tmp_path, "--cmd", server("slow"), *LOAD, "--repeat", "1",
                             "--threshold", "req_per_s>1500", "--threshold", "p99<10s")
    assert status == 4, err
    assert "✗ req_per_s>1500: 1 of 1 result(s) fail\n    srv pingpong at 100 connection(s): " in out
    assert "✓ p99<10s: 1 result(s) pass" in out  # the gate judges each threshold on its own
    assert "the gate failed (exit status 4)" in err
    [report] = tmp_path.iterdir()
    assert "✗ req_per_s>1500" in (report / "bench.md").read_text()


def test_the_same_threshold_passes_without_the_fault(capsys, tmp_path):
    status, out, err = bench(capsys, tmp_path, "--cmd", server("correct"), *LOAD, "--repeat", "1",
                             "--threshold", "req_per_s>1500")
    assert status == 0, err
    assert "✓ req_per_s>1500: 1 result(s) pass" in out and "✗" not in out


def test_baseline_catches_the_regression_and_passes_a_rerun(capsys, tmp_path):
    status, _, err = bench(capsys, tmp_path / "old", "--cmd", server("correct"), *LOAD, "--repeat", "3")
    assert status == 0, err
    [old] = (tmp_path / "old").iterdir()
    baseline = json.loads((old / "bench.json").read_text())[0]["req_per_s"]
    if baseline < 1000 / (1 - 0.7):  # the slow server's ceiling would be within the limit
        pytest.skip(f"the correct server did only {baseline:,.0f} req/s: the machine is too busy for the "
                    "slow one's 1,000 req/s to fall 70 % below it")

    status, out, err = bench(capsys, tmp_path / "slow", "--cmd", server("slow"), *LOAD, "--repeat", "1",
                             "--baseline", str(old), "--max-regression", "70%")
    assert status == 4, err
    assert "✗ baseline srv pingpong at 100 connection(s) req_per_s: " in out and "limit 70 % worse" in out

    # Negative control: the correct server again, against the same baseline and limit.
    status, out, err = bench(capsys, tmp_path / "again", "--cmd", server("correct"), *LOAD, "--repeat", "3",
                             "--baseline", str(old / "bench.json"), "--max-regression", "70%")
    assert status == 0, out + err
    assert "✓ baseline srv pingpong at 100 connection(s) req_per_s: " in out
