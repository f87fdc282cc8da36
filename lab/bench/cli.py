"""``lab bench``: load an echo server, verify every reply, and report what it cost.

Two forms:

- ``lab bench HOST PORT [CONNECTIONS] [REQUESTS_PER_CONNECTION]``: the assignment's
  ``benchmark_epoll`` against a server that is already running (defaults 100 x 100, as in the
  assignment). Exit 0 after every reply was verified, 1 with a message on a wrong reply, a
  dropped connection or nothing listening.
- ``lab bench --target level,edge,uvloop [--cmd './srv --port {port}'] ...``: start each target
  fresh for every measured run, alternate them over the repeats, and compare them side by side.

Either way the reports land in ``results/bench-<UTC timestamp>/`` (``--results`` to move them):
``bench.json``, ``bench.md`` and PNG plots when matplotlib is installed. Misuse is a message
and exit status 2 (options.py checks everything before anything starts).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from typing import TYPE_CHECKING

from lab.bench import platform_info, plots
from lab.bench.options import (DEFAULT_CONNECTIONS, DEFAULT_MAX_REGRESSION, DEFAULT_REPEATS_WITH_TARGETS,
                               DEFAULT_REQUESTS, DEFAULT_TIMED_WARMUP, build_gate, build_plan, fd_need)
from lab.bench.report import (RunRecord, busy_notes, markdown, pinning_line, summarize, table, unsteady_notes,
                              write_reports)
from lab.bench.targets import TARGETS
from lab.bench.workload import WORKLOADS, BenchFailure
from lab.files import check_folder_writable
from lab.host import raise_fd_limit

if TYPE_CHECKING:  # the session (client processes, epoll) loads when a run starts, not for --help
    from lab.bench.session import Plan

# Exit statuses (documented in --help).
# 3 is the CLI-wide internal error (lab.cli), so a failed gate is 4: CI tells a regression
# from a bug in the lab.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_GATE = 0, 1, 2, 4
DESCRIPTION = """\
Load echo servers, verify every reply, and report throughput, latency and what it cost.

  lab bench HOST PORT [CONNECTIONS] [REQUESTS_PER_CONNECTION]
      the assignment's benchmark_epoll against a running server (default 100 x 100);
      exit 0 after every reply was verified, 1 on a wrong reply, a dropped connection or
      nothing listening
  lab bench --target level,edge,uvloop [--cmd 'mine=./srv --port {port}'] ...
      start each server fresh for every run, alternate them over the repeats, compare

Reports: results/bench-<UTC timestamp>/ (--results to move): bench.json, bench.md, PNG plots.

A CI gate, as k6 has: --threshold '[TARGET:]METRIC<VALUE' (or >, <=, >=), repeatable, e.g.
  --threshold 'req_per_s>50000' --threshold 'p99<5ms' --threshold 'edge:server_us_per_req<10'
  metrics: req_per_s, connections_per_s, mib_per_s (k, M); p50, p90, p99, p999, max, mean
  (ms; us, s); server_us_per_req, server_user_us_per_req, server_sys_us_per_req,
  server_us_per_op (µs; ns, ms); server_cpu (cores). And --baseline OLD/bench.json
  --max-regression 10%: the same target, workload, connections, request size, pipeline depth
  and mode may not lose more than that in throughput or gain it in server CPU per operation.
  One ✓/✗ line per threshold (and per baseline comparison) on stdout and in bench.md.

