"""argparse types shared by the subcommands: a bad value is argparse's usage error (exit 2)
naming the option, never a traceback."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def argument_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """``parse`` (e.g. ``units.parse_duration``) as an argparse type: its ValueError becomes
    the usage error, in its own words."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    convert.__name__ = parse.__name__.removeprefix("parse_")
    return convert


def positive_int(text: str) -> int:
    # isascii: "²".isdigit() is true, and int() refuses it.
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)
