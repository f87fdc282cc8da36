"""Property-based fuzzing with hypothesis: one budget per test tier, and TOML-shaped values.

The quick tier tries each property on 50 examples, drawn the same way on every run
(``derandomize``), so a red build is never bad luck; the slow tier (``-m slow``) draws 1,000
fresh random ones. No per-example deadline: the machine is shared and a slow example is no
bug, while a real hang still fails through pytest's ``faulthandler_timeout``. Nothing is kept
between runs (``database=None``): a failure prints the example and how to reproduce it.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

settings.register_profile("quick", max_examples=50, derandomize=True, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
settings.register_profile("slow", max_examples=1000, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# Parametrize a fuzz test with this: its quick budget in the quick tier, its slow one in -m slow.
PROFILES = ["quick", pytest.param("slow", marks=pytest.mark.slow)]


def check(profile: str, *strategies):
    """Run the decorated property now, on examples from ``strategies``, within the budget of
    ``profile``. Used inside a test parametrized with PROFILES."""

    def run(prop):
        settings(settings.get_profile(profile))(given(*strategies)(prop))()
        return prop

    return run


# Every kind of value tomllib can return, nested a little.
TOML_SCALARS = st.one_of(
    st.text(max_size=12), st.integers(), st.floats(), st.booleans(),
    st.datetimes(), st.dates(), st.times(),
)
TOML_VALUES = st.recursive(
    TOML_SCALARS,
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children, max_size=3)),
    max_leaves=6,
)
# Values a person might well write in a lab file, right or nearly right.
PLAUSIBLE = st.sampled_from([
    "g", "h", "p", "before", "500ms", "1s", "2min", "0", "0s", "64KiB", "10MiB", "-1", "nan", "inf",
    "1e9", "0.9999999999", "0.0000000001", "SIGTERM", "SIGKILL", "close", "reset", "half", "edge",
    "hi {i}\n", "{", "{x}", "{i:>99}", "", " ", "./server {port}", "./server", "'", "a\0b",
    0, 1, 2, -1, 65536, 10**30, 1.5, float("nan"), float("inf"), -0.0, True,
])
FIELD_VALUES = st.one_of(PLAUSIBLE, TOML_VALUES)


@st.composite
def with_a_typo(draw, texts: list[str]) -> str:
    """One of ``texts`` with a slice replaced by a few random characters (a typo, a cut, a paste)."""
    text = draw(st.sampled_from(texts))
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, min(len(text), start + 8)))
    return text[:start] + draw(st.text(max_size=6)) + text[end:]
