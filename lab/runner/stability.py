"""``--repeat N``: grade N times, and mark every item whose verdict changed as FLAKY.

A verdict that depends on the timing of one run is no verdict. The runner grades the same
program N times (a fresh server for every scenario each time); ``merge()`` then turns the N
result sets into one: an item with the same outcome every time keeps it, and an item whose
outcome changed is FLAKY. A flaky item keeps its worst outcome (and that run's evidence), so it
never scores on luck, lists the outcome of every run, and makes the run exit 1. Pure: result
sets in, results out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

from lab.runner.grading import ItemResult, Outcome

MAX_REPEAT = 100  # a full grade takes half a minute: 100 rounds is most of an hour
WORST_FIRST = (Outcome.FAIL, Outcome.NOT_EXERCISED, Outcome.REMARK, Outcome.PASS)


def merge(rounds: Sequence[dict[str, ItemResult]]) -> dict[str, ItemResult]:
    """One result per item from N rounds of results (item id -> result, same items each)."""
    if not rounds:
        raise ValueError("merge() needs at least one round of results")
    if len(rounds) == 1:
        return dict(rounds[0])
    merged = {}
    for item_id in rounds[0]:
        results = [results[item_id] for results in rounds]
        outcomes = tuple(result.outcome.value for result in results)
        worst = min(results, key=lambda result: WORST_FIRST.index(result.outcome))
        merged[item_id] = replace(worst, runs=outcomes, flaky=len(set(outcomes)) > 1)
    return merged


def runs_words(result: ItemResult) -> str:
    """``FLAKY: FAIL 1/10, PASS 9/10`` for a flaky item, its outcome otherwise."""
    if not result.flaky:
        return result.outcome.value
    counts = Counter(result.runs)
    total = len(result.runs)
    return "FLAKY: " + ", ".join(f"{outcome} {counts[outcome]}/{total}" for outcome in
                                 [o.value for o in WORST_FIRST if o.value in counts])
