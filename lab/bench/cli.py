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
and exit status 2 (:func:`build_plan` checks everything before anything starts).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from lab.bench import platform_info, plots
from lab.bench.limits import fd_limit_needed
from lab.bench.report import RunRecord, markdown, summarize, table, write_reports
from lab.bench.session import Plan, run_plan
from lab.bench.targets import TARGETS, command_target, parse_target_names, unavailable
from lab.bench.workload import WORKLOADS, BenchFailure, Workload
from lab.errors import UsageError
from lab.host import raise_fd_limit
from lab.units import parse_duration, parse_size

DEFAULT_CONNECTIONS = 100  # the assignment's benchmark_epoll defaults
DEFAULT_REQUESTS = 100
DEFAULT_REPEATS_WITH_TARGETS = 3
DESCRIPTION = """\
Load echo servers, verify every reply, and report throughput, latency and what it cost.

  lab bench HOST PORT [CONNECTIONS] [REQUESTS_PER_CONNECTION]
      the assignment's benchmark_epoll against a running server (default 100 x 100);
      exit 0 after every reply was verified, 1 on a wrong reply, a dropped connection or
      nothing listening
  lab bench --target level,edge,uvloop [--cmd 'mine=./srv --port {port}'] ...
      start each server fresh for every run, alternate them over the repeats, compare

Reports: results/bench-<UTC timestamp>/ (--results to move): bench.json, bench.md, PNG plots."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark echo servers (the assignment's benchmark_epoll, and more)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("host", nargs="?", help="host of a running server (assignment form)")
    parser.add_argument("port", nargs="?", help="its port")
    parser.add_argument("positional_connections", nargs="?", metavar="CONNECTIONS",
                        help=f"concurrent connections (default {DEFAULT_CONNECTIONS})")
    parser.add_argument("positional_requests", nargs="?", metavar="REQUESTS_PER_CONNECTION",
                        help=f"requests per connection (default {DEFAULT_REQUESTS})")
    what = parser.add_argument_group("what to measure")
    what.add_argument("--target", help=f"servers to start: {','.join(TARGETS)} or all")
    what.add_argument("--cmd", action="append", default=[], metavar="[NAME=]CMD",
                      help="also start this command, e.g. 'mine=./server --port {port}' (needs "
                           "{port}; no shell); repeatable")
    what.add_argument("--workload", default="pingpong",
                      help=f"comma list of {', '.join(WORKLOADS)} (default pingpong)")
    what.add_argument("-c", "--connections",
                      help=f"comma list of connection counts, e.g. 100,1000,10000 (default {DEFAULT_CONNECTIONS})")
    what.add_argument("-n", "--requests", help=f"requests per connection (default {DEFAULT_REQUESTS}); a "
                                               "comma list pairs up with -c, e.g. -c 100,10000 -n 1000,10")
    what.add_argument("--size", default="64", help="request size, e.g. 64 or 4KiB (default 64)")
    what.add_argument("--pipeline", default="1", help="requests in flight per connection (default 1)")
    what.add_argument("--rate", help="open loop: total requests per second (latency corrected "
                                     "for coordinated omission); default closed loop")
    what.add_argument("--warmup", help="unmeasured requests per connection first (default 10%% of -n, at least 1)")
    what.add_argument("--stream-size", default="10MiB", help="stream: bytes per connection (default 10MiB)")
    what.add_argument("--stream-connections", default="1", help="stream: connections (default 1)")
    how = parser.add_argument_group("how")
    how.add_argument("--repeat", help=f"measured runs per target (default {DEFAULT_REPEATS_WITH_TARGETS} "
                                      "with --target/--cmd, else 1)")
    how.add_argument("--workers", default="1", help="client processes (default 1)")
    how.add_argument("--strace", action="store_true",
                     help="one extra run per target under strace -c -f for syscall counts")
    how.add_argument("--timeout", default="30s", help="fail when no reply comes for this long (default 30s)")
    how.add_argument("--results", default="results", help="parent directory of the report (default results)")
    how.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.set_defaults(handler=run_bench)


# -- validation (pure) -----------------------------------------------------------------------

def _whole(text: str | None, what: str, default: int, minimum: int = 1) -> int:
    if text is None:
        return default
    try:
        value = int(str(text).replace("_", ""))
    except ValueError:
        raise UsageError(f"{what} must be a whole number, got {text!r}") from None
    if value < minimum:
        raise UsageError(f"{what} must be at least {minimum}, got {value}")
    return value


def parse_counts(text: str, what: str) -> list[int]:
    """``"100,1000,10000"`` -> [100, 1000, 10000]."""
    words = [word.strip() for word in text.split(",") if word.strip()]
    if not words:
        raise UsageError(f"{what} needs at least one number, got {text!r}")
    return [_whole(word, what, 0) for word in words]


def _unit(parse, text: str, what: str):
    try:
        return parse(text)
    except ValueError as error:
        raise UsageError(f"{what}: {error}") from None


def build_plan(args: argparse.Namespace) -> tuple[Plan, list[str]]:
    """Check every option and turn them into a plan (and notes for the report); UsageError
    names the first problem. Starts nothing."""
    notes: list[str] = []
    external = None
    if args.host is not None:
        if args.port is None:
            raise UsageError("give both HOST and PORT (e.g. lab bench 127.0.0.1 8080), or use --target")
        if args.target or args.cmd:
            raise UsageError("HOST PORT measures a running server; --target/--cmd start their own: pick one")
        external = (args.host, _whole(args.port, "PORT", 0))
        if external[1] > 65535:
            raise UsageError(f"PORT must be at most 65535, got {external[1]}")
        if args.strace:
            raise UsageError("--strace needs a server the bench starts (--target or --cmd)")
    elif not args.target and not args.cmd:
        raise UsageError("nothing to measure: give HOST PORT of a running server, or --target "
                         f"({','.join(TARGETS)}) and/or --cmd")
    if args.positional_connections is not None and args.connections is not None:
        raise UsageError("give the connection count once: positional CONNECTIONS or -c")
    if args.positional_requests is not None and args.requests is not None:
        raise UsageError("give the request count once: positional REQUESTS_PER_CONNECTION or -n")

    targets = []
    if args.target:
        for name in parse_target_names(args.target):
            reason = unavailable(TARGETS[name])
            if reason:
                notes.append(reason)
            else:
                targets.append(TARGETS[name])
    for text in args.cmd:
        targets.append(command_target(text, {target.name for target in targets}))
    if external is None and not targets:
        raise UsageError("no target left to measure: " + "; ".join(notes))

    kinds = [word.strip() for word in args.workload.split(",") if word.strip()]
    unknown = [kind for kind in kinds if kind not in WORKLOADS]
    if unknown or not kinds:
        raise UsageError(f"unknown --workload {', '.join(unknown) or repr(args.workload)}: choose from {', '.join(WORKLOADS)}")
    if external and kinds != ["pingpong"] and args.positional_connections is not None:
        raise UsageError("positional CONNECTIONS/REQUESTS describe the pingpong workload; use -c/-n with --workload")
    connections = (parse_counts(args.positional_connections, "CONNECTIONS") if args.positional_connections
                   else parse_counts(args.connections, "--connections") if args.connections
                   else [DEFAULT_CONNECTIONS])
    requests = (parse_counts(args.positional_requests, "REQUESTS_PER_CONNECTION") if args.positional_requests
                else parse_counts(args.requests, "--requests") if args.requests else [DEFAULT_REQUESTS])
    if len(requests) == 1:
        requests *= len(connections)
    elif len(requests) != len(connections):
        raise UsageError(f"give one -n for all connection counts or one per count: {len(connections)} "
                         f"connection count(s), {len(requests)} request count(s)")
    size = _unit(parse_size, args.size, "--size")
    pipeline = _whole(args.pipeline, "--pipeline", 1)
    if size < 1:
        raise UsageError("--size must be at least 1 byte")
    rate = None
    if args.rate is not None:
        try:
            rate = float(args.rate)
        except ValueError:
            raise UsageError(f"--rate must be a number of requests per second, got {args.rate!r}") from None
        if not rate > 0:
            raise UsageError(f"--rate must be greater than 0, got {args.rate}")
        if pipeline != 1:
            raise UsageError("--rate sends one request at a time per connection: drop --pipeline")
    timeout = _unit(parse_duration, args.timeout, "--timeout")
    if timeout <= 0:
        raise UsageError("--timeout must be greater than 0")
    stream_bytes = _unit(parse_size, args.stream_size, "--stream-size")
    if stream_bytes < 1:
        raise UsageError("--stream-size must be at least 1 byte")
    stream_connections = _whole(args.stream_connections, "--stream-connections", 1)
    workers = _whole(args.workers, "--workers", 1)
    repeats = _whole(args.repeat, "--repeat", 1 if external else DEFAULT_REPEATS_WITH_TARGETS)

    workloads = []
    for kind in kinds:
        pairs = [(stream_connections, requests[0])] if kind == "stream" else zip(connections, requests)
        for count, per_connection in pairs:
            if workers > count:
                raise UsageError(f"--workers {workers} is more than the {count} connection(s) to share out")
            warmup = _whole(args.warmup, "--warmup", max(1, per_connection // 10), minimum=0)
            workloads.append(Workload(kind, count, per_connection, size, pipeline, rate, warmup, stream_bytes,
                                      timeout))
    return Plan(workloads, targets, external, repeats, workers, args.strace), notes


def fd_need(plan: Plan) -> int:
    """Open files this process (or each worker) needs; the servers it starts inherit the
    limit and need one per connection too."""
    most = max(workload.connections for workload in plan.workloads)
    if plan.external:
        return fd_limit_needed(-(-most // plan.workers))
    return fd_limit_needed(most)


# -- the command -----------------------------------------------------------------------------

def run_bench(args: argparse.Namespace) -> int:
    plan, notes = build_plan(args)
    raise_fd_limit(fd_need(plan))
    platform = platform_info.collect()
    for note in notes:
        progress(f"note: {note}")
    runs: list[RunRecord] = []
    try:
        run_plan(plan, progress, runs)
    except BenchFailure as error:
        failure = f"lab bench: FAILED: {error}"
        if plan.external or not runs:
            print(failure, file=sys.stderr)
            return 1
        # A long session keeps what it measured before the failure, marked as incomplete.
        notes.append(f"INCOMPLETE: the session stopped early ({error})")
    else:
        failure = None
    results = summarize(runs, platform)
    notes += _bound_notes(results)
    if platform["cpus_usable"] <= 2:
        notes.append(f"client and server share {platform['cpus_usable']} CPU(s): both compete for the "
                     "same cores, so read the 'bound' column and the CPU per request")
    if plan.external:
        _print_assignment_summary(plan, results)
    else:
        for workload in dict.fromkeys(r["workload"] for r in results):
            print(table(results, workload, fmt="simple"))
            print()
    for note in notes:
        print(f"note: {note}")
    _write_report(args, results, notes, platform)
    if failure:
        print(failure, file=sys.stderr)
        return 1
    return 0


def _write_report(args: argparse.Namespace, results: list[dict], notes: list[str], platform: dict) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    directory = Path(args.results) / f"bench-{stamp}"
    command = ("lab bench " + " ".join(shlex.quote(word) for word in sys.argv[2:])
               if sys.argv[1:2] == ["bench"] else "lab bench (called in-process)")
    try:
        written = write_reports(directory, results,
                                markdown(results, platform_info.describe(platform), command, notes))
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
        print(f"requests per connection: {per_connection:,}")
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
