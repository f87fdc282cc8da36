"""One bench session: every workload, every repeat, every target, in an order that is fair.

Order: for each workload, repeat after repeat, every target once, the order rotating by one
each repeat (level, edge, uvloop; then edge, uvloop, level; ...). A machine whose speed drifts
(other developers' jobs on a shared box, a warming CPU) then hits every target about equally,
instead of hitting whichever ran last. Each measured run gets a fresh server process.

One measured run: start the server, let the client connect and warm up, read the server
(CPU, counters), run the measured window, read the server again while every connection is
still open (CPU, counters, memory), then close everything. With ``--strace`` one more run per
target and workload is traced after the timed repeats; it supplies syscall counts only.

With ``--pin`` (the default on two CPUs or more) this process, the client, runs on the
client's CPUs for the whole session, and each server is started on the server's CPUs
(pinning.py says how and why); each run records the CPUs both sides could use, read back from
the kernel, so the report states what happened rather than what was asked for.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from lab import probes
from lab.bench.limits import ports_per_address, source_addresses
from lab.bench.pinning import Pinning, process_cpus, running_on
from lab.bench.report import RunRecord, run_record
from lab.bench.targets import RunningTarget, StraceAttach, Target
from lab.bench.workers import ClientPool
from lab.bench.workload import BenchFailure, Workload
from lab.errors import UsageError


@dataclass(slots=True)
class Plan:
    workloads: list[Workload]
    targets: list[Target]  # empty when measuring an already running server
    external: tuple[str, int] | None = None  # (host, port) of that server
    repeats: int = 1
    workers: int = 1
    strace: bool = False
    pinning: Pinning | None = None  # --pin: the server's and the client's CPUs


def rotated(items: list, by: int) -> list:
    if not items:
        return []
    by %= len(items)
    return items[by:] + items[:by]


def resolve(host: str, port: int) -> tuple[int, tuple]:
    """(family, sockaddr) of ``host:port``. A name with several addresses ("localhost" is
    often ::1 and 127.0.0.1) resolves to the first one that accepts a connection, so a server
    listening on IPv4 only is still found. UsageError when the name does not resolve."""
    try:
        candidates = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UsageError(f"cannot resolve {host!r}: {error.strerror}") from None
    if len(candidates) > 1:
        for family, _, _, _, sockaddr in candidates:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.settimeout(5)
                if probe.connect_ex(sockaddr) == 0:
                    return family, sockaddr
    family, _, _, _, sockaddr = candidates[0]
    return family, sockaddr  # nothing accepted: the client reports it when it connects


def _client_run(address: tuple[str, int], workload: Workload, workers: int,
                between: Callable[[], object], after: Callable[[], object]):
    """Connect and warm up, call ``between``, measure, call ``after`` (connections still
    open); return (measurement, between's result, after's result)."""
    family, sockaddr = resolve(*address)
    sources = source_addresses(workload.connections, sockaddr[0], ports_per_address())
    with ClientPool(sockaddr, family, workload, workers, sources) as pool:
        pool.prepare()
        first = between()
        measurement = pool.measure()
        second = after()
    return measurement, first, second


def measure_external(host: str, port: int, workload: Workload, workers: int, repeat: int) -> RunRecord:
    load = os.getloadavg()[0]
    measurement, _, _ = _client_run((host, port), workload, workers, lambda: None, lambda: None)
    return run_record(f"{host}:{port}", workload, workers=workers, repeat=repeat, measurement=measurement,
                      load_1min=load)


def measure_target(target: Target, workload: Workload, workers: int, repeat: int, traced: bool = False,
                   pinning: Pinning | None = None) -> RunRecord:
    load = os.getloadavg()[0]
    with RunningTarget(target, cpus=pinning and pinning.server) as running, ExitStack() as tracing:
        pid = running.server.pid
        server_cpus = process_cpus(pid)
        tracers: list[StraceAttach] = []

        def before():
            snapshot = running.snapshot()
            if traced:  # attach last: the SIGUSR1 round trip is not part of the window
                tracers.append(tracing.enter_context(StraceAttach(pid)))
            return snapshot

        def after():
            tracing.close()  # detach first: strace must not count the reading below
            running.check_alive()
            return running.snapshot(), running.rss_bytes(), probes.thread_count(pid)

        try:
            measurement, first, (second, rss, threads) = _client_run(
                running.address, workload, workers, before, after)
        except BenchFailure as failure:
            said = running.server.stderr_text().strip().splitlines()[-3:]
            tail = f" (its stderr ends: {' | '.join(said)})" if said else ""
            raise BenchFailure(f"{target.name}: {failure}{tail}") from None
    return run_record(target.name, workload, workers=workers, repeat=repeat, measurement=measurement,
                      before=first, after=second, rss_bytes=rss,
                      server_threads=min(threads, len(server_cpus or os.sched_getaffinity(0))),
                      syscalls=tracers[0].counts if tracers else None, load_1min=load,
                      server_cpus=server_cpus, client_cpus=sorted(os.sched_getaffinity(0)))


def run_plan(plan: Plan, say: Callable[[str], None], runs: list[RunRecord]) -> None:
    """Measure everything in ``plan``, appending to ``runs`` as it goes (so a failure part-way
    leaves what was measured before it). With ``plan.pinning`` this process (the client) runs
    on the client's CPUs until it returns."""
    with running_on(plan.pinning and plan.pinning.client):
        _run_all(plan, say, runs)


def _run_all(plan: Plan, say: Callable[[str], None], runs: list[RunRecord]) -> None:
    for workload in plan.workloads:
        label = f"{workload.kind}, {workload.connections:,} connection(s)"
        for repeat in range(plan.repeats):
            if plan.external:
                run = measure_external(*plan.external, workload, plan.workers, repeat)
                runs.append(run)
                say(f"{label}, repeat {repeat + 1}/{plan.repeats}: {_rate(run)}")
                continue
            for target in rotated(plan.targets, repeat):
                run = measure_target(target, workload, plan.workers, repeat, pinning=plan.pinning)
                runs.append(run)
                say(f"{label}, repeat {repeat + 1}/{plan.repeats}, {target.name}: {_rate(run)}")
        if plan.strace:
            for target in plan.targets:
                run = measure_target(target, workload, plan.workers, plan.repeats, traced=True,
                                     pinning=plan.pinning)
                runs.append(run)
                say(f"{label}, traced {target.name}: {sum(r['calls'] for r in run.syscalls.values()):,} syscalls")


def _rate(run: RunRecord) -> str:
    unit = {"pingpong": "req/s", "connect": "connections/s", "stream": "MiB/s"}[run.workload]
    return f"{run.per_second:,.{1 if run.workload == 'stream' else 0}f} {unit}"
