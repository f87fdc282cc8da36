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
- Throughput and latency of a result are the MEDIAN over its repeats; ``*_spread`` gives min,
  max, their distance relative to the median, and a confidence interval for the median
  (``ci_low``, ``ci_high`` at ``ci_level``, see stats.py). ``latency_ms.max`` is the largest of
  all repeats. ``unsteady`` names the figures whose repeats spread more than 10 %.
- ``pinning``: the CPUs the server's threads and the client were allowed to use, as read back
  from the kernel during the run (None when nothing was pinned).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from tabulate import tabulate

from lab.bench.pinning import Pinning
from lab.bench.stats import STEADY_SPREAD, Spread, latency_summary_ms, median_interval, median_or_none, per_unit, \
    spread, unsteady
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
    duration_s: float | None = None  # a timed run (-d): its requested length
    server_cpus: list[int] | None = None  # CPUs the server's threads could use (read back)
    client_cpus: list[int] | None = None  # CPUs the client could use

    @property
    def pinned(self) -> bool:
        return bool(self.server_cpus and self.client_cpus and not set(self.server_cpus) & set(self.client_cpus))

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
               syscalls: dict | None = None, load_1min: float | None = None,
               server_cpus: list[int] | None = None, client_cpus: list[int] | None = None) -> RunRecord:
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
        requests_per_connection=(workload.requests * workload.pipeline
                                 if workload.kind == "pingpong" and not workload.duration else None),
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
        duration_s=workload.duration if workload.kind == "pingpong" else None,
        server_cpus=server_cpus,
        client_cpus=client_cpus,
    )


def _group_key(run: RunRecord) -> tuple:
    return (run.target, run.workload, run.connections, run.requests_per_connection, run.duration_s, run.size,
            run.pipeline, run.rate)


def _cpu_figures(cpu_runs: list[tuple[dict, float, float]]) -> dict | None:
    """Median CPU figures over (cpu, elapsed, ops) triples."""
    if not cpu_runs:
        return None
    def per_second(key: str) -> float | None:
        return median_or_none([per_unit(cpu[key], elapsed) for cpu, elapsed, _ in cpu_runs if cpu[key] is not None])

    return {
        "utilisation": per_second("total_s"),
        "user_per_s": per_second("user_s"),
        "system_per_s": per_second("system_s"),
        "us_per_op": median_or_none(_us_per_op(cpu_runs, "total_s")),
        "user_us_per_op": median_or_none(_us_per_op(cpu_runs, "user_s")),
        "system_us_per_op": median_or_none(_us_per_op(cpu_runs, "system_s")),
    }


def _us_per_op(cpu_runs: list[tuple[dict, float, float]], key: str) -> list[float]:
    """Each run's CPU ``key`` in µs per operation, over (cpu, elapsed, ops) triples; runs that
    did not measure it or did nothing are left out."""
    values = (per_unit(cpu[key] * 1e6, ops) for cpu, _, ops in cpu_runs if cpu[key] is not None)
    return [value for value in values if value is not None]


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


def spread_figures(values: Spread, ci_values: list[float]) -> dict:
    """``*_spread`` of a result: min, max, relative spread and the median's interval."""
    interval = median_interval(ci_values)
    return {"min": values.low, "max": values.high, "relative": values.relative,
            "ci_low": interval and interval.low, "ci_high": interval and interval.high,
            "ci_level": interval and interval.level}


