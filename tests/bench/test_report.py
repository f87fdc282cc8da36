"""Results and report files built from made-up measurements: no sockets, no servers."""

from __future__ import annotations

import json

import pytest

from lab.bench.platform_info import describe, parse_cpu_model
from lab.bench.report import (bottleneck, busy_notes, cpu_split, markdown, pinning_line, run_record, summarize, table,
                              unsteady_notes, write_reports)
from lab.bench.targets import Snapshot, parse_schedstat, parse_strace_summary
from lab.host import container_kind
from lab.bench.workload import Measurement, Workload
from lab.probes import CpuTimes

PLATFORM = {"cpu_model": "Test CPU", "cpus_usable": 2, "kernel": "Linux 6.1", "python": "CPython 3.11.7",
            "container": None, "load_average_before": [0.1, 0.2, 0.3]}


def measurement(requests: int, seconds: float, latency: float = 0.001, cpu: float = 0.5) -> Measurement:
    return Measurement(started=100.0, finished=100.0 + seconds, requests=requests, bytes_echoed=requests * 64,
                       latencies=[latency] * requests, cpu_user=cpu * 0.2, cpu_system=cpu * 0.8, cpu_total=cpu)


def snapshots(user: float, system: float, epoll_waits: int, events: int, recvs: int):
    before = Snapshot(CpuTimes(1.0, 2.0), 3.0, {"epoll_waits": 10, "events": 10, "recv_calls": 5, "send_calls": 5,
                                           "eagain": 0, "accepts": 1, "bytes_in": 0, "bytes_out": 0})
    after = Snapshot(CpuTimes(1.0 + user, 2.0 + system), 3.0 + user + system,
                     {"epoll_waits": 10 + epoll_waits, "events": 10 + events, "recv_calls": 5 + recvs,
                      "send_calls": 5 + recvs, "eagain": 0, "accepts": 1, "bytes_in": 0, "bytes_out": 0})
    return before, after


def edge_runs() -> list:
    workload = Workload("pingpong", connections=10, requests=100)
    runs = []
    for repeat, seconds in enumerate((1.0, 1.25, 0.8)):
        before, after = snapshots(user=0.2, system=0.6, epoll_waits=100, events=1000, recvs=1000)
        runs.append(run_record("edge", workload, workers=1, repeat=repeat, measurement=measurement(1000, seconds),
                               before=before, after=after, rss_bytes=20 * 1024 * 1024))
    return runs


def test_run_record_takes_the_window_differences():
    run = edge_runs()[0]
    assert run.ops == 1000 and run.per_second == pytest.approx(1000.0)
    assert run.server_cpu == pytest.approx({"total_s": 0.8, "user_s": 0.2, "system_s": 0.6})
    assert run.counters["epoll_waits"] == 100 and run.counters["recv_calls"] == 1000
    assert run.latency_ms["p99"] == pytest.approx(1.0)
    assert run.requests_per_connection == 100


def test_summary_is_the_median_over_repeats_with_its_spread():
    [result] = summarize(edge_runs(), PLATFORM)
    assert result["target"] == "edge" and result["workload"] == "pingpong" and result["repeats"] == 3
    assert result["req_per_s"] == pytest.approx(1000.0)  # rates 1000, 800, 1250
    assert result["req_per_s_spread"] == pytest.approx({"min": 800.0, "max": 1250.0, "relative": 0.45,
                                                         "ci_low": 800.0, "ci_high": 1250.0, "ci_level": 0.75})
    assert result["unsteady"] == {"req_per_s": pytest.approx(0.45)}  # 45 % > 10 %
    assert result["pinning"] is None  # the made-up runs say nothing about CPUs
    assert result["server_cpu"]["user_us_per_op"] == pytest.approx(200.0)
    assert result["server_cpu"]["system_us_per_op"] == pytest.approx(600.0)
    assert result["counters_per_op"]["epoll_waits"] == pytest.approx(0.1)
    assert result["counters_per_op"]["events_per_wait"] == pytest.approx(10.0)
    assert result["latency_ms"]["p50"] == pytest.approx(1.0)
    assert result["server_rss_mib"] == pytest.approx(20.0)
    assert result["platform"] == PLATFORM and len(result["runs"]) == 3