Exit status:
  0  every reply verified, and every threshold and baseline comparison held
  1  the measurement failed: a wrong reply, a dropped connection, nothing listening
  2  usage: a bad option or threshold expression, an unreadable baseline, a --results
     folder that cannot be written (all checked before anything runs)
  3  internal error: a bug in the lab, printed with its traceback
  4  the measurement worked but a threshold or the baseline comparison failed"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark echo servers (the assignment's benchmark_epoll, and more)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("host", nargs="?", metavar="HOST", help="host of a running server (assignment form)")
    parser.add_argument("port", nargs="?", metavar="PORT", help="its port")
    parser.add_argument("positional_connections", nargs="?", metavar="CONNECTIONS",
                        help=f"concurrent connections (default {DEFAULT_CONNECTIONS})")
    parser.add_argument("positional_requests", nargs="?", metavar="REQUESTS_PER_CONNECTION",
                        help=f"requests per connection (default {DEFAULT_REQUESTS})")
    what = parser.add_argument_group("what to measure")
    what.add_argument("--target", metavar="NAMES", help=f"servers to start: {','.join(TARGETS)} or all")
    what.add_argument("--cmd", action="append", default=[], metavar="[NAME=]CMD",
                      help="also start this command, e.g. 'mine=./server --port {port}' (needs "
                           "{port}; no shell); repeatable")
    what.add_argument("--workload", default="pingpong", metavar="KINDS",
                      help=f"comma list of {', '.join(WORKLOADS)} (default pingpong)")
    what.add_argument("-c", "--connections",
                      help=f"comma list of connection counts, e.g. 100,1000,10000 (default {DEFAULT_CONNECTIONS})")
    what.add_argument("-n", "--requests", help=f"requests per connection (default {DEFAULT_REQUESTS}); a "
                                               "comma list pairs up with -c, e.g. -c 100,10000 -n 1000,10")
    what.add_argument("--size", default="64", help="request size, e.g. 64 or 4KiB (default 64)")
    what.add_argument("--pipeline", default="1", metavar="N",
                      help="requests in flight per connection (default 1)")
    what.add_argument("--rate", metavar="REQ_PER_S",
                      help="open loop: total requests per second (latency corrected for coordinated "
                           "omission); default closed loop")
    what.add_argument("-d", "--duration", help="pingpong: run each measurement this long (e.g. 10s) instead of "
                                               "-n requests per connection, as wrk's -d")
    what.add_argument("--warmup", metavar="N",
                      help=f"unmeasured requests per connection first (default 10%% of -n, at least 1; "
                           f"{DEFAULT_TIMED_WARMUP} with -d)")
    what.add_argument("--stream-size", default="10MiB", metavar="SIZE",
                      help="stream: bytes per connection (default 10MiB)")
    what.add_argument("--stream-connections", default="1", metavar="N", help="stream: connections (default 1)")
    how = parser.add_argument_group("how")
    how.add_argument("--repeat", metavar="N",
                     help=f"measured runs per target (default {DEFAULT_REPEATS_WITH_TARGETS} with --target/--cmd, "
                          "else 1)")
    how.add_argument("--workers", default="1", metavar="N", help="client processes (default 1)")
    how.add_argument("--pin", action=argparse.BooleanOptionalAction, default=None,
                     help="run the server and the client on disjoint CPUs (default: on with 2 or more "
                          "usable CPUs, for servers the bench starts); see PERFORMANCE.md")
    how.add_argument("--strace", action="store_true",
                     help="one extra run per target under strace -c -f for syscall counts")
    how.add_argument("--timeout", default="30s", metavar="DURATION",
                     help="fail when no reply comes for this long (default 30s)")
    how.add_argument("--results", default="results", metavar="DIR",
                     help="put the report folder, bench-<UTC timestamp>/, under DIR (default results)")
    how.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    gate = parser.add_argument_group("CI gate (exit status 4 when one fails)")
    gate.add_argument("--threshold", action="append", default=[], metavar="[TARGET:]METRIC<VALUE",
                      help="e.g. 'req_per_s>50000', 'p99<5ms', 'edge:server_us_per_req<10'; repeatable")
    gate.add_argument("--baseline", metavar="OLD/bench.json",
                      help="compare with an earlier run's report (its bench.json, or the folder holding it)")
    gate.add_argument("--max-regression", metavar="PERCENT",
                      help=f"how much worse than --baseline a figure may be (default {DEFAULT_MAX_REGRESSION}%%)")
    parser.set_defaults(handler=run_bench)


# -- the command -----------------------------------------------------------------------------

