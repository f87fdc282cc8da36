"""``lab run`` and ``lab grade`` in-process: misuse is one line and exit 2, ``--list`` runs
nothing, and two small end-to-end runs against a reference server write a complete results
folder. The full grades are in test_reference_grades.py (slow)."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.cli import main
from lab.errors import UsageError
from lab.runner import run as runner_run
from lab.runner.class_cli import _grade_options


def run_lab(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_list_shows_scenarios_and_items_and_runs_nothing(capsys, tmp_path):
    status, out, _ = run_lab(capsys, "run", "--list", "--results", str(tmp_path))
    assert status == 0
    assert "burst-then-wait" in out and "edge.drains" in out and "bonus.benchmark" in out
    for outcome in ("PASS with remark", "NOT EXERCISED", "FLAKY", "--strict"):
        assert outcome in out  # the legend of the outcome classes
    assert list(tmp_path.iterdir()) == []


BROKEN_SCENARIO = '''description = "broken on purpose"
[[steps]]
action = "connect"
group = "g"
clients = 2
[[steps]]
action = "stream"
group = "g"
size = "-1MiB"
'''


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run"], "say what to run against: --target KIND, or --cmd"),
        (["run", "--cmd", "./server {port}"], "--cmd needs --as KIND"),
        (["run", "--cmd", "./server", "--as", "edge"], "has no {port}"),
        (["run", "--target", "edge", "--port", "8080"], "--port goes with --cmd, not with --target"),
        (["run", "--target", "edge", "--only", "edge.drain"], "'edge.drain' is neither a checklist item nor a section"),
        (["run", "--target", "edge", "--only", "level"], "nothing to grade"),
        (["run", "no/such/scenario.toml", "--target", "edge"], "no/such/scenario.toml: no such scenario file or folder"),
        (["grade", "no/such/submission.toml"], "cannot read the submission"),
    ],
)
def test_misuse_is_a_message_and_exit_2(capsys, tmp_path, argv, message):
    status, out, err = run_lab(capsys, *argv, "--results", str(tmp_path))
    assert status == 2
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing written


def test_a_broken_scenario_file_is_refused_before_anything_runs(capsys, tmp_path):
    scenario = tmp_path / "broken.toml"
    scenario.write_text(BROKEN_SCENARIO)
    results = tmp_path / "results"
    status, _, err = run_lab(capsys, "run", str(scenario), "--target", "edge", "--results", str(results))
    assert status == 2
    assert f"{scenario}: step 2 (stream): field 'size': expected a size" in err
    assert not results.exists()


def test_a_target_that_never_listens_is_a_clear_error(capsys, tmp_path):
    command = f"{sys.executable} -c 'import sys; print(\"bad flag\", file=sys.stderr); sys.exit(3)' {{port}}"
    status, _, err = run_lab(capsys, "run", "--cmd", command, "--as", "edge", "--only", "edge.drains",
                             "--results", str(tmp_path))
    assert status == 2
    assert "exited with status 3 before listening" in err and "bad flag" in err
    assert list(tmp_path.iterdir()) == []


def test_run_one_item_against_a_reference_server(capsys, tmp_path):
    junit = tmp_path / "junit.xml"
    status, out, err = run_lab(capsys, "run", "--target", "edge", "--only", "edge.drains",
                               "--results", str(tmp_path / "results"), "--junit", str(junit))
    assert status == 0, out + err
    assert "edge.drains" in out and "PASS" in out and "score 5/5" in out
    assert "[edge] burst-then-wait step" in err  # progress, plain lines in a non-TTY
    (run_dir,) = (tmp_path / "results").iterdir()
    data = json.loads((run_dir / "results.json").read_text())
    assert (data["score"], data["max_score"]) == (5, 5)
    assert [item["id"] for item in data["items"]] == ["edge.drains"]
    assert data["environment"]["kernel"]
    assert (run_dir / "scorecard.md").read_text().startswith("# Scorecard: edge")
    assert "listening on" in (run_dir / "logs" / "edge" / "burst-then-wait" / "stdout.txt").read_text()
    assert ET.parse(junit).getroot().find("testsuite").get("tests") == "1"


@pytest.mark.parametrize("argv", [["run", "--target", "edge", "--repeat", "0"], ["grade", "--repeat", "x"],
                                  ["grade", "--repeat", "101"]])
def test_a_bad_repeat_count_is_an_argparse_error(capsys, argv):
    with pytest.raises(SystemExit) as exited:
        run_lab(capsys, *argv)
    assert exited.value.code == 2
    assert "a number of runs from 1 to 100" in capsys.readouterr().err


def test_repeat_grades_n_times_and_strict_is_accepted(capsys, tmp_path):
    status, out, err = run_lab(capsys, "run", "--target", "edge", "--only", "edge.drains", "--repeat", "2",
                               "--strict", "--results", str(tmp_path))
    assert status == 0, out + err
    assert "round 2/2" in err
    (run_dir,) = tmp_path.iterdir()
    data = json.loads((run_dir / "results.json").read_text())
    assert data["flaky"] == [] and data["items"][0]["runs"] == ["PASS", "PASS"]
    assert (run_dir / "round-2" / "logs" / "edge" / "burst-then-wait" / "stdout.txt").exists()


def test_run_a_scenario_file_against_any_command(capsys, tmp_path):
    """--cmd with {port} (a port the kernel handed out) and an explicit scenario file."""
    scenario = tmp_path / "hello.toml"
    scenario.write_text('description = "one line"\n[[steps]]\naction = "connect"\ngroup = "g"\nclients = 3\n'
                        '[[steps]]\naction = "echo"\ngroup = "g"\nmessage = "hi {i}\\n"\nsave = "hello"\n')
    command = f"{sys.executable} -m lab serve level --port {{port}}"
    status, out, err = run_lab(capsys, "run", str(scenario), "--cmd", command, "--as", "level",
                               "--results", str(tmp_path / "results"))
    assert status == 0, out + err
    (run_dir,) = (tmp_path / "results").iterdir()
    data = json.loads((run_dir / "results.json").read_text())
    assert data["items"] == []  # a scenario of our own feeds no checklist item: it only records
    hello = data["observations"]["level"]["hello"]["hello"]
    assert (hello["clients"], hello["ok"], hello["mismatched"]) == (3, 3, 0)


def test_python_dash_m_lab_run_list():
    completed = subprocess.run([sys.executable, "-m", "lab", "run", "--list"], capture_output=True,
                               text=True, timeout=60)
    assert completed.returncode == 0
    assert "fd-exhaustion" in completed.stdout


def test_grade_a_submission_with_a_missing_program(capsys, tmp_path):
    """A program left out of the submission scores 0 on its items, with the reason."""
    submission = tmp_path / "sub.toml"
    submission.write_text(f'name = "partial"\n[edge]\ncmd = "{sys.executable} -m lab serve edge --port {{port}}"\n')
    status, out, err = run_lab(capsys, "grade", str(submission), "--only", "edge.drains", "--only", "level.echoes",
                               "--results", str(tmp_path / "results"))
    assert status == 1, out + err  # level.echoes is mandatory and missing
    (run_dir,) = (tmp_path / "results").iterdir()
    assert run_dir.name.endswith("-partial")
    items = {item["id"]: item for item in json.loads((run_dir / "results.json").read_text())["items"]}
    assert items["edge.drains"]["passed"]
    assert not items["level.echoes"]["passed"]
    assert "the submission has no level program" in items["level.echoes"]["evidence"]


FAULTY_BENCHMARK = Path(__file__).resolve().parents[1] / "faulty" / "benchmark.py"


EXITS_1 = "import sys; print('reply mismatch', file=sys.stderr); sys.exit(1)\n"


@pytest.mark.parametrize(
    ("script", "fault", "passed", "words"),
    [
        (None, "", True, "req/s, exit 0 in"),
        (None, " --fault prints-only", False, "printed 1 req/s and exited 0 in"),
        (EXITS_1, "", False, "exited with status 1: reply mismatch"),
    ],
    ids=["honest", "prints-only", "exits-1"],
)
def test_grade_runs_the_submissions_benchmark_against_its_edge_server(capsys, tmp_path, script, fault, passed,
                                                                        words):
    (tmp_path / "PERFORMANCE.md").write_text("| mode | req/s |\n|---|---|\n| edge | 1234 |\n")
    client = FAULTY_BENCHMARK
    if script is not None:
        client = tmp_path / "bench.py"
        client.write_text(script)
    submission = tmp_path / "sub.toml"
    submission.write_text(
        f'[edge]\ncmd = "{sys.executable} -m lab serve edge --port {{port}}"\n'
        f'[benchmark]\ncmd = "{sys.executable} {client} {{host}} {{port}} {{connections}} {{requests}}{fault}"\n'
        "connections = 20\nrequests = 20\n"
    )
    status, out, err = run_lab(capsys, "grade", str(submission), "--only", "bonus.benchmark",
                               "--results", str(tmp_path / "results"))
    assert status == (0 if passed else 1), out + err
    (run_dir,) = (tmp_path / "results").iterdir()
    (item,) = json.loads((run_dir / "results.json").read_text())["items"]
    assert item["passed"] is passed, item["evidence"]
    assert words in item["evidence"] and "PERFORMANCE.md: a table with 1 result row(s)" in item["evidence"]
    if passed:  # at most 20: a /proc/net/tcp read races with a busy machine's other sockets
        seen = re.search(r"the lab saw (\d+) connection\(s\) to the server", item["evidence"])
        assert seen and 1 <= int(seen.group(1)) <= 20, item["evidence"]
    else:
        assert item["hint"]


def test_a_submission_program_that_never_listens_scores_zero_with_the_reason(capsys, tmp_path):
    submission = tmp_path / "sub.toml"
    submission.write_text(f'[edge]\ncmd = "{sys.executable} -c \'import sys; sys.exit(4)\' {{port}}"\n')
    status, out, err = run_lab(capsys, "grade", str(submission), "--only", "edge",
                               "--results", str(tmp_path / "results"))
    assert status == 1, out + err
    (run_dir,) = (tmp_path / "results").iterdir()
    items = json.loads((run_dir / "results.json").read_text())["items"]
    assert len(items) == 5 and not any(item["passed"] for item in items)
    assert all("exited with status 4 before listening" in item["evidence"] for item in items)


def _unwritable_junit(tmp_path, where: str):
    if where == "folder":
        return tmp_path
    (tmp_path / "a-file").write_text("")
    return tmp_path / "a-file" / "junit.xml"


@pytest.mark.parametrize("command", [["run", "--target", "edge", "--only", "edge.drains"], ["grade", "--only", "edge.drains"]])
@pytest.mark.parametrize(("where", "message"), [("folder", "is a folder; give a file name"),
                                                ("under-a-file", "a-file is not a folder")])
def test_an_unwritable_junit_path_is_refused_before_anything_runs(capsys, tmp_path, command, where, message):
    junit = _unwritable_junit(tmp_path, where)
    results = tmp_path / "results"
    status, _, err = run_lab(capsys, *command, "--junit", str(junit), "--results", str(results))
    assert status == 2
    assert f"--junit {junit}: " in err and message in err and "Traceback" not in err
    assert not results.exists()  # refused before the run, not after its results were written


def test_a_scenario_nofile_above_the_hard_limit_is_refused_before_anything_runs(capsys, tmp_path):
    import resource

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard >= 1 << 20:
        pytest.skip("no hard RLIMIT_NOFILE below the scenario's largest nofile")
    scenario = tmp_path / "many-fds.toml"
    scenario.write_text(f'description = "d"\nnofile = {hard + 1}\n[[steps]]\naction = "probe"\nsave = "p"\n')
    results = tmp_path / "results"
    status, _, err = run_lab(capsys, "run", str(scenario), "--target", "level", "--results", str(results))
    assert status == 2
    assert f"{scenario}: field 'nofile': {hard + 1} is above" in err and "ulimit -Hn" in err
    assert not results.exists()


def test_ready_timeout_bounds_how_long_a_program_may_take_to_listen(capsys, tmp_path):
    silent = f"{sys.executable} -c 'import time; time.sleep(60)' {{port}}"
    status, _, err = run_lab(capsys, "run", "--cmd", silent, "--as", "edge", "--only", "edge.drains",
                             "--ready-timeout", "500ms", "--results", str(tmp_path))
    assert status == 2
    assert "did not listen on 127.0.0.1:" in err and "within 0.5 s" in err


@pytest.mark.parametrize(("value", "message"), [("0s", "the ready timeout must be longer than 0 s"),
                                                ("nan", "expected a duration"), ("2d", "expected a duration")])
def test_a_bad_ready_timeout_is_a_message_and_exit_2(capsys, tmp_path, value, message):
    try:
        status, _, err = run_lab(capsys, "run", "--target", "edge", "--ready-timeout", value, "--results", str(tmp_path))
    except SystemExit as exit_:  # argparse refuses what parse_duration cannot read
        status, err = exit_.code, capsys.readouterr().err
    assert status == 2 and message in err
    assert list(tmp_path.iterdir()) == []


SILENT = f"{sys.executable} -c 'import time; time.sleep(60)' {{port}}"


@pytest.mark.parametrize(("own", "waited"), [("", "0.5 s"), ('ready_timeout = "1s"\n', "1 s")])
def test_grade_ready_timeout_is_the_default_a_submission_file_may_override(capsys, tmp_path, own, waited):
    submission = tmp_path / "sub.toml"
    submission.write_text(f'[edge]\ncmd = "{SILENT}"\n{own}')
    status, out, err = run_lab(capsys, "grade", str(submission), "--only", "edge.drains", "--ready-timeout", "500ms",
                               "--results", str(tmp_path / "results"))
    assert status == 1, err
    [run] = (tmp_path / "results").iterdir()
    [item] = json.loads((run / "results.json").read_text())["items"]
    assert "did not listen on 127.0.0.1:" in item["evidence"] and f"within {waited}" in item["evidence"]


def test_grade_ready_timeout_reaches_the_reference_servers(capsys, tmp_path, monkeypatch):
    graded = []

    def grade_submission(submission, *args, **kwargs):
        graded.append(submission)
        raise UsageError("stopped before grading")

    monkeypatch.setattr(runner_run, "grade_submission", grade_submission)
    status, _, err = run_lab(capsys, "grade", "--ready-timeout", "30s", "--results", str(tmp_path))
    assert status == 2 and "stopped before grading" in err
    [submission] = graded
    assert submission.name == "reference"
    assert {program.ready_timeout for program in submission.programs.values()} == {30.0}


@pytest.mark.parametrize(("argv", "message"), [
    (["grade", "--ready-timeout", "0s"], "the ready timeout must be longer than 0 s"),
    (["grade", "a.toml", "b.toml", "--ready-timeout", "30s"], "--ready-timeout is for one submission"),
])
def test_a_bad_grade_ready_timeout_is_a_message_and_exit_2(capsys, tmp_path, argv, message):
    try:
        status, _, err = run_lab(capsys, *argv, "--results", str(tmp_path))
    except SystemExit as exit_:  # argparse refuses the value itself
        status, err = exit_.code, capsys.readouterr().err
    assert status == 2 and message in err
    assert list(tmp_path.iterdir()) == []


IPV6_ONLY_ECHO = Path(__file__).with_name("ipv6_only_echo.py")


@pytest.mark.parametrize(
    "command",
    [
        # Prints nothing: the address comes from /proc/net/tcp6.
        f"{sys.executable} {IPV6_ONLY_ECHO} {{port}}",
        # Announces "listening on ::1:PORT".
        f"{sys.executable} -m lab serve level --host ::1 --port {{port}}",
    ],
    ids=["silent", "announced"],
)
def test_a_server_listening_on_ipv6_loopback_only_is_graded(capsys, tmp_path, ipv6_loopback, command):
    status, out, err = run_lab(capsys, "run", "--cmd", command, "--as", "level", "--only", "level.echoes",
                               "--results", str(tmp_path / "results"))
    assert status == 0, out + err
    (run_dir,) = (tmp_path / "results").iterdir()
    (item,) = json.loads((run_dir / "results.json").read_text())["items"]
    assert item["passed"], item


@pytest.mark.parametrize(("strict", "repeat", "words"), [
    (False, 1, []), (True, 1, ["--strict"]), (True, 3, ["--strict", "--repeat", "3"]), (False, 2, ["--repeat", "2"]),
])
def test_a_class_passes_strict_and_repeat_on_to_each_submissions_grade(strict, repeat, words):
    assert _grade_options(argparse.Namespace(strict=strict, repeat=repeat)) == words
