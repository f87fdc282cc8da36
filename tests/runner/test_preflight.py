"""Pre-flight: the environment record and the warnings about limits."""

from __future__ import annotations

import pytest

from lab.runner.preflight import check_limits, check_nofile, environment, limits_line
from lab.runner.scenario import ScenarioError, parse_scenario

ROOMY = {"nofile_soft": 20000, "nofile_hard": 20000, "somaxconn": 4096, "local_port_range": [32768, 60999]}


def test_the_environment_record_has_the_issue_fields():
    env = environment()
    assert set(env) >= {"kernel", "cpus", "python", "nofile_soft", "nofile_hard", "somaxconn",
                        "local_port_range", "container"}
    assert env["nofile_soft"] <= env["nofile_hard"]


def test_no_warning_when_the_limits_allow_it():
    assert check_limits(ROOMY, 1000, "burst-connects") == []


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"nofile_hard": 1024}, "RLIMIT_NOFILE is 1,024"),
        ({"somaxconn": 128}, "net.core.somaxconn is 128"),
        ({"local_port_range": [60000, 60500]}, "needs 1,000 local ports"),
    ],
)
def test_a_scenario_beyond_the_limits_warns(changes, words):
    warnings = check_limits({**ROOMY, **changes}, 1000, "burst-connects")
    assert len(warnings) == 1
    assert warnings[0].startswith("burst-connects") and words in warnings[0]


def test_the_pre_flight_line_says_what_the_scenarios_need_and_what_was_granted():
    line = limits_line({**ROOMY, "nofile_soft": 4096, "nofile_hard": 20000}, 1000)
    assert line == ("pre-flight: the scenarios open up to 1,000 connection(s) at once (about 1,064 fds); "
                    "RLIMIT_NOFILE here is 4,096 (hard 20,000)")


def _scenario(nofile: int | None):
    text = (f"nofile = {nofile}\n" if nofile else "") + 'description = "d"\n[[steps]]\naction = "probe"\nsave = "p"\n'
    return parse_scenario(text, "fds.toml")


@pytest.mark.parametrize(
    ("nofile", "env", "refused"),
    [
        (None, ROOMY, False),
        (64, ROOMY, False),
        (20000, ROOMY, False),
        (20001, ROOMY, True),
        (30000, {**ROOMY, "nofile_hard": -1, "nr_open": 1048576}, False),  # RLIM_INFINITY
        (600000, {**ROOMY, "nofile_hard": -1, "nr_open": 524288}, True),
    ],
)
def test_a_nofile_the_target_cannot_be_given_is_refused_up_front(nofile, env, refused):
    if not refused:
        check_nofile(env, _scenario(nofile))
        return
    with pytest.raises(ScenarioError) as caught:
        check_nofile(env, _scenario(nofile))
    assert str(caught.value).startswith(f"fds.toml: field 'nofile': {nofile} is above")
    assert "raise the hard limit" in str(caught.value)
