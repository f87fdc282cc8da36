"""Why a process was killed, in words, from the control group it ran in.

In a sandbox (``lab grade`` of a class runs each submission in a container with limits) a
student's server that outgrows the memory limit dies of SIGKILL, and that status alone does not
say who sent it. The kernel counts what its limits did, per cgroup:

- The out-of-memory killer: ``oom_kill N`` in ``memory.events`` (cgroup v2) or in
  ``memory.oom_control`` (cgroup v1, Linux 4.13+); the limit is ``memory.max`` (v2) or
  ``memory.limit_in_bytes`` (v1, where "no limit" is a huge number, not ``max``).
- The pids limit: ``max N`` in ``pids.events`` counts the forks and clones it refused; the
  limit is ``pids.max``.

A container sees its own cgroup at ``/sys/fs/cgroup`` (v2 with its own namespace; v1 as one
folder per controller). So the runner reads the counters when it starts a program and again
when the program is found dead: a SIGKILL while ``oom_kill`` grew is the OOM killer's. Outside
a container the same files describe the host's cgroup, and a counter that did not move
explains nothing: ``kill_cause`` then returns None and the plain exit status stands.

Reading is Linux-only but imports nothing Linux-only; the parsers are pure.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path

from lab.units import format_size

CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup v1 spells "no memory limit" as the largest page-aligned signed 64-bit number.
UNLIMITED_FROM = 1 << 60


@dataclass(slots=True, frozen=True)
class CgroupCounters:
    """What the limits of one cgroup have done so far (None: not readable here)."""

    oom_kills: int | None = None
    pids_refused: int | None = None
    memory_limit: int | None = None  # bytes, None when unlimited or unknown
    pids_limit: int | None = None


def parse_counter(text: str, name: str) -> int | None:
    """The number after ``name`` in a flat-keyed cgroup file (``oom_kill 3``, ``max 0``)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == name and value.strip().isdigit():
            return int(value)
    return None


def parse_limit(text: str) -> int | None:
    """A limit file's value: None for ``max`` or v1's "unlimited" huge number."""
    text = text.strip()
    if not text.isdigit() or int(text) >= UNLIMITED_FROM:
        return None
    return int(text)


def read_counters(root: Path = CGROUP_ROOT) -> CgroupCounters:
    """The counters of the cgroup this process sees at ``root``, v2 or v1."""
    if (root / "cgroup.controllers").exists():  # v2: one unified folder
        memory = pids = root
        oom_file, memory_limit_file = "memory.events", "memory.max"
    else:
        memory, pids = root / "memory", root / "pids"
        oom_file, memory_limit_file = "memory.oom_control", "memory.limit_in_bytes"
    return CgroupCounters(
        oom_kills=parse_counter(_read(memory / oom_file), "oom_kill"),
        pids_refused=parse_counter(_read(pids / "pids.events"), "max"),
        memory_limit=parse_limit(_read(memory / memory_limit_file)),
        pids_limit=parse_limit(_read(pids / "pids.max")),
    )


def kill_cause(before: CgroupCounters, after: CgroupCounters, returncode: int | None) -> str | None:
    """Words for what the limits did to a program between two readings, or None.

    The OOM killer is named only for a SIGKILL while its counter grew; refused forks are named
    whatever the status, since a program that cannot fork usually fails its own way."""
    causes = []
    if returncode == -signal.SIGKILL and _grew(before.oom_kills, after.oom_kills):
        limit = f" (limit {format_size(after.memory_limit)})" if after.memory_limit else ""
        causes.append(f"killed: out of memory{limit}")
    if _grew(before.pids_refused, after.pids_refused):
        limit = f" (limit {after.pids_limit})" if after.pids_limit else ""
        causes.append(f"pids limit reached{limit}: {after.pids_refused - (before.pids_refused or 0)} "
                      "fork/clone call(s) refused")
    return "; ".join(causes) or None


def _grew(before: int | None, after: int | None) -> bool:
    return after is not None and after > (before or 0)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
