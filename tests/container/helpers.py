"""Helpers for the container tier: compose projects, results folders, waits with deadlines.

Everything started here has a name unique to this run (image tag, compose project, container),
so runs and xdist workers can share an engine, and everything is removed even when a test
fails. Environment passed through to builds and compose: BASE_IMAGE (CI's stand-in base
image), LAB_NOFILE (for the SDK path: CI's engine refuses more than 20000 open files),
LAB_COMPOSE (the compose command; by default ``docker compose``, Compose v2, which README's
commands use).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from lab import container as lab_container

REPO = lab_container.SOURCE_ROOT
COMPOSE_FILE = REPO / "compose.yaml"
# Deadlines. Generous: the engine shares two cores with other work, and a grading run does
# every scenario (about 15 s here, natively).
COMMAND_TIMEOUT = 120.0
GRADE_TIMEOUT = 900.0
READY_TIMEOUT = 60.0


def run_id() -> str:
    return uuid.uuid4().hex[:10]


def remove_image(client, tag: str) -> None:
    import docker

    try:
        client.images.remove(tag)
    except docker.errors.ImageNotFound:
        pass


def lab_env(image: str, **extra: str) -> dict[str, str]:
    """The environment for a ``lab`` or compose process that must use the test image. The
    containers get the engine's default open-file limit, as a user's would, unless
    LAB_NOFILE is set (CI sets it from ci/docker-engine.sh for the SDK path)."""
    return {**os.environ, lab_container.IMAGE_ENV: image, **extra}


def compose_command() -> list[str] | None:
    """LAB_COMPOSE, else Compose v2 (``docker compose``) when installed, else None."""
    chosen = os.environ.get("LAB_COMPOSE")
    if chosen:
        return shlex.split(chosen)
    docker_cli = shutil.which("docker")
    if docker_cli and subprocess.run([docker_cli, "compose", "version"], capture_output=True,
                                     timeout=COMMAND_TIMEOUT).returncode == 0:
        return [docker_cli, "compose"]
    return None


def fresh_clone(destination: Path, owner: tuple[int, int]) -> Path:
    """What ``git clone`` of this checkout would give (its tracked and new, not ignored,
    files, as they are now), with results/ belonging to ``owner``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True, timeout=COMMAND_TIMEOUT).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    results = destination / "results"
    results.mkdir(exist_ok=True)
    for path in (results, *results.rglob("*")):
        os.chown(path, *owner)
    destination.chmod(0o755)
    return destination


def readme_env() -> dict[str, str]:
    """The environment of a user following README: no LAB_* variable (BASE_IMAGE stays, since
    CI reaches no registry to pull the default base from)."""
    return {name: value for name, value in os.environ.items() if not name.startswith("LAB_")}


def run_compose(command: list[str], project_dir: Path, env: dict[str, str], *args: str,
                timeout: float = GRADE_TIMEOUT) -> subprocess.CompletedProcess:
    """Run compose in project_dir as a user would; stdout and stderr together in .stdout."""
    return subprocess.run([*command, *args], cwd=project_dir, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


@dataclass(slots=True)
class ComposeProject:
    """One compose project with a unique name, run against the repo's compose.yaml."""

    command: list[str]
    name: str
    env: dict[str, str]
    log_dir: Path
    profiles: tuple[str, ...] = ()
    calls: int = 0

    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
        """Run one compose command; its combined output is returned and kept in log_dir."""
        self.calls += 1
        log = self.log_dir / f"compose-{self.calls}-{args[0]}.log"
        profiles = [word for profile in self.profiles for word in ("--profile", profile)]
        argv = [*self.command, "-f", str(COMPOSE_FILE), "-p", self.name, *profiles, *args]
        with log.open("w+") as out:
            done = subprocess.run(argv, cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
            out.seek(0)
            done.stdout = out.read()
        return done

    def check(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        done = self.run(*args, timeout=timeout)
        assert done.returncode == 0, (
            f"{shlex.join(done.args)} -> {done.returncode}\n{done.stdout[-4000:]}"
        )
        return done.stdout

    def container_id(self, service: str) -> str:
        return self.check("ps", "-q", service).strip()

    def down(self) -> None:
        self.run("down", "--volumes", "--remove-orphans", "--timeout", "5")


@contextlib.contextmanager
def compose_project(command: list[str], image: str, log_dir: Path, *profiles: str, **env: str):
    """A ComposeProject using the test image, taken down (containers, network) on exit."""
    project = ComposeProject(command, f"labtest{run_id()}", lab_env(image, **env), log_dir, profiles)
    try:
        yield project
    finally:
        project.down()


def only_run_dir(results: Path) -> Path:
    """The single ``<timestamp>-<target>/`` folder a grading run left in results."""
    runs = [path for path in results.iterdir() if path.is_dir()]
    assert len(runs) == 1, f"expected one run folder in {results}, found {sorted(p.name for p in runs)}"
    return runs[0]


def load_results(run_dir: Path) -> dict:
    for name in ("results.json", "scorecard.md"):
        assert (run_dir / name).is_file(), f"{run_dir} lacks {name}: {sorted(os.listdir(run_dir))}"
    return json.loads((run_dir / "results.json").read_text())


def lab_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lab", *args]


def wait_until(check, *, timeout: float, what: str, interval: float = 0.2):
    """Poll check() until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s")
        time.sleep(interval)  # the poll interval of this deadline loop
    return result


def echo_once(port: int, payload: bytes, *, timeout: float = 5.0) -> bytes:
    """Send payload to 127.0.0.1:port, half-close, and return everything the server sent back.
    Before the server inside listens, docker's proxy accepts and closes (a reset, or ENOTCONN
    at the half-close): that returns b""."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:  # ConnectionError, TimeoutError, ENOTCONN
        return b""
    return b"".join(chunks)


def wait_for_echo(port: int, *, timeout: float = READY_TIMEOUT) -> None:
    """Wait until a server behind 127.0.0.1:port echoes a line back unchanged."""
    payload = f"hello from the host {run_id()}\n".encode()
    wait_until(lambda: echo_once(port, payload) == payload, timeout=timeout,
               what=f"echo on 127.0.0.1:{port}")


def score_of(results: dict) -> tuple[int, int]:
    """(points scored, points possible) from a grading run's results.json."""
    return results["score"], results["max_score"]
