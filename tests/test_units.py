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
