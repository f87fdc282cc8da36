"""Fuzzing the parsers of what users write: sizes and durations, scenario files, submission
files. Whatever the input, the answer is a valid value or the parser's own error naming the
file (a ValueError for the units), never another exception; and what is accepted is usable
(finite, in range, referring only to what exists)."""

from __future__ import annotations

import copy
import math
import tomllib
from pathlib import Path

import pytest
from hypothesis import strategies as st

from fuzzing import FIELD_VALUES, PLAUSIBLE, PROFILES, TOML_VALUES, check, with_a_typo
from lab.runner.scenario import (
    ACTIONS,
    TOP_LEVEL,
    ScenarioError,
    parse_scenario,
    scenario_from_data,
    shipped_scenarios,
)
from lab.runner.submission import (
    BENCHMARK_FIELDS, PROGRAM_SECTIONS, SERVER_FIELDS, SubmissionError, parse_submission, submission_from_data,
)
from lab.units import MAX_DURATION, MAX_SIZE, parse_duration, parse_size

# -- units -----------------------------------------------------------------------------------

UNIT_TEXTS = st.builds(
    lambda number, space, unit: f"{number}{space}{unit}",
    st.one_of(st.integers(-5, 10**15).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
              st.from_regex(r"\d{1,40}(\.\d{1,40})?", fullmatch=True)),
    st.sampled_from(["", " ", "\t"]),
    st.sampled_from(["", "b", "k", "KiB", "mib", "GiB", "TiB", "s", "ms", "us", "ns", "m", "min", "h", "x"]),
)
UNIT_INPUTS = st.one_of(UNIT_TEXTS, st.text(max_size=20), st.integers(), st.floats(), TOML_VALUES)


@pytest.mark.parametrize("profile", PROFILES)
def test_a_size_is_a_whole_number_of_bytes_in_range_or_a_value_error(profile):
    @check(profile, UNIT_INPUTS)
    def prop(value):
        try:
            size = parse_size(value)
        except ValueError as error:
            assert str(error)
            return
        assert isinstance(size, int) and 0 <= size <= MAX_SIZE


@pytest.mark.parametrize("profile", PROFILES)
def test_a_duration_is_finite_in_range_and_timer_sized_or_a_value_error(profile):
    @check(profile, UNIT_INPUTS)
    def prop(value):
        try:
            seconds = parse_duration(value)
        except ValueError as error:
            assert str(error)
            return
        assert isinstance(seconds, float) and math.isfinite(seconds)
        assert seconds == 0 or 1e-9 * (1 - 1e-12) <= seconds <= MAX_DURATION


# -- scenario files --------------------------------------------------------------------------

STEP_FIELDS = sorted({name for action in ACTIONS.values() for name in [*action.required, *action.optional]})
STEPS = st.builds(
    lambda action, fields: {"action": action, **fields},
    st.one_of(st.sampled_from(list(ACTIONS)), TOML_VALUES),
    st.dictionaries(st.one_of(st.sampled_from(STEP_FIELDS), st.text(max_size=6)), FIELD_VALUES, max_size=6),
)
SCENARIO_DATA = st.one_of(
    # Well-formed around the steps, so most examples reach the steps' fields.
    st.fixed_dictionaries({"description": st.just("fuzzed"), "steps": st.lists(STEPS, min_size=1, max_size=6)},
                          optional={"nofile": FIELD_VALUES}),
    st.dictionaries(
        st.one_of(st.sampled_from(list(TOP_LEVEL)), st.text(max_size=6)),
        st.one_of(st.lists(st.one_of(STEPS, TOML_VALUES), max_size=6), FIELD_VALUES),
        max_size=4,
    ),
)
SHIPPED = {path.name: path.read_text(encoding="utf-8") for path in sorted(shipped_scenarios().glob("*.toml"))}


@st.composite
def mutated_scenarios(draw):
    """A shipped scenario with one to three changes: a field set to another value, a field
    dropped or added, a step repeated or moved."""
    data = copy.deepcopy(tomllib.loads(SHIPPED[draw(st.sampled_from(sorted(SHIPPED)))]))
    steps = data["steps"]
    for _ in range(draw(st.integers(1, 3))):
        step = steps[draw(st.integers(0, len(steps) - 1))]
        change = draw(st.sampled_from(["set", "drop", "repeat", "move", "top"]))
        if change == "set":
            step[draw(st.sampled_from(sorted(step) + STEP_FIELDS))] = draw(FIELD_VALUES)
        elif change == "drop" and step:  # an earlier drop may have emptied it
            step.pop(draw(st.sampled_from(sorted(step))))
        elif change == "repeat":
            steps.insert(draw(st.integers(0, len(steps))), copy.deepcopy(step))
        elif change == "move":
            steps.remove(step)
            steps.insert(draw(st.integers(0, len(steps))), step)
        else:
            data[draw(st.sampled_from(sorted(TOP_LEVEL)))] = draw(FIELD_VALUES)
    return data


