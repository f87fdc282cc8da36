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
- The open-file limit is the engine's default, whose soft limit the lab raises to the hard one
  itself; ``LAB_NOFILE=N`` asks the engine for N (for 10,000-connection benchmarks), which an
  engine may refuse above its own limit (rootless ones, some CI runners), so it is opt-in.

- What the lab prints for the user names host paths: on Windows the container's ``/host`` is
  mapped back to the host folder through ``LAB_HOST_PATH`` (``lab.host.host_path``).

Discussion: what to mount, publish and run is decided by ``plan_container``, a pure function
of the argument list and a few host facts, tested without Docker. The rest is a thin layer
over the SDK. Run from a checkout, the image is kept fresh: it carries a label with a digest
of its build context (the files the Dockerfile sees, per ``.dockerignore``, and the build
arguments), and an image whose label differs from this checkout's digest is rebuilt, saying
why (the layer cache keeps that short). Installed without a checkout, the lab uses the image
it finds, since it has nothing to build from.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import gc
import hashlib
import io
import ntpath
import os
import posixpath
import sys
import threading
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PurePosixPath
from typing import TYPE_CHECKING, TextIO

from lab.errors import UsageError
from lab.host import HOST_PATH_ENV

if TYPE_CHECKING:
    import docker

IMAGE_ENV, DEFAULT_IMAGE = "LAB_IMAGE", "epoll-lab:latest"
# The image with a Zig compiler (built WITH_ZIG=1), for a class whose submissions build with
# zig: a tag of its own, so the plain image stays small and neither rebuilds the other.
ZIG_IMAGE_ENV, DEFAULT_ZIG_IMAGE = "LAB_ZIG_IMAGE", "epoll-lab:zig"
NOFILE_ENV = "LAB_NOFILE"
# Build arguments passed through from the environment, as compose.yaml does.
BUILD_ARG_ENVS = ("BASE_IMAGE", "WITH_ZIG")
# The checkout this lab runs from, when it runs from one (an editable install): the image's
# build context. A wheel install has none.
SOURCE_ROOT = Path(__file__).resolve().parent.parent
CONTEXT_LABEL = "org.epoll-lab.context-digest"
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
    environment: dict[str, str] = field(default_factory=dict)


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
    if not host.posix:
        plan.environment[HOST_PATH_ENV] = f"{working_dir}={host.cwd}"

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


def image_name(*, zig: bool = False) -> str:
    """The image's tag: LAB_IMAGE's, or with ``zig`` LAB_ZIG_IMAGE's (the image with Zig)."""
    if zig:
        return os.environ.get(ZIG_IMAGE_ENV, DEFAULT_ZIG_IMAGE)
    return os.environ.get(IMAGE_ENV, DEFAULT_IMAGE)


def nofile_limit() -> int | None:
    """The open-file limit LAB_NOFILE asks for, or None (the engine's default)."""
    text = os.environ.get(NOFILE_ENV, "")
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{NOFILE_ENV} must be a whole number of files, got {text!r}")
    return int(text)


def connect() -> docker.DockerClient:
    """A client for the engine that DOCKER_HOST (or the default socket) names, or a
    UsageError that says how to get one."""
    try:
        import docker
    except ImportError as error:
        if getattr(error, "name", None) == "docker":
            raise UsageError("the docker Python package is missing: pip install docker") from None
        raise UsageError(f"the docker Python package does not import here ({error}): "
                         "pip install --upgrade docker") from None
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


def build_context() -> Path | None:
    """The checkout to build the image from, or None when the lab is not run from one."""
    if (SOURCE_ROOT / "Dockerfile").is_file() and (SOURCE_ROOT / "pyproject.toml").is_file():
        return SOURCE_ROOT
    return None


def build_args(*, zig: bool = False) -> dict[str, str]:
    """The build arguments from the environment; with ``zig``, WITH_ZIG=1 whatever it says."""
    args = {name: os.environ[name] for name in BUILD_ARG_ENVS if os.environ.get(name)}
    return {**args, "WITH_ZIG": "1"} if zig else args


def context_digest(root: Path, buildargs: dict[str, str]) -> str:
    """A digest of what a build of ``root`` would see: every file the engine is sent (the
    SDK's own reading of ``.dockerignore``), its content, and the build arguments."""
    from docker.utils.build import exclude_paths

    ignore = root / ".dockerignore"
    patterns = []
    if ignore.is_file():
        lines = (line.strip() for line in ignore.read_text().splitlines())
        patterns = [line for line in lines if line and not line.startswith("#")]
    digest = hashlib.sha256()
    for name in sorted(exclude_paths(str(root), patterns, dockerfile="Dockerfile")):
        path = root / name
        if path.is_file():
            digest.update(f"{name}\0{path.stat().st_size}\0".encode())
            digest.update(path.read_bytes())
    for name, value in sorted(buildargs.items()):
        digest.update(f"arg {name}={value}\0".encode())
    return digest.hexdigest()[:16]


def build_image(
    client: docker.DockerClient, *, tag: str | None = None, log: TextIO = sys.stderr,
    reason: str = "once", zig: bool = False,
) -> str:
    """Build the image (with ``zig``: the one with Zig) from this checkout's Dockerfile,
    labelled with its context digest, streaming the build's output to log."""
    tag = tag or image_name(zig=zig)
    root = build_context()
    if root is None:
        raise UsageError(
            f"the image {tag} is missing and {SOURCE_ROOT} has no Dockerfile to build it from; "
            "build it from a checkout of epoll-lab with: docker compose build"
        )
    buildargs = build_args(zig=zig)
    labels = {CONTEXT_LABEL: context_digest(root, buildargs)}
    print(f"building {tag} from {root} ({reason})", file=log, flush=True)
    for chunk in client.api.build(path=str(root), tag=tag, buildargs=buildargs, labels=labels,
                                  rm=True, forcerm=True, decode=True):
        if "error" in chunk:
            raise UsageError(f"building {tag} failed: {chunk['error'].strip()}")
        if "stream" in chunk:
            log.write(chunk["stream"])
            log.flush()
    return tag


def ensure_image(client: docker.DockerClient, log: TextIO = sys.stderr, *, zig: bool = False) -> str:
    """The image's tag (with ``zig``: the image with Zig), after building it when it is missing
    or (in a checkout) when it was built from other sources than the checkout's."""
    import docker

    tag = image_name(zig=zig)
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        build_image(client, tag=tag, log=log, reason="it is missing", zig=zig)
        return tag
    root = build_context()
    if root is None:
        return tag
    built_from = (image.labels or {}).get(CONTEXT_LABEL)
    if built_from != context_digest(root, build_args(zig=zig)):
        build_image(client, tag=tag, log=log, zig=zig,
                    reason="it was built from other sources than this checkout's" if built_from
                    else "it carries no digest of the sources it was built from")
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
            environment=plan.environment,
            init=True,
            ulimits=[Ulimit(name="nofile", soft=nofile, hard=nofile)] if nofile else None,
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


def run_in_container(argv: list[str]) -> int:
    """``lab ARGV`` inside the lab's image; returns the command's exit status. (SIGTERM reaches
    here as ``lab.cli.Terminated``, which stops and removes the container on its way out.)"""
    plan = plan_container(argv, host_facts())
    client = connect()
    try:
        return run_plan(client, ensure_image(client), plan)
    finally:
        client.close()
