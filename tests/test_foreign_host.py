"""``lab`` on a macOS or Windows host: the front door must print help, list the scenarios, or
say how to get a Docker engine, and never end in a traceback.

Faking ``sys.platform`` inside this test process cannot show that: the Linux-only modules are
already imported and ``select.epoll`` still exists. So each command runs in a fresh Python
whose start-up loads ``tests/foreign/sitecustomize.py``: no epoll in ``select``, no
``resource``/``fcntl``/``termios``/``pwd``/``grp``, ``sys.platform`` set to the foreign name.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FOREIGN = Path(__file__).with_name("foreign")
COMMAND_TIMEOUT = 60.0
PLATFORMS = ("darwin", "win32")


def foreign_python(platform: str, *argv: str, cwd: Path | None = None, strict: bool = False) -> subprocess.CompletedProcess:
    """Run ``python ARGV`` as on ``platform``, with no Docker engine to reach. ``strict``: the
    standard modules that branch on the platform are not loaded first (see sitecustomize)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(FOREIGN), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "FOREIGN": platform,
        "FOREIGN_STRICT": "1" if strict else "0",
        "DOCKER_HOST": "unix:///nonexistent/docker.sock",
    }
    env.pop("DOCKER_CONTEXT", None)
    return subprocess.run([sys.executable, *argv], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)


def lab(platform: str, *argv: str, cwd: Path | None = None, strict: bool = False) -> subprocess.CompletedProcess:
    return foreign_python(platform, "-m", "lab", *argv, cwd=cwd, strict=strict)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_fake_host_really_lacks_the_linux_parts(platform):
    # Negative control: under the fake, Linux-only code does fail, so the tests below that
    # pass under it show the front door does not reach such code.
    probe = foreign_python(platform, "-c", (
        "import select, sys\n"
        "print(sys.platform, hasattr(select, 'epoll'), hasattr(select, 'EPOLLIN'))\n"
        "from lab.process import child_setup\n"
        "child_setup()\n"
    ))
    assert probe.stdout.split() == [platform, "False", "False"]
    assert "ModuleNotFoundError: No module named 'resource'" in probe.stderr


@pytest.mark.parametrize("platform", PLATFORMS)
def test_help_is_printed(platform):
    done = lab(platform, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: lab" in done.stdout and "grade" in done.stdout
    assert done.stderr == ""


@pytest.mark.parametrize("platform", PLATFORMS)
def test_run_list_works_without_docker(platform, tmp_path):
    done = lab(platform, "run", "--list", cwd=tmp_path)  # another folder: the shipped scenarios
    assert done.returncode == 0, done.stderr
    assert "burst-connects" in done.stdout and "edge.drains" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("argv", [["grade"], ["run", "--target", "edge"], ["serve", "edge"]],
                         ids=["grade", "run", "serve"])
def test_commands_that_need_epoll_say_how_to_get_a_docker_engine(platform, argv, tmp_path):
    done = lab(platform, *argv, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"epoll is Linux-only, so on {platform}" in done.stderr
    assert "cannot reach a Docker engine" in done.stderr and "install Docker" in done.stderr


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_strict_fake_fails_on_a_platform_module_imported_at_start_up(platform):
    # Negative control for the test below: under the strict fake, importing multiprocessing or
    # urllib.request as the front door's first act does fail.
    module = "multiprocessing" if platform == "win32" else "urllib.request"
    probe = foreign_python(platform, "-c", f"import {module}", strict=True)
    assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("argv", [["--help"], ["run", "--list"], ["bench", "--help"], ["grade"], ["bench"]],
                         ids=["help", "list", "bench-help", "grade", "bench"])
def test_the_front_door_needs_no_platform_module_at_start_up(platform, argv, tmp_path):
    """Help and the list work, and a command that needs Docker says what is wrong, even where
    multiprocessing (win32) or urllib.request (darwin) cannot be loaded the way this Linux Python
    would load them: the front door does not import them before it has to."""
    done = lab(platform, *argv, cwd=tmp_path, strict=True)
    assert "Traceback" not in done.stderr, done.stderr
    if argv[-1] in ("--help", "--list"):
        assert done.returncode == 0 and done.stdout
    else:
        assert done.returncode == 2 and f"epoll is Linux-only, so on {platform}" in done.stderr
