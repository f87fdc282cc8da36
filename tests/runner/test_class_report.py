"""The class report's pure renderings: class.json's data, class.csv, class.md, class.html."""

from __future__ import annotations

import csv
import io
import json
from html.parser import HTMLParser

import pytest

from lab.runner.class_report import (
    FAIL,
    NOT_EXERCISED,
    PASS,
    REMARK,
    SubmissionRecord,
    class_csv,
    class_data,
    class_html,
    class_json,
    class_markdown,
    outcome_of,
)

SANDBOX = {"kind": "docker", "image": "epoll-lab:test", "limits": {"memory": "1 GiB", "pids": "512"}}


def item(item_id: str, passed: bool, points: int = 4, outcome: str | None = None, evidence: str = "") -> dict:
    found = {"id": item_id, "section": item_id.partition(".")[0], "points": points, "title": f"title of {item_id}",
             "passed": passed, "awarded": points if passed else 0, "evidence": evidence or f"measured {item_id}",
             "hint": "" if passed else f"fix {item_id}"}
    if outcome is not None:
        found["outcome"] = outcome
    return found


def record(name: str, *items: dict, reason: str | None = None, notes: tuple[str, ...] = ()) -> SubmissionRecord:
    results = {"name": name, "score": sum(i["awarded"] for i in items),
               "max_score": sum(i["points"] for i in items), "items": list(items),
               "started": "2026-01-01T00:00:00+00:00"}
    sandbox = {"reason": reason, "notes": list(notes)} if reason or notes else {}
    return SubmissionRecord(name, results, f"submissions/{name}/run", sandbox)


@pytest.fixture
def data() -> dict:
    records = [
        record("zoe", item("level.accepts", True), item("edge.drains", False, points=5),
               notes=("the out-of-memory killer ran in the sandbox (limit 1 GiB)",)),
        record("=cmd|evil", item("level.accepts", False, evidence="measured 0/1,000 | hostile <b>")),
        record("amy", item("level.accepts", True, outcome=REMARK), item("edge.drains", True, points=5),
               item("bonus.oneshot", False, points=5, outcome=NOT_EXERCISED)),
        record("bob", item("level.accepts", False), reason="killed: out of memory (limit 1 GiB)"),
    ]
    return class_data(records, title="os-2026", generated="2026-01-02T00:00:00+00:00", sandbox=SANDBOX)


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        ({"passed": True}, PASS),
        ({"passed": False}, FAIL),
        ({"passed": True, "outcome": REMARK}, REMARK),
        ({"passed": False, "outcome": NOT_EXERCISED}, NOT_EXERCISED),
        ({"passed": True, "outcome": "something new"}, PASS),  # unknown: fall back to passed
    ],
)
def test_outcome_reads_the_new_field_and_falls_back_to_passed(found, expected):
    assert outcome_of(found) == expected


def test_class_data_lists_every_submission_with_every_item_and_its_link(data):
    assert [s["name"] for s in data["submissions"]] == ["=cmd|evil", "amy", "bob", "zoe"]
    amy = data["submissions"][1]
    assert amy["score"] == 9 and amy["max_score"] == 14
    assert amy["results"] == "submissions/amy/run"
    assert {i: v["outcome"] for i, v in amy["items"].items()} == {
        "level.accepts": REMARK, "edge.drains": PASS, "bonus.oneshot": NOT_EXERCISED}
    bob = data["submissions"][2]
    assert bob["status"] == "not graded" and bob["reason"] == "killed: out of memory (limit 1 GiB)"
    assert data["submissions"][0]["status"] == "graded"


def test_items_come_in_checklist_order_with_pass_rates_over_who_was_graded_on_them(data):
    columns = {c["id"]: c for c in data["items"]}
    assert list(columns) == ["level.accepts", "edge.drains", "bonus.oneshot"]
    # PASS and PASS with remark both pass; an item nobody else was graded on counts only amy.
    assert (columns["level.accepts"]["passed"], columns["level.accepts"]["graded"]) == (2, 4)
    assert columns["level.accepts"]["pass_rate"] == 0.5
    assert columns["edge.drains"]["pass_rate"] == 0.5
    assert (columns["bonus.oneshot"]["passed"], columns["bonus.oneshot"]["graded"]) == (0, 1)


