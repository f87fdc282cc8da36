"""examples/zig, the Zig model answer, built by its submission's build step and graded
100/100 by ``lab grade examples/zig/submission.toml``, exactly as a user runs it.

Slow: a first Zig build compiles six programs (tens of seconds to minutes); later runs reuse
Zig's cache in examples/zig/.zig-cache. Needs Zig: the ``zig`` extra (PyPI's ziglang, which
scripts/test installs) or ``zig`` on PATH.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.runner.build import installed

REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout: examples/ is not in the wheel

pytestmark = pytest.mark.slow
EXAMPLE = REPO_ROOT / "examples" / "zig"
PROGRAMS = ("level_triggered_epoll", "edge_triggered_epoll", "oneshot_epoll", "timeout_epoll",
            "signal_epoll", "benchmark_epoll")
GRADE_TIMEOUT = 1800.0  # the build (minutes on a busy machine) and every scenario


@pytest.fixture(scope="module")
def zig_available() -> None:
    if shutil.which("zig") is None and not installed("ziglang"):
        pytest.skip("needs Zig: pip install -e '.[zig]' (PyPI's ziglang) or zig on PATH")


def test_lab_grade_builds_and_scores_the_zig_example_100(zig_available, tmp_path):
    done = subprocess.run([sys.executable, "-m", "lab", "grade", str(EXAMPLE / "submission.toml"),
                           "--results", str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=GRADE_TIMEOUT)
    (run_dir,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    data = json.loads((run_dir / "results.json").read_text())
    failed = {item["id"]: item["evidence"] for item in data["items"] if not item["passed"]}
    assert failed == {}, done.stderr[-3000:]
    assert (data["score"], data["max_score"], done.returncode) == (100, 100, 0)
    assert data["observations"]["build"]["build"]["status"] == 0
    assert "zig build" in (run_dir / "build-output.txt").read_text()
    for program in PROGRAMS:
        assert (EXAMPLE / "zig-out" / "bin" / program).is_file()