def run_bench(args: argparse.Namespace) -> int:
    from lab.bench.session import run_plan

    plan, notes = build_plan(args)
    gate = build_gate(args, plan)
    check_folder_writable(Path(args.results), "--results")  # not after minutes of measuring
    raise_fd_limit(fd_need(plan))
    platform = platform_info.collect()
    for note in notes:
        progress(f"note: {note}")
    if plan.pinning:
        progress(f"pinned: {plan.pinning.describe()}")
    runs: list[RunRecord] = []
    try:
        run_plan(plan, progress, runs)
    except BenchFailure as error:
        failure = f"lab bench: FAILED: {error}"
        if plan.external or not runs:
            print(failure, file=sys.stderr)
            return EXIT_FAILED
        # A long session keeps what it measured before the failure, marked as incomplete.
        notes.append(f"INCOMPLETE: the session stopped early ({error})")
    else:
        failure = None
    results = summarize(runs, platform)
    notes += _bound_notes(results) + unsteady_notes(results) + busy_notes(results, platform["cpus_usable"])
    if not plan.external and platform["cpus_usable"] <= 2:
        notes.append(f"the machine has {platform['cpus_usable']} usable CPU(s); {pinning_line(results)}: "
                     "read the 'bound' column and the CPU per request")
    if plan.external:
        _print_assignment_summary(plan, results)
    else:
        for workload in dict.fromkeys(r["workload"] for r in results):
            print(table(results, workload, fmt="simple"))
            print()
    for note in notes:
        print(f"note: {note}")
    verdicts = gate.judge(results) if gate and not failure else []
    gate_lines = [line for verdict in verdicts for line in verdict.lines]
    _write_report(args, results, notes, platform, gate_lines)
    if failure:
        print(failure, file=sys.stderr)
        return EXIT_FAILED
    if gate_lines:
        print("\n".join(["gate:", *gate_lines]))
    if any(verdict.passed is False for verdict in verdicts):
        print(f"lab bench: the gate failed (exit status {EXIT_GATE}): see the ✗ lines above", file=sys.stderr)
        return EXIT_GATE
    return EXIT_OK


def _write_report(args: argparse.Namespace, results: list[dict], notes: list[str], platform: dict,
                  gate_lines: list[str]) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    directory = Path(args.results) / f"bench-{stamp}"
    command = ("lab bench " + " ".join(shlex.quote(word) for word in sys.argv[2:])
               if sys.argv[1:2] == ["bench"] else "lab bench (called in-process)")
    try:
        written = write_reports(directory, results,
                                markdown(results, platform_info.describe(platform), command, notes, gate_lines))
        if args.no_plots:
            pass
        elif plots.available():
            written += plots.plot_all(results, directory, platform_info.describe(platform))
        else:
            print("note: plots skipped (pip install 'epoll-lab[plot]' for matplotlib)")
    except OSError as error:  # the measurement itself is done and printed: say so, go on
        print(f"lab bench: could not write the report to {directory}: {error}", file=sys.stderr)
        return
    print(f"report: {directory}/ ({', '.join(path.name for path in written)})")


def progress(line: str) -> None:
    """One line per measured run, on stderr: the results go to stdout."""
    print(line, file=sys.stderr, flush=True)


def _bound_notes(results: list[dict]) -> list[str]:
    client_bound = sorted({f"{r['target']} ({r['workload']}, {r['connections']:,})" for r in results
                           if r["bound"] in ("client", "both")})
    if not client_bound:
        return []
    return ["the client used >= 90 % of its CPU in: " + ", ".join(client_bound) +
            "; those servers may be faster than shown (try --workers, or compare server CPU per request)"]


def _print_assignment_summary(plan: Plan, results: list[dict]) -> None:
    """The assignment's benchmark_epoll output (plus percentiles and CPU) for ping-pong; the
    table for the other workloads."""
    host, port = plan.external
    print("epoll benchmark")
    print("==================")
    print(f"target: {host}:{port}")
    for result in results:
        if result["workload"] != "pingpong":
            print()
            print(table([result], result["workload"], fmt="simple"))
            continue
        total, per_connection = result["requests"], result["requests_per_connection"]
        print(f"concurrent connections: {result['connections']:,}")
        print(f"requests per connection: {per_connection:,}" if per_connection else
              f"duration: {result['duration_s']:g} s per measured run ({total / result['connections']:,.0f} "
              "requests per connection)")
        print(f"total requests: {total:,} (every reply verified: {result['size']} bytes echoed intact)")
        print(f"mode: {result['mode']}, after an unmeasured warm-up")
        print()
        latency = result["latency_ms"]
        median_run = min(result["runs"], key=lambda run: abs(run["ops"] / run["elapsed_s"] - result["req_per_s"]))
        print(f"total time: {median_run['elapsed_s'] * 1e3:,.0f} ms")
        print(f"throughput: {result['req_per_s']:,.0f} req/s")
        print(f"latency: mean {latency['mean']:.3f} ms, p50 {latency['p50']:.3f}, p90 {latency['p90']:.3f}, "
              f"p99 {latency['p99']:.3f}, p99.9 {latency['p999']:.3f}, max {latency['max']:.3f} ms")
        print(f"client CPU: {result['client_cpu']['utilisation'] * 100:.0f} % of a core")
