"""Scenarios: loading scenario files with ``extends`` inheritance, and the built-in scenarios.

    from telcosim.scenarios import load
    sc = load("weekend", ["population.subscribers=500"])   # a built-in name or a TOML path
"""

from .loader import builtin_names, check, describe_builtins, dumps, load, resolve

__all__ = ["builtin_names", "check", "describe_builtins", "dumps", "load", "resolve"]
