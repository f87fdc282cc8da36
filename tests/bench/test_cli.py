"""``lab bench`` argument checking: every misuse is one message and exit status 2, decided
before anything starts (so these tests open no socket)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from lab.bench import cli as bench_cli
from lab.bench import session as bench_session
from lab.bench.options import build_gate, build_plan, parse_counts
from lab.bench.pinning import default_pinning, running_on
from lab.cli import build_parser, main
from lab.errors import UsageError
from lab.files import check_folder_writable


def plan_of(*argv: str):
    return build_plan(build_parser().parse_args(["bench", *argv]))


def test_assignment_form_defaults_to_100_by_100():
    plan, notes = plan_of("127.0.0.1", "8080")
    assert plan.external == ("127.0.0.1", 8080) and plan.targets == [] and notes == []
    [workload] = plan.workloads
    assert (workload.kind, workload.connections, workload.requests, workload.size) == ("pingpong", 100, 100, 64)
    assert workload.warmup == 10 and plan.repeats == 1


def test_assignment_form_with_counts():
    plan, _ = plan_of("localhost", "9000", "10000", "10")
    [workload] = plan.workloads
    assert (workload.connections, workload.requests, workload.warmup) == (10_000, 10, 1)


def test_targets_and_connection_grid():
    plan, _ = plan_of("--target", "level,edge", "--cmd", "./srv --port {port}", "-c", "100,1000",
                      "--workload", "pingpong,stream", "--stream-size", "1MiB")
    assert [t.name for t in plan.targets] == ["level", "edge", "srv"]
    assert [(w.kind, w.connections) for w in plan.workloads] == [
        ("pingpong", 100), ("pingpong", 1000), ("stream", 1)]
    assert plan.workloads[-1].stream_bytes == 1024 * 1024 and plan.repeats == 3


def test_cmd_targets_are_named_by_their_prefix_or_their_program():
    plan, _ = plan_of("--cmd", "./srv --port {port}", "--cmd", "./srv -p {port}",
                      "--cmd", "t1=python -m lab serve oneshot --threads 1 --port {port}")
    assert [t.name for t in plan.targets] == ["srv", "srv#2", "t1"]
    assert plan.targets[2].argv[:2] == ("python", "-m") and plan.targets[2].fixed_port


def test_request_counts_pair_up_with_connection_counts():
    plan, _ = plan_of("--target", "edge", "-c", "100,1000,10000", "-n", "1000,100,10")
    assert [(w.connections, w.requests, w.warmup) for w in plan.workloads] == [
        (100, 1000, 100), (1000, 100, 10), (10000, 10, 1)]


def test_all_targets():
    plan, notes = plan_of("--target", "all")
    names = [t.name for t in plan.targets] + [note.split()[0] for note in notes]
    assert sorted(names) == sorted(["level", "edge", "oneshot", "asyncio-streams", "asyncio-protocol", "uvloop"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "nothing to measure"),
        (["127.0.0.1"], "give both HOST and PORT"),
        (["127.0.0.1", "http"], "PORT must be a whole number"),
        (["127.0.0.1", "70000"], "at most 65535"),
        (["127.0.0.1", "80", "0"], "CONNECTIONS must be at least 1"),
        (["127.0.0.1", "80", "10", "-5"], "at least 1"),
        (["127.0.0.1", "80", "--target", "edge"], "pick one"),
        (["127.0.0.1", "80", "--strace"], "--strace needs a server the bench starts"),
        (["127.0.0.1", "80", "5", "-c", "7"], "connection count once"),
        (["--target", "nginx"], "unknown --target nginx"),
        (["--target", "edge,edge"], "twice"),
        (["--target", "edge", "--workload", "udp"], "unknown --workload udp"),
        (["--target", "edge", "-c", "10,x"], "--connections must be a whole number"),
        (["--target", "edge", "-c", ","], "at least one number"),
        (["--target", "edge", "-c", "1,2,3", "-n", "5,6"], "one per count"),
        (["--target", "edge", "--size", "lots"], "--size"),
        (["--target", "edge", "--size", "0"], "--size must be greater than 0 bytes"),
        (["--target", "edge", "--rate", "fast"], "--rate must be a number"),
        (["--target", "edge", "--rate", "0"], "greater than 0"),
        (["--target", "edge", "--rate", "100", "--pipeline", "4"], "drop --pipeline"),
        (["--target", "edge", "--timeout", "0"], "greater than 0"),
        (["--target", "edge", "--workers", "5", "-c", "4"], "more than the 4 connection"),
        (["--target", "edge", "--repeat", "0"], "--repeat must be at least 1"),
        (["--cmd", "./server"], "has no {port}"),
        (["--cmd", "'unbalanced"], "--cmd"),
        (["--cmd", "edge=./srv {port}"], "already taken"),
        (["--cmd", "a=./x {port}", "--cmd", "a=./y {port}"], "already taken"),
        (["--target", "edge", "-d", "0"], "--duration must be greater than 0"),
        (["--target", "edge", "-d", "soon"], "--duration: expected a duration"),
        (["--target", "edge", "-d", "2s", "-n", "10"], "requests per connection (-n) or a duration (-d)"),
        (["127.0.0.1", "80", "--pin"], "--pin needs a server the bench starts"),
        (["--target", "edge", "-d", "2s", "--workload", "stream"], "--duration times the pingpong workload"),
    ],
)
def test_misuse_is_a_usage_error(argv, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        plan_of(*argv)


def gate_of(*argv: str):
    args = build_parser().parse_args(["bench", *argv])
    plan, _ = build_plan(args)
    return build_gate(args, plan)


def test_a_timed_run_replaces_the_request_count():
    plan, _ = plan_of("--target", "edge", "-c", "100,1000", "-d", "2s")
    assert [(w.connections, w.duration, w.warmup) for w in plan.workloads] == [(100, 2.0, 10), (1000, 2.0, 10)]
    # An open loop's length is its schedule: 1,000 req/s for 2 s over 10 connections.
    plan, _ = plan_of("--target", "edge", "-c", "10", "-d", "2s", "--rate", "1000")
    [workload] = plan.workloads
    assert (workload.requests, workload.duration) == (200, None)


def test_pinning_is_the_default_for_started_servers_only():
    assert plan_of("--target", "edge")[0].pinning == default_pinning()
    assert plan_of("--target", "edge", "--no-pin")[0].pinning is None
    assert plan_of("127.0.0.1", "8080")[0].pinning is None  # someone else's server: not ours to pin


def test_one_cpu_means_no_pinning_and_an_explicit_pin_is_refused():
    with running_on({min(os.sched_getaffinity(0))}):
        assert plan_of("--target", "edge")[0].pinning is None
        with pytest.raises(UsageError, match="--pin needs at least 2 usable CPUs; this process may use 1"):
            plan_of("--target", "edge", "--pin")


def test_gate_options():
    gate = gate_of("--target", "edge,level", "--threshold", "p99<5ms", "--threshold", "edge:req_per_s>5k")
    assert [(t.target, t.metric.name, t.limit) for t in gate.thresholds] == [(None, "p99", 5.0),
                                                                             ("edge", "req_per_s", 5000.0)]
    assert gate.baseline is None and not gate_of("--target", "edge")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--threshold", "p99=5"], "--threshold 'p99=5': '=' cannot judge"),
        (["--threshold", "level:p99<5"], "no target 'level' in this run (it measures edge)"),
        (["--max-regression", "5%"], "--max-regression needs --baseline"),
        (["--baseline", "/nonexistent/bench.json"], "--baseline /nonexistent/bench.json: no such file"),
    ],
)
def test_gate_misuse_is_a_usage_error(argv, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        gate_of("--target", "edge", *argv)


def test_a_bad_threshold_exits_2_before_anything_runs(capsys):
    assert main(["bench", "--target", "edge", "--threshold", "p99<5kb"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lab bench: --threshold 'p99<5kb': p99 is in ms") and "Traceback" not in err


def test_misuse_exits_2_with_one_line_and_no_traceback(capsys):
    assert main(["bench", "--target", "edge", "-c", "many"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lab bench: --connections must be a whole number") and "Traceback" not in err


def test_counts():
    assert parse_counts("100, 1000,10_000", "-c") == [100, 1000, 10_000]


def test_python_m_lab_bench_help_smoke():
    done = subprocess.run([sys.executable, "-m", "lab", "bench", "--help"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0 and "REQUESTS_PER_CONNECTION" in done.stdout and "--target" in done.stdout
    assert "Exit status:" in done.stdout and "--threshold" in done.stdout and "--pin, --no-pin" in done.stdout


@pytest.fixture
def nothing_measured(monkeypatch):
    """Any measurement fails the test: these misuses must be refused before one starts."""
    def measure(*args, **kwargs):
        raise AssertionError("the bench measured before it refused the command line")

    monkeypatch.setattr(bench_session, "run_plan", measure)


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ("a-file", "--results a-file: is a file, not a folder"),
        ("a-file/deeper", "--results a-file/deeper: a-file is not a folder"),
        ("a\0b", "--results 'a\\x00b': not a file name (it holds a NUL byte)"),
    ],
)
def test_an_unwritable_results_folder_exits_2_before_measuring(nothing_measured, capsys, tmp_path, monkeypatch,
                                                                 results, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("")
    assert main(["bench", "--target", "edge", "--results", results]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lab bench: {message}") and "Traceback" not in err


def test_a_folder_even_root_cannot_write_in_is_refused(nothing_measured, capsys):
    try:  # /sys refuses new files to root too (EACCES), where mounted as usual
        open("/sys/.lab-bench-probe", "x").close()
    except OSError:
        pass
    else:
        os.unlink("/sys/.lab-bench-probe")
        pytest.skip("/sys is writable here")
    assert main(["bench", "--target", "edge", "--results", "/sys"]) == 2
    assert "--results /sys: cannot write in /sys: Permission denied" in capsys.readouterr().err


def test_a_writable_results_folder_is_left_as_it_was(tmp_path):
    # Negative control: the check creates its trial file and removes it, and no folder.
    check_folder_writable(tmp_path / "new" / "deeper", "--results")
    assert list(tmp_path.iterdir()) == []


BENCH_RESULT = {"target": "edge", "workload": "pingpong", "connections": 100}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("[{", "not JSON"),
        ("[" * 100_000, "not JSON"),
        (b"\xff\xfe", "cannot read it"),
        ({"target": "edge"}, "not a lab bench report"),
        ([{**BENCH_RESULT, "req_per_s": "fast"}], "result 1: req_per_s must be a finite number, got 'fast'"),
        ([{**BENCH_RESULT, "req_per_s": 10 ** 400}], "result 1: req_per_s must be a finite number"),
        ([{**BENCH_RESULT, "server_cpu": [8.0]}], "result 1: server_us_per_op is not where a bench.json keeps it"),
        ([{**BENCH_RESULT, "req_per_s": 1.0, "req_per_s_spread": 0.1}],
         "result 1: req_per_s_spread must be an object with a number 'relative'"),
    ],
)
def test_a_missing_or_corrupt_baseline_exits_2_before_measuring(nothing_measured, capsys, tmp_path, content,
                                                                 message):
    baseline = tmp_path / "bench.json"
    if isinstance(content, bytes):
        baseline.write_bytes(content)
    elif isinstance(content, str):
        baseline.write_text(content)
    elif content is not None:
        baseline.write_text(json.dumps(content))
    assert main(["bench", "--target", "edge", "--baseline", str(baseline), "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lab bench: --baseline {baseline}") and message in err and "Traceback" not in err


def test_a_baseline_path_with_a_nul_byte_exits_2(nothing_measured, capsys):
    assert main(["bench", "--target", "edge", "--baseline", "old\0/bench.json"]) == 2
    assert "lab bench: --baseline 'old\\x00/bench.json': not a file name" in capsys.readouterr().err
