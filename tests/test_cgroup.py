"""Kill causes from cgroup counters: parsing both cgroup versions, and who killed what."""

from __future__ import annotations

import signal

import pytest

from lab.cgroup import CgroupCounters, kill_cause, parse_counter, parse_limit, read_counters

V1_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"
V2_MEMORY_EVENTS = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n"


@pytest.mark.parametrize(
    ("text", "name", "value"),
    [(V1_OOM_CONTROL, "oom_kill", 2), (V2_MEMORY_EVENTS, "oom_kill", 1), (V2_MEMORY_EVENTS, "max", 12),
     ("max 0\n", "max", 0), ("", "oom_kill", None), ("oom_kill_disable 0\n", "oom_kill", None)],
)
def test_parse_counter(text, name, value):
    assert parse_counter(text, name) == value


@pytest.mark.parametrize(("text", "value"), [("1073741824\n", 1 << 30), ("max\n", None),
                                             ("9223372036854771712\n", None), ("", None)])
def test_parse_limit(text, value):
    assert parse_limit(text) == value


def write_v1(root, oom_kill: int, refused: int) -> None:
    (root / "memory").mkdir(exist_ok=True)
    (root / "pids").mkdir(exist_ok=True)
    (root / "memory" / "memory.oom_control").write_text(f"oom_kill_disable 0\nunder_oom 0\noom_kill {oom_kill}\n")
    (root / "memory" / "memory.limit_in_bytes").write_text(f"{1 << 30}\n")
    (root / "pids" / "pids.events").write_text(f"max {refused}\n")
    (root / "pids" / "pids.max").write_text("512\n")


def test_read_counters_v1_and_v2(tmp_path):
    write_v1(tmp_path, 3, 1)
    assert read_counters(tmp_path) == CgroupCounters(3, 1, 1 << 30, 512)
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("memory pids\n")
    (v2 / "memory.events").write_text(V2_MEMORY_EVENTS)
    (v2 / "memory.max").write_text("max\n")
    assert read_counters(v2) == CgroupCounters(oom_kills=1)


BEFORE = CgroupCounters(oom_kills=0, pids_refused=0, memory_limit=1 << 30, pids_limit=512)


@pytest.mark.parametrize(
    ("after", "returncode", "cause"),
    [
        (CgroupCounters(1, 0, 1 << 30, 512), -signal.SIGKILL, "killed: out of memory (limit 1 GiB)"),
        # the OOM killer took another process; this one was killed by someone else
        (CgroupCounters(1, 0, 1 << 30, 512), -signal.SIGTERM, None),
        (CgroupCounters(0, 0, 1 << 30, 512), -signal.SIGKILL, None),  # negative control
        (CgroupCounters(0, 7, 1 << 30, 512), 1, "pids limit reached (limit 512): 7 fork/clone call(s) refused"),
        (CgroupCounters(None, None, None, None), -signal.SIGKILL, None),  # nothing readable (a host)
    ],
)
def test_kill_cause(after, returncode, cause):
    assert kill_cause(BEFORE, after, returncode) == cause
