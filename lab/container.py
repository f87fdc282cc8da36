"""Run a ``lab`` command inside the lab's container image, through the docker SDK.

This is the path for ``lab --docker CMD ...`` on any host, and for every ``lab`` command on a
host without epoll (macOS, Windows): the same command runs in the image that ``docker compose``
builds, and its exit status becomes ours.

How the command inside sees the host:

- The working directory is bind-mounted at the same path and is the container's working
  directory, so relative paths in the command (``--results DIR``, ``--cmd ./myserver``, a
  scenario file) mean what they mean on the host and the results land in the host's
  ``results/``. An absolute ``--results`` folder elsewhere is mounted at its own path too.
  Windows paths have no Linux twin: there the working directory appears as ``/host``.
- The container runs as the caller's uid:gid (where the host has them), so what it writes
  belongs to the caller and it never has more rights than the caller on the mounted folders.
- ``lab serve``: the server binds 0.0.0.0 inside the container and its port is published on
  the host address asked for (default 127.0.0.1), so ``nc localhost 8080`` works as natively.
- ``lab bench 127.0.0.1 PORT``: the client reaches the host's loopback (host networking on
  Linux, ``host.docker.internal`` under Docker Desktop), so it can measure such a server.
- An init runs as PID 1 (``init=True``): Ctrl-C or SIGTERM here becomes ``docker stop``,
  whose SIGTERM reaches ``lab`` (the graceful server drains), and the grader's children are
  reaped. The container is always removed.
- The open-file limit is raised to ``LAB_NOFILE`` (default 65536) for 10,000-connection runs.

Discussion: what to mount, publish and run is decided by ``plan_container``, a pure function
of the argument list and a few host facts, tested without Docker. The rest is a thin layer
over the SDK. The image is built from this checkout when it is missing; after editing the lab,
rebuild it (``docker compose build``) or remove it, since an existing image is used as it is.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import gc
import io
import ntpath
import os
import posixpath
import signal
import sys
import threading
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import TYPE_CHECKING, TextIO

from lab.errors import UsageError

if TYPE_CHECKING:
    import docker

IMAGE_ENV, DEFAULT_IMAGE = "LAB_IMAGE", "epoll-lab:latest"
NOFILE_ENV, DEFAULT_NOFILE = "LAB_NOFILE", 65536
# Build arguments passed through from the environment, as compose.yaml does.
BUILD_ARG_ENVS = ("BASE_IMAGE", "WITH_ZIG")
SOURCE_ROOT = Path(__file__).resolve().parent.parent
WINDOWS_WORKDIR = PurePosixPath("/host")
# Container folders a same-path mount must not cover: the image's system and the lab itself.
RESERVED_PATHS = tuple(
    PurePosixPath(p)
    for p in ("/bin", "/dev", "/etc", "/lab", "/lib", "/lib64", "/opt", "/proc", "/sbin", "/sys", "/usr")
)
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
DESKTOP_HOST_NAME = "host.docker.internal"
# How long the output copiers may lag behind the container's exit before we stop waiting.
OUTPUT_DRAIN_TIMEOUT = 10.0
STOP_TIMEOUT = 15


@dataclass(slots=True, frozen=True)
class HostFacts:
    """What the plan needs to know about the calling host."""

    cwd: PurePath  # absolute, in the host's own flavour
    posix: bool
    user: str | None  # "uid:gid", or None where the host has no such ids
    linux: bool = True  # the engine runs on this machine's kernel, not in a VM (Docker Desktop)


@dataclass(slots=True)
class ContainerPlan:
    """Everything ``run_in_container`` hands to the engine, decided without touching it."""

    command: list[str]
    working_dir: str
    mounts: dict[str, str] = field(default_factory=dict)  # host path -> container path
    ports: dict[str, tuple[str, int]] = field(default_factory=dict)  # "8080/tcp" -> (ip, port)
    user: str | None = None
    network_mode: str | None = None  # None: the engine's default bridge network


def _pop_option(argv: list[str], name: str) -> tuple[list[str], str | None]:
    """Remove ``name VALUE`` or ``name=VALUE`` from argv; return the rest and the last value."""
    rest: list[str] = []
    value = None
    words = iter(argv)
    for word in words:
        if word == name:
            value = next(words, None)
            if value is None:
                raise UsageError(f"{name} needs a value")
        elif word.startswith(name + "="):
            value = word.partition("=")[2]
        else:
            rest.append(word)
    return rest, value


def _command_name(argv: Sequence[str]) -> str | None:
    return next((word for word in argv if not word.startswith("-")), None)


def _same_path_mount(path: PurePosixPath, what: str) -> str:
    if path == PurePosixPath("/") or any(path == p or p in path.parents for p in RESERVED_PATHS):
        raise UsageError(
            f"{what} {path} would cover the image's own {path} inside the container; "
            "run lab --docker from (and write results to) a project folder"
        )
    return str(path)


def _publish_serve_port(argv: list[str]) -> tuple[list[str], dict[str, tuple[str, int]]]:
    """``lab serve`` binds 0.0.0.0 inside; its --host (default 127.0.0.1) is where the port is
    published on the host, under the same number."""
    from lab.servers.common import ServerOptions

    defaults = ServerOptions()
    rest, host = _pop_option(argv, "--host")
    rest, port_text = _pop_option(rest, "--port")
    port = defaults.port if port_text is None else port_text
    if not str(port).isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(
            f"in a container, lab serve needs a fixed --port from 1 to 65535 to publish, got {port!r}"
        )
    host_ip = {None: defaults.host, "localhost": "127.0.0.1"}.get(host, host)
    command = [*rest, "--host", "0.0.0.0", "--port", str(port)]
    return command, {f"{port}/tcp": (host_ip, int(port))}


def _reach_host_loopback(plan: ContainerPlan, host: HostFacts) -> None:
    """``lab bench HOST PORT`` is a client of a server on the host (often ``lab serve`` in
    another container, published on the host's 127.0.0.1). A container's own loopback is not
    the host's: on Linux the client shares the host's network instead; under Docker Desktop,
    whose engine runs in a VM, the host is reached by its name there."""
    from lab.cli import build_parser

    parser = build_parser()
    target = getattr(parser.parse_args(plan.command), "host", None)
    if target not in LOOPBACK_NAMES:
        return
    if host.linux:
        plan.network_mode = "host"
        return
    # Replace the word the parser reads as HOST, not an option value spelled the same.
    for at, word in enumerate(plan.command):
        candidate = [*plan.command[:at], DESKTOP_HOST_NAME, *plan.command[at + 1:]]
        if word == target and _parsed_host(parser, candidate) == DESKTOP_HOST_NAME:
            plan.command = candidate
            return


def _parsed_host(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """The HOST argv names, or None if argv does not parse (argparse would print and exit)."""
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            return getattr(parser.parse_args(argv), "host", None)
        except SystemExit:
            return None


def plan_container(argv: Sequence[str], host: HostFacts) -> ContainerPlan:
    """Decide how ``lab ARGV`` runs in the image: the command, mounts, ports and user."""
    command = list(argv)
    if host.posix:
        working_dir = _same_path_mount(PurePosixPath(host.cwd), "the current folder")
    else:
        working_dir = str(WINDOWS_WORKDIR)
    plan = ContainerPlan(command=command, working_dir=working_dir, user=host.user)
    plan.mounts[str(host.cwd)] = working_dir

    _, results = _pop_option(command, "--results")
    if results is not None:
        # Relative or not, a results folder outside the mounted one needs its own mount.
        paths = posixpath if host.posix else ntpath
        results_path = type(host.cwd)(paths.normpath(paths.join(host.cwd, results)))
        if host.cwd not in (results_path, *results_path.parents):
            if not host.posix:
                raise UsageError("with Docker on this host, --results must be inside the current folder")
            plan.mounts[str(results_path)] = _same_path_mount(PurePosixPath(results_path), "--results")

    name = _command_name(command)
    if name == "serve":
        plan.command, plan.ports = _publish_serve_port(command)
    elif name == "bench":
        _reach_host_loopback(plan, host)
    return plan


def host_facts() -> HostFacts:
    posix = os.name == "posix"
    user = f"{os.getuid()}:{os.getgid()}" if posix else None
    return HostFacts(cwd=Path.cwd(), posix=posix, user=user, linux=sys.platform == "linux")


def image_name() -> str:
    return os.environ.get(IMAGE_ENV, DEFAULT_IMAGE)


def nofile_limit() -> int:
    text = os.environ.get(NOFILE_ENV, str(DEFAULT_NOFILE))
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{NOFILE_ENV} must be a whole number of files, got {text!r}")
    return int(text)


def connect() -> docker.DockerClient:
    """A client for the engine that DOCKER_HOST (or the default socket) names, or a
    UsageError that says how to get one."""
    try:
        import docker
    except ImportError:
        raise UsageError("the docker Python package is missing: pip install docker") from None
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as error:
        reason = str(error)
    else:
        return client
    # docker-py leaves the socket of a refused connection to the garbage collector (it sits in
    # a cycle through the exception's traceback): collect it now, quietly, rather than have
    # a ResourceWarning surface at some later, unrelated point.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    raise UsageError(
        f"cannot reach a Docker engine ({reason}); install Docker and start it "
        "(Docker Desktop on macOS and Windows, the docker service on Linux), "
        "or point DOCKER_HOST at a running engine"
    )


def build_image(
    client: docker.DockerClient, *, tag: str | None = None, log: TextIO = sys.stderr
) -> str:
    """Build the image from this checkout's Dockerfile, streaming the build's output to log."""
    tag = tag or image_name()
    if not (SOURCE_ROOT / "Dockerfile").is_file():
        raise UsageError(
            f"the image {tag} is missing and {SOURCE_ROOT} has no Dockerfile to build it from; "
            "build it from a checkout of epoll-lab with: docker compose build"
        )
    buildargs = {name: os.environ[name] for name in BUILD_ARG_ENVS if os.environ.get(name)}
    print(f"building {tag} from {SOURCE_ROOT} (once)", file=log, flush=True)
    for chunk in client.api.build(path=str(SOURCE_ROOT), tag=tag, buildargs=buildargs,
                                  rm=True, forcerm=True, decode=True):
        if "error" in chunk:
            raise UsageError(f"building {tag} failed: {chunk['error'].strip()}")
        if "stream" in chunk:
            log.write(chunk["stream"])
            log.flush()
    return tag


def ensure_image(client: docker.DockerClient) -> str:
    import docker

    tag = image_name()
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        build_image(client, tag=tag)
    return tag


def _copy_output(
    client: docker.DockerClient, container_id: str, *, stderr: bool, sink: TextIO
) -> None:
    """Copy one of the container's streams to sink as it comes, until the container exits.
    (The logs endpoint with follow has no read timeout, unlike attach: a scenario may stay
    silent for minutes.)"""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    stream = client.api.logs(container_id, stdout=not stderr, stderr=stderr,
                             stream=True, follow=True)
    try:
        for chunk in stream:
            sink.write(decoder.decode(chunk))
            sink.flush()
    finally:
        stream.close()
    sink.write(decoder.decode(b"", final=True))
    sink.flush()


def run_plan(client: docker.DockerClient, image: str, plan: ContainerPlan) -> int:
    """Run the plan in a fresh container, stream its output live, remove it, return its status."""
    import docker
    from docker.types import Ulimit

    nofile = nofile_limit()
    for host_path in plan.mounts:
        Path(host_path).mkdir(parents=True, exist_ok=True)
    try:
        container = client.containers.create(
            image,
            plan.command,
            name=f"lab-cli-{uuid.uuid4().hex[:12]}",
            working_dir=plan.working_dir,
            user=plan.user,
            volumes={host: {"bind": inside, "mode": "rw"} for host, inside in plan.mounts.items()},
            ports=plan.ports,
            network_mode=plan.network_mode,
            init=True,
            ulimits=[Ulimit(name="nofile", soft=nofile, hard=nofile)],
            labels={"org.epoll-lab.role": "cli"},
        )
    except docker.errors.APIError as error:
        raise UsageError(f"the engine refused the container: {error.explanation or error}") from None
    try:
        try:
            container.start()
        except docker.errors.APIError as error:
            hint = " (lower LAB_NOFILE)" if "rlimit" in str(error) else ""
            raise UsageError(
                f"the container did not start{hint}: {error.explanation or error}"
            ) from None
        copiers = [
            threading.Thread(target=_copy_output, args=(client, container.id),
                             kwargs={"stderr": stderr, "sink": sink}, daemon=True)
            for stderr, sink in ((False, sys.stdout), (True, sys.stderr))
        ]
        for copier in copiers:
            copier.start()
        status = None
        try:
            status = container.wait(timeout=None)["StatusCode"]
        finally:
            if status is None:
                # Interrupted (Ctrl-C, SIGTERM): docker stop sends SIGTERM through the init,
                # so the command inside shuts down as it would natively before removal.
                container.stop(timeout=STOP_TIMEOUT)
        for copier in copiers:
            copier.join(OUTPUT_DRAIN_TIMEOUT)
        return status
    finally:
        container.remove(force=True)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds run_plan's cleanup (stop and remove the container); the default
    # action would leave the container running.
    sys.exit(128 + signum)


def run_in_container(argv: list[str]) -> int:
    """``lab ARGV`` inside the lab's image; returns the command's exit status."""
    plan = plan_container(argv, host_facts())
    client = connect()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return run_plan(client, ensure_image(client), plan)
    finally:
        signal.signal(signal.SIGTERM, previous)
        client.close()
