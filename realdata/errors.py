"""Errors of the real-data readers: every problem of an input is collected, then raised at once.

:class:`DataError` is a :class:`sim.errors.InputDataError` (so a ``TelcosimError``): the CLI prints
its ``problems`` one per line and exits with code 2 (:func:`telcosim.cli.args.report`), never a traceback. A message names the file,
the column and row (or key), the bad value and what is allowed.
"""

from __future__ import annotations

from collections.abc import Iterable

from telcosim.sim.errors import InputDataError

MAX_EXAMPLES = 3  # bad rows quoted in one message; the rest are counted


class DataError(InputDataError):
    """One or more input data files are unreadable or malformed. ``problems``: one line each."""


class Problems:
    """Collects problem lines; :meth:`raise_if_any` raises them together as one :class:`DataError`."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.lines)

    def add(self, line: str) -> None:
        if line not in self.lines:
            self.lines.append(line)

    def extend(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.add(line)

    def rows(self, file, column: str, rows: Iterable, values: Iterable, allowed: str,
             unit: str = "line") -> None:
        """One message for every bad row of one rule: the first rows and values, and a count.

        ``rows`` are line numbers of a CSV file (header = line 1) or row numbers of a table."""
        rows, values = list(rows), list(values)
        if not rows:
            return
        shown = ", ".join(f"{unit} {r}: {_plain(v)!r}" for r, v in zip(rows[:MAX_EXAMPLES], values[:MAX_EXAMPLES],
                                                          strict=True))
        more = f" (and {len(rows) - MAX_EXAMPLES} more)" if len(rows) > MAX_EXAMPLES else ""
        self.add(f"{file}: column {column!r}: {shown}{more}: {allowed}")

    def raise_if_any(self) -> None:
        if self.lines:
            raise DataError(self.lines)


def _plain(v):
    """numpy scalars as plain Python values, so messages read ``'x'`` and ``-3``, not ``np.int64(-3)``."""
    return v.item() if hasattr(v, "item") else v
