"""Facts about the machine the lab runs on, each written once: whether we are in a container
(and what a path in it is called outside), the open-file limit (and raising it), the local
port range, and a port free right now.

Facts, then what they mean for the lab:

- Every connection is an fd. RLIMIT_NOFILE's soft limit may be raised by any process up to its
  hard limit; only root can raise the hard limit. A child started later (the server under
  test) inherits the raised soft limit. So the runner and the bench raise their own soft limit
  before they start anything, and when even the hard limit is too low for what a run needs,
  they say how to raise it instead of failing half-way with EMFILE.
- connect() without bind() picks the source port from ``/proc/sys/net/ipv4/ip_local_port_range``
  (32768-60999 by default), so one source address reaches one server at most that many times.
- A container sees a bind-mounted folder under its own path, which can differ from the host's
  (compose mounts ``./results`` at ``/lab/results``; on Windows the working folder is
  ``/host``). Who starts the container says so in ``LAB_HOST_PATH=INSIDE=OUTSIDE``, so what
  the lab prints for the user (where the results are) is the host's name for it.
- A container shows itself by a marker file (``/.dockerenv``, ``/run/.containerenv``), the
  ``container`` variable (systemd's convention, set by podman and others), or its runtime's
  name in ``/proc/1/cgroup``.

``resource`` exists only on Unix, so it is imported where a limit is read or set: this module
is imported on the host side of a macOS or Windows run too.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from lab.errors import UsageError

PORT_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
DEFAULT_PORT_RANGE = (32768, 60999)
CONTAINER_MARKERS = (("/.dockerenv", "docker"), ("/run/.containerenv", "podman"))
CGROUP_WORDS = ("docker", "kubepods", "containerd", "libpod", "lxc")
HOST_PATH_ENV = "LAB_HOST_PATH"


# -- containers ------------------------------------------------------------------------
def container_kind(existing_files: set[str], cgroup_text: str, env: dict[str, str]) -> str | None:
    """"docker", "podman", another runtime's name from ``$container``, or None on the host."""
    for path, kind in CONTAINER_MARKERS:
        if path in existing_files:
            return kind
    if env.get("container"):
        return env["container"]
    for word in CGROUP_WORDS:
        if word in cgroup_text:
            return word
    return None


def in_container() -> str | None:
    """The container runtime this process seems to run under, or None."""
    return container_kind(
        {path for path, _ in CONTAINER_MARKERS if os.path.exists(path)},
        read_text("/proc/1/cgroup"),
        dict(os.environ),
    )


def host_view(path: Path, mapping: str) -> str:
    """``path`` (absolute) as the host names it, given ``mapping`` = "INSIDE=OUTSIDE" (the
    container folder INSIDE is the host folder OUTSIDE); ``path`` itself when it lies outside
    INSIDE or there is no mapping."""
    inside, separator, outside = mapping.partition("=")
    if not separator or not inside or not outside:
        return str(path)
    try:
        rest = path.relative_to(inside)
    except ValueError:
        return str(path)
    if rest == Path("."):
        return outside
    joiner = "\\" if "\\" in outside and "/" not in outside else "/"
    return outside.rstrip(joiner) + joiner + joiner.join(rest.parts)


def host_path(path: str | Path) -> str:
    """What the user who started this container calls ``path``; outside a container (or with
    no ``LAB_HOST_PATH``), ``path`` as given."""
    mapping = os.environ.get(HOST_PATH_ENV, "")
    if not mapping:
        return str(path)
    return host_view(Path.cwd() / path, mapping)


# -- the open-file limit ---------------------------------------------------------------
def nofile_limit() -> tuple[int, int]:
    """(soft, hard) RLIMIT_NOFILE of this process."""
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)


def check_fd_limit(needed: int, soft: int, hard: int) -> int:
    """The soft limit to set (never lower than now); UsageError when ``hard`` is too low."""
    import resource

    if hard != resource.RLIM_INFINITY and needed > hard:
        raise UsageError(
            f"this run needs about {needed} open files per process but the hard limit "
            f"(RLIMIT_NOFILE) is {hard}: raise it (as root: ulimit -Hn {needed}; in Docker: "
            f"--ulimit nofile={needed}:{needed}) or use fewer connections"
        )
    if soft == resource.RLIM_INFINITY:
        return soft
    return max(soft, needed)


def raise_fd_limit(needed: int | None = None) -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE: to the hard limit when ``needed`` is None
    (the runner: its targets inherit it), else to at least ``needed`` (UsageError when the
    hard limit is lower). Returns the new (soft, hard)."""
    import resource

    soft, hard = nofile_limit()
    wanted = hard if needed is None else check_fd_limit(needed, soft, hard)
    if wanted != soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return nofile_limit()


# -- ports -----------------------------------------------------------------------------
def parse_port_range(text: str) -> tuple[int, int]:
    low, high = (int(word) for word in text.split())
    return low, high


def local_port_range() -> tuple[int, int]:
    """The kernel's ephemeral port range (the default one where it cannot be read)."""
    try:
        return parse_port_range(read_text(PORT_RANGE_FILE))
    except ValueError:
        return DEFAULT_PORT_RANGE


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now, for a program that must be told its port up front.
    Another process could take it before the program binds it; the start-up then reports
    that (``lab.process``), and the runner retries on a fresh port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def read_text(path: str) -> str:
    """A small /proc or /sys file, or "" when it does not exist here."""
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""
