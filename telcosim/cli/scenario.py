"""``telcosim scenario``: check, list and show scenario files and the built-in scenarios.

    telcosim scenario check city.toml other.toml   # "FILE: ok" or one line per problem, exit 2
    telcosim scenario list                         # the built-ins and what each is for
    telcosim scenario show weekend                 # the fully resolved TOML, every key

Wired into ``sim/cli.py`` by :func:`add_parser` and :func:`run`. Problems are raised or printed
one per line, as ``telcosim: error: FILE: dotted.key: problem``; the caller turns a raised
:class:`~sim.errors.TelcosimError` into exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from telcosim.scenarios import loader

EXIT_USAGE = 2


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``scenario`` subcommand (with check, list, show) to an argparse subparsers object."""
    p = subparsers.add_parser(
        "scenario", help="check, list or show scenarios (files and the built-ins)",
        description="Work with scenario files and the built-in scenarios without running them.")
    sub = p.add_subparsers(dest="scenario_command", required=True, metavar="{check,list,show}",
                           parser_class=type(p))
    c = sub.add_parser("check", help="validate scenario files without running them",
                       description="Validate each scenario (a file or a built-in name), its extends "
                                   "chain and the input files it names (cells CSV, profile). Prints "
                                   "'FILE: ok' for each sound one and one line per problem for the "
                                   "others; exit 2 if there is any problem.")
    c.add_argument("files", nargs="+", metavar="FILE", help="scenario TOML file or built-in name")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="check with this override applied to each file (repeatable)")
    sub.add_parser("list", help="the built-in scenarios and what each is for",
                   description="List the built-in scenarios with their one-line descriptions.")
    s = sub.add_parser("show", help="print the fully resolved TOML of a scenario",
                       description="Print a scenario as TOML with every key, after its extends chain "
                                   "and overrides: the file a run of it would use.")
    s.add_argument("scenario", metavar="NAME", help="built-in name or scenario TOML file")
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="apply an override before showing (repeatable)")
    return p


def run(args: argparse.Namespace) -> int:
    if args.scenario_command == "check":
        bad = 0
        for ref in args.files:
            problems = loader.check(ref, args.overrides)
            for line in problems:
                print(f"telcosim: error: {line}", file=sys.stderr)
            if problems:
                bad += 1
            else:
                print(f"{ref}: ok")
        return EXIT_USAGE if bad else 0
    if args.scenario_command == "list":
        rows = loader.describe_builtins()
        width = max(len(name) for name, _ in rows)
        for name, description in rows:
            print(f"{name:<{width}}  {description}")
        return 0
    if args.scenario_command == "show":
        sc = loader.load(args.scenario, args.overrides)
        header = (f"telcosim scenario {args.scenario}: resolved (extends merged, overrides applied, "
                  "defaults filled in)")
        sys.stdout.write(loader.dumps(sc, header))
        return 0
    raise AssertionError(args.scenario_command)
