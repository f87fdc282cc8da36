"""Before a run: record the environment and warn when a scenario asks more than it allows.

The record goes into results.json and the scorecard, so a score can be read against the
machine it was measured on: kernel, CPUs, Python, RLIMIT_NOFILE, somaxconn, the local port
range, and whether we run in a container. ``check_limits`` is pure: numbers in, warnings out; ``check_nofile`` refuses, before anything
runs, a scenario whose ``nofile`` the target could not be given.

The runner's clients need one fd each, so the runner lifts its own soft RLIMIT_NOFILE to
the hard limit first (``lab.host.raise_fd_limit``; the targets inherit it, except where a
scenario sets its own ``nofile``).
"""

from __future__ import annotations

import os
import platform

from lab import host
from lab.runner.scenario import Scenario, ScenarioError

FD_MARGIN = 64  # fds the runner itself needs besides one per client


def environment() -> dict:
    soft, hard = host.nofile_limit()
    return {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "nofile_soft": soft,
        "nofile_hard": hard,
        "nr_open": int(host.read_text("/proc/sys/fs/nr_open").strip() or 0),
        "somaxconn": int(host.read_text("/proc/sys/net/core/somaxconn").strip() or 0),
        "local_port_range": list(host.local_port_range()),
        "container": host.in_container() or "no",
    }


def limits_line(env: dict, clients_needed: int) -> str:
    """One line for the progress output: what the scenarios to run need, what this process got."""
    return (f"pre-flight: the scenarios open up to {clients_needed:,} connection(s) at once (about "
            f"{clients_needed + FD_MARGIN:,} fds); RLIMIT_NOFILE here is {env['nofile_soft']:,} "
            f"(hard {env['nofile_hard']:,})")


def check_limits(env: dict, clients_needed: int, scenario: str) -> list[str]:
    """Warnings for a scenario that opens ``clients_needed`` connections at once."""
    warnings = []
    if clients_needed + FD_MARGIN > env["nofile_hard"]:
        warnings.append(
            f"{scenario} opens {clients_needed:,} connections but RLIMIT_NOFILE is {env['nofile_hard']:,}: "
            "some connects will fail on our side (raise it with ulimit -n; in a container, ask the "
            "engine for more: LAB_NOFILE=N with lab --docker, --ulimit nofile=N:N with docker run)"
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


def check_nofile(env: dict, scenario: Scenario) -> None:
    """A scenario's ``nofile`` is set as both limits in the target's process (between fork
    and exec); above our own hard limit (or the kernel's fs.nr_open) that fails, so say so
    before the run instead."""
    hard, nr_open = env["nofile_hard"], env.get("nr_open") or 0
    ceilings = [limit for limit in (hard, nr_open) if limit > 0]  # RLIM_INFINITY reads as -1
    if scenario.nofile is not None and ceilings and scenario.nofile > min(ceilings):
        raise ScenarioError(
            f"{scenario.path}: field 'nofile': {scenario.nofile} is above the most open files this "
            f"machine lets the runner give a process ({min(ceilings)}: hard RLIMIT_NOFILE {hard}, "
            f"fs.nr_open {nr_open or 'unknown'}); lower it, or raise the hard limit (as root: "
            f"ulimit -Hn {scenario.nofile}; in Docker: --ulimit nofile={scenario.nofile}:{scenario.nofile})"
        )
