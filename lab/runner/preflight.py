"""Before a run: record the environment and warn when a scenario asks more than it allows.

The record goes into results.json and the scorecard, so a score can be read against the
machine it was measured on: kernel, CPUs, Python, RLIMIT_NOFILE, somaxconn, the local port
range, and whether we run in a container. ``check_limits`` is pure: numbers in, warnings out.

The runner's clients need one fd each, so ``raise_fd_limit`` lifts our own soft
RLIMIT_NOFILE to the hard limit first (the targets inherit it, except where a scenario sets
its own ``nofile``).
"""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path

FD_MARGIN = 64  # fds the runner itself needs besides one per client


def raise_fd_limit() -> tuple[int, int]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def in_container() -> str | None:
    """The container runtime we seem to run under, or None."""
    if Path("/.dockerenv").exists():
        return "docker"
    if Path("/run/.containerenv").exists():
        return "podman"
    if os.environ.get("container"):
        return os.environ["container"]
    cgroup = _read("/proc/1/cgroup") or ""
    for marker in ("docker", "containerd", "kubepods", "lxc"):
        if marker in cgroup:
            return marker
    return None


def environment() -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    port_range = (_read("/proc/sys/net/ipv4/ip_local_port_range") or "").split()
    return {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "nofile_soft": soft,
        "nofile_hard": hard,
        "somaxconn": int(_read("/proc/sys/net/core/somaxconn") or 0),
        "local_port_range": [int(p) for p in port_range] if len(port_range) == 2 else None,
        "container": in_container() or "no",
    }


def check_limits(env: dict, clients_needed: int, scenario: str) -> list[str]:
    """Warnings for a scenario that opens ``clients_needed`` connections at once."""
    warnings = []
    if clients_needed + FD_MARGIN > env["nofile_hard"]:
        warnings.append(
            f"{scenario} opens {clients_needed:,} connections but RLIMIT_NOFILE is {env['nofile_hard']:,}: "
            "some connects will fail on our side (raise it with ulimit -n)"
        )
    if env["somaxconn"] and clients_needed > env["somaxconn"]:
        warnings.append(
            f"{scenario} connects {clients_needed:,} clients at once but net.core.somaxconn is "
            f"{env['somaxconn']:,}: the backlog may overflow and connects retry slowly"
        )
    port_range = env.get("local_port_range")
    if port_range and clients_needed > port_range[1] - port_range[0]:
        warnings.append(
            f"{scenario} needs {clients_needed:,} local ports but the range {port_range[0]}-{port_range[1]} is smaller"
        )
    return warnings
