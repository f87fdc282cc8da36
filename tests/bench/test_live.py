"""The bench on tiny workloads against real servers: it works, it verifies, it reports.

Each test starts its own servers (port 0) and the bench closes every socket it opens
(``filterwarnings = error`` turns a leaked one into a failure). Workloads are a few
connections and a few hundred requests: this checks behaviour, not speed.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lab.bench.client import LoadClient
from lab.bench.pinning import default_pinning
from lab.bench.workload import Workload
from lab.process import ServerProcess

from .conftest import HAVE_STRACE, report_dir


def test_bench_compares_a_reference_server_and_a_baseline(bench, tmp_path):
    status, out, err = bench("--target", "edge,asyncio-protocol", "-c", "4", "-n", "100", "--repeat", "1",
                             "--no-plots")
    assert status == 0, err
    results = json.loads((report_dir(tmp_path) / "bench.json").read_text())
    assert [r["target"] for r in results] == ["edge", "asyncio-protocol"]
    for result in results:
        assert result["requests"] == 400 and result["req_per_s"] > 0
        assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["max"]
        assert result["server_cpu"] is not None and result["platform"]["kernel"].startswith("Linux")
    edge, baseline = results
    # The lab server's own counters: one recv and one send per 64-byte request at least.
    assert edge["counters_per_op"]["recv_calls"] >= 1 and edge["counters_per_op"]["send_calls"] >= 1
    assert baseline["counters_per_op"] is None  # asyncio keeps no such counters
    markdown = (report_dir(tmp_path) / "bench.md").read_text()
    assert "| edge" in markdown and "| asyncio-protocol" in markdown
    assert "edge" in out and "report:" in out


def test_assignment_form_against_a_running_server(bench, serve):
    server = serve("level", stats=False)
    status, out, err = bench(server.process.host, str(server.process.port), "5", "60", "--no-plots")
    assert status == 0, err
    assert "total requests: 300" in out and "req/s" in out and "every reply verified" in out


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("flip", "wrong reply"),
        ("extra", "wrong reply"),  # one byte too many: caught by reading one byte past the reply
        ("stale", "wrong reply"),  # the previous request again: caught by alternating payloads
        ("close", "closed connection"),
        ("silent", "sent nothing"),
    ],
)
def test_a_wrong_echo_fails_loudly(bench, wrong_echo, mode, message):
    server = wrong_echo(mode)
    status, out, err = bench(server.host, str(server.port), "2", "10", "--timeout", "0.5s", "--no-plots")
    assert status == 1
    assert "lab bench: FAILED: " in err and message in err
    assert "req/s" not in out  # no result is printed for a failed run


def test_the_same_check_passes_on_a_correct_echo(bench, wrong_echo):
    server = wrong_echo("correct")  # positive control for the test above
    status, out, err = bench(server.host, str(server.port), "2", "10", "--no-plots")
    assert status == 0, err


def test_a_corrupted_stream_is_caught(bench, wrong_echo):
    server = wrong_echo("flip")
    status, _, err = bench(server.host, str(server.port), "--workload", "stream", "--stream-size", "1MiB",
                           "--no-plots")
    assert status == 1 and "wrong bytes" in err


def test_nothing_listening_fails_with_a_clear_message(bench):
    with socket.socket() as placeholder:  # holds a port that is bound but not listening
        placeholder.bind(("127.0.0.1", 0))
        status, _, err = bench("127.0.0.1", str(placeholder.getsockname()[1]), "--no-plots")
    assert status == 1 and "nothing listens on 127.0.0.1" in err


def test_stream_connect_workers_and_open_loop(bench, serve, tmp_path):
    server = serve("edge", stats=False)
    host, port = server.process.host, str(server.process.port)
    status, out, err = bench(host, port, "--workload", "stream,connect", "-c", "20", "--stream-size", "512KiB",
                             "--no-plots")
    assert status == 0, err
    assert "MiB/s" in out and "conn/s" in out
    status, out, err = bench(host, port, "4", "50", "--workers", "2", "--no-plots")
    assert status == 0, err
    assert "total requests: 200" in out
    status, out, err = bench(host, port, "-c", "4", "-n", "20", "--rate", "2000", "--no-plots")
    assert status == 0, err
    assert "open-loop at 2000 req/s" in out


def test_connections_spread_over_extra_source_addresses(serve):
    server = serve("edge", stats=False)
    workload = Workload("pingpong", connections=4, requests=5)
    with LoadClient((server.process.host, server.process.port), socket.AF_INET, workload, range(4),
                    sources=["127.0.0.2", "127.0.0.3"]) as client:
        client.prepare()
        used = sorted(conn.sock.getsockname()[0] for conn in client.conns)
        measured = client.measure()
    assert used == ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"]
    assert measured.requests == 20


@pytest.mark.parametrize("kind", ["asyncio-streams", "asyncio-protocol", "uvloop"])
def test_baseline_servers_echo_and_exit_cleanly(kind, tmp_path):
    if kind == "uvloop":
        pytest.importorskip("uvloop")
    with ServerProcess([sys.executable, "-m", "lab.bench.baselines", kind, "--port", "0"],
                       log_dir=tmp_path) as server:
        with socket.create_connection((server.host, server.port), timeout=10) as sock:
            sock.sendall(b"Hello, epoll!\n")
            assert sock.recv(100) == b"Hello, epoll!\n"
        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_STRACE, reason="strace is not installed")
def test_strace_counts_syscalls_of_the_measured_window(bench, tmp_path):
    status, out, err = bench("--target", "level", "-c", "2", "-n", "200", "--repeat", "1", "--strace",
                             "--no-plots")
    assert status == 0, err
    [result] = json.loads((report_dir(tmp_path) / "bench.json").read_text())
    syscalls = result["syscalls_per_op"]
    # A level-triggered echo: one recv and one send per request, epoll_wait at most once.
    assert syscalls["recvfrom"] == pytest.approx(1.0, abs=0.05)
    assert syscalls["sendto"] == pytest.approx(1.0, abs=0.05)
    assert 0 < syscalls["epoll_wait"] <= 1.05


@pytest.mark.slow
def test_plots_are_written(bench, tmp_path):
    pytest.importorskip("matplotlib")
    status, out, err = bench("--target", "edge", "-c", "2,4", "-n", "50", "--repeat", "1",
                             "--workload", "pingpong,connect")
    assert status == 0, err
    names = {path.name for path in report_dir(tmp_path).iterdir()}
    assert {"bench.json", "bench.md", "throughput.png", "latency.png", "cpu.png", "connect.png"} <= names


def test_a_failing_worker_fails_the_run_without_hanging(bench, wrong_echo):
    server = wrong_echo("flip")
    status, _, err = bench(server.host, str(server.port), "4", "10", "--workers", "2", "--no-plots")
    assert status == 1 and "wrong reply" in err


def test_a_hard_fd_limit_below_the_need_is_reported_before_connecting():
    def low_limits() -> None:  # in the child, before exec
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1000))

    done = subprocess.run([sys.executable, "-m", "lab", "bench", "127.0.0.1", "9", "2000", "1"],
                          capture_output=True, text=True, timeout=60, preexec_fn=low_limits)
    assert done.returncode == 2
    assert "hard limit (RLIMIT_NOFILE) is 1000" in done.stderr and "Traceback" not in done.stderr


def test_a_cmd_target_gets_its_port_and_is_measured(bench, tmp_path):
    command = f"{sys.executable} -m lab.bench.baselines asyncio-protocol --port {{port}}"
    status, out, err = bench("--cmd", command, "-c", "3", "-n", "40", "--pipeline", "4", "--repeat", "1",
                             "--no-plots")
    assert status == 0, err
    [result] = json.loads((report_dir(tmp_path) / "bench.json").read_text())
    assert result["target"] == Path(sys.executable).name
    assert result["requests"] == 3 * 40 * 4 and result["pipeline"] == 4


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="--pin needs two CPUs")
def test_pinned_server_threads_and_client_run_on_disjoint_cpus(bench, tmp_path):
    before = os.sched_getaffinity(0)
    # oneshot runs worker threads: every one of them must be on the server's side.
    status, out, err = bench("--target", "oneshot", "-c", "4", "-n", "50", "--repeat", "1", "--no-plots")
    assert status == 0, err
    assert os.sched_getaffinity(0) == before  # the bench gave this process its CPUs back
    [result] = json.loads((report_dir(tmp_path) / "bench.json").read_text())
    expected = default_pinning()
    assert result["pinning"] == {"server": list(expected.server), "client": list(expected.client)}
    assert f"pinned: {expected.describe()}" in err
    assert "server on CPU" in (report_dir(tmp_path) / "bench.md").read_text()


def test_no_pin_leaves_the_cpus_shared(bench, tmp_path):
    status, _, err = bench("--target", "edge", "-c", "2", "-n", "20", "--repeat", "1", "--no-pin", "--no-plots")
    assert status == 0, err
    [result] = json.loads((report_dir(tmp_path) / "bench.json").read_text())
    assert result["pinning"] is None
    assert "pinning: none" in (report_dir(tmp_path) / "bench.md").read_text()


def test_a_timed_run_lasts_its_duration(bench, serve, tmp_path):
    server = serve("edge", stats=False)
    status, out, err = bench(server.process.host, str(server.process.port), "-c", "3", "-d", "0.3s", "--no-plots")
    assert status == 0, err
    assert "duration: 0.3 s per measured run" in out
    [result] = json.loads((report_dir(tmp_path) / "bench.json").read_text())
    [run] = result["runs"]
    assert result["duration_s"] == 0.3 and result["requests_per_connection"] is None
    # Every connection kept going until the time was up, then the replies in flight came in.
    assert run["elapsed_s"] >= 0.3 and result["requests"] == run["ops"] > 3
