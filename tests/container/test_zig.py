"""The Zig example, built and graded inside the image with Zig (``WITH_ZIG=1``): the path of a
student on macOS or Windows, whose ``lab --docker grade`` runs both the compiler and the grader
in the container."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .helpers import (
    REPO,
    lab_cli,
    lab_env,
    load_results,
    only_run_dir,
    score_of,
)

pytestmark = pytest.mark.docker
EXAMPLE = REPO / "examples" / "zig"
# A cold Zig build in a fresh container compiles the standard library too: over ten minutes
# on two busy cores, before a grade of a minute or two.
BUILD_AND_GRADE_TIMEOUT = 2400.0


def test_the_zig_example_builds_and_scores_100_inside_the_image(zig_image, tmp_path):
    # The sources only, as a student's folder: no zig-out or cache from a native build.
    project = tmp_path / "zig"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("zig-out", ".zig-cache"))
    # WITH_ZIG=1, as a student would set it: `lab --docker` keeps LAB_IMAGE fresh with the
    # build arguments of its environment, and without it would rebuild the image without Zig.
    env = lab_env(zig_image, WITH_ZIG="1", PYTHONPATH=str(REPO))
    log = tmp_path / "grade.log"
    with log.open("w+") as out:
        done = subprocess.run(lab_cli("--docker", "grade", "zig/submission.toml", "--results", "results"),
                              cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.STDOUT, timeout=BUILD_AND_GRADE_TIMEOUT)
        out.seek(0)
        output = out.read()
    run_dir = only_run_dir(tmp_path / "results")
    results = load_results(run_dir)
    failed = {item["id"]: item["evidence"] for item in results["items"] if not item["passed"]}
    assert failed == {}, output[-4000:]
    assert (score_of(results), done.returncode) == ((100, 100), 0)
    # Built in the container, for the container: a Linux binary in the student's folder.
    assert (project / "zig-out" / "bin" / "edge_triggered_epoll").read_bytes()[:4] == b"\x7fELF"
    assert "zig build" in (run_dir / "build-output.txt").read_text()
