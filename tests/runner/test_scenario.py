"""Scenario files: the shipped ones load, and every broken one is refused with an error that
names the file, the step and the field, before anything runs."""

from __future__ import annotations

import pytest

from lab.runner.run import SCENARIOS_DIR, load_scenarios
from lab.runner.scenario import ACTIONS, ScenarioError, load_scenario, parse_scenario

ISSUE_SCENARIOS = {
    "burst-connects", "stream-10mib", "burst-then-wait", "slow-reader", "idle-timeout",
    "sigterm-midload", "faults", "fd-exhaustion", "oneshot-concurrency",
}


def test_the_shipped_scenarios_cover_the_issue():
    assert set(load_scenarios()) >= ISSUE_SCENARIOS


def test_sizes_and_durations_are_human():
    scenario = load_scenario(SCENARIOS_DIR / "stream-10mib.toml")
    stream = next(step for step in scenario.steps if step.action == "stream")
    assert stream.params["size"] == 10 * 1024 * 1024
    assert stream.params["timeout"] == 60.0
    assert load_scenario(SCENARIOS_DIR / "burst-connects.toml").max_clients == 1000
    assert load_scenario(SCENARIOS_DIR / "fd-exhaustion.toml").nofile == 64


def test_defaults_fill_optional_fields():
    scenario = parse_scenario(
        'description = "d"\n[[steps]]\naction = "connect"\ngroup = "g"\nclients = 2\n', "x.toml"
    )
    assert scenario.name == "x"
    assert scenario.steps[0].params == {"group": "g", "clients": 2, "timeout": 10.0, "save": None}


def test_max_clients_counts_groups_open_at_once():
    text = 'description = "d"\n' + "".join(
        f'[[steps]]\naction = "{action}"\ngroup = "{group}"\n' + (f"clients = {n}\n" if n else "")
        for action, group, n in [("connect", "a", 3), ("connect", "b", 4), ("close", "a", 0), ("connect", "c", 2)]
    )
    assert parse_scenario(text, "x.toml").max_clients == 7


