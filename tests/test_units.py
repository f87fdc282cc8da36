"""lab/units.py: sizes and durations written the way people write them."""

from __future__ import annotations

import re

import pytest

from lab.units import parse_duration, parse_size


@pytest.mark.parametrize(("text", "size"), [
    ("0", 0),
    ("1500", 1500),
    ("1500b", 1500),
    (" 64KiB ", 64 * 1024),
    ("64 kib", 64 * 1024),
    ("10MiB", 10 * 1024**2),
    ("1GiB", 1024**3),
    ("1.5KiB", 1536),
    ("2k", 2000),
    ("3MB", 3_000_000),
    ("1g", 10**9),
    (4096, 4096),
])
def test_parse_size_accepts_decimal_and_binary_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(("text", "message"), [
    ("1XB", "expected a size such as '64KiB' or '10MiB', got '1XB'"),
    ("", "expected a size"),
    ("MiB", "expected a size"),
    ("-1", "expected a size"),  # the sign is not part of the syntax
    ("1 2", "expected a size"),
    ("0.5b", "a size must be a whole number of bytes, got '0.5b'"),
    ("1.0001KiB", "a size must be a whole number of bytes, got '1.0001KiB'"),
    (-1, "a size cannot be negative: -1"),
    (True, "expected a size such as '64KiB', got True"),
])
def test_parse_size_rejects_what_it_cannot_read_and_says_what_it_got(text, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_size(text)


@pytest.mark.parametrize(("text", "seconds"), [
    ("0", 0.0),
    ("1.5", 1.5),
    ("5s", 5.0),
    ("500ms", 0.5),
    (" 200 ms ", 0.2),
    ("250us", 250e-6),
    ("2m", 120.0),
    ("2min", 120.0),
    ("1MS", 1e-3),  # units are case-insensitive
    (3, 3.0),
    (0.25, 0.25),
])
def test_parse_duration_reads_seconds_and_smaller_and_larger_units(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(("text", "message"), [
    ("5h", "expected a duration such as '500ms' or '5s', got '5h'"),
    ("soon", "expected a duration"),
    ("", "expected a duration"),
    ("-1s", "expected a duration"),
    (-0.5, "a duration cannot be negative: -0.5"),
    (False, "expected a duration such as '500ms', got False"),
])
def test_parse_duration_rejects_what_it_cannot_read_and_says_what_it_got(text, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_duration(text)


@pytest.mark.parametrize(("value", "message"), [
    (float("nan"), "a duration must be a finite number of seconds, got nan"),
    (float("inf"), "a duration must be a finite number of seconds, got inf"),
    (-float("inf"), "a duration must be a finite number of seconds, got -inf"),
    (10**400, "a duration above a day (86400 s) is surely a mistake"),  # float() would overflow
    ("25h", "expected a duration"),
    ("1441min", "a duration above a day (86400 s) is surely a mistake, got '1441min'"),
    ("9" * 400, "expected a duration such as '500ms' or '5s', got a number of 400 digits"),
    ("0.0000000001", "a duration must be 0 or at least 1 ns"),  # would disarm a timerfd
    (1e-10, "a duration must be 0 or at least 1 ns"),
    ("\u0663s", "expected a duration"),  # an Arabic-Indic digit is not a number here
    ([1], "expected a duration such as '500ms', got [1]"),
    (None, "expected a duration such as '500ms', got None"),
])
def test_parse_duration_refuses_values_that_would_hang_or_overflow(value, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_duration(value)


def test_parse_duration_keeps_the_edges_of_its_range():
    assert parse_duration("1440min") == 86400.0
    assert parse_duration("0.000000001") == 1e-9
    assert parse_duration(0.0) == 0.0


@pytest.mark.parametrize(("value", "message"), [
    ("9" * 400, "expected a size such as '64KiB' or '10MiB', got a number of 400 digits"),
    ("2TiB", "expected a size"),
    ("1025GiB", "a size above 1 TiB (1099511627776 bytes) is surely a mistake, got '1025GiB'"),
    (2**70, "a size above 1 TiB"),
    ("1.0000000001KiB", "a size must be a whole number of bytes"),  # no float rounding
    (1024.0, "expected a size such as '64KiB', got 1024.0"),
    (float("nan"), "expected a size such as '64KiB', got nan"),
])
def test_parse_size_refuses_absurd_and_inexact_values(value, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_size(value)


def test_parse_size_keeps_the_edges_of_its_range():
    assert parse_size("1024GiB") == 2**40
    assert parse_size("123456789012") == 123456789012  # exact, no float on the way
