"""The sandbox's pure parts: what each container gets, and how its end is put in words."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from lab.sandbox import GiB, SandboxEnd, SandboxLimits, container_name, explain_end, plan_sandbox, sandbox_user

LIMITS = SandboxLimits(memory=GiB, pids=256, cpus=1.5, seconds=600)


@pytest.fixture
def plan() -> dict:
    return plan_sandbox(Path("/class/alice/submission.toml"), Path("/out/submissions/alice"), ["level", "edge.drains"],
                        LIMITS, name="alice", image="epoll-lab:test", user="1000:1000", container="lab-sandbox-x")


def test_the_sandbox_has_only_loopback_no_privileges_and_a_read_only_root(plan):
    assert plan["network_mode"] == "none"
    assert plan["cap_drop"] == ["ALL"]
    assert plan["security_opt"] == ["no-new-privileges"]
    assert plan["read_only"] is True
    assert plan["user"] == "1000:1000"
    assert plan["init"] is True
    assert "privileged" not in plan and "ports" not in plan


def test_the_submission_is_mounted_read_only_and_its_results_folder_is_the_only_writable_mount(plan):
    assert plan["volumes"] == {
        "/class/alice": {"bind": "/submission", "mode": "ro"},
        "/out/submissions/alice": {"bind": "/results", "mode": "rw"},
    }
    assert set(plan["tmpfs"]) == {"/work", "/tmp"}
    assert all("exec" in options.split(",") and "nosuid" in options for options in plan["tmpfs"].values())


def test_zig_caches_are_on_the_tmpfs_not_the_read_only_root(plan):
    caches = [plan["environment"][name] for name in ("ZIG_GLOBAL_CACHE_DIR", "ZIG_LOCAL_CACHE_DIR")]
    assert all(PurePosixPath(cache).parents[-2] in map(PurePosixPath, plan["tmpfs"]) for cache in caches)


def test_the_limits_are_applied_without_swap(plan):
    assert plan["mem_limit"] == plan["memswap_limit"] == GiB
    assert plan["pids_limit"] == 256
    assert plan["nano_cpus"] == 1_500_000_000
    assert plan["ulimits"] == [{"Name": "fsize", "Soft": 64 << 20, "Hard": 64 << 20}]


def test_an_open_file_limit_is_asked_of_the_engine_only_when_set():
    limits = SandboxLimits(nofile=20_000)
    plan = plan_sandbox(Path("/class/alice/submission.toml"), Path("/out/submissions/alice"), (), limits,
                        name="alice", image="epoll-lab:latest", user="1000:1000", container="c")
    assert {"Name": "nofile", "Soft": 20_000, "Hard": 20_000} in plan["ulimits"]
    assert SandboxLimits().words()["open files"] == "the engine's limit"


def test_the_container_runs_the_same_lab_grade_on_a_copy(plan):
    assert plan["command"] == ["grade", "/submission/submission.toml", "--name", "alice", "--copy-to", "/work",
                               "--results", "/results", "--only", "level", "--only", "edge.drains"]


def test_the_class_options_reach_each_sandboxed_grade():
    plan = plan_sandbox(Path("/class/bob/submission.toml"), Path("/out/bob"), [], LIMITS, name="bob",
                        image="i", user="1000:1000", container="c", extra=["--strict", "--repeat", "3"])
    assert plan["command"][-3:] == ["--strict", "--repeat", "3"]


@pytest.mark.parametrize(("uid", "gid", "user"), [(0, 0, "1000:1000"), (1234, 50, "1234:50"), (None, None, "1000:1000")])
def test_the_sandbox_never_runs_as_root(uid, gid, user):
    assert sandbox_user(uid, gid) == user


def test_container_names_are_valid_and_unique():
    first, second = container_name("../Zoë Smith"), container_name("../Zoë Smith")
    assert first != second
    assert first.startswith("lab-sandbox-") and "/" not in first and " " not in first


def test_limits_in_words():
    assert LIMITS.words() == {"memory": "1 GiB", "pids": "256", "cpus": "1.5", "wall-clock": "10 min",
                              "open files": "the engine's limit", "file size": "64 MiB"}


@pytest.mark.parametrize(
    ("end", "graded", "reason", "notes"),
    [
        (SandboxEnd(1), True, None, []),
        (SandboxEnd(1, oom_killed=True), True, None, ["the out-of-memory killer ran in the sandbox (limit 1 GiB)"]),
        (SandboxEnd(137, oom_killed=True), False, "killed: out of memory (limit 1 GiB)", []),
        (SandboxEnd(None, timed_out=True), False, "killed: still running after 10 min (the wall-clock limit)", []),
        (SandboxEnd(None, interrupted=True), False, "not graded: interrupted", []),
        (SandboxEnd(137), False, "killed by SIGKILL (not by the memory limit)", []),
        (SandboxEnd(2, log="progress\nlab grade: x.toml: [level]: unknown field 'cmdd'\n"), False,
         "not graded: lab grade: x.toml: [level]: unknown field 'cmdd'", []),
        (SandboxEnd(139, log="Segmentation fault"), False,
         "the grader exited with status 139 without results: Segmentation fault", []),
    ],
)
def test_how_a_container_ended_in_words(end, graded, reason, notes):
    assert explain_end(end, LIMITS, graded) == (reason, notes)
