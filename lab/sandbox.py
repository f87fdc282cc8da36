"""One untrusted submission graded in a throw-away container with limits.

``lab grade`` of a class runs each submission as ``lab grade /submission/FILE --name STUDENT
--copy-to /work --results /results`` in the lab's image: the runner and the student's programs
share one container, so the grader reaches them on loopback and reads their /proc as it does
natively. What the container gets, and why:

- ``network_mode: none``: only ``lo``. A server can listen and be graded; it cannot phone out
  or reach the teacher's network.
- All capabilities dropped, ``no-new-privileges``, and never uid 0 (the caller's uid, or the
  image's ``lab`` user when the caller is root): a setuid binary gains nothing.
- A read-only root filesystem. The submission's folder is mounted read-only at /submission and
  copied into a tmpfs at /work (into a folder of its own, since /work belongs to root), where
  it builds and runs; /tmp (HOME) is a tmpfs too. The host's folder is never written. The
  submission's own results folder, on the host, is the only writable mount.
- Zig's caches (``ZIG_GLOBAL_CACHE_DIR``, ``ZIG_LOCAL_CACHE_DIR``) are on the /tmp tmpfs,
  named rather than left to follow HOME: ``zig build`` writes its objects there (about 150 MB
  for examples/zig), which count against the memory limit like any tmpfs page. The global one
  starts as a copy of the image's pre-built cache (``lab.runner.build.seed_zig_cache``).
- Limits: memory (default 1 GiB, no swap; tmpfs pages count against it too), pids, CPUs, open
  files, the size of any one file written (a server flooding its stdout fills its log on the
  host's disk only so far), and wall-clock time, after which the container is killed. An
  init reaps what the programs leave behind.

How a container ended is read from the engine (``State.OOMKilled``, the exit code, our own
deadline) and put in words by ``explain_end``; what a limit did to one program inside is
put in words by the runner itself (``lab.cgroup``). ``plan_sandbox`` and ``explain_end`` are
pure and tested without Docker; ``run_sandboxed`` is the thin layer over the SDK.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from lab.errors import UsageError
from lab.units import format_size

if TYPE_CHECKING:
    import docker

GiB = 1024**3
SUBMISSION_MOUNT = PurePosixPath("/submission")
WORK_DIR = PurePosixPath("/work")
RESULTS_MOUNT = PurePosixPath("/results")
IMAGE_USER = "1000:1000"  # the image's `lab` user, for a caller who is root
ROLE_LABEL = "org.epoll-lab.role"
ROLE = "sandbox"
ZIG_CACHE_ENVIRONMENT = {"ZIG_GLOBAL_CACHE_DIR": "/tmp/zig-cache/global", "ZIG_LOCAL_CACHE_DIR": "/tmp/zig-cache/local"}
# How often a wait checks for an interrupt, and how long the engine may take to kill.
POLL_SECONDS = 1.0
LOG_TAIL_LINES = 200


CORES_PER_GRADE = 2


def default_jobs(cores: int | None = None) -> int:
    """Grades at once: one per two usable cores, at least one (see lab.runner.classroom's
    docstring). Here, not there, so that ``lab --help`` need not load the class grader."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // CORES_PER_GRADE)


@dataclass(slots=True, frozen=True)
class SandboxLimits:
    """The limits of one submission's container; shown in the class report."""

    memory: int = 1 * GiB  # bytes, swap included (none is granted)
    pids: int = 512  # processes and threads: the runner's, the servers', the build's
    cpus: float = 2.0  # a grade's peak load is about two cores (see default_jobs)
    seconds: float = 900.0  # wall-clock, the whole grade including the build
    nofile: int | None = None  # open files (LAB_NOFILE); None: the engine's own limit, which the
    # runner raises its soft limit to (some engines refuse any more than theirs)
    file_size: int = 64 * 1024**2  # the largest file a process may write (RLIMIT_FSIZE): the
    # results folder is on the host's disk, and a server's stdout goes to a log there

    def words(self) -> dict[str, str]:
        minutes = self.seconds / 60
        time_words = f"{minutes:g} min" if self.seconds >= 60 else f"{self.seconds:g} s"
        return {"memory": format_size(self.memory), "pids": str(self.pids), "cpus": f"{self.cpus:g}",
                "wall-clock": time_words, "open files": str(self.nofile or "the engine's limit"), "file size": format_size(self.file_size)}


@dataclass(slots=True, frozen=True)
class SandboxEnd:
    """How one container ended."""

    status: int | None  # the grader's exit status; None when we killed it
    oom_killed: bool = False
    timed_out: bool = False
    interrupted: bool = False
    log: str = ""  # the end of the grader's output


def sandbox_user(uid: int | None, gid: int | None) -> str:
    """Never root inside: root without capabilities still owns every root-owned file. The
    caller's ids where the host has them (so results belong to the caller), else the image's."""
    return IMAGE_USER if uid in (0, None) else f"{uid}:{gid}"


