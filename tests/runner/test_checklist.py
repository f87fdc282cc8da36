"""The checklist as data: the rubric's points, stable ids, and evidence every item can get."""

from __future__ import annotations

import pytest

from lab.errors import UsageError
from lab.runner.checklist import (
    CHECKLIST,
    ITEM_BY_ID,
    KINDS,
    SECTIONS,
    items_for,
    select_items,
    total_points,
)
from lab.runner.grading import JUDGES
from lab.runner.scenario import load_scenarios
from lab.runner.scenario import check_needs

RUBRIC = {"level": 20, "edge": 25, "errors": 15, "cleanup": 20, "bonus": 20}


def test_points_follow_the_rubric():
    by_section = {section.name: total_points(i for i in CHECKLIST if i.section == section.name)
                  for section in SECTIONS}
    assert by_section == RUBRIC
    assert total_points(CHECKLIST) == 100
    assert [i.points for i in CHECKLIST if i.section == "bonus"] == [5, 5, 5, 5]


def test_ids_are_unique_and_every_item_has_one_judge():
    assert len(ITEM_BY_ID) == len(CHECKLIST)
    assert set(JUDGES) == set(ITEM_BY_ID)


@pytest.mark.parametrize("item", CHECKLIST, ids=lambda item: item.id)
def test_every_item_reads_observations_the_shipped_scenarios_save(item):
    check_needs(load_scenarios(), item.needs, item.id)  # raises naming what is missing
    assert item.expected and item.hint


@pytest.mark.parametrize(
    ("kind", "sections"),
    [
        ("level", {"level", "errors", "cleanup"}),
        ("edge", {"edge", "errors", "cleanup"}),
        ("oneshot", {"bonus"}),
        ("timeout", {"bonus"}),
        ("graceful", {"bonus"}),
    ],
)
def test_each_kind_is_judged_on_its_sections(kind, sections):
    assert kind in KINDS
    assert {item.section for item in items_for(kind)} == sections


@pytest.mark.parametrize(
    ("only", "expected"),
    [
        ((), None),
        (("edge.drains",), {"edge.drains"}),
        (("errors",), {"errors.peer_reset", "errors.abrupt_clients", "errors.fd_exhaustion"}),
        (("edge.drains", "cleanup.idle_cpu"), {"edge.drains", "cleanup.idle_cpu"}),
        (("level",), set()),  # a section the edge server is not judged on selects nothing
    ],
)
def test_select_items_by_id_or_section(only, expected):
    selected = {item.id for item in select_items(items_for("edge"), only)}
    assert selected == (expected if expected is not None else {i.id for i in items_for("edge")})


def test_select_items_rejects_an_unknown_name():
    with pytest.raises(UsageError, match="'edge.drain' is neither a checklist item nor a section"):
        select_items(CHECKLIST, ("edge.drain",))
