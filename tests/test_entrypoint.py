"""lab/entrypoint.py: the image starts as root and becomes the owner of the results folder
before anything runs, so results on the host belong to whoever owns the folder."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from lab.entrypoint import command_for, owner_of, results_folder

COMMAND_TIMEOUT = 30.0


@pytest.mark.parametrize(
    ("argv", "folder"),
    [
        (["grade"], "results"),
        (["grade", "--results", "/lab/results"], "/lab/results"),
        (["run", "--results=out", "--target", "edge"], "out"),
        (["run", "--results", "a", "--results", "b"], "b"),
    ],
)
def test_the_results_folder_is_the_one_the_command_writes_to(argv, folder):
    assert results_folder(argv) == Path(folder)


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["grade", "--results", "/lab/results"], ["lab", "grade", "--results", "/lab/results"]),
        (["--version"], ["lab", "--version"]),
        ([], ["lab"]),
        (["sh", "-c", "zig build"], ["sh", "-c", "zig build"]),  # a program on PATH runs as is
    ],
)
def test_lab_subcommands_run_lab_and_programs_run_themselves(argv, command):
    assert command_for(argv) == command


def test_a_folder_not_made_yet_belongs_to_the_owner_of_its_nearest_parent(tmp_path):
    status = tmp_path.stat()
    assert owner_of(tmp_path / "not" / "yet") == (status.st_uid, status.st_gid)


@pytest.fixture
def public_dir():
    """A folder any uid may enter (pytest's tmp_path sits in a folder only root may)."""
    with tempfile.TemporaryDirectory(prefix="lab-entrypoint-") as name:
        os.chmod(name, 0o755)
        yield Path(name)


def run_entrypoint(where: Path, results: Path) -> list[str]:
    """Run the entrypoint with a stand-in ``lab`` on PATH that prints who it runs as."""
    bin_dir = where / "bin"
    bin_dir.mkdir(mode=0o755)
    stand_in = bin_dir / "lab"
    stand_in.write_text('#!/bin/sh\necho "$(id -u) $(id -g) $(id -G) $*"\n')
    stand_in.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "-m", "lab.entrypoint", "grade", "--results", str(results)],
                          env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another uid needs root")
@pytest.mark.parametrize("owner", [(1001, 1001), (1000, 1000), (4242, 77)])
def test_as_root_it_drops_to_the_results_owner_before_running_lab(public_dir, owner):
    results = public_dir / "results"
    results.mkdir()
    os.chown(results, *owner)
    uid, gid, *rest = run_entrypoint(public_dir, results)
    groups = rest[: rest.index("grade")]
    assert (int(uid), int(gid)) == owner
    assert groups == [str(owner[1])], "supplementary groups of root were kept"
    assert rest[rest.index("grade"):] == ["grade", "--results", str(results)]


@pytest.mark.skipif(os.geteuid() != 0, reason="runs as root to show root stays root")
def test_a_root_owned_folder_keeps_root(tmp_path):
    # Negative control: nothing to drop to when root owns the folder (a root user's checkout).
    results = tmp_path / "results"
    results.mkdir()
    uid, gid, *_ = run_entrypoint(tmp_path, results)
    assert (uid, gid) == ("0", "0")
