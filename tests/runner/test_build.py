"""A submission's build step: finding zig, running the build, and grading after a failed one."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from lab.cli import main
from lab.errors import UsageError
from lab.runner import build as build_module
from lab.runner.build import BuildResult, BuildStep, resolve_command, run_build
from lab.runner.checklist import CHECKLIST
from lab.runner.run import grade_submission
from lab.runner.submission import load_submission


def on_path(*names: str):
    return lambda program: f"/usr/bin/{program}" if program in names else None


def test_zig_on_path_is_used_as_written():
    assert resolve_command(("zig", "build"), which=on_path("zig"), has_module=lambda _: True) == ["zig", "build"]


def test_without_zig_on_path_the_ziglang_package_runs_it():
    argv = resolve_command(("zig", "build", "-Doptimize=ReleaseSafe"), which=on_path(), has_module=lambda m: m == "ziglang")
    assert argv == [sys.executable, "-m", "ziglang", "build", "-Doptimize=ReleaseSafe"]


def test_no_zig_at_all_is_a_usage_error_naming_the_extra():
    with pytest.raises(UsageError, match=r"not on PATH and the Python package ziglang is not installed; pip install -e '\.\[zig\]'"):
        resolve_command(("zig", "build"), which=on_path(), has_module=lambda _: False)


def test_another_missing_build_tool_is_a_usage_error_naming_it():
    with pytest.raises(UsageError, match="`make all` cannot run: make is not on PATH"):
        resolve_command(("make", "all"), which=on_path(), has_module=lambda _: True)


def test_a_path_is_run_as_given():
    assert resolve_command(("./build.sh",), which=on_path(), has_module=lambda _: False) == ["./build.sh"]


def python_command(code: str) -> str:
    return shlex.join([sys.executable, "-c", code])


def test_run_build_keeps_the_output_and_the_status(tmp_path):
    code = "import sys; print('compiling'); print('error: expected ;', file=sys.stderr); sys.exit(3)"
    step = BuildStep(tuple(shlex.split(python_command(code))), tmp_path)
    result = run_build(step, list(step.argv), tmp_path / "build-output.txt")
    assert (result.status, result.ok) == (3, False)
    assert "failed with exit status 3" in result.summary()
    assert result.tail().endswith("compiling\nerror: expected ;")
    assert (tmp_path / "build-output.txt").read_text() == result.output


def test_a_build_that_does_not_finish_is_stopped(tmp_path):
    step = BuildStep(tuple(shlex.split(python_command("import time; time.sleep(60)"))), tmp_path, timeout=0.5)
    result = run_build(step, list(step.argv), tmp_path / "build-output.txt")
    assert result.status is None
    assert "did not finish within its timeout" in result.summary()


@pytest.mark.parametrize(("output", "error"), [
    ("install\n└─ compile exe level\nsrc/level.zig:9:5: error: use of undeclared identifier 'x'\n"
     "error: the following command failed with 1 compilation errors:\n", "src/level.zig:9:5: error: use of undeclared identifier 'x'"),
    ("make: *** [all] Killed\n\n", "make: *** [all] Killed"),
    ("", ""),
], ids=["zig", "no-error-line", "silent"])
def test_a_failed_build_is_explained_by_its_first_error_line(output, error):
    result = BuildResult("zig build", 1, 2.0, output)
    assert result.first_error() == error
    assert result.reason() == "the build `zig build` failed with exit status 1 after 2.0 s" + (f": {error}" if error else "")


def test_a_build_the_sandbox_limits_killed_says_so():
    result = BuildResult("zig build", 1, 9.0, "error: the following command terminated unexpectedly:\n",
                         limits="killed: out of memory (limit 1 GiB)")
    assert result.reason() == ("the build `zig build` failed with exit status 1 after 9.0 s (killed: out of memory "
                               "(limit 1 GiB)): error: the following command terminated unexpectedly:")


def test_summary_of_a_build_that_worked():
    assert BuildResult("zig build", 0, 41.94, "").summary() == "the build `zig build` succeeded after 41.9 s"


def write_submission(folder: Path, build_code: str) -> Path:
    path = folder / "submission.toml"
    path.write_text(f"name = 'student'\nbuild = {json.dumps(python_command(build_code))}\n"
                    "[level]\ncmd = './zig-out/bin/level {port}'\n"
                    "[edge]\ncmd = './zig-out/bin/edge {port}'\n"
                    "[benchmark]\ncmd = './zig-out/bin/bench {host} {port} {connections} {requests}'\n")
    return path


def test_a_failed_build_fails_every_item_with_its_reason_and_keeps_its_output(tmp_path):
    code = "import sys; print('src/main.zig:3:1: error: expected expression'); sys.exit(1)"
    submission = load_submission(write_submission(tmp_path, code))
    report = grade_submission(submission, results_dir=tmp_path / "results")
    assert report.exit_status == 1
    assert report.score == 0 and len(report.results) == len(CHECKLIST)
    for result in report.results.values():
        assert "the build" in result.evidence and "failed with exit status 1" in result.evidence
        assert "src/main.zig:3:1: error: expected expression" in result.evidence  # the compiler's words
        assert "build-output.txt" in result.hint
    assert "error: expected expression" in (report.run_dir / "build-output.txt").read_text()
    assert any("failed with exit status 1" in warning for warning in report.warnings)
    assert "logs" not in {path.name for path in report.run_dir.iterdir()}  # nothing was started


def test_after_a_good_build_the_programs_are_graded_on_their_own_merits(tmp_path):
    # The "build" writes a file but no program: the level item then fails because the
    # program cannot start, not because of the build.
    submission = load_submission(write_submission(tmp_path, "open('built.txt', 'w').write('ok')"))
    report = grade_submission(submission, only=["level.epoll_created"], results_dir=tmp_path / "results")
    assert (tmp_path / "built.txt").read_text() == "ok"  # it ran in the submission's folder
    result = report.results["level.epoll_created"]
    assert not result.passed
    assert "cannot start" in result.evidence and "the build" not in result.evidence
    assert report.observations["build"]["build"]["status"] == 0
    assert report.programs["build"].startswith(shlex.quote(sys.executable))


def test_lab_grade_without_any_zig_is_a_usage_error_and_writes_nothing(tmp_path, monkeypatch, capsys):
    path = tmp_path / "submission.toml"
    path.write_text("build = 'zig build'\n[edge]\ncmd = './zig-out/bin/edge {port}'\n")
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(build_module, "installed", lambda module: False)
    status = main(["grade", str(path), "--results", str(tmp_path / "results")])
    assert status == 2
    assert "the build needs `zig`: it is not on PATH" in capsys.readouterr().err
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_the_images_pre_built_zig_cache_is_copied_once_to_the_writable_cache(tmp_path):
    seed = tmp_path / "opt-zig-cache"
    (seed / "o" / "abc").mkdir(parents=True)
    (seed / "o" / "abc" / "maker").write_text("built")
    cache = tmp_path / "tmpfs" / "zig-cache" / "global"
    environ = {build_module.ZIG_CACHE_SEED_ENV: str(seed), "ZIG_GLOBAL_CACHE_DIR": str(cache)}
    assert "pre-built" in build_module.seed_zig_cache(environ)
    assert (cache / "o" / "abc" / "maker").read_text() == "built"
    (cache / "o" / "abc" / "maker").write_text("rebuilt")  # a cache in use is never overwritten
    assert build_module.seed_zig_cache(environ) is None
    assert (cache / "o" / "abc" / "maker").read_text() == "rebuilt"


@pytest.mark.parametrize("missing", [build_module.ZIG_CACHE_SEED_ENV, "ZIG_GLOBAL_CACHE_DIR", "seed folder"])
def test_without_a_seed_or_a_cache_dir_nothing_is_copied(tmp_path, missing):
    seed, cache = tmp_path / "seed", tmp_path / "cache"
    if missing != "seed folder":
        seed.mkdir()
    environ = {build_module.ZIG_CACHE_SEED_ENV: str(seed), "ZIG_GLOBAL_CACHE_DIR": str(cache)}
    environ.pop(missing, None)
    assert build_module.seed_zig_cache(environ) is None
    assert not cache.exists()
