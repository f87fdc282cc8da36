"""The wheel is the lab: built, installed non-editable into a fresh venv and run from another
folder, it lists the shipped scenarios and grades (no path into a checkout)."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT = 600.0
RUN_TIMEOUT = 300.0

pytestmark = pytest.mark.slow


def run(argv: list, cwd: Path, timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    done = subprocess.run([str(word) for word in argv], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{argv} -> {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a fresh venv with the lab installed from its wheel (and its dependencies)."""
    work = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", work / "dist", REPO],
        cwd=work, timeout=BUILD_TIMEOUT)
    (wheel,) = (work / "dist").glob("epoll_lab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "lab/scenarios/burst-connects.toml" in names, names
    venv.create(work / "venv", with_pip=True)
    bin_dir = work / "venv" / "bin"
    run([bin_dir / "python", "-m", "pip", "install", "--quiet", wheel], cwd=work, timeout=BUILD_TIMEOUT)
    return bin_dir


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def test_the_installed_lab_is_the_wheel_not_the_checkout(installed, elsewhere):
    where = run([installed / "python", "-c", "import lab; print(lab.__file__)"], cwd=elsewhere).stdout
    assert "site-packages" in where and str(REPO) not in where


def test_run_list_from_another_folder(installed, elsewhere):
    listed = run([installed / "lab", "run", "--list"], cwd=elsewhere).stdout
    assert "burst-connects" in listed and "edge.drains" in listed


def test_a_one_item_run_from_another_folder(installed, elsewhere):
    done = run([installed / "lab", "run", "--target", "edge", "--only", "edge.drains"], cwd=elsewhere)
    assert "edge.drains" in done.stdout and "PASS" in done.stdout
    (run_dir,) = (elsewhere / "results").iterdir()
    assert (run_dir / "results.json").is_file()