def test_traced_runs_give_syscall_counts_but_not_timing():
    runs = edge_runs()
    traced = run_record("edge", Workload("pingpong", 10, 100), workers=1, repeat=3,
                        measurement=measurement(1000, 50.0),  # ptrace made it 50x slower
                        syscalls={"recvfrom": {"calls": 1000, "errors": 0}, "sendto": {"calls": 1000, "errors": 0},
                                  "epoll_wait": {"calls": 50, "errors": 0}})
    [result] = summarize(runs + [traced], PLATFORM)
    assert result["req_per_s"] == pytest.approx(1000.0)  # the traced run's 20 req/s is left out
    assert result["syscalls_per_op"] == pytest.approx({"epoll_wait": 0.05, "recvfrom": 1.0, "sendto": 1.0, "total": 2.05})


@pytest.mark.parametrize(
    ("server", "threads", "client", "workers", "expected"),
    [(0.95, 1, 0.5, 1, "server"), (0.5, 1, 0.97, 1, "client"), (0.95, 1, 1.9, 2, "both"),
     (0.5, 1, 0.5, 1, "neither"), (0.95, 2, 0.5, 1, "neither"), (None, 1, 0.5, 1, "neither")],
)
def test_bottleneck(server, threads, client, workers, expected):
    assert bottleneck(server, threads, client, workers) == expected


def test_markdown_and_json_reports(tmp_path):
    results = summarize(edge_runs(), PLATFORM)
    text = markdown(results, describe(PLATFORM), "lab bench --target edge", ["a note"])
    assert "| edge" in text and "1,000 ±45%" in text and "Test CPU" in text and "a note" in text
    assert "closed-loop" in text
    paths = write_reports(tmp_path / "out", results, text)
    assert [path.name for path in paths] == ["bench.json", "bench.md"]
    loaded = json.loads(paths[0].read_text())
    assert isinstance(loaded, list) and loaded[0]["req_per_s"] == pytest.approx(1000.0)
    for key in ("target", "workload", "connections", "requests", "latency_ms", "server_cpu", "client_cpu",
                "counters_per_op"):
        assert key in loaded[0]
    assert set(loaded[0]["latency_ms"]) >= {"p50", "p90", "p99", "p999", "max"}


def test_an_unsteady_result_is_flagged_and_explained():
    results = summarize(edge_runs(), PLATFORM)  # req/s 800, 1000, 1250: ±45 %
    [note] = unsteady_notes(results)
    assert note.startswith("UNSTEADY: edge (pingpong, 10 connection(s)): req_per_s ±45 % over 3 repeats")
    text = markdown(results, describe(PLATFORM), "lab bench", [note])
    assert "1,000 ±45% ⚠" in text and "800–1,250 (75 %)" in text  # the median's interval, and its level
    assert "- pinning: none" in text
    # Negative control: repeats within 10 % carry no flag and no note.
    steady = [run for run in edge_runs() if run.elapsed_s == 1.0] * 3
    assert unsteady_notes(summarize(steady, PLATFORM)) == [] and "⚠" not in table(summarize(steady, PLATFORM), "pingpong")


@pytest.mark.parametrize(("load", "noted"), [(1.5, False), (2.0, True), (9.7, True)])
def test_a_busy_machine_is_named(load, noted):
    runs = edge_runs()
    runs[1].load_1min = load
    notes = busy_notes(summarize(runs, PLATFORM), cpus=2)
    assert bool(notes) is noted
    if noted:
        assert notes[0].startswith(f"BUSY MACHINE: the 1-minute load average reached {load:.1f} on 2 CPU(s)")