def _pinning(runs: list[RunRecord]) -> dict | None:
    if not all(run.pinned for run in runs):
        return None
    return {"server": sorted({cpu for run in runs for cpu in run.server_cpus}),
            "client": sorted({cpu for run in runs for cpu in run.client_cpus})}


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
        rate_values = [run.per_second for run in timed]
        rates = spread(rate_values)
        server_runs = [(run.server_cpu, run.elapsed_s, run.ops) for run in timed if run.server_cpu]
        server = _cpu_figures(server_runs)
        server_per_op = _us_per_op(server_runs, "total_s")
        client = _cpu_figures([(run.client_cpu, run.elapsed_s, run.ops) for run in timed])
        latencies = [run.latency_ms for run in timed if run.latency_ms]
        latency = None
        if latencies:
            latency = {key: median_or_none([summary[key] for summary in latencies]) for key in latencies[0]}
            latency["max"] = max(summary["max"] for summary in latencies)
        throughput_key = "mib_per_s" if first.workload == "stream" else (
            "connections_per_s" if first.workload == "connect" else "req_per_s")
        spreads = {throughput_key: rates}
        if server_per_op:
            spreads["server_us_per_op"] = spread(server_per_op)
        results.append({
            "target": first.target,
            "workload": first.workload,
            "connections": first.connections,
            # A timed run (-d) does as many as it can: the median run's count.
            "requests": round(median_or_none([run.ops for run in timed])) if first.workload != "stream" else None,
            "requests_per_connection": first.requests_per_connection,
            "duration_s": first.duration_s,
            "size": first.size,
            "pipeline": first.pipeline,
            "mode": f"open-loop at {first.rate:g} req/s (latency corrected for coordinated omission)"
                    if first.rate else "closed-loop",
            "workers": first.workers,
            "repeats": len(timed),
            "op": OP_OF[first.workload],
            throughput_key: rates.median,
            f"{throughput_key}_spread": spread_figures(rates, rate_values),
            "server_us_per_op_spread": spread_figures(spreads["server_us_per_op"], server_per_op)
                                       if server_per_op else None,
            "unsteady": unsteady(spreads),
            "pinning": _pinning(timed),
            "latency_ms": latency,
            "server_cpu": server,
            "client_cpu": client,
            # Pinned, the client's workers share the client's CPUs: it is bound at their count.
            "bound": bottleneck(server and server["utilisation"], first.server_threads, client["utilisation"],
                                min(first.workers, len(first.client_cpus)) if first.client_cpus else first.workers),
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


def _per_op_cell(r: dict) -> str:
    cpu, figures = r["server_cpu"], r.get("server_us_per_op_spread")
    if not cpu or cpu["us_per_op"] is None:
        return "-"
    text = f"{cpu['us_per_op']:.1f}"
    if cpu["user_us_per_op"] is not None:
        text += f" ({cpu['user_us_per_op']:.1f}/{cpu['system_us_per_op']:.1f})"
    if figures and r["repeats"] > 1:
        text += f" ±{figures['relative'] * 100:.0f}%{_flag(r, 'server_us_per_op')}"
    return text


def _flag(r: dict, key: str) -> str:
    return " ⚠" if key in (r.get("unsteady") or {}) else ""


def _per_connection(r: dict) -> str:
    if r.get("duration_s"):
        return f"{r['duration_s']:g} s"
    return f"{r['requests_per_connection']:,}"


def _interval(key: str, digits: int = 0):
    def cell(r: dict) -> str:
        figures = r[key + "_spread"]
        if figures.get("ci_low") is None:
            return "-"
        return f"{_num(figures['ci_low'], digits)}–{_num(figures['ci_high'], digits)} ({figures['ci_level'] * 100:.0f} %)"
    return cell


def _latency(key: str):
    return lambda r: _num(r["latency_ms"] and r["latency_ms"][key], 2)


def _counter(key: str, digits: int = 2):
    return lambda r: _num(r["counters_per_op"] and r["counters_per_op"][key], digits)


def _throughput(key: str, digits: int = 0):
    def cell(r: dict) -> str:
        if r["repeats"] < 2:  # one run has no spread: "±0%" would claim a steadiness nobody saw
            return _num(r[key], digits)
        return f"{_num(r[key], digits)} ±{r[key + '_spread']['relative'] * 100:.0f}%{_flag(r, key)}"
    return cell


# Rules as data: the columns of each workload's table (header, cell).
COLUMNS = {
    "pingpong": [
        ("target", lambda r: r["target"]),
        ("conns", lambda r: f"{r['connections']:,}"),
        ("req/conn", _per_connection),
        ("req/s (median ±spread)", _throughput("req_per_s")),
        ("req/s median CI", _interval("req_per_s")),
        ("p50 ms", _latency("p50")), ("p90 ms", _latency("p90")), ("p99 ms", _latency("p99")),
        ("p99.9 ms", _latency("p999")), ("max ms", _latency("max")),
        ("server CPU (usr/sys)", lambda r: _cpu_cell(r["server_cpu"])),
        ("server µs/req (usr/sys) ±spread", _per_op_cell),
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
        ("server µs/MiB (usr/sys) ±spread", _per_op_cell),
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
        ("server µs/conn (usr/sys) ±spread", _per_op_cell),
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


def pinning_line(results: list[dict]) -> str:
    """Where the server and the client ran, as read back from the kernel."""
    pinnings = {str(r.get("pinning")) for r in results}
    first = results[0].get("pinning") if results else None
    if first is None or len(pinnings) > 1:
        return "none: the server and the client may run on the same CPUs (--no-pin, or one CPU)"
    pinning = Pinning(tuple(first["server"]), tuple(first["client"]))
    return f"{pinning.describe()} (each run's affinity read back from the kernel)"


def unsteady_notes(results: list[dict]) -> list[str]:
    """One note per result whose repeats spread more than STEADY_SPREAD."""
    notes = []
    for r in results:
        if r.get("unsteady"):
            figures = ", ".join(f"{name} ±{value * 100:.0f} %" for name, value in r["unsteady"].items())
            notes.append(f"UNSTEADY: {r['target']} ({r['workload']}, {r['connections']:,} connection(s)): "
                         f"{figures} over {r['repeats']} repeats, more than {STEADY_SPREAD * 100:.0f} %: a "
                         "difference smaller than that is not shown; rerun on a quieter machine or repeat more")
    return notes


def busy_notes(results: list[dict], cpus: int) -> list[str]:
    """A note when other programs' load reached the machine's CPU count during the runs: then
    throughput says how much CPU the server was given, not what it can do."""
    loads = [run["load_1min"] for r in results for run in r["runs"] if run.get("load_1min") is not None]
    if not loads or max(loads) < cpus:
        return []
    pinned = " Pinned, neither side can move away from that load to an idler CPU." if any(
        r.get("pinning") for r in results) else ""
    return [f"BUSY MACHINE: the 1-minute load average reached {max(loads):.1f} on {cpus} CPU(s) during the runs: "
            "other programs took CPU time from the server and the client (see the server CPU column), so "
            "throughput shows what they were given; compare the CPU per request, and rerun on a quiet "
            f"machine for throughput.{pinned}"]


def table(results: list[dict], workload: str, fmt: str = "github") -> str:
    rows = [r for r in results if r["workload"] == workload]
    columns = COLUMNS[workload]
    return tabulate([[cell(r) for _, cell in columns] for r in rows],
                    headers=[header for header, _ in columns], tablefmt=fmt, disable_numparse=True)


def markdown(results: list[dict], platform_line: str, command: str, notes: list[str],
             gate_lines: list[str] = ()) -> str:
    lines = ["# lab bench", "", f"- command: `{command}`", f"- machine: {platform_line}"]
    if results:
        first = results[0]
        lines.append(f"- mode: {first['mode']}; {first['size']}-byte requests; pipeline depth "
                     f"{first['pipeline']}; {first['workers']} client process(es); "
                     f"{first['repeats']} repeat(s), median shown, ±spread = (max-min)/median of the repeats, "
                     f"CI = confidence interval of the median (its level in brackets); ⚠ = spread over "
                     f"{STEADY_SPREAD * 100:.0f} %")
        lines.append(f"- pinning: {pinning_line(results)}")
    lines += [f"- note: {note}" for note in notes]
    lines += ["", "CPU columns: CPU seconds per second of the measured window (100 % = one core), "
              "user/system in brackets; 'bound' = the side at >= 90 % of the cores it can use."]
    for workload in COLUMNS:
        if any(r["workload"] == workload for r in results):
            lines += ["", f"## {TITLES[workload]}", "", table(results, workload)]
    if gate_lines:
        lines += ["", "## Gate (--threshold, --baseline)", "", "```", *gate_lines, "```"]
    return "\n".join(lines) + "\n"


def write_reports(directory: Path, results: list[dict], markdown_text: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "bench.json", directory / "bench.md"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    md_path.write_text(markdown_text)
    return [json_path, md_path]
