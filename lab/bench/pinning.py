"""``--pin``: the server and the client on disjoint CPUs.

Facts, then what they mean for the bench:

- ``sched_setaffinity(2)`` sets the CPUs ONE thread may run on. A thread or process created
  with ``clone()``/``fork()`` starts with its creator's mask and keeps it across ``exec()``.
- So the bench switches itself onto the server's CPUs for the moment it forks and execs a
  server, then returns to the client's CPUs. Every thread and child process the server ever
  makes inherits the server's set, with no race against threads started after it listens
  (setting the mask of ``/proc/PID/task/*`` afterwards would miss those). The client's worker
  processes (``--workers``) are forked from the bench while it sits on the client's CPUs, so
  they share those.
- Two hardware threads of one core (SMT siblings, ``topology/thread_siblings_list``) share
  its execution units and caches: a server and a client on two siblings still slow each
  other down. The split therefore hands out whole cores, and splits threads only when there is
  a single core.
- Why pin at all: unpinned, the scheduler moves the server and the client between the CPUs,
  and on a machine with as many busy processes as cores the two take turns on the same core
  part of the time. Each run then measures a different mix of "server alone" and "server
  sharing", which is where most of the 20-30 % spread between repeats came from. Pinned, the
  server never waits for the client's CPU time, and the server's CPU per request is measured
  on a core whose caches hold only the server's work.

What pinning cannot do: keep OTHER programs off those CPUs (only ``isolcpus`` or a cgroup
cpuset does that), or split the kernel's work: a loopback ``send()`` runs the receiver's TCP
input in the sender's context, so part of each side's kernel time is spent on the other's
behalf wherever it is pinned.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SIBLINGS_FILE = "/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"


@dataclass(slots=True, frozen=True)
class Pinning:
    server: tuple[int, ...]
    client: tuple[int, ...]

    def describe(self) -> str:
        return f"server on CPU {_cpu_list(self.server)}, client on CPU {_cpu_list(self.client)}"


def _cpu_list(cpus: Iterable[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def parse_cpu_list(text: str) -> frozenset[int]:
    """``"0-3,8"`` (the kernel's list format) -> {0, 1, 2, 3, 8}."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return frozenset(cpus)


def split_cpus(usable: Iterable[int], siblings: Mapping[int, frozenset[int]]) -> Pinning | None:
    """The server gets the first half of the usable cores (all their hardware threads), the
    client the rest; None with fewer than two CPUs. ``siblings`` maps a CPU to its core's
    hardware threads (a CPU missing from it is a core of its own)."""
    cpus = sorted(set(usable))
    if len(cpus) < 2:
        return None
    cores: list[tuple[int, ...]] = []
    for cpu in cpus:
        core = tuple(sorted(siblings.get(cpu, frozenset({cpu})) & set(cpus) | {cpu}))
        if core not in cores:
            cores.append(core)
    if len(cores) < 2:  # one core with several threads: threads are all there is to split
        cores = [(cpu,) for cpu in cpus]
    half = len(cores) // 2
    return Pinning(server=tuple(cpu for core in cores[:half] for cpu in core),
                   client=tuple(cpu for core in cores[half:] for cpu in core))


def read_siblings(cpus: Iterable[int]) -> dict[int, frozenset[int]]:
    siblings = {}
    for cpu in cpus:
        try:
            siblings[cpu] = parse_cpu_list(Path(SIBLINGS_FILE.format(cpu=cpu)).read_text())
        except (OSError, ValueError):
            continue  # no topology (some containers, old kernels): a core of its own
    return siblings


def default_pinning() -> Pinning | None:
    """The split for the CPUs this process may use, or None with fewer than two."""
    usable = os.sched_getaffinity(0)
    return split_cpus(usable, read_siblings(usable))


@contextmanager
def running_on(cpus: Iterable[int] | None) -> Iterator[None]:
    """This thread (and whatever it forks meanwhile) on ``cpus`` for the block; the previous
    mask afterwards. ``None`` changes nothing."""
    if cpus is None:
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def process_cpus(pid: int) -> list[int] | None:
    """Every CPU some thread of ``pid`` may run on (the union of its threads' masks), or None
    when the process is gone: what the report states as where the server ran."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return None
    cpus: set[int] = set()
    for task in tasks:
        try:
            cpus |= os.sched_getaffinity(int(task))
        except ProcessLookupError:  # a thread that just ended
            continue
    return sorted(cpus)
