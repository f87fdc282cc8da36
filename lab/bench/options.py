"""From ``lab bench``'s parsed options to what a session does: a :class:`~lab.bench.session.Plan`
(what to measure, how, on which CPUs) and a :class:`~lab.bench.gate.Gate` (what to judge it by).

Everything is checked here, before anything starts: a misuse is a UsageError naming the option
and what to do, and the CLI turns it into one line and exit status 2. Each piece checks one
group of options: the server to measure (``_external_address``, ``_targets``), the work
(``_workloads``: kinds, sizes, rate, duration), where it runs (``_pinning``) and the gate.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import TYPE_CHECKING

from lab.bench.gate import Gate, load_baseline, parse_percent, parse_threshold
from lab.bench.limits import fd_limit_needed
from lab.bench.pinning import Pinning, default_pinning
from lab.bench.targets import TARGETS, Target, command_target, parse_target_names, unavailable
from lab.bench.workload import WORKLOADS, Workload
from lab.errors import UsageError
from lab.units import parse_duration, parse_size

if TYPE_CHECKING:  # the session (client processes, epoll) loads when a run starts, not for --help
    from lab.bench.session import Plan

DEFAULT_CONNECTIONS = 100  # the assignment's benchmark_epoll defaults
DEFAULT_REQUESTS = 100
DEFAULT_REPEATS_WITH_TARGETS = 3
DEFAULT_TIMED_WARMUP = 10  # unmeasured requests per connection before a timed (-d) run
DEFAULT_MAX_REGRESSION = "10"  # per cent


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
    from lab.bench.session import Plan

    external = _external_address(args)
    notes: list[str] = []
    targets = _targets(args, external, notes)
    workloads = _workloads(args, external)
    repeats = _whole(args.repeat, "--repeat", 1 if external else DEFAULT_REPEATS_WITH_TARGETS)
    plan = Plan(workloads, targets, external, repeats, _whole(args.workers, "--workers", 1), args.strace,
                _pinning(args, external))
    for workload in workloads:
        if plan.workers > workload.connections:
            raise UsageError(f"--workers {plan.workers} is more than the {workload.connections} connection(s) "
                             "to share out")
    return plan, notes


def _external_address(args: argparse.Namespace) -> tuple[str, int] | None:
    """(HOST, PORT) of a running server to measure, or None when the bench starts its own."""
    if args.positional_connections is not None and args.connections is not None:
        raise UsageError("give the connection count once: positional CONNECTIONS or -c")
    if args.positional_requests is not None and args.requests is not None:
        raise UsageError("give the request count once: positional REQUESTS_PER_CONNECTION or -n")
    if args.host is None:
        if not args.target and not args.cmd:
            raise UsageError("nothing to measure: give HOST PORT of a running server, or --target "
                             f"({','.join(TARGETS)}) and/or --cmd")
        return None
    if args.port is None:
        raise UsageError("give both HOST and PORT (e.g. lab bench 127.0.0.1 8080), or use --target")
    if args.target or args.cmd:
        raise UsageError("HOST PORT measures a running server; --target/--cmd start their own: pick one")
    port = _whole(args.port, "PORT", 0)
    if port > 65535:
        raise UsageError(f"PORT must be at most 65535, got {port}")
    for flag, given in (("--strace", args.strace), ("--pin", args.pin)):
        if given:
            raise UsageError(f"{flag} needs a server the bench starts (--target or --cmd)")
    return args.host, port


def _targets(args: argparse.Namespace, external: tuple | None, notes: list[str]) -> list[Target]:
    """The servers to start; one whose optional module is missing is left out with a note."""
    targets = []
    for name in parse_target_names(args.target) if args.target else []:
        reason = unavailable(TARGETS[name])
        if reason:
            notes.append(reason)
        else:
            targets.append(TARGETS[name])
    for text in args.cmd:
        targets.append(command_target(text, {target.name for target in targets}))
    if external is None and not targets:
        raise UsageError("no target left to measure: " + "; ".join(notes))
    return targets


def _workload_kinds(args: argparse.Namespace, external: tuple | None) -> list[str]:
    kinds = [word.strip() for word in args.workload.split(",") if word.strip()]
    unknown = [kind for kind in kinds if kind not in WORKLOADS]
    if unknown or not kinds:
        raise UsageError(f"unknown --workload {', '.join(unknown) or repr(args.workload)}: choose from "
                         f"{', '.join(WORKLOADS)}")
    if external and kinds != ["pingpong"] and args.positional_connections is not None:
        raise UsageError("positional CONNECTIONS/REQUESTS describe the pingpong workload; use -c/-n with --workload")
    return kinds


def _sizes(args: argparse.Namespace) -> tuple[list[int], list[int | None]]:
    """Connection counts, and requests per connection paired with them (None: a timed run)."""
    connections = (parse_counts(args.positional_connections, "CONNECTIONS") if args.positional_connections
                   else parse_counts(args.connections, "--connections") if args.connections
                   else [DEFAULT_CONNECTIONS])
    if args.duration is not None:
        if args.positional_requests or args.requests:
            raise UsageError("give the run's length once: requests per connection (-n) or a duration (-d)")
        return connections, [None] * len(connections)
    requests = (parse_counts(args.positional_requests, "REQUESTS_PER_CONNECTION") if args.positional_requests
                else parse_counts(args.requests, "--requests") if args.requests else [DEFAULT_REQUESTS])
    if len(requests) == 1:
        return connections, requests * len(connections)
    if len(requests) != len(connections):
        raise UsageError(f"give one -n for all connection counts or one per count: {len(connections)} "
                         f"connection count(s), {len(requests)} request count(s)")
    return connections, requests


def _positive(parse, text: str, what: str, unit: str):
    value = _unit(parse, text, what)
    if value <= 0:
        raise UsageError(f"{what} must be greater than 0 {unit}")
    return value


def _rate(args: argparse.Namespace, pipeline: int) -> float | None:
    if args.rate is None:
        return None
    try:
        rate = float(args.rate)
    except ValueError:
        raise UsageError(f"--rate must be a number of requests per second, got {args.rate!r}") from None
    if not rate > 0:
        raise UsageError(f"--rate must be greater than 0, got {args.rate}")
    if pipeline != 1:
        raise UsageError("--rate sends one request at a time per connection: drop --pipeline")
    return rate


def _workloads(args: argparse.Namespace, external: tuple | None) -> list[Workload]:
    """One workload per kind and (connection count, length)."""
    kinds = _workload_kinds(args, external)
    if args.duration is not None and "pingpong" not in kinds:
        raise UsageError("--duration times the pingpong workload; stream and connect run until their bytes "
                         "or connections are done")
    connections, requests = _sizes(args)
    size = _positive(parse_size, args.size, "--size", "bytes")
    pipeline = _whole(args.pipeline, "--pipeline", 1)
    rate = _rate(args, pipeline)
    timeout = _positive(parse_duration, args.timeout, "--timeout", "seconds")
    duration = None if args.duration is None else _positive(parse_duration, args.duration, "--duration", "seconds")
    stream_bytes = _positive(parse_size, args.stream_size, "--stream-size", "bytes")
    stream_connections = _whole(args.stream_connections, "--stream-connections", 1)
    workloads = []
    for kind in kinds:
        pairs = [(stream_connections, requests[0])] if kind == "stream" else zip(connections, requests)
        for count, per_connection in pairs:
            if per_connection is None and rate:  # an open loop's length is its schedule: rate x time
                per_connection = max(1, math.ceil(rate * duration / count))
            timed = per_connection is None
            warmup = _whole(args.warmup, "--warmup",
                            DEFAULT_TIMED_WARMUP if timed else max(1, per_connection // 10), minimum=0)
            workloads.append(Workload(kind, count, per_connection or DEFAULT_REQUESTS, size, pipeline, rate, warmup,
                                      stream_bytes, timeout, duration if timed and kind == "pingpong" else None))
    return workloads


def _pinning(args: argparse.Namespace, external: tuple | None) -> Pinning | None:
    """--pin (the default with two CPUs or more for servers the bench starts) or --no-pin."""
    if external or args.pin is False:
        return None
    pinning = default_pinning()
    if pinning is None and args.pin:
        raise UsageError(f"--pin needs at least 2 usable CPUs; this process may use {len(os.sched_getaffinity(0))}")
    return pinning


def build_gate(args: argparse.Namespace, plan: Plan) -> Gate:
    """The thresholds and the baseline to judge the run by; UsageError names a bad one."""
    names = [target.name for target in plan.targets] or [f"{plan.external[0]}:{plan.external[1]}"]
    thresholds = [parse_threshold(text, names) for text in args.threshold]
    if args.max_regression is not None and args.baseline is None:
        raise UsageError("--max-regression needs --baseline OLD/bench.json to compare with")
    baseline = load_baseline(args.baseline) if args.baseline is not None else None
    max_regression = parse_percent(args.max_regression or DEFAULT_MAX_REGRESSION, "--max-regression")
    return Gate(thresholds, baseline, max_regression)


def fd_need(plan: Plan) -> int:
    """Open files this process (or each worker) needs; the servers it starts inherit the
    limit and need one per connection too."""
    most = max(workload.connections for workload in plan.workloads)
    if plan.external:
        return fd_limit_needed(-(-most // plan.workers))
    return fd_limit_needed(most)
