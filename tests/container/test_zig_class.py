"""A class of Zig submissions graded in sandbox containers: each one built by ``zig build``
inside its own sandbox (read-only root, Zig's caches on the tmpfs, the memory and pids limits),
in the image with Zig that ``lab grade`` picks because a build step runs zig."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.sandbox import ROLE, ROLE_LABEL

from .helpers import REPO, lab_cli, lab_env

pytestmark = pytest.mark.docker

EXAMPLE = REPO / "examples" / "zig"
ITEMS = ("level.echoes", "edge.nonblocking")
# Two Zig builds in fresh sandboxes, one after the other (--jobs 1 on two cores), each from the
# image's pre-built cache: 4.5 min in all here on busy cores (18 min from cold caches). The
# default limit of 15 min per submission is for idle machines.
CLASS_TIMEOUT = 4200.0
# A semicolon missing in the level server's first declaration: a parse error, which zig
# reports whatever the rest of the file holds.
GOOD_LINE = 'const std = @import("std");\n'
BROKEN_LINE = 'const std = @import("std")\n'


def zig_student(students: Path, name: str) -> Path:
    """The example's sources as a student's folder: no zig-out or cache from a native build."""
    folder = students / name
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("zig-out", ".zig-cache"))
    return folder


def test_a_zig_class_builds_in_its_sandboxes_and_a_compile_error_scores_0_naming_it(zig_image, docker_engine,
                                                                                        tmp_path):
    students = tmp_path / "class"
    zig_student(students, "example")
    level = zig_student(students, "typo") / "src" / "level_triggered_epoll.zig"
    source = level.read_text()
    assert GOOD_LINE in source  # else the typo below would not be one
    level.write_text(source.replace(GOOD_LINE, BROKEN_LINE, 1))

    # LAB_ZIG_IMAGE: the image with Zig that this session built; LAB_IMAGE: one that does not
    # exist, so picking the plain image would fail to find it, not pass.
    env = lab_env("epoll-lab:test-no-such-image", LAB_ZIG_IMAGE=zig_image, PYTHONPATH=str(REPO))
    only = [word for item in ITEMS for word in ("--only", item)]
    with (tmp_path / "grade.log").open("w+") as out:
        done = subprocess.run(lab_cli("grade", str(students), "--jobs", "1", *only, "--time-limit", "30min", "--results", str(tmp_path / "out")),
                              cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.STDOUT, timeout=CLASS_TIMEOUT)
        out.seek(0)
        output = out.read()
    leftovers = docker_engine.containers.list(all=True, filters={"label": f"{ROLE_LABEL}={ROLE}"})
    for container in leftovers:
        container.remove(force=True)
    assert leftovers == [], "a sandbox container was left behind"
    assert done.returncode == 0, output[-4000:]
    assert f"in sandbox containers of {zig_image}" in output

    (folder,) = (tmp_path / "out").iterdir()
    data = json.loads((folder / "class.json").read_text())
    by_name = {s["name"]: s for s in data["submissions"]}
    assert data["sandbox"]["image"] == zig_image

    example = by_name["example"]
    assert {item: v["outcome"] for item, v in example["items"].items()} == dict.fromkeys(ITEMS, "PASS"), output[-4000:]
    assert example["score"] == example["max_score"] > 0

    # Graded (its build ran and failed), every item 0, the compiler's error named in each.
    typo = by_name["typo"]
    assert (typo["status"], typo["score"]) == ("graded", 0)
    for item, verdict in typo["items"].items():
        assert verdict["outcome"] == "FAIL", item
        assert "the build `zig build -Doptimize=ReleaseSafe` failed" in verdict["evidence"], verdict["evidence"]
        assert "level_triggered_epoll.zig" in verdict["evidence"] and "error:" in verdict["evidence"]
    (build_output,) = (folder / typo["results"]).glob("build-output.txt")
    assert "expected ';'" in build_output.read_text()
