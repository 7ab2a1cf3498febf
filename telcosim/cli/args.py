"""Argument types shared by every ``telcosim`` command: a parser whose errors are one line and
exit 2, numbers checked against a range with a message that names the rule, and :func:`report`,
which prints input problems the same way."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

EXIT_USAGE = 2


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line on stderr and exit code 2."""

    def error(self, message: str):  # one line, exit 2
        self.exit(EXIT_USAGE, f"telcosim: error: {message} (see '{self.prog} --help')\n")


def number(*, integer: bool = False, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           hi_open: bool = False, rule: str = ""):
    """An argparse type for a number in a range: the value, or one line saying what is wrong and
    what is allowed (``rule``, else the bounds)."""
    def parse(text: str):
        try:
            v = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if integer else 'a number'}") from None
        bad = (v != v or v in (float("inf"), float("-inf"))
               or (lo is not None and (v < lo or (lo_open and v == lo)))
               or (hi is not None and (v > hi or (hi_open and v == hi))))
        if bad:
            bounds = " and ".join(b for b in (
                None if lo is None else f"{'>' if lo_open else '>='} {lo:g}",
                None if hi is None else f"{'<' if hi_open else '<='} {hi:g}") if b)
            raise argparse.ArgumentTypeError(f"{v} is out of range (must be {rule or bounds or 'finite'})")
        return v
    return parse


def report(problems: Iterable[str]) -> int:
    """Print input problems one per line (as every telcosim command does) and return exit code 2."""
    for line in problems:
        print(f"telcosim: error: {line}", file=sys.stderr)
    return EXIT_USAGE


positive_int = number(integer=True, lo=0, lo_open=True, rule="a positive integer")
seed_value = number(integer=True, lo=0, hi=2**63 - 1, rule="between 0 and 2^63-1")

__all__ = ["EXIT_USAGE", "Parser", "number", "positive_int", "report", "seed_value"]
