"""Every reference server gets full marks on every item of its kind, and ``lab grade``
without a file scores our reference submission 100/100. Slow: these are the real grades."""

from __future__ import annotations

import json

import pytest

from lab.cli import main
from lab.runner.program import Program
from lab.runner.run import grade_program
from lab.runner.checklist import KINDS, items_for

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", KINDS)
def test_each_reference_server_passes_every_item_of_its_kind(kind, tmp_path):
    report = grade_program(Program.builtin(kind), results_dir=tmp_path)
    failures = {item_id: report.results[item_id].evidence for item_id in report.failed_ids()}
    assert failures == {}
    assert set(report.results) == {item.id for item in items_for(kind)}
    assert report.score == report.max_score and report.exit_status == 0


def test_lab_grade_scores_the_reference_submission_100(capsys, tmp_path):
    status = main(["grade", "--results", str(tmp_path), "--junit", str(tmp_path / "junit.xml")])
    out, _ = capsys.readouterr()
    (run_dir,) = [path for path in tmp_path.iterdir() if path.is_dir()]
    data = json.loads((run_dir / "results.json").read_text())
    failed = {item["id"]: item["evidence"] for item in data["items"] if not item["passed"]}
    assert failed == {}
    assert (data["score"], data["max_score"], status) == (100, 100, 0)
    assert "score 100/100" in out


def test_the_edge_reference_is_stable_over_repeated_grades(tmp_path):
    """``--repeat``: no item of the edge server (the most timing-sensitive kind) changes its
    verdict between rounds."""
    report = grade_program(Program.builtin("edge"), results_dir=tmp_path, repeat=3)
    assert report.flaky_ids() == set(), {i: report.results[i].runs for i in report.flaky_ids()}
    assert report.score == report.max_score and report.exit_status == 0