def plan_sandbox(submission_file: Path, results_dir: Path, only: Sequence[str], limits: SandboxLimits,
                 *, name: str, image: str, user: str, container: str, extra: Sequence[str] = ()) -> dict:
    """The keyword arguments of ``containers.create`` that grade one submission file in a
    sandbox, writing its results folder under ``results_dir`` (both host paths, absolute).
    ``extra``: more ``lab grade`` options (``--strict``, ``--repeat N``)."""
    only_args = [word for item in only for word in ("--only", item)]
    tmpfs_options = f"rw,exec,nosuid,nodev,size={limits.memory},mode=1777"
    return {
        "image": image,
        "command": ["grade", str(SUBMISSION_MOUNT / submission_file.name), "--name", name,
                    "--copy-to", str(WORK_DIR), "--results", str(RESULTS_MOUNT), *only_args, *extra],
        "name": container,
        "user": user,
        "network_mode": "none",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "read_only": True,
        "tmpfs": {str(WORK_DIR): tmpfs_options, "/tmp": tmpfs_options},
        "volumes": {
            str(submission_file.parent): {"bind": str(SUBMISSION_MOUNT), "mode": "ro"},
            str(results_dir): {"bind": str(RESULTS_MOUNT), "mode": "rw"},
        },
        "mem_limit": limits.memory,
        "memswap_limit": limits.memory,
        "pids_limit": limits.pids,
        "nano_cpus": int(limits.cpus * 1e9),
        "ulimits": [{"Name": "fsize", "Soft": limits.file_size, "Hard": limits.file_size},
                    *([{"Name": "nofile", "Soft": limits.nofile, "Hard": limits.nofile}] if limits.nofile else [])],
        "init": True,
        "environment": {"LAB_SANDBOX": "1", **ZIG_CACHE_ENVIRONMENT},
        "labels": {ROLE_LABEL: ROLE},
    }


def explain_end(end: SandboxEnd, limits: SandboxLimits, graded: bool) -> tuple[str | None, list[str]]:
    """(reason, notes): why a container left no results (the submission then scores 0 with the
    reason), and what the limits did to one that did."""
    limit = f"limit {format_size(limits.memory)}"
    notes = [f"the out-of-memory killer ran in the sandbox ({limit})"] if end.oom_killed and graded else []
    if graded:
        return None, notes
    if end.interrupted:
        return "not graded: interrupted", notes
    if end.timed_out:
        return f"killed: still running after {limits.words()['wall-clock']} (the wall-clock limit)", notes
    if end.oom_killed:
        return f"killed: out of memory ({limit})", notes
    if end.status == 128 + signal.SIGKILL:
        return "killed by SIGKILL (not by the memory limit)", notes
    last = _last_line(end.log)
    if end.status == 2:
        return f"not graded: {last or 'lab grade refused the submission'}", notes
    return f"the grader exited with status {end.status} without results{f': {last}' if last else ''}", notes


def _last_line(log: str) -> str:
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def container_name(student: str) -> str:
    from lab.runner.report import safe_name

    # Docker names must start with a letter or digit: the prefix sees to it.
    return f"lab-sandbox-{safe_name(student)[:40]}-{uuid.uuid4().hex[:8]}"


def run_sandboxed(client: docker.DockerClient, plan: dict, limits: SandboxLimits,
                  stop: threading.Event) -> SandboxEnd:
    """Run one planned container to its end, our deadline or ``stop``; always remove it."""
    import docker
    import requests
    from docker.types import Ulimit

    plan = {**plan, "ulimits": [Ulimit(name=u["Name"], soft=u["Soft"], hard=u["Hard"]) for u in plan["ulimits"]]}
    image = plan.pop("image")
    try:
        container = client.containers.create(image, **plan)
    except docker.errors.APIError as error:
        raise UsageError(f"the engine refused the sandbox: {error.explanation or error}") from None
    try:
        container.start()
        deadline = time.monotonic() + limits.seconds
        status = timed_out = interrupted = None
        while status is None:
            try:
                status = container.wait(timeout=POLL_SECONDS)["StatusCode"]
            # A wait's read timeout surfaces as either, depending on urllib3's version.
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                if stop.is_set():
                    interrupted = True
                elif time.monotonic() > deadline:
                    timed_out = True
                else:
                    continue
                with contextlib.suppress(docker.errors.APIError):  # 409: it has just exited
                    container.kill()
                status = container.wait()["StatusCode"]
        container.reload()
        log = container.logs(stdout=True, stderr=True, tail=LOG_TAIL_LINES).decode("utf-8", "replace")
        oom_killed = bool(container.attrs["State"].get("OOMKilled"))
        return SandboxEnd(None if (timed_out or interrupted) else status, oom_killed, bool(timed_out),
                          bool(interrupted), log)
    finally:
        container.remove(force=True)


def prepare_results_dir(path: Path, user: str) -> None:
    """The one writable mount: create it, and hand it to the sandbox's uid when that is not
    ours (we are root and the sandbox runs as the image's user)."""
    path.mkdir(parents=True, exist_ok=True)
    uid, _, gid = user.partition(":")
    if hasattr(os, "getuid") and int(uid) != os.getuid():
        os.chown(path, int(uid), int(gid))