def test_class_json_round_trips(data):
    assert json.loads(class_json(data)) == data


def test_class_csv_has_one_row_per_student_and_one_column_per_item(data):
    text = class_csv(data)
    assert "\r\n" in text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["student", "score", "max_score", "level.accepts", "edge.drains", "bonus.oneshot",
                       "status", "reason"]
    by_name = {row[0]: row for row in rows[1:]}
    assert len(by_name) == 4
    assert by_name["amy"][1:6] == ["9", "14", "4", "5", "0"]
    assert by_name["bob"][4] == ""  # not graded on edge.drains: blank, not 0
    assert by_name["bob"][6:] == ["not graded", "killed: out of memory (limit 1 GiB)"]
    # A name a spreadsheet would run as a formula is kept as text.
    assert "'=cmd|evil" in by_name


def test_class_markdown_has_the_matrix_the_pass_rates_and_the_notes(data):
    text = class_markdown(data)
    assert "| [amy](submissions/amy/run/scorecard.md) | 9/14 | PASS* | PASS | n/e |" in text
    assert "| [bob](submissions/bob/run/scorecard.md) | 0/4 | FAIL |  |  |" in text
    assert "| `level.accepts` | 4 | 2/4 | 50 % |" in text
    assert "- bob: killed: out of memory (limit 1 GiB)" in text
    assert "limits: memory 1 GiB, pids 512" in text
    assert "\\|evil" in text  # a pipe in a name does not break the table


class Cells(HTMLParser):
    """The matrix's rows and cells, the anchors, and whether anything is loaded from outside."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.ids: set[str] = set()
        self.external: list[str] = []
        self.rates: dict[str, str] = {}
        self._rate: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        for name in ("src", "href"):
            if attrs.get(name, "").startswith(("http:", "https:", "//")):
                self.external.append(attrs[name])
        if tag == "tr" and "student" in attrs.get("class", ""):
            self.rows.append({"name": attrs["data-name"], "score": attrs["data-score"], "cells": []})
        if tag == "td" and "cell" in attrs.get("class", "") and self.rows:
            self.rows[-1]["cells"].append([attrs["class"].split()[1], None])
        if tag == "a" and self.rows and self.rows[-1]["cells"] and self.rows[-1]["cells"][-1][1] is None \
                and attrs.get("href", "").startswith("#s"):
            self.rows[-1]["cells"][-1][1] = attrs["href"][1:]
        if tag == "td" and attrs.get("class") == "rate":
            self._rate = attrs["data-item"]

    def handle_data(self, text):
        if self._rate is not None:
            self.rates[self._rate] = text
            self._rate = None


def test_class_html_is_a_self_contained_matrix_whose_cells_link_to_their_evidence(data):
    page = class_html(data)
    parsed = Cells()
    parsed.feed(page)
    assert parsed.external == []
    assert [(row["name"], row["score"]) for row in parsed.rows] == [
        ("=cmd|evil", "0"), ("amy", "9"), ("bob", "0"), ("zoe", "4")]
    amy = parsed.rows[1]["cells"]
    assert [css for css, _ in amy] == ["remark", "pass", "unexercised"]
    assert [css for css, _ in parsed.rows[2]["cells"]] == ["fail", "absent", "absent"]
    for row in parsed.rows:
        for css, target in row["cells"]:
            if css != "absent":
                assert target in parsed.ids, f"{row['name']}: a cell links to #{target}, which is not on the page"
    assert parsed.rates == {"level.accepts": "50 %", "edge.drains": "50 %", "bonus.oneshot": "0 %"}
    assert "hostile &lt;b&gt;" in page and "<b>" not in page
    assert "submissions/amy/run/scorecard.md" in page
    # four outcomes, four distinct colours
    assert len({line for line in page.splitlines() if line.startswith("td.") and "background" in line}) == 4


def test_an_empty_class_still_renders():
    data = class_data([], title="empty", generated="now", sandbox=None)
    assert "no sandbox" in class_markdown(data) and "<table" in class_html(data)
    assert class_csv(data).splitlines() == ["student,score,max_score,status,reason"]
