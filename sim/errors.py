"""The error hierarchy. Every message names what was given, what is allowed and how to fix it.

The CLI turns a :class:`TelcosimError` into its message lines on stderr and exit code 2, never a
traceback.
"""

from __future__ import annotations


class TelcosimError(Exception):
    """Base of every error the user can cause by their input."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class ConfigError(TelcosimError):
    """A scenario file, option or override is invalid. Holds every problem found, not just the first."""


class InputDataError(TelcosimError):
    """An input data file (cells CSV, profile) is unreadable or malformed."""


class OutputError(TelcosimError):
    """The output folder cannot be written as asked."""


class RunInterrupted(KeyboardInterrupt):
    """A run interrupted after a checkpoint: its completed part is kept hidden beside the output
    folder, and the same run with ``resume`` continues from it."""
