"""Human sizes and durations ("10MiB", "500ms"), shared by the CLI and the scenario files."""

from __future__ import annotations

import re

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2, "gi": 1024**3, "gib": 1024**3,
}
_DURATION_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "m": 60.0, "min": 60.0}
_NUMBER_UNIT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Bytes from ``"64KiB"``, ``"10MiB"``, ``"1500"`` or an int; ValueError names the problem."""
    if isinstance(text, bool):
        raise ValueError(f"expected a size such as '64KiB', got {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"a size cannot be negative: {text}")
        return text
    match = _NUMBER_UNIT.match(str(text))
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"expected a size such as '64KiB' or '10MiB', got {text!r}")
    value = float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    if value != int(value):
        raise ValueError(f"a size must be a whole number of bytes, got {text!r}")
    return int(value)


def parse_duration(text: str | int | float) -> float:
    """Seconds from ``"500ms"``, ``"5s"``, ``"2min"``, ``"1.5"`` or a number."""
    if isinstance(text, bool):
        raise ValueError(f"expected a duration such as '500ms', got {text!r}")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"a duration cannot be negative: {text}")
        return float(text)
    match = _NUMBER_UNIT.match(str(text))
    if not match or match.group(2).lower() not in _DURATION_UNITS:
        raise ValueError(f"expected a duration such as '500ms' or '5s', got {text!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]


def format_size(size: int) -> str:
    """``1 GiB``, ``512 MiB``, ``1.5 GiB``: the largest binary unit that keeps the number >= 1."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.4g} {unit}"
    return f"{size} B"
