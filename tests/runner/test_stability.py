"""``--repeat``: N result sets in, one out, FLAKY where an outcome changed. No sockets."""

from __future__ import annotations

import pytest

from lab.runner.checklist import ITEM_BY_ID
from lab.runner.grading import Judgement, Outcome, _result
from lab.runner.report import RunReport, junit_xml, results_json, scorecard_markdown, terminal_table
from lab.runner.stability import merge, runs_words


def result(item_id: str, outcome: Outcome, measured: str = "seen"):
    return _result(ITEM_BY_ID[item_id], Judgement(outcome, measured, "fix it"), strict=False)


def rounds(*outcomes: Outcome, item_id: str = "edge.drains") -> list[dict]:
    return [{item_id: result(item_id, outcome, f"run {n}")} for n, outcome in enumerate(outcomes, 1)]


def test_the_same_outcome_every_time_is_stable():
    merged = merge(rounds(Outcome.PASS, Outcome.PASS, Outcome.PASS))["edge.drains"]
    assert (merged.outcome, merged.flaky, merged.runs) == (Outcome.PASS, False, ("PASS",) * 3)
    assert runs_words(merged) == "PASS"


def test_a_changed_outcome_is_flaky_keeps_the_worst_run_and_fails_the_run():
    merged = merge(rounds(Outcome.PASS, Outcome.FAIL, Outcome.PASS))
    drains = merged["edge.drains"]
    assert drains.flaky and drains.outcome is Outcome.FAIL and drains.measured == "run 2"
    assert runs_words(drains) == "FLAKY: FAIL 1/3, PASS 2/3"
    report = RunReport("t", {}, merged)
    assert report.exit_status == 1 and report.flaky_ids() == {"edge.drains"}
    assert "FLAKY: FAIL 1/3, PASS 2/3" in terminal_table(report)
    assert '"flaky": [\n    "edge.drains"\n  ]' in results_json(report)
    assert 'type="Flaky"' in junit_xml(report)


def test_a_flaky_item_that_always_scored_still_fails_the_run():
    merged = merge(rounds(Outcome.PASS, Outcome.REMARK))
    report = RunReport("t", {}, merged)
    assert report.results["edge.drains"].passed and report.exit_status == 1
    assert "## Flaky" in scorecard_markdown(report)


def test_one_round_is_returned_as_it_is_and_none_is_an_error():
    one = rounds(Outcome.FAIL)
    assert merge(one) == one[0]
    with pytest.raises(ValueError):
        merge([])