def test_pinned_workers_are_bound_at_the_client_cpus_they_share():
    runs = edge_runs()  # client CPU 0.5 s per run of 0.8-1.25 s: 40-62 % of a core
    for run in runs:
        run.workers, run.client_cpus = 2, [1]
        run.client_cpu = {"total_s": run.elapsed_s * 0.95, "user_s": None, "system_s": None}
    assert summarize(runs, PLATFORM)[0]["bound"] == "client"  # 95 % of the one CPU both workers have
    for run in runs:
        run.client_cpus = [0, 1]
    assert summarize(runs, PLATFORM)[0]["bound"] == "neither"  # 95 % of two cores' worth is not bound


def test_pinning_is_stated_only_when_every_run_was_pinned():
    runs = edge_runs()
    for run in runs:
        run.server_cpus, run.client_cpus = [0], [1]
    [result] = summarize(runs, PLATFORM)
    assert result["pinning"] == {"server": [0], "client": [1]}
    assert pinning_line([result]).startswith("server on CPU 0, client on CPU 1")
    runs[1].client_cpus = [0, 1]  # one run where the client could reach the server's CPU
    assert summarize(runs, PLATFORM)[0]["pinning"] is None


def test_stream_and_connect_tables_use_their_own_units():
    stream = run_record("level", Workload("stream", 1, stream_bytes=10 * 1024 * 1024), workers=1, repeat=0,
                        measurement=Measurement(0.0, 0.5, 0, 10 * 1024 * 1024, [], 0.1, 0.3, 0.4))
    assert stream.ops == pytest.approx(10.0) and stream.per_second == pytest.approx(20.0)
    [result] = summarize([stream], PLATFORM)
    assert result["mib_per_s"] == pytest.approx(20.0) and result["latency_ms"] is None and result["op"] == "MiB"
    assert "| 20.0 " in table([result], "stream") and "±0%" not in table([result], "stream")  # one run: no spread


STRACE_SAMPLE = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 66.67    0.000008           0       102           epoll_wait
 33.33    0.000004           2         2         1 accept4
  0.00    0.000000           0       100           sendto
  0.00    0.000000           0       101           recvfrom
------ ----------- ----------- --------- --------- ----------------
100.00    0.000012           0       305         1 total
"""


def test_strace_summary_parsing():
    assert parse_strace_summary(STRACE_SAMPLE) == {
        "epoll_wait": {"calls": 102, "errors": 0},
        "accept4": {"calls": 2, "errors": 1},
        "sendto": {"calls": 100, "errors": 0},
        "recvfrom": {"calls": 101, "errors": 0},
    }
    assert parse_strace_summary("strace: Process 5 attached\n") == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n", "AMD EPYC 7B13"),
     ("processor\t: 0\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n", "Raspberry Pi 4 Model B Rev 1.4"),
     ("", "unknown")],
)
def test_cpu_model(text, expected):
    assert parse_cpu_model(text) == expected


@pytest.mark.parametrize(
    ("files", "cgroup", "env", "expected"),
    [({"/.dockerenv"}, "", {}, "docker"), ({"/run/.containerenv"}, "", {}, "podman"),
     (set(), "0::/system.slice/docker-abc.scope", {}, "docker"), (set(), "", {"container": "lxc"}, "lxc"),
     (set(), "0::/init.scope", {}, None)],
)
def test_container_detection(files, cgroup, env, expected):
    assert container_kind(files, cgroup, env) == expected


@pytest.mark.parametrize(
    ("exact", "user", "system", "expected"),
    [
        (1.0, 0.03, 0.01, {"total_s": 1.0, "user_s": 0.75, "system_s": 0.25}),  # ticks give the proportion
        (None, 0.03, 0.01, {"total_s": 0.04, "user_s": 0.03, "system_s": 0.01}),  # no schedstat: ticks alone
        (0.004, 0.0, 0.0, {"total_s": 0.004, "user_s": None, "system_s": None}),  # no tick in the window
    ],
)
def test_cpu_split(exact, user, system, expected):
    assert cpu_split(exact, user, system) == pytest.approx(expected)


def test_schedstat_line():
    assert parse_schedstat("178507 3221735 3\n") == pytest.approx(0.000178507)