def _scenario_is_sound_or_refused(data: dict) -> None:
    try:
        scenario = scenario_from_data(data, "fuzz.toml")
    except ScenarioError as error:
        assert str(error).startswith("fuzz.toml")
        return
    groups: set[str] = set()
    for step in scenario.steps:
        action = ACTIONS[step.action]
        assert set(step.params) == {*action.required, *action.optional}
        for name, value in step.params.items():
            if isinstance(value, float):
                assert math.isfinite(value) and 0 <= value <= MAX_DURATION, (name, value)
            if name in ("message",) and value is not None:
                value.format(i=1, r=2)  # what do_echo and do_send will do
        if step.action == "connect":
            assert (step.params["group"] in groups) == step.params["join"]
            groups.add(step.params["group"])
        for name in ("group", "idle", "active"):
            assert step.params.get(name) is None or step.params[name] in groups


@pytest.mark.parametrize("profile", PROFILES)
def test_any_scenario_structure_is_sound_or_a_scenario_error(profile):
    @check(profile, SCENARIO_DATA)
    def prop(data):
        _scenario_is_sound_or_refused(data)


@pytest.mark.parametrize("profile", PROFILES)
def test_a_mutated_shipped_scenario_is_sound_or_a_scenario_error(profile):
    @check(profile, mutated_scenarios())
    def prop(data):
        _scenario_is_sound_or_refused(data)


@pytest.mark.parametrize("profile", PROFILES)
def test_any_scenario_text_parses_or_is_a_scenario_error(profile):
    @check(profile, st.one_of(st.text(max_size=60), with_a_typo(list(SHIPPED.values()))))
    def prop(text):
        try:
            parse_scenario(text, "fuzz.toml")
        except ScenarioError as error:
            assert str(error).startswith("fuzz.toml")


# -- submission files ------------------------------------------------------------------------

SECTION = st.dictionaries(
    st.one_of(st.sampled_from(sorted(SERVER_FIELDS | BENCHMARK_FIELDS)), st.text(max_size=6)),
    FIELD_VALUES, max_size=5,
)
SUBMISSION_DATA = st.dictionaries(
    st.one_of(st.sampled_from(["name", "benchmark", *PROGRAM_SECTIONS]), st.text(max_size=6)),
    st.one_of(SECTION, FIELD_VALUES), max_size=4,
)
GOOD_SUBMISSION = """name = "alice"
[edge]
cmd = "./edge {port}"
ready_timeout = "30s"
[timeout]
cmd = "./timeout {port}"
idle_timeout = "3s"
tick = "500ms"
[signal]
cmd = "./signal {port}"
drain_timeout = "2s"
[benchmark]
cmd = "./bench {host} {port} {connections} {requests}"
connections = 10
report = "PERF.md"
"""


def _submission_is_sound_or_refused(make, path: Path) -> None:
    try:
        submission = make()
    except SubmissionError as error:
        assert str(error).startswith(str(path))
        return
    assert submission.name
    for program in submission.programs.values():
        assert program.argv and all("\0" not in word for word in program.argv)
        for seconds in (program.idle_timeout, program.tick, program.drain_timeout, program.ready_timeout):
            assert math.isfinite(seconds) and 0 <= seconds <= MAX_DURATION
        assert program.ready_timeout > 0
    if submission.benchmark is not None:
        assert math.isfinite(submission.benchmark.timeout)


@pytest.mark.parametrize("profile", PROFILES)
def test_any_submission_structure_is_sound_or_a_submission_error(profile, tmp_path):
    path = tmp_path / "sub.toml"

    @check(profile, st.one_of(SUBMISSION_DATA, st.fixed_dictionaries({"edge": SECTION})))
    def prop(data):
        _submission_is_sound_or_refused(lambda: submission_from_data(data, path), path)


@pytest.mark.parametrize("profile", PROFILES)
def test_any_submission_text_parses_or_is_a_submission_error(profile, tmp_path):
    path = tmp_path / "sub.toml"

    @check(profile, st.one_of(st.text(max_size=60), with_a_typo([GOOD_SUBMISSION])))
    def prop(text):
        _submission_is_sound_or_refused(lambda: parse_submission(text, path), path)
