"""The machine a benchmark ran on, recorded in every report.

Numbers without their machine are not results. Each report says which CPU (model and how many
cores this process may use), which kernel, which Python, whether it ran in a container, how
busy the machine already was (the load average before the run: these machines are shared),
and the limits that shape a connection-heavy run. The parsers are pure; ``collect()`` reads.
"""

from __future__ import annotations

import os
import platform

from lab import host


def parse_cpu_model(cpuinfo: str) -> str:
    """The first ``model name`` (x86) or ``Model``/``Hardware`` (ARM) of /proc/cpuinfo."""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in cpuinfo.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return value.strip()
    return "unknown"


def collect() -> dict:
    soft, hard = host.nofile_limit()
    try:
        import uvloop
        uvloop_version = uvloop.__version__
    except ImportError:
        uvloop_version = None
    return {
        "cpu_model": parse_cpu_model(host.read_text("/proc/cpuinfo")),
        "cpus_online": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "kernel": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "uvloop": uvloop_version,
        "container": host.in_container(),
        "load_average_before": [round(load, 2) for load in os.getloadavg()],
        "nofile_limit": [soft, hard],
        "ephemeral_ports": list(host.local_port_range()),
    }


def describe(info: dict) -> str:
    """One line for the report's header."""
    where = f"container ({info['container']})" if info.get("container") else "no container"
    load = ", ".join(str(x) for x in info.get("load_average_before", []))
    return (f"{info['cpu_model']}, {info['cpus_usable']} usable CPU(s); {info['kernel']}; "
            f"{info['python']}; {where}; load average before the run: {load}")
