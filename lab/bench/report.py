"""From measurements to results: one record per measured run, one result per target and
workload over the repeats, and the report files (``bench.json``, ``bench.md``).

Everything here is pure except :func:`write_reports`. Units a reader meets:

- ``op`` is what a workload counts: a ``request`` (pingpong), a ``connection`` (connect) or a
  ``MiB`` echoed (stream). "Per op" figures divide by it.
- CPU "utilisation" is CPU seconds per second of the measured window: 1.0 is one core busy.
  Totals are exact (schedstat, CLOCK_PROCESS_CPUTIME_ID); the user/system split is the
  kernel's tick-sampled proportion applied to that total (see targets.py).
  It is how a reader tells who limited a run. The bench calls a side "bound" at 0.9 or more of
  the cores it can use (a single-threaded server: one core; the client: one per worker).
- Throughput and latency of a result are the MEDIAN over its repeats; ``*_spread`` gives min
  and max. ``latency_ms.max`` is the largest of all repeats.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from tabulate import tabulate

from lab.bench.stats import latency_summary_ms, median_or_none, per_unit, spread
from lab.bench.targets import Snapshot
from lab.bench.workload import Measurement, Workload

MIB = 1024 * 1024
BOUND_AT = 0.9
COUNTER_KEYS = ("epoll_waits", "events", "accepts", "recv_calls", "send_calls", "eagain", "bytes_in", "bytes_out")
OP_OF = {"pingpong": "request", "connect": "connection", "stream": "MiB"}


@dataclass(slots=True)
class RunRecord:
    """One measured run of one target."""

    target: str
    workload: str
    connections: int
    requests_per_connection: int | None
    size: int
    pipeline: int
    rate: float | None
    workers: int
    repeat: int
    traced: bool
    elapsed_s: float
    ops: float  # requests, connections or MiB completed in the window
    latency_ms: dict | None
    server_cpu: dict | None  # {"user_s", "system_s"} over the window
    server_threads: int
    client_cpu: dict  # {"user_s", "system_s"} over the window, all workers
    counters: dict | None  # the lab server's counters over the window
    server_rss_bytes: int | None
    syscalls: dict | None  # strace -c over the window (traced runs only)
    load_1min: float | None  # the machine's 1-minute load average when the run started

    @property
    def per_second(self) -> float:
        return self.ops / self.elapsed_s if self.elapsed_s > 0 else 0.0


def cpu_split(exact: float | None, tick_user: float, tick_system: float) -> dict:
    """{"total_s", "user_s", "system_s"}: the exact total when there is one, divided in the
    proportion of the tick samples; with no tick in the window the split is unknown (None)."""
    ticks = tick_user + tick_system
    total = exact if exact is not None else ticks
    if ticks <= 0:
        return {"total_s": total, "user_s": None, "system_s": None}
    return {"total_s": total, "user_s": total * tick_user / ticks, "system_s": total * tick_system / ticks}


def run_record(target: str, workload: Workload, *, workers: int, repeat: int, measurement: Measurement,
               before: Snapshot | None = None, after: Snapshot | None = None,
               server_threads: int = 1, rss_bytes: int | None = None,
               syscalls: dict | None = None, load_1min: float | None = None) -> RunRecord:
    elapsed = measurement.finished - measurement.started
    ops = measurement.bytes_echoed / MIB if workload.kind == "stream" else measurement.requests
    server_cpu = counters = None
    if before is not None and after is not None:
        used = after.cpu - before.cpu
        exact = after.runtime - before.runtime if after.runtime is not None and before.runtime is not None else None
        server_cpu = cpu_split(exact, used.user, used.system)
        if before.counters and after.counters:
            counters = {key: after.counters.get(key, 0) - before.counters.get(key, 0) for key in COUNTER_KEYS}
    return RunRecord(
        target=target,
        workload=workload.kind,
        connections=workload.connections,
        requests_per_connection=workload.requests * workload.pipeline if workload.kind == "pingpong" else None,
        size=workload.size,
        pipeline=workload.pipeline,
        rate=workload.rate,
        workers=workers,
        repeat=repeat,
        traced=syscalls is not None,
        elapsed_s=elapsed,
        ops=ops,
        latency_ms=latency_summary_ms(measurement.latencies),
        server_cpu=server_cpu,
        server_threads=server_threads,
        client_cpu=cpu_split(measurement.cpu_total, measurement.cpu_user, measurement.cpu_system),
        counters=counters,
        server_rss_bytes=rss_bytes,
        syscalls=syscalls,
        load_1min=load_1min,
    )


def _group_key(run: RunRecord) -> tuple:
    return (run.target, run.workload, run.connections, run.requests_per_connection, run.size,
            run.pipeline, run.rate)


def _cpu_figures(cpu_runs: list[tuple[dict, float, float]]) -> dict | None:
    """Median CPU figures over (cpu, elapsed, ops) triples."""
    if not cpu_runs:
        return None
    def scaled(key: str, factor: float, by_ops: bool) -> float | None:
        return median_or_none([per_unit(cpu[key] * factor, ops if by_ops else elapsed)
                               for cpu, elapsed, ops in cpu_runs if cpu[key] is not None])

    return {
        "utilisation": scaled("total_s", 1.0, False),
        "user_per_s": scaled("user_s", 1.0, False),
        "system_per_s": scaled("system_s", 1.0, False),
        "us_per_op": scaled("total_s", 1e6, True),
        "user_us_per_op": scaled("user_s", 1e6, True),
        "system_us_per_op": scaled("system_s", 1e6, True),
    }


def _counter_figures(runs: list[RunRecord]) -> dict | None:
    with_counters = [run for run in runs if run.counters]
    if not with_counters:
        return None
    figures = {key: median_or_none([per_unit(run.counters[key], run.ops) for run in with_counters])
               for key in ("epoll_waits", "events", "recv_calls", "send_calls", "eagain")}
    figures["events_per_wait"] = median_or_none(
        [per_unit(run.counters["events"], run.counters["epoll_waits"]) for run in with_counters])
    return figures


def _syscall_figures(traced: list[RunRecord]) -> dict | None:
    if not traced or not traced[0].syscalls:
        return None
    run = traced[0]
    figures = {name: row["calls"] / run.ops for name, row in sorted(run.syscalls.items()) if run.ops}
    figures["total"] = sum(figures.values())
    return figures


def bottleneck(server_utilisation: float | None, server_threads: int, client_utilisation: float | None,
               workers: int) -> str:
    """Which side ran out of CPU: "client", "server", "both" or "neither"."""
    client_bound = client_utilisation is not None and client_utilisation >= BOUND_AT * workers
    server_bound = server_utilisation is not None and server_utilisation >= BOUND_AT * server_threads
    return {(True, True): "both", (True, False): "client", (False, True): "server"}.get(
        (client_bound, server_bound), "neither")


def summarize(runs: list[RunRecord], platform: dict) -> list[dict]:
    """One result per target and workload: medians over the untraced repeats, syscall
    counts from the traced run. Order follows the runs."""
    groups: dict[tuple, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(_group_key(run), []).append(run)
    results = []
    for group in groups.values():
        timed = [run for run in group if not run.traced] or group
        first = timed[0]
        rates = spread([run.per_second for run in timed])
        server = _cpu_figures([(run.server_cpu, run.elapsed_s, run.ops) for run in timed if run.server_cpu])
        client = _cpu_figures([(run.client_cpu, run.elapsed_s, run.ops) for run in timed])
        latencies = [run.latency_ms for run in timed if run.latency_ms]
        latency = None
        if latencies:
            latency = {key: median_or_none([summary[key] for summary in latencies]) for key in latencies[0]}
            latency["max"] = max(summary["max"] for summary in latencies)
        throughput_key = "mib_per_s" if first.workload == "stream" else (
            "connections_per_s" if first.workload == "connect" else "req_per_s")
        results.append({
            "target": first.target,
            "workload": first.workload,
            "connections": first.connections,
            "requests": round(first.ops) if first.workload != "stream" else None,
            "requests_per_connection": first.requests_per_connection,
            "size": first.size,
            "pipeline": first.pipeline,
            "mode": f"open-loop at {first.rate:g} req/s (latency corrected for coordinated omission)"
                    if first.rate else "closed-loop",
            "workers": first.workers,
            "repeats": len(timed),
            "op": OP_OF[first.workload],
            throughput_key: rates.median,
            f"{throughput_key}_spread": {"min": rates.low, "max": rates.high, "relative": rates.relative},
            "latency_ms": latency,
            "server_cpu": server,
            "client_cpu": client,
            "bound": bottleneck(server and server["utilisation"], first.server_threads,
                                client["utilisation"], first.workers),
            "counters_per_op": _counter_figures(timed),
            "syscalls_per_op": _syscall_figures([run for run in group if run.traced]),
            "server_rss_mib": median_or_none([run.server_rss_bytes / MIB for run in timed if run.server_rss_bytes]),
            "platform": platform,
            "runs": [asdict(run) for run in group],
        })
    return results


# -- bench.md --------------------------------------------------------------------------------

def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _cpu_cell(cpu: dict | None) -> str:
    if not cpu or cpu["utilisation"] is None:
        return "-"
    if cpu["user_per_s"] is None:
        return f"{cpu['utilisation'] * 100:.0f} %"
    return f"{cpu['utilisation'] * 100:.0f} % ({cpu['user_per_s'] * 100:.0f}/{cpu['system_per_s'] * 100:.0f})"


def _per_op_cell(cpu: dict | None) -> str:
    if not cpu or cpu["us_per_op"] is None:
        return "-"
    if cpu["user_us_per_op"] is None:
        return f"{cpu['us_per_op']:.1f}"
    return f"{cpu['us_per_op']:.1f} ({cpu['user_us_per_op']:.1f}/{cpu['system_us_per_op']:.1f})"


def _latency(key: str):
    return lambda r: _num(r["latency_ms"] and r["latency_ms"][key], 2)


def _counter(key: str, digits: int = 2):
    return lambda r: _num(r["counters_per_op"] and r["counters_per_op"][key], digits)


def _throughput(key: str, digits: int = 0):
    return lambda r: f"{_num(r[key], digits)} ±{r[key + '_spread']['relative'] * 100:.0f}%"


# Rules as data: the columns of each workload's table (header, cell).
COLUMNS = {
    "pingpong": [
        ("target", lambda r: r["target"]),
        ("conns", lambda r: f"{r['connections']:,}"),
        ("req/conn", lambda r: f"{r['requests_per_connection']:,}"),
        ("req/s (median ±spread)", _throughput("req_per_s")),
        ("p50 ms", _latency("p50")), ("p90 ms", _latency("p90")), ("p99 ms", _latency("p99")),
        ("p99.9 ms", _latency("p999")), ("max ms", _latency("max")),
        ("server CPU (usr/sys)", lambda r: _cpu_cell(r["server_cpu"])),
        ("server µs/req (usr/sys)", lambda r: _per_op_cell(r["server_cpu"])),
        ("client CPU", lambda r: _cpu_cell(r["client_cpu"])),
        ("epoll_wait/req", _counter("epoll_waits", 3)), ("events/wait", _counter("events_per_wait", 1)),
        ("recv/req", _counter("recv_calls")), ("send/req", _counter("send_calls")),
        ("syscalls/req (strace)", lambda r: _num(r["syscalls_per_op"] and r["syscalls_per_op"]["total"], 2)),
        ("bound", lambda r: r["bound"]),
    ],
    "stream": [
        ("target", lambda r: r["target"]),
        ("conns", lambda r: f"{r['connections']:,}"),
        ("MiB/s (median ±spread)", _throughput("mib_per_s", 1)),
        ("server CPU (usr/sys)", lambda r: _cpu_cell(r["server_cpu"])),
        ("server µs/MiB (usr/sys)", lambda r: _per_op_cell(r["server_cpu"])),
        ("client CPU", lambda r: _cpu_cell(r["client_cpu"])),
        ("epoll_wait/MiB", _counter("epoll_waits", 1)), ("recv/MiB", _counter("recv_calls", 1)),
        ("send/MiB", _counter("send_calls", 1)), ("EAGAIN/MiB", _counter("eagain", 1)),
        ("syscalls/MiB (strace)", lambda r: _num(r["syscalls_per_op"] and r["syscalls_per_op"]["total"], 1)),
        ("bound", lambda r: r["bound"]),
    ],
    "connect": [
        ("target", lambda r: r["target"]),
        ("burst", lambda r: f"{r['connections']:,}"),
        ("conn/s (median ±spread)", _throughput("connections_per_s")),
        ("p50 ms", _latency("p50")), ("p99 ms", _latency("p99")), ("max ms", _latency("max")),
        ("server CPU (usr/sys)", lambda r: _cpu_cell(r["server_cpu"])),
        ("server µs/conn (usr/sys)", lambda r: _per_op_cell(r["server_cpu"])),
        ("client CPU", lambda r: _cpu_cell(r["client_cpu"])),
        ("syscalls/conn (strace)", lambda r: _num(r["syscalls_per_op"] and r["syscalls_per_op"]["total"], 1)),
        ("bound", lambda r: r["bound"]),
    ],
}
TITLES = {
    "pingpong": "Ping-pong (request/response)",
    "stream": "Bulk stream (bytes echoed per second, one direction)",
    "connect": "Connect rate (connect + one echo + close, all at once)",
}


def table(results: list[dict], workload: str, fmt: str = "github") -> str:
    rows = [r for r in results if r["workload"] == workload]
    columns = COLUMNS[workload]
    return tabulate([[cell(r) for _, cell in columns] for r in rows],
                    headers=[header for header, _ in columns], tablefmt=fmt, disable_numparse=True)


def markdown(results: list[dict], platform_line: str, command: str, notes: list[str]) -> str:
    lines = ["# lab bench", "", f"- command: `{command}`", f"- machine: {platform_line}"]
    if results:
        first = results[0]
        lines.append(f"- mode: {first['mode']}; {first['size']}-byte requests; pipeline depth "
                     f"{first['pipeline']}; {first['workers']} client process(es); "
                     f"{first['repeats']} repeat(s), median shown, ±spread = (max-min)/median of the repeats")
    lines += [f"- note: {note}" for note in notes]
    lines += ["", "CPU columns: CPU seconds per second of the measured window (100 % = one core), "
              "user/system in brackets; 'bound' = the side at >= 90 % of the cores it can use."]
    for workload in COLUMNS:
        if any(r["workload"] == workload for r in results):
            lines += ["", f"## {TITLES[workload]}", "", table(results, workload)]
    return "\n".join(lines) + "\n"


def write_reports(directory: Path, results: list[dict], markdown_text: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "bench.json", directory / "bench.md"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    md_path.write_text(markdown_text)
    return [json_path, md_path]
