"""Human sizes and durations ("10MiB", "500ms"), shared by the CLI, the scenario files and the
submission files.

Every value is checked here, once, so no caller gets one it cannot use: NaN and infinity
(TOML has both) would make a deadline that never comes, a negative one is meaningless, and
values beyond ``MAX_SIZE`` or ``MAX_DURATION`` are typos that would look like a hang. A
duration under a nanosecond but above 0 is refused too: the kernel's timers count whole
nanoseconds, so it would silently become 0 (which disarms a timerfd). The arithmetic is exact
(``Fraction``), so ``1.0000001KiB`` is not rounded into a whole number of bytes.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3,
}
_DURATION_UNITS = {
    "": Fraction(1), "s": Fraction(1), "ms": Fraction(1, 10**3), "us": Fraction(1, 10**6),
    "m": Fraction(60), "min": Fraction(60),
}
# ASCII digits only: \d alone would also take digits of other scripts.
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$", re.ASCII)
_MAX_DIGITS = 30  # longer numbers are typos (and int() refuses beyond 4300 digits anyway)

MAX_SIZE = 1 << 40  # 1 TiB: far beyond any stream or buffer a test needs
MAX_DURATION = 24 * 3600.0  # a day: a longer wait is a typo, and would look like a hang
NANOSECOND = Fraction(1, 10**9)


def parse_size(text: str | int) -> int:
    """Bytes from ``"64KiB"``, ``"10MiB"``, ``"1500"`` or an int; ValueError names the problem."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise ValueError(f"expected a size such as '64KiB', got {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"a size cannot be negative: {text}")
        value = Fraction(text)
    else:
        value = _number_with_unit(text, _SIZE_UNITS, "a size such as '64KiB' or '10MiB'")
    if value.denominator != 1:
        raise ValueError(f"a size must be a whole number of bytes, got {text!r}")
    if value > MAX_SIZE:
        raise ValueError(f"a size above 1 TiB ({MAX_SIZE} bytes) is surely a mistake, got {text!r}")
    return int(value)


def parse_duration(text: str | int | float) -> float:
    """Seconds from ``"500ms"``, ``"5s"``, ``"2min"``, ``"1.5"`` or a number."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError(f"expected a duration such as '500ms', got {text!r}")
    if isinstance(text, float) and not math.isfinite(text):
        raise ValueError(f"a duration must be a finite number of seconds, got {text!r}")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"a duration cannot be negative: {text}")
        value = Fraction(text)
    else:
        value = _number_with_unit(text, _DURATION_UNITS, "a duration such as '500ms' or '5s'")
    if value > MAX_DURATION:
        raise ValueError(f"a duration above a day ({MAX_DURATION:g} s) is surely a mistake, got {text!r}")
    if 0 < value < NANOSECOND:
        raise ValueError(f"a duration must be 0 or at least 1 ns (the kernel's timer resolution), got {text!r}")
    return float(value)


def _number_with_unit(text: str, units: dict, example: str) -> Fraction:
    match = _NUMBER_UNIT.match(text)
    if not match or match.group(2).lower() not in units:
        raise ValueError(f"expected {example}, got {text!r}")
    number = match.group(1)
    if len(number) > _MAX_DIGITS:
        raise ValueError(f"expected {example}, got a number of {len(number)} digits: {text[:40]!r}...")
    return Fraction(number) * units[match.group(2).lower()]


def format_size(size: int) -> str:
    """``1 GiB``, ``512 MiB``, ``1.5 GiB``: the largest binary unit that keeps the number >= 1."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.4g} {unit}"
    return f"{size} B"
