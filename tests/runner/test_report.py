"""results.json, scorecard.md, JUnit XML, the terminal table, the exit status and the atomic
results folder."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.errors import UsageError
from lab.runner.grading import ItemResult, Outcome
from lab.runner.report import (
    RunDirectory,
    RunReport,
    junit_xml,
    results_json,
    run_dir_name,
    scorecard_markdown,
    terminal_table,
)


def result(item_id: str, passed: bool, points: int = 5) -> ItemResult:
    return ItemResult(item_id, item_id.partition(".")[0], points, f"title of {item_id}",
                      Outcome.PASS if passed else Outcome.FAIL,
                      f"measured something about {item_id}; expected more", "" if passed else f"fix {item_id}")


def report(*results: ItemResult) -> RunReport:
    return RunReport(name="edge", programs={"edge": "srv {port}"}, results={r.id: r for r in results},
                     environment={"kernel": "6.1"}, warnings=["few fds"], started="2026-11-27T08:00:00+00:00",
                     seconds=12.5)


MIXED = report(result("edge.drains", True), result("edge.epollet", False), result("bonus.oneshot", False))


def test_scores_and_ids():
    assert (MIXED.score, MIXED.max_score) == (5, 15)
    assert MIXED.failed_ids() == {"edge.epollet", "bonus.oneshot"}
    assert MIXED.passed_ids() == {"edge.drains"}


@pytest.mark.parametrize(
    ("results", "status"),
    [
        ((result("edge.drains", True), result("bonus.oneshot", False)), 0),  # bonus failures do not fail a run
        ((result("edge.drains", False), result("bonus.oneshot", True)), 1),
        ((result("bonus.oneshot", True),), 0),  # only bonus items graded: they are what counts
        ((result("bonus.oneshot", False),), 1),
    ],
)
def test_exit_status_follows_the_mandatory_items(results, status):
    assert report(*results).exit_status == status


def test_results_json_has_every_item_and_the_totals():
    data = json.loads(results_json(MIXED))
    assert (data["score"], data["max_score"], data["exit_status"]) == (5, 15, 1)
    first = data["items"][0]
    assert {key: first[key] for key in ("id", "section", "points", "passed", "awarded")} == {
        "id": "edge.drains", "section": "edge", "points": 5, "passed": True, "awarded": 5}
    assert first["evidence"].startswith("measured")
    assert data["environment"] == {"kernel": "6.1"}


def test_scorecard_markdown_shows_evidence_hints_and_environment():
    text = scorecard_markdown(MIXED)
    assert "**Score: 5/15**" in text
    assert re.search(r"\| edge\.epollet +\| 0/5 +\| FAIL +\| measured something about edge\.epollet", text)
    assert "- `edge.epollet` (FAIL): fix edge.epollet" in text
    assert "- few fds" in text and "- kernel: 6.1" in text


def test_terminal_table_lists_items_and_failures():
    text = terminal_table(MIXED)
    assert "edge.drains" in text and "PASS" in text
    assert "FAIL edge.epollet: measured something" in text and "hint: fix edge.epollet" in text
    assert "score 5/15" in text


def test_junit_has_one_testcase_per_item():
    root = ET.fromstring(junit_xml(MIXED))
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("3", "2")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert set(cases) == {"edge.drains", "edge.epollet", "bonus.oneshot"}
    assert cases["edge.drains"].find("failure") is None
    failure = cases["edge.epollet"].find("failure")
    assert failure.get("message").startswith("FAIL: measured something about edge.epollet")
    assert "hint: fix edge.epollet" in failure.text
    assert cases["edge.epollet"].get("classname") == "edge"


def test_run_dir_name_is_a_utc_stamp_and_a_safe_name():
    assert run_dir_name("my server/2", when=0) == "19700101T000000Z-my-server-2"


def test_run_directory_appears_only_when_committed(tmp_path):
    with RunDirectory(tmp_path, "edge") as run_dir:
        run_dir.write("results.json", "{}")
        assert run_dir.path.name.startswith(".") and "partial" in run_dir.path.name
        final = run_dir.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == [final.name]
    assert (final / "results.json").read_text() == "{}"


def test_run_directory_leaves_nothing_when_the_run_fails(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with RunDirectory(tmp_path, "edge") as run_dir:
            run_dir.write("results.json", "{}")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_two_runs_in_the_same_second_do_not_mix(tmp_path):
    first, second = RunDirectory(tmp_path, "edge"), RunDirectory(tmp_path, "edge")
    second.name = first.name  # force the collision
    for run_dir in (first, second):
        run_dir.write("marker", run_dir.path.name)
    a, b = first.commit(), second.commit()
    assert a != b and b.name == f"{a.name}-2"
    assert (b / "marker").read_text() != (a / "marker").read_text()


def test_a_results_folder_that_cannot_be_written_is_a_usage_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(UsageError, match="cannot write results under .*a-file"):
        RunDirectory(blocker / "results", "edge")


def test_a_relative_results_folder_becomes_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with RunDirectory(Path("relative"), "edge") as run_dir:
        assert run_dir.path.is_absolute() and run_dir.path.parent == tmp_path / "relative"