GOOD_STEP = '[[steps]]\naction = "connect"\ngroup = "g"\nclients = 2\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('description = "d"\nsteps = [', "broken.toml: not valid TOML"),
        ('description = "d"\ncolour = 1\n' + GOOD_STEP, "broken.toml: unknown top-level field 'colour'"),
        (GOOD_STEP, "broken.toml: missing field 'description'"),
        ('description = "d"\n', "broken.toml: needs at least one [[steps]] table"),
        ('description = "d"\n[[steps]]\naction = "dance"\n', "broken.toml: step 1: field 'action': expected one of"),
        ('description = "d"\n[[steps]]\naction = "connect"\ngroup = "g"\n',
         "broken.toml: step 1 (connect): missing field 'clients'"),
        ('description = "d"\n[[steps]]\naction = "connect"\ngroup = "g"\nclients = 0\n',
         "broken.toml: step 1 (connect): field 'clients': expected a whole number >= 1, got 0"),
        ('description = "d"\n' + GOOD_STEP + '[[steps]]\naction = "stream"\ngroup = "g"\nsize = -5\n',
         "broken.toml: step 2 (stream): field 'size': a size cannot be negative"),
        ('description = "d"\n' + GOOD_STEP + '[[steps]]\naction = "stream"\ngroup = "g"\nsize = "10 parsecs"\n',
         "broken.toml: step 2 (stream): field 'size': expected a size"),
        ('description = "d"\n' + GOOD_STEP + '[[steps]]\naction = "idle"\nduration = "soon"\n',
         "broken.toml: step 2 (idle): field 'duration': expected a duration"),
        ('description = "d"\n' + GOOD_STEP + '[[steps]]\naction = "echo"\ngroup = "g"\ncolour = 1\nmessage = "m"\n',
         "broken.toml: step 2 (echo): unknown field 'colour'"),
        ('description = "d"\n' + GOOD_STEP + '[[steps]]\naction = "echo"\ngroup = "g"\n',
         "broken.toml: step 2 (echo): give exactly one of the fields 'message' or 'size'"),
        ('description = "d"\n[[steps]]\naction = "echo"\ngroup = "nobody"\nmessage = "m"\n',
         "broken.toml: step 1 (echo): field 'group': no earlier connect step made group 'nobody'"),
        ('description = "d"\n' + GOOD_STEP + '[[steps]]\naction = "close"\ngroup = "g"\nhow = "slam"\n',
         "broken.toml: step 2 (close): field 'how': expected one of close, reset, half"),
        ('description = "d"\n' + GOOD_STEP + '[[steps]]\naction = "stream"\ngroup = "g"\nsize = 1\nsignal = "SIGTERM"\n',
         "broken.toml: step 2 (stream): fields 'signal' and 'signal_after' go together"),
        ('description = "d"\n[[steps]]\naction = "settle"\nbaseline = "before"\nsave = "after"\n',
         "broken.toml: step 1 (settle): field 'baseline': 'before' is not an earlier probe's save"),
        ('description = "d"\n[[steps]]\naction = "probe"\nsave = "p"\n[[steps]]\naction = "probe"\nsave = "p"\n',
         "broken.toml: step 2 (probe): field 'save': 'p' is already saved"),
        ('description = "d"\n[[steps]]\naction = "thaw"\n', "broken.toml: step 1 (thaw): the server is not frozen here"),
        ('description = "d"\n[[steps]]\naction = "freeze"\n[[steps]]\naction = "freeze"\n',
         "broken.toml: step 2 (freeze): the server is already frozen here"),
        ('description = "d"\n[[steps]]\naction = "freeze"\nsave = "x"\n', "broken.toml: step 1 (freeze): unknown field 'save'"),
        ('description = "d"\n' + GOOD_STEP + '[[steps]]\naction = "finish"\ngroup = "g"\nuntil = "dawn"\n',
         "broken.toml: step 2 (finish): field 'until': expected one of echo, eof"),
        ('description = "d"\n' + GOOD_STEP + '[[steps]]\naction = "signal"\ngroup = "g"\nsignal = "SIGNOPE"\n',
         "broken.toml: step 2 (signal): field 'signal': expected a signal name"),
        ('description = "d"\n' + GOOD_STEP + '[[steps]]\naction = "send"\ngroup = "g"\nsize = 5\nstall = "soon"\n',
         "broken.toml: step 2 (send): field 'stall': expected a duration"),
        ('description = "d"\n[[steps]]\naction = "queues"\ngroup = "g"\nsave = "q"\n',
         "broken.toml: step 1 (queues): field 'group': no earlier connect step made group 'g'"),
    ],
    ids=lambda value: value[:40] if isinstance(value, str) and "toml" in value else None,
)
def test_a_broken_scenario_names_file_step_and_field(text, message):
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "broken.toml")
    assert message in str(caught.value)


def test_freeze_thaw_and_the_signal_action_parse():
    text = ('description = "d"\n' + GOOD_STEP + '[[steps]]\naction = "freeze"\n[[steps]]\naction = "shutdown"\n'
            'group = "g"\n[[steps]]\naction = "thaw"\n[[steps]]\naction = "signal"\ngroup = "g"\n'
            'signal = "SIGTERM"\n[[steps]]\naction = "fill"\ngroup = "g"\nsize = "1MiB"\nsave = "f"\n')
    steps = parse_scenario(text, "x.toml").steps
    assert [step.action for step in steps] == ["connect", "freeze", "shutdown", "thaw", "signal", "fill"]
    assert steps[4].params == {"signal": "SIGTERM", "group": "g", "save": None}
    assert steps[5].params["start"] == 2 * 1024 * 1024 and steps[5].params["step"] == 512 * 1024


def test_every_action_documents_itself():
    for name, action in ACTIONS.items():
        assert action.summary, name


def test_every_action_of_the_schema_is_carried_out():
    from lab.runner.execute import PERFORM

    assert set(PERFORM) == set(ACTIONS)
