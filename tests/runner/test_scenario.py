"""Scenario files: the shipped ones load, and every broken one is refused with an error that
names the file, the step and the field, before anything runs."""

from __future__ import annotations

import pytest

from lab.runner.scenario import (
    ACTIONS,
    ScenarioError,
    load_scenario,
    load_scenarios,
    parse_scenario,
    shipped_scenarios,
)

ISSUE_SCENARIOS = {
    "burst-connects", "stream-10mib", "burst-then-wait", "slow-reader", "idle-timeout",
    "sigterm-midload", "faults", "fd-exhaustion", "oneshot-concurrency",
}


def test_the_shipped_scenarios_cover_the_issue():
    assert set(load_scenarios()) >= ISSUE_SCENARIOS


def test_sizes_and_durations_are_human():
    scenario = load_scenario(shipped_scenarios() / "stream-10mib.toml")
    stream = next(step for step in scenario.steps if step.action == "stream")
    assert stream.params["size"] == 10 * 1024 * 1024
    assert stream.params["timeout"] == 60.0
    assert load_scenario(shipped_scenarios() / "burst-connects.toml").max_clients == 1000
    assert load_scenario(shipped_scenarios() / "fd-exhaustion.toml").nofile == 64


def test_defaults_fill_optional_fields():
    scenario = parse_scenario(
        'description = "d"\n[[steps]]\naction = "connect"\ngroup = "g"\nclients = 2\n', "x.toml"
    )
    assert scenario.name == "x"
    assert scenario.steps[0].params == {"group": "g", "clients": 2, "timeout": 10.0, "join": False, "save": None}


def test_max_clients_counts_groups_open_at_once():
    text = 'description = "d"\n' + "".join(
        f'[[steps]]\naction = "{action}"\ngroup = "{group}"\n' + (f"clients = {n}\n" if n else "")
        for action, group, n in [("connect", "a", 3), ("connect", "b", 4), ("close", "a", 0), ("connect", "c", 2)]
    )
    assert parse_scenario(text, "x.toml").max_clients == 7
    joined = text + '[[steps]]\naction = "connect"\ngroup = "b"\nclients = 5\njoin = true\n'
    assert parse_scenario(joined, "x.toml").max_clients == 11


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
         "broken.toml: step 1 (connect): field 'clients': expected a whole number from 1 to 1048576, got 0"),
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


def _steps(*steps: str) -> str:
    return 'description = "d"\n' + "".join(f"[[steps]]\n{step}\n" for step in steps)


CONNECT = 'action = "connect"\ngroup = "g"\nclients = 2'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # A TOML value of the wrong type, anywhere, is a ScenarioError, never a TypeError.
        (_steps('action = ["probe"]'),
         "broken.toml: step 1: field 'action': expected one of probe, connect"),
        (_steps('action = {name = "probe"}'), "broken.toml: step 1: field 'action': expected one of"),
        (_steps('action = 1979-05-27'), "broken.toml: step 1: field 'action': expected one of"),
        ('description = ["d"]\n' + _steps(CONNECT).split("\n", 1)[1], "field 'description': expected a non-empty string"),
        ("nofile = 64.0\n" + _steps(CONNECT), "field 'nofile': expected a whole number from 1 to 1048576, got 64.0"),
        (_steps(CONNECT.replace("2", "[2]")), "step 1 (connect): field 'clients': expected a whole number"),
        (_steps(CONNECT.replace('"g"', "{a = 1}")), "step 1 (connect): field 'group': expected a name"),
        (_steps(CONNECT, 'action = "stream"\ngroup = "g"\nsize = 1.5'),
         "step 2 (stream): field 'size': expected a size such as '64KiB', got 1.5"),
        (_steps(CONNECT, 'action = "close"\ngroup = "g"\nhow = ["reset"]'),
         "step 2 (close): field 'how': expected one of close, reset, half, got ['reset']"),
        (_steps(CONNECT, 'action = "stream"\ngroup = "g"\nsize = 1\nsignal = 15\nsignal_after = 1'),
         "step 2 (stream): field 'signal': expected a signal name"),
        (_steps('action = "idle"\nduration = 00:00:05'), "step 1 (idle): field 'duration': expected a duration"),
        # NaN and infinity would make the idle, settle and exit steps wait for ever.
        (_steps('action = "idle"\nduration = nan'), "step 1 (idle): field 'duration': a duration must be a finite number"),
        (_steps('action = "idle"\nduration = inf'), "step 1 (idle): field 'duration': a duration must be a finite number"),
        (_steps('action = "probe"\nsave = "p"', 'action = "settle"\nbaseline = "p"\nsave = "q"\ntimeout = -inf'),
         "step 2 (settle): field 'timeout': a duration must be a finite number"),
        (_steps('action = "exit"\nsave = "e"\ntimeout = "1e9s"'), "step 1 (exit): field 'timeout': expected a duration"),
        (_steps('action = "exit"\nsave = "e"\ntimeout = 1e9'), "step 1 (exit): field 'timeout': a duration above a day"),
        # A second connect to a group would silently drop the first one's clients.
        (_steps(CONNECT, CONNECT),
         "broken.toml: step 2 (connect): field 'group': group 'g' was already made by step 1 (connect)"),
        (_steps(CONNECT, 'action = "connect"\ngroup = "h"\nclients = 1', 'action = "close"\ngroup = "g"', CONNECT),
         "step 4 (connect): field 'group': group 'g' was already made by step 1"),
        (_steps(CONNECT.replace('"g"', '"h"') + "\njoin = true"),
         "step 1 (connect): field 'join': no earlier connect step made group 'h'"),
        (_steps(CONNECT + '\njoin = "yes"'), "step 1 (connect): field 'join': expected true or false, got 'yes'"),
        (_steps(CONNECT, 'action = "watch"\nidle = "g"\nactive = "g"\nsave = "w"'),
         "step 2 (watch): fields 'idle' and 'active' must be two different groups"),
        # A message is sent through str.format: only {i} and {r}, nothing that could fail later.
        (_steps(CONNECT, 'action = "echo"\ngroup = "g"\nmessage = "hi {name}"'),
         "step 2 (echo): field 'message': only {i} (the client's number), {r} (the round) may stand in braces"),
        (_steps(CONNECT, 'action = "send"\ngroup = "g"\nmessage = "{i:>999999999}"'),
         "step 2 (send): field 'message': only {i}"),
        (_steps(CONNECT, 'action = "echo"\ngroup = "g"\nmessage = "{"'),
         "step 2 (echo): field 'message': Single '{' encountered in format string"),
        (_steps(CONNECT, 'action = "echo"\ngroup = "g"\nmessage = "{0}"'), "step 2 (echo): field 'message': only {i}"),
    ],
    ids=lambda value: value if isinstance(value, str) and "toml" not in value and "\n" not in value else None,
)
def test_a_mistyped_or_reused_field_names_file_step_field_and_what_it_expects(text, message):
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "broken.toml")
    assert message in str(caught.value)


def test_a_message_may_use_its_fields_and_literal_braces():
    scenario = parse_scenario(_steps(CONNECT, 'action = "echo"\ngroup = "g"\nmessage = "{{json}} {i}/{r}\\n"'), "x.toml")
    assert scenario.steps[1].params["message"].format(i=1, r=2) == "{json} 1/2\n"


def test_a_scenario_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "binary.toml"
    path.write_bytes(b'description = "\xff"\n')
    with pytest.raises(ScenarioError, match="binary.toml: not UTF-8 text"):
        load_scenario(path)
